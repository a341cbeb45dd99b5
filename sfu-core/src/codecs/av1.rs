//! AV1 over RTP (the AOM "RTP Payload Format for AV1", §4.4): the aggregation header and
//! the OBU elements behind it.
//!
//! ```text
//!  0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+
//! |Z|Y| W |N|-|-|-|
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! * `Z`: the first OBU element continues an OBU fragmented at the end of the previous packet.
//! * `Y`: the last OBU element continues in the next packet.
//! * `W`: number of OBU elements (1–3; the last one has no length prefix), or 0: every
//!   element is preceded by its LEB128 length.
//! * `N`: the packet is the first of a new coded video sequence — it starts a keyframe
//!   (libwebrtc marks frames this way; a CVS starts with a sequence header and a key frame).
//!
//! Each OBU element starts with an OBU header `|0|type(4)|X|S|-|`, followed when `X = 1` by an
//! extension byte `|TID(3)|SID(2)|-(3)|` carrying the temporal and spatial layer. The layer
//! selector of an AV1 stream normally reads the dependency descriptor extension instead
//! ([`super::dependency_descriptor`]); the OBU extension is the fallback.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// OBU type: sequence header.
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type: temporal delimiter (removed by RTP senders).
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
/// OBU type: frame header.
pub const OBU_FRAME_HEADER: u8 = 3;
/// OBU type: tile group.
pub const OBU_TILE_GROUP: u8 = 4;
/// OBU type: metadata.
pub const OBU_METADATA: u8 = 5;
/// OBU type: frame (header and tile group).
pub const OBU_FRAME: u8 = 6;
/// OBU type: padding.
pub const OBU_PADDING: u8 = 15;

/// The one-byte AV1 aggregation header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregationHeader {
    /// `Z`: the first element continues an OBU from the previous packet.
    pub continues_previous: bool,
    /// `Y`: the last element continues in the next packet.
    pub continues_in_next: bool,
    /// `W`: element count (0: each element has a length prefix).
    pub obu_count: u8,
    /// `N`: first packet of a coded video sequence.
    pub new_coded_video_sequence: bool,
}

impl AggregationHeader {
    /// Parses the header of an RTP payload; `None` if the payload has no OBU data after it.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        if payload.len() < 2 {
            return None;
        }
        let b = *payload.first()?;
        Some(AggregationHeader {
            continues_previous: b & 0x80 != 0,
            continues_in_next: b & 0x40 != 0,
            obu_count: (b >> 4) & 0x03,
            new_coded_video_sequence: b & 0x08 != 0,
        })
    }

    /// Whether the packet starts a keyframe: `N = 1` (and, consistently, `Z = 0`).
    pub fn starts_coded_video_sequence(&self) -> bool {
        self.new_coded_video_sequence && !self.continues_previous
    }
}

/// Whether an RTP payload starts an AV1 keyframe (a new coded video sequence).
pub fn is_keyframe(payload: &[u8]) -> bool {
    AggregationHeader::parse(payload).is_some_and(|h| h.starts_coded_video_sequence())
}

/// The layers of an OBU extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObuExtension {
    /// Temporal layer (0..=7).
    pub temporal_id: u8,
    /// Spatial layer (0..=3).
    pub spatial_id: u8,
}

/// An OBU header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObuHeader {
    /// The OBU type (see the `OBU_*` constants).
    pub obu_type: u8,
    /// Whether the OBU carries its own size field (`S`).
    pub has_size_field: bool,
    /// The extension (`X = 1`).
    pub extension: Option<ObuExtension>,
}

impl ObuHeader {
    /// Parses the header at the start of an OBU; `None` if truncated or the forbidden bit is
    /// set.
    pub fn parse(obu: &[u8]) -> Option<Self> {
        let b = *obu.first()?;
        if b & 0x80 != 0 {
            return None;
        }
        let extension = if b & 0x04 != 0 {
            let e = *obu.get(1)?;
            Some(ObuExtension {
                temporal_id: e >> 5,
                spatial_id: (e >> 3) & 0x03,
            })
        } else {
            None
        };
        Some(ObuHeader {
            obu_type: (b >> 3) & 0x0f,
            has_size_field: b & 0x02 != 0,
            extension,
        })
    }
}

/// One OBU element of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObuElement<'a> {
    /// The element's bytes (without its length prefix).
    pub data: &'a [u8],
    /// Whether it continues an OBU begun in the previous packet (then it has no header).
    pub continuation: bool,
    /// Its OBU header; `None` for a continuation or a malformed header.
    pub header: Option<ObuHeader>,
}

/// Iterator over the OBU elements of a payload; see [`obus`].
#[derive(Debug, Clone)]
pub struct Obus<'a> {
    rest: &'a [u8],
    count: u8,
    index: u8,
    first_continues: bool,
}

/// Iterates the OBU elements of an AV1 RTP payload. Stops at the first malformed length
/// (over 8 LEB128 bytes or past the end); yields nothing if the aggregation header is
/// invalid.
pub fn obus(payload: &[u8]) -> Obus<'_> {
    match AggregationHeader::parse(payload) {
        Some(h) => Obus {
            rest: payload.get(1..).unwrap_or(&[]),
            count: h.obu_count,
            index: 0,
            first_continues: h.continues_previous,
        },
        None => Obus {
            rest: &[],
            count: 0,
            index: 0,
            first_continues: false,
        },
    }
}

/// Reads a LEB128 value (at most 8 bytes) at the start of `bytes`: `(value, length)`.
pub fn read_leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

impl<'a> Iterator for Obus<'a> {
    type Item = ObuElement<'a>;

    fn next(&mut self) -> Option<ObuElement<'a>> {
        if self.rest.is_empty() || (self.count != 0 && self.index >= self.count) {
            return None;
        }
        // Saturating: with W=0 (count unknown) a payload can hold more than 255 elements.
        self.index = self.index.saturating_add(1);
        let data = if self.count != 0 && self.index == self.count {
            std::mem::take(&mut self.rest)
        } else {
            let parsed = read_leb128(self.rest).and_then(|(len, n)| {
                let end = usize::try_from(len).ok()?.checked_add(n)?;
                Some((self.rest.get(n..end)?, self.rest.get(end..)?))
            });
            match parsed {
                Some((data, rest)) => {
                    self.rest = rest;
                    data
                }
                None => {
                    self.rest = &[];
                    return None;
                }
            }
        };
        let continuation = self.index == 1 && self.first_continues;
        Some(ObuElement {
            data,
            continuation,
            header: if continuation {
                None
            } else {
                ObuHeader::parse(data)
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::codecs::test_util;

    #[test]
    fn aggregation_header_bits() {
        let h = AggregationHeader::parse(&[0xf8, 0x00]).unwrap();
        assert!(h.continues_previous && h.continues_in_next && h.new_coded_video_sequence);
        assert_eq!(h.obu_count, 3);
        assert!(!h.starts_coded_video_sequence()); // Z contradicts N
        let h = AggregationHeader::parse(&[0x28, 0x0a]).unwrap();
        assert!(!h.continues_previous && !h.continues_in_next && h.starts_coded_video_sequence());
        assert_eq!(h.obu_count, 2);
        assert_eq!(AggregationHeader::parse(&[0x28]), None);
        assert_eq!(AggregationHeader::parse(&[]), None);
    }

    #[test]
    fn keyframe_packet_with_sequence_header_and_frame() {
        // N, W = 2: sequence header (length 3), then a frame OBU filling the rest.
        let p = [0x28, 0x03, 0x08, 0x00, 0x00, 0x30, 0x10, 0x20];
        assert!(is_keyframe(&p));
        let elements: Vec<_> = obus(&p).collect();
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[0].data, [0x08, 0x00, 0x00]);
        assert_eq!(elements[0].header.unwrap().obu_type, OBU_SEQUENCE_HEADER);
        assert_eq!(elements[1].data, [0x30, 0x10, 0x20]);
        let frame = elements[1].header.unwrap();
        assert_eq!((frame.obu_type, frame.extension), (OBU_FRAME, None));
        // Same packet without N: a delta frame.
        assert!(!is_keyframe(&[
            0x20, 0x03, 0x08, 0x00, 0x00, 0x30, 0x10, 0x20
        ]));
    }

    #[test]
    fn length_prefixed_elements_and_extensions() {
        // W = 0, Z = 1: continuation (2 bytes), then a frame OBU with extension tid 1 sid 2,
        // then a padding OBU; a 2-byte LEB128 length is used for the second.
        let p = [
            0x80, 0x02, 0xaa, 0xbb, 0x83, 0x00, 0x34, 0x30, 0xcc, 0x01, 0x78,
        ];
        let elements: Vec<_> = obus(&p).collect();
        assert_eq!(elements.len(), 3);
        assert!(elements[0].continuation && elements[0].header.is_none());
        let h = elements[1].header.unwrap();
        assert_eq!(h.obu_type, OBU_FRAME);
        assert_eq!(
            h.extension,
            Some(ObuExtension {
                temporal_id: 1,
                spatial_id: 2
            })
        );
        assert_eq!(elements[2].header.unwrap().obu_type, OBU_PADDING);
        assert!(!is_keyframe(&p));
        // A length past the end stops the iteration.
        assert_eq!(obus(&[0x00, 0x05, 0x30]).count(), 0);
        // A LEB128 of 9 bytes is refused.
        assert_eq!(read_leb128(&[0x80; 9]), None);
        assert_eq!(read_leb128(&[0xe5, 0x8e, 0x26]), Some((624_485, 3)));
        // Forbidden bit set: element without a header.
        assert_eq!(obus(&[0x10, 0x80]).next().unwrap().header, None);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        test_util::sweep(|data| {
            let mut total = 0;
            for e in obus(data) {
                total += e.data.len();
            }
            assert!(total < data.len().max(1));
            let _ = is_keyframe(data);
        });
    }
}
