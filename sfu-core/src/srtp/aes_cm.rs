//! The AES_CM_128_HMAC_SHA1_80 transform of RFC 3711 (§4.1.1 AES counter mode, §4.2.1
//! HMAC-SHA1 truncated to 80 bits), applied in place to one packet with given session keys.
//!
//! Owns the per-packet cryptography only: IV construction, keystream, tag computation and
//! constant-time tag comparison. It must not track rollover counters, SRTCP indices or replay
//! state (the context does), and must not allocate: keys are expanded once in `new`, IVs live
//! on the stack.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::key_derivation::{KeyDerivation, KeyLabel};
use super::{SRTCP_E_BIT, SRTCP_INDEX_LEN, SrtpError};

/// Truncated HMAC-SHA1 tag length of the `_80` profile.
pub const TAG_LEN: usize = 10;
pub const SALT_LEN: usize = 14;
/// n_a of RFC 3711 §8.2: the HMAC-SHA1 session key is 160 bits.
const AUTH_KEY_LEN: usize = 20;
const CIPHER_KEY_LEN: usize = 16;

/// Session keys of one direction for either RTP or RTCP.
struct SessionKeys {
    cipher: EncryptingKey,
    salt: [u8; SALT_LEN],
    auth: hmac::Key,
}

impl SessionKeys {
    fn derive(
        kdf: &KeyDerivation,
        encryption: KeyLabel,
        authentication: KeyLabel,
        salt: KeyLabel,
    ) -> Result<Self, SrtpError> {
        let mut cipher_key = [0u8; CIPHER_KEY_LEN];
        let mut auth_key = [0u8; AUTH_KEY_LEN];
        let mut session_salt = [0u8; SALT_LEN];
        kdf.derive(encryption, &mut cipher_key)?;
        kdf.derive(authentication, &mut auth_key)?;
        kdf.derive(salt, &mut session_salt)?;
        let keys = Self::new(&cipher_key, session_salt, &auth_key);
        super::wipe(&mut cipher_key);
        super::wipe(&mut auth_key);
        keys
    }

    fn new(cipher_key: &[u8], salt: [u8; SALT_LEN], auth_key: &[u8]) -> Result<Self, SrtpError> {
        let unbound =
            UnboundCipherKey::new(&AES_128, cipher_key).map_err(|_| SrtpError::BadKeyLength)?;
        Ok(Self {
            cipher: EncryptingKey::ctr(unbound).map_err(|_| SrtpError::CryptoFailure)?,
            salt,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_key),
        })
    }

    /// IV of RFC 3711 §4.1.1: `(salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16)`; the low 16
    /// bits are the block counter. SRTCP uses the same layout with its 31-bit index.
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        for (iv_byte, salt_byte) in iv.iter_mut().zip(self.salt) {
            *iv_byte = salt_byte;
        }
        for (iv_byte, ssrc_byte) in iv.iter_mut().skip(4).zip(ssrc.to_be_bytes()) {
            *iv_byte ^= ssrc_byte;
        }
        // The 48-bit index occupies octets 8..14; `to_be_bytes` of a u64 puts it in the last 6.
        for (iv_byte, index_byte) in iv
            .iter_mut()
            .skip(8)
            .zip(index.to_be_bytes().into_iter().skip(2))
        {
            *iv_byte ^= index_byte;
        }
        iv
    }

    /// XORs the keystream into `data`. Encryption and decryption are the same operation.
    fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) -> Result<(), SrtpError> {
        if data.is_empty() {
            return Ok(());
        }
        // `less_safe_encrypt` runs AES-CTR on the pre-expanded key with a stack IV: no allocation.
        // Its 128-bit counter increments like SRTP's 16-bit block counter as long as a packet has
        // fewer than 2^16 blocks, which any datagram does.
        self.cipher
            .less_safe_encrypt(
                data,
                EncryptionContext::Iv128(FixedLength::from(self.iv(ssrc, index))),
            )
            .map(|_| ())
            .map_err(|_| SrtpError::CryptoFailure)
    }

    /// Full HMAC-SHA1 over `authenticated || trailer`; callers truncate.
    fn full_tag(&self, authenticated: &[u8], trailer: &[u8]) -> hmac::Tag {
        // `with_key` copies the pre-keyed inner/outer digest states: no re-keying, no allocation.
        let mut context = hmac::Context::with_key(&self.auth);
        context.update(authenticated);
        context.update(trailer);
        context.sign()
    }

    /// Checks the truncated tag in constant time, so a forger learns nothing from timing.
    fn verify(
        &self,
        authenticated: &[u8],
        trailer: &[u8],
        received: &[u8],
    ) -> Result<(), SrtpError> {
        let expected = self.full_tag(authenticated, trailer);
        let truncated = expected
            .as_ref()
            .get(..TAG_LEN)
            .ok_or(SrtpError::CryptoFailure)?;
        verify_slices_are_equal(truncated, received).map_err(|_| SrtpError::AuthFailed)
    }
}

/// AES-CM + HMAC-SHA1-80 session keys for RTP and RTCP of one direction.
pub struct AesCmTransform {
    rtp: SessionKeys,
    rtcp: SessionKeys,
}

impl AesCmTransform {
    /// Derives the six session keys from the master key and 14-octet master salt.
    pub fn new(master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        let kdf = KeyDerivation::new(master_key, master_salt)?;
        Ok(Self {
            rtp: SessionKeys::derive(
                &kdf,
                KeyLabel::RtpEncryption,
                KeyLabel::RtpAuthentication,
                KeyLabel::RtpSalt,
            )?,
            rtcp: SessionKeys::derive(
                &kdf,
                KeyLabel::RtcpEncryption,
                KeyLabel::RtcpAuthentication,
                KeyLabel::RtcpSalt,
            )?,
        })
    }

    /// Encrypts `buf[header_len..]` and appends the tag over header, ciphertext and ROC.
    /// The caller guarantees `12 <= header_len <= buf.len()` and has reserved `TAG_LEN`.
    pub fn protect_rtp(
        &self,
        buf: &mut Vec<u8>,
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<(), SrtpError> {
        let payload = buf.get_mut(header_len..).ok_or(SrtpError::TooShort)?;
        self.rtp.apply_keystream(ssrc, index, payload)?;
        let roc = rollover_counter(index);
        let tag = self.rtp.full_tag(buf, &roc.to_be_bytes());
        let truncated = tag
            .as_ref()
            .get(..TAG_LEN)
            .ok_or(SrtpError::CryptoFailure)?;
        buf.extend_from_slice(truncated);
        Ok(())
    }

    /// Authenticates `buf` (header, ciphertext, tag) and decrypts the payload in place.
    /// Returns the plaintext length. The caller guarantees `header_len + TAG_LEN <= buf.len()`.
    pub fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let plain_len = buf.len().checked_sub(TAG_LEN).ok_or(SrtpError::TooShort)?;
        if header_len > plain_len {
            return Err(SrtpError::TooShort);
        }
        let (packet, tag) = buf.split_at_mut(plain_len);
        let roc = rollover_counter(index);
        self.rtp.verify(packet, &roc.to_be_bytes(), tag)?;
        let payload = packet.get_mut(header_len..).ok_or(SrtpError::TooShort)?;
        self.rtp.apply_keystream(ssrc, index, payload)?;
        Ok(plain_len)
    }

    /// Encrypts `buf[8..]`, then appends `E || SRTCP index` and the tag over everything before
    /// it (RFC 3711 §3.4). The caller guarantees `buf.len() >= 8` and a 31-bit `index`.
    pub fn protect_rtcp(&self, buf: &mut Vec<u8>, ssrc: u32, index: u32) -> Result<(), SrtpError> {
        let payload = buf.get_mut(8..).ok_or(SrtpError::TooShort)?;
        self.rtcp.apply_keystream(ssrc, u64::from(index), payload)?;
        buf.extend_from_slice(&(SRTCP_E_BIT | index).to_be_bytes());
        let tag = self.rtcp.full_tag(buf, &[]);
        let truncated = tag
            .as_ref()
            .get(..TAG_LEN)
            .ok_or(SrtpError::CryptoFailure)?;
        buf.extend_from_slice(truncated);
        Ok(())
    }

    /// Authenticates an SRTCP packet whose `E || index` word is `index_word` and decrypts it if
    /// the E bit is set. Returns the plaintext RTCP length (trailer and tag removed).
    pub fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        index_word: u32,
    ) -> Result<usize, SrtpError> {
        let authenticated_len = buf.len().checked_sub(TAG_LEN).ok_or(SrtpError::TooShort)?;
        let plain_len = authenticated_len
            .checked_sub(SRTCP_INDEX_LEN)
            .filter(|len| *len >= 8)
            .ok_or(SrtpError::TooShort)?;
        let (authenticated, tag) = buf.split_at_mut(authenticated_len);
        self.rtcp.verify(authenticated, &[], tag)?;
        if index_word & SRTCP_E_BIT != 0 {
            let payload = authenticated
                .get_mut(8..plain_len)
                .ok_or(SrtpError::TooShort)?;
            self.rtcp
                .apply_keystream(ssrc, u64::from(index_word & !SRTCP_E_BIT), payload)?;
        }
        Ok(plain_len)
    }

    #[cfg(test)]
    fn with_rtp_session_keys(cipher_key: &[u8], salt: [u8; SALT_LEN], auth_key: &[u8]) -> Self {
        #[allow(clippy::unwrap_used)]
        Self {
            rtp: SessionKeys::new(cipher_key, salt, auth_key).unwrap(),
            rtcp: SessionKeys::new(cipher_key, salt, auth_key).unwrap(),
        }
    }
}

/// The ROC is the top 32 bits of the 48-bit packet index.
fn rollover_counter(index: u64) -> u32 {
    (index >> 16) as u32
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

    /// RFC 3711 Appendix B.2: the keystream for SSRC 0, ROC 0, SEQ 0 over a 1044512-octet
    /// segment; encrypting zeros exposes it.
    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"));
        let transform = AesCmTransform::with_rtp_session_keys(
            &hex("2B7E151628AED2A6ABF7158809CF4F3C"),
            salt,
            &[0; AUTH_KEY_LEN],
        );
        assert_eq!(
            transform.rtp.iv(0, 0).to_vec(),
            hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000")
        );

        let mut segment = vec![0u8; 1_044_512];
        transform.rtp.apply_keystream(0, 0, &mut segment).unwrap();
        assert_eq!(
            segment[..48].to_vec(),
            hex("E03EAD0935C95E80E166B16DD92B4EB4
                 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0")
        );
        assert_eq!(
            segment[segment.len() - 48..].to_vec(),
            hex("EC8CDF7398607CB0F2D21675EA9EA1E4
                 362B7C3C6773516318A077D7FC5073AE
                 6A2CC3787889374FBEB4C81B17BA6C44")
        );
    }

    #[test]
    fn the_iv_mixes_in_ssrc_and_index() {
        let transform = AesCmTransform::with_rtp_session_keys(&[1; 16], [0; SALT_LEN], &[0; 20]);
        assert_eq!(
            transform
                .rtp
                .iv(0x1122_3344, 0x0000_AABB_CCDD_EEFF)
                .to_vec(),
            hex("00000000 11223344 AABBCCDDEEFF 0000")
        );
    }

    #[test]
    fn rtp_round_trips_and_rejects_any_flipped_bit() {
        let transform = AesCmTransform::new(&[3; 16], &[4; 14]).unwrap();
        let plain: Vec<u8> = (0..60u8).collect();
        let mut packet = plain.clone();
        transform
            .protect_rtp(&mut packet, 12, 0x0C0D_0E0F, 0x1_0005)
            .unwrap();
        assert_eq!(packet.len(), plain.len() + TAG_LEN);
        assert_eq!(packet[..12], plain[..12], "the header stays in the clear");
        assert_ne!(packet[12..60], plain[12..], "the payload is encrypted");

        for bit in 0..packet.len() * 8 {
            let mut tampered = packet.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                transform.unprotect_rtp(&mut tampered, 12, 0x0C0D_0E0F, 0x1_0005),
                Err(SrtpError::AuthFailed),
                "bit {bit}"
            );
        }
        // The ROC is authenticated even though it is not sent.
        let mut wrong_roc = packet.clone();
        assert_eq!(
            transform.unprotect_rtp(&mut wrong_roc, 12, 0x0C0D_0E0F, 0x2_0005),
            Err(SrtpError::AuthFailed)
        );

        let len = transform
            .unprotect_rtp(&mut packet, 12, 0x0C0D_0E0F, 0x1_0005)
            .unwrap();
        assert_eq!(packet[..len], plain[..]);
    }
}
