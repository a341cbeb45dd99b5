//! Interop with an independent WebRTC stack: str0m (its own ICE, DTLS and SRTP) publishes and
//! subscribes through a real `Worker` thread over real UDP sockets on 127.0.0.1.
//!
//! What this proves: the ICE-lite agent, the DTLS server (both SRTP profiles), SRTP, the
//! producer/consumer rewriting and RTCP keyframe-request translation all work against code
//! we did not write.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sfu_core::driver::WorkerHandle;
use sfu_core::rtp_parameters::extension_uri;
use sfu_core::{
    Fingerprint, MediaKind, RtcpFeedback, RtpCapabilities, RtpCodecParameters,
    RtpEncodingParameters, RtpHeaderExtension, RtpParameters, SrtpProfile, WebRtcTransportInfo,
    WebRtcTransportOptions, WorkerConfig, WorkerEvent,
};
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

const DEADLINE: Duration = Duration::from_secs(20);
const AUDIO_SSRC: u32 = 0x1111_0001;
const VIDEO_SSRC: u32 = 0x2222_0002;
/// str0m's standard extension map puts the mid at id 4 and audio level at 1.
const MID_EXT: u8 = 4;
const AUDIO_LEVEL_EXT: u8 = 1;

/// A str0m peer on its own UDP socket.
struct Peer {
    name: &'static str,
    rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    events: Vec<Event>,
    buf: Vec<u8>,
}

impl Peer {
    fn new(name: &'static str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap())
            .unwrap();
        Self {
            name,
            rtc,
            socket,
            addr,
            events: Vec::new(),
            buf: vec![0; 2000],
        }
    }

    fn fingerprint(&mut self) -> Fingerprint {
        let fp = self.rtc.direct_api().local_dtls_fingerprint().clone();
        assert_eq!(fp.hash_func, "sha-256");
        Fingerprint {
            sha256: fp.bytes.try_into().unwrap(),
        }
    }

    /// Points the peer at the worker's transport, as signaling would.
    fn connect(&mut self, info: &WebRtcTransportInfo) {
        let mut api = self.rtc.direct_api();
        api.set_ice_controlling(true);
        api.set_remote_ice_credentials(str0m::IceCreds {
            ufrag: info.ice_ufrag.clone(),
            pass: info.ice_pwd.clone(),
        });
        api.set_remote_fingerprint(str0m::config::Fingerprint {
            hash_func: "sha-256".into(),
            bytes: info.fingerprint.sha256.to_vec(),
        });
        api.start_dtls(true).unwrap();
        for c in &info.candidates {
            self.rtc
                .add_remote_candidate(Candidate::host(*c, "udp").unwrap());
        }
    }

    /// Runs str0m until it wants to wait, moving datagrams between it and its socket.
    fn drive(&mut self) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    let now = Instant::now();
                    match self.socket.recv_from(&mut self.buf) {
                        Ok((n, source)) => {
                            let input = Input::Receive(
                                now,
                                Receive::new(Protocol::Udp, source, self.addr, &self.buf[..n])
                                    .unwrap(),
                            );
                            self.rtc.handle_input(input).unwrap();
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if t <= now {
                                self.rtc.handle_input(Input::Timeout(now)).unwrap();
                            } else {
                                return;
                            }
                        }
                        Err(e) => panic!("{}: recv: {e}", self.name),
                    }
                }
                Output::Transmit(t) => {
                    self.socket.send_to(&t.contents, t.destination).unwrap();
                }
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    fn connected(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Connected))
            || self.events.iter().any(|e| {
                matches!(
                    e,
                    Event::IceConnectionStateChange(IceConnectionState::Completed)
                )
            })
    }
}

fn opus(pt: u8) -> RtpCodecParameters {
    RtpCodecParameters {
        mime_type: "audio/opus".into(),
        payload_type: pt,
        clock_rate: 48_000,
        channels: Some(2),
        parameters: vec![],
        rtcp_feedback: vec![],
        rtx_payload_type: None,
    }
}

fn vp8(pt: u8) -> RtpCodecParameters {
    RtpCodecParameters {
        mime_type: "video/VP8".into(),
        payload_type: pt,
        clock_rate: 90_000,
        channels: None,
        parameters: vec![],
        rtcp_feedback: vec![RtcpFeedback::new("nack", "pli")],
        rtx_payload_type: None,
    }
}

fn extensions() -> Vec<RtpHeaderExtension> {
    vec![
        RtpHeaderExtension {
            uri: extension_uri::MID.into(),
            id: MID_EXT,
        },
        RtpHeaderExtension {
            uri: extension_uri::AUDIO_LEVEL.into(),
            id: AUDIO_LEVEL_EXT,
        },
    ]
}

fn published(mid: &str, codec: RtpCodecParameters, ssrc: u32) -> RtpParameters {
    RtpParameters {
        mid: Some(mid.into()),
        codecs: vec![codec],
        header_extensions: extensions(),
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        cname: Some("publisher".into()),
    }
}

/// A payload that names its own index, so the receiver can check it byte for byte.
fn payload(kind: u8, index: u32) -> Vec<u8> {
    let mut p = vec![kind];
    p.extend_from_slice(&index.to_be_bytes());
    p.extend((0..(100 + index % 900)).map(|i| (i as u8).wrapping_mul(31).wrapping_add(kind)));
    p
}

fn wait_until(peers: &mut [&mut Peer], what: &str, mut done: impl FnMut(&mut [&mut Peer]) -> bool) {
    let start = Instant::now();
    while !done(peers) {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        for p in peers.iter_mut() {
            p.drive();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run(profiles: Vec<SrtpProfile>, expected: SrtpProfile) {
    let (worker, mut events) =
        WorkerHandle::spawn("127.0.0.1:0".parse().unwrap(), WorkerConfig::default()).unwrap();
    let mut publisher = Peer::new("publisher");
    let mut subscriber = Peer::new("subscriber");
    let (pub_fp, sub_fp) = (publisher.fingerprint(), subscriber.fingerprint());

    // Signaling, done by hand: one transport per peer, two producers, two consumers.
    let caps = RtpCapabilities {
        codecs: vec![opus(111), vp8(96)],
        header_extensions: extensions(),
    };
    let setup = worker
        .call_blocking(move |w, now| {
            let room = w.create_router();
            let options = |fp| WebRtcTransportOptions {
                remote_fingerprint: Some(fp),
                srtp_profiles: profiles.clone(),
                ..Default::default()
            };
            let pub_t = w
                .create_webrtc_transport(now, room, options(pub_fp))
                .unwrap();
            let sub_t = w
                .create_webrtc_transport(now, room, options(sub_fp))
                .unwrap();
            let audio = w
                .produce(pub_t.id, published("0", opus(111), AUDIO_SSRC))
                .unwrap();
            let video = w
                .produce(pub_t.id, published("1", vp8(96), VIDEO_SSRC))
                .unwrap();
            let (_, audio_c) = w
                .consume(now, sub_t.id, audio, &caps, Some("a0".into()))
                .unwrap();
            let (_, video_c) = w
                .consume(now, sub_t.id, video, &caps, Some("v1".into()))
                .unwrap();
            (pub_t, sub_t, audio_c, video_c)
        })
        .unwrap();
    let (pub_t, sub_t, audio_c, video_c) = setup;
    let consumer_audio_ssrc = audio_c.encodings[0].ssrc.unwrap();
    let consumer_video_ssrc = video_c.encodings[0].ssrc.unwrap();

    {
        let mut api = publisher.rtc.direct_api();
        api.declare_media(Mid::from("0"), str0m::media::MediaKind::Audio);
        api.declare_stream_tx(Ssrc::from(AUDIO_SSRC), None, Mid::from("0"), None);
        api.declare_media(Mid::from("1"), str0m::media::MediaKind::Video);
        api.declare_stream_tx(Ssrc::from(VIDEO_SSRC), None, Mid::from("1"), None);
    }
    {
        let mut api = subscriber.rtc.direct_api();
        api.declare_media(Mid::from("a0"), str0m::media::MediaKind::Audio);
        api.expect_stream_rx(Ssrc::from(consumer_audio_ssrc), None, Mid::from("a0"), None);
        api.declare_media(Mid::from("v1"), str0m::media::MediaKind::Video);
        api.expect_stream_rx(Ssrc::from(consumer_video_ssrc), None, Mid::from("v1"), None);
    }
    publisher.connect(&pub_t);
    subscriber.connect(&sub_t);

    let mut connected = HashMap::new();
    wait_until(
        &mut [&mut publisher, &mut subscriber],
        "both transports to connect",
        |peers| {
            while let Ok(e) = events.try_recv() {
                if let WorkerEvent::TransportConnected {
                    transport,
                    srtp_profile,
                } = e
                {
                    connected.insert(transport, srtp_profile);
                }
            }
            connected.len() == 2 && peers.iter().all(|p| p.connected())
        },
    );
    assert_eq!(
        connected.get(&pub_t.id),
        Some(&expected),
        "publisher leg profile"
    );
    assert_eq!(
        connected.get(&sub_t.id),
        Some(&expected),
        "subscriber leg profile"
    );

    // Publish: 200 audio packets and 200 video packets, starting near the 16-bit wrap.
    const COUNT: u32 = 200;
    let start = Instant::now();
    let mut sent_index = 0u32;
    let mut received: Vec<(u32, u16, Vec<u8>)> = Vec::new();
    wait_until(
        &mut [&mut publisher, &mut subscriber],
        "media to reach the subscriber",
        |peers| {
            if sent_index < COUNT {
                let now = Instant::now();
                let mut api = peers[0].rtc.direct_api();
                let seq = SeqNo::from(65_436u64 + u64::from(sent_index));
                if let Some(tx) = api.stream_tx(&Ssrc::from(AUDIO_SSRC)) {
                    let ext = str0m::rtp::ExtensionValues {
                        audio_level: Some(-30),
                        ..Default::default()
                    };
                    let w = RtpWrite::new(
                        111.into(),
                        seq,
                        960 * sent_index,
                        now,
                        payload(1, sent_index),
                    )
                    .ext_vals(ext);
                    tx.write_rtp(w);
                }
                if let Some(tx) = api.stream_tx(&Ssrc::from(VIDEO_SSRC)) {
                    let w = RtpWrite::new(
                        96.into(),
                        seq,
                        3000 * sent_index,
                        now,
                        payload(2, sent_index),
                    )
                    .marker(true);
                    tx.write_rtp(w);
                }
                sent_index += 1;
            }
            for e in peers[1].events.drain(..) {
                if let Event::RtpPacket(p) = e {
                    received.push((*p.header.ssrc, p.header.sequence_number, p.payload.to_vec()));
                }
            }
            let count = |ssrc| received.iter().filter(|r| r.0 == ssrc).count() as u32;
            count(consumer_audio_ssrc) >= COUNT && count(consumer_video_ssrc) >= COUNT
        },
    );
    let _ = start;

    for (ssrc, kind) in [(consumer_audio_ssrc, 1u8), (consumer_video_ssrc, 2u8)] {
        let stream: Vec<_> = received.iter().filter(|r| r.0 == ssrc).collect();
        assert_eq!(
            stream.len() as u32,
            COUNT,
            "every packet arrives once on {ssrc:#x}"
        );
        for (i, (_, seq, data)) in stream.iter().enumerate() {
            assert_eq!(
                data,
                &payload(kind, i as u32),
                "payload {i} of {ssrc:#x} is byte-identical"
            );
            if i > 0 {
                assert_eq!(
                    *seq,
                    stream[i - 1].1.wrapping_add(1),
                    "sequence continuous at {i} on {ssrc:#x}"
                );
            }
        }
    }

    // A PLI from the subscriber reaches the publisher as a keyframe request for its video.
    subscriber
        .rtc
        .direct_api()
        .stream_rx(&Ssrc::from(consumer_video_ssrc))
        .unwrap()
        .request_keyframe(KeyframeRequestKind::Pli);
    wait_until(
        &mut [&mut publisher, &mut subscriber],
        "the keyframe request at the publisher",
        |peers| {
            peers[0]
                .events
                .iter()
                .any(|e| matches!(e, Event::KeyframeRequest(r) if r.mid == Mid::from("1")))
        },
    );

    let drops = worker
        .call_blocking(|w, _| format!("{:?}", w.drops()))
        .unwrap();
    eprintln!("worker drops: {drops}");
}

#[test]
fn str0m_publisher_to_str0m_subscriber_over_gcm() {
    run(
        vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
        SrtpProfile::AeadAes128Gcm,
    );
}

#[test]
fn str0m_publisher_to_str0m_subscriber_over_aes_cm() {
    run(
        vec![SrtpProfile::Aes128CmHmacSha1_80],
        SrtpProfile::Aes128CmHmacSha1_80,
    );
}

#[allow(dead_code)]
fn unused(_: MediaKind) {}
