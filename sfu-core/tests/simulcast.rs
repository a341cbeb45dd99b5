//! Simulcast through the real worker on the simulated network: a publisher sends a 3-layer
//! rid simulcast VP8 track (q 320x180, h 640x360, f 1280x720, L1T3 temporal layers, 30 fps)
//! built from real RFC 7741 payloads and answers PLIs with keyframes, like a browser; the
//! subscribers must each get one layer as one continuous VP8 stream (sequence numbers,
//! timestamps, picture ids, TL0PICIDX) across layer switches, temporal thinning, a layer the
//! publisher stops sending, and pause/resume.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sfu_core::codecs::vp8::{Vp8Descriptor, keyframe_size};
use sfu_core::consumer::ConsumerPreferences;
use sfu_core::producer::STREAM_INACTIVE_AFTER;
use sfu_core::rtp_parameters::extension_uri;
use sfu_core::sim_peer::{PeerId, ReceivedRtp, SimNetwork};
use sfu_core::{
    ConsumerId, ProducerId, RouterId, RtpEncodingParameters, RtpHeaderExtension, RtpParameters,
    WorkerEvent,
};

// ---------------------------------------------------------------------------------------------
// VP8 payloads (RFC 7741 descriptor + RFC 6386 frame header)
// ---------------------------------------------------------------------------------------------

/// What follows the payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameHeader {
    /// First packet of a keyframe: frame tag with P = 0, start code, width and height.
    Key { width: u16, height: u16 },
    /// First packet of an inter frame: frame tag with P = 1.
    Inter,
    /// A later packet of a frame (S = 0): no frame header.
    Continuation,
}

/// A VP8 RTP payload: the descriptor with X = 1, S (set unless `Continuation`), PID = 0, then
/// I (15-bit picture id), L (TL0PICIDX) and T (TID, Y), then the frame header and `body`.
fn vp8_payload(
    picture_id: u16,
    tl0_pic_idx: u8,
    tid: u8,
    layer_sync: bool,
    header: FrameHeader,
    body: &[u8],
) -> Vec<u8> {
    let start = header != FrameHeader::Continuation;
    let mut p = Vec::with_capacity(16 + body.len());
    p.push(0x80 | if start { 0x10 } else { 0x00 }); // X, S, PID 0
    p.push(0x80 | 0x40 | 0x20); // I, L, T
    p.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes()); // M = 1: 15 bits
    p.push(tl0_pic_idx);
    p.push(((tid & 0x03) << 6) | (u8::from(layer_sync) << 5));
    match header {
        FrameHeader::Key { width, height } => {
            // Frame tag: P = 0, version 0, shown, first partition size; start code; size.
            p.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a]);
            p.extend_from_slice(&(width & 0x3fff).to_le_bytes());
            p.extend_from_slice(&(height & 0x3fff).to_le_bytes());
        }
        FrameHeader::Inter => p.extend_from_slice(&[0x31, 0x10, 0x00]), // P = 1, shown
        FrameHeader::Continuation => {}
    }
    p.extend_from_slice(body);
    p
}

#[test]
fn the_vp8_payload_helper_builds_what_the_worker_parses() {
    let key = vp8_payload(
        32_767,
        9,
        0,
        false,
        FrameHeader::Key {
            width: 1280,
            height: 720,
        },
        b"body",
    );
    let d = Vp8Descriptor::parse(&key).unwrap();
    assert_eq!(
        d.picture_id.map(|p| (p.value, p.long)),
        Some((32_767, true))
    );
    assert_eq!(d.tl0_pic_idx, Some(9));
    assert_eq!(d.temporal_id, Some(0));
    assert!(d.is_start_of_frame() && d.is_keyframe(&key));
    let size = keyframe_size(&key).unwrap();
    assert_eq!((size.width, size.height), (1280, 720));

    let inter = vp8_payload(5, 10, 2, true, FrameHeader::Inter, b"body");
    let d = Vp8Descriptor::parse(&inter).unwrap();
    assert_eq!((d.temporal_id, d.layer_sync), (Some(2), true));
    assert!(d.is_start_of_frame() && !d.is_keyframe(&inter));
    assert_eq!(keyframe_size(&inter), None);

    let cont = vp8_payload(5, 10, 2, false, FrameHeader::Continuation, b"\x50body");
    let d = Vp8Descriptor::parse(&cont).unwrap();
    assert!(!d.is_start_of_frame() && !d.is_keyframe(&cont));
}

// ---------------------------------------------------------------------------------------------
// The simulcast publisher
// ---------------------------------------------------------------------------------------------

/// Publisher-side id of the rid extension (Chrome's).
const PUB_RID_ID: u8 = 10;
/// 30 fps.
const FRAME_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / 30);
const TICKS_PER_FRAME: u32 = 90_000 / 30;
/// L1T3: TID of each frame of the pattern, starting at a TL0 frame.
const L1T3: [u8; 4] = [0, 2, 1, 2];
/// Every payload ends with a trailer that tells the test which layer, frame and packet it is.
const TRAILER_MAGIC: u8 = 0xAB;
const TRAILER_LEN: usize = 8;

/// One simulcast encoding. Each has its own sequence, timestamp, picture-id and TL0PICIDX
/// spaces, some of them close to a wrap.
struct LayerConfig {
    rid: &'static str,
    ssrc: u32,
    width: u16,
    height: u16,
    first_seq: u16,
    first_ts: u32,
    first_picture_id: u16,
    first_tl0: u8,
}

const LAYERS: [LayerConfig; 3] = [
    LayerConfig {
        rid: "q",
        ssrc: 0x5100_0001,
        width: 320,
        height: 180,
        first_seq: 100,
        first_ts: 1_000,
        first_picture_id: 1_000,
        first_tl0: 10,
    },
    LayerConfig {
        rid: "h",
        ssrc: 0x5100_0002,
        width: 640,
        height: 360,
        first_seq: 30_000,
        first_ts: 2_000_000_000,
        first_picture_id: 20_000,
        first_tl0: 100,
    },
    LayerConfig {
        rid: "f",
        ssrc: 0x5100_0003,
        width: 1280,
        height: 720,
        first_seq: 65_500,
        first_ts: u32::MAX - 90_000,
        first_picture_id: 32_700,
        first_tl0: 250,
    },
];

/// The encoder state of one layer.
struct Layer {
    cfg: &'static LayerConfig,
    seq: u16,
    picture_id: u16,
    tl0: u8,
    frames: u64,
    /// Frames since the last keyframe (position in the temporal pattern).
    since_key: u64,
    sending: bool,
    plis_seen: u64,
    key_pending: bool,
}

/// One frame the publisher sent.
#[derive(Debug, Clone, Copy)]
struct SentFrame {
    at: Instant,
    layer: usize,
    tick: u32,
    tid: u8,
    sync: bool,
    key: bool,
}

/// Whether a frame at `since_key` frames after a keyframe carries Y = 1: the TID 1/2 frames
/// of the first pattern cycle after a keyframe and of every fourth cycle after it (so that
/// most upper-layer frames are *not* switch points).
fn layer_sync(since_key: u64, tid: u8) -> bool {
    tid > 0 && (since_key / 4).is_multiple_of(4)
}

struct Subscriber {
    peer: PeerId,
    consumer: ConsumerId,
    ssrc: u32,
}

/// A worker, a simulcast publisher and `n` subscribers of its track, connected.
struct Sim {
    net: SimNetwork,
    router: RouterId,
    publisher: PeerId,
    producer: ProducerId,
    subs: Vec<Subscriber>,
    layers: Vec<Layer>,
    /// Frames sent so far (on the common 30 fps capture clock).
    tick: u32,
    start: Instant,
    sent: Vec<SentFrame>,
    /// PLIs the publisher received: when it noticed them, and for which layer.
    plis: Vec<(Instant, usize)>,
}

fn simulcast_params() -> RtpParameters {
    RtpParameters {
        mid: Some("1".into()),
        codecs: vec![vp8(VP8_PT)],
        header_extensions: vec![
            RtpHeaderExtension {
                uri: extension_uri::MID.into(),
                id: PUB_MID_ID,
            },
            RtpHeaderExtension {
                uri: extension_uri::RID.into(),
                id: PUB_RID_ID,
            },
        ],
        encodings: LAYERS
            .iter()
            .map(|l| RtpEncodingParameters {
                rid: Some(l.rid.into()),
                ..Default::default()
            })
            .collect(),
        cname: Some("publisher".into()),
    }
}

impl Sim {
    fn new(subscribers: usize) -> Self {
        let mut net = SimNetwork::new(addr(WORKER)).unwrap();
        let router = net.worker_mut().create_router();
        let publisher = net.add_peer(peer_addr(0)).unwrap();
        let publisher_info = net.create_transport(publisher, router).unwrap();
        let producer = net
            .worker_mut()
            .produce(publisher_info.id, simulcast_params())
            .unwrap();
        let mut subs = Vec::new();
        let mut infos = Vec::new();
        for i in 0..subscribers {
            let peer = net.add_peer(peer_addr(i + 1)).unwrap();
            let info = net.create_transport(peer, router).unwrap();
            let now = net.now();
            let (consumer, params) = net
                .worker_mut()
                .consume(now, info.id, producer, &subscriber_caps(), Some("0".into()))
                .unwrap();
            subs.push(Subscriber {
                peer,
                consumer,
                ssrc: consumer_ssrc(&params),
            });
            infos.push(info);
        }
        net.connect(publisher, &publisher_info).unwrap();
        for (s, info) in subs.iter().zip(&infos) {
            net.connect(s.peer, info).unwrap();
        }
        let mut peers: Vec<PeerId> = subs.iter().map(|s| s.peer).collect();
        peers.push(publisher);
        assert!(
            net.run_until_connected(&peers, CONNECT_LIMIT),
            "simulcast room did not connect: {:?}",
            net.events()
        );
        let start = net.now();
        Self {
            net,
            router,
            publisher,
            producer,
            subs,
            layers: LAYERS
                .iter()
                .map(|cfg| Layer {
                    cfg,
                    seq: cfg.first_seq,
                    picture_id: cfg.first_picture_id,
                    tl0: cfg.first_tl0,
                    frames: 0,
                    since_key: 0,
                    sending: true,
                    plis_seen: 0,
                    key_pending: false,
                })
                .collect(),
            tick: 0,
            start,
            sent: Vec::new(),
            plis: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.net.now()
    }

    /// A subscriber joining while the publisher keeps sending: consumes, connects (frames keep
    /// coming meanwhile) and returns its index and when its transport was connected.
    fn join(&mut self, preferences: ConsumerPreferences) -> (usize, Instant) {
        let index = self.subs.len();
        let peer = self.net.add_peer(peer_addr(index + 1)).unwrap();
        let router = self.router;
        let info = self.net.create_transport(peer, router).unwrap();
        let now = self.now();
        let (consumer, params) = self
            .net
            .worker_mut()
            .consume(
                now,
                info.id,
                self.producer,
                &subscriber_caps(),
                Some("0".into()),
            )
            .unwrap();
        self.net
            .worker_mut()
            .set_consumer_preferences(now, consumer, preferences)
            .unwrap();
        self.subs.push(Subscriber {
            peer,
            consumer,
            ssrc: consumer_ssrc(&params),
        });
        self.net.connect(peer, &info).unwrap();
        for _ in 0..300 {
            if self.net.peer(peer).unwrap().is_connected() {
                let at = self
                    .net
                    .events()
                    .iter()
                    .find_map(|(at, e)| match e {
                        WorkerEvent::TransportConnected { transport, .. }
                            if *transport == info.id =>
                        {
                            Some(*at)
                        }
                        _ => None,
                    })
                    .expect("TransportConnected");
                return (index, at);
            }
            self.tick();
        }
        panic!("the late subscriber did not connect");
    }

    fn set_prefs(&mut self, sub: usize, preferences: ConsumerPreferences) {
        let now = self.now();
        let consumer = self.subs[sub].consumer;
        self.net
            .worker_mut()
            .set_consumer_preferences(now, consumer, preferences)
            .unwrap();
    }

    fn consumer_stream(&self, sub: usize) -> Option<usize> {
        self.net.worker().consumer_stream(self.subs[sub].consumer)
    }

    /// One capture instant: answer PLIs, send one frame on every layer being sent, deliver,
    /// and advance virtual time to the next frame.
    fn tick(&mut self) {
        let now = self.now();
        for i in 0..self.layers.len() {
            let plis = self
                .net
                .peer(self.publisher)
                .unwrap()
                .received_plis(self.layers[i].cfg.ssrc);
            let layer = &mut self.layers[i];
            if plis > layer.plis_seen {
                layer.plis_seen = plis;
                layer.key_pending = true;
                self.plis.push((now, i));
            }
            if layer.sending {
                self.emit(i, now);
            }
        }
        self.net.deliver();
        self.tick += 1;
        let next = self.start + FRAME_INTERVAL * self.tick;
        self.net.advance_to(next);
    }

    /// Lets what is in flight arrive without sending more frames.
    fn drain(&mut self) {
        self.net.advance(Duration::from_millis(200));
    }

    fn run(&mut self, duration: Duration) {
        let frames = (duration.as_nanos() / FRAME_INTERVAL.as_nanos()) as u32;
        for _ in 0..frames {
            self.tick();
        }
    }

    /// Ticks until `done` holds for the state before the next tick (at most `limit` frames).
    fn run_until_next(&mut self, limit: u32, done: impl Fn(&Self) -> bool) {
        for _ in 0..limit {
            if done(self) {
                return;
            }
            self.tick();
        }
        panic!("condition not reached within {limit} frames");
    }

    fn emit(&mut self, index: usize, now: Instant) {
        let tick = self.tick;
        let publisher = self.publisher;
        let layer = &mut self.layers[index];
        let key = layer.frames == 0 || layer.key_pending;
        if key {
            layer.key_pending = false;
            layer.since_key = 0;
        }
        let pos = layer.since_key;
        let tid = L1T3[(pos % 4) as usize];
        let sync = layer_sync(pos, tid);
        if layer.frames > 0 {
            layer.picture_id = (layer.picture_id + 1) & 0x7fff;
            if tid == 0 {
                layer.tl0 = layer.tl0.wrapping_add(1);
            }
        }
        let ts = layer
            .cfg
            .first_ts
            .wrapping_add(tick.wrapping_mul(TICKS_PER_FRAME));
        // Keyframes and base-layer frames span several packets.
        let count: u8 = if key {
            3
        } else if tid == 0 {
            2
        } else {
            1
        };
        let peer = self.net.peer_mut(publisher).unwrap();
        for k in 0..count {
            let header = if k > 0 {
                FrameHeader::Continuation
            } else if key {
                FrameHeader::Key {
                    width: layer.cfg.width,
                    height: layer.cfg.height,
                }
            } else {
                FrameHeader::Inter
            };
            let mut body = vec![0x5a ^ index as u8; 100 + 50 * index];
            body.push(TRAILER_MAGIC);
            body.push(index as u8);
            body.extend_from_slice(&tick.to_be_bytes());
            body.push(k);
            body.push(count);
            let payload = vp8_payload(layer.picture_id, layer.tl0, tid, sync, header, &body);
            peer.send_rtp(
                now,
                layer.cfg.ssrc,
                VP8_PT,
                layer.seq,
                ts,
                k + 1 == count,
                &[
                    (PUB_MID_ID, b"1".as_slice()),
                    (PUB_RID_ID, layer.cfg.rid.as_bytes()),
                ],
                &payload,
            )
            .unwrap();
            layer.seq = layer.seq.wrapping_add(1);
        }
        layer.frames += 1;
        layer.since_key += 1;
        self.sent.push(SentFrame {
            at: now,
            layer: index,
            tick,
            tid,
            sync,
            key,
        });
    }

    /// What subscriber `sub` received for its consumer, parsed.
    fn received(&self, sub: usize) -> Vec<Rx> {
        let s = &self.subs[sub];
        self.net
            .peer(s.peer)
            .unwrap()
            .received_rtp_for(s.ssrc)
            .map(parse_rx)
            .collect()
    }

    /// PLIs for `layer` the publisher noticed at or after `since`.
    fn plis_since(&self, layer: usize, since: Instant) -> Vec<Instant> {
        self.plis
            .iter()
            .filter(|(at, l)| *l == layer && *at >= since)
            .map(|(at, _)| *at)
            .collect()
    }

    /// Frames of `layer` sent with `from <= tick < to`.
    fn sent_frames(&self, layer: usize, from: u32, to: u32) -> Vec<SentFrame> {
        self.sent
            .iter()
            .filter(|f| f.layer == layer && (from..to).contains(&f.tick))
            .copied()
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// What a subscriber received
// ---------------------------------------------------------------------------------------------

/// One packet a subscriber received, with its VP8 descriptor and the publisher's trailer.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Rx {
    at: Instant,
    pt: u8,
    seq: u16,
    ts: u32,
    marker: bool,
    layer: usize,
    tick: u32,
    packet: u8,
    packets: u8,
    picture_id: u16,
    tl0: u8,
    tid: u8,
    sync: bool,
    start: bool,
    keyframe: bool,
    size: Option<(u16, u16)>,
}

fn parse_rx(p: &ReceivedRtp) -> Rx {
    let d = Vp8Descriptor::parse(&p.payload).expect("a VP8 payload descriptor");
    assert!(p.payload.len() >= TRAILER_LEN, "payload too short: {p:?}");
    let t = &p.payload[p.payload.len() - TRAILER_LEN..];
    assert_eq!(t[0], TRAILER_MAGIC, "trailer intact: {p:?}");
    Rx {
        at: p.at,
        pt: p.payload_type,
        seq: p.sequence_number,
        ts: p.timestamp,
        marker: p.marker,
        layer: usize::from(t[1]),
        tick: u32::from_be_bytes([t[2], t[3], t[4], t[5]]),
        packet: t[6],
        packets: t[7],
        picture_id: d.picture_id.expect("picture id kept").value,
        tl0: d.tl0_pic_idx.expect("TL0PICIDX kept"),
        tid: d.temporal_id.expect("TID kept"),
        sync: d.layer_sync,
        start: d.is_start_of_frame(),
        keyframe: d.is_keyframe(&p.payload),
        size: keyframe_size(&p.payload).map(|s| (s.width, s.height)),
    }
}

/// Asserts that one subscriber's packets form a stream a VP8 decoder takes as continuous:
/// starts at a keyframe; sequence numbers +1 each (no gap, no duplicate); timestamps
/// non-decreasing (equal within a frame, increasing between frames); every frame complete
/// and in order; picture ids +1 per frame; TL0PICIDX +1 per TL0 frame and unchanged
/// otherwise; a change of layer only at a keyframe, whose size is that layer's.
fn assert_decodable(rx: &[Rx], who: &str) {
    let first = rx
        .first()
        .unwrap_or_else(|| panic!("{who} received nothing"));
    assert!(
        first.keyframe,
        "{who}: the first packet is not a keyframe start: {first:?}"
    );
    for p in rx {
        assert_eq!(p.pt, SUB_VP8_PT, "{who}: the subscriber's payload type");
        if p.keyframe {
            let cfg = &LAYERS[p.layer];
            assert_eq!(
                p.size,
                Some((cfg.width, cfg.height)),
                "{who}: keyframe size of layer {}",
                cfg.rid
            );
        }
    }
    for (i, w) in rx.windows(2).enumerate() {
        let (a, b) = (&w[0], &w[1]);
        let ctx = || format!("{who}: packets {i} and {}:\n  {a:?}\n  {b:?}", i + 1);
        assert_eq!(
            b.seq,
            a.seq.wrapping_add(1),
            "sequence numbers not continuous: {}",
            ctx()
        );
        let dts = b.ts.wrapping_sub(a.ts) as i32;
        if (a.layer, a.tick) == (b.layer, b.tick) {
            assert_eq!(
                b.packet,
                a.packet + 1,
                "packets of a frame out of order: {}",
                ctx()
            );
            assert!(!b.start, "{}", ctx());
            assert_eq!(dts, 0, "timestamp changed within a frame: {}", ctx());
            assert_eq!(b.picture_id, a.picture_id, "{}", ctx());
            assert_eq!(b.tl0, a.tl0, "{}", ctx());
            continue;
        }
        assert!(
            a.packet + 1 == a.packets && a.marker,
            "frame left incomplete: {}",
            ctx()
        );
        assert!(b.start && b.packet == 0, "frame starts mid-way: {}", ctx());
        assert!(
            dts > 0,
            "timestamp did not increase between frames: {}",
            ctx()
        );
        assert_eq!(
            b.picture_id,
            (a.picture_id + 1) & 0x7fff,
            "picture id not +1: {}",
            ctx()
        );
        let tl0 = if b.tid == 0 {
            a.tl0.wrapping_add(1)
        } else {
            a.tl0
        };
        assert_eq!(b.tl0, tl0, "TL0PICIDX not continuous: {}", ctx());
        if b.layer == a.layer {
            assert!(b.tick > a.tick, "frames out of order: {}", ctx());
        } else {
            assert!(b.keyframe, "layer switch not at a keyframe: {}", ctx());
        }
    }
}

/// The frames (by capture tick) in `rx`, in order.
fn frames(rx: &[Rx]) -> Vec<(usize, u32)> {
    let mut out: Vec<(usize, u32)> = Vec::new();
    for p in rx {
        if out.last() != Some(&(p.layer, p.tick)) {
            out.push((p.layer, p.tick));
        }
    }
    out
}

/// Asserts that every frame of `layer` sent from `from` to the end is in `rx`.
fn assert_every_frame_from(sim: &Sim, rx: &[Rx], layer: usize, from: u32, who: &str) {
    let got: Vec<u32> = frames(rx)
        .into_iter()
        .filter(|&(l, t)| l == layer && t >= from)
        .map(|(_, t)| t)
        .collect();
    let sent: Vec<u32> = sim
        .sent_frames(layer, from, u32::MAX)
        .iter()
        .map(|f| f.tick)
        .collect();
    assert_eq!(got, sent, "{who}: frames of layer {layer} from tick {from}");
}

fn lowest() -> ConsumerPreferences {
    ConsumerPreferences {
        max_spatial: Some(0),
        ..Default::default()
    }
}

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const Q: usize = 0;
const H: usize = 1;
const F: usize = 2;

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn each_subscriber_gets_only_its_layer_as_one_continuous_stream() {
    let mut sim = Sim::new(3);
    sim.set_prefs(A, lowest());
    // B: the default, the best. C: shown 360 pixels high.
    sim.set_prefs(
        C,
        ConsumerPreferences {
            max_height: Some(360),
            ..Default::default()
        },
    );
    sim.run(Duration::from_secs(3));

    for (sub, layer, who) in [(A, Q, "A (q)"), (B, F, "B (f)"), (C, H, "C (h, 360p)")] {
        let all = sim.received(sub);
        // Decodable throughout: a layer change only at a keyframe of the new layer.
        assert_decodable(&all, who);
        // Layers that start first may be shown until the wanted one starts (a quick first
        // frame); from the wanted layer's first keyframe on, nothing else.
        let from = all
            .iter()
            .position(|p| p.layer == layer)
            .unwrap_or_else(|| panic!("{who} never got its layer"));
        let rx: Vec<_> = all[from..].to_vec();
        assert!(
            rx.iter().all(|p| p.layer == layer),
            "{who} got packets of other layers after its own: {:?}",
            rx.iter()
                .filter(|p| p.layer != layer)
                .take(3)
                .collect::<Vec<_>>()
        );
        assert!(
            all[..from].iter().all(|p| p.layer < layer),
            "{who}: only lower layers while waiting"
        );
        let first = &rx[0];
        assert!(
            first.at.duration_since(sim.start) < Duration::from_millis(500),
            "{who} started late: {:?}",
            first.at.duration_since(sim.start)
        );
        // From its first keyframe on, nothing of the layer is missing.
        assert_every_frame_from(&sim, &rx, layer, first.tick, who);
        let cfg = &LAYERS[layer];
        assert_eq!(first.size, Some((cfg.width, cfg.height)), "{who}");
        assert_eq!(sim.consumer_stream(sub), Some(layer), "{who}");
    }

    // A subscriber's own PLI asks for a keyframe of the layer it receives, and of no other.
    let since = sim.now();
    let (peer, ssrc) = (sim.subs[B].peer, sim.subs[B].ssrc);
    sim.net
        .peer_mut(peer)
        .unwrap()
        .send_pli(since, ssrc)
        .unwrap();
    sim.run(Duration::from_millis(200));
    assert_eq!(sim.plis_since(F, since).len(), 1, "one PLI for f");
    assert!(
        sim.plis_since(Q, since).is_empty() && sim.plis_since(H, since).is_empty(),
        "no PLI for the layers B does not receive"
    );
    assert_decodable(&sim.received(B), "B after its PLI");
}

#[test]
fn switching_layers_happens_at_a_keyframe_of_the_new_layer_with_continuous_numbering() {
    let mut sim = Sim::new(2);
    sim.set_prefs(A, lowest());
    sim.run(Duration::from_secs(2));
    let (before_a, before_b) = (sim.received(A).len(), sim.received(B).len());
    assert!(before_a > 0 && before_b > 0);
    assert_eq!(
        (sim.consumer_stream(A), sim.consumer_stream(B)),
        (Some(Q), Some(F))
    );

    // A goes up to the best, B down to the lowest.
    let switch_at = sim.now();
    sim.set_prefs(A, ConsumerPreferences::default());
    sim.set_prefs(B, lowest());
    sim.run(Duration::from_secs(2));

    for (sub, from, to, who) in [(A, Q, F, "A (q → f)"), (B, F, Q, "B (f → q)")] {
        let rx = sim.received(sub);
        assert_decodable(&rx, who);
        let before = if sub == A { before_a } else { before_b };
        let after = &rx[before..];
        let k = after
            .iter()
            .position(|p| p.layer == to)
            .unwrap_or_else(|| panic!("{who}: never switched"));
        assert!(
            after[..k].iter().all(|p| p.layer == from),
            "{who}: the old layer until the switch"
        );
        assert!(
            after[k..].iter().all(|p| p.layer == to),
            "{who}: only the new layer after it"
        );
        let first = &after[k];
        assert!(
            first.keyframe && first.start,
            "{who}: the switch is at a keyframe start: {first:?}"
        );
        let latency = first.at.duration_since(switch_at);
        assert!(
            latency <= Duration::from_secs(2),
            "{who}: switched after {latency:?}"
        );
        let plis = sim.plis_since(to, switch_at);
        assert!(
            plis.first().is_some_and(|&t| t <= first.at),
            "{who}: the worker asked for a keyframe of the target layer ({plis:?})"
        );
        assert_eq!(sim.consumer_stream(sub), Some(to), "{who}");
        assert_every_frame_from(&sim, &rx, to, first.tick, who);
    }
}

#[test]
fn temporal_layers_are_thinned_without_gaps_and_restored_at_a_layer_sync_frame() {
    let mut sim = Sim::new(1);
    sim.set_prefs(A, lowest());
    sim.run(Duration::from_millis(1500));

    // Base layer only (15 → 7.5 fps of the 30).
    sim.set_prefs(
        A,
        ConsumerPreferences {
            max_spatial: Some(0),
            max_temporal: Some(0),
            ..Default::default()
        },
    );
    let thin_from = sim.tick;
    sim.run(Duration::from_secs(2));
    let rx = sim.received(A);
    assert_decodable(&rx, "A thinned");
    let thinned: Vec<u32> = frames(&rx)
        .into_iter()
        .filter(|&(_, t)| t >= thin_from)
        .map(|(_, t)| t)
        .collect();
    let base: Vec<u32> = sim
        .sent_frames(Q, thin_from, sim.tick)
        .iter()
        .filter(|f| f.tid == 0)
        .map(|f| f.tick)
        .collect();
    assert_eq!(thinned, base, "exactly the TID 0 frames");
    assert!(
        rx.iter()
            .filter(|p| p.tick >= thin_from)
            .all(|p| p.tid == 0),
        "only TID 0"
    );

    // Back to all layers just before a run of frames that are not switch points.
    sim.run_until_next(64, |s| {
        let l = &s.layers[Q];
        l.since_key % 16 == 5 && !l.key_pending
    });
    sim.set_prefs(
        A,
        ConsumerPreferences {
            max_spatial: Some(0),
            ..Default::default()
        },
    );
    let raise_from = sim.tick;
    sim.run(Duration::from_millis(1500));
    let sent = sim.sent_frames(Q, raise_from, sim.tick);
    let sync = sent
        .iter()
        .find(|f| f.tid > 0 && f.sync)
        .expect("a layer-sync frame was sent");
    let skipped = sent
        .iter()
        .filter(|f| f.tid > 0 && f.tick < sync.tick)
        .count();
    assert!(
        skipped > 0,
        "set-up: upper-layer frames that are not switch points precede the sync frame"
    );
    let rx = sim.received(A);
    assert_decodable(&rx, "A restored");
    let after: Vec<&Rx> = rx.iter().filter(|p| p.tick >= raise_from).collect();
    let first_upper = after
        .iter()
        .find(|p| p.tid > 0)
        .expect("upper temporal layers resumed");
    assert!(
        first_upper.sync,
        "resumed TID {} at a frame without Y: {first_upper:?}",
        first_upper.tid
    );
    assert_eq!(first_upper.tick, sync.tick, "at the first sync frame");
    assert_every_frame_from(&sim, &rx, Q, sync.tick, "A restored");
}

#[test]
fn a_subscriber_falls_back_when_the_publisher_stops_a_layer_and_returns_when_it_resumes() {
    let mut sim = Sim::new(2);
    sim.set_prefs(A, lowest());
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.consumer_stream(B), Some(F));
    let before = sim.received(B).len();

    // The publisher drops f (CPU or bandwidth limited).
    sim.layers[F].sending = false;
    let stopped_at = sim.now();
    sim.run(Duration::from_secs(3));
    let rx = sim.received(B);
    assert_decodable(&rx, "B");
    let after = &rx[before..];
    let k = after
        .iter()
        .position(|p| p.layer == H)
        .expect("B fell back to h");
    let first = &after[k];
    assert!(after[..k].iter().all(|p| p.layer == F));
    assert!(after[k..].iter().all(|p| p.layer == H));
    assert!(first.keyframe, "fallback at a keyframe: {first:?}");
    let latency = first.at.duration_since(stopped_at);
    assert!(
        latency >= STREAM_INACTIVE_AFTER - FRAME_INTERVAL && latency <= Duration::from_millis(2100),
        "fell back after {latency:?}"
    );
    assert!(!sim.plis_since(H, stopped_at).is_empty(), "PLI for h");
    assert_eq!(sim.consumer_stream(B), Some(H));

    // f comes back, starting with a keyframe as an encoder does.
    let before = rx.len();
    sim.layers[F].sending = true;
    sim.layers[F].key_pending = true;
    let resumed_at = sim.now();
    sim.run(Duration::from_secs(2));
    let rx = sim.received(B);
    assert_decodable(&rx, "B");
    let after = &rx[before..];
    let k = after
        .iter()
        .position(|p| p.layer == F)
        .expect("B went back up to f");
    let first = &after[k];
    assert!(first.keyframe, "back up at a keyframe: {first:?}");
    let latency = first.at.duration_since(resumed_at);
    assert!(
        latency <= Duration::from_millis(600),
        "went back up after {latency:?}"
    );
    assert!(after[k..].iter().all(|p| p.layer == F));
    assert_eq!(sim.consumer_stream(B), Some(F));

    // A never noticed.
    let rx_a = sim.received(A);
    assert!(rx_a.iter().all(|p| p.layer == Q));
    assert_decodable(&rx_a, "A");
    assert_every_frame_from(&sim, &rx_a, Q, rx_a[0].tick, "A");
}

#[test]
fn a_paused_consumer_gets_nothing_and_resumes_at_a_keyframe_without_a_gap() {
    let mut sim = Sim::new(2);
    sim.set_prefs(A, lowest());
    sim.run(Duration::from_secs(2));
    let before = sim.received(B).len();
    let a_before = sim.received(A).len();

    let now = sim.now();
    let consumer = sim.subs[B].consumer;
    sim.net
        .worker_mut()
        .set_consumer_paused(now, consumer, true)
        .unwrap();
    sim.run(Duration::from_secs(1));
    assert_eq!(
        sim.received(B).len(),
        before,
        "nothing forwarded while paused"
    );
    assert!(sim.received(A).len() > a_before + 20, "A unaffected");

    let resumed_at = sim.now();
    let resume_tick = sim.tick;
    sim.net
        .worker_mut()
        .set_consumer_paused(resumed_at, consumer, false)
        .unwrap();
    sim.run(Duration::from_secs(1));
    let rx = sim.received(B);
    assert!(rx.len() > before, "forwarding resumed");
    assert_decodable(&rx, "B across the pause");
    let (last, first) = (&rx[before - 1], &rx[before]);
    assert!(
        first.keyframe && first.layer == F,
        "resumed at a keyframe of f: {first:?}"
    );
    assert!(
        first.at.duration_since(resumed_at) < Duration::from_millis(500),
        "resumed after {:?}",
        first.at.duration_since(resumed_at)
    );
    assert!(
        !sim.plis_since(F, resumed_at).is_empty(),
        "the worker asked for a keyframe on resume"
    );
    // The timestamp line advanced by the time the pause lasted (RTP time keeps running).
    let elapsed = first.at.duration_since(last.at).as_secs_f64() * 90_000.0;
    let dts = f64::from(first.ts.wrapping_sub(last.ts));
    assert!(
        (dts - elapsed).abs() <= elapsed * 0.1,
        "timestamp advanced {dts} over a pause of {elapsed} ticks"
    );
    assert!(first.tick >= resume_tick);
    assert_every_frame_from(&sim, &rx, F, first.tick, "B after resume");
}

#[test]
fn a_packet_lost_before_a_layer_switch_is_retransmitted_with_the_ids_it_was_first_sent_with() {
    let mut sim = Sim::new(1);
    sim.set_prefs(A, lowest());
    sim.run(Duration::from_secs(2));
    // The next q frame is a TL0 frame of two packets: its first one is lost on the way to A.
    sim.run_until_next(8, |s| {
        s.layers[Q].since_key % 4 == 0 && s.layers[Q].since_key > 0 && !s.layers[Q].key_pending
    });
    let lost = sim.received(A).last().unwrap().seq.wrapping_add(1);
    let (to, ssrc, peer) = (peer_addr(1), sim.subs[A].ssrc, sim.subs[A].peer);
    let mut dropped = false;
    sim.net.set_drop_filter(Some(Box::new(move |d| {
        let rtp = d.data.len() >= 12 && !(192..=223).contains(&d.data[1]);
        let hit = !dropped
            && d.to == to
            && rtp
            && d.data[8..12] == ssrc.to_be_bytes()
            && d.data[2..4] == lost.to_be_bytes();
        dropped |= hit;
        hit
    })));
    // A moves up to f meanwhile.
    sim.set_prefs(A, ConsumerPreferences::default());
    sim.run(FRAME_INTERVAL * 5);
    sim.net.set_drop_filter(None);
    assert_eq!(sim.consumer_stream(A), Some(F), "switched to f");
    assert!(
        sim.received(A).iter().all(|p| p.seq != lost),
        "set-up: the packet was lost"
    );

    // A asks for it again (after the switch).
    let nacked_at = sim.now();
    sim.net
        .peer_mut(peer)
        .unwrap()
        .send_nack(nacked_at, ssrc, &[lost])
        .unwrap();
    sim.net.deliver();
    let mut rx = sim.received(A);
    let at = rx
        .iter()
        .position(|p| p.seq == lost)
        .expect("the lost packet was retransmitted");
    let resent = rx.remove(at);
    assert_eq!(resent.layer, Q, "{resent:?}");
    let sibling = rx
        .iter()
        .position(|p| (p.layer, p.tick) == (resent.layer, resent.tick))
        .expect("the other packet of its frame");
    assert_eq!(
        (resent.picture_id, resent.tl0),
        (rx[sibling].picture_id, rx[sibling].tl0),
        "the retransmission carries other VP8 ids than its frame had: {resent:?} vs {:?}",
        rx[sibling]
    );

    // And the output line is intact afterwards, across a switch back down.
    sim.set_prefs(A, lowest());
    sim.run(Duration::from_secs(1));
    let mut rx = sim.received(A);
    let resent = rx.remove(rx.iter().position(|p| p.seq == lost).unwrap());
    let sibling = rx
        .iter()
        .position(|p| (p.layer, p.tick) == (resent.layer, resent.tick))
        .unwrap();
    rx.insert(sibling, resent);
    assert_decodable(&rx, "A with the repaired packet in place");
    assert_eq!(sim.consumer_stream(A), Some(Q));
}

#[test]
fn subscribers_switching_together_cost_the_publisher_one_keyframe() {
    let mut sim = Sim::new(2);
    sim.set_prefs(A, lowest());
    sim.set_prefs(B, lowest());
    sim.run(Duration::from_secs(2));
    let before = [sim.received(A).len(), sim.received(B).len()];

    // Both want f now (say, the speaker became active in a two-person call).
    let switch_at = sim.now();
    sim.set_prefs(A, ConsumerPreferences::default());
    sim.set_prefs(B, ConsumerPreferences::default());
    sim.run(Duration::from_millis(1500));

    let mut switched_at = Vec::new();
    for (sub, who) in [(A, "A"), (B, "B")] {
        let rx = sim.received(sub);
        assert_decodable(&rx, who);
        let first = rx[before[sub]..]
            .iter()
            .find(|p| p.layer == F)
            .unwrap_or_else(|| panic!("{who} did not switch to f"));
        switched_at.push(first.tick);
    }
    assert_eq!(switched_at[0], switched_at[1], "both at the same keyframe");
    let keyframes: Vec<u32> = sim
        .sent
        .iter()
        .filter(|f| f.layer == F && f.key && f.at >= switch_at)
        .map(|f| f.tick)
        .collect();
    let plis: Vec<Duration> = sim
        .plis_since(F, switch_at)
        .iter()
        .map(|t| t.duration_since(switch_at))
        .collect();
    assert_eq!(
        keyframes.len(),
        1,
        "f keyframes sent after the switch at ticks {keyframes:?} (switched at tick {}), \
         PLIs for f {plis:?} after it: a keyframe request deferred by the throttle was \
         still sent after the keyframe it asked for had arrived",
        switched_at[0]
    );
}

#[test]
fn a_subscriber_joining_a_running_stream_starts_at_a_keyframe_of_its_layer_promptly() {
    let mut sim = Sim::new(1);
    sim.set_prefs(A, lowest());
    sim.run(Duration::from_secs(3));
    // 40 ms each way: the late subscriber's ICE and DTLS take a few round trips.
    sim.net.set_latency(Duration::from_millis(40));
    let (late, connected_at) = sim.join(ConsumerPreferences::default());
    sim.run(Duration::from_secs(2));
    sim.drain();
    let rx = sim.received(late);
    assert!(
        rx.iter().all(|p| p.layer == F),
        "the late subscriber gets f only"
    );
    assert_decodable(&rx, "late subscriber");
    let latency = rx[0].at.duration_since(connected_at);
    assert!(
        latency <= Duration::from_millis(700),
        "first keyframe {latency:?} after the subscriber connected"
    );
    assert_every_frame_from(&sim, &rx, F, rx[0].tick, "late subscriber");
    // The subscriber already there saw nothing of it.
    let rx_a = sim.received(A);
    assert_decodable(&rx_a, "A");
    assert_every_frame_from(&sim, &rx_a, Q, rx_a[0].tick, "A");
}

/// The web client resumes a hidden video with one `set_subscription` carrying its shown height
/// and `paused: false`: preferences first (while still paused), then the resume. The keyframe
/// must still be asked for at once, with another subscriber on the same layer.
#[test]
fn resuming_with_new_preferences_asks_for_the_keyframe_at_once() {
    let mut sim = Sim::new(2);
    sim.run(Duration::from_secs(2));
    let (a, b) = (sim.subs[A].consumer, sim.subs[B].consumer);
    let now = sim.now();
    sim.net
        .worker_mut()
        .set_consumer_paused(now, b, true)
        .unwrap();
    sim.run(Duration::from_secs(1));
    let before = sim.received(B).len();
    let resumed_at = sim.now();
    let shown = ConsumerPreferences {
        max_height: Some(720),
        ..Default::default()
    };
    sim.net
        .worker_mut()
        .set_consumer_preferences(resumed_at, b, shown)
        .unwrap();
    sim.net
        .worker_mut()
        .set_consumer_paused(resumed_at, b, false)
        .unwrap();
    let _ = a;
    sim.run(Duration::from_secs(1));
    let rx = sim.received(B);
    assert!(rx.len() > before, "forwarding resumed");
    let first = &rx[before];
    assert!(
        first.keyframe && first.layer == F,
        "resumed at a keyframe of f: {first:?}"
    );
    let plis = sim.plis_since(F, resumed_at);
    assert!(
        plis.first()
            .is_some_and(|t| t.duration_since(resumed_at) < Duration::from_millis(50)),
        "the keyframe request left at once: {:?}",
        plis.first().map(|t| t.duration_since(resumed_at))
    );
    assert!(
        first.at.duration_since(resumed_at) < Duration::from_millis(200),
        "resumed after {:?}",
        first.at.duration_since(resumed_at)
    );
}
