//! STUN (RFC 5389 / RFC 8489) message codec for ICE connectivity checks.
//!
//! This module owns the wire format only: [`StunMessage::parse`] is a
//! zero-allocation, zero-copy *view* over one received datagram that validates
//! the framing and decodes the attributes ICE needs, the `verify_*` methods
//! check FINGERPRINT (CRC-32) and short-term-credential MESSAGE-INTEGRITY
//! (HMAC-SHA1) in place, and the `write_*` functions encode binding requests,
//! success and error responses into a caller-provided buffer that is reused
//! between calls. It must not hold state, own sockets, read clocks, decide
//! whether a check is acceptable (that is `ice_lite`'s job) or panic on any
//! input: every byte it reads comes from the network.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use aws_lc_rs::{constant_time, hmac};

/// Length of the fixed STUN header.
pub const HEADER_LEN: usize = 20;
/// The magic cookie every RFC 5389 message carries in bytes 4..8.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Parsing stops with [`StunError::TooManyAttributes`] beyond this many attributes.
pub const MAX_ATTRIBUTES: usize = 32;
/// How many unknown comprehension-required attribute types a view remembers.
pub const MAX_REPORTED_UNKNOWN: usize = 4;
/// Length of a MESSAGE-INTEGRITY value (HMAC-SHA1).
pub const INTEGRITY_LEN: usize = 20;
/// XORed into the CRC-32 to form the FINGERPRINT value ("STUN").
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// RFC 8489 §14.3: USERNAME must be shorter than 513 bytes.
pub const MAX_USERNAME_LEN: usize = 513;
/// RFC 8489 §14.8: the reason phrase is at most 763 bytes.
pub const MAX_REASON_LEN: usize = 763;
/// Writers refuse UNKNOWN-ATTRIBUTES lists longer than this.
pub const MAX_UNKNOWN_ATTRIBUTES_WRITTEN: usize = 16;

/// STUN attribute types used or recognised by this codec.
pub mod attr {
    /// MAPPED-ADDRESS (recognised, not decoded).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// REALM (recognised, not decoded).
    pub const REALM: u16 = 0x0014;
    /// NONCE (recognised, not decoded).
    pub const NONCE: u16 = 0x0015;
    /// MESSAGE-INTEGRITY-SHA256 (recognised, not used by ICE).
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (RFC 8445).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445).
    pub const ICE_CONTROLLING: u16 = 0x802A;

    /// Attribute types below 0x8000 are comprehension-required.
    #[must_use]
    pub const fn is_comprehension_required(attr_type: u16) -> bool {
        attr_type < 0x8000
    }
}

/// Why a datagram is not a well-formed STUN message, or why a writer refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Fewer than 20 bytes: no room for the header.
    #[error("{len} bytes is shorter than the 20-byte STUN header")]
    TooShort {
        /// Datagram length.
        len: usize,
    },
    /// The two most significant bits of the message type are not zero.
    #[error("the two most significant bits of the STUN message type are not zero")]
    NotStun,
    /// Bytes 4..8 are not the RFC 5389 magic cookie.
    #[error("magic cookie {0:#010x} is not 0x2112a442")]
    BadMagicCookie(u32),
    /// The header's message length is not a multiple of 4.
    #[error("message length {declared} is not a multiple of 4")]
    UnalignedLength {
        /// Length from the header.
        declared: u16,
    },
    /// The header's message length disagrees with the datagram size.
    #[error("message length {declared} does not match the {actual} bytes after the header")]
    BadLength {
        /// Length from the header.
        declared: u16,
        /// Bytes actually present after the header.
        actual: usize,
    },
    /// An attribute header or (padded) value runs past the end of the message.
    #[error("attribute at offset {offset} runs past the end of the message")]
    TruncatedAttribute {
        /// Offset of the attribute header from the start of the message.
        offset: usize,
    },
    /// A known attribute has a value of the wrong size or content.
    #[error("attribute {attr_type:#06x} has a malformed value")]
    BadAttribute {
        /// The attribute type.
        attr_type: u16,
    },
    /// FINGERPRINT must be the last attribute.
    #[error("attribute after FINGERPRINT")]
    AttributeAfterFingerprint,
    /// More than [`MAX_ATTRIBUTES`] attributes.
    #[error("more than {max} attributes", max = MAX_ATTRIBUTES)]
    TooManyAttributes,
    /// Writer: USERNAME longer than [`MAX_USERNAME_LEN`].
    #[error("USERNAME of {len} bytes is longer than {max}", max = MAX_USERNAME_LEN)]
    UsernameTooLong {
        /// Offending length.
        len: usize,
    },
    /// Writer: error code outside 300..=699.
    #[error("error code {0} is outside 300..=699")]
    BadErrorCode(u16),
    /// Writer: reason phrase longer than [`MAX_REASON_LEN`].
    #[error("reason phrase of {len} bytes is longer than {max}", max = MAX_REASON_LEN)]
    ReasonTooLong {
        /// Offending length.
        len: usize,
    },
    /// Writer: more than [`MAX_UNKNOWN_ATTRIBUTES_WRITTEN`] unknown attributes.
    #[error("{count} unknown attributes is more than {max}", max = MAX_UNKNOWN_ATTRIBUTES_WRITTEN)]
    TooManyUnknownAttributes {
        /// Offending count.
        count: usize,
    },
}

/// The class bits of a STUN message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StunClass {
    /// 0b00.
    Request,
    /// 0b01.
    Indication,
    /// 0b10.
    SuccessResponse,
    /// 0b11.
    ErrorResponse,
}

impl StunClass {
    const fn bits(self) -> u16 {
        match self {
            Self::Request => 0b00,
            Self::Indication => 0b01,
            Self::SuccessResponse => 0b10,
            Self::ErrorResponse => 0b11,
        }
    }

    const fn from_bits(bits: u16) -> Self {
        match bits & 0b11 {
            0b00 => Self::Request,
            0b01 => Self::Indication,
            0b10 => Self::SuccessResponse,
            _ => Self::ErrorResponse,
        }
    }
}

/// The 12-bit method of a STUN message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StunMethod(u16);

impl StunMethod {
    /// Binding, the only method ICE uses.
    pub const BINDING: Self = Self(0x001);

    /// Method number (0..=0xFFF).
    #[must_use]
    pub const fn value(self) -> u16 {
        self.0
    }
}

/// Interleaves class and method into the 14-bit message type (RFC 5389 §6).
const fn encode_message_type(class: StunClass, method: StunMethod) -> u16 {
    let m = method.0;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

const fn decode_message_type(message_type: u16) -> (StunClass, StunMethod) {
    let class = ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10);
    let method =
        (message_type & 0x000F) | ((message_type >> 1) & 0x0070) | ((message_type >> 2) & 0x0F80);
    (StunClass::from_bits(class), StunMethod(method))
}

/// The ICE role a check claims, with its tie-breaker (ICE-CONTROLLING / ICE-CONTROLLED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRole {
    /// ICE-CONTROLLING with this tie-breaker.
    Controlling(u64),
    /// ICE-CONTROLLED with this tie-breaker.
    Controlled(u64),
}

/// A decoded ERROR-CODE attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// Class * 100 + number, 300..=699.
    pub code: u16,
    /// The reason phrase as sent (UTF-8 is not checked).
    pub reason: &'a [u8],
}

/// Where the FINGERPRINT attribute sits and what it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Offset of the attribute header from the start of the message.
    pub offset: usize,
    /// The received FINGERPRINT value.
    pub value: u32,
}

/// A short-term-credential MESSAGE-INTEGRITY key (the ICE password), ready for HMAC-SHA1.
///
/// Build it once per password and reuse it: it holds the keyed HMAC state.
#[derive(Clone)]
pub struct IntegrityKey(hmac::Key);

impl IntegrityKey {
    /// Short-term credential key: the password bytes (ICE passwords are
    /// ice-chars, for which SASLprep / OpaqueString is the identity).
    #[must_use]
    pub fn new(password: &[u8]) -> Self {
        Self(hmac::Key::new(
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            password,
        ))
    }
}

impl fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

/// A validated, borrowed view of one STUN message.
///
/// Only the first occurrence of an attribute is decoded; attributes after
/// MESSAGE-INTEGRITY other than FINGERPRINT are framed and counted but
/// otherwise ignored (RFC 5389 §15.4), so they cannot smuggle unauthenticated
/// USERNAME / USE-CANDIDATE / role attributes into an authenticated check.
#[derive(Debug, Clone)]
pub struct StunMessage<'a> {
    raw: &'a [u8],
    class: StunClass,
    method: StunMethod,
    transaction_id: [u8; 12],
    attribute_count: usize,
    username: Option<&'a [u8]>,
    priority: Option<u32>,
    use_candidate: bool,
    ice_controlling: Option<u64>,
    ice_controlled: Option<u64>,
    integrity_offset: Option<usize>,
    fingerprint: Option<Fingerprint>,
    xor_mapped_address: Option<SocketAddr>,
    error_code: Option<ErrorCode<'a>>,
    unknown_required: [u16; MAX_REPORTED_UNKNOWN],
    unknown_required_len: usize,
}

impl<'a> StunMessage<'a> {
    /// Validates the framing of `buf` (which must be exactly one STUN message)
    /// and decodes the attributes ICE uses. Never allocates, never panics.
    ///
    /// # Errors
    /// A [`StunError`] naming the first framing or attribute problem found.
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        let Some((header, body)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Err(StunError::TooShort { len: buf.len() });
        };
        let [t0, t1, l0, l1, c0, c1, c2, c3, transaction_id @ ..] = *header;
        if t0 & 0xC0 != 0 {
            return Err(StunError::NotStun);
        }
        let cookie = u32::from_be_bytes([c0, c1, c2, c3]);
        if cookie != MAGIC_COOKIE {
            return Err(StunError::BadMagicCookie(cookie));
        }
        let declared = u16::from_be_bytes([l0, l1]);
        if declared % 4 != 0 {
            return Err(StunError::UnalignedLength { declared });
        }
        if usize::from(declared) != body.len() {
            return Err(StunError::BadLength {
                declared,
                actual: body.len(),
            });
        }
        let (class, method) = decode_message_type(u16::from_be_bytes([t0, t1]));

        let mut msg = Self {
            raw: buf,
            class,
            method,
            transaction_id,
            attribute_count: 0,
            username: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            integrity_offset: None,
            fingerprint: None,
            xor_mapped_address: None,
            error_code: None,
            unknown_required: [0; MAX_REPORTED_UNKNOWN],
            unknown_required_len: 0,
        };

        let mut rest = body;
        let mut offset = HEADER_LEN;
        while !rest.is_empty() {
            if msg.fingerprint.is_some() {
                return Err(StunError::AttributeAfterFingerprint);
            }
            if msg.attribute_count == MAX_ATTRIBUTES {
                return Err(StunError::TooManyAttributes);
            }
            msg.attribute_count += 1;
            let Some((&[a0, a1, v0, v1], after_header)) = rest.split_first_chunk::<4>() else {
                return Err(StunError::TruncatedAttribute { offset });
            };
            let attr_type = u16::from_be_bytes([a0, a1]);
            let value_len = usize::from(u16::from_be_bytes([v0, v1]));
            let padded_len = value_len.next_multiple_of(4);
            let Some((padded_value, next)) = after_header.split_at_checked(padded_len) else {
                return Err(StunError::TruncatedAttribute { offset });
            };
            let Some(value) = padded_value.get(..value_len) else {
                return Err(StunError::TruncatedAttribute { offset });
            };
            msg.decode_attribute(attr_type, value, offset)?;
            offset += 4 + padded_len;
            rest = next;
        }
        Ok(msg)
    }

    fn decode_attribute(
        &mut self,
        attr_type: u16,
        value: &'a [u8],
        offset: usize,
    ) -> Result<(), StunError> {
        let bad = StunError::BadAttribute { attr_type };
        if attr_type == attr::FINGERPRINT {
            let bytes: [u8; 4] = value.try_into().map_err(|_| bad)?;
            self.fingerprint = Some(Fingerprint {
                offset,
                value: u32::from_be_bytes(bytes),
            });
            return Ok(());
        }
        if self.integrity_offset.is_some() {
            // RFC 5389 §15.4: everything after MESSAGE-INTEGRITY but FINGERPRINT is ignored.
            return Ok(());
        }
        match attr_type {
            attr::MESSAGE_INTEGRITY => {
                if value.len() != INTEGRITY_LEN {
                    return Err(bad);
                }
                self.integrity_offset = Some(offset);
            }
            attr::USERNAME => {
                self.username.get_or_insert(value);
            }
            attr::PRIORITY => {
                let bytes: [u8; 4] = value.try_into().map_err(|_| bad)?;
                self.priority.get_or_insert(u32::from_be_bytes(bytes));
            }
            attr::USE_CANDIDATE => {
                if !value.is_empty() {
                    return Err(bad);
                }
                self.use_candidate = true;
            }
            attr::ICE_CONTROLLING => {
                let bytes: [u8; 8] = value.try_into().map_err(|_| bad)?;
                self.ice_controlling
                    .get_or_insert(u64::from_be_bytes(bytes));
            }
            attr::ICE_CONTROLLED => {
                let bytes: [u8; 8] = value.try_into().map_err(|_| bad)?;
                self.ice_controlled.get_or_insert(u64::from_be_bytes(bytes));
            }
            attr::XOR_MAPPED_ADDRESS => {
                let addr = decode_xor_address(value, &self.transaction_id).ok_or(bad)?;
                self.xor_mapped_address.get_or_insert(addr);
            }
            attr::ERROR_CODE => {
                let Some((&[_, _, class, number], reason)) = value.split_first_chunk::<4>() else {
                    return Err(bad);
                };
                let class = class & 0x07;
                if !(3..=6).contains(&class) || number > 99 {
                    return Err(bad);
                }
                let code = u16::from(class) * 100 + u16::from(number);
                self.error_code.get_or_insert(ErrorCode { code, reason });
            }
            attr::MAPPED_ADDRESS
            | attr::UNKNOWN_ATTRIBUTES
            | attr::REALM
            | attr::NONCE
            | attr::MESSAGE_INTEGRITY_SHA256 => {}
            other if attr::is_comprehension_required(other) => {
                if let Some(slot) = self.unknown_required.get_mut(self.unknown_required_len) {
                    *slot = other;
                    self.unknown_required_len += 1;
                }
            }
            _ => {} // unknown comprehension-optional: skipped
        }
        Ok(())
    }

    /// The whole message as received.
    #[must_use]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Message class.
    #[must_use]
    pub fn class(&self) -> StunClass {
        self.class
    }

    /// Message method.
    #[must_use]
    pub fn method(&self) -> StunMethod {
        self.method
    }

    /// Is this a Binding request (an ICE connectivity check)?
    #[must_use]
    pub fn is_binding_request(&self) -> bool {
        self.class == StunClass::Request && self.method == StunMethod::BINDING
    }

    /// The 96-bit transaction id.
    #[must_use]
    pub fn transaction_id(&self) -> [u8; 12] {
        self.transaction_id
    }

    /// Number of attributes framed (including ignored ones).
    #[must_use]
    pub fn attribute_count(&self) -> usize {
        self.attribute_count
    }

    /// USERNAME value (for ICE: `"<receiver ufrag>:<sender ufrag>"`).
    #[must_use]
    pub fn username(&self) -> Option<&'a [u8]> {
        self.username
    }

    /// PRIORITY value.
    #[must_use]
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }

    /// Whether USE-CANDIDATE is present.
    #[must_use]
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    /// ICE-CONTROLLING tie-breaker.
    #[must_use]
    pub fn ice_controlling(&self) -> Option<u64> {
        self.ice_controlling
    }

    /// ICE-CONTROLLED tie-breaker.
    #[must_use]
    pub fn ice_controlled(&self) -> Option<u64> {
        self.ice_controlled
    }

    /// Offset of the MESSAGE-INTEGRITY attribute header from the start of the message.
    #[must_use]
    pub fn message_integrity_offset(&self) -> Option<usize> {
        self.integrity_offset
    }

    /// The FINGERPRINT attribute, if present (it is then the last attribute).
    #[must_use]
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint
    }

    /// Decoded XOR-MAPPED-ADDRESS.
    #[must_use]
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped_address
    }

    /// Decoded ERROR-CODE.
    #[must_use]
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        self.error_code
    }

    /// Unknown comprehension-required attribute types (at most
    /// [`MAX_REPORTED_UNKNOWN`] are remembered), before MESSAGE-INTEGRITY.
    #[must_use]
    pub fn unknown_comprehension_required(&self) -> &[u16] {
        self.unknown_required
            .get(..self.unknown_required_len)
            .unwrap_or(&[])
    }

    /// Checks FINGERPRINT: CRC-32 of every byte before the attribute, XOR 0x5354554E.
    /// `false` when absent.
    #[must_use]
    pub fn verify_fingerprint(&self) -> bool {
        let Some(fingerprint) = self.fingerprint else {
            return false;
        };
        let Some(covered) = self.raw.get(..fingerprint.offset) else {
            return false;
        };
        crc32fast::hash(covered) ^ FINGERPRINT_XOR == fingerprint.value
    }

    /// Checks MESSAGE-INTEGRITY with the short-term credential `password`.
    /// Prefer [`Self::verify_integrity_with`] with a cached [`IntegrityKey`].
    #[must_use]
    pub fn verify_integrity(&self, password: &[u8]) -> bool {
        self.verify_integrity_with(&IntegrityKey::new(password))
    }

    /// Checks MESSAGE-INTEGRITY: HMAC-SHA1 over the message up to the attribute,
    /// with the header length rewritten to end just after MESSAGE-INTEGRITY
    /// (RFC 5389 §15.4), fed in pieces without copying; constant-time compare.
    /// `false` when absent.
    #[must_use]
    pub fn verify_integrity_with(&self, key: &IntegrityKey) -> bool {
        let Some(offset) = self.integrity_offset else {
            return false;
        };
        let value_start = offset + 4;
        let (Some(message_type), Some(covered), Some(received)) = (
            self.raw.get(..2),
            self.raw.get(4..offset),
            self.raw.get(value_start..value_start + INTEGRITY_LEN),
        ) else {
            return false;
        };
        let Ok(adjusted_len) = u16::try_from(value_start + INTEGRITY_LEN - HEADER_LEN) else {
            return false;
        };
        let mut ctx = hmac::Context::with_key(&key.0);
        ctx.update(message_type);
        ctx.update(&adjusted_len.to_be_bytes());
        ctx.update(covered);
        let tag = ctx.sign();
        constant_time::verify_slices_are_equal(tag.as_ref(), received).is_ok()
    }
}

/// The 16 bytes an address is XORed with: magic cookie then transaction id.
fn xor_pad(transaction_id: &[u8; 12]) -> [u8; 16] {
    let mut pad = [0u8; 16];
    let (cookie, rest) = pad.split_at_mut(4);
    cookie.copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    rest.copy_from_slice(transaction_id);
    pad
}

fn decode_xor_address(value: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let (&[_, family, p0, p1], address) = value.split_first_chunk::<4>()?;
    let port = u16::from_be_bytes([p0, p1]) ^ (MAGIC_COOKIE >> 16) as u16;
    let pad = xor_pad(transaction_id);
    match family {
        0x01 => {
            let bytes: [u8; 4] = address.try_into().ok()?;
            let ip = u32::from_be_bytes(bytes) ^ MAGIC_COOKIE;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        0x02 => {
            let bytes: [u8; 16] = address.try_into().ok()?;
            let ip = u128::from_be_bytes(bytes) ^ u128::from_be_bytes(pad);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                0,
            )))
        }
        _ => None,
    }
}

/// Message lengths handed to this are bounded by the writers' input checks
/// (well under 2 KiB); saturating keeps the conversion panic-free regardless.
fn wire_len(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// Appends one message into a reused buffer. Private: every public writer
/// bounds its variable-length inputs before using it.
struct MessageWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> MessageWriter<'o> {
    fn begin(
        out: &'o mut Vec<u8>,
        class: StunClass,
        method: StunMethod,
        transaction_id: &[u8; 12],
    ) -> Self {
        out.clear();
        out.extend_from_slice(&encode_message_type(class, method).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(transaction_id);
        Self { out }
    }

    fn attribute(&mut self, attr_type: u16, value: &[u8]) {
        self.out.extend_from_slice(&attr_type.to_be_bytes());
        self.out
            .extend_from_slice(&wire_len(value.len()).to_be_bytes());
        self.out.extend_from_slice(value);
        let padded_end = self.out.len().next_multiple_of(4);
        self.out.resize(padded_end, 0);
    }

    fn xor_address(&mut self, addr: SocketAddr, transaction_id: &[u8; 12]) {
        let [p0, p1] = (addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes();
        match addr.ip() {
            IpAddr::V4(ip) => {
                let [a0, a1, a2, a3] = (u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes();
                self.attribute(attr::XOR_MAPPED_ADDRESS, &[0, 0x01, p0, p1, a0, a1, a2, a3]);
            }
            IpAddr::V6(ip) => {
                let xored = u128::from(ip) ^ u128::from_be_bytes(xor_pad(transaction_id));
                let mut value = [0u8; 20];
                let (head, address) = value.split_at_mut(4);
                head.copy_from_slice(&[0, 0x02, p0, p1]);
                address.copy_from_slice(&xored.to_be_bytes());
                self.attribute(attr::XOR_MAPPED_ADDRESS, &value);
            }
        }
    }

    /// Rewrites the header length as if the message ended `extra` bytes after the current end.
    fn set_length(&mut self, extra: usize) {
        let len = wire_len(self.out.len() + extra - HEADER_LEN).to_be_bytes();
        if let Some(field) = self.out.get_mut(2..4) {
            field.copy_from_slice(&len);
        }
    }

    fn message_integrity(&mut self, key: &IntegrityKey) {
        self.set_length(4 + INTEGRITY_LEN);
        let tag = hmac::sign(&key.0, self.out);
        self.attribute(attr::MESSAGE_INTEGRITY, tag.as_ref());
    }

    /// Appends FINGERPRINT, which also fixes the final header length.
    fn finish_with_fingerprint(mut self) {
        self.set_length(8);
        let crc = crc32fast::hash(self.out) ^ FINGERPRINT_XOR;
        self.attribute(attr::FINGERPRINT, &crc.to_be_bytes());
    }
}

/// Writes a Binding success response: XOR-MAPPED-ADDRESS (IPv4 or IPv6),
/// MESSAGE-INTEGRITY with `integrity_key`, FINGERPRINT. `out` is cleared first.
pub fn write_binding_success(
    transaction_id: &[u8; 12],
    xor_mapped: SocketAddr,
    integrity_key: &IntegrityKey,
    out: &mut Vec<u8>,
) {
    let mut w = MessageWriter::begin(
        out,
        StunClass::SuccessResponse,
        StunMethod::BINDING,
        transaction_id,
    );
    w.xor_address(xor_mapped, transaction_id);
    w.message_integrity(integrity_key);
    w.finish_with_fingerprint();
}

/// Writes a Binding request (ICE connectivity check): USERNAME, PRIORITY,
/// the role attribute if any, USE-CANDIDATE if asked, MESSAGE-INTEGRITY,
/// FINGERPRINT. `out` is cleared first.
///
/// # Errors
/// [`StunError::UsernameTooLong`]; `out` is then left empty.
pub fn write_binding_request(
    transaction_id: &[u8; 12],
    username: &[u8],
    integrity_key: &IntegrityKey,
    priority: u32,
    role: Option<IceRole>,
    use_candidate: bool,
    out: &mut Vec<u8>,
) -> Result<(), StunError> {
    out.clear();
    if username.len() > MAX_USERNAME_LEN {
        return Err(StunError::UsernameTooLong {
            len: username.len(),
        });
    }
    let mut w = MessageWriter::begin(out, StunClass::Request, StunMethod::BINDING, transaction_id);
    w.attribute(attr::USERNAME, username);
    w.attribute(attr::PRIORITY, &priority.to_be_bytes());
    match role {
        Some(IceRole::Controlling(tie_breaker)) => {
            w.attribute(attr::ICE_CONTROLLING, &tie_breaker.to_be_bytes());
        }
        Some(IceRole::Controlled(tie_breaker)) => {
            w.attribute(attr::ICE_CONTROLLED, &tie_breaker.to_be_bytes());
        }
        None => {}
    }
    if use_candidate {
        w.attribute(attr::USE_CANDIDATE, &[]);
    }
    w.message_integrity(integrity_key);
    w.finish_with_fingerprint();
    Ok(())
}

/// Writes a Binding error response: ERROR-CODE, UNKNOWN-ATTRIBUTES when
/// `unknown_attributes` is non-empty, MESSAGE-INTEGRITY when a key is given,
/// FINGERPRINT. `out` is cleared first.
///
/// # Errors
/// [`StunError::BadErrorCode`], [`StunError::ReasonTooLong`] or
/// [`StunError::TooManyUnknownAttributes`]; `out` is then left empty.
pub fn write_binding_error(
    transaction_id: &[u8; 12],
    code: u16,
    reason: &str,
    unknown_attributes: &[u16],
    integrity_key: Option<&IntegrityKey>,
    out: &mut Vec<u8>,
) -> Result<(), StunError> {
    out.clear();
    if !(300..=699).contains(&code) {
        return Err(StunError::BadErrorCode(code));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(StunError::ReasonTooLong { len: reason.len() });
    }
    if unknown_attributes.len() > MAX_UNKNOWN_ATTRIBUTES_WRITTEN {
        return Err(StunError::TooManyUnknownAttributes {
            count: unknown_attributes.len(),
        });
    }
    let mut w = MessageWriter::begin(
        out,
        StunClass::ErrorResponse,
        StunMethod::BINDING,
        transaction_id,
    );
    // Class and number both fit a byte: code is 300..=699.
    let class = u8::try_from(code / 100).unwrap_or(0);
    let number = u8::try_from(code % 100).unwrap_or(0);
    let mut value = [0u8; 4 + MAX_REASON_LEN];
    let head = [0, 0, class, number];
    for (dst, src) in value.iter_mut().zip(head.iter().chain(reason.as_bytes())) {
        *dst = *src;
    }
    w.attribute(
        attr::ERROR_CODE,
        value.get(..4 + reason.len()).unwrap_or(&head),
    );
    if !unknown_attributes.is_empty() {
        let mut list = [0u8; 2 * MAX_UNKNOWN_ATTRIBUTES_WRITTEN];
        for (dst, attr_type) in list.chunks_exact_mut(2).zip(unknown_attributes) {
            dst.copy_from_slice(&attr_type.to_be_bytes());
        }
        w.attribute(
            attr::UNKNOWN_ATTRIBUTES,
            list.get(..2 * unknown_attributes.len()).unwrap_or(&[]),
        );
    }
    if let Some(key) = integrity_key {
        w.message_integrity(key);
    }
    w.finish_with_fingerprint();
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, RngCore, SeedableRng};

    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    const RFC_TRANSACTION_ID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// RFC 5769 §2.1 (SOFTWARE "STUN test client", USERNAME "evtj:h6vY").
    fn sample_request() -> Vec<u8> {
        hex("0001 0058 2112a442 b7e7a701 bc34d686 fa87dfae
             8022 0010 5354554e 20746573 7420636c 69656e74
             0024 0004 6e0001ff
             8029 0008 932ff9b1 51263b36
             0006 0009 6576746a 3a683676 59202020
             0008 0014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
             8028 0004 e57a3bcf")
    }

    /// RFC 5769 §2.2 (192.0.2.1:32853).
    fn sample_ipv4_response() -> Vec<u8> {
        hex("0101 003c 2112a442 b7e7a701 bc34d686 fa87dfae
             8022 000b 74657374 20766563 746f7220
             0020 0008 0001a147 e112a643
             0008 0014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
             8028 0004 c07d4c96")
    }

    /// RFC 5769 §2.3 ([2001:db8:1234:5678:11:2233:4455:6677]:32853).
    fn sample_ipv6_response() -> Vec<u8> {
        hex("0101 0048 2112a442 b7e7a701 bc34d686 fa87dfae
             8022 000b 74657374 20766563 746f7220
             0020 0014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
             0008 0014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
             8028 0004 c8fb0b4c")
    }

    #[test]
    fn rfc5769_sample_request() {
        let buf = sample_request();
        let msg = StunMessage::parse(&buf).unwrap();
        assert!(msg.is_binding_request());
        assert_eq!(msg.class(), StunClass::Request);
        assert_eq!(msg.method(), StunMethod::BINDING);
        assert_eq!(msg.transaction_id(), RFC_TRANSACTION_ID);
        assert_eq!(msg.username(), Some(&b"evtj:h6vY"[..]));
        assert_eq!(msg.priority(), Some(0x6e00_01ff));
        assert_eq!(msg.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
        assert_eq!(msg.ice_controlling(), None);
        assert!(!msg.use_candidate());
        assert_eq!(msg.attribute_count(), 6);
        assert_eq!(msg.message_integrity_offset(), Some(76));
        assert_eq!(
            msg.fingerprint(),
            Some(Fingerprint {
                offset: 100,
                value: 0xe57a_3bcf
            })
        );
        assert!(msg.unknown_comprehension_required().is_empty());
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(PASSWORD));
        assert!(msg.verify_integrity_with(&IntegrityKey::new(PASSWORD)));
        assert!(!msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"));
        assert!(!msg.verify_integrity(b""));
    }

    #[test]
    fn rfc5769_ipv4_response() {
        let buf = sample_ipv4_response();
        let msg = StunMessage::parse(&buf).unwrap();
        assert_eq!(msg.class(), StunClass::SuccessResponse);
        assert_eq!(msg.method(), StunMethod::BINDING);
        assert!(!msg.is_binding_request());
        assert_eq!(msg.transaction_id(), RFC_TRANSACTION_ID);
        assert_eq!(
            msg.xor_mapped_address(),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(PASSWORD));
        assert!(!msg.verify_integrity(b"wrong"));
    }

    #[test]
    fn rfc5769_ipv6_response() {
        let buf = sample_ipv6_response();
        let msg = StunMessage::parse(&buf).unwrap();
        assert_eq!(msg.class(), StunClass::SuccessResponse);
        assert_eq!(
            msg.xor_mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(PASSWORD));
    }

    #[test]
    fn message_type_encoding_round_trips() {
        for method in [0x001, 0x003, 0x00F, 0x0F0, 0xF00, 0xFFF] {
            for class in [
                StunClass::Request,
                StunClass::Indication,
                StunClass::SuccessResponse,
                StunClass::ErrorResponse,
            ] {
                let t = encode_message_type(class, StunMethod(method));
                assert_eq!(t & 0xC000, 0);
                assert_eq!(decode_message_type(t), (class, StunMethod(method)));
            }
        }
        assert_eq!(
            encode_message_type(StunClass::Request, StunMethod::BINDING),
            0x0001
        );
        assert_eq!(
            encode_message_type(StunClass::Indication, StunMethod::BINDING),
            0x0011
        );
        assert_eq!(
            encode_message_type(StunClass::SuccessResponse, StunMethod::BINDING),
            0x0101
        );
        assert_eq!(
            encode_message_type(StunClass::ErrorResponse, StunMethod::BINDING),
            0x0111
        );
    }

    fn written_request(use_candidate: bool, role: Option<IceRole>) -> Vec<u8> {
        let mut out = vec![0xAA; 7]; // must be cleared
        write_binding_request(
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            b"sfuUfrag:peer",
            &IntegrityKey::new(b"local-password-0123456789"),
            0x6e00_01ff,
            role,
            use_candidate,
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn binding_request_round_trip() {
        let buf = written_request(true, Some(IceRole::Controlling(0x0102_0304_0506_0708)));
        assert_eq!(buf.len() % 4, 0);
        let msg = StunMessage::parse(&buf).unwrap();
        assert!(msg.is_binding_request());
        assert_eq!(
            msg.transaction_id(),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        assert_eq!(msg.username(), Some(&b"sfuUfrag:peer"[..]));
        assert_eq!(msg.priority(), Some(0x6e00_01ff));
        assert_eq!(msg.ice_controlling(), Some(0x0102_0304_0506_0708));
        assert_eq!(msg.ice_controlled(), None);
        assert!(msg.use_candidate());
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(b"local-password-0123456789"));
        assert!(!msg.verify_integrity(b"local-password-012345678"));

        let buf = written_request(false, Some(IceRole::Controlled(7)));
        let msg = StunMessage::parse(&buf).unwrap();
        assert!(!msg.use_candidate());
        assert_eq!(msg.ice_controlled(), Some(7));
        assert_eq!(msg.ice_controlling(), None);
        assert!(msg.verify_fingerprint() && msg.verify_integrity(b"local-password-0123456789"));

        let buf = written_request(false, None);
        let msg = StunMessage::parse(&buf).unwrap();
        assert_eq!((msg.ice_controlled(), msg.ice_controlling()), (None, None));
        assert!(msg.verify_fingerprint() && msg.verify_integrity(b"local-password-0123456789"));
    }

    #[test]
    fn binding_success_round_trip_ipv4_and_ipv6() {
        let key = IntegrityKey::new(PASSWORD);
        for addr in [
            "192.0.2.1:32853",
            "203.0.113.77:1",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            "[::1]:65535",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = Vec::new();
            write_binding_success(&RFC_TRANSACTION_ID, addr, &key, &mut out);
            let msg = StunMessage::parse(&out).unwrap();
            assert_eq!(msg.class(), StunClass::SuccessResponse);
            assert_eq!(msg.method(), StunMethod::BINDING);
            assert_eq!(msg.transaction_id(), RFC_TRANSACTION_ID);
            assert_eq!(msg.xor_mapped_address(), Some(addr));
            assert!(msg.verify_fingerprint());
            assert!(msg.verify_integrity(PASSWORD));
        }
    }

    #[test]
    fn binding_success_matches_rfc5769_xor_encoding() {
        // Our XOR-MAPPED-ADDRESS bytes equal the RFC vector's for the same inputs.
        let mut out = Vec::new();
        write_binding_success(
            &RFC_TRANSACTION_ID,
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap(),
            &IntegrityKey::new(PASSWORD),
            &mut out,
        );
        let rfc = sample_ipv6_response();
        assert_eq!(&out[20..44], &rfc[36..60]);
        let mut out = Vec::new();
        write_binding_success(
            &RFC_TRANSACTION_ID,
            "192.0.2.1:32853".parse().unwrap(),
            &IntegrityKey::new(PASSWORD),
            &mut out,
        );
        assert_eq!(&out[20..32], &sample_ipv4_response()[36..48]);
    }

    #[test]
    fn binding_error_round_trip() {
        let key = IntegrityKey::new(PASSWORD);
        let mut out = Vec::new();
        write_binding_error(
            &RFC_TRANSACTION_ID,
            420,
            "Unknown Attribute",
            &[0x7777, 0x0031],
            Some(&key),
            &mut out,
        )
        .unwrap();
        let msg = StunMessage::parse(&out).unwrap();
        assert_eq!(msg.class(), StunClass::ErrorResponse);
        assert_eq!(
            msg.error_code(),
            Some(ErrorCode {
                code: 420,
                reason: b"Unknown Attribute"
            })
        );
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(PASSWORD));

        write_binding_error(
            &RFC_TRANSACTION_ID,
            487,
            "Role Conflict",
            &[],
            None,
            &mut out,
        )
        .unwrap();
        let msg = StunMessage::parse(&out).unwrap();
        assert_eq!(msg.error_code().map(|e| e.code), Some(487));
        assert_eq!(msg.message_integrity_offset(), None);
        assert!(msg.verify_fingerprint());
        assert!(!msg.verify_integrity(PASSWORD));

        assert_eq!(
            write_binding_error(&RFC_TRANSACTION_ID, 299, "", &[], None, &mut out),
            Err(StunError::BadErrorCode(299))
        );
        assert!(out.is_empty());
        let long = "x".repeat(MAX_REASON_LEN + 1);
        assert_eq!(
            write_binding_error(&RFC_TRANSACTION_ID, 400, &long, &[], None, &mut out),
            Err(StunError::ReasonTooLong {
                len: MAX_REASON_LEN + 1
            })
        );
        write_binding_error(&RFC_TRANSACTION_ID, 400, &long[1..], &[], None, &mut out).unwrap();
        assert_eq!(
            StunMessage::parse(&out)
                .unwrap()
                .error_code()
                .unwrap()
                .reason
                .len(),
            MAX_REASON_LEN
        );
    }

    #[test]
    fn writer_rejects_oversized_username() {
        let mut out = vec![1, 2, 3];
        let username = vec![b'a'; MAX_USERNAME_LEN + 1];
        let err = write_binding_request(
            &RFC_TRANSACTION_ID,
            &username,
            &IntegrityKey::new(PASSWORD),
            1,
            None,
            false,
            &mut out,
        );
        assert_eq!(
            err,
            Err(StunError::UsernameTooLong {
                len: MAX_USERNAME_LEN + 1
            })
        );
        assert!(out.is_empty());
    }

    /// Every single-byte change of an authenticated message is caught: the
    /// parse fails or FINGERPRINT fails, and if the byte is covered by
    /// MESSAGE-INTEGRITY (anything before FINGERPRINT), integrity fails too.
    fn assert_every_byte_flip_detected(valid: &[u8], password: &[u8]) {
        let original = StunMessage::parse(valid).unwrap();
        assert!(original.verify_fingerprint() && original.verify_integrity(password));
        let fingerprint_offset = original.fingerprint().unwrap().offset;
        for index in 0..valid.len() {
            for mask in [0x01u8, 0x02, 0x10, 0x80, 0xFF] {
                let mut tampered = valid.to_vec();
                tampered[index] ^= mask;
                let Ok(msg) = StunMessage::parse(&tampered) else {
                    continue;
                };
                assert!(
                    !msg.verify_fingerprint(),
                    "fingerprint still valid after flipping byte {index} with {mask:#04x}"
                );
                if index < fingerprint_offset {
                    assert!(
                        !msg.verify_integrity(password),
                        "integrity still valid after flipping byte {index} with {mask:#04x}"
                    );
                }
            }
        }
    }

    #[test]
    fn any_single_byte_flip_fails_verification() {
        assert_every_byte_flip_detected(&sample_request(), PASSWORD);
        assert_every_byte_flip_detected(&sample_ipv6_response(), PASSWORD);
        assert_every_byte_flip_detected(
            &written_request(true, Some(IceRole::Controlling(42))),
            b"local-password-0123456789",
        );
    }

    fn exercise(buf: &[u8]) {
        if let Ok(msg) = StunMessage::parse(buf) {
            let _ = (
                msg.verify_fingerprint(),
                msg.verify_integrity(PASSWORD),
                msg.username(),
                msg.xor_mapped_address(),
                msg.error_code(),
                msg.unknown_comprehension_required(),
                msg.is_binding_request(),
            );
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = StdRng::seed_from_u64(0x5354_554E);
        let mut buf = vec![0u8; 1500];
        for len in 0..=1500 {
            exercise(&vec![0u8; len]);
            exercise(&vec![0xFFu8; len]);
            rng.fill_bytes(&mut buf[..len]);
            exercise(&buf[..len]);
            // Same, behind a valid header so the attribute walker sees it.
            let aligned = len & !3;
            if aligned >= HEADER_LEN && aligned - HEADER_LEN <= usize::from(u16::MAX) {
                buf[0] &= 0x3F;
                buf[2..4].copy_from_slice(&wire_len(aligned - HEADER_LEN).to_be_bytes());
                buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                exercise(&buf[..aligned]);
            }
        }
        // Random attribute soup with plausible types and lengths.
        let types = [
            attr::USERNAME,
            attr::MESSAGE_INTEGRITY,
            attr::ERROR_CODE,
            attr::XOR_MAPPED_ADDRESS,
            attr::PRIORITY,
            attr::USE_CANDIDATE,
            attr::FINGERPRINT,
            attr::ICE_CONTROLLED,
            attr::ICE_CONTROLLING,
            0x7FFF,
            0xC057,
        ];
        for _ in 0..20_000 {
            let mut msg = vec![0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42];
            msg.extend_from_slice(&RFC_TRANSACTION_ID);
            for _ in 0..rng.random_range(0..6) {
                let attr_type = types[rng.random_range(0..types.len())];
                let len: usize = rng.random_range(0..24);
                msg.extend_from_slice(&attr_type.to_be_bytes());
                msg.extend_from_slice(&wire_len(len).to_be_bytes());
                msg.extend((0..len.next_multiple_of(4)).map(|_| rng.random::<u8>()));
            }
            let body = wire_len(msg.len() - HEADER_LEN);
            msg[2..4].copy_from_slice(&body.to_be_bytes());
            exercise(&msg);
        }
    }

    #[test]
    fn every_truncation_is_rejected_without_panic() {
        for valid in [
            sample_request(),
            sample_ipv4_response(),
            sample_ipv6_response(),
            written_request(true, Some(IceRole::Controlling(1))),
        ] {
            for cut in 0..valid.len() {
                let truncated = &valid[..cut];
                assert!(
                    StunMessage::parse(truncated).is_err(),
                    "truncation to {cut} parsed"
                );
                // With the length field patched to match, the attribute walker
                // sees the cut: it must fail or, if the cut fell on an
                // attribute boundary, lose FINGERPRINT.
                if cut >= HEADER_LEN && cut % 4 == 0 {
                    let mut patched = truncated.to_vec();
                    patched[2..4].copy_from_slice(&wire_len(cut - HEADER_LEN).to_be_bytes());
                    if let Ok(msg) = StunMessage::parse(&patched) {
                        assert!(!msg.verify_fingerprint());
                        exercise(&patched);
                    }
                }
            }
        }
    }

    #[test]
    fn framing_errors() {
        let valid = sample_request();
        assert_eq!(
            StunMessage::parse(&valid[..19]).unwrap_err(),
            StunError::TooShort { len: 19 }
        );
        let mut b = valid.clone();
        b[0] |= 0x40;
        assert_eq!(StunMessage::parse(&b).unwrap_err(), StunError::NotStun);
        let mut b = valid.clone();
        b[4] = 0x22;
        assert_eq!(
            StunMessage::parse(&b).unwrap_err(),
            StunError::BadMagicCookie(0x2212_a442)
        );
        let mut b = valid.clone();
        b[3] = 0x59;
        assert_eq!(
            StunMessage::parse(&b).unwrap_err(),
            StunError::UnalignedLength { declared: 0x59 }
        );
        let mut b = valid.clone();
        b[3] = 0x5C;
        assert_eq!(
            StunMessage::parse(&b).unwrap_err(),
            StunError::BadLength {
                declared: 0x5C,
                actual: 0x58
            }
        );
        // USERNAME claims 0x0100 bytes: runs past the end.
        let mut b = valid.clone();
        b[62] = 0x01;
        assert_eq!(
            StunMessage::parse(&b).unwrap_err(),
            StunError::TruncatedAttribute { offset: 60 }
        );
        // PRIORITY with a 3-byte value.
        let mut b = valid.clone();
        b[43] = 0x03;
        assert_eq!(
            StunMessage::parse(&b).unwrap_err(),
            StunError::BadAttribute {
                attr_type: attr::PRIORITY
            }
        );
    }

    fn message_with(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = MessageWriter::begin(
            &mut out,
            StunClass::Request,
            StunMethod::BINDING,
            &RFC_TRANSACTION_ID,
        );
        for (attr_type, value) in attrs {
            w.attribute(*attr_type, value);
        }
        w.set_length(0);
        out
    }

    #[test]
    fn attribute_limits_and_ordering() {
        let soup: Vec<(u16, &[u8])> = (0..MAX_ATTRIBUTES).map(|_| (0xC057, &b"x"[..])).collect();
        let buf = message_with(&soup);
        let msg = StunMessage::parse(&buf).unwrap();
        assert_eq!(msg.attribute_count(), MAX_ATTRIBUTES);
        let soup: Vec<(u16, &[u8])> = (0..=MAX_ATTRIBUTES).map(|_| (0xC057, &b"x"[..])).collect();
        assert_eq!(
            StunMessage::parse(&message_with(&soup)).unwrap_err(),
            StunError::TooManyAttributes
        );
        assert_eq!(
            StunMessage::parse(&message_with(&[
                (attr::FINGERPRINT, &[0, 0, 0, 0]),
                (attr::SOFTWARE, b"late")
            ]))
            .unwrap_err(),
            StunError::AttributeAfterFingerprint
        );
        assert_eq!(
            StunMessage::parse(&message_with(&[(attr::USE_CANDIDATE, b"x")])).unwrap_err(),
            StunError::BadAttribute {
                attr_type: attr::USE_CANDIDATE
            }
        );
        assert_eq!(
            StunMessage::parse(&message_with(&[(attr::MESSAGE_INTEGRITY, &[0; 19])])).unwrap_err(),
            StunError::BadAttribute {
                attr_type: attr::MESSAGE_INTEGRITY
            }
        );
        assert_eq!(
            StunMessage::parse(&message_with(&[(
                attr::XOR_MAPPED_ADDRESS,
                &[0, 3, 0, 0, 0, 0, 0, 0]
            )]))
            .unwrap_err(),
            StunError::BadAttribute {
                attr_type: attr::XOR_MAPPED_ADDRESS
            }
        );
    }

    #[test]
    fn unknown_attributes_are_skipped_or_reported() {
        let buf = message_with(&[
            (0xC057, b"optional"),
            (attr::USERNAME, b"a:b"),
            (0x7777, b""),
            (0x0031, b"zz"),
        ]);
        let msg = StunMessage::parse(&buf).unwrap();
        assert_eq!(msg.username(), Some(&b"a:b"[..]));
        assert_eq!(msg.unknown_comprehension_required(), &[0x7777, 0x0031]);
    }

    #[test]
    fn first_occurrence_wins() {
        let buf = message_with(&[
            (attr::USERNAME, b"first:x"),
            (attr::PRIORITY, &1u32.to_be_bytes()),
            (attr::USERNAME, b"second:y"),
            (attr::PRIORITY, &2u32.to_be_bytes()),
        ]);
        let msg = StunMessage::parse(&buf).unwrap();
        assert_eq!(msg.username(), Some(&b"first:x"[..]));
        assert_eq!(msg.priority(), Some(1));
    }

    #[test]
    fn attributes_after_message_integrity_are_ignored() {
        // Take an authenticated request without USE-CANDIDATE, append
        // USE-CANDIDATE + ICE-CONTROLLED after MESSAGE-INTEGRITY and a fresh
        // FINGERPRINT: integrity still verifies, so the smuggled attributes
        // must not be reported.
        let original = written_request(false, Some(IceRole::Controlling(5)));
        let mi = StunMessage::parse(&original)
            .unwrap()
            .message_integrity_offset()
            .unwrap();
        let mut forged = original[..mi + 24].to_vec();
        forged.extend_from_slice(&attr::USE_CANDIDATE.to_be_bytes());
        forged.extend_from_slice(&[0, 0]);
        forged.extend_from_slice(&attr::ICE_CONTROLLED.to_be_bytes());
        forged.extend_from_slice(&[0, 8, 0, 0, 0, 0, 0, 0, 0, 9]);
        forged.extend_from_slice(&attr::USERNAME.to_be_bytes());
        forged.extend_from_slice(&[0, 4, b'e', b'v', b'i', b'l']);
        let body = wire_len(forged.len() + 8 - HEADER_LEN);
        forged[2..4].copy_from_slice(&body.to_be_bytes());
        let crc = crc32fast::hash(&forged) ^ FINGERPRINT_XOR;
        forged.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
        forged.extend_from_slice(&[0, 4]);
        forged.extend_from_slice(&crc.to_be_bytes());

        let msg = StunMessage::parse(&forged).unwrap();
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(b"local-password-0123456789"));
        assert!(!msg.use_candidate());
        assert_eq!(msg.ice_controlled(), None);
        assert_eq!(msg.ice_controlling(), Some(5));
        assert_eq!(msg.username(), Some(&b"sfuUfrag:peer"[..]));
        assert_eq!(msg.attribute_count(), 8);
    }
}
