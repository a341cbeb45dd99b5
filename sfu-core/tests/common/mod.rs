//! Shared set-up for the integration tests: codecs, parameters and a connected room of a
//! publisher and a subscriber on a `SimNetwork`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

pub mod udp_peer;

use std::net::SocketAddr;
use std::time::Duration;

use sfu_core::rtp_parameters::extension_uri;
use sfu_core::sim_peer::{PeerId, SimNetwork, SimPeer, SimPeerConfig};
use sfu_core::{
    ConsumerId, ProducerId, RouterId, RtcpFeedback, RtpCapabilities, RtpCodecParameters,
    RtpEncodingParameters, RtpHeaderExtension, RtpParameters, WebRtcTransportInfo,
};

pub const WORKER: &str = "127.0.0.1:4443";
pub const OPUS_SSRC: u32 = 0x1111_0001;
/// The VP8 track is mid-only: this SSRC is never signalled, the worker learns it.
pub const VP8_SSRC: u32 = 0x2222_0002;
pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;
/// The subscriber's payload types (different from the publisher's on purpose).
pub const SUB_OPUS_PT: u8 = 109;
pub const SUB_VP8_PT: u8 = 100;
/// Publisher-side extension ids.
pub const PUB_MID_ID: u8 = 4;
pub const PUB_AUDIO_LEVEL_ID: u8 = 1;
pub const PUB_ORIENTATION_ID: u8 = 13;
/// Subscriber-side extension ids.
pub const SUB_MID_ID: u8 = 9;
pub const SUB_AUDIO_LEVEL_ID: u8 = 10;
pub const SUB_ORIENTATION_ID: u8 = 7;
pub const CONNECT_LIMIT: Duration = Duration::from_secs(10);

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The i-th peer address (127.0.1.x:5xxxx).
pub fn peer_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, (i % 250) as u8 + 1], 50_000 + (i / 250) as u16))
}

pub fn opus(pt: u8) -> RtpCodecParameters {
    RtpCodecParameters {
        mime_type: "audio/opus".into(),
        payload_type: pt,
        clock_rate: 48_000,
        channels: Some(2),
        parameters: vec![
            ("minptime".into(), "10".into()),
            ("useinbandfec".into(), "1".into()),
        ],
        rtcp_feedback: vec![],
        rtx_payload_type: None,
    }
}

pub fn vp8(pt: u8) -> RtpCodecParameters {
    RtpCodecParameters {
        mime_type: "video/VP8".into(),
        payload_type: pt,
        clock_rate: 90_000,
        channels: None,
        parameters: vec![],
        rtcp_feedback: vec![
            RtcpFeedback::new("nack", ""),
            RtcpFeedback::new("nack", "pli"),
        ],
        rtx_payload_type: None,
    }
}

fn ext(uri: &str, id: u8) -> RtpHeaderExtension {
    RtpHeaderExtension {
        uri: uri.into(),
        id,
    }
}

/// Opus with a declared SSRC, mid "0".
pub fn opus_params(ssrc: u32) -> RtpParameters {
    RtpParameters {
        mid: Some("0".into()),
        codecs: vec![opus(OPUS_PT)],
        header_extensions: vec![
            ext(extension_uri::MID, PUB_MID_ID),
            ext(extension_uri::AUDIO_LEVEL, PUB_AUDIO_LEVEL_ID),
        ],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        cname: Some("publisher".into()),
    }
}

/// VP8 recognised by its mid only (no SSRC signalled).
pub fn vp8_mid_params(mid: &str) -> RtpParameters {
    RtpParameters {
        mid: Some(mid.into()),
        codecs: vec![vp8(VP8_PT)],
        header_extensions: vec![
            ext(extension_uri::MID, PUB_MID_ID),
            ext(extension_uri::VIDEO_ORIENTATION, PUB_ORIENTATION_ID),
        ],
        encodings: vec![],
        cname: Some("publisher".into()),
    }
}

/// VP8 with a declared SSRC.
pub fn vp8_params(mid: &str, ssrc: u32) -> RtpParameters {
    RtpParameters {
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        ..vp8_mid_params(mid)
    }
}

pub fn subscriber_caps() -> RtpCapabilities {
    RtpCapabilities {
        codecs: vec![opus(SUB_OPUS_PT), vp8(SUB_VP8_PT)],
        header_extensions: vec![
            ext(extension_uri::MID, SUB_MID_ID),
            ext(extension_uri::AUDIO_LEVEL, SUB_AUDIO_LEVEL_ID),
            ext(extension_uri::VIDEO_ORIENTATION, SUB_ORIENTATION_ID),
            // No transport-cc: these subscribers get packets as they come, unpaced (the
            // congestion-control tests negotiate it themselves).
        ],
    }
}

pub fn consumer_ssrc(p: &RtpParameters) -> u32 {
    p.encodings[0].ssrc.unwrap()
}

/// A publisher with Opus (declared SSRC) and VP8 (mid-only), a subscriber consuming both.
pub struct Room {
    pub net: SimNetwork,
    pub router: RouterId,
    pub publisher: PeerId,
    pub publisher_info: WebRtcTransportInfo,
    pub subscriber: PeerId,
    pub subscriber_info: WebRtcTransportInfo,
    pub audio: ProducerId,
    pub video: ProducerId,
    pub audio_consumer: (ConsumerId, RtpParameters),
    pub video_consumer: (ConsumerId, RtpParameters),
}

impl Room {
    pub fn new() -> Self {
        Self::with_configs(SimPeerConfig::default(), SimPeerConfig::default())
    }

    /// Sets up and connects the room; panics (test set-up failure) if it does not connect.
    pub fn with_configs(publisher: SimPeerConfig, subscriber: SimPeerConfig) -> Self {
        let mut room = Self::setup(publisher, subscriber);
        room.connect_all();
        room
    }

    /// Starts ICE on both peers and runs until both are connected.
    pub fn connect_all(&mut self) {
        let (publisher, subscriber) = (self.publisher, self.subscriber);
        self.net
            .connect(publisher, &self.publisher_info.clone())
            .unwrap();
        self.net
            .connect(subscriber, &self.subscriber_info.clone())
            .unwrap();
        assert!(
            self.net
                .run_until_connected(&[publisher, subscriber], CONNECT_LIMIT),
            "room did not connect: {:?}",
            self.net.events()
        );
    }

    /// Creates transports, producers and consumers; connects nothing.
    pub fn setup(publisher: SimPeerConfig, subscriber: SimPeerConfig) -> Self {
        let mut net = SimNetwork::new(addr(WORKER)).unwrap();
        let router = net.worker_mut().create_router();
        let publisher = net.add_peer_with(peer_addr(0), publisher).unwrap();
        let subscriber = net.add_peer_with(peer_addr(1), subscriber).unwrap();
        let publisher_info = net.create_transport(publisher, router).unwrap();
        let subscriber_info = net.create_transport(subscriber, router).unwrap();
        let now = net.now();
        let audio = net
            .worker_mut()
            .produce(publisher_info.id, opus_params(OPUS_SSRC))
            .unwrap();
        let video = net
            .worker_mut()
            .produce(publisher_info.id, vp8_mid_params("1"))
            .unwrap();
        let caps = subscriber_caps();
        let audio_consumer = net
            .worker_mut()
            .consume(now, subscriber_info.id, audio, &caps, Some("0".into()))
            .unwrap();
        let video_consumer = net
            .worker_mut()
            .consume(now, subscriber_info.id, video, &caps, Some("1".into()))
            .unwrap();
        Self {
            net,
            router,
            publisher,
            publisher_info,
            subscriber,
            subscriber_info,
            audio,
            video,
            audio_consumer,
            video_consumer,
        }
    }

    pub fn publisher(&mut self) -> &mut SimPeer {
        self.net.peer_mut(self.publisher).unwrap()
    }

    pub fn subscriber(&mut self) -> &mut SimPeer {
        self.net.peer_mut(self.subscriber).unwrap()
    }

    pub fn sub(&self) -> &SimPeer {
        self.net.peer(self.subscriber).unwrap()
    }

    pub fn publ(&self) -> &SimPeer {
        self.net.peer(self.publisher).unwrap()
    }

    pub fn audio_ssrc_out(&self) -> u32 {
        consumer_ssrc(&self.audio_consumer.1)
    }

    pub fn video_ssrc_out(&self) -> u32 {
        consumer_ssrc(&self.video_consumer.1)
    }

    /// Sends one Opus packet from the publisher and delivers it.
    pub fn send_audio(&mut self, seq: u16, ts: u32, payload: &[u8]) {
        let now = self.net.now();
        self.publisher()
            .send_rtp(
                now,
                OPUS_SSRC,
                OPUS_PT,
                seq,
                ts,
                false,
                &[(PUB_MID_ID, b"0"), (PUB_AUDIO_LEVEL_ID, &[0x85])],
                payload,
            )
            .unwrap();
        self.net.deliver();
    }

    /// Sends one VP8 packet (mid-only stream) from the publisher and delivers it.
    pub fn send_video(&mut self, seq: u16, ts: u32, marker: bool, payload: &[u8]) {
        let now = self.net.now();
        self.publisher()
            .send_rtp(
                now,
                VP8_SSRC,
                VP8_PT,
                seq,
                ts,
                marker,
                &[(PUB_MID_ID, b"1"), (PUB_ORIENTATION_ID, &[0x01])],
                payload,
            )
            .unwrap();
        self.net.deliver();
    }

    /// Sends `n` audio packets and returns how many the subscriber received for the audio
    /// consumer meanwhile.
    pub fn audio_flows(&mut self, first_seq: u16, n: u16) -> usize {
        let ssrc = self.audio_ssrc_out();
        let before = self.sub().received_rtp_for(ssrc).count();
        for i in 0..n {
            let seq = first_seq.wrapping_add(i);
            self.send_audio(
                seq,
                u32::from(seq) * 960,
                format!("opus frame {seq}").as_bytes(),
            );
        }
        self.sub().received_rtp_for(ssrc).count() - before
    }
}
