//! SRTP and SRTCP protection (RFC 3711, RFC 7714) for one direction of one DTLS-SRTP session,
//! in place and without per-packet allocation, on aws-lc-rs primitives.
//!
//! This module owns session-key derivation, the AES-GCM and AES-CM/HMAC-SHA1 packet transforms,
//! the outbound SRTCP index, and inbound per-SSRC rollover-counter estimation and replay windows.
//! It must not parse RTP or RTCP beyond the fixed fields it needs (the caller supplies the RTP
//! header length), must not track outbound RTP sequence numbers or ROCs (the caller owns
//! sequence numbering), and must not create any inbound per-SSRC state for a packet that has
//! not authenticated — unauthenticated input can only cost CPU, never memory.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod aes_cm;
mod aes_gcm;
mod key_derivation;
mod replay_window;

#[cfg(test)]
mod interop_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use aes_cm::AesCmTransform;
use aes_gcm::AesGcmTransform;
use replay_window::ReplayWindow;

pub use replay_window::REPLAY_WINDOW_SIZE;

/// Inbound SSRCs (per packet kind) a context tracks at most. Only authenticated packets create
/// state, so reaching this means the authenticated peer is misbehaving, not an attacker.
pub const MAX_INBOUND_STREAMS: usize = 1024;

/// Fixed RTP header length (RFC 3550 §5.1) before CSRCs and extensions.
const RTP_FIXED_HEADER_LEN: usize = 12;
/// RTCP header plus sender SSRC: the part of an SRTCP packet that is never encrypted.
const RTCP_CLEAR_PREFIX_LEN: usize = 8;
const SRTCP_INDEX_LEN: usize = 4;
const SRTCP_E_BIT: u32 = 0x8000_0000;
/// SRTCP indices are 31 bits (RFC 3711 §3.4); the key must be replaced before they run out.
const MAX_SRTCP_INDEX: u32 = 0x7FFF_FFFF;
/// The SRTP packet index is 48 bits: ROC (32) || SEQ (16).
const MAX_SRTP_INDEX: u64 = (1 << 48) - 1;

/// Why a packet could not be protected or unprotected. Inbound errors mean "drop the packet";
/// none of them leave state behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The buffer cannot hold the header, trailer or tag the operation needs, or `header_len`
    /// points outside it.
    #[error("packet too short for SRTP/SRTCP processing")]
    TooShort,
    /// The authentication tag did not verify: forged, corrupted, or keyed for another session.
    #[error("SRTP/SRTCP authentication failed")]
    AuthFailed,
    /// The packet index was already accepted or is older than the replay window.
    #[error("SRTP/SRTCP packet replayed or too old")]
    Replayed,
    /// An authenticated packet from a new SSRC arrived while `MAX_INBOUND_STREAMS` are tracked.
    #[error("too many inbound SRTP/SRTCP streams")]
    TooManyStreams,
    /// Master key, master salt or exported keying material of the wrong length for the profile.
    #[error("SRTP master key or salt has the wrong length")]
    BadKeyLength,
    /// The 31-bit SRTCP index or 48-bit SRTP index is exhausted; the session must be rekeyed.
    #[error("SRTP/SRTCP packet index exhausted; rekey required")]
    IndexExhausted,
    /// aws-lc-rs refused an operation that valid input never triggers.
    #[error("SRTP cryptographic primitive failed")]
    CryptoFailure,
}

/// The negotiated DTLS-SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// `SRTP_AEAD_AES_128_GCM` (0x0007), RFC 7714: 16-octet tag, 12-octet salt.
    AeadAes128Gcm,
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (0x0001), RFC 3711: 10-octet tag, 14-octet salt.
    Aes128CmHmacSha1_80,
}

impl SrtpProfile {
    /// The profile for a DTLS `use_srtp` protection profile id, if we support it.
    pub const fn from_dtls_id(id: u16) -> Option<Self> {
        match id {
            0x0007 => Some(Self::AeadAes128Gcm),
            0x0001 => Some(Self::Aes128CmHmacSha1_80),
            _ => None,
        }
    }

    /// The DTLS `use_srtp` protection profile id.
    pub const fn dtls_id(self) -> u16 {
        match self {
            Self::AeadAes128Gcm => 0x0007,
            Self::Aes128CmHmacSha1_80 => 0x0001,
        }
    }

    /// Master key length in octets.
    pub const fn key_len(self) -> usize {
        16
    }

    /// Master salt length in octets.
    pub const fn salt_len(self) -> usize {
        match self {
            Self::AeadAes128Gcm => aes_gcm::SALT_LEN,
            Self::Aes128CmHmacSha1_80 => aes_cm::SALT_LEN,
        }
    }

    /// Octets to export from DTLS (RFC 5764 §4.2): two keys and two salts.
    pub const fn keying_material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    /// Authentication tag length, which is all SRTP adds to an RTP packet.
    pub const fn rtp_tag_len(self) -> usize {
        match self {
            Self::AeadAes128Gcm => aes_gcm::TAG_LEN,
            Self::Aes128CmHmacSha1_80 => aes_cm::TAG_LEN,
        }
    }

    /// Octets SRTCP adds to an RTCP packet: tag plus `E || SRTCP index`.
    pub const fn rtcp_overhead(self) -> usize {
        self.rtp_tag_len() + SRTCP_INDEX_LEN
    }

    /// Splits RFC 5764 §4.2 exported keying material
    /// (`client_write_key || server_write_key || client_write_salt || server_write_salt`)
    /// into the keys this endpoint protects with (`local`) and unprotects with (`remote`).
    pub fn split_keying_material(
        self,
        keying_material: &[u8],
        role: DtlsRole,
    ) -> Result<SrtpKeyingMaterial<'_>, SrtpError> {
        if keying_material.len() != self.keying_material_len() {
            return Err(SrtpError::BadKeyLength);
        }
        let (client_key, rest) = keying_material
            .split_at_checked(self.key_len())
            .ok_or(SrtpError::BadKeyLength)?;
        let (server_key, salts) = rest
            .split_at_checked(self.key_len())
            .ok_or(SrtpError::BadKeyLength)?;
        let (client_salt, server_salt) = salts
            .split_at_checked(self.salt_len())
            .ok_or(SrtpError::BadKeyLength)?;
        let client_write = SrtpMasterKey {
            key: client_key,
            salt: client_salt,
        };
        let server_write = SrtpMasterKey {
            key: server_key,
            salt: server_salt,
        };
        Ok(match role {
            DtlsRole::Server => SrtpKeyingMaterial {
                local: server_write,
                remote: client_write,
            },
            DtlsRole::Client => SrtpKeyingMaterial {
                local: client_write,
                remote: server_write,
            },
        })
    }
}

/// Which side of the DTLS handshake this endpoint was; decides which exported half is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// We sent the ClientHello: we protect with `client_write_*`.
    Client,
    /// We answered the ClientHello (the SFU's usual role, ICE-lite and `a=setup:passive`): we
    /// protect with `server_write_*`.
    Server,
}

/// A master key and salt borrowed from exported keying material.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SrtpMasterKey<'a> {
    /// Master key, `SrtpProfile::key_len` octets.
    pub key: &'a [u8],
    /// Master salt, `SrtpProfile::salt_len` octets.
    pub salt: &'a [u8],
}

impl fmt::Debug for SrtpMasterKey<'_> {
    // Keys must not reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpMasterKey").finish_non_exhaustive()
    }
}

/// Both directions' master keys of one DTLS-SRTP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeyingMaterial<'a> {
    /// Protects what this endpoint sends (outbound context).
    pub local: SrtpMasterKey<'a>,
    /// Unprotects what the peer sends (inbound context).
    pub remote: SrtpMasterKey<'a>,
}

// GCM's expanded keys (2 x 432 bytes) stay inline: they are read for every packet.
#[allow(clippy::large_enum_variant)]
enum Transform {
    AesGcm(AesGcmTransform),
    /// Boxed: expanded AES and HMAC-SHA1 key schedules are ~3.5 KB, kept off the context itself.
    AesCm(Box<AesCmTransform>),
}

/// SRTP/SRTCP state for one direction of one session: session keys derived once, the outbound
/// SRTCP index, and (for inbound use) per-SSRC ROC estimates and replay windows.
pub struct SrtpContext {
    profile: SrtpProfile,
    transform: Transform,
    /// Inbound RTP streams; the window's highest index carries the ROC estimate.
    rtp_streams: HashMap<u32, ReplayWindow>,
    /// Inbound RTCP senders' SRTCP index windows.
    rtcp_streams: HashMap<u32, ReplayWindow>,
    /// SRTCP index of the next outbound packet. One counter for all SSRCs keeps (key, IV) unique.
    next_srtcp_index: u32,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("rtp_streams", &self.rtp_streams.len())
            .field("rtcp_streams", &self.rtcp_streams.len())
            .field("next_srtcp_index", &self.next_srtcp_index)
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Derives the session keys for `profile` from a master key and salt.
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        if master_key.len() != profile.key_len() || master_salt.len() != profile.salt_len() {
            return Err(SrtpError::BadKeyLength);
        }
        let transform = match profile {
            SrtpProfile::AeadAes128Gcm => {
                Transform::AesGcm(AesGcmTransform::new(master_key, master_salt)?)
            }
            SrtpProfile::Aes128CmHmacSha1_80 => {
                Transform::AesCm(Box::new(AesCmTransform::new(master_key, master_salt)?))
            }
        };
        Ok(Self {
            profile,
            transform,
            rtp_streams: HashMap::new(),
            rtcp_streams: HashMap::new(),
            // libsrtp sends index 1 first; matching it keeps peers' replay windows unsurprised.
            next_srtcp_index: 1,
        })
    }

    /// The (outbound, inbound) contexts of a DTLS-SRTP session from its exported keying material.
    pub fn from_keying_material(
        profile: SrtpProfile,
        keying_material: &[u8],
        role: DtlsRole,
    ) -> Result<(Self, Self), SrtpError> {
        let keys = profile.split_keying_material(keying_material, role)?;
        Ok((
            Self::new(profile, keys.local.key, keys.local.salt)?,
            Self::new(profile, keys.remote.key, keys.remote.salt)?,
        ))
    }

    /// The profile this context was keyed for.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Inbound SSRC states (RTP plus RTCP) created so far — only ever by authenticated packets.
    pub fn inbound_stream_count(&self) -> usize {
        self.rtp_streams.len() + self.rtcp_streams.len()
    }

    /// Outbound RTP. `buf` holds a plaintext RTP packet whose header (including CSRCs and
    /// extensions) is `header_len` octets. Encrypts the payload in place and appends the tag, so
    /// `buf` grows by `profile().rtp_tag_len()`; give it that much spare capacity to avoid a
    /// reallocation. `roc` is the rollover counter the caller tracks for this SSRC.
    ///
    /// The caller must never protect the same (SSRC, ROC, SEQ) twice with one context: for GCM a
    /// repeated nonce reveals the authentication key.
    pub fn protect_rtp(
        &mut self,
        buf: &mut Vec<u8>,
        header_len: usize,
        roc: u32,
    ) -> Result<(), SrtpError> {
        if header_len < RTP_FIXED_HEADER_LEN || header_len > buf.len() {
            return Err(SrtpError::TooShort);
        }
        let (ssrc, sequence_number) = rtp_ssrc_and_sequence(buf)?;
        // Reserve before encrypting so nothing can fail between encryption and the tag append.
        buf.reserve(self.profile.rtp_tag_len());
        match &self.transform {
            Transform::AesGcm(gcm) => gcm.protect_rtp(buf, header_len, ssrc, roc, sequence_number),
            Transform::AesCm(cm) => {
                cm.protect_rtp(buf, header_len, ssrc, srtp_index(roc, sequence_number))
            }
        }
    }

    /// [`Self::protect_rtp`] of `buf` (the header only) followed by `payload`.
    pub fn protect_rtp_from(
        &mut self,
        buf: &mut Vec<u8>,
        header_len: usize,
        roc: u32,
        payload: &[u8],
    ) -> Result<(), SrtpError> {
        if header_len < RTP_FIXED_HEADER_LEN || header_len != buf.len() {
            return Err(SrtpError::TooShort);
        }
        let (ssrc, sequence_number) = rtp_ssrc_and_sequence(buf)?;
        match &self.transform {
            Transform::AesGcm(gcm) => {
                gcm.protect_rtp_from(buf, header_len, ssrc, roc, sequence_number, payload)
            }
            Transform::AesCm(_) => {
                buf.extend_from_slice(payload);
                self.protect_rtp(buf, header_len, roc)
            }
        }
    }

    /// Inbound RTP: authenticates, checks replay, decrypts in place. Returns the plaintext length
    /// (header plus payload, tag removed). `header_len` is the RTP header length the caller
    /// parsed. On error the packet must be dropped; its payload octets may have been altered.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], header_len: usize) -> Result<usize, SrtpError> {
        let min_len = header_len
            .checked_add(self.profile.rtp_tag_len())
            .ok_or(SrtpError::TooShort)?;
        if header_len < RTP_FIXED_HEADER_LEN || buf.len() < min_len {
            return Err(SrtpError::TooShort);
        }
        let (ssrc, sequence_number) = rtp_ssrc_and_sequence(buf)?;

        // Guess the index from read-only state; nothing is written until the tag verifies.
        let index = match self.rtp_streams.get(&ssrc) {
            Some(window) => {
                let index = estimate_srtp_index(window.highest(), sequence_number)?;
                window.check(index)?;
                index
            }
            None if self.rtp_streams.len() >= MAX_INBOUND_STREAMS => {
                return Err(SrtpError::TooManyStreams);
            }
            // A stream's first packet is taken to have ROC 0, as libsrtp does.
            None => u64::from(sequence_number),
        };

        let roc = (index >> 16) as u32;
        let plain_len = match &self.transform {
            Transform::AesGcm(gcm) => {
                gcm.unprotect_rtp(buf, header_len, ssrc, roc, sequence_number)?
            }
            Transform::AesCm(cm) => cm.unprotect_rtp(buf, header_len, ssrc, index)?,
        };

        self.rtp_streams
            .entry(ssrc)
            .and_modify(|window| window.accept(index))
            .or_insert_with(|| ReplayWindow::new(index));
        Ok(plain_len)
    }

    /// Outbound RTCP (a compound packet): encrypts from octet 8 in place, appends `E || SRTCP
    /// index` and the tag, so `buf` grows by `profile().rtcp_overhead()`.
    pub fn protect_rtcp(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        let ssrc = read_u32(buf, 4).ok_or(SrtpError::TooShort)?;
        let index = self.next_srtcp_index;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        buf.reserve(self.profile.rtcp_overhead());
        match &self.transform {
            Transform::AesGcm(gcm) => gcm.protect_rtcp(buf, ssrc, index)?,
            Transform::AesCm(cm) => cm.protect_rtcp(buf, ssrc, index)?,
        }
        // Only a packet that went out consumes an index.
        self.next_srtcp_index = index + 1;
        Ok(())
    }

    /// Inbound SRTCP: authenticates, replay-checks the SRTCP index per sender SSRC, decrypts if
    /// the E bit is set. Returns the plaintext RTCP length. On error the packet must be dropped.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_tag_len();
        if buf.len() < RTCP_CLEAR_PREFIX_LEN + SRTCP_INDEX_LEN + tag_len {
            return Err(SrtpError::TooShort);
        }
        let ssrc = read_u32(buf, 4).ok_or(SrtpError::TooShort)?;
        // GCM puts the index word after the tag (RFC 7714 §9), AES-CM before it (RFC 3711 §3.4).
        let index_at = match self.transform {
            Transform::AesGcm(_) => buf.len() - SRTCP_INDEX_LEN,
            Transform::AesCm(_) => buf.len() - tag_len - SRTCP_INDEX_LEN,
        };
        let index_word = read_u32(buf, index_at).ok_or(SrtpError::TooShort)?;
        let index = u64::from(index_word & MAX_SRTCP_INDEX);

        match self.rtcp_streams.get(&ssrc) {
            Some(window) => window.check(index)?,
            None if self.rtcp_streams.len() >= MAX_INBOUND_STREAMS => {
                return Err(SrtpError::TooManyStreams);
            }
            None => {}
        }

        let plain_len = match &self.transform {
            Transform::AesGcm(gcm) => gcm.unprotect_rtcp(buf, ssrc, index_word)?,
            Transform::AesCm(cm) => cm.unprotect_rtcp(buf, ssrc, index_word)?,
        };

        self.rtcp_streams
            .entry(ssrc)
            .and_modify(|window| window.accept(index))
            .or_insert_with(|| ReplayWindow::new(index));
        Ok(plain_len)
    }
}

/// The packet index of RFC 3711 §3.3.1: `2^16 * ROC + SEQ`.
fn srtp_index(roc: u32, sequence_number: u16) -> u64 {
    (u64::from(roc) << 16) | u64::from(sequence_number)
}

/// RFC 3711 §3.3.1 / Appendix A: the index of `sequence_number` relative to the highest
/// authenticated index, choosing the ROC (previous, current or next) that lands closest.
fn estimate_srtp_index(highest: u64, sequence_number: u16) -> Result<u64, SrtpError> {
    const HALF: u16 = 1 << 15;
    let roc = highest >> 16;
    let highest_sequence = (highest & 0xFFFF) as u16;
    let guessed_roc = if highest_sequence < HALF {
        if sequence_number > highest_sequence && sequence_number - highest_sequence > HALF {
            // Belongs before the last wrap. Before the stream's first wrap there is no earlier
            // ROC: the packet predates everything accepted, so it can only be old.
            roc.checked_sub(1).ok_or(SrtpError::Replayed)?
        } else {
            roc
        }
    } else if highest_sequence - HALF > sequence_number {
        roc + 1
    } else {
        roc
    };
    let index = (guessed_roc << 16) | u64::from(sequence_number);
    if index > MAX_SRTP_INDEX {
        return Err(SrtpError::IndexExhausted);
    }
    Ok(index)
}

fn rtp_ssrc_and_sequence(buf: &[u8]) -> Result<(u32, u16), SrtpError> {
    let ssrc = read_u32(buf, 8).ok_or(SrtpError::TooShort)?;
    let sequence_number = buf
        .get(2..4)
        .and_then(|bytes| <[u8; 2]>::try_from(bytes).ok())
        .map(u16::from_be_bytes)
        .ok_or(SrtpError::TooShort)?;
    Ok((ssrc, sequence_number))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    <[u8; 4]>::try_from(bytes).ok().map(u32::from_be_bytes)
}

/// Overwrites a derived session key once it has been expanded into a cipher key. `black_box`
/// keeps the compiler from dropping the dead store.
fn wipe(secret: &mut [u8]) {
    secret.fill(0);
    std::hint::black_box(secret);
}
