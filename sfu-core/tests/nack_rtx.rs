//! NACK and RTX recovery on a simulated network (virtual time, seeded loss): a publisher
//! sends VP8 through the worker to a subscriber that asks for what it misses the way a browser
//! does, and the worker repairs each leg — from the consumer's history toward the subscriber
//! (RFC 4588 RTX, or the media SSRC without RTX), and by NACKing the publisher for what was
//! lost on the way in.
//!
//! Loss is either seeded random ([`SimNetwork::add_link_loss`], or a tap rule with its own
//! [`SimRng`]) or targeted by a tap rule that sees every RTP datagram's plaintext header
//! (SSRC, sequence number) when it is sent. Reports are printed; run with `--nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{CONNECT_LIMIT, WORKER, addr, peer_addr};
use sfu_core::rtp_parameters::extension_uri;
use sfu_core::seq_manager::extend_sequence;
use sfu_core::sim_peer::{
    Datagram, NackConfig, PeerId, ReceivedRtp, RtxConfig, SimNetwork, SimPeer, SimRng,
};
use sfu_core::{
    DropReason, RtcpFeedback, RtpCapabilities, RtpCodecParameters, RtpEncodingParameters,
    RtpHeaderExtension, RtpParameters,
};

/// The publisher's VP8 SSRC and its RTX SSRC.
const PUB_SSRC: u32 = 0x2222_0002;
const PUB_RTX_SSRC: u32 = 0x2222_0003;
/// Publisher payload types (VP8, its RTX) and the subscriber's (different on purpose).
const PUB_PT: u8 = 96;
const PUB_RTX_PT: u8 = 97;
const SUB_PT: u8 = 100;
const SUB_RTX_PT: u8 = 101;
/// The mid extension id on each leg.
const PUB_MID_ID: u8 = 4;
const SUB_MID_ID: u8 = 9;
/// The publisher's first sequence number: close to the wrap, so that every run crosses it.
const FIRST_INPUT_SEQ: u16 = 65_300;
/// 30 frames per second.
const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
/// What the worker does (`consumer.rs`, `retransmission_buffer.rs`, `worker.rs`).
const WORKER_HISTORY_AGE: Duration = Duration::from_secs(1);
const WORKER_MAX_RESENDS: usize = 3;
const WORKER_NACK_POLL: Duration = Duration::from_millis(20);

fn vp8(pt: u8, rtx: Option<u8>) -> RtpCodecParameters {
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
        rtx_payload_type: rtx,
    }
}

fn mid_ext(id: u8) -> RtpHeaderExtension {
    RtpHeaderExtension {
        uri: extension_uri::MID.into(),
        id,
    }
}

/// How the worker recognises the publisher's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// Media and RTX SSRC declared in the encoding.
    DeclaredSsrcs,
    /// Nothing declared: both SSRCs are learned from the mid (`Producer::bind_stream`).
    MidOnly,
}

#[derive(Debug, Clone, Copy)]
struct Opts {
    upstream: Upstream,
    /// The subscriber's VP8 capability carries an RTX payload type.
    subscriber_rtx: bool,
    /// One-way delay of every datagram.
    latency: Duration,
    /// The subscriber runs its browser-like NACK generator.
    subscriber_nacks: bool,
    /// The publisher answers NACKs with RTX by itself.
    publisher_answers: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            upstream: Upstream::DeclaredSsrcs,
            subscriber_rtx: true,
            latency: Duration::from_millis(20),
            subscriber_nacks: true,
            publisher_answers: true,
        }
    }
}

/// Which hop a tapped RTP datagram is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    /// Publisher → worker.
    Up,
    /// Worker → subscriber.
    Down,
}

/// The plaintext header fields of an SRTP datagram, as the tap sees it when it is sent.
#[derive(Debug, Clone, Copy)]
struct Meta {
    leg: Leg,
    ssrc: u32,
    seq: u16,
    #[allow(dead_code)]
    pt: u8,
    /// Not newer than the highest sequence number already sent on this leg and SSRC.
    late: bool,
}

type Rule = Box<dyn FnMut(&Meta) -> bool + Send>;

/// Everything the tap saw, and the rules that drop RTP (targeted or seeded-random loss).
#[derive(Default)]
struct TapLog {
    /// Every RTP datagram on either leg, in sending order, and whether a rule dropped it.
    rtp: Vec<(Meta, bool)>,
    highest: HashMap<(bool, u32), u64>,
    up_rule: Option<Rule>,
    down_rule: Option<Rule>,
}

impl TapLog {
    fn on_leg(&self, leg: Leg) -> impl Iterator<Item = &(Meta, bool)> + '_ {
        self.rtp.iter().filter(move |(m, _)| m.leg == leg)
    }
}

fn rtp_meta(d: &Datagram<'_>) -> Option<(u32, u16, u8)> {
    let b = d.data;
    if !(128..=191).contains(b.first()?) || (192..=223).contains(b.get(1)?) || b.len() < 12 {
        return None;
    }
    Some((
        u32::from_be_bytes(b[8..12].try_into().ok()?),
        u16::from_be_bytes([b[2], b[3]]),
        b[1] & 0x7f,
    ))
}

/// One VP8 packet as the publisher sent it.
#[derive(Debug, Clone)]
struct Sent {
    seq: u16,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
    at: Instant,
}

/// A publisher sending VP8 through the worker to one subscriber.
struct Rig {
    net: SimNetwork,
    publisher: PeerId,
    subscriber: PeerId,
    media_ssrc: u32,
    rtx: Option<(u32, u8)>,
    tap: Arc<Mutex<TapLog>>,
    sent: Vec<Sent>,
    by_input: HashMap<u16, usize>,
    rng: SimRng,
    frame: u32,
    stream_start: Option<Instant>,
    latency: Duration,
}

impl Rig {
    fn new(opts: Opts, seed: u64) -> Self {
        let mut net = SimNetwork::new(addr(WORKER)).unwrap();
        net.set_latency(opts.latency);
        let router = net.worker_mut().create_router();
        let publisher = net.add_peer(peer_addr(0)).unwrap();
        let subscriber = net.add_peer(peer_addr(1)).unwrap();
        let pub_info = net.create_transport(publisher, router).unwrap();
        let sub_info = net.create_transport(subscriber, router).unwrap();
        let encodings = match opts.upstream {
            Upstream::DeclaredSsrcs => vec![RtpEncodingParameters {
                ssrc: Some(PUB_SSRC),
                rtx_ssrc: Some(PUB_RTX_SSRC),
                ..Default::default()
            }],
            Upstream::MidOnly => vec![],
        };
        let published = RtpParameters {
            mid: Some("1".into()),
            codecs: vec![vp8(PUB_PT, Some(PUB_RTX_PT))],
            header_extensions: vec![mid_ext(PUB_MID_ID)],
            encodings,
            cname: Some("publisher".into()),
        };
        let producer = net.worker_mut().produce(pub_info.id, published).unwrap();
        let caps = RtpCapabilities {
            codecs: vec![vp8(SUB_PT, opts.subscriber_rtx.then_some(SUB_RTX_PT))],
            header_extensions: vec![mid_ext(SUB_MID_ID)],
        };
        let now = net.now();
        let (_consumer, params) = net
            .worker_mut()
            .consume(now, sub_info.id, producer, &caps, Some("1".into()))
            .unwrap();
        let media_ssrc = params.encodings[0].ssrc.unwrap();
        let rtx = params.encodings[0]
            .rtx_ssrc
            .map(|ssrc| (ssrc, params.codecs[0].rtx_payload_type.unwrap()));
        assert_eq!(
            rtx.is_some(),
            opts.subscriber_rtx,
            "RTX is in the consumer's parameters exactly when negotiated: {params:?}"
        );
        net.connect(publisher, &pub_info).unwrap();
        net.connect(subscriber, &sub_info).unwrap();
        assert!(
            net.run_until_connected(&[publisher, subscriber], CONNECT_LIMIT),
            "the room did not connect: {:?}",
            net.events()
        );
        let now = net.now();
        if opts.subscriber_nacks {
            let config = NackConfig {
                // Not again before a repair could have come back.
                rtt: 2 * opts.latency + Duration::from_millis(10),
                ..NackConfig::new(media_ssrc, rtx)
            };
            net.peer_mut(subscriber).unwrap().enable_nack(now, config);
        }
        net.peer_mut(publisher).unwrap().enable_rtx(RtxConfig {
            answer_nacks: opts.publisher_answers,
            ..RtxConfig::new(PUB_SSRC, PUB_RTX_SSRC, PUB_PT, PUB_RTX_PT)
        });
        let tap = Arc::new(Mutex::new(TapLog::default()));
        let (worker, pub_addr, sub_addr) = (net.worker_addr(), peer_addr(0), peer_addr(1));
        let log = tap.clone();
        net.set_drop_filter(Some(Box::new(move |d: &Datagram<'_>| {
            tap_filter(&log, worker, pub_addr, sub_addr, d)
        })));
        Self {
            net,
            publisher,
            subscriber,
            media_ssrc,
            rtx,
            tap,
            sent: Vec::new(),
            by_input: HashMap::new(),
            rng: SimRng::new(seed ^ 0x5eed),
            frame: 0,
            stream_start: None,
            latency: opts.latency,
        }
    }

    fn sub(&self) -> &SimPeer {
        self.net.peer(self.subscriber).unwrap()
    }

    fn sub_mut(&mut self) -> &mut SimPeer {
        self.net.peer_mut(self.subscriber).unwrap()
    }

    fn publ(&self) -> &SimPeer {
        self.net.peer(self.publisher).unwrap()
    }

    fn publ_mut(&mut self) -> &mut SimPeer {
        self.net.peer_mut(self.publisher).unwrap()
    }

    fn set_up_rule(&self, rule: Option<Rule>) {
        self.tap.lock().unwrap().up_rule = rule;
    }

    fn set_down_rule(&self, rule: Option<Rule>) {
        self.tap.lock().unwrap().down_rule = rule;
    }

    /// Sends one frame now: 3–6 packets, 12 for every 60th (a keyframe), marker on the last.
    /// Each payload starts with the input sequence number, then seeded random bytes.
    fn send_frame(&mut self) {
        let now = self.net.now();
        let packets = if self.frame.is_multiple_of(60) {
            12
        } else {
            3 + self.rng.below(4) as usize
        };
        let ts = 10_000u32.wrapping_add(self.frame.wrapping_mul(3000));
        for k in 0..packets {
            let seq = FIRST_INPUT_SEQ.wrapping_add(self.sent.len() as u16);
            let mut payload = vec![0u8; 200 + self.rng.below(900) as usize];
            payload[..2].copy_from_slice(&seq.to_be_bytes());
            self.rng.fill(&mut payload[2..]);
            let marker = k + 1 == packets;
            self.publ_mut()
                .send_rtp(
                    now,
                    PUB_SSRC,
                    PUB_PT,
                    seq,
                    ts,
                    marker,
                    &[(PUB_MID_ID, b"1")],
                    &payload,
                )
                .unwrap();
            self.by_input.insert(seq, self.sent.len());
            self.sent.push(Sent {
                seq,
                ts,
                marker,
                payload,
                at: now,
            });
        }
        self.frame += 1;
    }

    /// Sends `frames` frames at 30 fps, running the network in between.
    fn stream(&mut self, frames: u32) {
        let start = *self.stream_start.get_or_insert(self.net.now());
        for _ in 0..frames {
            self.send_frame();
            self.net.advance_to(start + FRAME_INTERVAL * self.frame);
        }
    }

    fn idle(&mut self, d: Duration) {
        self.net.advance(d);
    }

    fn sent_at_input(&self, seq: u16) -> &Sent {
        &self.sent[self.by_input[&seq]]
    }

    /// Output minus input sequence number (constant: no source switch), from the first media
    /// packet the subscriber received.
    fn offset(&self) -> u16 {
        let first = self
            .sub()
            .received_rtp_for(self.media_ssrc)
            .next()
            .expect("the subscriber received media");
        first
            .sequence_number
            .wrapping_sub(u16::from_be_bytes([first.payload[0], first.payload[1]]))
    }

    fn output_seq(&self, input: u16) -> u16 {
        input.wrapping_add(self.offset())
    }

    /// The media packets received on the consumer's SSRC for output `seq`.
    fn received_media(&self, seq: u16) -> Vec<&ReceivedRtp> {
        self.sub()
            .received_rtp_for(self.media_ssrc)
            .filter(|p| p.sequence_number == seq)
            .collect()
    }

    /// The RTX packets received that repair output `seq`.
    fn received_rtx(&self, seq: u16) -> Vec<&ReceivedRtp> {
        let Some((rtx_ssrc, _)) = self.rtx else {
            return Vec::new();
        };
        self.sub()
            .received_rtp_for(rtx_ssrc)
            .filter(|p| p.payload.get(..2) == Some(&seq.to_be_bytes()[..]))
            .collect()
    }

    /// Checks a packet the subscriber got (an original or a repair) against what the publisher
    /// sent as input `input`: payload byte-identical, timestamp on the consumer's line, marker,
    /// and the subscriber's mid. `payload` is the media payload (RTX's OSN already removed).
    fn check_content(&self, what: &str, p: &ReceivedRtp, payload: &[u8]) -> Result<u16, String> {
        let input = u16::from_be_bytes(
            payload
                .get(..2)
                .ok_or_else(|| format!("{what}: empty payload"))?
                .try_into()
                .unwrap(),
        );
        let Some(&i) = self.by_input.get(&input) else {
            return Err(format!("{what}: payload names input {input}, never sent"));
        };
        let sent = &self.sent[i];
        let first = self.sub().received_rtp_for(self.media_ssrc).next().unwrap();
        let first_sent =
            self.sent_at_input(u16::from_be_bytes([first.payload[0], first.payload[1]]));
        let expected_ts = first
            .timestamp
            .wrapping_add(sent.ts.wrapping_sub(first_sent.ts));
        if payload != sent.payload.as_slice() {
            return Err(format!(
                "{what}: payload of input {input} differs ({} bytes received, {} sent; first bytes {:02x?} vs {:02x?})",
                payload.len(),
                sent.payload.len(),
                &payload[..payload.len().min(6)],
                &sent.payload[..6]
            ));
        }
        if p.timestamp != expected_ts || p.marker != sent.marker {
            return Err(format!(
                "{what}: input {input} has ts {} marker {} (expected {expected_ts}, {})",
                p.timestamp, p.marker, sent.marker
            ));
        }
        if p.extension(SUB_MID_ID) != Some(b"1") {
            return Err(format!("{what}: input {input} lacks the subscriber's mid"));
        }
        Ok(input)
    }

    /// What happened on the worker → subscriber leg.
    fn downstream_report(&self) -> DownReport {
        let tap = self.tap.lock().unwrap();
        let rtx_ssrc = self.rtx.map(|(s, _)| s);
        // The worker's first transmission of each media sequence number, extended.
        let mut anchor: Option<u64> = None;
        let mut sent = BTreeSet::new();
        let mut rtx_sent_by_worker = 0;
        let mut media_resent_by_worker = 0;
        let mut rtx_seqs = Vec::new();
        for (m, _) in tap.on_leg(Leg::Down) {
            if Some(m.ssrc) == rtx_ssrc {
                rtx_sent_by_worker += 1;
                rtx_seqs.push(m.seq);
            } else if m.ssrc == self.media_ssrc {
                let ext = match anchor {
                    None => {
                        let e = 0x1_0000 | u64::from(m.seq);
                        anchor = Some(e);
                        e
                    }
                    Some(_) => extend_sequence(*sent.last().unwrap(), m.seq),
                };
                if !sent.insert(ext) {
                    media_resent_by_worker += 1;
                }
            }
        }
        drop(tap);
        let anchor = anchor.expect("the worker forwarded media");
        // The subscriber's view: originals arrive in order (the network does not reorder),
        // so a media packet that is not a new highest is a retransmission.
        let mut highest: Option<u64> = None;
        let mut originals = BTreeSet::new();
        let mut recovered_rtx = BTreeSet::new();
        let mut recovered_media = BTreeSet::new();
        let mut duplicates = 0;
        let mut bad = Vec::new();
        for p in self.sub().received_rtp() {
            let base = highest.unwrap_or(anchor);
            if p.ssrc == self.media_ssrc {
                let ext = extend_sequence(base, p.sequence_number);
                if highest.is_none_or(|h| ext > h) {
                    highest = Some(ext);
                    originals.insert(ext);
                } else if originals.contains(&ext)
                    || recovered_media.contains(&ext)
                    || recovered_rtx.contains(&ext)
                {
                    duplicates += 1;
                } else {
                    recovered_media.insert(ext);
                    match self.check_content("media retransmission", p, &p.payload) {
                        Ok(input) if self.output_seq(input) != p.sequence_number => {
                            bad.push(format!(
                                "media retransmission {} carries input {input}, whose output number is {}",
                                p.sequence_number,
                                self.output_seq(input)
                            ));
                        }
                        Ok(_) => {}
                        Err(e) => bad.push(e),
                    }
                }
            } else if Some(p.ssrc) == rtx_ssrc {
                if p.payload_type != SUB_RTX_PT {
                    bad.push(format!("RTX with payload type {}", p.payload_type));
                }
                let Some(osn) = p.payload.get(..2) else {
                    bad.push("RTX without an original sequence number".into());
                    continue;
                };
                let ext = extend_sequence(base, u16::from_be_bytes([osn[0], osn[1]]));
                if originals.contains(&ext)
                    || recovered_media.contains(&ext)
                    || recovered_rtx.contains(&ext)
                {
                    duplicates += 1;
                } else {
                    recovered_rtx.insert(ext);
                    match self.check_content("RTX", p, &p.payload[2..]) {
                        Ok(input) if self.output_seq(input) != osn_of(p) => bad.push(format!(
                            "RTX OSN {} carries input {input}, whose output number is {}",
                            osn_of(p),
                            self.output_seq(input)
                        )),
                        Ok(_) => {}
                        Err(e) => bad.push(e),
                    }
                }
            } else {
                bad.push(format!("a packet on unknown SSRC {:#x}", p.ssrc));
            }
        }
        let last = highest.unwrap_or(anchor);
        // A loss after the last packet received cannot be seen by the subscriber.
        let lost: BTreeSet<u64> = sent
            .iter()
            .copied()
            .filter(|e| *e <= last && !originals.contains(e))
            .collect();
        let unrecovered: Vec<u16> = lost
            .iter()
            .filter(|e| !recovered_rtx.contains(e) && !recovered_media.contains(e))
            .map(|e| *e as u16)
            .collect();
        let rtx_seq_gaps = rtx_seqs
            .windows(2)
            .filter(|w| w[1] != w[0].wrapping_add(1))
            .count();
        DownReport {
            sent: sent.len(),
            lost: lost.len(),
            recovered_rtx: recovered_rtx.intersection(&lost).count(),
            recovered_media: recovered_media.intersection(&lost).count(),
            repairs_of_unlost: recovered_rtx.difference(&lost).count()
                + recovered_media.difference(&lost).count(),
            rtx_sent_by_worker,
            media_resent_by_worker,
            rtx_seq_gaps,
            duplicates,
            unrecovered,
            bad,
        }
    }
}

fn osn_of(p: &ReceivedRtp) -> u16 {
    u16::from_be_bytes([p.payload[0], p.payload[1]])
}

fn tap_filter(
    log: &Mutex<TapLog>,
    worker: SocketAddr,
    publisher: SocketAddr,
    subscriber: SocketAddr,
    d: &Datagram<'_>,
) -> bool {
    let leg = if d.from == publisher && d.to == worker {
        Leg::Up
    } else if d.from == worker && d.to == subscriber {
        Leg::Down
    } else {
        return false;
    };
    let Some((ssrc, seq, pt)) = rtp_meta(d) else {
        return false;
    };
    let mut log = log.lock().unwrap();
    let key = (leg == Leg::Up, ssrc);
    let late = match log.highest.get(&key) {
        Some(&h) => {
            let ext = extend_sequence(h, seq);
            if ext > h {
                log.highest.insert(key, ext);
                false
            } else {
                true
            }
        }
        None => {
            log.highest.insert(key, 0x1_0000 | u64::from(seq));
            false
        }
    };
    let meta = Meta {
        leg,
        ssrc,
        seq,
        pt,
        late,
    };
    let rule = match leg {
        Leg::Up => log.up_rule.as_mut(),
        Leg::Down => log.down_rule.as_mut(),
    };
    let dropped = rule.is_some_and(|r| r(&meta));
    log.rtp.push((meta, dropped));
    dropped
}

/// Seeded random loss of `probability` for the datagrams a tap rule sees.
fn random_loss(probability: f64, seed: u64) -> Rule {
    let mut rng = SimRng::new(seed);
    Box::new(move |_| rng.next_f64() < probability)
}

#[derive(Debug)]
struct DownReport {
    /// Media packets the worker sent the subscriber (first transmissions).
    sent: usize,
    /// Of those, lost on the way (and noticeable: before the last one received).
    lost: usize,
    recovered_rtx: usize,
    recovered_media: usize,
    /// Repairs of packets that were not lost (spurious).
    repairs_of_unlost: usize,
    rtx_sent_by_worker: usize,
    /// Media packets the worker sent again on the media SSRC.
    media_resent_by_worker: usize,
    /// Breaks in the RTX stream's own sequence numbering.
    rtx_seq_gaps: usize,
    /// Packets received for a sequence number already received.
    duplicates: usize,
    unrecovered: Vec<u16>,
    /// Content mismatches.
    bad: Vec<String>,
}

impl DownReport {
    fn recovered(&self) -> usize {
        self.recovered_rtx + self.recovered_media
    }

    fn ratio(&self) -> f64 {
        self.recovered() as f64 / self.lost.max(1) as f64
    }
}

// ---------------------------------------------------------------------------------------------
// 1a. The subscriber's leg.
// ---------------------------------------------------------------------------------------------

/// 20 s of VP8 at 30 fps with 5 % random loss on worker → subscriber datagrams only, for one
/// seed; returns the report.
fn subscriber_leg_run(seed: u64, subscriber_rtx: bool) -> (Rig, DownReport) {
    let mut rig = Rig::new(
        Opts {
            subscriber_rtx,
            ..Opts::default()
        },
        seed,
    );
    let (worker, sub) = (rig.net.worker_addr(), rig.sub().addr());
    rig.net.add_link_loss(Some(worker), Some(sub), 0.05, seed);
    rig.stream(600);
    rig.idle(Duration::from_secs(1));
    let report = rig.downstream_report();
    let nack = rig.sub().nack_stats().unwrap();
    println!(
        "subscriber leg, seed {seed}, {}: sent {} lost {} recovered {} ({:.1} %: {} by RTX, {} on the media SSRC) | \
         worker sent {} RTX + {} media resends | subscriber NACKs {} packets / {} items, gave up {}, duplicates {} | \
         network lost {} datagrams (all kinds)",
        if subscriber_rtx { "RTX" } else { "no RTX" },
        report.sent,
        report.lost,
        report.recovered(),
        100.0 * report.ratio(),
        report.recovered_rtx,
        report.recovered_media,
        report.rtx_sent_by_worker,
        report.media_resent_by_worker,
        nack.nack_packets,
        nack.nack_items,
        nack.given_up,
        report.duplicates,
        rig.net.stats().lost,
    );
    (rig, report)
}

#[test]
fn subscriber_leg_loss_is_repaired_over_rtx_for_several_seeds() {
    for seed in [1u64, 2, 3, 7, 42] {
        let (rig, r) = subscriber_leg_run(seed, true);
        let (rtx_ssrc, _) = rig.rtx.unwrap();
        assert!(r.sent > 2400, "seed {seed}: {r:?}");
        // 5 % of ~2700: the loss really happened (and was not, say, applied to both legs).
        assert!(
            r.lost * 100 > r.sent * 3 && r.lost * 100 < r.sent * 8,
            "seed {seed}: lost {} of {}",
            r.lost,
            r.sent
        );
        assert!(r.bad.is_empty(), "seed {seed}: {:?}", r.bad);
        assert!(
            r.ratio() >= 0.95,
            "seed {seed}: only {} of {} lost packets recovered; unrecovered {:?}",
            r.recovered(),
            r.lost,
            r.unrecovered
        );
        assert_eq!(
            r.recovered_media, 0,
            "seed {seed}: with RTX, repairs come on RTX"
        );
        assert_eq!(r.media_resent_by_worker, 0, "seed {seed}");
        assert_eq!(
            r.repairs_of_unlost, 0,
            "seed {seed}: nothing repaired that was not lost"
        );
        assert_eq!(r.duplicates, 0, "seed {seed}: no repair arrived twice");
        // Every retransmission is accounted for: the lost ones plus their lost repairs.
        assert!(
            r.rtx_sent_by_worker >= r.recovered_rtx && r.rtx_sent_by_worker <= r.lost * 3 / 2 + 5,
            "seed {seed}: {} RTX for {} lost",
            r.rtx_sent_by_worker,
            r.lost
        );
        assert_eq!(
            r.rtx_seq_gaps, 0,
            "seed {seed}: the RTX stream numbers itself contiguously"
        );
        let nack = rig.sub().nack_stats().unwrap();
        assert_eq!(nack.recovered_rtx as usize, r.recovered_rtx, "seed {seed}");
        assert_eq!(rig.sub().stats().srtp_errors, 0, "seed {seed}");
        assert!(
            rig.sub()
                .received_rtp_for(rtx_ssrc)
                .all(|p| p.payload_type == SUB_RTX_PT)
        );
        assert_eq!(
            rig.net.worker().drops().total(),
            0,
            "seed {seed}: {:?}",
            rig.net.worker().drops().nonzero().collect::<Vec<_>>()
        );
    }
}

#[test]
fn one_lost_packet_comes_back_as_exact_rfc4588_rtx() {
    let mut rig = Rig::new(Opts::default(), 1);
    // Lose the 40th media packet the worker sends the subscriber, once.
    let media = rig.media_ssrc;
    let mut n = 0;
    rig.set_down_rule(Some(Box::new(move |m: &Meta| {
        if m.ssrc == media {
            n += 1;
            return n == 40;
        }
        false
    })));
    rig.stream(30);
    rig.idle(Duration::from_millis(200));
    let tap = rig.tap.lock().unwrap();
    let lost = tap
        .rtp
        .iter()
        .find(|(_, dropped)| *dropped)
        .map(|(m, _)| m.seq)
        .unwrap();
    drop(tap);
    let (rtx_ssrc, rtx_pt) = rig.rtx.unwrap();
    assert_eq!(rtx_pt, SUB_RTX_PT);
    assert!(rig.received_media(lost).is_empty());
    let repairs = rig.received_rtx(lost);
    assert_eq!(
        repairs.len(),
        1,
        "one repair for {lost}: {:?}",
        rig.sub().nack_stats()
    );
    let rtx = repairs[0];
    assert_eq!((rtx.ssrc, rtx.payload_type), (rtx_ssrc, SUB_RTX_PT));
    assert_eq!(osn_of(rtx), lost, "original sequence number first");
    let input = rig.check_content("RTX", rtx, &rtx.payload[2..]).unwrap();
    assert_eq!(rig.output_seq(input), lost);
    // It came one round trip after the next packet revealed the gap.
    let next = rig.received_media(lost.wrapping_add(1))[0];
    let rtt = 2 * rig.latency;
    assert!(
        rtx.at >= next.at + rtt && rtx.at <= next.at + rtt + Duration::from_millis(25),
        "repair {:?} after the gap was seen",
        rtx.at - next.at
    );
}

#[test]
fn without_rtx_retransmissions_reuse_the_media_ssrc_and_sequence_number() {
    for seed in [1u64, 5] {
        let (rig, r) = subscriber_leg_run(seed, false);
        assert!(rig.rtx.is_none());
        assert!(r.lost * 100 > r.sent * 3, "seed {seed}: {r:?}");
        assert!(r.bad.is_empty(), "seed {seed}: {:?}", r.bad);
        assert_eq!(r.rtx_sent_by_worker, 0);
        assert!(
            rig.sub()
                .received_rtp()
                .iter()
                .all(|p| p.ssrc == rig.media_ssrc),
            "seed {seed}: everything on the media SSRC"
        );
        assert!(
            r.ratio() >= 0.95,
            "seed {seed}: only {} of {} recovered; unrecovered {:?}",
            r.recovered(),
            r.lost,
            r.unrecovered
        );
        assert_eq!(r.recovered_media, r.recovered(), "seed {seed}");
        assert_eq!(r.repairs_of_unlost, 0, "seed {seed}");
        assert_eq!(r.duplicates, 0, "seed {seed}");
        assert!(r.media_resent_by_worker >= r.recovered_media, "seed {seed}");
        // A resend reuses the original index, which the subscriber never accepted: no replay.
        assert_eq!(rig.sub().stats().srtp_errors, 0, "seed {seed}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1b. The publisher's leg.
// ---------------------------------------------------------------------------------------------

/// Drops the first transmission of these input sequence numbers on the way to the worker.
fn drop_inputs(inputs: &[u16]) -> Rule {
    let mut pending: BTreeSet<u16> = inputs.iter().copied().collect();
    Box::new(move |m: &Meta| m.ssrc == PUB_SSRC && pending.remove(&m.seq))
}

/// What the subscriber got per input sequence number (via the constant offset), and checks
/// that every packet is there exactly once with its content.
fn check_every_input_arrived_once(rig: &Rig, context: &str) {
    let offset = rig.offset();
    let mut count: BTreeMap<u16, usize> = BTreeMap::new();
    for p in rig.sub().received_rtp_for(rig.media_ssrc) {
        let input = rig
            .check_content(context, p, &p.payload)
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(
            p.sequence_number,
            input.wrapping_add(offset),
            "{context}: input {input} under the wrong output number"
        );
        *count.entry(input).or_default() += 1;
    }
    let missing: Vec<u16> = rig
        .sent
        .iter()
        .map(|s| s.seq)
        .filter(|s| !count.contains_key(s))
        .collect();
    let twice: Vec<u16> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    assert!(
        missing.is_empty(),
        "{context}: never reached the subscriber: {missing:?}"
    );
    assert!(
        twice.is_empty(),
        "{context}: reached the subscriber twice: {twice:?}"
    );
}

#[test]
fn publisher_leg_losses_are_nacked_exactly_and_repaired_by_publisher_rtx() {
    for upstream in [Upstream::DeclaredSsrcs, Upstream::MidOnly] {
        let mut rig = Rig::new(
            Opts {
                upstream,
                subscriber_nacks: false,
                ..Opts::default()
            },
            3,
        );
        // Single losses, a burst of three, the wrap (65_535 → 0), a late one.
        let lost: Vec<u16> = [5u16, 40, 41, 42, 235, 236, 237, 240, 300]
            .iter()
            .map(|i| FIRST_INPUT_SEQ.wrapping_add(*i))
            .collect();
        rig.set_up_rule(Some(drop_inputs(&lost)));
        rig.stream(90);
        assert!(rig.sent.len() > 320);
        rig.idle(Duration::from_millis(1500));
        let context = format!("{upstream:?}");
        let nacked: Vec<u16> = rig
            .publ()
            .received_rtcp()
            .nacked_sequences(PUB_SSRC)
            .collect();
        let nacked_set: BTreeSet<u16> = nacked.iter().copied().collect();
        let lost_set: BTreeSet<u16> = lost.iter().copied().collect();
        println!(
            "publisher leg, {upstream:?}: lost {lost:?}, worker NACKed {nacked:?}, publisher sent {} RTX, drops {:?}",
            rig.publ().rtx_stats().unwrap().sent,
            rig.net.worker().drops().nonzero().collect::<Vec<_>>()
        );
        assert_eq!(
            nacked_set, lost_set,
            "{context}: the worker NACKs exactly what it lost"
        );
        assert!(
            rig.publ()
                .received_rtcp()
                .nack_requests
                .iter()
                .all(|r| r.media_ssrc == PUB_SSRC),
            "{context}: NACKs name the media SSRC"
        );
        check_every_input_arrived_once(&rig, &context);
        // The repairs were forwarded when they came, after later packets, under their own
        // numbers (checked above), not appended at the end of the line.
        for &input in &lost {
            let successor = (1..)
                .map(|i| input.wrapping_add(i))
                .find(|s| !lost.contains(s))
                .unwrap();
            let repaired = rig.received_media(rig.output_seq(input))[0].at;
            let next = rig.received_media(rig.output_seq(successor))[0].at;
            assert!(
                repaired > next,
                "{context}: {input} repaired before {successor}, which revealed the gap, arrived?"
            );
        }
        assert_eq!(
            rig.net.worker().drops().get(DropReason::RtxDuplicate),
            0,
            "{context}"
        );
        assert_eq!(
            rig.net.worker().drops().get(DropReason::RtpUnknownSsrc),
            0,
            "{context}"
        );
        assert_eq!(rig.sub().stats().srtp_errors, 0, "{context}");
    }
}

#[test]
fn out_of_order_publisher_rtx_is_forwarded_and_duplicates_are_dropped_and_counted() {
    for upstream in [Upstream::DeclaredSsrcs, Upstream::MidOnly] {
        let context = format!("{upstream:?}");
        let mut rig = Rig::new(
            Opts {
                upstream,
                subscriber_nacks: false,
                publisher_answers: false,
                ..Opts::default()
            },
            4,
        );
        let input = |i: u16| FIRST_INPUT_SEQ.wrapping_add(i);
        rig.set_up_rule(Some(drop_inputs(&[input(20), input(21), input(22)])));
        rig.stream(15);
        rig.idle(Duration::from_millis(100)); // everything else has arrived
        let before_repairs = rig.sub().received_rtp().len();
        let now = rig.net.now();
        // Repairs in reverse order, then a duplicate repair and an unsolicited one.
        for i in [22u16, 20, 21, 21, 30] {
            assert!(rig.publ_mut().send_rtx(now, input(i)).unwrap());
        }
        rig.idle(Duration::from_millis(100));
        let drops = rig.net.worker().drops();
        println!(
            "publisher RTX, {upstream:?}: drops {:?}",
            drops.nonzero().collect::<Vec<_>>()
        );
        assert_eq!(
            drops.get(DropReason::RtxDuplicate),
            2,
            "{context}: the second repair of 21 and the repair of 30 (never lost)"
        );
        let repairs: Vec<u16> = rig.sub().received_rtp()[before_repairs..]
            .iter()
            .filter(|p| p.ssrc == rig.media_ssrc)
            .map(|p| p.sequence_number)
            .collect();
        let expected: Vec<u16> = [22u16, 20, 21]
            .iter()
            .map(|i| rig.output_seq(input(*i)))
            .collect();
        assert_eq!(
            repairs, expected,
            "{context}: forwarded as they came, under their own numbers"
        );
        check_every_input_arrived_once(&rig, &context);
    }
}

/// The worker polls for lost incoming packets every 20 ms (`NACK_POLL_INTERVAL`); a NACK
/// should reach the publisher within that plus a round trip after the gap shows.
#[test]
fn upstream_nacks_leave_within_the_nack_poll_interval() {
    let mut rig = Rig::new(
        Opts {
            subscriber_nacks: false,
            latency: Duration::from_millis(10),
            ..Opts::default()
        },
        5,
    );
    let lost: Vec<u16> = [100u16, 160, 230, 290, 350]
        .iter()
        .map(|i| FIRST_INPUT_SEQ.wrapping_add(*i))
        .collect();
    rig.set_up_rule(Some(drop_inputs(&lost)));
    rig.stream(120);
    rig.idle(Duration::from_millis(1500));
    let requests = rig.publ().received_rtcp().nack_requests.clone();
    let mut delays = Vec::new();
    for &seq in &lost {
        // The gap shows when the next packet reaches the worker.
        let revealed = rig.sent_at_input(seq.wrapping_add(1)).at + rig.latency;
        let first_nack = requests
            .iter()
            .find(|r| r.sequences.contains(&seq))
            .map(|r| r.at)
            .unwrap_or_else(|| panic!("{seq} never NACKed"));
        delays.push(first_nack - revealed);
    }
    println!(
        "upstream NACK delay after the gap showed at the worker (incl. one-way latency back): {delays:?}"
    );
    let limit = WORKER_NACK_POLL + rig.latency + Duration::from_millis(2);
    assert!(
        delays.iter().all(|d| *d <= limit),
        "NACKs reached the publisher {delays:?} after the gap showed (limit {limit:?}): \
         Worker::poll_timeout does not include next_nack_poll, so send_nacks runs only when \
         another timer (RTCP reports, once a second) wakes the worker"
    );
}

/// 5 % random loss on everything the publisher sends (media and its RTX repairs).
#[test]
fn publisher_leg_random_loss_is_recovered_in_time() {
    let mut failures = Vec::new();
    for seed in [1u64, 2, 3] {
        let mut rig = Rig::new(
            Opts {
                subscriber_nacks: false,
                ..Opts::default()
            },
            seed,
        );
        rig.set_up_rule(Some(random_loss(0.05, seed)));
        rig.stream(600);
        rig.idle(Duration::from_millis(1500));
        let tap = rig.tap.lock().unwrap();
        let lost: BTreeSet<u16> = tap
            .on_leg(Leg::Up)
            .filter(|(m, dropped)| *dropped && m.ssrc == PUB_SSRC && !m.late)
            .map(|(m, _)| m.seq)
            .collect();
        let rtx_lost = tap
            .on_leg(Leg::Up)
            .filter(|(m, dropped)| *dropped && m.ssrc == PUB_RTX_SSRC)
            .count();
        drop(tap);
        let nacked: BTreeSet<u16> = rig
            .publ()
            .received_rtcp()
            .nacked_sequences(PUB_SSRC)
            .collect();
        let spurious: Vec<&u16> = nacked.difference(&lost).collect();
        let offset = rig.offset();
        let mut delays: Vec<Duration> = Vec::new();
        for &input in &lost {
            if let Some(p) = rig.received_media(input.wrapping_add(offset)).first() {
                delays.push(p.at - rig.sent_at_input(input).at);
            }
        }
        delays.sort();
        let in_time = delays
            .iter()
            .filter(|d| **d <= Duration::from_millis(250))
            .count();
        let pct = |n: usize| 100.0 * n as f64 / lost.len().max(1) as f64;
        println!(
            "publisher leg 5 %, seed {seed}: sent {} lost {} ({} RTX lost too) NACKed {} ({} NACK packets), recovered {} ({:.1} %), \
             within 250 ms {} ({:.1} %); repair delay median {:?}, max {:?}",
            rig.sent.len(),
            lost.len(),
            rtx_lost,
            nacked.len(),
            rig.publ().received_rtcp().nack_requests.len(),
            delays.len(),
            pct(delays.len()),
            in_time,
            pct(in_time),
            delays.get(delays.len() / 2),
            delays.last()
        );
        assert!(lost.len() > 80, "seed {seed}: the loss happened");
        assert!(
            spurious.is_empty(),
            "seed {seed}: NACKed but not lost: {spurious:?}"
        );
        assert_eq!(rig.sub().stats().srtp_errors, 0);
        if pct(delays.len()) < 95.0 || pct(in_time) < 95.0 {
            failures.push(format!(
                "seed {seed}: {:.1} % recovered, {:.1} % within 250 ms (median {:?})",
                pct(delays.len()),
                pct(in_time),
                delays.get(delays.len() / 2)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "publisher-leg recovery too slow or incomplete: {failures:?} (upstream NACKs go out only \
         when another timer wakes the worker: Worker::poll_timeout omits next_nack_poll)"
    );
}

/// A packet the worker got from the publisher's RTX and that is then lost toward the
/// subscriber must be retransmitted with its media payload, not with the publisher's RTX
/// payload (whose first two bytes are the publisher's original sequence number).
#[test]
fn a_packet_repaired_upstream_is_retransmitted_downstream_intact() {
    for subscriber_rtx in [true, false] {
        let mut rig = Rig::new(
            Opts {
                subscriber_rtx,
                ..Opts::default()
            },
            6,
        );
        let input = FIRST_INPUT_SEQ.wrapping_add(50);
        rig.set_up_rule(Some(drop_inputs(&[input])));
        // Toward the subscriber, lose the repaired packet (the first late media packet).
        let media = rig.media_ssrc;
        let mut done = false;
        rig.set_down_rule(Some(Box::new(move |m: &Meta| {
            if m.ssrc == media && m.late && !done {
                done = true;
                return true;
            }
            false
        })));
        rig.stream(90);
        rig.idle(Duration::from_millis(1500));
        let out = rig.output_seq(input);
        let repairs: Vec<&ReceivedRtp> = if subscriber_rtx {
            rig.received_rtx(out)
        } else {
            rig.received_media(out)
        };
        assert_eq!(
            repairs.len(),
            1,
            "RTX {subscriber_rtx}: the subscriber got input {input} once: {:?}",
            rig.sub().nack_stats()
        );
        let payload = if subscriber_rtx {
            &repairs[0].payload[2..]
        } else {
            &repairs[0].payload[..]
        };
        rig.check_content("retransmission of an upstream repair", repairs[0], payload)
            .unwrap_or_else(|e| {
                panic!(
                    "RTX {subscriber_rtx}: {e} — the consumer's history keeps the publisher's RTX \
                     packet and write_retransmission re-derives the payload from it, OSN included"
                )
            });
    }
}

// ---------------------------------------------------------------------------------------------
// 1c. Bounds.
// ---------------------------------------------------------------------------------------------

/// Streams with a measured RTT (the subscriber's receiver reports carry LSR/DLSR), then
/// returns the output sequence number of a packet received `age` ago (approximately).
fn settle_and_pick(rig: &mut Rig, frames: u32, age: Duration) -> u16 {
    rig.stream(frames);
    let now = rig.net.now();
    rig.sub()
        .received_rtp_for(rig.media_ssrc)
        .filter(|p| p.at + age <= now)
        .last()
        .unwrap()
        .sequence_number
}

#[test]
fn a_nack_storm_gets_one_retransmission_per_rtt_and_three_at_most() {
    let latency = Duration::from_millis(25);
    let rtt = 2 * latency;
    let mut rig = Rig::new(
        Opts {
            latency,
            ..Opts::default()
        },
        8,
    );
    // Three seconds of traffic: sender reports out, receiver reports with LSR back.
    let target = settle_and_pick(&mut rig, 90, Duration::from_millis(100));
    assert!(rig.sub().nack_stats().unwrap().receiver_reports >= 2);
    let media = rig.media_ssrc;
    // 100 NACKs for the same packet within 10 ms.
    for _ in 0..10 {
        let now = rig.net.now();
        for _ in 0..10 {
            rig.sub_mut().send_nack(now, media, &[target]).unwrap();
        }
        rig.idle(Duration::from_millis(1));
    }
    rig.idle(rtt + Duration::from_millis(5));
    let first = rig.received_rtx(target).len();
    // Then a NACK every 5 ms for another 600 ms.
    for _ in 0..120 {
        let now = rig.net.now();
        rig.sub_mut().send_nack(now, media, &[target]).unwrap();
        rig.idle(Duration::from_millis(5));
    }
    rig.idle(Duration::from_millis(100));
    let arrivals: Vec<Instant> = rig.received_rtx(target).iter().map(|p| p.at).collect();
    let spacing: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    let from_worker = rig
        .tap
        .lock()
        .unwrap()
        .on_leg(Leg::Down)
        .filter(|(m, _)| Some(m.ssrc) == rig.rtx.map(|r| r.0))
        .count();
    println!(
        "NACK storm: 220 NACKs for one packet → {} retransmissions (first 10 ms: {first}), spacing {spacing:?}, RTT {rtt:?}",
        arrivals.len()
    );
    assert_eq!(
        first, 1,
        "one retransmission for the 100 NACKs of the first 10 ms"
    );
    assert_eq!(from_worker, arrivals.len(), "no other RTX from the worker");
    assert!(
        arrivals.len() <= WORKER_MAX_RESENDS,
        "at most {WORKER_MAX_RESENDS} retransmissions of one packet, got {}",
        arrivals.len()
    );
    assert!(
        spacing.iter().all(|s| *s >= rtt),
        "retransmissions of one packet closer than an RTT ({rtt:?}): {spacing:?}"
    );
    // The NACKs came every 5 ms after the first gap: the worker resent as soon as its RTT
    // allowed, and that RTT is the measured 50 ms, not its 100 ms default.
    assert_eq!(
        arrivals.len(),
        WORKER_MAX_RESENDS,
        "it does resend after an RTT"
    );
    assert!(
        spacing[1] < rtt + Duration::from_millis(15),
        "the worker waited {:?}: it did not use the RTT from the subscriber's receiver reports",
        spacing[1]
    );
    for p in rig.received_rtx(target) {
        rig.check_content("storm RTX", p, &p.payload[2..]).unwrap();
    }
}

#[test]
fn nacks_for_packets_never_sent_or_older_than_the_history_produce_nothing() {
    let mut rig = Rig::new(Opts::default(), 9);
    rig.stream(150); // 5 s, ~650 packets: more than the 512 slots of history.
    rig.idle(Duration::from_millis(100)); // nothing in flight: the highest received is the highest sent
    let now = rig.net.now();
    let received: Vec<(u16, Instant)> = rig
        .sub()
        .received_rtp_for(rig.media_ssrc)
        .map(|p| (p.sequence_number, p.at))
        .collect();
    let (first, _) = received[0];
    let (highest, _) = *received.last().unwrap();
    let expired: Vec<u16> = received
        .iter()
        .filter(|(_, at)| {
            let age = now - *at;
            age > WORKER_HISTORY_AGE + Duration::from_millis(100) && age < Duration::from_secs(2)
        })
        .map(|(s, _)| *s)
        .collect();
    assert!(expired.len() > 100);
    let mut never_or_gone: Vec<Vec<u16>> = vec![
        (1..=60u16).map(|i| highest.wrapping_add(i)).collect(), // not sent yet
        vec![highest.wrapping_add(20_000), highest.wrapping_add(40_000)], // never
        (1..=60u16).rev().map(|i| first.wrapping_sub(i)).collect(), // before the first
        (0..40u16).map(|i| first.wrapping_add(i)).collect(),    // overwritten in the ring
        expired,                                                // in the ring but too old
    ];
    let rtx_before = rig.sub().received_rtp_for(rig.rtx.unwrap().0).count();
    let media = rig.media_ssrc;
    for list in &mut never_or_gone {
        for chunk in list.chunks(50) {
            let now = rig.net.now();
            rig.sub_mut().send_nack(now, media, chunk).unwrap();
        }
    }
    rig.idle(Duration::from_millis(200));
    let answered = rig.sub().received_rtp_for(rig.rtx.unwrap().0).count() - rtx_before;
    let osns: Vec<u16> = rig
        .sub()
        .received_rtp_for(rig.rtx.unwrap().0)
        .skip(rtx_before)
        .map(osn_of)
        .collect();
    println!(
        "NACKs for {} never-sent or expired packets answered with {answered} RTX {osns:?}",
        never_or_gone.iter().map(Vec::len).sum::<usize>()
    );
    assert_eq!(answered, 0, "retransmitted {osns:?}");
    // Control: a packet from 100 ms ago is still answered.
    let recent = received
        .iter()
        .rev()
        .find(|(_, at)| now - *at >= Duration::from_millis(100))
        .unwrap()
        .0;
    let now = rig.net.now();
    rig.sub_mut().send_nack(now, media, &[recent]).unwrap();
    rig.idle(Duration::from_millis(100));
    assert_eq!(
        rig.received_rtx(recent).len(),
        1,
        "a recent packet is retransmitted"
    );
}

/// The history keeps packets for a second: a resend must not make an old packet young again.
#[test]
fn a_resend_does_not_extend_the_history_age() {
    let mut rig = Rig::new(Opts::default(), 10);
    let target = settle_and_pick(&mut rig, 60, Duration::ZERO);
    let sent_at = rig.received_media(target)[0].at - rig.latency;
    rig.stream(18); // ~0.6 s
    let now = rig.net.now();
    let media = rig.media_ssrc;
    rig.sub_mut().send_nack(now, media, &[target]).unwrap();
    rig.stream(6);
    assert_eq!(rig.received_rtx(target).len(), 1, "answered while young");
    // Now well past the history age since it was first sent.
    rig.stream(21); // to ~1.5 s
    let now = rig.net.now();
    let age = now - sent_at;
    assert!(age > WORKER_HISTORY_AGE + Duration::from_millis(300));
    rig.sub_mut().send_nack(now, media, &[target]).unwrap();
    rig.idle(Duration::from_millis(200));
    let answers = rig.received_rtx(target).len();
    println!("a packet first sent {age:?} ago was retransmitted {answers} time(s) in all");
    assert_eq!(
        answers, 1,
        "a packet first sent {age:?} ago was retransmitted again: RetransmissionBuffer::take_for_resend \
         measures the age from `sent_at`, which each resend moves to the resend time"
    );
}
