//! H264 over RTP (RFC 6184): which NAL units a packet carries, and whether it is a keyframe.
//!
//! The first byte of an H264 RTP payload is a NAL unit header `|F|NRI|Type|` (5-bit type).
//! Types 1–23 are a single NAL unit; 24 (STAP-A) and 25 (STAP-B, with a 16-bit DON) aggregate
//! NAL units each preceded by a 16-bit size; 26/27 (MTAP16/24) aggregate units preceded by a
//! size, a DON delta and a 16/24-bit timestamp offset; 28 (FU-A) and 29 (FU-B, with a DON)
//! carry fragments of one NAL unit behind an FU header `|S|E|R|Type|`.
//!
//! [`nal_types`] yields the type of every NAL unit that *starts* in the packet: a fragment
//! other than the first (`S = 0`) yields nothing. A keyframe ([`is_keyframe`]) is a packet
//! carrying an IDR slice (type 5) or a sequence parameter set (7): libwebrtc also treats an
//! SPS as the start of a keyframe, since encoders send SPS and PPS right before each IDR.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// Coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// Supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// Sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// Picture parameter set.
pub const NAL_PPS: u8 = 8;
/// Access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// Single-time aggregation packet.
pub const STAP_A: u8 = 24;
/// Single-time aggregation packet with decoding order number.
pub const STAP_B: u8 = 25;
/// Multi-time aggregation packet, 16-bit timestamp offsets.
pub const MTAP16: u8 = 26;
/// Multi-time aggregation packet, 24-bit timestamp offsets.
pub const MTAP24: u8 = 27;
/// Fragmentation unit.
pub const FU_A: u8 = 28;
/// Fragmentation unit with decoding order number.
pub const FU_B: u8 = 29;

/// The NAL unit types starting in one RTP payload; see [`nal_types`].
#[derive(Debug, Clone)]
pub struct NalTypes<'a> {
    state: State<'a>,
}

#[derive(Debug, Clone)]
enum State<'a> {
    /// One type left to yield.
    One(u8),
    /// Aggregation units left: bytes, and the bytes between each size and its NAL unit.
    Aggregate {
        rest: &'a [u8],
        unit_header: usize,
    },
    Done,
}

/// Iterates the types of the NAL units that start in `payload` (an H264 RTP payload):
/// the unit itself, each unit of an aggregation packet (stopping at the first malformed
/// one), or the fragmented unit of a *first* FU-A/FU-B fragment. Reserved types 0, 30, 31
/// and non-first fragments yield nothing.
pub fn nal_types(payload: &[u8]) -> NalTypes<'_> {
    let state = match payload.first().map(|b| b & 0x1f) {
        None | Some(0 | 30 | 31) => State::Done,
        Some(t @ 1..=23) => State::One(t),
        Some(STAP_A) => aggregate(payload.get(1..), 0),
        Some(STAP_B) => aggregate(payload.get(3..), 0),
        Some(MTAP16) => aggregate(payload.get(3..), 3),
        Some(MTAP24) => aggregate(payload.get(3..), 4),
        Some(FU_A) => fragment(payload.get(1)),
        Some(FU_B) => fragment(payload.get(1)),
        Some(_) => State::Done,
    };
    NalTypes { state }
}

fn aggregate(rest: Option<&[u8]>, unit_header: usize) -> State<'_> {
    rest.map_or(State::Done, |rest| State::Aggregate { rest, unit_header })
}

fn fragment(fu_header: Option<&u8>) -> State<'static> {
    match fu_header {
        Some(&h) if h & 0x80 != 0 && h & 0x1f != 0 => State::One(h & 0x1f),
        _ => State::Done,
    }
}

impl Iterator for NalTypes<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::One(t) => Some(t),
            State::Aggregate { rest, unit_header } => {
                let [hi, lo, ..] = *rest else { return None };
                let size = usize::from(u16::from_be_bytes([hi, lo]));
                // The size covers the unit header extras (DON delta, timestamp offset) for
                // MTAPs; the NAL unit itself must be at least its one-byte header.
                let unit = rest.get(2..2 + size)?;
                let nal = unit.get(unit_header..)?;
                let nal_type = nal.first()? & 0x1f;
                self.state = State::Aggregate {
                    rest: rest.get(2 + size..).unwrap_or(&[]),
                    unit_header,
                };
                Some(nal_type)
            }
            State::Done => None,
        }
    }
}

/// Whether `payload` carries an IDR slice or an SPS (the start of a keyframe).
pub fn is_keyframe(payload: &[u8]) -> bool {
    nal_types(payload).any(|t| t == NAL_IDR || t == NAL_SPS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::codecs::test_util;

    fn types(p: &[u8]) -> Vec<u8> {
        nal_types(p).collect()
    }

    #[test]
    fn single_nal_units() {
        assert_eq!(types(&[0x65, 0x88, 0x84]), [NAL_IDR]);
        assert!(is_keyframe(&[0x65, 0x88]));
        assert_eq!(types(&[0x41, 0x9a]), [1]);
        assert!(!is_keyframe(&[0x41, 0x9a]));
        assert_eq!(types(&[0x67, 0x42, 0xc0, 0x1f]), [NAL_SPS]);
        assert!(is_keyframe(&[0x67, 0x42]));
        assert!(!is_keyframe(&[0x68, 0xce])); // PPS alone
        assert_eq!(types(&[]), [0u8; 0]);
        assert_eq!(types(&[0x00]), [0u8; 0]);
        assert_eq!(types(&[0x1e]), [0u8; 0]);
    }

    #[test]
    fn stap_a_yields_every_unit() {
        // STAP-A: SPS (4 bytes), PPS (2 bytes), IDR (3 bytes).
        let p = [
            0x78, 0x00, 0x04, 0x67, 0x42, 0xc0, 0x1f, 0x00, 0x02, 0x68, 0xce, 0x00, 0x03, 0x65,
            0x88, 0x84,
        ];
        assert_eq!(types(&p), [NAL_SPS, NAL_PPS, NAL_IDR]);
        assert!(is_keyframe(&p));
        // SEI + non-IDR slice: no keyframe.
        let p = [0x78, 0x00, 0x02, 0x06, 0x05, 0x00, 0x02, 0x41, 0x9a];
        assert_eq!(types(&p), [NAL_SEI, 1]);
        assert!(!is_keyframe(&p));
        // A unit whose size runs past the end stops the iteration after the valid ones.
        let p = [0x78, 0x00, 0x02, 0x68, 0xce, 0x00, 0x09, 0x65, 0x88];
        assert_eq!(types(&p), [NAL_PPS]);
        assert!(!is_keyframe(&p));
        // Zero-size unit: stop.
        assert_eq!(types(&[0x78, 0x00, 0x00, 0x00, 0x01, 0x65]), [0u8; 0]);
    }

    #[test]
    fn stap_b_and_mtap_skip_their_extra_fields() {
        // STAP-B: DON 0x0001, then an IDR of 2 bytes.
        assert_eq!(
            types(&[0x79, 0x00, 0x01, 0x00, 0x02, 0x65, 0x88]),
            [NAL_IDR]
        );
        // MTAP16: DONB, then size 5 = DOND(1) + TS offset(2) + NAL(2).
        assert_eq!(
            types(&[0x7a, 0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x10, 0x67, 0x42]),
            [NAL_SPS]
        );
        // MTAP24: size 6 = DOND(1) + TS offset(3) + NAL(2).
        assert_eq!(
            types(&[
                0x7b, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x10, 0x41, 0x9a
            ]),
            [1]
        );
        // MTAP unit shorter than its own header: stop.
        assert_eq!(types(&[0x7a, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00]), [0u8; 0]);
    }

    #[test]
    fn fragments_count_only_from_their_start() {
        // FU-A, S=1, type IDR.
        assert_eq!(types(&[0x7c, 0x85, 0xb8]), [NAL_IDR]);
        assert!(is_keyframe(&[0x7c, 0x85, 0xb8]));
        // Middle and end fragments of an IDR: not a keyframe start.
        assert!(!is_keyframe(&[0x7c, 0x05, 0xb8]));
        assert!(!is_keyframe(&[0x7c, 0x45, 0xb8]));
        // FU-A start of a non-IDR slice.
        assert_eq!(types(&[0x5c, 0x81, 0x9a]), [1]);
        // FU-B start (DON follows the FU header).
        assert_eq!(types(&[0x7d, 0x87, 0x00, 0x01, 0x42]), [NAL_SPS]);
        // Truncated FU.
        assert_eq!(types(&[0x7c]), [0u8; 0]);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        test_util::sweep(|data| {
            let n = nal_types(data).count();
            assert!(n <= data.len());
            let _ = is_keyframe(data);
        });
    }
}
