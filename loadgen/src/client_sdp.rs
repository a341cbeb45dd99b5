//! The SDP a load-generating client writes and the little it reads of the server's.
//!
//! Owns the publish offer (one sending VP8 section with a signalled SSRC, as a browser's
//! minus what the load generator does not do), the answer to a subscribe offer (every section
//! received, codecs and extensions as offered, `setup:active`), and reading the server's SDP:
//! its ICE credentials, fingerprint and host candidate, and per section the mid, the media
//! and RTX SSRCs and the transport-wide sequence number extension. It must not do I/O; the
//! server's SDP is untrusted input, so nothing here panics on it.

use std::net::SocketAddr;

use sfu_core::Fingerprint;

use crate::client::ServerTransport;
use crate::traffic::VIDEO_PT;

/// The transport-wide sequence number header extension.
const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Why the server's SDP could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A required attribute is missing.
    #[error("the server's SDP has no {0}")]
    Missing(&'static str),
}

/// The client's side of a connection, as its SDP tells it.
#[derive(Debug, Clone)]
pub struct ClientTransport {
    /// ICE username fragment (`Handshake::local_ufrag` of the client's seed).
    pub ice_ufrag: String,
    /// ICE password (the server is ICE-lite and never checks toward the client, but SDP
    /// requires one).
    pub ice_pwd: String,
    /// The client's certificate fingerprint.
    pub fingerprint: Fingerprint,
}

fn transport_lines(out: &mut String, t: &ClientTransport, setup: &str) {
    out.push_str(&format!(
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=ice-options:trickle\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n",
        t.ice_ufrag, t.ice_pwd, t.fingerprint
    ));
}

fn session_lines(out: &mut String, mids: &[String]) {
    out.push_str("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    out.push_str(&format!("a=group:BUNDLE {}\r\n", mids.join(" ")));
    out.push_str("a=msid-semantic: WMS\r\n");
}

/// The offer of a publish connection: one sending VP8 section, mid `0`, SSRC `ssrc`, with
/// NACK and PLI feedback (`nack`: generic NACK too).
pub fn publish_offer(t: &ClientTransport, ssrc: u32, cname: &str, nack: bool) -> String {
    let mut s = String::with_capacity(1024);
    session_lines(&mut s, &["0".to_owned()]);
    s.push_str(&format!(
        "m=video 9 UDP/TLS/RTP/SAVPF {VIDEO_PT}\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    ));
    transport_lines(&mut s, t, "actpass");
    s.push_str("a=mid:0\r\na=sendonly\r\na=msid:loadgen video0\r\na=rtcp-mux\r\na=rtcp-rsize\r\n");
    s.push_str(&format!("a=rtpmap:{VIDEO_PT} VP8/90000\r\n"));
    if nack {
        s.push_str(&format!("a=rtcp-fb:{VIDEO_PT} nack\r\n"));
    }
    s.push_str(&format!("a=rtcp-fb:{VIDEO_PT} nack pli\r\n"));
    s.push_str(&format!(
        "a=ssrc:{ssrc} cname:{cname}\r\na=ssrc:{ssrc} msid:loadgen video0\r\n"
    ));
    s
}

/// One media section of the server's SDP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSection {
    /// Its mid.
    pub mid: String,
    /// The whole m-line (kept to answer with the same formats).
    pub m_line: String,
    /// `a=rtpmap`, `a=fmtp`, `a=rtcp-fb` and `a=extmap` lines, as offered.
    pub codec_lines: Vec<String>,
    /// Media SSRC (the first `a=ssrc` that is not the RTX one of an FID group).
    pub ssrc: Option<u32>,
    /// RTX SSRC (`a=ssrc-group:FID media rtx`).
    pub rtx_ssrc: Option<u32>,
    /// The transport-wide sequence number extension's id, if offered.
    pub transport_cc: Option<u8>,
    /// `a=inactive` or port 0: nothing is sent on it.
    pub inactive: bool,
}

/// What the load generator reads of a server's offer or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDescription {
    /// The server's transport.
    pub transport: ServerTransport,
    /// Media sections in order.
    pub sections: Vec<ServerSection>,
}

/// Reads the server's SDP (attributes at session or media level; the first candidate of
/// type host over UDP is the one used).
pub fn parse_server(sdp: &str) -> Result<ServerDescription, SdpError> {
    let (mut ufrag, mut pwd, mut fingerprint, mut address) = (None, None, None, None);
    let mut sections: Vec<ServerSection> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            let port = m.split_whitespace().nth(1);
            sections.push(ServerSection {
                m_line: line.to_owned(),
                inactive: port == Some("0"),
                ..ServerSection::default()
            });
            continue;
        }
        let Some(attribute) = line.strip_prefix("a=") else {
            continue;
        };
        let (key, value) = attribute.split_once(':').unwrap_or((attribute, ""));
        match key {
            "ice-ufrag" if ufrag.is_none() => ufrag = Some(value.to_owned()),
            "ice-pwd" if pwd.is_none() => pwd = Some(value.to_owned()),
            "fingerprint" if fingerprint.is_none() => {
                fingerprint = value
                    .split_once(' ')
                    .filter(|(hash, _)| hash.eq_ignore_ascii_case("sha-256"))
                    .and_then(|(_, hex)| Fingerprint::parse(hex.trim()));
            }
            "candidate" if address.is_none() => address = host_candidate(value),
            _ => {}
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        match key {
            "mid" => section.mid = value.to_owned(),
            "inactive" => section.inactive = true,
            "rtpmap" | "fmtp" | "rtcp-fb" => section.codec_lines.push(line.to_owned()),
            "extmap" => {
                section.codec_lines.push(line.to_owned());
                let mut parts = value.split_whitespace();
                let id = parts
                    .next()
                    .and_then(|i| i.split('/').next())
                    .and_then(|i| i.parse().ok());
                if parts.next() == Some(TRANSPORT_CC_URI) {
                    section.transport_cc = id;
                }
            }
            "ssrc-group" => {
                let mut parts = value.split_whitespace();
                if parts.next() == Some("FID") {
                    let ids: Vec<u32> = parts.filter_map(|p| p.parse().ok()).collect();
                    if let [media, rtx] = ids[..] {
                        section.ssrc = Some(media);
                        section.rtx_ssrc = Some(rtx);
                    }
                }
            }
            "ssrc" => {
                let ssrc = value.split_whitespace().next().and_then(|v| v.parse().ok());
                if section.ssrc.is_none() && ssrc != section.rtx_ssrc {
                    section.ssrc = ssrc;
                }
            }
            _ => {}
        }
    }
    let transport = ServerTransport {
        ice_ufrag: ufrag.ok_or(SdpError::Missing("a=ice-ufrag"))?,
        ice_pwd: pwd.ok_or(SdpError::Missing("a=ice-pwd"))?,
        fingerprint: fingerprint.ok_or(SdpError::Missing("a=fingerprint:sha-256"))?,
        address: address.ok_or(SdpError::Missing("a UDP host candidate"))?,
    };
    Ok(ServerDescription {
        transport,
        sections,
    })
}

/// `foundation component udp priority ip port typ host …` → the address.
fn host_candidate(value: &str) -> Option<SocketAddr> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    match parts[..] {
        [_, _, protocol, _, ip, port, "typ", "host", ..]
            if protocol.eq_ignore_ascii_case("udp") =>
        {
            Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
        }
        _ => None,
    }
}

/// The answer to a subscribe offer: every section received (`recvonly`) with the codecs and
/// extensions offered, inactive ones answered inactive.
pub fn subscribe_answer(offer: &ServerDescription, t: &ClientTransport) -> String {
    let mids: Vec<String> = offer.sections.iter().map(|s| s.mid.clone()).collect();
    let mut s = String::with_capacity(1024 * offer.sections.len().max(1));
    session_lines(&mut s, &mids);
    for section in &offer.sections {
        s.push_str(&section.m_line);
        s.push_str("\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n");
        transport_lines(&mut s, t, "active");
        s.push_str(&format!("a=mid:{}\r\n", section.mid));
        s.push_str(if section.inactive {
            "a=inactive\r\n"
        } else {
            "a=recvonly\r\n"
        });
        s.push_str("a=rtcp-mux\r\na=rtcp-rsize\r\n");
        for line in &section.codec_lines {
            s.push_str(line);
            s.push_str("\r\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientTransport {
        ClientTransport {
            ice_ufrag: "lg00000001".into(),
            ice_pwd: "0123456789abcdefghijklmnop".into(),
            fingerprint: Fingerprint::parse(&["AB"; 32].join(":")).unwrap(),
        }
    }

    const SERVER_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\na=ice-lite\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:srv\r\na=ice-pwd:serverpassword0123456789\r\n\
        a=fingerprint:sha-256 CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD:CD\r\n\
        a=setup:actpass\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
        a=end-of-candidates\r\na=mid:0\r\n\
        a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 transport-cc\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
        a=sendonly\r\na=ssrc-group:FID 1111 2222\r\na=ssrc:1111 cname:x\r\na=ssrc:2222 cname:x\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\na=inactive\r\n";

    #[test]
    fn the_server_offer_is_read() {
        let d = parse_server(SERVER_OFFER).unwrap();
        assert_eq!(d.transport.ice_ufrag, "srv");
        assert_eq!(
            d.transport.address,
            "127.0.0.1:40000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(d.sections.len(), 2);
        let video = &d.sections[0];
        assert_eq!(video.mid, "0");
        assert_eq!(video.ssrc, Some(1111));
        assert_eq!(video.rtx_ssrc, Some(2222));
        assert_eq!(video.transport_cc, Some(3));
        assert!(!video.inactive);
        assert!(d.sections[1].inactive);
        assert_eq!(d.sections[1].ssrc, None);
    }

    #[test]
    fn missing_credentials_are_an_error_not_a_panic() {
        assert_eq!(
            parse_server("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n").unwrap_err(),
            SdpError::Missing("a=ice-ufrag")
        );
        let no_candidate = SERVER_OFFER.replace(
            "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n",
            "",
        );
        assert!(parse_server(&no_candidate).is_err());
        for garbage in [
            "",
            "a=",
            "m=",
            "a=candidate:1",
            "a=ssrc-group:FID",
            "a=extmap:x y",
        ] {
            let _ = parse_server(garbage);
        }
    }

    #[test]
    fn the_answer_mirrors_the_offer() {
        let d = parse_server(SERVER_OFFER).unwrap();
        let answer = subscribe_answer(&d, &client());
        assert!(answer.contains("a=group:BUNDLE 0 1\r\n"));
        assert!(answer.contains("a=setup:active"));
        assert!(answer.contains("a=ice-ufrag:lg00000001"));
        assert!(answer.contains("a=mid:0\r\na=recvonly"));
        assert!(answer.contains("a=mid:1\r\na=inactive"));
        assert!(answer.contains("a=rtpmap:96 VP8/90000"));
        assert!(answer.contains("transport-wide-cc"));
    }

    #[test]
    fn the_publish_offer_signals_its_ssrc() {
        let offer = publish_offer(&client(), 0x1000_0000, "pub-0", true);
        assert!(offer.contains("a=ssrc:268435456 cname:pub-0"));
        assert!(offer.contains("a=sendonly"));
        assert!(offer.contains("a=setup:actpass"));
        assert!(offer.contains("a=rtcp-fb:96 nack\r\n"));
    }
}
