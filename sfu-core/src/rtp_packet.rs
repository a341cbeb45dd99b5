//! RTP header parsing as a view over the received buffer (RFC 3550 §5.1, RFC 8285).
//!
//! [`RtpHeader`] records offsets into the datagram; it never copies the payload. The
//! packet path parses the header once (before SRTP unprotect, since SRTP needs the header
//! length) and keeps the view. This module owns header-extension lookup and the writer that
//! builds a consumer's rewritten header; it knows nothing of streams, codecs or keys.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use thiserror::Error;

/// Why a buffer is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpParseError {
    /// Fewer than 12 bytes, or the CSRC list / extension runs past the end.
    #[error("RTP packet truncated")]
    Truncated,
    /// Version field is not 2.
    #[error("RTP version is not 2")]
    BadVersion,
    /// The padding count is zero or larger than the payload.
    #[error("RTP padding is invalid")]
    BadPadding,
}

/// Maximum number of header extensions kept per packet; more are ignored.
pub const MAX_EXTENSIONS: usize = 16;

/// One header extension element: its id and where its value lies in the packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionElement {
    /// The extension id as negotiated (1..=14 one-byte, 1..=255 two-byte).
    pub id: u8,
    /// Offset of the value in the packet.
    pub offset: u16,
    /// Length of the value.
    pub len: u16,
}

/// The profile of the header-extension block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionProfile {
    /// RFC 8285 one-byte header (0xBEDE).
    OneByte,
    /// RFC 8285 two-byte header (0x100x).
    TwoByte,
    /// Some other profile: kept opaque and not forwarded.
    Other,
}

/// A parsed RTP header: fixed fields plus offsets into the packet it was parsed from. The
/// default is a header without extensions (a source with nothing to carry over).
#[derive(Debug, Clone, Copy, Default)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Total header length: fixed header, CSRCs and extension block.
    pub header_len: usize,
    /// Whether the padding bit is set (padding is removed only after decryption).
    pub has_padding: bool,
    /// The extension block's profile, if any.
    pub extension_profile: Option<ExtensionProfile>,
    extensions: [ExtensionElement; MAX_EXTENSIONS],
    extension_count: u8,
}

impl RtpHeader {
    /// Parses the header of `buf`. The payload is not inspected (it may still be encrypted).
    pub fn parse(buf: &[u8]) -> Result<Self, RtpParseError> {
        let fixed: &[u8; 12] = buf
            .get(..12)
            .and_then(|b| b.try_into().ok())
            .ok_or(RtpParseError::Truncated)?;
        if fixed[0] >> 6 != 2 {
            return Err(RtpParseError::BadVersion);
        }
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let csrc_count = usize::from(fixed[0] & 0x0f);
        let mut header = RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7f,
            sequence_number: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            header_len: 12 + 4 * csrc_count,
            has_padding,
            extension_profile: None,
            extensions: [ExtensionElement::default(); MAX_EXTENSIONS],
            extension_count: 0,
        };
        if buf.len() < header.header_len {
            return Err(RtpParseError::Truncated);
        }
        if has_extension {
            let start = header.header_len;
            let ext_head: [u8; 4] = buf
                .get(start..start + 4)
                .and_then(|h| h.try_into().ok())
                .ok_or(RtpParseError::Truncated)?;
            let [p0, p1, w0, w1] = ext_head;
            let profile = u16::from_be_bytes([p0, p1]);
            let words = usize::from(u16::from_be_bytes([w0, w1]));
            let body_start = start + 4;
            let body_end = body_start + 4 * words;
            let body = buf
                .get(body_start..body_end)
                .ok_or(RtpParseError::Truncated)?;
            header.header_len = body_end;
            let profile = match profile {
                0xBEDE => ExtensionProfile::OneByte,
                p if p & 0xfff0 == 0x1000 => ExtensionProfile::TwoByte,
                _ => ExtensionProfile::Other,
            };
            header.extension_profile = Some(profile);
            header.parse_extensions(profile, body, body_start);
        }
        Ok(header)
    }

    fn parse_extensions(&mut self, profile: ExtensionProfile, body: &[u8], base: usize) {
        let mut i = 0usize;
        while let Some(&b) = body.get(i) {
            let (id, len, value_at) = match profile {
                ExtensionProfile::OneByte => {
                    if b == 0 {
                        i += 1; // padding
                        continue;
                    }
                    let id = b >> 4;
                    if id == 15 || id == 0 {
                        // 15 is reserved (RFC 8285 §4.2: stop processing); 0 is padding only
                        // as a whole zero byte, so a 0 id with a length is malformed.
                        break;
                    }
                    (id, usize::from(b & 0x0f) + 1, i + 1)
                }
                ExtensionProfile::TwoByte => {
                    if b == 0 {
                        i += 1;
                        continue;
                    }
                    let Some(&len) = body.get(i + 1) else { break };
                    (b, usize::from(len), i + 2)
                }
                ExtensionProfile::Other => break,
            };
            if value_at + len > body.len() {
                break; // malformed element: ignore the rest rather than the whole packet
            }
            if let Some(slot) = self.extensions.get_mut(usize::from(self.extension_count)) {
                // Offsets fit u16: packets are at most 1500 bytes.
                *slot = ExtensionElement {
                    id,
                    offset: (base + value_at) as u16,
                    len: len as u16,
                };
                self.extension_count += 1;
            }
            i = value_at + len;
        }
    }

    /// The header-extension elements found, in packet order.
    pub fn extensions(&self) -> &[ExtensionElement] {
        self.extensions
            .get(..usize::from(self.extension_count))
            .unwrap_or(&[])
    }

    /// The value of extension `id` in `packet` (the buffer this header was parsed from).
    pub fn extension<'a>(&self, packet: &'a [u8], id: u8) -> Option<&'a [u8]> {
        if id == 0 {
            return None;
        }
        let e = self.extensions().iter().find(|e| e.id == id)?;
        packet.get(usize::from(e.offset)..usize::from(e.offset) + usize::from(e.len))
    }

    /// Payload bounds `(start, end)` in a *decrypted* packet of length `len`, padding removed.
    pub fn payload_range(&self, packet: &[u8]) -> Result<(usize, usize), RtpParseError> {
        let mut end = packet.len();
        if self.has_padding {
            let pad = usize::from(*packet.last().ok_or(RtpParseError::BadPadding)?);
            if pad == 0 || self.header_len + pad > end {
                return Err(RtpParseError::BadPadding);
            }
            end -= pad;
        }
        if self.header_len > end {
            return Err(RtpParseError::Truncated);
        }
        Ok((self.header_len, end))
    }
}

/// Fields of a header the SFU writes for one subscriber.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type negotiated with the subscriber.
    pub payload_type: u8,
    /// Rewritten sequence number.
    pub sequence_number: u16,
    /// Rewritten timestamp.
    pub timestamp: u32,
    /// The consumer's SSRC.
    pub ssrc: u32,
}

/// Writes a rewritten RTP header into `out` (cleared first), carrying over the extensions of
/// `source` whose ids `map_extension` translates to the subscriber's ids (others are dropped),
/// then the `extra` elements (id, value) the SFU writes itself (such as the subscriber's mid).
/// Writes the one-byte form when every element fits it, otherwise two-byte. Returns the
/// header length.
pub fn write_header(
    out: &mut Vec<u8>,
    header: &OutgoingHeader,
    source: &RtpHeader,
    source_packet: &[u8],
    mut map_extension: impl FnMut(u8) -> Option<u8>,
    extra: &[(u8, &[u8])],
) -> usize {
    out.clear();
    out.push(0x80);
    out.push((u8::from(header.marker) << 7) | (header.payload_type & 0x7f));
    out.extend_from_slice(&header.sequence_number.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());

    let mut mapped = [(0u8, 0u16, 0u16); MAX_EXTENSIONS];
    let mut count = 0usize;
    let needs_two_byte = |id: u8, len: usize| id > 14 || len == 0 || len > 16;
    let mut two_byte = extra.iter().any(|(id, v)| needs_two_byte(*id, v.len()));
    for e in source.extensions() {
        if let Some(id) = map_extension(e.id)
            && let Some(slot) = mapped.get_mut(count)
        {
            *slot = (id, e.offset, e.len);
            count += 1;
            two_byte |= needs_two_byte(id, usize::from(e.len));
        }
    }
    if count > 0 || !extra.is_empty() {
        if let Some(b0) = out.first_mut() {
            *b0 |= 0x10;
        }
        let block_start = out.len();
        out.extend_from_slice(if two_byte {
            &[0x10, 0x00]
        } else {
            &[0xBE, 0xDE]
        });
        out.extend_from_slice(&[0, 0]); // length, patched below
        let copied = mapped.iter().take(count).map(|&(id, offset, len)| {
            let value = source_packet
                .get(usize::from(offset)..usize::from(offset) + usize::from(len))
                .unwrap_or(&[]);
            (id, value)
        });
        for (id, value) in copied.chain(extra.iter().copied()) {
            if two_byte {
                out.push(id);
                out.push(value.len() as u8);
            } else {
                out.push((id << 4) | (value.len().saturating_sub(1) as u8 & 0x0f));
            }
            out.extend_from_slice(value);
        }
        while !(out.len() - block_start).is_multiple_of(4) {
            out.push(0);
        }
        let words = ((out.len() - block_start - 4) / 4) as u16;
        if let Some(len_field) = out.get_mut(block_start + 2..block_start + 4) {
            len_field.copy_from_slice(&words.to_be_bytes());
        }
    }
    out.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn packet_with_extensions() -> Vec<u8> {
        let mut p = vec![
            0x90, 0xe0, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef,
        ];
        // one-byte extensions: id 1 len 1 (0xaa), id 3 len 3 (1,2,3), padding
        p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02, 0x10, 0xaa, 0x32, 1, 2, 3, 0, 0]);
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn parses_fixed_fields_and_extensions() {
        let p = packet_with_extensions();
        let h = RtpHeader::parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!(h.payload_type, 96);
        assert_eq!(h.sequence_number, 0x1234);
        assert_eq!(h.timestamp, 0x1000);
        assert_eq!(h.ssrc, 0xdeadbeef);
        assert_eq!(h.header_len, 24);
        assert_eq!(h.extension(&p, 1), Some(&[0xaa][..]));
        assert_eq!(h.extension(&p, 3), Some(&[1, 2, 3][..]));
        assert_eq!(h.extension(&p, 2), None);
        assert_eq!(h.payload_range(&p).unwrap(), (24, p.len()));
    }

    #[test]
    fn rejects_truncated_and_bad_version() {
        let p = packet_with_extensions();
        for len in 0..24 {
            assert!(RtpHeader::parse(&p[..len]).is_err(), "len {len}");
        }
        let mut bad = p.clone();
        bad[0] = 0x50;
        assert_eq!(
            RtpHeader::parse(&bad).unwrap_err(),
            RtpParseError::BadVersion
        );
    }

    #[test]
    fn padding_is_removed_and_checked() {
        let mut p = vec![0xa0, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9, 9, 0, 0, 3];
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.payload_range(&p).unwrap(), (12, 14));
        *p.last_mut().unwrap() = 0;
        assert_eq!(h.payload_range(&p).unwrap_err(), RtpParseError::BadPadding);
        *p.last_mut().unwrap() = 200;
        assert_eq!(h.payload_range(&p).unwrap_err(), RtpParseError::BadPadding);
    }

    #[test]
    fn rewritten_header_remaps_and_drops_extensions() {
        let p = packet_with_extensions();
        let h = RtpHeader::parse(&p).unwrap();
        let mut out = Vec::new();
        let out_header = OutgoingHeader {
            marker: false,
            payload_type: 100,
            sequence_number: 7,
            timestamp: 9,
            ssrc: 42,
        };
        let len = write_header(
            &mut out,
            &out_header,
            &h,
            &p,
            |id| (id == 3).then_some(5),
            &[(2, b"m1")],
        );
        let parsed = RtpHeader::parse(&out).unwrap();
        assert_eq!(parsed.header_len, len);
        assert_eq!(parsed.payload_type, 100);
        assert_eq!(parsed.sequence_number, 7);
        assert_eq!(parsed.ssrc, 42);
        assert_eq!(parsed.extension(&out, 5), Some(&[1, 2, 3][..]));
        assert_eq!(parsed.extension(&out, 1), None);
        assert_eq!(parsed.extension(&out, 3), None);
        assert_eq!(parsed.extension(&out, 2), Some(&b"m1"[..]));
        // No mapped extensions: no extension block at all.
        let len = write_header(&mut out, &out_header, &h, &p, |_| None, &[]);
        assert_eq!(len, 12);
        assert_eq!(out[0], 0x80);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut seed = 0x1234_5678u32;
        for len in 0..=1500usize {
            for fill in 0..3 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| match fill {
                        0 => 0,
                        1 => 0xff,
                        _ => {
                            seed ^= seed << 13;
                            seed ^= seed >> 17;
                            seed ^= seed << 5;
                            seed as u8
                        }
                    })
                    .collect();
                let mut b = buf.clone();
                if let Some(first) = b.first_mut() {
                    *first = 0x90 | (*first & 0x2f);
                }
                for candidate in [&buf, &b] {
                    if let Ok(h) = RtpHeader::parse(candidate) {
                        let _ = h.payload_range(candidate);
                        for e in h.extensions() {
                            assert!(h.extension(candidate, e.id).is_some() || e.id == 0);
                        }
                    }
                }
            }
        }
    }
}
