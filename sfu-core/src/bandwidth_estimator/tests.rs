//! Scenario tests on a small built-in link model, in virtual time.
//!
//! * The **link** is a FIFO bottleneck: capacity C(t) bits/s (a schedule of steps), a queue
//!   limit in bytes (tail drop), one-way propagation delay, optional random loss (after the
//!   bottleneck, seeded). Each packet's service starts when the previous one finishes.
//! * The **sender** forwards media at min(estimate, demand): every 20 ms a frame of that many
//!   bytes is queued and paced out in ≤ 1200-byte packets at 1.5 × the media rate. A probe
//!   cluster from `poll_probe` is sent at its target rate (queued media first, padding to
//!   fill), every packet tagged, until its duration, packet and byte minimums are met.
//! * The **receiver** records arrivals in a [`TwccRecorder`] and builds feedback every 50 ms;
//!   the packets travel back (propagation delay, no queue) and are parsed with
//!   [`TwccFeedback::parse`] before [`BandwidthEstimator::on_feedback`]: the wire format,
//!   the 16-bit sequence numbers (starting near a wrap) and the 24-bit reference time are all
//!   exercised.
//!
//! Each scenario prints the estimate every 500 ms (`cargo test -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;
use crate::twcc::{TwccFeedback, TwccRecorder, feedback_packets};

/// Simulation step (µs).
const TICK_US: u64 = 250;
const PACKET: usize = 1200;

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// FIFO bottleneck with a byte-limited queue.
struct Link {
    /// (from µs, capacity bit/s), sorted.
    schedule: Vec<(f64, f64)>,
    prop_us: f64,
    /// Propagation jitter: ± this (µs), uniform; FIFO order is kept.
    jitter_us: f64,
    last_arrival: f64,
    queue_limit: usize,
    loss: f64,
    rng: Rng,
    busy_until: f64,
    /// (finish µs, size) of packets queued or in service.
    queue: VecDeque<(f64, usize)>,
    queued: usize,
}

impl Link {
    fn capacity(&self, t: f64) -> f64 {
        self.schedule
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .map_or(self.schedule[0].1, |s| s.1)
    }

    /// A packet entering the bottleneck at `t`: its arrival time, unless dropped.
    fn send(&mut self, t: f64, size: usize) -> Option<f64> {
        while self.queue.front().is_some_and(|&(finish, _)| finish <= t) {
            let (_, s) = self.queue.pop_front().unwrap();
            self.queued -= s;
        }
        if self.queued + size > self.queue_limit {
            return None; // tail drop
        }
        let start = t.max(self.busy_until);
        let finish = start + size as f64 * 8.0 * 1e6 / self.capacity(start);
        self.busy_until = finish;
        self.queue.push_back((finish, size));
        self.queued += size;
        if self.rng.unit() < self.loss {
            return None;
        }
        let jitter = (2.0 * self.rng.unit() - 1.0) * self.jitter_us;
        self.last_arrival = (finish + self.prop_us + jitter).max(self.last_arrival);
        Some(self.last_arrival)
    }

    /// Queueing delay a packet entering now would see (ms).
    fn queue_delay_ms(&self, t: f64) -> f64 {
        (self.busy_until - t).max(0.0) / 1000.0
    }
}

#[derive(Clone)]
struct Scenario {
    name: &'static str,
    seconds: f64,
    /// (from s, capacity bit/s).
    capacity: Vec<(f64, f64)>,
    prop_ms: f64,
    jitter_ms: f64,
    queue_limit: usize,
    loss: f64,
    seed: u64,
    demand: f64,
    initial: u64,
    /// The pacer sends each frame at this multiple of the media rate.
    pacing_factor: f64,
    /// Feedback interval (ms).
    feedback_ms: u64,
}

impl Scenario {
    fn new(name: &'static str, seconds: f64, capacity: Vec<(f64, f64)>) -> Self {
        Self {
            name,
            seconds,
            capacity,
            prop_ms: 25.0,
            jitter_ms: 0.0,
            // 300 ms at 4 Mbit/s, 1.5 s at 0.8 Mbit/s.
            queue_limit: 150_000,
            loss: 0.0,
            seed: 1,
            demand: 5e6,
            initial: 300_000,
            pacing_factor: 1.5,
            feedback_ms: 50,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    estimate: f64,
    queue_ms: f64,
}

struct Probing {
    cluster: ProbeCluster,
    start: f64,
    sent: u32,
    bytes: u64,
    budget: f64,
}

fn run(s: &Scenario) -> Vec<Sample> {
    let t0 = Instant::now();
    let at = |us: f64| t0 + Duration::from_micros(us as u64);
    let config = EstimatorConfig {
        initial: Bitrate(s.initial),
        min: Bitrate::kbps(50),
        max: Bitrate::kbps(10_000),
        probing: true,
    };
    let mut est = BandwidthEstimator::new(t0, config);
    let mut link = Link {
        schedule: s
            .capacity
            .iter()
            .map(|&(from, c)| (from * 1e6, c))
            .collect(),
        prop_us: s.prop_ms * 1000.0,
        jitter_us: s.jitter_ms * 1000.0,
        last_arrival: 0.0,
        queue_limit: s.queue_limit,
        loss: s.loss,
        rng: Rng(s.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        busy_until: 0.0,
        queue: VecDeque::new(),
        queued: 0,
    };
    let mut recorder = TwccRecorder::new();
    let mut seq: u64 = 65_000; // the 16-bit wire value wraps early on
    let mut in_flight: VecDeque<(f64, u16)> = VecDeque::new();
    let mut feedback_in_flight: VecDeque<(f64, Vec<u8>)> = VecDeque::new();
    let mut feedback_buf = Vec::new();
    let mut backlog = 0.0f64;
    let mut budget = 0.0f64;
    let mut media_rate = 0.0f64;
    let mut probing: Option<Probing> = None;
    let mut samples = Vec::new();
    println!(
        "--- {} (capacity {:?}, queue {} KB, loss {}%, RTT {} ms)",
        s.name,
        s.capacity,
        s.queue_limit / 1000,
        s.loss * 100.0,
        2.0 * s.prop_ms
    );
    println!("    t  estimate  delay   loss-b  acked   queue  loss  state      rtt");
    let ticks = (s.seconds * 1e6) as u64 / TICK_US;
    for tick in 0..=ticks {
        let t = (tick * TICK_US) as f64;
        let now = at(t);
        // Feedback reaching the sender.
        while feedback_in_flight.front().is_some_and(|(d, _)| *d <= t) {
            let (_, bytes) = feedback_in_flight.pop_front().unwrap();
            let fb = TwccFeedback::parse(&bytes).unwrap();
            est.on_feedback(now, &fb);
        }
        // A media frame every 20 ms; the forwarder never holds more than 100 ms of it.
        if tick % (20_000 / TICK_US) == 0 {
            media_rate = (est.estimate().as_bps() as f64).min(s.demand);
            backlog = (backlog + media_rate * 0.020 / 8.0).min(media_rate * 0.1 / 8.0);
        }
        if probing.is_none() {
            probing = est.poll_probe(now).map(|cluster| Probing {
                cluster,
                start: t,
                sent: 0,
                bytes: 0,
                budget: 0.0,
            });
        }
        let mut send = |size: usize, probe: Option<u32>, seq: &mut u64| {
            est.on_packet_sent(SentPacket {
                transport_seq: *seq,
                size,
                send_time: now,
                probe_cluster: probe,
            });
            if let Some(arrival) = link.send(t, size) {
                in_flight.push_back((arrival, *seq as u16));
            }
            *seq += 1;
        };
        if let Some(p) = &mut probing {
            p.budget += p.cluster.target_bitrate.as_bps() as f64 * TICK_US as f64 / 8e6;
            while p.budget >= PACKET as f64 {
                backlog = (backlog - PACKET as f64).max(0.0); // media first, padding fills
                send(PACKET, Some(p.cluster.id), &mut seq);
                p.sent += 1;
                p.bytes += PACKET as u64;
                p.budget -= PACKET as f64;
            }
            let done = t - p.start >= p.cluster.duration.as_micros() as f64
                && p.sent >= p.cluster.min_packets
                && p.bytes >= p.cluster.min_bytes;
            if done {
                probing = None;
            }
        } else {
            budget += s.pacing_factor * media_rate * TICK_US as f64 / 8e6;
            while backlog >= 1.0 && budget > 0.0 {
                let size = (backlog.ceil() as usize).min(PACKET);
                send(size, None, &mut seq);
                backlog -= size as f64;
                budget -= size as f64;
            }
            if backlog < 1.0 {
                budget = budget.min(PACKET as f64);
            }
        }
        // Arrivals, and feedback every 50 ms.
        while in_flight.front().is_some_and(|(a, _)| *a <= t) {
            let (arrival, wire_seq) = in_flight.pop_front().unwrap();
            recorder.record(wire_seq, at(arrival));
        }
        if tick % (s.feedback_ms * 1000 / TICK_US) == 0 {
            feedback_buf.clear();
            recorder.build_feedback(now, 1, 2, &mut feedback_buf);
            for p in feedback_packets(&feedback_buf) {
                feedback_in_flight.push_back((t + link.prop_us, p.to_vec()));
            }
        }
        if tick % (50_000 / TICK_US) == 0 {
            let sample = Sample {
                t: t / 1e6,
                estimate: est.estimate().as_bps() as f64,
                queue_ms: link.queue_delay_ms(t),
            };
            samples.push(sample);
            if tick % (500_000 / TICK_US) == 0 {
                println!(
                    "{:5.1} {:7.3}  {:6.3}  {:6.3}  {:6.3} {:5.0}ms {:4.1}% {:<10} {:?}",
                    sample.t,
                    sample.estimate / 1e6,
                    est.delay_based_estimate().as_bps() as f64 / 1e6,
                    est.loss_based_estimate().as_bps() as f64 / 1e6,
                    est.acknowledged_bitrate()
                        .map_or(0.0, |b| b.as_bps() as f64 / 1e6),
                    sample.queue_ms,
                    est.loss_rate() * 100.0,
                    format!("{:?}", est.state()),
                    est.rtt().map(|r| r.as_millis()),
                );
            }
        }
    }
    println!("    stats: {:?}", est.stats());
    samples
}

fn at_time(samples: &[Sample], t: f64) -> Sample {
    *samples
        .iter()
        .min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
        .unwrap()
}

fn in_range(samples: &[Sample], from: f64, to: f64) -> impl Iterator<Item = &Sample> {
    samples
        .iter()
        .filter(move |s| s.t >= from - 1e-9 && s.t <= to + 1e-9)
}

fn mean_estimate(samples: &[Sample], from: f64, to: f64) -> f64 {
    let v: Vec<f64> = in_range(samples, from, to).map(|s| s.estimate).collect();
    v.iter().sum::<f64>() / v.len() as f64
}

/// When the estimate first reached `level` (s).
fn first_reaching(samples: &[Sample], from: f64, level: f64) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.t >= from && s.estimate >= level)
        .map(|s| s.t)
}

#[test]
fn bandwidth_estimator_ramps_up_to_2_5_mbps_within_5_s() {
    let s = Scenario::new(
        "ramp-up on 4 Mbit/s from 300 kbit/s",
        12.0,
        vec![(0.0, 4e6)],
    );
    let samples = run(&s);
    let reached = first_reaching(&samples, 0.0, 2.5e6);
    println!("    reached 2.5 Mbit/s at {reached:?} s");
    assert!(reached.is_some_and(|t| t <= 5.0), "reached at {reached:?}");
    // And it stays there (the whole 5–12 s), without a standing queue.
    let low = in_range(&samples, 5.0, 12.0)
        .map(|s| s.estimate)
        .fold(f64::MAX, f64::min);
    assert!(low >= 2.5e6, "dipped to {low}");
    assert!(mean_estimate(&samples, 5.0, 12.0) <= 4.2e6);
    let worst_queue = in_range(&samples, 5.0, 12.0)
        .map(|s| s.queue_ms)
        .fold(0.0, f64::max);
    assert!(worst_queue < 100.0, "queue {worst_queue} ms");
}

fn step_scenario(up: f64) -> (Scenario, f64, f64) {
    let down = 15.0;
    let s = Scenario::new(
        "step 4 → 0.8 → 4 Mbit/s",
        up + 12.0,
        vec![(0.0, 4e6), (down, 0.8e6), (up, 4e6)],
    );
    (s, down, up)
}

#[test]
fn bandwidth_estimator_follows_a_step_down_within_2_s() {
    let (s, down, up) = step_scenario(30.0);
    let samples = run(&s);
    let before = at_time(&samples, down);
    assert!(
        before.estimate >= 2.5e6,
        "converged before the step: {before:?}"
    );
    let after = at_time(&samples, down + 2.0);
    println!("    at the step +2 s: {after:?}");
    assert!(after.estimate <= 0.8e6, "estimate {after:?}");
    assert!(after.queue_ms < 100.0, "queue {after:?}");
    let fit = in_range(&samples, down, up)
        .find(|s| s.estimate <= 0.8e6)
        .unwrap();
    let drained = in_range(&samples, down + 0.5, up)
        .find(|s| s.queue_ms < 100.0)
        .unwrap();
    println!(
        "    fits at +{:.2} s, queue < 100 ms at +{:.2} s",
        fit.t - down,
        drained.t - down
    );
    // Then it stays near the new capacity (GCC's sawtooth overshoots it a little), the
    // queue under control, until the step up.
    for s in in_range(&samples, down + 2.0, up) {
        assert!(s.estimate <= 0.9e6, "{s:?}");
        assert!(s.queue_ms < 100.0, "{s:?}");
    }
    let mean = mean_estimate(&samples, down + 2.0, up);
    assert!(mean >= 0.55e6, "too conservative: {mean}");
}

#[test]
fn bandwidth_estimator_recovers_after_a_step_up_within_10_s() {
    // The periodic probe is what finds the new capacity: try several phases against it.
    for up in [30.0, 31.25, 32.5, 33.75] {
        let (s, _, up) = step_scenario(up);
        let samples = run(&s);
        let reached = first_reaching(&samples, up, 2.5e6);
        println!("    recovered to 2.5 Mbit/s at {reached:?} s (step up at {up} s)");
        assert!(reached.is_some_and(|t| t <= up + 10.0), "{reached:?}");
        let low = in_range(&samples, up + 10.0, up + 12.0)
            .map(|s| s.estimate)
            .fold(f64::MAX, f64::min);
        assert!(low >= 2.5e6, "{low}");
    }
}

#[test]
fn bandwidth_estimator_tolerates_5_percent_random_loss() {
    let mut s = Scenario::new("5% random loss on 4 Mbit/s", 25.0, vec![(0.0, 4e6)]);
    s.loss = 0.05;
    s.seed = 7;
    let samples = run(&s);
    let mean = mean_estimate(&samples, 5.0, 25.0);
    println!("    mean estimate 5–25 s: {:.3} Mbit/s", mean / 1e6);
    assert!(mean >= 2e6, "{mean}");
    // The loss itself is measured.
    let low = in_range(&samples, 5.0, 25.0)
        .map(|s| s.estimate)
        .fold(f64::MAX, f64::min);
    println!("    lowest: {:.3} Mbit/s", low / 1e6);
}

#[test]
fn bandwidth_estimator_reduces_on_heavy_random_loss() {
    // The loss controller must still act on heavy loss (here not congestion, but > 10 %).
    let mut s = Scenario::new("20% random loss on 4 Mbit/s", 15.0, vec![(0.0, 4e6)]);
    s.loss = 0.2;
    let samples = run(&s);
    let mean = mean_estimate(&samples, 10.0, 15.0);
    assert!(mean < 1.5e6, "{mean}");
}

#[test]
fn bandwidth_estimator_extends_wire_sequence_numbers() {
    assert_eq!(extend_seq(70_000, 70_000u64 as u16), 70_000);
    assert_eq!(extend_seq(70_000, (70_000u64 - 5) as u16), 69_995);
    assert_eq!(extend_seq(65_530, 3), 65_539, "forward across the wrap");
    assert_eq!(
        extend_seq(65_539, 65_530),
        65_530,
        "backward across the wrap"
    );
    assert_eq!(
        extend_seq(3, 65_535),
        u64::MAX,
        "before zero: wraps, matches nothing"
    );
    assert_eq!(extend_seq(u64::MAX, 1), 1, "no overflow");
}

#[test]
fn bandwidth_estimator_measures_rtt_and_loss_from_arrivals() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut est = BandwidthEstimator::new(
        t0,
        EstimatorConfig {
            probing: false,
            ..Default::default()
        },
    );
    assert_eq!((est.rtt(), est.loss_rate()), (None, 0.0));
    assert_eq!(est.estimate(), Bitrate::kbps(300));
    assert_eq!(est.poll_probe(t0), None, "probing disabled");
    // 10 packets every 20 ms (500 B each: 200 kbit/s), 40 ms one way, one in ten lost;
    // feedback every 100 ms, arriving 40 ms after the last arrival it reports.
    let mut seq = 1000u64;
    for batch in 0..30u64 {
        let mut statuses = Vec::new();
        for i in 0..5u64 {
            let sent = batch * 100 + i * 20;
            est.on_packet_sent(SentPacket {
                transport_seq: seq,
                size: 500,
                send_time: ms(sent),
                probe_cluster: None,
            });
            let lost = seq % 10 == 3;
            statuses.push((seq, (!lost).then_some((sent as i64 + 40) * 1000 + 123_456)));
            seq += 1;
        }
        est.on_feedback_arrivals(ms(batch * 100 + 80 + 40 + 40), statuses);
    }
    let rtt = est.rtt().unwrap().as_millis();
    assert!((78..=82).contains(&rtt), "{rtt} ms");
    assert!((est.loss_rate() - 0.1).abs() < 0.03, "{}", est.loss_rate());
    assert_eq!(est.state(), DelayState::Normal);
    let acked = est.acknowledged_bitrate().unwrap().as_bps();
    assert!((160_000..=200_000).contains(&acked), "{acked}");
    let stats = est.stats();
    assert_eq!((stats.received, stats.lost, stats.unknown), (135, 15, 0));
    // A duplicate report changes nothing.
    est.on_feedback_arrivals(ms(3100), [(1000, Some(1)), (1003, None)]);
    assert_eq!(est.stats().duplicates, 1);
    assert_eq!(est.stats().lost, 15);
}

#[test]
fn bandwidth_estimator_survives_garbage_feedback() {
    let t0 = Instant::now();
    let config = EstimatorConfig::default();
    let mut est = BandwidthEstimator::new(t0, config);
    let bounds = config.min.as_bps()..=config.max.as_bps();
    let mut rng = Rng(0x5eed);
    // Feedback before anything was sent, and on sequence numbers never sent.
    est.on_feedback_arrivals(t0, [(5, Some(1)), (6, None), (u64::MAX, Some(i64::MAX))]);
    let mut valid = Vec::new();
    let mut recorder = TwccRecorder::new();
    for i in 0..3000u64 {
        let send_time = t0 + Duration::from_millis(i);
        est.on_packet_sent(SentPacket {
            transport_seq: i,
            size: 1200,
            send_time,
            probe_cluster: (i % 100 < 8).then_some(1 + (i / 100) as u32),
        });
        recorder.record(
            i as u16,
            send_time + Duration::from_millis(30 + rng.next() % 50),
        );
        if i % 50 == 49 {
            let mut out = Vec::new();
            recorder.build_feedback(send_time, 1, 2, &mut out);
            valid.extend(feedback_packets(&out).map(<[u8]>::to_vec));
        }
    }
    // Extreme arrivals: the clamps keep every subtraction in range.
    est.on_feedback_arrivals(
        t0 + Duration::from_secs(1),
        [
            (0, Some(i64::MAX)),
            (1, Some(i64::MIN)),
            (2, Some(0)),
            (3, None),
            (4, Some(-1_000_000_000_000)),
            (2999, Some(i64::MAX / 2)),
        ],
    );
    for round in 0..20_000u32 {
        // `now` jumps around, backwards included.
        let now = t0 + Duration::from_micros(rng.next() % 200_000_000);
        match rng.next() % 5 {
            0 => {
                let statuses: Vec<_> = (0..rng.next() % 64)
                    .map(|_| {
                        let seq = match rng.next() % 3 {
                            0 => rng.next() % 3000,
                            1 => rng.next(),
                            _ => 3000 + rng.next() % 100_000,
                        };
                        let arrival = match rng.next() % 4 {
                            0 => None,
                            1 => Some(rng.next() as i64),
                            _ => Some((rng.next() % 10_000_000) as i64),
                        };
                        (seq, arrival)
                    })
                    .collect();
                est.on_feedback_arrivals(now, statuses);
            }
            1 | 2 => {
                // Valid wire feedback, possibly bit-flipped, possibly replayed.
                let mut packet = valid[rng.next() as usize % valid.len()].clone();
                if rng.next().is_multiple_of(2) {
                    for _ in 0..1 + rng.next() % 4 {
                        let at = rng.next() as usize % packet.len();
                        packet[at] ^= 1 << (rng.next() % 8);
                    }
                }
                if let Ok(fb) = TwccFeedback::parse(&packet) {
                    est.on_feedback(now, &fb);
                }
            }
            3 => est.on_packet_sent(SentPacket {
                transport_seq: match rng.next() % 3 {
                    0 => rng.next(),
                    _ => 3000 + u64::from(round),
                },
                size: match rng.next() % 3 {
                    0 => usize::MAX,
                    1 => 0,
                    _ => 1200,
                },
                send_time: now,
                probe_cluster: rng.next().is_multiple_of(4).then(|| rng.next() as u32),
            }),
            _ => {
                if let Some(cluster) = est.poll_probe(now) {
                    assert!(cluster.target_bitrate <= config.max);
                }
            }
        }
        assert!(
            bounds.contains(&est.estimate().as_bps()),
            "{:?}",
            est.estimate()
        );
        let _ = (
            est.rtt(),
            est.loss_rate(),
            est.state(),
            est.queueing_delay(),
        );
    }
    // Memory stayed bounded.
    assert!(est.history.len() <= HISTORY_SIZE);
    assert!(est.results.capacity() <= HISTORY_SIZE);
    assert!(est.loss.history_len() <= loss_based::MAX_HISTORY);
    println!("    garbage stats: {:?}", est.stats());
}

/// Robustness across links (buffer sizes, RTTs, jitter, loss, pacing, feedback intervals):
/// every configuration ramps up within 5 s and recovers from the step within 10 s. Prints a
/// summary line per configuration (`--nocapture`).
#[test]
fn bandwidth_estimator_explore() {
    let mut lines = Vec::new();
    for (i, (queue, prop, pacing, fb, jitter, loss)) in [
        (150_000, 25.0, 1.5, 50, 0.0, 0.0),
        (150_000, 25.0, 1.5, 50, 2.0, 0.0),
        (150_000, 25.0, 1.5, 50, 10.0, 0.0),
        (150_000, 25.0, 1.5, 50, 0.0, 0.02),
        (150_000, 25.0, 1.5, 50, 5.0, 0.05),
        (30_000, 25.0, 1.5, 50, 0.0, 0.0),
        (64_000, 25.0, 1.5, 50, 0.0, 0.0),
        (400_000, 25.0, 1.5, 50, 0.0, 0.0),
        (150_000, 10.0, 1.5, 50, 0.0, 0.0),
        (150_000, 50.0, 1.5, 50, 0.0, 0.0),
        (150_000, 100.0, 1.5, 50, 0.0, 0.0),
        (150_000, 25.0, 1.0, 50, 0.0, 0.0),
        (150_000, 25.0, 4.0, 50, 0.0, 0.0),
        (150_000, 25.0, 1.5, 100, 0.0, 0.0),
        (150_000, 25.0, 1.5, 20, 0.0, 0.0),
    ]
    .into_iter()
    .enumerate()
    {
        let (mut s, down, up) = step_scenario(32.5);
        s.queue_limit = queue;
        s.prop_ms = prop;
        s.pacing_factor = pacing;
        s.feedback_ms = fb;
        s.jitter_ms = jitter;
        s.loss = loss;
        let samples = run(&s);
        let ramp = first_reaching(&samples, 0.0, 2.5e6);
        let fit = in_range(&samples, down, up)
            .find(|s| s.estimate <= 0.8e6)
            .map(|s| s.t - down);
        let drained = in_range(&samples, down + 0.3, up)
            .find(|s| s.queue_ms < 100.0)
            .map(|s| s.t - down);
        let peak_queue = in_range(&samples, down, up)
            .map(|s| s.queue_ms)
            .fold(0.0, f64::max);
        let steady_queue = in_range(&samples, down + 3.0, up)
            .map(|s| s.queue_ms)
            .fold(0.0, f64::max);
        let recovered = first_reaching(&samples, up, 2.5e6).map(|t| t - up);
        assert!(
            ramp.is_some_and(|t| t < 5.0),
            "config {i}: ramp-up {ramp:?}"
        );
        assert!(
            recovered.is_some_and(|t| t < 10.0),
            "config {i}: recovery {recovered:?}"
        );
        lines.push(format!(
            "{i:2} queue {:4} KB prop {:4} ms pacing {pacing} fb {fb:3} ms jitter {jitter} loss {loss}: ramp {ramp:?} mean(5-15) {:.2} | fit +{fit:.2?} drained +{drained:.2?} peak {peak_queue:.0} ms steady max {steady_queue:.0} ms mean {:.2} | up +{recovered:.2?} mean(up+5..) {:.2}",
            queue / 1000,
            prop,
            mean_estimate(&samples, 5.0, 15.0) / 1e6,
            mean_estimate(&samples, down + 2.0, up) / 1e6,
            mean_estimate(&samples, up + 5.0, up + 12.0) / 1e6,
        ));
    }
    for demand in [0.5e6, 1e6, 2.5e6] {
        let mut s = Scenario::new("app-limited", 30.0, vec![(0.0, 4e6)]);
        s.demand = demand;
        let samples = run(&s);
        lines.push(format!(
            "demand {:.1}: mean 5-30 {:.2} min {:.2} reached 2.5 at {:?}",
            demand / 1e6,
            mean_estimate(&samples, 5.0, 30.0) / 1e6,
            in_range(&samples, 5.0, 30.0)
                .map(|s| s.estimate)
                .fold(f64::MAX, f64::min)
                / 1e6,
            first_reaching(&samples, 0.0, 2.5e6)
        ));
    }
    for l in lines {
        println!("{l}");
    }
}

/// The send history holds what feedback may still be about (2 s of packets not reported on)
/// and no more: small for a typical subscriber, larger while feedback is missing, never above
/// its bound.
#[test]
fn the_send_history_grows_only_with_what_is_unreported() {
    let t0 = Instant::now();
    let mut est = BandwidthEstimator::new(t0, EstimatorConfig::default());
    let send = |est: &mut BandwidthEstimator, seq: u64| {
        est.on_packet_sent(SentPacket {
            transport_seq: seq,
            size: 1200,
            send_time: t0 + Duration::from_micros(seq * 5_000),
            probe_cluster: None,
        });
    };
    // 200 packets a second (2 Mbit/s) for 10 s, each 50 ms of it reported on 50 ms later.
    for seq in 0..2_000u64 {
        send(&mut est, seq);
        if seq % 10 == 9 && seq >= 19 {
            let now = t0 + Duration::from_micros(seq * 5_000);
            est.on_feedback_arrivals(
                now,
                (seq - 19..seq - 9).map(|s| (s, Some((s * 5_000 + 20_000) as i64))),
            );
        }
    }
    assert_eq!(
        est.history.len(),
        INITIAL_HISTORY,
        "feedback keeps up: no growth"
    );
    assert_eq!(
        est.stats().unknown,
        0,
        "every reported packet was still known"
    );
    // Feedback stops: 2 s of unreported packets (400) are kept.
    for seq in 2_000..4_000u64 {
        send(&mut est, seq);
    }
    assert_eq!(est.history.len(), 512);
    // At 10,000 packets a second without feedback the ring stops at its bound.
    let mut est = BandwidthEstimator::new(t0, EstimatorConfig::default());
    for seq in 0..40_000u64 {
        est.on_packet_sent(SentPacket {
            transport_seq: seq,
            size: 1200,
            send_time: t0 + Duration::from_micros(seq * 100),
            probe_cluster: None,
        });
    }
    assert_eq!(est.history.len(), HISTORY_SIZE);
}
