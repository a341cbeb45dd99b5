//! The SDP-free description of media: codecs, payload types, header extensions, encodings.
//!
//! Signaling translates SDP to and from these types; the core never sees SDP. A producer is
//! created from the [`RtpParameters`] its publisher sends with; a consumer's parameters are
//! derived from the producer's and the subscriber's [`RtpCapabilities`] by
//! [`RtpParameters::for_consumer`].

use std::fmt;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        })
    }
}

/// Header-extension URIs the core reads or forwards.
pub mod extension_uri {
    /// RFC 8843 MID.
    pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    /// RFC 8852 RtpStreamId (rid).
    pub const RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
    /// RFC 8852 RepairedRtpStreamId.
    pub const REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
    /// RFC 6464 client-to-mixer audio level.
    pub const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    /// Absolute send time.
    pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    /// Transport-wide congestion control sequence number.
    pub const TRANSPORT_CC: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    /// Coordination of video orientation.
    pub const VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";
    /// AV1 dependency descriptor.
    pub const DEPENDENCY_DESCRIPTOR: &str =
        "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
}

/// An RTCP feedback mechanism a codec supports (`a=rtcp-fb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpFeedback {
    /// e.g. `nack`, `ccm`, `goog-remb`, `transport-cc`.
    pub kind: String,
    /// e.g. `pli`, `fir`, or empty.
    pub parameter: String,
}

impl RtcpFeedback {
    /// Shorthand constructor.
    pub fn new(kind: &str, parameter: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            parameter: parameter.to_owned(),
        }
    }
}

/// One codec with its payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpCodecParameters {
    /// `audio/opus`, `video/VP8`, `video/H264`, … (case-insensitive).
    pub mime_type: String,
    /// Payload type.
    pub payload_type: u8,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels.
    pub channels: Option<u8>,
    /// Format parameters (`a=fmtp`), as key/value pairs.
    pub parameters: Vec<(String, String)>,
    /// Supported RTCP feedback.
    pub rtcp_feedback: Vec<RtcpFeedback>,
    /// Payload type of the matching RTX stream (RFC 4588), if negotiated.
    pub rtx_payload_type: Option<u8>,
}

impl RtpCodecParameters {
    /// The kind implied by the MIME type.
    pub fn kind(&self) -> Option<MediaKind> {
        let (top, _) = self.mime_type.split_once('/')?;
        if top.eq_ignore_ascii_case("audio") {
            Some(MediaKind::Audio)
        } else if top.eq_ignore_ascii_case("video") {
            Some(MediaKind::Video)
        } else {
            None
        }
    }

    fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Whether two codec descriptions can carry the same bitstream.
    pub fn matches(&self, other: &RtpCodecParameters) -> bool {
        if !self.mime_type.eq_ignore_ascii_case(&other.mime_type)
            || self.clock_rate != other.clock_rate
        {
            return false;
        }
        if self.mime_type.eq_ignore_ascii_case("video/H264") {
            let mode = |c: &RtpCodecParameters| {
                c.parameter("packetization-mode").unwrap_or("0").to_owned()
            };
            let profile = |c: &RtpCodecParameters| {
                // Profile-idc + profile-iop (first 4 hex digits); level may differ.
                c.parameter("profile-level-id")
                    .map(|p| p.get(..4).unwrap_or(p).to_ascii_lowercase())
                    .unwrap_or_else(|| "42e0".to_owned())
            };
            return mode(self) == mode(other) && profile(self) == profile(other);
        }
        if self.mime_type.eq_ignore_ascii_case("video/VP9") {
            let p = |c: &RtpCodecParameters| c.parameter("profile-id").unwrap_or("0").to_owned();
            return p(self) == p(other);
        }
        true
    }

    /// Whether the codec supports this RTCP feedback.
    pub fn has_feedback(&self, kind: &str, parameter: &str) -> bool {
        self.rtcp_feedback
            .iter()
            .any(|f| f.kind == kind && f.parameter == parameter)
    }
}

/// A negotiated header extension: URI and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeaderExtension {
    /// The extension's URI.
    pub uri: String,
    /// Its id on this leg (1..=255, 15 reserved in one-byte form).
    pub id: u8,
}

/// One encoding (a simulcast layer, or the only stream).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpEncodingParameters {
    /// The SSRC, when signalled (`a=ssrc`).
    pub ssrc: Option<u32>,
    /// The RTP stream id, when the publisher uses rid-based simulcast.
    pub rid: Option<String>,
    /// The RTX SSRC, when signalled.
    pub rtx_ssrc: Option<u32>,
    /// Maximum bitrate in bit/s, if known.
    pub max_bitrate: Option<u32>,
}

/// Everything that describes one direction of one track on one leg.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpParameters {
    /// The media section's mid, if the leg uses BUNDLE.
    pub mid: Option<String>,
    /// Codecs in preference order. A producer accepts only these payload types.
    pub codecs: Vec<RtpCodecParameters>,
    /// Negotiated header extensions.
    pub header_extensions: Vec<RtpHeaderExtension>,
    /// Encodings (one per simulcast layer).
    pub encodings: Vec<RtpEncodingParameters>,
    /// RTCP CNAME.
    pub cname: Option<String>,
}

/// What a subscriber can receive: codecs with its payload types and its extension ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpCapabilities {
    /// Codecs the subscriber can decode, with the payload types it uses.
    pub codecs: Vec<RtpCodecParameters>,
    /// Header extensions with the subscriber's ids.
    pub header_extensions: Vec<RtpHeaderExtension>,
}

/// Why a producer or consumer cannot be created from the given parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpParametersError {
    /// No codec, or a codec whose MIME type is not audio/ or video/.
    #[error("no usable codec in the parameters")]
    NoCodec,
    /// Codecs of mixed kinds.
    #[error("codecs of different media kinds in one track")]
    MixedKinds,
    /// No encoding: neither an SSRC, a rid nor a mid to recognise the stream by.
    #[error("an encoding needs an SSRC or a rid, or the track a mid")]
    NoEncoding,
    /// The subscriber supports none of the producer's codecs.
    #[error("the subscriber supports none of the producer's codecs")]
    NoCommonCodec,
    /// A payload type or extension id is out of range or duplicated.
    #[error("invalid payload type or header-extension id: {0}")]
    Invalid(String),
}

impl RtpParameters {
    /// The media kind of these parameters, validated.
    pub fn kind(&self) -> Result<MediaKind, RtpParametersError> {
        let first = self.codecs.first().ok_or(RtpParametersError::NoCodec)?;
        let kind = first.kind().ok_or(RtpParametersError::NoCodec)?;
        if self.codecs.iter().any(|c| c.kind() != Some(kind)) {
            return Err(RtpParametersError::MixedKinds);
        }
        Ok(kind)
    }

    /// Checks what a producer needs: a kind, valid payload types and ids, and a way to
    /// recognise its streams (SSRC, rid or mid).
    pub fn validate_for_producer(&self) -> Result<MediaKind, RtpParametersError> {
        let kind = self.kind()?;
        let mut seen = [false; 128];
        for c in &self.codecs {
            for pt in std::iter::once(c.payload_type).chain(c.rtx_payload_type) {
                let slot = seen
                    .get_mut(usize::from(pt))
                    .ok_or_else(|| RtpParametersError::Invalid(format!("payload type {pt}")))?;
                if *slot {
                    return Err(RtpParametersError::Invalid(format!(
                        "duplicate payload type {pt}"
                    )));
                }
                *slot = true;
            }
        }
        let mut ids = [false; 256];
        for e in &self.header_extensions {
            if e.id == 0 || e.id == 15 {
                return Err(RtpParametersError::Invalid(format!(
                    "extension id {}",
                    e.id
                )));
            }
            // RFC 8285: one id names one extension; a second one would be read as the first.
            if ids
                .get_mut(usize::from(e.id))
                .is_some_and(|seen| std::mem::replace(seen, true))
            {
                return Err(RtpParametersError::Invalid(format!(
                    "duplicate extension id {}",
                    e.id
                )));
            }
        }
        if self.encodings.is_empty() && self.mid.is_none() {
            return Err(RtpParametersError::NoEncoding);
        }
        if self
            .encodings
            .iter()
            .any(|e| e.ssrc.is_none() && e.rid.is_none() && self.mid.is_none())
        {
            return Err(RtpParametersError::NoEncoding);
        }
        Ok(kind)
    }

    /// The id of the extension with `uri` on this leg.
    pub fn extension_id(&self, uri: &str) -> Option<u8> {
        self.header_extensions
            .iter()
            .find(|e| e.uri == uri)
            .map(|e| e.id)
    }

    /// The codec with payload type `pt`.
    pub fn codec_by_payload_type(&self, pt: u8) -> Option<&RtpCodecParameters> {
        self.codecs.iter().find(|c| c.payload_type == pt)
    }

    /// Derives the parameters a consumer sends with: the subscriber's payload types and
    /// extension ids for every producer codec it supports, one encoding with `ssrc` (and
    /// `rtx_ssrc` when RTX is negotiated for the first codec).
    pub fn for_consumer(
        &self,
        caps: &RtpCapabilities,
        mid: Option<String>,
        ssrc: u32,
        rtx_ssrc: u32,
    ) -> Result<RtpParameters, RtpParametersError> {
        let codecs: Vec<RtpCodecParameters> = self
            .codecs
            .iter()
            .filter_map(|pc| {
                caps.codecs
                    .iter()
                    .find(|sc| pc.matches(sc))
                    .map(|sc| RtpCodecParameters {
                        payload_type: sc.payload_type,
                        rtx_payload_type: sc.rtx_payload_type,
                        rtcp_feedback: sc.rtcp_feedback.clone(),
                        ..pc.clone()
                    })
            })
            .collect();
        let first = codecs.first().ok_or(RtpParametersError::NoCommonCodec)?;
        let rtx = first.rtx_payload_type.map(|_| rtx_ssrc);
        // Extensions the SFU can carry over unchanged, and the per-leg ones it writes itself
        // (the mid, and the transport-wide sequence number of its own congestion control).
        // Other per-hop ones, like abs-send-time, are not offered.
        let forwardable = [
            extension_uri::MID,
            extension_uri::AUDIO_LEVEL,
            extension_uri::VIDEO_ORIENTATION,
            extension_uri::TRANSPORT_CC,
        ];
        let written_per_leg =
            |uri: &str| uri == extension_uri::MID || uri == extension_uri::TRANSPORT_CC;
        let header_extensions = caps
            .header_extensions
            .iter()
            .filter(|e| forwardable.contains(&e.uri.as_str()))
            .filter(|e| written_per_leg(&e.uri) || self.extension_id(&e.uri).is_some())
            .cloned()
            .collect();
        Ok(RtpParameters {
            mid,
            codecs,
            header_extensions,
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(ssrc),
                rtx_ssrc: rtx,
                ..Default::default()
            }],
            cname: self.cname.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp8(pt: u8, rtx: Option<u8>) -> RtpCodecParameters {
        RtpCodecParameters {
            mime_type: "video/VP8".into(),
            payload_type: pt,
            clock_rate: 90_000,
            channels: None,
            parameters: vec![],
            rtcp_feedback: vec![RtcpFeedback::new("nack", "pli")],
            rtx_payload_type: rtx,
        }
    }

    fn h264(pt: u8, mode: &str, profile: &str) -> RtpCodecParameters {
        RtpCodecParameters {
            mime_type: "video/H264".into(),
            parameters: vec![
                ("packetization-mode".into(), mode.into()),
                ("profile-level-id".into(), profile.into()),
            ],
            ..vp8(pt, None)
        }
    }

    #[test]
    fn consumer_parameters_use_subscriber_payload_types_and_ids() {
        let producer = RtpParameters {
            mid: Some("1".into()),
            codecs: vec![vp8(96, Some(97)), h264(102, "1", "42e01f")],
            header_extensions: vec![
                RtpHeaderExtension {
                    uri: extension_uri::MID.into(),
                    id: 4,
                },
                RtpHeaderExtension {
                    uri: extension_uri::VIDEO_ORIENTATION.into(),
                    id: 13,
                },
            ],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(1),
                ..Default::default()
            }],
            cname: None,
        };
        assert_eq!(producer.validate_for_producer(), Ok(MediaKind::Video));
        let caps = RtpCapabilities {
            codecs: vec![h264(120, "1", "42e034"), vp8(100, Some(101))],
            header_extensions: vec![
                RtpHeaderExtension {
                    uri: extension_uri::MID.into(),
                    id: 1,
                },
                RtpHeaderExtension {
                    uri: extension_uri::VIDEO_ORIENTATION.into(),
                    id: 7,
                },
                RtpHeaderExtension {
                    uri: extension_uri::TRANSPORT_CC.into(),
                    id: 3,
                },
            ],
        };
        let c = producer
            .for_consumer(&caps, Some("0".into()), 55, 56)
            .unwrap();
        assert_eq!(
            c.codecs.iter().map(|c| c.payload_type).collect::<Vec<_>>(),
            vec![100, 120]
        );
        assert_eq!(c.codecs[0].rtx_payload_type, Some(101));
        assert_eq!(c.encodings[0].ssrc, Some(55));
        assert_eq!(c.encodings[0].rtx_ssrc, Some(56));
        assert_eq!(c.extension_id(extension_uri::VIDEO_ORIENTATION), Some(7));
        // Written per leg by the SFU's own congestion control, whatever the publisher sent.
        assert_eq!(c.extension_id(extension_uri::TRANSPORT_CC), Some(3));
    }

    #[test]
    fn incompatible_h264_or_no_codec_is_refused() {
        let producer = RtpParameters {
            codecs: vec![h264(102, "1", "42e01f")],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        };
        let caps = RtpCapabilities {
            codecs: vec![h264(120, "0", "42e01f")],
            header_extensions: vec![],
        };
        assert_eq!(
            producer.for_consumer(&caps, None, 1, 2),
            Err(RtpParametersError::NoCommonCodec)
        );
        assert_eq!(
            RtpParameters::default().validate_for_producer(),
            Err(RtpParametersError::NoCodec)
        );
        let dup = RtpParameters {
            codecs: vec![vp8(96, Some(96))],
            ..producer.clone()
        };
        assert!(matches!(
            dup.validate_for_producer(),
            Err(RtpParametersError::Invalid(_))
        ));
        let dup_extension = RtpParameters {
            header_extensions: [extension_uri::MID, extension_uri::VIDEO_ORIENTATION]
                .into_iter()
                .map(|uri| RtpHeaderExtension {
                    uri: uri.into(),
                    id: 4,
                })
                .collect(),
            ..producer.clone()
        };
        assert_eq!(
            dup_extension.validate_for_producer(),
            Err(RtpParametersError::Invalid(
                "duplicate extension id 4".into()
            ))
        );
        let nothing = RtpParameters {
            encodings: vec![RtpEncodingParameters::default()],
            ..producer
        };
        assert_eq!(
            nothing.validate_for_producer(),
            Err(RtpParametersError::NoEncoding)
        );
    }
}
