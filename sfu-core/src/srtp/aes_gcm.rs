//! The AEAD_AES_128_GCM transform of RFC 7714, applied in place to one packet with given
//! session keys: §8 (SRTP) and §9 (SRTCP) IV and AAD construction, sealing and opening.
//!
//! Owns the per-packet cryptography only. It must not track rollover counters, SRTCP indices or
//! replay state (the context does), and must not allocate: the GCM key is expanded once in `new`,
//! nonces and the small SRTCP AAD live on the stack.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use sfu_gcm::Aes128Gcm;

use super::key_derivation::{KeyDerivation, KeyLabel};
use super::{SRTCP_E_BIT, SRTCP_INDEX_LEN, SrtpError};

/// GCM authentication tag length (RFC 7714 §14.2: 16 octets for AEAD_AES_128_GCM).
pub const TAG_LEN: usize = 16;
pub const SALT_LEN: usize = 12;
const CIPHER_KEY_LEN: usize = 16;

/// Session key and salt of one direction for either RTP or RTCP.
struct SessionKeys {
    key: Aes128Gcm,
    salt: [u8; SALT_LEN],
}

impl SessionKeys {
    fn derive(
        kdf: &KeyDerivation,
        encryption: KeyLabel,
        salt: KeyLabel,
    ) -> Result<Self, SrtpError> {
        let mut cipher_key = [0u8; CIPHER_KEY_LEN];
        let mut session_salt = [0u8; SALT_LEN];
        kdf.derive(encryption, &mut cipher_key)?;
        kdf.derive(salt, &mut session_salt)?;
        let keys = Self::new(&cipher_key, session_salt);
        super::wipe(&mut cipher_key);
        keys
    }

    fn new(cipher_key: &[u8], salt: [u8; SALT_LEN]) -> Result<Self, SrtpError> {
        Ok(Self {
            key: Aes128Gcm::new(cipher_key).map_err(|_| SrtpError::BadKeyLength)?,
            salt,
        })
    }

    /// XORs the salt into a 12-octet IV whose fields the caller laid out.
    fn nonce(&self, mut iv: [u8; SALT_LEN]) -> [u8; SALT_LEN] {
        for (iv_byte, salt_byte) in iv.iter_mut().zip(self.salt) {
            *iv_byte ^= salt_byte;
        }
        iv
    }

    /// RFC 7714 §8.1: `00 00 || SSRC || ROC || SEQ`, XORed with the salt. Built as one array
    /// (an iterator chain over the fields cost ~70 instructions per forwarded packet).
    fn rtp_nonce(&self, ssrc: u32, roc: u32, sequence_number: u16) -> [u8; SALT_LEN] {
        let [s0, s1, s2, s3] = ssrc.to_be_bytes();
        let [r0, r1, r2, r3] = roc.to_be_bytes();
        let [q0, q1] = sequence_number.to_be_bytes();
        self.nonce([0, 0, s0, s1, s2, s3, r0, r1, r2, r3, q0, q1])
    }

    /// RFC 7714 §9.1: `00 00 || SSRC || 00 00 || 0 || SRTCP index`, XORed with the salt.
    fn rtcp_nonce(&self, ssrc: u32, index: u32) -> [u8; SALT_LEN] {
        let mut iv = [0u8; SALT_LEN];
        let fields = ssrc
            .to_be_bytes()
            .into_iter()
            .chain([0, 0])
            .chain((index & !SRTCP_E_BIT).to_be_bytes());
        for (iv_byte, field_byte) in iv.iter_mut().skip(2).zip(fields) {
            *iv_byte = field_byte;
        }
        self.nonce(iv)
    }
}

/// AEAD_AES_128_GCM session keys for RTP and RTCP of one direction.
pub struct AesGcmTransform {
    rtp: SessionKeys,
    rtcp: SessionKeys,
}

impl AesGcmTransform {
    /// Derives the four session keys from the master key and 12-octet master salt.
    pub fn new(master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        let kdf = KeyDerivation::new(master_key, master_salt)?;
        Ok(Self {
            rtp: SessionKeys::derive(&kdf, KeyLabel::RtpEncryption, KeyLabel::RtpSalt)?,
            rtcp: SessionKeys::derive(&kdf, KeyLabel::RtcpEncryption, KeyLabel::RtcpSalt)?,
        })
    }

    /// Encrypts `buf[header_len..]` with the header as AAD (RFC 7714 §8.2) and appends the tag.
    /// The caller guarantees `12 <= header_len <= buf.len()` and has reserved `TAG_LEN`.
    pub fn protect_rtp(
        &self,
        buf: &mut Vec<u8>,
        header_len: usize,
        ssrc: u32,
        roc: u32,
        sequence_number: u16,
    ) -> Result<(), SrtpError> {
        let nonce = self.rtp.rtp_nonce(ssrc, roc, sequence_number);
        let (header, payload) = buf
            .split_at_mut_checked(header_len)
            .ok_or(SrtpError::TooShort)?;
        let tag = self
            .rtp
            .key
            .seal_in_place(&nonce, header, payload)
            .map_err(|_| SrtpError::CryptoFailure)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Encrypts `payload` straight after the header in `buf` (which holds only the header),
    /// then appends the tag: the payload is read once, from where it is shared.
    pub fn protect_rtp_from(
        &self,
        buf: &mut Vec<u8>,
        header_len: usize,
        ssrc: u32,
        roc: u32,
        sequence_number: u16,
        payload: &[u8],
    ) -> Result<(), SrtpError> {
        if buf.len() != header_len {
            return Err(SrtpError::TooShort);
        }
        let nonce = self.rtp.rtp_nonce(ssrc, roc, sequence_number);
        self.rtp
            .key
            .seal_append(&nonce, payload, buf)
            .map_err(|_| SrtpError::CryptoFailure)
    }

    /// Authenticates and decrypts `buf` (header, ciphertext, tag) in place; returns the
    /// plaintext length. On failure the payload octets are zeroed.
    pub fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        ssrc: u32,
        roc: u32,
        sequence_number: u16,
    ) -> Result<usize, SrtpError> {
        let plain_len = buf.len().checked_sub(TAG_LEN).ok_or(SrtpError::TooShort)?;
        if header_len > plain_len {
            return Err(SrtpError::TooShort);
        }
        let nonce = self.rtp.rtp_nonce(ssrc, roc, sequence_number);
        let (header, ciphertext_and_tag) = buf
            .split_at_mut_checked(header_len)
            .ok_or(SrtpError::TooShort)?;
        let (ciphertext, tag) = split_tag(ciphertext_and_tag)?;
        self.rtp
            .key
            .open_in_place(&nonce, header, ciphertext, &tag)
            .map_err(|_| SrtpError::AuthFailed)?;
        Ok(plain_len)
    }

    /// Encrypts `buf[8..]` with AAD = first 8 octets || `E || index` (RFC 7714 §9.2), then
    /// appends the tag and the `E || index` word, in that order (§9, Figure 3).
    pub fn protect_rtcp(&self, buf: &mut Vec<u8>, ssrc: u32, index: u32) -> Result<(), SrtpError> {
        let index_word = (SRTCP_E_BIT | index).to_be_bytes();
        let nonce = self.rtcp.rtcp_nonce(ssrc, index);
        let (header, payload) = buf.split_at_mut_checked(8).ok_or(SrtpError::TooShort)?;
        let aad = rtcp_encrypted_aad(header, index_word)?;
        let tag = self
            .rtcp
            .key
            .seal_in_place(&nonce, &aad, payload)
            .map_err(|_| SrtpError::CryptoFailure)?;
        buf.extend_from_slice(&tag);
        buf.extend_from_slice(&index_word);
        Ok(())
    }

    /// Authenticates an SRTCP packet (`RTCP || tag || E || index`) and decrypts it if the E bit
    /// of `index_word` is set. Returns the plaintext RTCP length. On failure the octets after the
    /// first 8 are zeroed or left as they were.
    pub fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        index_word: u32,
    ) -> Result<usize, SrtpError> {
        let sealed_len = buf
            .len()
            .checked_sub(SRTCP_INDEX_LEN)
            .ok_or(SrtpError::TooShort)?;
        let plain_len = sealed_len
            .checked_sub(TAG_LEN)
            .filter(|len| *len >= 8)
            .ok_or(SrtpError::TooShort)?;
        let nonce = self.rtcp.rtcp_nonce(ssrc, index_word);
        let index_bytes = index_word.to_be_bytes();
        if index_word & SRTCP_E_BIT != 0 {
            let sealed = buf.get_mut(..sealed_len).ok_or(SrtpError::TooShort)?;
            let (header, ciphertext_and_tag) =
                sealed.split_at_mut_checked(8).ok_or(SrtpError::TooShort)?;
            let aad = rtcp_encrypted_aad(header, index_bytes)?;
            let (ciphertext, tag) = split_tag(ciphertext_and_tag)?;
            self.rtcp
                .key
                .open_in_place(&nonce, &aad, ciphertext, &tag)
                .map_err(|_| SrtpError::AuthFailed)?;
        } else {
            // Authentication only (RFC 7714 §9.3): the AAD is the whole RTCP packet followed by
            // the index word, which on the wire sit on either side of the tag. Move the tag to
            // the stack and the index word next to the packet so the AAD is one contiguous slice.
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(buf.get(plain_len..sealed_len).ok_or(SrtpError::TooShort)?);
            let aad_end = plain_len + SRTCP_INDEX_LEN;
            buf.get_mut(plain_len..aad_end)
                .ok_or(SrtpError::TooShort)?
                .copy_from_slice(&index_bytes);
            let aad = buf.get(..aad_end).ok_or(SrtpError::TooShort)?;
            self.rtcp
                .key
                .open_in_place(&nonce, aad, &mut [], &tag)
                .map_err(|_| SrtpError::AuthFailed)?;
        }
        Ok(plain_len)
    }

    #[cfg(test)]
    fn with_session_keys(cipher_key: &[u8], salt: [u8; SALT_LEN]) -> Self {
        #[allow(clippy::unwrap_used)]
        Self {
            rtp: SessionKeys::new(cipher_key, salt).unwrap(),
            rtcp: SessionKeys::new(cipher_key, salt).unwrap(),
        }
    }
}

/// Splits the trailing tag off a sealed payload (copied: the open writes the payload in place).
fn split_tag(sealed: &mut [u8]) -> Result<(&mut [u8], [u8; TAG_LEN]), SrtpError> {
    let at = sealed
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(SrtpError::TooShort)?;
    let (ciphertext, tag) = sealed.split_at_mut_checked(at).ok_or(SrtpError::TooShort)?;
    let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| SrtpError::TooShort)?;
    Ok((ciphertext, tag))
}

/// The 12-octet SRTCP AAD for an encrypted packet: first 8 octets of the RTCP packet || E || index.
fn rtcp_encrypted_aad(header: &[u8], index_word: [u8; 4]) -> Result<[u8; 12], SrtpError> {
    let mut aad = [0u8; 12];
    let (first, last) = aad.split_at_mut(8);
    first.copy_from_slice(header.get(..8).ok_or(SrtpError::TooShort)?);
    last.copy_from_slice(&index_word);
    Ok(aad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// RFC 7714 §16 / §17 use session keys directly (no KDF).
    fn rfc7714_transform() -> AesGcmTransform {
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&hex("517569642070726f2071756f"));
        AesGcmTransform::with_session_keys(&hex("000102030405060708090a0b0c0d0e0f"), salt)
    }

    const RFC7714_RTP_PLAINTEXT: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f
        6d6e6973 20646976 69736120 696e2070 61727465 73207472 6573";

    /// RFC 7714 §16.1.1 packet, §16.1.2 protected result.
    const RFC7714_RTP_PROTECTED: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c
        9d7e4bca be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf
        765ee439 0cce";

    const RFC7714_RTCP_PLAINTEXT: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
        0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";

    /// RFC 7714 §17.1: encrypted SRTCP with index 0x5d4 (E bit set).
    const RFC7714_RTCP_PROTECTED: &str = "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99
        7ff5c0f7 6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f
        c5abf872 45d9eade 800005d4";

    /// RFC 7714 §17.2: the same packet authenticated only (E bit clear).
    const RFC7714_RTCP_AUTH_ONLY: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
        0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef
        841dd968 3dd78ec9 2ae58790 125f62b3 000005d4";

    #[test]
    fn rfc7714_16_rtp_vector_protects_to_the_expected_ciphertext_and_tag() {
        let transform = rfc7714_transform();
        let mut packet = hex(RFC7714_RTP_PLAINTEXT);
        // SSRC 0x5501a0b2, SEQ 0xf17b, ROC 0 as in §16.1.1.
        transform
            .protect_rtp(&mut packet, 12, 0x5501_a0b2, 0, 0xf17b)
            .unwrap();
        assert_eq!(packet, hex(RFC7714_RTP_PROTECTED));
    }

    #[test]
    fn rfc7714_16_rtp_vector_unprotects_to_the_plaintext() {
        let transform = rfc7714_transform();
        let mut packet = hex(RFC7714_RTP_PROTECTED);
        let len = transform
            .unprotect_rtp(&mut packet, 12, 0x5501_a0b2, 0, 0xf17b)
            .unwrap();
        assert_eq!(packet[..len].to_vec(), hex(RFC7714_RTP_PLAINTEXT));

        let mut wrong_roc = hex(RFC7714_RTP_PROTECTED);
        assert_eq!(
            transform.unprotect_rtp(&mut wrong_roc, 12, 0x5501_a0b2, 1, 0xf17b),
            Err(SrtpError::AuthFailed)
        );
    }

    #[test]
    fn rfc7714_17_rtcp_vector_protects_to_the_expected_ciphertext_and_tag() {
        let transform = rfc7714_transform();
        let mut packet = hex(RFC7714_RTCP_PLAINTEXT);
        transform
            .protect_rtcp(&mut packet, 0x4d61_7273, 0x5d4)
            .unwrap();
        assert_eq!(packet, hex(RFC7714_RTCP_PROTECTED));
    }

    #[test]
    fn rfc7714_17_rtcp_vector_unprotects_to_the_plaintext() {
        let transform = rfc7714_transform();
        let mut packet = hex(RFC7714_RTCP_PROTECTED);
        let len = transform
            .unprotect_rtcp(&mut packet, 0x4d61_7273, 0x8000_05d4)
            .unwrap();
        assert_eq!(packet[..len].to_vec(), hex(RFC7714_RTCP_PLAINTEXT));
    }

    #[test]
    fn rfc7714_17_authenticated_only_rtcp_vector_verifies() {
        let transform = rfc7714_transform();
        let mut packet = hex(RFC7714_RTCP_AUTH_ONLY);
        let len = transform
            .unprotect_rtcp(&mut packet, 0x4d61_7273, 0x0000_05d4)
            .unwrap();
        assert_eq!(packet[..len].to_vec(), hex(RFC7714_RTCP_PLAINTEXT));

        // Flipping the E bit changes the AAD and the meaning: it must not verify.
        let mut packet = hex(RFC7714_RTCP_AUTH_ONLY);
        assert_eq!(
            transform.unprotect_rtcp(&mut packet, 0x4d61_7273, 0x8000_05d4),
            Err(SrtpError::AuthFailed)
        );
    }

    #[test]
    fn rtp_rejects_any_flipped_bit() {
        let transform = rfc7714_transform();
        let protected = hex(RFC7714_RTP_PROTECTED);
        for bit in 0..protected.len() * 8 {
            let mut tampered = protected.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                transform.unprotect_rtp(&mut tampered, 12, 0x5501_a0b2, 0, 0xf17b),
                Err(SrtpError::AuthFailed),
                "bit {bit}"
            );
        }
    }
}
