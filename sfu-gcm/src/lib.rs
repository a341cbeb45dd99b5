//! AES-128-GCM for one packet per call.
//!
//! SRTP seals every forwarded packet once per subscriber, so the per-call cost of the AEAD is
//! paid millions of times a second. [`Aes128Gcm`] uses a fused VAES/VPCLMULQDQ kernel
//! (`vaes.rs`) where the CPU has AVX-512 with those extensions, and aws-lc-rs everywhere else;
//! both give the same bytes (the tests compare them for every length up to 1,600 bytes).
//!
//! ```
//! use sfu_gcm::Aes128Gcm;
//! let key = Aes128Gcm::new(&[7; 16]).unwrap();
//! let nonce = [1; 12];
//! let mut data = *b"hello, subscriber";
//! let tag = key.seal_in_place(&nonce, b"header", &mut data).unwrap();
//! key.open_in_place(&nonce, b"header", &mut data, &tag).unwrap();
//! assert_eq!(&data, b"hello, subscriber");
//! ```

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(target_arch = "x86_64")]
mod vaes;

pub const KEY_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// GCM's limit on the plaintext of one message: 2^39 - 256 bits (NIST SP 800-38D §5.2.1.1).
pub const MAX_INPUT_LEN: u64 = (1 << 36) - 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GcmError {
    #[error("an AES-128 key is 16 bytes")]
    BadKeyLength,
    #[error("input and output lengths differ")]
    LengthMismatch,
    #[error("message longer than GCM allows")]
    TooLong,
    #[error("authentication tag mismatch")]
    TagMismatch,
    #[error("the cipher failed")]
    CryptoFailure,
}

/// Whether new keys may use the VAES kernel (see [`set_kernel_enabled`]).
static KERNEL_ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether keys made from now on may use the VAES kernel (on by default, used where the CPU
/// has it). Off, every later [`Aes128Gcm::new`] uses aws-lc-rs: a switch for an operator who
/// suspects the kernel, without a rebuild (`sfu-server --aes-gcm-kernel false`). Keys already
/// made keep their implementation.
pub fn set_kernel_enabled(enabled: bool) {
    KERNEL_ENABLED.store(enabled, Ordering::Relaxed);
}

/// The implementation [`Aes128Gcm::new`] picks now, on this CPU.
pub fn implementation_for_new_keys() -> Implementation {
    #[cfg(target_arch = "x86_64")]
    if KERNEL_ENABLED.load(Ordering::Relaxed) && vaes::supported() {
        return Implementation::Vaes;
    }
    Implementation::AwsLc
}

/// Which code seals and opens for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// The fused AVX-512 VAES/VPCLMULQDQ kernel of this crate.
    Vaes,
    /// aws-lc-rs (`LessSafeKey`), on every other CPU.
    AwsLc,
}

impl Implementation {
    /// How reports and logs name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vaes => "VAES kernel",
            Self::AwsLc => "aws-lc",
        }
    }
}

/// An AES-128-GCM key, expanded once.
pub struct Aes128Gcm {
    backend: Backend,
}

// The kernel's key is kept inline: a pointer to chase per packet costs more than the bytes.
#[allow(clippy::large_enum_variant)]
enum Backend {
    #[cfg(target_arch = "x86_64")]
    Vaes(vaes::Key),
    AwsLc(LessSafeKey),
}

impl Aes128Gcm {
    /// The fastest implementation this CPU runs (unless [`set_kernel_enabled`] turned the
    /// kernel off).
    pub fn new(key: &[u8]) -> Result<Self, GcmError> {
        let key: &[u8; KEY_LEN] = key.try_into().map_err(|_| GcmError::BadKeyLength)?;
        #[cfg(target_arch = "x86_64")]
        if KERNEL_ENABLED.load(Ordering::Relaxed)
            && let Some(expanded) = vaes::Key::new(key)
        {
            return Ok(Self {
                backend: Backend::Vaes(expanded),
            });
        }
        Self::with_aws_lc(key)
    }

    /// Always aws-lc-rs: the reference the tests and benches compare against.
    pub fn with_aws_lc(key: &[u8]) -> Result<Self, GcmError> {
        let unbound = UnboundKey::new(&AES_128_GCM, key).map_err(|_| GcmError::BadKeyLength)?;
        Ok(Self {
            backend: Backend::AwsLc(LessSafeKey::new(unbound)),
        })
    }

    pub fn implementation(&self) -> Implementation {
        match self.backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes(_) => Implementation::Vaes,
            Backend::AwsLc(_) => Implementation::AwsLc,
        }
    }

    /// Encrypts `data` in place with `aad` authenticated, and returns the tag.
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], GcmError> {
        check_len(aad.len())?;
        check_len(data.len())?;
        match &self.backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes(key) => Ok(key.seal_in_place(nonce, aad, data)),
            Backend::AwsLc(key) => key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    data,
                )
                .map(tag_bytes)
                .map_err(|_| GcmError::CryptoFailure),
        }
    }

    /// Encrypts `plaintext` into `ciphertext` (of the same length) with `aad` authenticated,
    /// and returns the tag: the plaintext is read once, where it is (a shared packet buffer).
    pub fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        ciphertext: &mut [u8],
    ) -> Result<[u8; TAG_LEN], GcmError> {
        if plaintext.len() != ciphertext.len() {
            return Err(GcmError::LengthMismatch);
        }
        check_len(aad.len())?;
        check_len(plaintext.len())?;
        match &self.backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes(key) => Ok(key.seal(nonce, aad, plaintext, ciphertext)),
            Backend::AwsLc(key) => {
                let mut tag = [0u8; TAG_LEN];
                key.seal_out_of_place_scatter(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    plaintext,
                    ciphertext,
                    &[],
                    &mut tag,
                )
                .map_err(|_| GcmError::CryptoFailure)?;
                Ok(tag)
            }
        }
    }

    /// Appends the encryption of `plaintext`, then the tag, to `out`, authenticating what
    /// `out` already holds (an SRTP packet's header): the payload is read once from where it
    /// is shared and written once, with no zero-fill of the output first.
    pub fn seal_append(
        &self,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), GcmError> {
        check_len(out.len())?;
        check_len(plaintext.len())?;
        match &self.backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes(key) => {
                key.seal_append(nonce, plaintext, out);
                Ok(())
            }
            Backend::AwsLc(_) => {
                let aad_len = out.len();
                out.resize(aad_len + plaintext.len(), 0);
                let (aad, ciphertext) = out.split_at_mut(aad_len);
                let tag = self.seal(nonce, aad, plaintext, ciphertext)?;
                out.extend_from_slice(&tag);
                Ok(())
            }
        }
    }

    /// Decrypts `data` in place if `tag` authenticates it and `aad`. On a mismatch `data` is
    /// zeroed: no unauthenticated plaintext is left behind.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), GcmError> {
        check_len(aad.len())?;
        check_len(data.len())?;
        let authentic = match &self.backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes(key) => vaes::tags_equal(&key.open_in_place(nonce, aad, data), tag),
            Backend::AwsLc(key) => key
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    tag,
                    data,
                )
                .is_ok(),
        };
        if authentic {
            Ok(())
        } else {
            data.fill(0);
            Err(GcmError::TagMismatch)
        }
    }
}

fn tag_bytes(tag: Tag) -> [u8; TAG_LEN] {
    let mut bytes = [0u8; TAG_LEN];
    bytes.copy_from_slice(tag.as_ref());
    bytes
}

fn check_len(len: usize) -> Result<(), GcmError> {
    if len as u64 > MAX_INPUT_LEN {
        Err(GcmError::TooLong)
    } else {
        Ok(())
    }
}
