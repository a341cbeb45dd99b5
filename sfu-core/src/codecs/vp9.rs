//! VP9 over RTP (RFC 9628, formerly draft-ietf-payload-vp9): the payload descriptor.
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |I|P|L|F|B|E|V|Z| (REQUIRED)
//!      +-+-+-+-+-+-+-+-+
//! I:   |M| PICTURE ID  | (7 bits, or 15 bits when M = 1)
//!      +-+-+-+-+-+-+-+-+
//! M:   | EXTENDED PID  |
//!      +-+-+-+-+-+-+-+-+
//! L:   |  TID  |U| SID |D|     TID: 3 bits, U: switching up point, SID: 3 bits,
//!      +-+-+-+-+-+-+-+-+       D: inter-layer dependency
//!      |   TL0PICIDX   | (only in non-flexible mode, F = 0)
//!      +-+-+-+-+-+-+-+-+
//! P,F: | P_DIFF      |N| (flexible mode and P = 1: up to 3 reference deltas)
//!      +-+-+-+-+-+-+-+-+
//! V:   | SS            | (scalability structure)
//!      +-+-+-+-+-+-+-+-+
//! ```
//!
//! `P` says the picture is inter-picture predicted, `B`/`E` mark the first/last packet of a
//! layer frame, `Z` that it is not used by upper spatial layers of the same picture.
//!
//! A **keyframe** here is the first packet (`B = 1`) of a layer frame that is not
//! inter-picture predicted (`P = 0`) at the base spatial layer (`SID = 0`, or no layer
//! indices): a decoder can start from it. (Upper spatial layers of a key picture also have
//! `P = 0`, but depend on the base layer through inter-layer prediction.)
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::PictureId;

/// Most spatial layers a scalability structure can describe (`N_S` is 3 bits).
pub const MAX_SPATIAL_LAYERS: usize = 8;

/// The layer indices of a packet (`L = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9Layer {
    /// `TID`: temporal layer (0..=7).
    pub temporal_id: u8,
    /// `U`: switching up point — a receiver may switch up to this temporal layer here.
    pub switching_up_point: bool,
    /// `SID`: spatial layer (0..=7).
    pub spatial_id: u8,
    /// `D`: depends on the lower spatial layer of the same picture.
    pub inter_layer_dependency: bool,
}

/// The scalability structure (`V = 1`), normally sent with each key picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9ScalabilityStructure {
    /// Number of spatial layers (`N_S + 1`).
    pub spatial_layers: u8,
    resolutions: Option<[(u16, u16); MAX_SPATIAL_LAYERS]>,
    /// Number of pictures in the picture group described (`N_G`), when `G = 1`.
    pub picture_group_size: Option<u8>,
}

impl Vp9ScalabilityStructure {
    /// Width and height of spatial layer `spatial_id`, when the structure carries them.
    pub fn resolution(&self, spatial_id: u8) -> Option<(u16, u16)> {
        if spatial_id >= self.spatial_layers {
            return None;
        }
        self.resolutions?.get(usize::from(spatial_id)).copied()
    }
}

/// A parsed VP9 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9Descriptor {
    /// The picture id (`I = 1`).
    pub picture_id: Option<PictureId>,
    /// `P`: inter-picture predicted.
    pub inter_picture_predicted: bool,
    /// `F`: flexible mode (references as `P_DIFF`s instead of a TL0PICIDX).
    pub flexible_mode: bool,
    /// `B`: first packet of a layer frame.
    pub start_of_frame: bool,
    /// `E`: last packet of a layer frame.
    pub end_of_frame: bool,
    /// `Z`: not used as a reference by upper spatial layers.
    pub not_upper_layer_reference: bool,
    /// Layer indices (`L = 1`).
    pub layer: Option<Vp9Layer>,
    /// `TL0PICIDX` (non-flexible mode with `L = 1`).
    pub tl0_pic_idx: Option<u8>,
    reference_diffs: [u8; 3],
    reference_diff_count: u8,
    /// The scalability structure (`V = 1`).
    pub scalability_structure: Option<Vp9ScalabilityStructure>,
    /// Length of the descriptor: the VP9 payload starts at this offset.
    pub header_len: usize,
}

/// Reads bytes in order, failing past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }
}

impl Vp9Descriptor {
    /// Parses the descriptor at the start of an RTP payload. `None` if it is truncated,
    /// carries more than three reference deltas, or is not followed by any VP9 payload.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let mut c = Cursor {
            bytes: payload,
            at: 0,
        };
        let b0 = c.byte()?;
        let flag = |bit: u8| b0 & bit != 0;
        let mut d = Vp9Descriptor {
            picture_id: None,
            inter_picture_predicted: flag(0x40),
            flexible_mode: flag(0x10),
            start_of_frame: flag(0x08),
            end_of_frame: flag(0x04),
            not_upper_layer_reference: flag(0x01),
            layer: None,
            tl0_pic_idx: None,
            reference_diffs: [0; 3],
            reference_diff_count: 0,
            scalability_structure: None,
            header_len: 0,
        };
        if flag(0x80) {
            let pid = PictureId::read(payload.get(c.at..)?)?;
            c.at += pid.encoded_len();
            d.picture_id = Some(pid);
        }
        if flag(0x20) {
            let l = c.byte()?;
            d.layer = Some(Vp9Layer {
                temporal_id: l >> 5,
                switching_up_point: l & 0x10 != 0,
                spatial_id: (l >> 1) & 0x07,
                inter_layer_dependency: l & 0x01 != 0,
            });
            if !d.flexible_mode {
                d.tl0_pic_idx = Some(c.byte()?);
            }
        }
        if d.flexible_mode && d.inter_picture_predicted {
            loop {
                let p = c.byte()?;
                let slot = d
                    .reference_diffs
                    .get_mut(usize::from(d.reference_diff_count))?;
                *slot = p >> 1;
                d.reference_diff_count += 1;
                if p & 0x01 == 0 {
                    break;
                }
            }
        }
        if flag(0x02) {
            d.scalability_structure = Some(parse_scalability_structure(&mut c)?);
        }
        d.header_len = c.at;
        if payload.len() <= d.header_len {
            return None;
        }
        Some(d)
    }

    /// The `P_DIFF` reference deltas (flexible mode, inter-predicted pictures).
    pub fn reference_diffs(&self) -> &[u8] {
        self.reference_diffs
            .get(..usize::from(self.reference_diff_count))
            .unwrap_or(&[])
    }

    /// Whether this packet starts a keyframe: first packet of a layer frame, not
    /// inter-picture predicted, at the base spatial layer (see the module documentation).
    pub fn is_keyframe(&self) -> bool {
        self.start_of_frame
            && !self.inter_picture_predicted
            && self.layer.is_none_or(|l| l.spatial_id == 0)
    }
}

fn parse_scalability_structure(c: &mut Cursor<'_>) -> Option<Vp9ScalabilityStructure> {
    let v = c.byte()?;
    let spatial_layers = (v >> 5) + 1;
    let mut ss = Vp9ScalabilityStructure {
        spatial_layers,
        resolutions: None,
        picture_group_size: None,
    };
    if v & 0x10 != 0 {
        let mut resolutions = [(0u16, 0u16); MAX_SPATIAL_LAYERS];
        for r in resolutions.iter_mut().take(usize::from(spatial_layers)) {
            *r = (c.u16()?, c.u16()?);
        }
        ss.resolutions = Some(resolutions);
    }
    if v & 0x08 != 0 {
        let n_g = c.byte()?;
        for _ in 0..n_g {
            let g = c.byte()?;
            let references = (g >> 2) & 0x03;
            for _ in 0..references {
                c.byte()?;
            }
        }
        ss.picture_group_size = Some(n_g);
    }
    Some(ss)
}

/// Whether an RTP payload starts a VP9 keyframe; see [`Vp9Descriptor::is_keyframe`].
pub fn is_keyframe(payload: &[u8]) -> bool {
    Vp9Descriptor::parse(payload).is_some_and(|d| d.is_keyframe())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::codecs::test_util;

    #[test]
    fn non_flexible_keyframe_with_scalability_structure() {
        // I L B V; 15-bit picture id 0x0102; TID 0 U SID 0; TL0PICIDX 9;
        // SS: N_S = 1 (2 layers), Y, G: 320x180 and 640x360; N_G = 2: (T0, U, R=0), (T1, U, R=1, P_DIFF 1).
        let p = [
            0xaa, 0x81, 0x02, 0x10, 0x09, // descriptor up to TL0PICIDX
            0x38, // N_S=1 Y G
            0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68, // resolutions
            0x02, 0x10, 0x34, 0x01, // picture group
            0xaa, 0xbb, // VP9 payload
        ];
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x102,
                long: true
            })
        );
        assert!(!d.inter_picture_predicted && !d.flexible_mode && d.start_of_frame);
        assert!(!d.end_of_frame && !d.not_upper_layer_reference);
        assert_eq!(
            d.layer,
            Some(Vp9Layer {
                temporal_id: 0,
                switching_up_point: true,
                spatial_id: 0,
                inter_layer_dependency: false
            })
        );
        assert_eq!(d.tl0_pic_idx, Some(9));
        let ss = d.scalability_structure.unwrap();
        assert_eq!(ss.spatial_layers, 2);
        assert_eq!(ss.resolution(0), Some((320, 180)));
        assert_eq!(ss.resolution(1), Some((640, 360)));
        assert_eq!(ss.resolution(2), None);
        assert_eq!(ss.picture_group_size, Some(2));
        assert_eq!(d.header_len, 18);
        assert!(d.is_keyframe());
        assert!(is_keyframe(&p));
        for len in 0..=d.header_len {
            assert_eq!(Vp9Descriptor::parse(&p[..len]), None, "len {len}");
        }
    }

    #[test]
    fn flexible_mode_reference_diffs() {
        // I P L F B E; 7-bit picture id 5; TID 2 SID 1 D; P_DIFF 1 (N), 3 (N), 4.
        let p = [0xfc, 0x05, 0x43, 0x03, 0x07, 0x08, 0xaa];
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 5,
                long: false
            })
        );
        assert!(d.flexible_mode && d.inter_picture_predicted && d.end_of_frame);
        let layer = d.layer.unwrap();
        assert_eq!(
            (
                layer.temporal_id,
                layer.spatial_id,
                layer.switching_up_point
            ),
            (2, 1, false)
        );
        assert!(layer.inter_layer_dependency);
        assert_eq!(d.tl0_pic_idx, None);
        assert_eq!(d.reference_diffs(), [1, 3, 4]);
        assert_eq!(d.header_len, 6);
        assert!(!d.is_keyframe());
        // A fourth P_DIFF (N set on the third) is invalid.
        assert_eq!(
            Vp9Descriptor::parse(&[0xfc, 0x05, 0x43, 0x03, 0x07, 0x09, 0x02, 0xaa]),
            None
        );
    }

    #[test]
    fn keyframe_rule() {
        // B, no P, no layer indices.
        assert!(is_keyframe(&[0x08, 0xaa]));
        // Not the first packet.
        assert!(!is_keyframe(&[0x04, 0xaa]));
        // Inter predicted.
        assert!(!is_keyframe(&[0x48, 0xaa]));
        // Upper spatial layer of a key picture: P = 0 but SID 1.
        assert!(!is_keyframe(&[0x28, 0x03, 0x00, 0xaa]));
        // Base spatial layer with layer indices.
        assert!(is_keyframe(&[0x28, 0x00, 0x00, 0xaa]));
        // Descriptor with no payload behind it.
        assert!(!is_keyframe(&[0x28, 0x00, 0x00]));
        // SS without resolutions or picture group.
        let d = Vp9Descriptor::parse(&[0x0a, 0x40, 0xaa]).unwrap();
        let ss = d.scalability_structure.unwrap();
        assert_eq!(
            (ss.spatial_layers, ss.resolution(0), ss.picture_group_size),
            (3, None, None)
        );
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        test_util::sweep(|data| {
            if let Some(d) = Vp9Descriptor::parse(data) {
                assert!(d.header_len < data.len());
                assert!(d.reference_diffs().len() <= 3);
            }
            let _ = is_keyframe(data);
        });
    }
}
