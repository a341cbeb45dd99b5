//! What the SFU must know about each video codec to forward simulcast and SVC without
//! decoding media.
//!
//! A subscriber may be switched between simulcast layers only at a keyframe of the new layer,
//! may be given fewer temporal (or spatial) layers than the publisher sends, and must never see
//! a gap the decoder would take for loss. Everything needed for that lives in the RTP payload
//! descriptor of each codec, or in the dependency descriptor header extension:
//!
//! | module | what it reads |
//! |---|---|
//! | [`vp8`] | RFC 7741 payload descriptor, keyframe header; [`vp8::Vp8Rewriter`] keeps picture ids and TL0PICIDX continuous |
//! | [`vp9`] | RFC 9628 payload descriptor (flexible and non-flexible mode, scalability structure) |
//! | [`h264`] | RFC 6184 NAL unit types through STAP-A/B, MTAP and FU-A/B |
//! | [`av1`] | the AV1 RTP aggregation header and the OBU headers behind it |
//! | [`dependency_descriptor`] | the AV1 dependency descriptor extension (Chrome uses it for VP8, VP9 and AV1 SVC) |
//!
//! [`describe`] condenses any of them into a [`PacketInfo`] for the layer selector. Every
//! parser here works on borrowed bytes, allocates nothing, and returns `None`/`Err` rather
//! than panicking on any input; [`fuzz_entry`] holds one fuzz target body per parser.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod av1;
pub mod dependency_descriptor;
pub mod fuzz_entry;
pub mod h264;
pub mod vp8;
pub mod vp9;

#[cfg(test)]
mod test_util;

use dependency_descriptor::DependencyDescriptor;

/// A codec, as far as forwarding is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `audio/opus`.
    Opus,
    /// `video/VP8`.
    Vp8,
    /// `video/VP9`.
    Vp9,
    /// `video/H264`.
    H264,
    /// `video/AV1`.
    Av1,
    /// Anything else (including `video/rtx`, `video/red`, `video/ulpfec`): forwarded opaquely.
    Other,
}

impl Codec {
    /// The codec a MIME type (`video/VP8`, `audio/opus`, … compared case-insensitively) names.
    pub fn from_mime_type(mime_type: &str) -> Self {
        let is = |name: &str| mime_type.eq_ignore_ascii_case(name);
        if is("audio/opus") {
            Codec::Opus
        } else if is("video/vp8") {
            Codec::Vp8
        } else if is("video/vp9") {
            Codec::Vp9
        } else if is("video/h264") {
            Codec::H264
        } else if is("video/av1") {
            Codec::Av1
        } else {
            Codec::Other
        }
    }

    /// Whether this is a video codec the SFU can inspect.
    pub fn is_video(self) -> bool {
        matches!(self, Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1)
    }
}

/// A picture id as a payload descriptor carries it (VP8 and VP9 share the encoding: an `M` bit
/// then 7 or 15 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureId {
    /// The value, below [`PictureId::modulus`].
    pub value: u16,
    /// Whether it was written in the two-byte (15-bit, `M = 1`) form.
    pub long: bool,
}

impl PictureId {
    /// 2^15 for the long form, 2^7 for the short one.
    pub fn modulus(self) -> u16 {
        if self.long { 1 << 15 } else { 1 << 7 }
    }

    /// Bytes the field takes in the descriptor.
    pub fn encoded_len(self) -> usize {
        if self.long { 2 } else { 1 }
    }

    /// Reads the field at the start of `bytes`.
    pub(crate) fn read(bytes: &[u8]) -> Option<Self> {
        let first = *bytes.first()?;
        if first & 0x80 != 0 {
            let second = *bytes.get(1)?;
            Some(PictureId {
                value: (u16::from(first & 0x7f) << 8) | u16::from(second),
                long: true,
            })
        } else {
            Some(PictureId {
                value: u16::from(first),
                long: false,
            })
        }
    }

    /// Writes `value` (reduced modulo the form's modulus) in this form at the start of
    /// `bytes`. Returns `None`, writing nothing, if `bytes` is too short.
    pub(crate) fn write(self, bytes: &mut [u8], value: u16) -> Option<()> {
        if self.long {
            let field = bytes.get_mut(..2)?;
            let v = value & 0x7fff;
            field.copy_from_slice(&(v | 0x8000).to_be_bytes());
        } else {
            *bytes.first_mut()? = (value & 0x7f) as u8;
        }
        Some(())
    }
}

/// What the layer selector needs to know about one RTP packet of a video stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketInfo {
    /// The packet belongs to a keyframe that a decoder can start from: for VP8, VP9 and AV1
    /// it is the *first* packet of such a frame (of its base spatial layer); for H264 any
    /// packet carrying an IDR slice or an SPS; with a dependency descriptor, the packet that
    /// carries a template structure. Opus packets are always decodable and count as
    /// keyframes; [`Codec::Other`] never does.
    pub keyframe: bool,
    /// The temporal layer (VP8 `TID`, VP9 `TID`, AV1 OBU extension, dependency descriptor).
    pub temporal_id: Option<u8>,
    /// The spatial layer (VP9 `SID`, AV1 OBU extension, dependency descriptor).
    pub spatial_id: Option<u8>,
    /// Switching *up* to this packet's temporal layer is safe from this frame on: VP8 `Y`,
    /// VP9 `U`, or a keyframe. With a dependency descriptor: the frame is a switch point
    /// for the decode target whose highest layers are this frame's.
    pub layer_sync: bool,
    /// `Some(true)` if the packet starts a frame, `Some(false)` if it certainly does not,
    /// `None` if the payload does not say (H264, AV1 without a dependency descriptor: use the
    /// RTP timestamp change).
    pub start_of_frame: Option<bool>,
    /// As `start_of_frame`, for the last packet of a frame (`None`: use the RTP marker bit).
    pub end_of_frame: Option<bool>,
}

/// Whether `payload` (an RTP payload of `codec`, padding removed) starts or carries a
/// keyframe; see [`PacketInfo::keyframe`].
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8::is_keyframe(payload),
        Codec::Vp9 => vp9::is_keyframe(payload),
        Codec::H264 => h264::is_keyframe(payload),
        Codec::Av1 => av1::is_keyframe(payload),
        Codec::Opus => !payload.is_empty(),
        Codec::Other => false,
    }
}

/// Describes one packet of `codec` from its payload alone. `None` if the payload is not a
/// valid packet of that codec (empty, truncated descriptor): such a packet should not be
/// used for layer decisions. [`Codec::Other`] gets an all-unknown description.
pub fn describe(codec: Codec, payload: &[u8]) -> Option<PacketInfo> {
    match codec {
        Codec::Vp8 => {
            let d = vp8::Vp8Descriptor::parse(payload)?;
            let keyframe = d.is_keyframe(payload);
            Some(PacketInfo {
                keyframe,
                temporal_id: d.temporal_id,
                spatial_id: None,
                layer_sync: keyframe || (d.temporal_id.is_some() && d.layer_sync),
                start_of_frame: Some(d.is_start_of_frame()),
                end_of_frame: None,
            })
        }
        Codec::Vp9 => {
            let d = vp9::Vp9Descriptor::parse(payload)?;
            let keyframe = d.is_keyframe();
            Some(PacketInfo {
                keyframe,
                temporal_id: d.layer.map(|l| l.temporal_id),
                spatial_id: d.layer.map(|l| l.spatial_id),
                layer_sync: keyframe || d.layer.is_some_and(|l| l.switching_up_point),
                start_of_frame: Some(d.start_of_frame),
                end_of_frame: Some(d.end_of_frame),
            })
        }
        Codec::H264 => {
            if payload.is_empty() {
                return None;
            }
            let keyframe = h264::is_keyframe(payload);
            Some(PacketInfo {
                keyframe,
                layer_sync: keyframe,
                ..PacketInfo::default()
            })
        }
        Codec::Av1 => {
            let header = av1::AggregationHeader::parse(payload)?;
            let keyframe = header.starts_coded_video_sequence();
            let layers = av1::obus(payload)
                .filter_map(|obu| obu.header.and_then(|h| h.extension))
                .next();
            Some(PacketInfo {
                keyframe,
                temporal_id: layers.map(|e| e.temporal_id),
                spatial_id: layers.map(|e| e.spatial_id),
                layer_sync: keyframe,
                start_of_frame: None,
                end_of_frame: None,
            })
        }
        Codec::Opus => (!payload.is_empty()).then_some(PacketInfo {
            keyframe: true,
            layer_sync: true,
            start_of_frame: Some(true),
            end_of_frame: Some(true),
            ..PacketInfo::default()
        }),
        Codec::Other => Some(PacketInfo::default()),
    }
}

impl PacketInfo {
    /// Overrides what the payload said with what the packet's dependency descriptor says
    /// (layers, frame boundaries, keyframe = structure attached). The descriptor is
    /// authoritative when present: Chrome sends it for VP8, VP9 and AV1 SVC.
    pub fn apply_dependency_descriptor(&mut self, dd: &DependencyDescriptor) {
        self.keyframe = dd.structure_attached;
        self.temporal_id = Some(dd.temporal_id);
        self.spatial_id = Some(dd.spatial_id);
        self.start_of_frame = Some(dd.start_of_frame);
        self.end_of_frame = Some(dd.end_of_frame);
        self.layer_sync = dd.structure_attached || dd.layer_switch_point;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn mime_types_map_to_codecs() {
        assert_eq!(Codec::from_mime_type("video/VP8"), Codec::Vp8);
        assert_eq!(Codec::from_mime_type("VIDEO/vp8"), Codec::Vp8);
        assert_eq!(Codec::from_mime_type("video/VP9"), Codec::Vp9);
        assert_eq!(Codec::from_mime_type("video/H264"), Codec::H264);
        assert_eq!(Codec::from_mime_type("video/AV1"), Codec::Av1);
        assert_eq!(Codec::from_mime_type("audio/opus"), Codec::Opus);
        assert_eq!(Codec::from_mime_type("video/rtx"), Codec::Other);
        assert_eq!(Codec::from_mime_type("vp8"), Codec::Other);
        assert!(Codec::Vp8.is_video() && !Codec::Opus.is_video() && !Codec::Other.is_video());
    }

    #[test]
    fn picture_id_round_trips_both_forms() {
        let mut b = [0u8; 2];
        let long = PictureId {
            value: 0,
            long: true,
        };
        long.write(&mut b, 0x1234).unwrap();
        assert_eq!(b, [0x92, 0x34]);
        assert_eq!(
            PictureId::read(&b),
            Some(PictureId {
                value: 0x1234,
                long: true
            })
        );
        long.write(&mut b, 0x8001).unwrap(); // reduced modulo 2^15
        assert_eq!(PictureId::read(&b).unwrap().value, 1);
        let short = PictureId {
            value: 0,
            long: false,
        };
        short.write(&mut b, 200).unwrap();
        assert_eq!(
            PictureId::read(&b),
            Some(PictureId {
                value: 200 - 128,
                long: false
            })
        );
        assert!(long.write(&mut [0u8; 1], 5).is_none());
        assert_eq!(PictureId::read(&[0x80]), None);
        assert_eq!(PictureId::read(&[]), None);
    }

    #[test]
    fn describe_condenses_each_codec() {
        let vp8_key = vp8::tests::keyframe_packet(Some((0x1234, true)), Some(7), Some((0, true)));
        let info = describe(Codec::Vp8, &vp8_key).unwrap();
        assert!(info.keyframe && info.layer_sync);
        assert_eq!(info.temporal_id, Some(0));
        assert_eq!(info.start_of_frame, Some(true));
        assert!(is_keyframe(Codec::Vp8, &vp8_key));

        // VP8 delta frame, TID 2 without Y.
        let delta = [0x90, 0xa0, 0x85, 0x00, 0x80, 0x01, 0x00, 0x00];
        let info = describe(Codec::Vp8, &delta).unwrap();
        assert!(!info.keyframe && !info.layer_sync);
        assert_eq!(info.temporal_id, Some(2));

        // VP9: I, L, B, E set, P clear, TID 0 SID 0, TL0PICIDX, 1 byte of payload.
        let vp9 = [0xac, 0x81, 0x00, 0x00, 0x05, 0xaa];
        let info = describe(Codec::Vp9, &vp9).unwrap();
        assert!(info.keyframe);
        assert_eq!((info.temporal_id, info.spatial_id), (Some(0), Some(0)));
        assert_eq!(
            (info.start_of_frame, info.end_of_frame),
            (Some(true), Some(true))
        );

        // H264 single IDR NAL.
        let info = describe(Codec::H264, &[0x65, 0x88]).unwrap();
        assert!(info.keyframe);
        assert_eq!(info.start_of_frame, None);
        assert!(!describe(Codec::H264, &[0x41, 0x9a]).unwrap().keyframe);

        // AV1: N=1, W=1, one OBU: frame with extension (tid 2, sid 1).
        let av1 = [0x18, 0x34, 0x48, 0xaa];
        let info = describe(Codec::Av1, &av1).unwrap();
        assert!(info.keyframe);
        assert_eq!((info.temporal_id, info.spatial_id), (Some(2), Some(1)));

        assert!(describe(Codec::Opus, &[0xfc]).unwrap().keyframe);
        assert!(describe(Codec::Opus, &[]).is_none());
        assert_eq!(describe(Codec::Other, &[1, 2]), Some(PacketInfo::default()));
        for codec in [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1] {
            assert!(describe(codec, &[]).is_none(), "{codec:?}");
            assert!(!is_keyframe(codec, &[]));
        }
    }

    #[test]
    fn dependency_descriptor_overrides_payload_information() {
        let structure = dependency_descriptor::tests::l1t3_structure();
        let ext = dependency_descriptor::tests::l1t3_packet(2, 17, true);
        let dd = dependency_descriptor::parse(&ext, Some(&structure)).unwrap();
        let mut info = describe(Codec::Vp8, &[0x10, 0x00, 0x00]).unwrap();
        info.apply_dependency_descriptor(&dd);
        assert_eq!(info.temporal_id, Some(1));
        assert_eq!(info.spatial_id, Some(0));
        assert!(!info.keyframe);
    }

    #[test]
    fn describe_never_panics() {
        test_util::sweep(|data| {
            for codec in [
                Codec::Vp8,
                Codec::Vp9,
                Codec::H264,
                Codec::Av1,
                Codec::Opus,
                Codec::Other,
            ] {
                let info = describe(codec, data);
                if let Some(info) = info {
                    assert!(!info.keyframe || info.layer_sync || codec == Codec::Other);
                }
                let _ = is_keyframe(codec, data);
            }
        });
    }
}
