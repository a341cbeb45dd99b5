//! Congestion control toward subscribers, proven on the simulated network (issue 5): the real
//! worker forwards simulcast publishers ([`simulcast_source`]) to subscribers whose downlink
//! is a shaped link (capacity, propagation delay, tail-drop queue, loss; seeded, on virtual
//! time), and whose `SimPeer` answers like a browser with transport-wide feedback every 50 ms.
//! Each scenario asserts the thresholds and prints a report every 250 ms (time,
//! estimate, selected and allocated layers, the link's queueing delay, delivered rate and
//! loss); run with `--nocapture` to see it (`CC_REPORT_ALL=1`: every 50 ms). With `CC_REPORT_DIR=<dir>` set, every report is
//! also written there as CSV (`scripts/plot-congestion.py` draws the docs' plot from them).
//!
//! A control proves that a subscriber that did not negotiate transport-cc is forwarded as
//! before: no stamping, no probes, no layer limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
#[path = "common/simulcast_source.rs"]
mod simulcast_source;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::*;
use sfu_core::rtp_parameters::extension_uri;
use sfu_core::sim_peer::{Direction, LinkConfig, LinkStats, PeerId, SimNetwork};
use sfu_core::{
    ConsumerId, ProducerId, RtcpFeedback, RtpCapabilities, RtpHeaderExtension, RtpParameters,
    TransportId, WorkerEvent,
};
use simulcast_source::{SimulcastSource, SourceConfig, run_sources};

/// The subscriber's transport-wide-cc extension id.
const SUB_TWCC_ID: u8 = 3;
/// The subscriber's RTX payload type for VP8 (probes are padding on RTX).
const SUB_RTX_PT: u8 = 101;
/// How often the subscriber sends transport-wide feedback (Chrome: about every 50 ms).
const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
/// How often conditions are checked and the state recorded: the precision of the measured
/// times.
const CHECK: Duration = Duration::from_millis(50);
/// Records per printed report line (every 250 ms).
const REPORT_EVERY: usize = 5;
/// One-way propagation delay of the subscriber's link, each direction.
const PROPAGATION: Duration = Duration::from_millis(25);
/// The downlink's buffer: 300 ms at 4 Mbit/s, 1.5 s at 800 kbit/s (a home router's).
const QUEUE_BYTES: usize = 150_000;
const MBPS: u64 = 1_000_000;
/// Stream bitrates of [`SourceConfig::three_layers`].
const LAYER_BPS: [u64; 3] = [150_000, 500_000, 2_500_000];

fn ext(uri: &str, id: u8) -> RtpHeaderExtension {
    RtpHeaderExtension {
        uri: uri.into(),
        id,
    }
}

/// A browser subscriber's capabilities: with transport-cc (extension and feedback) and RTX,
/// or without either (`cc = false`).
fn caps(cc: bool) -> RtpCapabilities {
    let mut audio = opus(SUB_OPUS_PT);
    let mut video = vp8(SUB_VP8_PT);
    let mut header_extensions = vec![
        ext(extension_uri::MID, SUB_MID_ID),
        ext(extension_uri::AUDIO_LEVEL, SUB_AUDIO_LEVEL_ID),
    ];
    if cc {
        header_extensions.push(ext(extension_uri::TRANSPORT_CC, SUB_TWCC_ID));
        audio
            .rtcp_feedback
            .push(RtcpFeedback::new("transport-cc", ""));
        video
            .rtcp_feedback
            .push(RtcpFeedback::new("transport-cc", ""));
        video.rtx_payload_type = Some(SUB_RTX_PT);
    }
    RtpCapabilities {
        codecs: vec![audio, video],
        header_extensions,
    }
}

/// A subscriber to set up: its name in reports, its downlink, whether it negotiates CC.
struct SubscriberSpec {
    name: &'static str,
    downlink: LinkConfig,
    cc: bool,
}

impl SubscriberSpec {
    /// A transport-cc subscriber behind a `capacity_bps` downlink with the usual buffer and
    /// 25 ms of propagation delay.
    fn limited(name: &'static str, capacity_bps: u64) -> Self {
        Self {
            name,
            downlink: LinkConfig {
                delay: PROPAGATION,
                seed: 7,
                ..LinkConfig::bottleneck(capacity_bps, QUEUE_BYTES)
            },
            cc: true,
        }
    }
}

/// One report line of one subscriber.
#[derive(Debug, Clone)]
struct Sample {
    /// Since the sources started.
    t: Duration,
    /// The worker's estimate.
    estimate_bps: Option<u64>,
    /// The stream each video consumer forwards (by publisher).
    layers: Vec<Option<usize>>,
    /// The stream the allocator allows each video consumer (by publisher; `None` inside:
    /// paused; outer `None`: no allocation for it).
    allocations: Vec<Option<Option<usize>>>,
    /// The downlink's queueing delay now.
    link_queue: Duration,
    /// The pacer's oldest packet's wait.
    pacer_delay: Option<Duration>,
    /// The estimator's loss rate.
    cc_loss: Option<f64>,
    /// Bytes the downlink delivered over the interval.
    delivered_bytes: u64,
    /// The downlink's capacity.
    capacity_bps: Option<u64>,
    /// Datagrams offered to the downlink over the interval.
    offered: u64,
    /// Of those, dropped by its buffer or lost.
    dropped: u64,
}

struct Subscriber {
    name: &'static str,
    peer: PeerId,
    transport: TransportId,
    /// Video consumers by publisher, with what the subscriber was told.
    video: Vec<(ConsumerId, RtpParameters)>,
    /// Audio consumers by publisher (for publishers with a microphone).
    audio: Vec<(ConsumerId, RtpParameters)>,
    samples: Vec<Sample>,
    /// Link counters at the last sample.
    last_link: LinkStats,
    /// `(report time, datagrams the downlink's buffer had accepted by then)`.
    accepted: Vec<(Duration, usize)>,
}

/// A room of simulcast publishers and subscribers on shaped links.
struct Scenario {
    name: &'static str,
    net: SimNetwork,
    sources: Vec<SimulcastSource>,
    audio_producers: Vec<Option<ProducerId>>,
    subs: Vec<Subscriber>,
    start: Instant,
}

impl Scenario {
    /// Connects every publisher and subscriber (each subscriber consumes every track), then
    /// starts the sources.
    fn new(name: &'static str, sources: Vec<SourceConfig>, subs: Vec<SubscriberSpec>) -> Self {
        let mut net = SimNetwork::new(addr(WORKER)).unwrap();
        let router = net.worker_mut().create_router();
        let mut peers = Vec::new();
        let mut publishers = Vec::new();
        let mut video_producers = Vec::new();
        let mut audio_producers = Vec::new();
        for (i, config) in sources.iter().enumerate() {
            let peer = net.add_peer(peer_addr(i)).unwrap();
            let info = net.create_transport(peer, router).unwrap();
            video_producers.push(
                net.worker_mut()
                    .produce(info.id, config.video_parameters())
                    .unwrap(),
            );
            audio_producers.push(
                config
                    .audio_parameters()
                    .map(|p| net.worker_mut().produce(info.id, p).unwrap()),
            );
            net.connect(peer, &info).unwrap();
            peers.push(peer);
            publishers.push(peer);
        }
        let mut subscribers = Vec::new();
        for (j, spec) in subs.into_iter().enumerate() {
            let address = peer_addr(100 + j);
            let peer = net.add_peer(address).unwrap();
            let info = net.create_transport(peer, router).unwrap();
            let now = net.now();
            let capabilities = caps(spec.cc);
            let mut audio = Vec::new();
            for (i, producer) in audio_producers.iter().enumerate() {
                if let Some(producer) = producer {
                    audio.push(
                        net.worker_mut()
                            .consume(
                                now,
                                info.id,
                                *producer,
                                &capabilities,
                                Some(format!("a{i}")),
                            )
                            .unwrap(),
                    );
                }
            }
            let video: Vec<(ConsumerId, RtpParameters)> = video_producers
                .iter()
                .enumerate()
                .map(|(i, producer)| {
                    net.worker_mut()
                        .consume(
                            now,
                            info.id,
                            *producer,
                            &capabilities,
                            Some(format!("v{i}")),
                        )
                        .unwrap()
                })
                .collect();
            net.set_link(address, Direction::ToPeer, spec.downlink.clone());
            net.set_link(
                address,
                Direction::FromPeer,
                LinkConfig {
                    delay: PROPAGATION,
                    ..LinkConfig::default()
                },
            );
            net.connect(peer, &info).unwrap();
            peers.push(peer);
            subscribers.push((spec, peer, info.id, video, audio));
        }
        assert!(
            net.run_until_connected(&peers, CONNECT_LIMIT),
            "{name}: the room did not connect: {:?}",
            net.events()
        );
        let now = net.now();
        let subs = subscribers
            .into_iter()
            .map(|(spec, peer, transport, video, audio)| {
                if spec.cc {
                    // A browser reports on the id it was told, as the consumer negotiated it.
                    let params: &RtpParameters = &video[0].1;
                    let id = params
                        .extension_id(extension_uri::TRANSPORT_CC)
                        .expect("transport-cc negotiated");
                    net.peer_mut(peer)
                        .unwrap()
                        .enable_twcc_feedback(now, id, FEEDBACK_INTERVAL);
                }
                let last_link = net
                    .link_stats(net.peer(peer).unwrap().addr(), Direction::ToPeer)
                    .unwrap();
                Subscriber {
                    name: spec.name,
                    peer,
                    transport,
                    video,
                    audio,
                    samples: Vec::new(),
                    last_link,
                    accepted: Vec::new(),
                }
            })
            .collect();
        let sources = sources
            .into_iter()
            .zip(publishers)
            .map(|(config, peer)| SimulcastSource::new(peer, config, now))
            .collect();
        Self {
            name,
            net,
            sources,
            audio_producers,
            subs,
            start: now,
        }
    }

    fn elapsed(&self) -> Duration {
        self.net.now().saturating_duration_since(self.start)
    }

    fn sub_addr(&self, sub: usize) -> std::net::SocketAddr {
        self.net.peer(self.subs[sub].peer).unwrap().addr()
    }

    /// The stream subscriber `sub` receives of publisher `publisher`'s video now.
    fn layer(&self, sub: usize, publisher: usize) -> Option<usize> {
        self.net
            .worker()
            .consumer_stream(self.subs[sub].video[publisher].0)
    }

    /// The worker's estimate for subscriber `sub`.
    fn estimate(&self, sub: usize) -> Option<u64> {
        self.net
            .worker()
            .congestion_stats(self.net.now(), self.subs[sub].transport)
            .map(|s| s.estimate.as_bps())
    }

    /// The downlink's queueing delay of subscriber `sub` now.
    fn link_queue(&self, sub: usize) -> Duration {
        self.net
            .link_backlog(self.sub_addr(sub), Direction::ToPeer)
            .map_or(Duration::ZERO, |(_, d)| d)
    }

    /// Runs [`CHECK`] of virtual time, then records every subscriber's state.
    fn step(&mut self) {
        let target = self.net.now() + CHECK;
        run_sources(&mut self.net, &mut self.sources, target);
        self.sample();
    }

    /// Adds a report line for every subscriber.
    fn sample(&mut self) {
        let now = self.net.now();
        let t = self.elapsed();
        for j in 0..self.subs.len() {
            let addr = self.sub_addr(j);
            let s = &self.subs[j];
            let stats = self.net.worker().congestion_stats(now, s.transport);
            let link = self.net.link_stats(addr, Direction::ToPeer).unwrap();
            let offered = link.offered_datagrams - s.last_link.offered_datagrams;
            let dropped = link.queue_dropped_datagrams + link.lost_datagrams
                - s.last_link.queue_dropped_datagrams
                - s.last_link.lost_datagrams;
            let delivered = link.delivered_bytes - s.last_link.delivered_bytes;
            let sample = Sample {
                t,
                estimate_bps: stats.as_ref().map(|c| c.estimate.as_bps()),
                layers: (0..s.video.len()).map(|p| self.layer(j, p)).collect(),
                allocations: s
                    .video
                    .iter()
                    .map(|(c, _)| {
                        stats.as_ref().and_then(|st| {
                            st.allocations
                                .iter()
                                .find(|(id, _)| id == c)
                                .map(|(_, l)| *l)
                        })
                    })
                    .collect(),
                link_queue: self.link_queue(j),
                pacer_delay: stats.as_ref().map(|c| c.pacer_queue_delay),
                cc_loss: stats.as_ref().map(|c| c.loss_rate),
                delivered_bytes: delivered,
                capacity_bps: self
                    .net
                    .link_config(addr, Direction::ToPeer)
                    .and_then(|c| c.capacity_bps),
                offered,
                dropped,
            };
            let accepted = self
                .net
                .link_queue_delays(addr, Direction::ToPeer)
                .map_or(0, <[Duration]>::len);
            let s = &mut self.subs[j];
            s.samples.push(sample);
            s.last_link = link;
            s.accepted.push((t, accepted));
        }
    }

    /// Runs until the sources have run for `t` in all.
    fn run_to(&mut self, t: Duration) {
        while self.elapsed() + CHECK / 2 < t {
            self.step();
        }
    }

    fn set_capacity(&mut self, sub: usize, capacity_bps: u64) {
        let addr = self.sub_addr(sub);
        assert!(
            self.net
                .update_link_capacity(addr, Direction::ToPeer, Some(capacity_bps))
        );
    }

    /// The downlink's queueing delay of every datagram its buffer accepted in `[from, to)`
    /// (report times, so to a report interval's precision).
    fn queue_delays_between(&self, sub: usize, from: Duration, to: Duration) -> Vec<Duration> {
        let delays = self
            .net
            .link_queue_delays(self.sub_addr(sub), Direction::ToPeer)
            .unwrap();
        let index = |t: Duration| {
            self.subs[sub]
                .accepted
                .iter()
                .rev()
                .find(|(at, _)| *at <= t)
                .map_or(0, |(_, n)| *n)
                .min(delays.len())
        };
        let (a, b) = (index(from), index(to));
        delays.get(a..b.max(a)).unwrap_or(&[]).to_vec()
    }

    /// Datagrams offered to and dropped or lost by the downlink of `sub` in `[from, to)`.
    fn link_loss_between(&self, sub: usize, from: Duration, to: Duration) -> f64 {
        let inside: Vec<&Sample> = self.subs[sub]
            .samples
            .iter()
            .filter(|x| x.t > from && x.t <= to)
            .collect();
        let offered: u64 = inside.iter().map(|x| x.offered).sum();
        let lost: u64 = inside.iter().map(|x| x.dropped).sum();
        if offered == 0 {
            0.0
        } else {
            lost as f64 / offered as f64
        }
    }

    /// The report of subscriber `sub`: one line per [`REPORT_EVERY`] records, the state at
    /// its end and the link's rate and loss over it.
    fn report_lines(&self, sub: usize) -> Vec<ReportLine> {
        // `CC_REPORT_ALL=1` prints every record (every 50 ms) instead.
        let every = if std::env::var_os("CC_REPORT_ALL").is_some() {
            1
        } else {
            REPORT_EVERY
        };
        self.subs[sub]
            .samples
            .chunks(every)
            .filter_map(|chunk| {
                let last = chunk.last()?;
                let span = CHECK * chunk.len() as u32;
                let delivered: u64 = chunk.iter().map(|x| x.delivered_bytes).sum();
                let offered: u64 = chunk.iter().map(|x| x.offered).sum();
                let dropped: u64 = chunk.iter().map(|x| x.dropped).sum();
                Some(ReportLine {
                    state: last.clone(),
                    link_bps: (delivered as f64 * 8.0 / span.as_secs_f64()) as u64,
                    link_loss: if offered == 0 {
                        0.0
                    } else {
                        dropped as f64 / offered as f64
                    },
                })
            })
            .collect()
    }

    /// The report of subscriber `sub` as a table.
    fn report(&self, sub: usize) -> String {
        let s = &self.subs[sub];
        let mut out = format!("--- {} / {}\n", self.name, s.name);
        out.push_str(
            "     t  capacity  estimate  layers  allowed  link-queue  pacer  link kbit/s  link loss  cc loss\n",
        );
        for line in self.report_lines(sub) {
            let x = &line.state;
            let kbps = |b: Option<u64>| b.map_or("-".to_owned(), |b| format!("{}", b / 1000));
            let layers: Vec<String> = x
                .layers
                .iter()
                .map(|l| l.map_or("-".into(), |l| l.to_string()))
                .collect();
            let allowed: Vec<String> = x
                .allocations
                .iter()
                .map(|a| match a {
                    None => "?".into(),
                    Some(None) => "p".into(),
                    Some(Some(l)) => l.to_string(),
                })
                .collect();
            let _ = writeln!(
                out,
                "{:>6.2} {:>9} {:>9} {:>7} {:>8} {:>8} ms {:>3} ms {:>12} {:>9.1}% {:>7.1}%",
                x.t.as_secs_f64(),
                kbps(x.capacity_bps),
                kbps(x.estimate_bps),
                layers.join("/"),
                allowed.join("/"),
                x.link_queue.as_millis(),
                x.pacer_delay.map_or(0, |d| d.as_millis()),
                line.link_bps / 1000,
                line.link_loss * 100.0,
                x.cc_loss.unwrap_or(0.0) * 100.0,
            );
        }
        out
    }

    /// Prints every subscriber's report, and writes it as CSV into `$CC_REPORT_DIR` if set.
    fn print_reports(&self) {
        for j in 0..self.subs.len() {
            println!("{}", self.report(j));
        }
        let Ok(dir) = std::env::var("CC_REPORT_DIR") else {
            return;
        };
        for (j, s) in self.subs.iter().enumerate() {
            let mut csv = String::from(
                "t_s,capacity_kbps,estimate_kbps,layer,allowed,link_queue_ms,pacer_ms,link_kbps,link_loss\n",
            );
            for line in self.report_lines(j) {
                let x = &line.state;
                let _ = writeln!(
                    csv,
                    "{:.3},{},{},{},{},{},{},{},{:.4}",
                    x.t.as_secs_f64(),
                    x.capacity_bps
                        .map_or(String::new(), |c| (c / 1000).to_string()),
                    x.estimate_bps
                        .map_or(String::new(), |c| (c / 1000).to_string()),
                    x.layers
                        .first()
                        .copied()
                        .flatten()
                        .map_or(String::new(), |l| l.to_string()),
                    x.allocations
                        .first()
                        .copied()
                        .flatten()
                        .flatten()
                        .map_or(String::new(), |l| l.to_string()),
                    x.link_queue.as_millis(),
                    x.pacer_delay.map_or(0, |d| d.as_millis()),
                    line.link_bps / 1000,
                    line.link_loss,
                );
            }
            let path = std::path::Path::new(&dir).join(format!("{}-{}.csv", self.name, s.name));
            std::fs::write(&path, csv).unwrap();
        }
    }

    /// The earliest record time in `[from, to]` from which `holds` is true of every record up
    /// to `to`.
    fn held_from(
        &self,
        sub: usize,
        from: Duration,
        to: Duration,
        holds: impl Fn(&Sample) -> bool,
    ) -> Option<Duration> {
        let inside: Vec<&Sample> = self.subs[sub]
            .samples
            .iter()
            .filter(|x| x.t >= from && x.t <= to)
            .collect();
        let mut since = None;
        for x in inside {
            if holds(x) {
                since.get_or_insert(x.t);
            } else {
                since = None;
            }
        }
        since
    }
}

/// One printed report line.
struct ReportLine {
    state: Sample,
    link_bps: u64,
    link_loss: f64,
}

/// The 95th percentile (nearest rank) of `delays`; zero when empty.
fn p95(mut delays: Vec<Duration>) -> Duration {
    delays.sort_unstable();
    let rank = (delays.len() as f64 * 0.95).ceil() as usize;
    delays
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// Whether forwarding `layer` (plus audio) fits a link of `capacity_bps`.
fn fits(layer: Option<usize>, capacity_bps: u64) -> bool {
    layer.is_some_and(|l| LAYER_BPS[l] + 40_000 < capacity_bps)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_owned(),
        |d| format!("{:.2} s", d.as_secs_f64()),
    )
}

/// Collects unmet thresholds so that one run reports all of them; one line per result is
/// printed for the docs' table.
#[derive(Default)]
struct Verdict {
    failures: Vec<String>,
}

impl Verdict {
    fn check(&mut self, scenario: &str, threshold: &str, measured: String, ok: bool) {
        println!(
            "RESULT | {scenario} | {threshold} | {measured} | {}",
            if ok { "pass" } else { "FAIL" }
        );
        if !ok {
            self.failures
                .push(format!("{scenario}: {threshold}: measured {measured}"));
        }
    }

    fn assert(self) {
        assert!(self.failures.is_empty(), "{:#?}", self.failures);
    }
}

/// The stamping and feedback worked: every packet to a transport-cc subscriber carried the
/// extension, and the worker processed feedback.
fn check_feedback_loop(sc: &Scenario, sub: usize, v: &mut Verdict) {
    let twcc = sc
        .net
        .peer(sc.subs[sub].peer)
        .unwrap()
        .twcc_stats()
        .unwrap();
    v.check(
        sc.name,
        &format!("{}: every packet stamped, feedback sent", sc.subs[sub].name),
        format!(
            "{} stamped, {} unstamped, {} feedback packets",
            twcc.stamped, twcc.unstamped, twcc.feedback_packets
        ),
        twcc.stamped > 500 && twcc.unstamped == 0 && twcc.feedback_packets > 50,
    );
}

/// On the top layer and allowed it.
fn on_top(x: &Sample) -> bool {
    x.layers[0] == Some(2) && x.allocations[0] == Some(Some(2))
}

fn after(t: Option<Duration>, origin: Duration) -> String {
    secs(t.map(|t| t.saturating_sub(origin)))
}

#[test]
fn ramp_up_then_step_down_then_step_up() {
    let mut sc = Scenario::new(
        "steps",
        vec![SourceConfig::three_layers(0).with_audio(Some(30))],
        vec![SubscriberSpec::limited("sub", 4 * MBPS)],
    );
    let mut v = Verdict::default();
    let s = Duration::from_secs;

    // Ramp-up from the estimator's initial guess on a 4 Mbit/s link: the top layer, selected
    // and allowed, from then on until the step.
    let step = s(8);
    sc.run_to(step);
    let top = sc.held_from(0, Duration::ZERO, step, on_top);
    v.check(
        "ramp-up (4 Mbit/s)",
        "top layer (selected and allowed, kept) within 5 s",
        secs(top),
        top.is_some_and(|t| t <= s(5)),
    );

    // Step down to 800 kbit/s (the buffer holds 1.5 s at the new rate).
    sc.set_capacity(0, 800_000);
    let up = step + s(6);
    sc.run_to(up);
    let fit = sc.held_from(0, step, up, |x| fits(x.layers[0], 800_000));
    let drained = sc.held_from(0, step, up, |x| x.link_queue < Duration::from_millis(100));
    let adapted = fit.zip(drained).map(|(a, b)| a.max(b));
    v.check(
        "step down 4 → 0.8 Mbit/s",
        "on a layer that fits within 2 s",
        after(fit, step),
        fit.is_some_and(|t| t <= step + s(2)),
    );
    v.check(
        "step down 4 → 0.8 Mbit/s",
        "link queueing delay back under 100 ms within 2 s",
        after(drained, step),
        drained.is_some_and(|t| t <= step + s(2)),
    );
    let worst = sc.subs[0]
        .samples
        .iter()
        .filter(|x| x.t >= step && x.t <= up)
        .map(|x| x.link_queue)
        .max()
        .unwrap_or_default();
    println!(
        "    step down: adapted at +{}, worst link queue {} ms",
        after(adapted, step),
        worst.as_millis()
    );
    let window = (step + s(2), up);
    let loss = sc.link_loss_between(0, window.0, window.1);
    v.check(
        "step down 4 → 0.8 Mbit/s",
        "loss < 5 % after adapting (+2 s to +6 s)",
        format!("{:.2} %", loss * 100.0),
        loss < 0.05,
    );
    let queue = p95(sc.queue_delays_between(0, window.0, window.1));
    v.check(
        "step down 4 → 0.8 Mbit/s",
        "queueing delay p95 < 100 ms after adapting (+2 s to +6 s)",
        format!("{} ms", queue.as_millis()),
        queue < Duration::from_millis(100),
    );

    // Step back up: the top layer again, kept to the end (2 s after the 10 s allowed).
    sc.set_capacity(0, 4 * MBPS);
    let end = up + s(12);
    sc.run_to(end);
    let top_again = sc.held_from(0, up, end, on_top);
    v.check(
        "step up 0.8 → 4 Mbit/s",
        "top layer again (kept) within 10 s",
        after(top_again, up),
        top_again.is_some_and(|t| t <= up + s(10)),
    );
    check_feedback_loop(&sc, 0, &mut v);
    sc.print_reports();
    v.assert();
}

#[test]
fn random_loss_does_not_collapse_the_estimate() {
    let mut spec = SubscriberSpec::limited("sub", 4 * MBPS);
    spec.downlink.loss = 0.05;
    let mut sc = Scenario::new(
        "loss",
        vec![SourceConfig::three_layers(0).with_audio(Some(30))],
        vec![spec],
    );
    let mut v = Verdict::default();
    let end = Duration::from_secs(15);
    sc.run_to(end);
    let above = sc.held_from(0, Duration::ZERO, end, |x| {
        x.estimate_bps.is_some_and(|e| e > 2 * MBPS)
    });
    v.check(
        "5 % random loss (4 Mbit/s)",
        "estimate above 2 Mbit/s from the ramp-up (≤ 5 s) to 15 s",
        format!("from {}", secs(above)),
        above.is_some_and(|t| t <= Duration::from_secs(5)),
    );
    let lowest = sc.subs[0]
        .samples
        .iter()
        .filter(|x| x.t >= Duration::from_secs(5))
        .filter_map(|x| x.estimate_bps)
        .min()
        .unwrap_or(0);
    let loss = sc.link_loss_between(0, Duration::ZERO, end);
    println!(
        "    lowest estimate after 5 s: {} kbit/s; link loss {:.2} %",
        lowest / 1000,
        loss * 100.0
    );
    let top = sc.held_from(0, Duration::ZERO, end, on_top);
    println!("    top layer kept from {}", secs(top));
    check_feedback_loop(&sc, 0, &mut v);
    sc.print_reports();
    v.assert();
}

#[test]
fn two_subscribers_on_different_links_adapt_independently() {
    let mut sc = Scenario::new(
        "two-subscribers",
        vec![SourceConfig::three_layers(0).with_audio(Some(30))],
        vec![
            SubscriberSpec::limited("fast-4M", 4 * MBPS),
            SubscriberSpec::limited("slow-600k", 600_000),
        ],
    );
    let mut v = Verdict::default();
    let scenario = "two subscribers, 4 Mbit/s and 600 kbit/s";
    let end = Duration::from_secs(10);
    sc.run_to(end);
    let top = sc.held_from(0, Duration::ZERO, end, on_top);
    v.check(
        scenario,
        "4 Mbit/s one: top layer (kept) within 5 s",
        secs(top),
        top.is_some_and(|t| t <= Duration::from_secs(5)),
    );
    let fit = sc.held_from(1, Duration::ZERO, end, |x| fits(x.layers[0], 600_000));
    v.check(
        scenario,
        "600 kbit/s one: a layer that fits, not paused (kept) within 5 s",
        secs(fit),
        fit.is_some_and(|t| t <= Duration::from_secs(5)),
    );
    let window = (Duration::from_secs(5), end);
    let loss = sc.link_loss_between(1, window.0, window.1);
    let queue = p95(sc.queue_delays_between(1, window.0, window.1));
    v.check(
        scenario,
        "600 kbit/s link not overrun (5–10 s): loss < 5 %, queue p95 < 100 ms",
        format!("{:.2} %, {} ms", loss * 100.0, queue.as_millis()),
        loss < 0.05 && queue < Duration::from_millis(100),
    );
    let (a, b) = (sc.estimate(0).unwrap_or(0), sc.estimate(1).unwrap_or(0));
    v.check(
        scenario,
        "estimates apart: > 2 Mbit/s and < 1 Mbit/s",
        format!("{} and {} kbit/s", a / 1000, b / 1000),
        a > 2 * MBPS && b < MBPS,
    );
    check_feedback_loop(&sc, 0, &mut v);
    check_feedback_loop(&sc, 1, &mut v);
    sc.print_reports();
    v.assert();
}

/// The active speaker's audio producer per the worker's events, by publisher index.
fn speakers(sc: &Scenario) -> Vec<(Duration, Option<usize>)> {
    sc.net
        .events()
        .iter()
        .filter_map(|(at, e)| match e {
            WorkerEvent::ActiveSpeakerChanged { producer, .. } => Some((
                at.saturating_duration_since(sc.start),
                producer.and_then(|p| sc.audio_producers.iter().position(|a| *a == Some(p))),
            )),
            _ => None,
        })
        .collect()
}

/// Publisher `speaker`'s video is on layer 1 or better and no other publisher's is better.
fn speaker_best(x: &Sample, speaker: usize) -> bool {
    let best = x.layers[speaker];
    best >= Some(1) && x.layers.iter().all(|l| *l <= best)
}

/// Layer switches of publisher `publisher`'s video in `[from, to]`.
fn switches(sc: &Scenario, publisher: usize, from: Duration, to: Duration) -> usize {
    let layers: Vec<Option<usize>> = sc.subs[0]
        .samples
        .iter()
        .filter(|x| x.t >= from && x.t <= to)
        .map(|x| x.layers[publisher])
        .collect();
    layers.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn the_active_speaker_gets_the_best_layer_on_a_limited_link() {
    let mut sc = Scenario::new(
        "active-speaker",
        vec![
            SourceConfig::three_layers(0).with_audio(Some(20)),
            SourceConfig::three_layers(1).with_audio(None),
            SourceConfig::three_layers(2).with_audio(None),
        ],
        vec![SubscriberSpec::limited("sub-1.5M", 1_500_000)],
    );
    let mut v = Verdict::default();
    let scenario = "3 publishers, one subscriber at 1.5 Mbit/s";
    let s = Duration::from_secs;
    let change = s(10);
    sc.run_to(change);
    v.check(
        scenario,
        "the worker names publisher 0 the active speaker",
        format!("{:?}", speakers(&sc)),
        speakers(&sc).last().is_some_and(|(_, p)| *p == Some(0)),
    );
    let best = sc.held_from(0, Duration::ZERO, change, |x| speaker_best(x, 0));
    v.check(
        scenario,
        "speaker 0 has the best layer (≥ 1, kept) within 5 s",
        secs(best),
        best.is_some_and(|t| t <= s(5)),
    );
    println!(
        "    layer switches 5–10 s per publisher: {:?}",
        (0..3)
            .map(|p| switches(&sc, p, s(5), change))
            .collect::<Vec<_>>()
    );

    // The floor passes to publisher 1: once the worker names it, the best layer follows.
    sc.sources[0].set_audio_level(None);
    sc.sources[1].set_audio_level(Some(20));
    let end = change + s(10);
    sc.run_to(end);
    let named = speakers(&sc)
        .into_iter()
        .find(|(at, p)| *at >= change && *p == Some(1))
        .map(|(at, _)| at);
    v.check(
        scenario,
        "the worker names publisher 1 after its level rises",
        after(named, change),
        named.is_some(),
    );
    let from = named.unwrap_or(end);
    let moved = sc.held_from(0, from, end, |x| speaker_best(x, 1));
    v.check(
        scenario,
        "then speaker 1 has the best layer (≥ 1, kept) within 2 s",
        after(moved, from),
        moved.is_some_and(|t| t <= from + s(2)),
    );
    println!(
        "    layer switches from +2 s after the change to the end, per publisher: {:?}",
        (0..3)
            .map(|p| switches(&sc, p, from + s(2), end))
            .collect::<Vec<_>>()
    );
    let loss = sc.link_loss_between(0, s(4), end);
    v.check(
        scenario,
        "link not overrun: loss < 5 % from 4 s on",
        format!("{:.2} %", loss * 100.0),
        loss < 0.05,
    );
    check_feedback_loop(&sc, 0, &mut v);
    sc.print_reports();
    v.assert();
}

#[test]
fn without_transport_cc_forwarding_is_unchanged() {
    let mut sc = Scenario::new(
        "control",
        vec![SourceConfig::three_layers(0).with_audio(Some(30))],
        vec![SubscriberSpec {
            name: "no-cc",
            downlink: LinkConfig {
                delay: PROPAGATION,
                ..LinkConfig::default()
            },
            cc: false,
        }],
    );
    sc.run_to(Duration::from_secs(3));
    sc.print_reports();
    let sub = &sc.subs[0];
    assert!(
        sc.net
            .worker()
            .congestion_stats(sc.net.now(), sub.transport)
            .is_none(),
        "congestion control on without transport-cc"
    );
    // Nothing limits the layer: the best stream, as soon as its keyframe comes.
    assert_eq!(sc.layer(0, 0), Some(2));
    let params: Vec<&RtpParameters> = sub.video.iter().chain(&sub.audio).map(|(_, p)| p).collect();
    for p in &params {
        assert_eq!(p.extension_id(extension_uri::TRANSPORT_CC), None);
        assert!(p.codecs.iter().all(|c| c.rtx_payload_type.is_none()));
    }
    let ssrcs: Vec<u32> = params.iter().map(|p| consumer_ssrc(p)).collect();
    let allowed: Vec<u8> = params
        .iter()
        .flat_map(|p| p.header_extensions.iter().map(|e| e.id))
        .collect();
    let peer = sc.net.peer(sub.peer).unwrap();
    let received = peer.received_rtp();
    assert!(received.len() > 500, "{} packets", received.len());
    for p in received {
        // Only the consumers' own streams: no probe padding on other SSRCs, none empty.
        assert!(ssrcs.contains(&p.ssrc), "unexpected SSRC: {p:?}");
        assert!(!p.payload.is_empty(), "padding-only packet: {p:?}");
        // No extension the subscriber did not negotiate (a stamped sequence number).
        for (id, _) in &p.extensions {
            assert!(allowed.contains(id), "extension {id} not negotiated: {p:?}");
        }
    }
    // Every video packet the publisher sent on the top layer after the switch arrived, at
    // once (no pacer holding it): the link is unlimited, so arrivals are the propagation
    // delay after the publisher sent them, frame by frame.
    let video_ssrc = consumer_ssrc(&sub.video[0].1);
    let last = received
        .iter()
        .rev()
        .find(|p| p.ssrc == video_ssrc)
        .unwrap();
    assert!(
        sc.net.now().saturating_duration_since(last.at) < Duration::from_millis(60),
        "video stalled: last packet at {:?}",
        last.at.saturating_duration_since(sc.start)
    );
}
