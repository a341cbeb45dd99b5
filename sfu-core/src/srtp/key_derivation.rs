//! SRTP session-key derivation: the AES-CM PRF of RFC 3711 §4.3 with a key derivation rate of 0.
//!
//! Owns turning a master key and salt into session keys, once per context. It must not run per
//! packet and does not support a non-zero key derivation rate (DTLS-SRTP, RFC 5764 §4.1.2, always
//! uses 0). The GCM profiles use this same KDF (RFC 7714 §11), with their 96-bit master salt
//! left-aligned in the 112-bit PRF input like libsrtp does.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;

use super::SrtpError;

/// Labels of RFC 3711 §4.3.1 / §4.3.2: which session key a PRF output becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum KeyLabel {
    RtpEncryption = 0x00,
    RtpAuthentication = 0x01,
    RtpSalt = 0x02,
    RtcpEncryption = 0x03,
    RtcpAuthentication = 0x04,
    RtcpSalt = 0x05,
}

/// The PRF of one master key; derives any number of session keys from it.
pub struct KeyDerivation {
    master: EncryptingKey,
    /// The master salt left-aligned in the 14-octet `x` of RFC 3711 §4.3.1; a 12-octet GCM salt
    /// leaves the last two octets zero.
    master_salt: [u8; 14],
}

impl KeyDerivation {
    pub fn new(master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        let mut padded_salt = [0u8; 14];
        padded_salt
            .get_mut(..master_salt.len())
            .ok_or(SrtpError::BadKeyLength)?
            .copy_from_slice(master_salt);
        let unbound =
            UnboundCipherKey::new(&AES_128, master_key).map_err(|_| SrtpError::BadKeyLength)?;
        let master = EncryptingKey::ctr(unbound).map_err(|_| SrtpError::CryptoFailure)?;
        Ok(Self {
            master,
            master_salt: padded_salt,
        })
    }

    /// Fills `out` with the session key for `label`: the AES-CM keystream under the master key
    /// with IV `(label || r) XOR master_salt`, times 2^16, where r = index DIV kdr = 0.
    pub fn derive(&self, label: KeyLabel, out: &mut [u8]) -> Result<(), SrtpError> {
        let mut iv = [0u8; 16];
        for (iv_byte, salt_byte) in iv.iter_mut().zip(self.master_salt) {
            *iv_byte = salt_byte;
        }
        // key_id = label || r is 56 bits wide and right-aligned against the 112-bit salt, so the
        // label lands on octet 7 and r (zero) on octets 8..14.
        iv[7] ^= label as u8;
        out.fill(0);
        self.master
            .less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| SrtpError::CryptoFailure)?;
        Ok(())
    }
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

    /// RFC 3711 Appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation_vectors() {
        let kdf = KeyDerivation::new(
            &hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &hex("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();

        let mut cipher_key = [0u8; 16];
        kdf.derive(KeyLabel::RtpEncryption, &mut cipher_key)
            .unwrap();
        assert_eq!(cipher_key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));

        let mut cipher_salt = [0u8; 14];
        kdf.derive(KeyLabel::RtpSalt, &mut cipher_salt).unwrap();
        assert_eq!(cipher_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));

        let mut auth_key = [0u8; 20];
        kdf.derive(KeyLabel::RtpAuthentication, &mut auth_key)
            .unwrap();
        assert_eq!(
            auth_key.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn every_label_yields_a_different_key() {
        let kdf = KeyDerivation::new(&[7; 16], &[9; 14]).unwrap();
        let labels = [
            KeyLabel::RtpEncryption,
            KeyLabel::RtpAuthentication,
            KeyLabel::RtpSalt,
            KeyLabel::RtcpEncryption,
            KeyLabel::RtcpAuthentication,
            KeyLabel::RtcpSalt,
        ];
        let keys: Vec<[u8; 16]> = labels
            .iter()
            .map(|label| {
                let mut key = [0u8; 16];
                kdf.derive(*label, &mut key).unwrap();
                key
            })
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in keys.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn a_wrong_master_key_or_salt_length_is_refused() {
        assert!(KeyDerivation::new(&[0; 15], &[0; 14]).is_err());
        assert!(KeyDerivation::new(&[0; 16], &[0; 15]).is_err());
    }
}
