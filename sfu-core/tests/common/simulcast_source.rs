//! A simulated browser publisher for congestion-control scenarios: one camera sent as rid
//! simulcast VP8 (by default three encodings at about 150k/500k/2.5M bit/s, 30 frames/s) and,
//! optionally, a microphone (Opus, 50 packets/s, with an RFC 6464 audio level).
//!
//! Frames are sized from each encoding's bitrate and split into packets of at most
//! [`MAX_PAYLOAD`] bytes with real RFC 7741 payload descriptors (15-bit picture id, TL0PICIDX,
//! TID 0) and, on the first packet, the RFC 6386 frame tag (and, for a keyframe, the start
//! code and the encoding's size), so the worker's keyframe detection and layer selector treat
//! them like a browser's. Like libwebrtc, an encoding sends a keyframe when it starts, every
//! [`SourceConfig::keyframe_interval`], and on a PLI or FIR for its SSRC, at most once per
//! [`SourceConfig::min_keyframe_gap`] (a request inside the gap is served when it ends).
//!
//! The source owns no peer: [`SimulcastSource::produce`] sends what is due through the
//! publisher's `SimPeer`, and [`run_sources`] drives several sources and a `SimNetwork` on
//! virtual time.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use sfu_core::rtp_parameters::extension_uri;
use sfu_core::sim_peer::{PeerId, SimNetwork, SimPeer};
use sfu_core::{RtpEncodingParameters, RtpHeaderExtension, RtpParameters};

use crate::common::{OPUS_PT, PUB_AUDIO_LEVEL_ID, PUB_MID_ID, VP8_PT, opus, vp8};

/// Publisher-side id of the rid extension (Chrome's).
pub const PUB_RID_ID: u8 = 10;
/// Largest RTP payload a source writes (descriptor and frame header included).
pub const MAX_PAYLOAD: usize = 1200;
/// Opus packet interval.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Opus payload size: 100 bytes every 20 ms, 40 kbit/s.
pub const AUDIO_PAYLOAD: usize = 100;
/// VP8 payload descriptor length as written: X, I (15-bit picture id), L, T.
const DESCRIPTOR_LEN: usize = 6;

/// One simulcast encoding.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    /// Its rid.
    pub rid: String,
    /// Its SSRC (never signalled: the worker learns it from the rid extension).
    pub ssrc: u32,
    /// Size written in its keyframes.
    pub width: u16,
    /// Size written in its keyframes.
    pub height: u16,
    /// Average bitrate of its RTP payloads, keyframes included, in bits per second.
    pub bitrate_bps: u64,
}

/// The microphone.
#[derive(Debug, Clone)]
pub struct AudioSpec {
    /// Media section of the audio producer.
    pub mid: String,
    /// Its SSRC (signalled).
    pub ssrc: u32,
    /// Level in -dBov with the voice-activity bit set; `None`: silence (127 dBov, V = 0).
    pub level: Option<u8>,
}

/// What a [`SimulcastSource`] sends.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Media section of the video producer.
    pub mid: String,
    /// Encodings, lowest quality first.
    pub layers: Vec<LayerSpec>,
    /// Frames per second of every encoding.
    pub fps: u32,
    /// A keyframe at least this often on every encoding.
    pub keyframe_interval: Duration,
    /// Keyframes of one encoding are never closer than this, whatever is asked.
    pub min_keyframe_gap: Duration,
    /// A keyframe's size relative to a delta frame's.
    pub keyframe_factor: f64,
    /// The microphone, if any.
    pub audio: Option<AudioSpec>,
    /// CNAME of the producers.
    pub cname: String,
}

impl SourceConfig {
    /// Three encodings q/h/f (320x180 at 150 kbit/s, 640x360 at 500 kbit/s, 1280x720 at
    /// 2.5 Mbit/s), 30 frames/s, a keyframe every 4 s and at most 3 per second, no audio.
    /// `index` makes the SSRCs distinct between sources.
    pub fn three_layers(index: u32) -> Self {
        let base = 0x5C00_0000 | (index << 8);
        let layer = |i: u32, rid: &str, width, height, bitrate_bps| LayerSpec {
            rid: rid.into(),
            ssrc: base | i,
            width,
            height,
            bitrate_bps,
        };
        Self {
            mid: "1".into(),
            layers: vec![
                layer(1, "q", 320, 180, 150_000),
                layer(2, "h", 640, 360, 500_000),
                layer(3, "f", 1280, 720, 2_500_000),
            ],
            fps: 30,
            keyframe_interval: Duration::from_secs(4),
            min_keyframe_gap: Duration::from_millis(300),
            keyframe_factor: 4.0,
            audio: None,
            cname: format!("publisher-{index}"),
        }
    }

    /// The same with a microphone at `level` (-dBov; `None`: silent) in mid "0".
    pub fn with_audio(mut self, level: Option<u8>) -> Self {
        let ssrc = self.layers.first().map_or(0x0A0A_0000, |l| l.ssrc) ^ 0x00A0_0000;
        self.audio = Some(AudioSpec {
            mid: "0".into(),
            ssrc,
            level,
        });
        self
    }

    /// The producer parameters of the video track, as a browser's offer would give them.
    pub fn video_parameters(&self) -> RtpParameters {
        RtpParameters {
            mid: Some(self.mid.clone()),
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
            encodings: self
                .layers
                .iter()
                .map(|l| RtpEncodingParameters {
                    rid: Some(l.rid.clone()),
                    ..Default::default()
                })
                .collect(),
            cname: Some(self.cname.clone()),
        }
    }

    /// The producer parameters of the audio track, if there is a microphone.
    pub fn audio_parameters(&self) -> Option<RtpParameters> {
        let audio = self.audio.as_ref()?;
        Some(RtpParameters {
            mid: Some(audio.mid.clone()),
            codecs: vec![opus(OPUS_PT)],
            header_extensions: vec![
                RtpHeaderExtension {
                    uri: extension_uri::MID.into(),
                    id: PUB_MID_ID,
                },
                RtpHeaderExtension {
                    uri: extension_uri::AUDIO_LEVEL.into(),
                    id: PUB_AUDIO_LEVEL_ID,
                },
            ],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(audio.ssrc),
                ..Default::default()
            }],
            cname: Some(self.cname.clone()),
        })
    }

    /// Payload bytes of a delta frame of `layer`, such that periodic keyframes of
    /// [`Self::keyframe_factor`] keep the average at the layer's bitrate.
    fn delta_frame_bytes(&self, layer: &LayerSpec) -> usize {
        let fps = f64::from(self.fps.max(1));
        let frames_per_key = (self.keyframe_interval.as_secs_f64() * fps).max(1.0);
        let mean = layer.bitrate_bps as f64 / 8.0 / fps;
        let delta = mean * frames_per_key / (frames_per_key - 1.0 + self.keyframe_factor);
        delta.round().max(1.0) as usize
    }
}

/// What one encoding sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Frames sent.
    pub frames: u64,
    /// Keyframes sent.
    pub keyframes: u64,
    /// Keyframes sent because of a PLI or FIR.
    pub requested_keyframes: u64,
    /// RTP packets sent.
    pub packets: u64,
    /// RTP payload bytes sent.
    pub payload_bytes: u64,
}

#[derive(Debug, Clone)]
struct LayerState {
    seq: u16,
    picture_id: u16,
    tl0: u8,
    last_key: Option<Instant>,
    /// PLIs + FIR entries for this SSRC already seen.
    requests_seen: u64,
    key_requested: bool,
    stats: LayerStats,
}

#[derive(Debug, Clone)]
struct AudioState {
    seq: u16,
    ts: u32,
    next: Instant,
    packets: u64,
}

/// A simulated publisher; see the module documentation.
#[derive(Debug, Clone)]
pub struct SimulcastSource {
    /// The publisher peer the source sends through.
    pub peer: PeerId,
    config: SourceConfig,
    layers: Vec<LayerState>,
    start: Instant,
    /// Index of the next frame (on the common capture clock).
    frame: u64,
    audio: Option<AudioState>,
}

impl SimulcastSource {
    /// A source sending through `peer`, its first frame and audio packet due at `start`.
    pub fn new(peer: PeerId, config: SourceConfig, start: Instant) -> Self {
        let layers = config
            .layers
            .iter()
            .enumerate()
            .map(|(i, _)| LayerState {
                seq: 1000u16.wrapping_mul(i as u16 + 1),
                picture_id: 100 * (i as u16 + 1),
                tl0: 10 * (i as u8 + 1),
                last_key: None,
                requests_seen: 0,
                key_requested: false,
                stats: LayerStats::default(),
            })
            .collect();
        let audio = config.audio.as_ref().map(|_| AudioState {
            seq: 7000,
            ts: 48_000,
            next: start,
            packets: 0,
        });
        Self {
            peer,
            config,
            layers,
            start,
            frame: 0,
            audio,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// Changes the microphone level from now on (-dBov; `None`: silence).
    pub fn set_audio_level(&mut self, level: Option<u8>) {
        if let Some(audio) = self.config.audio.as_mut() {
            audio.level = level;
        }
    }

    /// What encoding `layer` sent so far.
    pub fn layer_stats(&self, layer: usize) -> LayerStats {
        self.layers.get(layer).map(|l| l.stats).unwrap_or_default()
    }

    /// Audio packets sent so far.
    pub fn audio_packets(&self) -> u64 {
        self.audio.as_ref().map_or(0, |a| a.packets)
    }

    fn frame_time(&self, frame: u64) -> Instant {
        let fps = u64::from(self.config.fps.max(1));
        self.start + Duration::from_nanos(frame * 1_000_000_000 / fps)
    }

    /// When [`Self::produce`] next has something to send.
    pub fn next_due(&self) -> Instant {
        let video = self.frame_time(self.frame);
        self.audio.as_ref().map_or(video, |a| a.next.min(video))
    }

    /// Sends through `peer` every frame and audio packet due by `now`, after reading the
    /// keyframe requests `peer` received.
    pub fn produce(&mut self, now: Instant, peer: &mut SimPeer) {
        self.read_key_requests(peer);
        while self.audio.as_ref().is_some_and(|a| a.next <= now) {
            self.send_audio(peer);
        }
        while self.frame_time(self.frame) <= now {
            let at = self.frame_time(self.frame);
            for i in 0..self.layers.len() {
                self.send_frame(at, i, peer);
            }
            self.frame += 1;
        }
    }

    fn read_key_requests(&mut self, peer: &SimPeer) {
        let rtcp = peer.received_rtcp();
        for (spec, layer) in self.config.layers.iter().zip(&mut self.layers) {
            let requests = rtcp.plis.get(&spec.ssrc).copied().unwrap_or(0)
                + rtcp.firs.get(&spec.ssrc).copied().unwrap_or(0);
            if requests > layer.requests_seen {
                layer.requests_seen = requests;
                layer.key_requested = true;
            }
        }
    }

    fn send_audio(&mut self, peer: &mut SimPeer) {
        let (Some(spec), Some(state)) = (self.config.audio.as_ref(), self.audio.as_mut()) else {
            return;
        };
        let level = spec.level.map_or(0x7f, |dbov| 0x80 | (dbov & 0x7f));
        let mut payload = [0u8; AUDIO_PAYLOAD];
        payload[..8].copy_from_slice(&state.packets.to_be_bytes());
        peer.send_rtp(
            state.next,
            spec.ssrc,
            OPUS_PT,
            state.seq,
            state.ts,
            false,
            &[
                (PUB_MID_ID, spec.mid.as_bytes()),
                (PUB_AUDIO_LEVEL_ID, &[level]),
            ],
            &payload,
        )
        .expect("publisher connected");
        state.seq = state.seq.wrapping_add(1);
        state.ts = state.ts.wrapping_add(960);
        state.next += AUDIO_INTERVAL;
        state.packets += 1;
    }

    fn send_frame(&mut self, at: Instant, index: usize, peer: &mut SimPeer) {
        let spec = &self.config.layers[index];
        let delta_bytes = self.config.delta_frame_bytes(spec);
        let ts = (self.frame as u32).wrapping_mul(90_000 / self.config.fps.max(1));
        let state = &mut self.layers[index];
        let since_key = state.last_key.map(|k| at.saturating_duration_since(k));
        let periodic = since_key.is_none_or(|d| d >= self.config.keyframe_interval);
        let requested =
            state.key_requested && since_key.is_none_or(|d| d >= self.config.min_keyframe_gap);
        let key = periodic || requested;
        if key {
            state.last_key = Some(at);
            state.key_requested = false;
            state.stats.keyframes += 1;
            if requested && !periodic {
                state.stats.requested_keyframes += 1;
            }
        }
        if state.stats.frames > 0 {
            state.picture_id = (state.picture_id + 1) & 0x7fff;
            state.tl0 = state.tl0.wrapping_add(1);
        }
        let size = if key {
            (delta_bytes as f64 * self.config.keyframe_factor) as usize
        } else {
            delta_bytes
        };
        let header: &[u8] = if key {
            // Frame tag P = 0 (keyframe), shown; start code; 14-bit width and height.
            &[
                0x50,
                0x42,
                0x00,
                0x9d,
                0x01,
                0x2a,
                spec.width.to_le_bytes()[0],
                spec.width.to_le_bytes()[1] & 0x3f,
                spec.height.to_le_bytes()[0],
                spec.height.to_le_bytes()[1] & 0x3f,
            ]
        } else {
            &[0x31, 0x10, 0x00] // P = 1, shown
        };
        // The frame: header then body, `size` bytes in all, cut into even packets.
        let per_packet = MAX_PAYLOAD - DESCRIPTOR_LEN;
        let size = size.max(header.len() + 1);
        let packets = size.div_ceil(per_packet);
        let mut frame = Vec::with_capacity(size);
        frame.extend_from_slice(header);
        frame.resize(size, 0x5a ^ index as u8);
        let chunk = size.div_ceil(packets);
        for (k, part) in frame.chunks(chunk).enumerate() {
            let mut payload = Vec::with_capacity(DESCRIPTOR_LEN + part.len());
            payload.push(0x80 | if k == 0 { 0x10 } else { 0x00 }); // X, S, PID 0
            payload.push(0x80 | 0x40 | 0x20); // I, L, T
            payload.extend_from_slice(&(0x8000 | state.picture_id).to_be_bytes());
            payload.push(state.tl0);
            payload.push(0x20); // TID 0, Y
            payload.extend_from_slice(part);
            let last = (k + 1) * chunk >= size;
            peer.send_rtp(
                at,
                spec.ssrc,
                VP8_PT,
                state.seq,
                ts,
                last,
                &[
                    (PUB_MID_ID, self.config.mid.as_bytes()),
                    (PUB_RID_ID, spec.rid.as_bytes()),
                ],
                &payload,
            )
            .expect("publisher connected");
            state.seq = state.seq.wrapping_add(1);
            state.stats.packets += 1;
            state.stats.payload_bytes += payload.len() as u64;
        }
        state.stats.frames += 1;
    }
}

/// Runs `net` to `until`, letting every source send what is due on the way (each through its
/// peer, delivered at once to the network).
pub fn run_sources(net: &mut SimNetwork, sources: &mut [SimulcastSource], until: Instant) {
    loop {
        let next = sources.iter().map(SimulcastSource::next_due).min();
        let Some(next) = next.filter(|t| *t <= until) else {
            net.advance_to(until);
            return;
        };
        net.advance_to(next);
        let now = net.now();
        for source in sources.iter_mut() {
            if source.next_due() <= now {
                let peer = net.peer_mut(source.peer).expect("source peer");
                source.produce(now, peer);
            }
        }
    }
}
