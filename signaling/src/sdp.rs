//! SDP ↔ `sfu-core` RTP parameters (JSEP, RFC 8829), on `rtc-sdp`.
//!
//! The media core knows nothing of SDP; this module is the whole translation. It reads a
//! browser's offer or answer into a [`RemoteDescription`] (ICE credentials, fingerprint and,
//! per media section, codecs, header extensions, SSRCs and rids), turns an offered section
//! into the [`RtpParameters`] of a producer, and writes the server's answers (publish) and
//! offers (subscribe). The server is ICE-lite and always the DTLS server (`setup:passive` in
//! answers, `actpass` in offers, which browsers answer with `active`).

use std::collections::HashMap;
use std::io::Cursor;
use std::net::SocketAddr;

use rtc_sdp::description::common::{Attribute, ConnectionInformation};
use rtc_sdp::description::media::{MediaDescription, RangedPort};
use rtc_sdp::description::session::SessionDescription;
use sfu_core::rtp_parameters::extension_uri;
use sfu_core::{
    Fingerprint, MediaKind, RtcpFeedback, RtpCapabilities, RtpCodecParameters,
    RtpEncodingParameters, RtpHeaderExtension, RtpParameters,
};

/// Why a description could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// It does not parse.
    #[error("SDP does not parse: {0}")]
    Parse(String),
    /// A required attribute is missing or malformed.
    #[error("SDP lacks {0}")]
    Missing(&'static str),
    /// A media section has no codec the server forwards.
    #[error("media section {mid} has no codec the server forwards")]
    NoSupportedCodec {
        /// The section's mid.
        mid: String,
    },
}

/// Direction of a media section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `sendrecv`.
    SendRecv,
    /// `sendonly`.
    SendOnly,
    /// `recvonly`.
    RecvOnly,
    /// `inactive`.
    Inactive,
}

/// One media section of a remote description.
#[derive(Debug, Clone)]
pub struct RemoteMedia {
    /// Its mid.
    pub mid: String,
    /// Audio or video (other kinds are kept as `None` and rejected).
    pub kind: Option<MediaKind>,
    /// Direction.
    pub direction: Direction,
    /// Port 0: rejected or stopped.
    pub rejected: bool,
    /// Payload types in m-line order.
    pub formats: Vec<String>,
    /// All codecs offered, with their RTX payload types attached.
    pub codecs: Vec<RtpCodecParameters>,
    /// Header extensions offered.
    pub extensions: Vec<RtpHeaderExtension>,
    /// Media SSRCs (not the RTX ones), in order.
    pub ssrcs: Vec<u32>,
    /// RTX SSRC per media SSRC (`a=ssrc-group:FID`).
    pub rtx_ssrcs: HashMap<u32, u32>,
    /// Send rids (`a=rid:<id> send`), in `a=simulcast:send` order when present.
    pub rids: Vec<String>,
    /// SSRC simulcast (`a=ssrc-group:SIM`), lowest quality first.
    pub simulcast_ssrcs: Vec<u32>,
    /// CNAME, if any.
    pub cname: Option<String>,
    /// The media kind as written on the m-line (`audio`, `video`, `application`…).
    pub media_type: String,
}

/// A parsed remote offer or answer.
#[derive(Debug, Clone)]
pub struct RemoteDescription {
    /// ICE username fragment.
    pub ice_ufrag: String,
    /// ICE password.
    pub ice_pwd: String,
    /// DTLS fingerprint.
    pub fingerprint: Fingerprint,
    /// DTLS setup role (`active`, `passive`, `actpass`).
    pub setup: Option<String>,
    /// Media sections in order.
    pub media: Vec<RemoteMedia>,
}

fn attr<'a>(session: &'a [Attribute], media: &'a [Attribute], key: &str) -> Option<&'a str> {
    media
        .iter()
        .chain(session.iter())
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_deref())
}

/// Parses an SDP offer or answer from a browser.
pub fn parse_description(sdp: &str) -> Result<RemoteDescription, SdpError> {
    let session = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|e| SdpError::Parse(e.to_string()))?;
    let mut ice = None;
    let mut fingerprint = None;
    let mut setup = None;
    let mut media = Vec::new();
    for (index, m) in session.media_descriptions.iter().enumerate() {
        let a = |k| attr(&session.attributes, &m.attributes, k);
        if ice.is_none()
            && let (Some(u), Some(p)) = (a("ice-ufrag"), a("ice-pwd"))
        {
            ice = Some((u.to_owned(), p.to_owned()));
        }
        if fingerprint.is_none() {
            fingerprint = a("fingerprint").and_then(Fingerprint::parse);
        }
        if setup.is_none() {
            setup = a("setup").map(str::to_owned);
        }
        media.push(parse_media(m, index));
    }
    if ice.is_none() {
        ice = match (
            attr(&session.attributes, &[], "ice-ufrag"),
            attr(&session.attributes, &[], "ice-pwd"),
        ) {
            (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
            _ => None,
        };
    }
    if fingerprint.is_none() {
        fingerprint = attr(&session.attributes, &[], "fingerprint").and_then(Fingerprint::parse);
    }
    let (ice_ufrag, ice_pwd) = ice.ok_or(SdpError::Missing("a=ice-ufrag / a=ice-pwd"))?;
    let fingerprint = fingerprint.ok_or(SdpError::Missing("a=fingerprint:sha-256"))?;
    Ok(RemoteDescription {
        ice_ufrag,
        ice_pwd,
        fingerprint,
        setup,
        media,
    })
}

fn parse_media(m: &MediaDescription, index: usize) -> RemoteMedia {
    let media_type = m.media_name.media.clone();
    let kind = match media_type.as_str() {
        "audio" => Some(MediaKind::Audio),
        "video" => Some(MediaKind::Video),
        _ => None,
    };
    let mut direction = Direction::SendRecv;
    let mut mid = None;
    let mut rtpmap: Vec<(u8, String, u32, Option<u8>)> = Vec::new();
    let mut fmtp: HashMap<u8, Vec<(String, String)>> = HashMap::new();
    let mut feedback: HashMap<u8, Vec<RtcpFeedback>> = HashMap::new();
    let mut wildcard_feedback = Vec::new();
    let mut extensions = Vec::new();
    let mut ssrcs = Vec::new();
    let mut rtx_ssrcs = HashMap::new();
    let mut rids = Vec::new();
    let mut simulcast_ssrcs = Vec::new();
    let mut simulcast_order: Vec<String> = Vec::new();
    let mut cname = None;
    for a in &m.attributes {
        let v = a.value.as_deref().unwrap_or("");
        match a.key.as_str() {
            "sendrecv" => direction = Direction::SendRecv,
            "sendonly" => direction = Direction::SendOnly,
            "recvonly" => direction = Direction::RecvOnly,
            "inactive" => direction = Direction::Inactive,
            "mid" => mid = Some(v.to_owned()),
            "rtpmap" => {
                // "96 VP8/90000" or "111 opus/48000/2"
                if let Some((pt, rest)) = v.split_once(' ')
                    && let Ok(pt) = pt.parse::<u8>()
                {
                    let mut parts = rest.split('/');
                    let name = parts.next().unwrap_or("").to_owned();
                    let rate = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                    let channels = parts.next().and_then(|c| c.parse().ok());
                    rtpmap.push((pt, name, rate, channels));
                }
            }
            "fmtp" => {
                if let Some((pt, params)) = v.split_once(' ')
                    && let Ok(pt) = pt.parse::<u8>()
                {
                    let list = params
                        .split(';')
                        .filter_map(|kv| {
                            let (k, v) = kv.trim().split_once('=')?;
                            Some((k.trim().to_owned(), v.trim().to_owned()))
                        })
                        .collect();
                    fmtp.insert(pt, list);
                }
            }
            "rtcp-fb" => {
                let mut parts = v.splitn(3, ' ');
                let pt = parts.next().unwrap_or("");
                let fb = RtcpFeedback::new(parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if pt == "*" {
                    wildcard_feedback.push(fb);
                } else if let Ok(pt) = pt.parse::<u8>() {
                    feedback.entry(pt).or_default().push(fb);
                }
            }
            "extmap" => {
                // "4 urn:…" or "4/sendonly urn:…"
                let mut parts = v.split_whitespace();
                let id = parts
                    .next()
                    .and_then(|i| i.split('/').next())
                    .and_then(|i| i.parse::<u8>().ok());
                if let (Some(id), Some(uri)) = (id, parts.next())
                    && (1..=255).contains(&id)
                    && id != 15
                {
                    extensions.push(RtpHeaderExtension {
                        uri: uri.to_owned(),
                        id,
                    });
                }
            }
            "ssrc" => {
                let mut parts = v.splitn(2, ' ');
                if let Some(Ok(ssrc)) = parts.next().map(str::parse::<u32>) {
                    if !ssrcs.contains(&ssrc) {
                        ssrcs.push(ssrc);
                    }
                    if let Some(rest) = parts.next()
                        && let Some(c) = rest.strip_prefix("cname:")
                    {
                        cname = Some(c.to_owned());
                    }
                }
            }
            "ssrc-group" => {
                let mut parts = v.split_whitespace();
                let semantics = parts.next();
                let ids: Vec<u32> = parts.filter_map(|s| s.parse().ok()).collect();
                match (semantics, &ids[..]) {
                    (Some("FID"), [media_ssrc, rtx]) => {
                        rtx_ssrcs.insert(*media_ssrc, *rtx);
                    }
                    (Some("SIM"), list) if list.len() > 1 && simulcast_ssrcs.is_empty() => {
                        simulcast_ssrcs = list.to_vec()
                    }
                    _ => {}
                }
            }
            "simulcast" => {
                // "send q;h;f" (alternatives after ',' and paused '~' streams are not used).
                if let Some(list) = v.strip_prefix("send ") {
                    simulcast_order = list
                        .split(';')
                        .filter_map(|alt| alt.split(',').next())
                        .map(|r| r.trim_start_matches('~').to_owned())
                        .collect();
                }
            }
            "rid" => {
                let mut parts = v.split_whitespace();
                if let (Some(id), Some("send")) = (parts.next(), parts.next()) {
                    rids.push(id.to_owned());
                }
            }
            _ => {}
        }
    }
    if !simulcast_order.is_empty() {
        rids = simulcast_order
            .into_iter()
            .filter(|r| rids.contains(r))
            .collect();
    }
    let rtx_values: Vec<u32> = rtx_ssrcs.values().copied().collect();
    ssrcs.retain(|s| !rtx_values.contains(s));
    // Codecs in m-line order, RTX attached to the codec its apt names.
    let formats: Vec<String> = m.media_name.formats.clone();
    let mut codecs = Vec::new();
    let mut rtx_for: HashMap<u8, u8> = HashMap::new();
    for (pt, name, _, _) in &rtpmap {
        if name.eq_ignore_ascii_case("rtx")
            && let Some(apt) = fmtp
                .get(pt)
                .and_then(|p| p.iter().find(|(k, _)| k == "apt"))
                .and_then(|(_, v)| v.parse::<u8>().ok())
        {
            rtx_for.insert(apt, *pt);
        }
    }
    for f in &formats {
        let Ok(pt) = f.parse::<u8>() else { continue };
        let Some((_, name, rate, channels)) = rtpmap.iter().find(|(p, ..)| *p == pt) else {
            continue;
        };
        if name.eq_ignore_ascii_case("rtx") {
            continue;
        }
        let Some(kind) = kind else { continue };
        let mut rtcp_feedback = feedback.get(&pt).cloned().unwrap_or_default();
        rtcp_feedback.extend(wildcard_feedback.iter().cloned());
        codecs.push(RtpCodecParameters {
            mime_type: format!("{kind}/{name}"),
            payload_type: pt,
            clock_rate: *rate,
            channels: *channels,
            parameters: fmtp.get(&pt).cloned().unwrap_or_default(),
            rtcp_feedback,
            rtx_payload_type: rtx_for.get(&pt).copied(),
        });
    }
    RemoteMedia {
        mid: mid.unwrap_or_else(|| index.to_string()),
        kind,
        direction,
        rejected: m.media_name.port.value == 0,
        formats,
        codecs,
        extensions,
        ssrcs,
        rtx_ssrcs,
        rids,
        simulcast_ssrcs,
        cname,
        media_type,
    }
}

/// Header extensions the server accepts from publishers: the ones it reads or forwards.
const ACCEPTED_EXTENSIONS: &[&str] = &[
    extension_uri::MID,
    extension_uri::RID,
    extension_uri::REPAIRED_RID,
    extension_uri::AUDIO_LEVEL,
    extension_uri::VIDEO_ORIENTATION,
    // The server sends transport-wide CC feedback, so browsers estimate their send rate.
    extension_uri::TRANSPORT_CC,
    // Read for keyframes, layers and switch points of simulcast/SVC; never forwarded.
    extension_uri::DEPENDENCY_DESCRIPTOR,
];

/// Whether the server forwards this codec.
fn forwards(codec: &RtpCodecParameters) -> bool {
    let name = codec.mime_type.to_ascii_lowercase();
    match name.as_str() {
        "audio/opus" => true,
        "video/vp8" | "video/vp9" | "video/av1" => true,
        // Mode 1 only: mode 0 (single NAL) is not worth a second depacketizing path.
        "video/h264" => codec
            .parameters
            .iter()
            .any(|(k, v)| k == "packetization-mode" && v == "1"),
        _ => false,
    }
}

/// Feedback the server honours: NACK, PLI, FIR, and transport-wide CC (it sends the feedback).
fn keep_feedback(fb: &RtcpFeedback) -> bool {
    matches!(
        (fb.kind.as_str(), fb.parameter.as_str()),
        ("nack", "") | ("nack", "pli") | ("ccm", "fir") | ("transport-cc", "")
    )
}

/// Turns an offered sending section into a producer's parameters: forwardable codecs (in the
/// offer's order, RTX kept), accepted header extensions, and the streams (SSRCs or rids).
pub fn publish_parameters(m: &RemoteMedia) -> Result<RtpParameters, SdpError> {
    let codecs: Vec<RtpCodecParameters> = m
        .codecs
        .iter()
        .filter(|c| forwards(c))
        .map(|c| RtpCodecParameters {
            rtcp_feedback: c
                .rtcp_feedback
                .iter()
                .filter(|f| keep_feedback(f))
                .cloned()
                .collect(),
            ..c.clone()
        })
        .collect();
    if codecs.is_empty() {
        return Err(SdpError::NoSupportedCodec { mid: m.mid.clone() });
    }
    let header_extensions = m
        .extensions
        .iter()
        .filter(|e| ACCEPTED_EXTENSIONS.contains(&e.uri.as_str()))
        .cloned()
        .collect();
    // Simulcast streams, lowest quality first (the order the client lists them in: browsers
    // list `sendEncodings` as given, and the web client gives them low to high): by rid (Chrome's
    // way, no SSRCs signalled), by an SSRC SIM group, or a single stream (SSRC or mid-only).
    let encodings = if m.rids.len() > 1 {
        m.rids
            .iter()
            .map(|rid| RtpEncodingParameters {
                rid: Some(rid.clone()),
                ..Default::default()
            })
            .collect()
    } else if m.simulcast_ssrcs.len() > 1 {
        m.simulcast_ssrcs
            .iter()
            .map(|ssrc| RtpEncodingParameters {
                ssrc: Some(*ssrc),
                rtx_ssrc: m.rtx_ssrcs.get(ssrc).copied(),
                ..Default::default()
            })
            .collect()
    } else {
        m.ssrcs
            .first()
            .map(|ssrc| {
                vec![RtpEncodingParameters {
                    ssrc: Some(*ssrc),
                    rtx_ssrc: m.rtx_ssrcs.get(ssrc).copied(),
                    ..Default::default()
                }]
            })
            .unwrap_or_default()
    };
    Ok(RtpParameters {
        mid: Some(m.mid.clone()),
        codecs,
        header_extensions,
        encodings,
        cname: m.cname.clone(),
    })
}

/// What the server's side of a transport looks like in SDP.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    /// ICE ufrag.
    pub ice_ufrag: String,
    /// ICE password.
    pub ice_pwd: String,
    /// DTLS fingerprint.
    pub fingerprint: Fingerprint,
    /// Host candidates.
    pub candidates: Vec<SocketAddr>,
}

fn session(version: u64, bundle: &[String]) -> SessionDescription {
    let mut s = SessionDescription::new_jsep_session_description(false);
    s.origin.session_version = version;
    if !bundle.is_empty() {
        s = s.with_value_attribute("group".into(), format!("BUNDLE {}", bundle.join(" ")));
    }
    s.with_property_attribute("ice-lite".into())
        .with_value_attribute("msid-semantic".into(), " WMS *".into())
}

fn media_section(kind: &str, formats: Vec<String>, rejected: bool) -> MediaDescription {
    let mut m = MediaDescription::new_jsep_media_description(kind.to_owned(), vec![]);
    m.media_name.formats = formats;
    if rejected {
        m.media_name.port = RangedPort {
            value: 0,
            range: None,
        };
    }
    m.connection_information = Some(ConnectionInformation {
        network_type: "IN".into(),
        address_type: "IP4".into(),
        address: Some(rtc_sdp::description::common::Address {
            address: "0.0.0.0".into(),
            ttl: None,
            range: None,
        }),
    });
    m
}

fn add_transport(m: MediaDescription, t: &LocalTransport, setup: &str) -> MediaDescription {
    let mut m = m
        .with_value_attribute("ice-ufrag".into(), t.ice_ufrag.clone())
        .with_value_attribute("ice-pwd".into(), t.ice_pwd.clone())
        .with_value_attribute("fingerprint".into(), format!("sha-256 {}", t.fingerprint))
        .with_value_attribute("setup".into(), setup.into());
    for (i, c) in t.candidates.iter().enumerate() {
        m = m.with_value_attribute(
            "candidate".into(),
            format!(
                "{} 1 udp {} {} {} typ host",
                i + 1,
                2_130_706_431u32 - i as u32,
                c.ip(),
                c.port()
            ),
        );
    }
    m.with_property_attribute("end-of-candidates".into())
}

fn add_codecs(mut m: MediaDescription, params: &RtpParameters) -> MediaDescription {
    for e in &params.header_extensions {
        m = m.with_value_attribute("extmap".into(), format!("{} {}", e.id, e.uri));
    }
    m = m
        .with_property_attribute("rtcp-mux".into())
        .with_property_attribute("rtcp-rsize".into());
    for c in &params.codecs {
        let name = c
            .mime_type
            .split_once('/')
            .map_or(c.mime_type.as_str(), |(_, n)| n);
        let rtpmap = match c.channels {
            Some(ch) => format!("{} {}/{}/{}", c.payload_type, name, c.clock_rate, ch),
            None => format!("{} {}/{}", c.payload_type, name, c.clock_rate),
        };
        m = m.with_value_attribute("rtpmap".into(), rtpmap);
        for fb in &c.rtcp_feedback {
            let v = if fb.parameter.is_empty() {
                format!("{} {}", c.payload_type, fb.kind)
            } else {
                format!("{} {} {}", c.payload_type, fb.kind, fb.parameter)
            };
            m = m.with_value_attribute("rtcp-fb".into(), v);
        }
        if !c.parameters.is_empty() {
            let p: Vec<String> = c
                .parameters
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            m = m
                .with_value_attribute("fmtp".into(), format!("{} {}", c.payload_type, p.join(";")));
        }
        if let Some(rtx) = c.rtx_payload_type {
            m = m
                .with_value_attribute("rtpmap".into(), format!("{rtx} rtx/{}", c.clock_rate))
                .with_value_attribute("fmtp".into(), format!("{rtx} apt={}", c.payload_type));
        }
    }
    m
}

fn formats_of(params: &RtpParameters) -> Vec<String> {
    params
        .codecs
        .iter()
        .flat_map(|c| std::iter::once(c.payload_type).chain(c.rtx_payload_type))
        .map(|pt| pt.to_string())
        .collect()
}

/// Writes the answer to a publish offer. `accepted` holds, per offered section in order, the
/// parameters the server receives with, or `None` to reject the section.
pub fn write_publish_answer(
    offer: &RemoteDescription,
    accepted: &[Option<RtpParameters>],
    transport: &LocalTransport,
    version: u64,
) -> String {
    let bundle: Vec<String> = offer
        .media
        .iter()
        .zip(accepted)
        .filter(|(_, a)| a.is_some())
        .map(|(m, _)| m.mid.clone())
        .collect();
    let mut s = session(version, &bundle);
    for (m, params) in offer.media.iter().zip(accepted) {
        let section = match params {
            Some(p) => {
                let md = media_section(&m.media_type, formats_of(p), false);
                let md = add_transport(md, transport, "passive")
                    .with_value_attribute("mid".into(), m.mid.clone());
                let mut md = add_codecs(md, p).with_property_attribute("recvonly".into());
                // Without these Chrome sends only its first layer.
                let rids: Vec<&str> = p
                    .encodings
                    .iter()
                    .filter_map(|e| e.rid.as_deref())
                    .collect();
                if rids.len() > 1 {
                    for rid in &rids {
                        md = md.with_value_attribute("rid".into(), format!("{rid} recv"));
                    }
                    md = md.with_value_attribute(
                        "simulcast".into(),
                        format!("recv {}", rids.join(";")),
                    );
                }
                md
            }
            None => {
                let formats = if m.formats.is_empty() {
                    vec!["0".to_owned()]
                } else {
                    m.formats.clone()
                };
                media_section(&m.media_type, formats, true)
                    .with_value_attribute("mid".into(), m.mid.clone())
                    .with_property_attribute("inactive".into())
            }
        };
        s = s.with_media(section);
    }
    s.marshal()
}

/// One section of a subscribe offer.
#[derive(Debug, Clone)]
pub struct SubscribeSection {
    /// Its mid.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// What the consumer sends, or `None` when the section is no longer used.
    pub parameters: Option<RtpParameters>,
    /// `a=msid` stream id (the publishing participant).
    pub stream_id: String,
    /// `a=msid` track id.
    pub track_id: String,
}

/// Writes an offer for the subscribe connection.
pub fn write_subscribe_offer(
    sections: &[SubscribeSection],
    transport: &LocalTransport,
    version: u64,
) -> String {
    let bundle: Vec<String> = sections.iter().map(|s| s.mid.clone()).collect();
    let mut s = session(version, &bundle);
    let caps = subscriber_capabilities();
    for sec in sections {
        let kind = sec.kind.to_string();
        let section = match &sec.parameters {
            Some(p) => {
                let md = media_section(&kind, formats_of(p), false);
                let mut md = add_transport(md, transport, "actpass")
                    .with_value_attribute("mid".into(), sec.mid.clone());
                md = add_codecs(md, p)
                    .with_property_attribute("sendonly".into())
                    .with_value_attribute(
                        "msid".into(),
                        format!("{} {}", sec.stream_id, sec.track_id),
                    );
                let cname = p.cname.clone().unwrap_or_else(|| sec.stream_id.clone());
                if let Some(e) = p.encodings.first() {
                    if let (Some(ssrc), Some(rtx)) = (e.ssrc, e.rtx_ssrc) {
                        md = md
                            .with_value_attribute("ssrc-group".into(), format!("FID {ssrc} {rtx}"));
                    }
                    for ssrc in e.ssrc.iter().chain(e.rtx_ssrc.iter()) {
                        md = md
                            .with_value_attribute("ssrc".into(), format!("{ssrc} cname:{cname}"))
                            .with_value_attribute(
                                "ssrc".into(),
                                format!("{ssrc} msid:{} {}", sec.stream_id, sec.track_id),
                            );
                    }
                }
                md
            }
            None => {
                // A finished section keeps its place (mids are never reused) but carries nothing.
                let params = RtpParameters {
                    codecs: caps
                        .codecs
                        .iter()
                        .filter(|c| c.kind() == Some(sec.kind))
                        .take(1)
                        .cloned()
                        .collect(),
                    ..Default::default()
                };
                let md = media_section(&kind, formats_of(&params), false);
                let md = add_transport(md, transport, "actpass")
                    .with_value_attribute("mid".into(), sec.mid.clone());
                add_codecs(md, &params).with_property_attribute("inactive".into())
            }
        };
        s = s.with_media(section);
    }
    s.marshal()
}

/// The payload types and extension ids the server uses toward every subscriber.
pub fn subscriber_capabilities() -> RtpCapabilities {
    let video_fb = vec![
        RtcpFeedback::new("nack", ""),
        RtcpFeedback::new("nack", "pli"),
        RtcpFeedback::new("ccm", "fir"),
        // The server's own congestion control: the browser reports arrivals of every packet.
        RtcpFeedback::new("transport-cc", ""),
    ];
    let video =
        |pt: u8, rtx: u8, name: &str, parameters: Vec<(String, String)>| RtpCodecParameters {
            mime_type: format!("video/{name}"),
            payload_type: pt,
            clock_rate: 90_000,
            channels: None,
            parameters,
            rtcp_feedback: video_fb.clone(),
            rtx_payload_type: Some(rtx),
        };
    let h264 = |pt, rtx, profile: &str| {
        video(
            pt,
            rtx,
            "H264",
            vec![
                ("level-asymmetry-allowed".into(), "1".into()),
                ("packetization-mode".into(), "1".into()),
                ("profile-level-id".into(), profile.into()),
            ],
        )
    };
    RtpCapabilities {
        codecs: vec![
            RtpCodecParameters {
                mime_type: "audio/opus".into(),
                payload_type: 111,
                clock_rate: 48_000,
                channels: Some(2),
                parameters: vec![
                    ("minptime".into(), "10".into()),
                    ("useinbandfec".into(), "1".into()),
                ],
                rtcp_feedback: vec![RtcpFeedback::new("transport-cc", "")],
                rtx_payload_type: None,
            },
            video(96, 97, "VP8", vec![]),
            video(98, 99, "VP9", vec![("profile-id".into(), "0".into())]),
            h264(102, 103, "42e01f"),
            h264(104, 105, "42001f"),
            h264(106, 107, "4d001f"),
            h264(108, 109, "64001f"),
            video(45, 46, "AV1", vec![]),
        ],
        header_extensions: vec![
            RtpHeaderExtension {
                uri: extension_uri::MID.into(),
                id: 1,
            },
            RtpHeaderExtension {
                uri: extension_uri::AUDIO_LEVEL.into(),
                id: 2,
            },
            RtpHeaderExtension {
                uri: extension_uri::VIDEO_ORIENTATION.into(),
                id: 3,
            },
            RtpHeaderExtension {
                uri: extension_uri::TRANSPORT_CC.into(),
                id: 4,
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_OFFER: &str = include_str!("../tests/fixtures/chrome-publish-offer.sdp");

    fn transport() -> LocalTransport {
        LocalTransport {
            ice_ufrag: "abcd1234".into(),
            ice_pwd: "0123456789abcdefghijklmn".into(),
            fingerprint: Fingerprint { sha256: [0xab; 32] },
            candidates: vec!["127.0.0.1:7882".parse().unwrap()],
        }
    }

    #[test]
    fn reads_a_chrome_offer() {
        let d = parse_description(CHROME_OFFER).unwrap();
        assert!(!d.ice_ufrag.is_empty() && !d.ice_pwd.is_empty());
        assert_eq!(d.setup.as_deref(), Some("actpass"));
        assert_eq!(d.media.len(), 2);
        let audio = &d.media[0];
        assert_eq!(
            (audio.mid.as_str(), audio.kind),
            ("0", Some(MediaKind::Audio))
        );
        assert_eq!(audio.direction, Direction::SendOnly);
        assert_eq!(audio.codecs[0].mime_type, "audio/opus");
        assert_eq!(audio.codecs[0].payload_type, 111);
        let video = &d.media[1];
        let vp8 = video
            .codecs
            .iter()
            .find(|c| c.mime_type == "video/VP8")
            .unwrap();
        assert_eq!((vp8.payload_type, vp8.rtx_payload_type), (96, Some(97)));
        assert_eq!(
            video.ssrcs.len(),
            1,
            "the RTX SSRC of the FID group is not a media SSRC"
        );
        assert_eq!(
            video.rtx_ssrcs.get(&video.ssrcs[0]).copied(),
            Some(video.rtx_ssrcs[&video.ssrcs[0]])
        );
    }

    #[test]
    fn publish_parameters_keep_forwardable_codecs_and_known_extensions() {
        let d = parse_description(CHROME_OFFER).unwrap();
        let p = publish_parameters(&d.media[1]).unwrap();
        assert!(p.codecs.iter().all(forwards));
        assert!(p.codecs.iter().any(|c| c.mime_type == "video/VP8"));
        assert!(
            p.codecs
                .iter()
                .all(|c| !c.mime_type.eq_ignore_ascii_case("video/red"))
        );
        assert!(
            p.header_extensions
                .iter()
                .all(|e| ACCEPTED_EXTENSIONS.contains(&e.uri.as_str()))
        );
        assert!(p.extension_id(extension_uri::MID).is_some());
        assert_eq!(p.encodings.len(), 1);
        assert!(p.validate_for_producer().is_ok());
    }

    #[test]
    fn answer_round_trips_and_is_ice_lite_passive() {
        let d = parse_description(CHROME_OFFER).unwrap();
        let accepted: Vec<_> = d.media.iter().map(|m| publish_parameters(m).ok()).collect();
        let answer = write_publish_answer(&d, &accepted, &transport(), 1);
        assert!(answer.contains("a=ice-lite"));
        assert!(answer.contains("a=setup:passive"));
        assert!(answer.contains("a=group:BUNDLE 0 1"));
        assert!(answer.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host"));
        let back = parse_description(&answer).unwrap();
        assert_eq!(back.ice_ufrag, "abcd1234");
        assert_eq!(back.fingerprint, Fingerprint { sha256: [0xab; 32] });
        assert_eq!(back.media.len(), 2);
        assert!(
            back.media
                .iter()
                .all(|m| m.direction == Direction::RecvOnly)
        );
        let vp8 = back.media[1]
            .codecs
            .iter()
            .find(|c| c.mime_type == "video/VP8")
            .unwrap();
        assert_eq!(vp8.rtx_payload_type, Some(97));
    }

    #[test]
    fn rejected_sections_are_port_zero_and_out_of_bundle() {
        let d = parse_description(CHROME_OFFER).unwrap();
        let answer = write_publish_answer(
            &d,
            &[publish_parameters(&d.media[0]).ok(), None],
            &transport(),
            1,
        );
        let back = parse_description(&answer).unwrap();
        assert!(back.media[1].rejected);
        assert!(answer.contains("a=group:BUNDLE 0\r\n"));
    }

    #[test]
    fn subscribe_offer_describes_consumers() {
        let caps = subscriber_capabilities();
        let producer =
            publish_parameters(&parse_description(CHROME_OFFER).unwrap().media[1]).unwrap();
        let consumer = producer
            .for_consumer(&caps, Some("0".into()), 1234, 5678)
            .unwrap();
        let sections = vec![
            SubscribeSection {
                mid: "0".into(),
                kind: MediaKind::Video,
                parameters: Some(consumer),
                stream_id: "PA_1".into(),
                track_id: "TR_1".into(),
            },
            SubscribeSection {
                mid: "1".into(),
                kind: MediaKind::Audio,
                parameters: None,
                stream_id: "PA_1".into(),
                track_id: "TR_2".into(),
            },
        ];
        let offer = write_subscribe_offer(&sections, &transport(), 3);
        assert!(offer.contains("a=setup:actpass"));
        assert!(offer.contains("a=ssrc-group:FID 1234 5678"));
        assert!(offer.contains("a=msid:PA_1 TR_1"));
        // The server's congestion control: the browser is asked for transport-wide feedback.
        assert!(offer.contains(
            "a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
        ));
        assert!(offer.contains(" transport-cc\r\n"));
        let back = parse_description(&offer).unwrap();
        assert_eq!(back.media[0].direction, Direction::SendOnly);
        assert_eq!(back.media[0].ssrcs, vec![1234]);
        assert_eq!(back.media[1].direction, Direction::Inactive);
    }

    #[test]
    fn chrome_rid_simulcast_becomes_three_streams_and_the_answer_asks_for_all() {
        let offer = parse_description(include_str!(
            "../tests/fixtures/chrome156-simulcast-offer.sdp"
        ))
        .unwrap();
        let video = &offer.media[0];
        assert_eq!(video.rids, vec!["q", "h", "f"]);
        assert!(
            video.ssrcs.is_empty(),
            "Chrome signals no SSRC for simulcast"
        );
        let params = publish_parameters(video).unwrap();
        let rids: Vec<_> = params
            .encodings
            .iter()
            .map(|e| e.rid.clone().unwrap())
            .collect();
        assert_eq!(rids, vec!["q", "h", "f"]);
        assert!(params.extension_id(extension_uri::RID).is_some());
        assert!(params.extension_id(extension_uri::REPAIRED_RID).is_some());
        assert!(params.validate_for_producer().is_ok());
        let accepted: Vec<_> = offer
            .media
            .iter()
            .map(|m| publish_parameters(m).ok())
            .collect();
        let answer = write_publish_answer(&offer, &accepted, &transport(), 1);
        for line in [
            "a=rid:q recv",
            "a=rid:h recv",
            "a=rid:f recv",
            "a=simulcast:recv q;h;f",
        ] {
            assert!(answer.contains(line), "{line} missing from\n{answer}");
        }
        assert_eq!(
            answer.matches("a=simulcast").count(),
            1,
            "only the video section"
        );
    }

    #[test]
    fn ssrc_simulcast_groups_are_streams_too() {
        let sdp = CHROME_OFFER.replace(
            "a=ssrc-group:FID 3735928559 3405691582",
            "a=ssrc-group:SIM 11 22 33\r\na=ssrc-group:FID 11 111\r\na=ssrc-group:FID 22 222\r\na=ssrc-group:FID 33 333\r\na=ssrc:11 cname:x\r\na=ssrc:111 cname:x\r\na=ssrc:22 cname:x\r\na=ssrc:222 cname:x\r\na=ssrc:33 cname:x\r\na=ssrc:333 cname:x",
        );
        let d = parse_description(&sdp).unwrap();
        let p = publish_parameters(&d.media[1]).unwrap();
        let streams: Vec<_> = p
            .encodings
            .iter()
            .map(|e| (e.ssrc.unwrap(), e.rtx_ssrc.unwrap()))
            .collect();
        assert_eq!(streams, vec![(11, 111), (22, 222), (33, 333)]);
    }

    #[test]
    fn garbage_and_incomplete_sdp_are_errors_not_panics() {
        assert!(matches!(
            parse_description("hello"),
            Err(SdpError::Parse(_))
        ));
        assert!(parse_description("").is_err());
        let no_fingerprint: String = CHROME_OFFER
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(
            parse_description(&no_fingerprint).unwrap_err(),
            SdpError::Missing("a=fingerprint:sha-256")
        );
        for cut in (0..CHROME_OFFER.len()).step_by(37) {
            let _ = parse_description(&CHROME_OFFER[..cut]);
        }
        let no_codecs = RemoteMedia {
            codecs: vec![],
            ..parse_description(CHROME_OFFER).unwrap().media[0].clone()
        };
        assert_eq!(
            publish_parameters(&no_codecs).unwrap_err(),
            SdpError::NoSupportedCodec { mid: "0".into() }
        );
    }
}
