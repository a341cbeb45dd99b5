//! Set-up shared by the benchmarks: a worker with one publisher and N connected subscribers,
//! entirely in memory (no sockets), so a bench measures the packet path alone.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use sfu_core::sim_peer::{PeerId, SimNetwork};
use sfu_core::{
    RouterId, RtcpFeedback, RtpCapabilities, RtpCodecParameters, RtpEncodingParameters,
    RtpParameters, SrtpProfile, WebRtcTransportInfo, WebRtcTransportOptions,
};

/// The publisher's VP8 SSRC.
pub const SSRC: u32 = 0x5eed_0001;
const PT: u8 = 96;

fn vp8() -> RtpCodecParameters {
    RtpCodecParameters {
        mime_type: "video/VP8".into(),
        payload_type: PT,
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

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, (i / 250) as u8 + 1, (i % 250) as u8 + 1], 40_000))
}

fn transport(
    net: &mut SimNetwork,
    peer: PeerId,
    router: RouterId,
    profile: SrtpProfile,
) -> WebRtcTransportInfo {
    let options = WebRtcTransportOptions {
        remote_fingerprint: net.peer(peer).map(|p| p.fingerprint()),
        srtp_profiles: vec![profile],
        armed: true,
    };
    let now = net.now();
    net.worker_mut()
        .create_webrtc_transport(now, router, options)
        .expect("transport")
}

/// A connected room: one publisher, `subscribers` subscribers of its VP8 track.
pub struct Room {
    /// The network owning the worker and the peers.
    pub net: SimNetwork,
    /// The publisher.
    pub publisher: PeerId,
    seq: u16,
    payload: Vec<u8>,
}

impl Room {
    /// Builds and connects the room, every leg on `profile`.
    pub fn new(subscribers: usize, profile: SrtpProfile) -> Self {
        let mut net = SimNetwork::new("127.0.0.1:9".parse().expect("address")).expect("worker");
        let router = net.worker_mut().create_router();
        let publisher = net.add_peer(addr(0)).expect("peer");
        let info = transport(&mut net, publisher, router, profile);
        let params = RtpParameters {
            mid: Some("0".into()),
            codecs: vec![vp8()],
            header_extensions: vec![],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(SSRC),
                ..Default::default()
            }],
            cname: None,
        };
        let producer = net.worker_mut().produce(info.id, params).expect("produce");
        net.connect(publisher, &info).expect("connect");
        let caps = RtpCapabilities {
            codecs: vec![vp8()],
            header_extensions: vec![],
        };
        let mut ids = vec![publisher];
        for i in 0..subscribers {
            let peer = net.add_peer(addr(i + 1)).expect("peer");
            let info = transport(&mut net, peer, router, profile);
            let now = net.now();
            net.worker_mut()
                .consume(now, info.id, producer, &caps, Some("0".into()))
                .expect("consume");
            net.connect(peer, &info).expect("connect");
            ids.push(peer);
        }
        assert!(
            net.run_until_connected(&ids, Duration::from_secs(60)),
            "room did not connect"
        );
        Self {
            net,
            publisher,
            seq: 0,
            payload: vec![0x5a; 1200],
        }
    }

    /// The next protected 1200-byte-payload packet from the publisher (not yet delivered).
    pub fn next_packet(&mut self) -> BytesMut {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let peer = self.net.peer_mut(self.publisher).expect("publisher");
        let packet = peer
            .protect_rtp(
                SSRC,
                PT,
                seq,
                u32::from(seq) * 3000,
                false,
                &[],
                &self.payload,
            )
            .expect("protect");
        BytesMut::from(&packet[..])
    }

    /// Feeds one packet to the worker as the publisher and drains (and recycles) what it sends;
    /// returns how many datagrams went out.
    pub fn forward(&mut self, packet: BytesMut) -> usize {
        let now = self.net.now();
        let worker = self.net.worker_mut();
        worker.handle_datagram(now, addr(0), packet);
        let mut sent = 0;
        while let Some(t) = worker.poll_transmit() {
            sent += 1;
            worker.recycle(t.contents);
        }
        sent
    }
}

/// A connected room with one three-layer simulcast VP8 publisher (rids q, h, f) and
/// `subscribers` subscribers spread evenly over the layers.
pub struct SimulcastRoom {
    /// The network owning the worker and the peers.
    pub net: SimNetwork,
    publisher: PeerId,
    seq: [u16; 3],
    picture_id: [u16; 3],
    payload: Vec<u8>,
}

const MID_ID: u8 = 1;
const RID_ID: u8 = 2;
const RIDS: [&str; 3] = ["q", "h", "f"];

/// A VP8 payload: descriptor with a 15-bit picture id, then a key or inter frame of `len` bytes.
pub fn vp8_payload(picture_id: u16, keyframe: bool, len: usize) -> Vec<u8> {
    let mut p = vec![
        0x90,
        0x80,
        0x80 | (picture_id >> 8) as u8 & 0x7f,
        picture_id as u8,
    ];
    if keyframe {
        // Frame tag (P=0, shown), start code, 1280x720.
        p.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02]);
    } else {
        p.extend_from_slice(&[0x11, 0x02, 0x00]);
    }
    p.resize(len, 0x5a);
    p
}

impl SimulcastRoom {
    /// Builds and connects the room (AEAD-GCM on every leg) and starts every layer.
    pub fn new(subscribers: usize) -> Self {
        let profile = SrtpProfile::AeadAes128Gcm;
        let mut net = SimNetwork::new("127.0.0.1:9".parse().expect("address")).expect("worker");
        let router = net.worker_mut().create_router();
        let publisher = net.add_peer(addr(0)).expect("peer");
        let info = transport(&mut net, publisher, router, profile);
        let params = RtpParameters {
            mid: Some("0".into()),
            codecs: vec![vp8()],
            header_extensions: vec![
                sfu_core::RtpHeaderExtension {
                    uri: sfu_core::rtp_parameters::extension_uri::MID.into(),
                    id: MID_ID,
                },
                sfu_core::RtpHeaderExtension {
                    uri: sfu_core::rtp_parameters::extension_uri::RID.into(),
                    id: RID_ID,
                },
            ],
            encodings: RIDS
                .iter()
                .map(|r| RtpEncodingParameters {
                    rid: Some((*r).into()),
                    ..Default::default()
                })
                .collect(),
            cname: None,
        };
        let producer = net.worker_mut().produce(info.id, params).expect("produce");
        net.connect(publisher, &info).expect("connect");
        let caps = RtpCapabilities {
            codecs: vec![vp8()],
            header_extensions: vec![],
        };
        let mut ids = vec![publisher];
        let mut consumers = Vec::new();
        for i in 0..subscribers {
            let peer = net.add_peer(addr(i + 1)).expect("peer");
            let info = transport(&mut net, peer, router, profile);
            let now = net.now();
            let (c, _) = net
                .worker_mut()
                .consume(now, info.id, producer, &caps, Some("0".into()))
                .expect("consume");
            consumers.push((c, i % 3));
            net.connect(peer, &info).expect("connect");
            ids.push(peer);
        }
        assert!(
            net.run_until_connected(&ids, Duration::from_secs(60)),
            "room did not connect"
        );
        let mut room = Self {
            net,
            publisher,
            seq: [0; 3],
            picture_id: [0; 3],
            payload: Vec::new(),
        };
        // Every layer sends a keyframe so the streams are active and the selectors can start.
        for layer in 0..3 {
            let p = room.next_packet(layer, true);
            room.forward(p);
        }
        let now = room.net.now();
        for (c, layer) in consumers {
            let prefs = sfu_core::consumer::ConsumerPreferences {
                max_spatial: Some(layer),
                ..Default::default()
            };
            room.net
                .worker_mut()
                .set_consumer_preferences(now, c, prefs)
                .expect("preferences");
        }
        for layer in 0..3 {
            let p = room.next_packet(layer, true);
            room.forward(p);
        }
        room
    }

    /// The next protected packet of `layer` (a whole frame per packet, 1200-byte payload).
    pub fn next_packet(&mut self, layer: usize, keyframe: bool) -> BytesMut {
        let l = layer % 3;
        self.seq[l] = self.seq[l].wrapping_add(1);
        self.picture_id[l] = (self.picture_id[l] + 1) & 0x7fff;
        let (seq, pid) = (self.seq[l], self.picture_id[l]);
        self.payload = vp8_payload(pid, keyframe, 1200);
        let ssrc = SSRC + l as u32;
        let rid = RIDS[l].as_bytes();
        let peer = self.net.peer_mut(self.publisher).expect("publisher");
        let packet = peer
            .protect_rtp(
                ssrc,
                PT,
                seq,
                u32::from(seq) * 3000,
                true,
                &[(MID_ID, b"0"), (RID_ID, rid)],
                &self.payload,
            )
            .expect("protect");
        BytesMut::from(&packet[..])
    }

    /// Feeds one packet to the worker as the publisher; returns the datagrams sent.
    pub fn forward(&mut self, packet: BytesMut) -> usize {
        let now = self.net.now();
        let worker = self.net.worker_mut();
        worker.handle_datagram(now, addr(0), packet);
        let mut sent = 0;
        while let Some(t) = worker.poll_transmit() {
            sent += 1;
            worker.recycle(t.contents);
        }
        sent
    }
}
