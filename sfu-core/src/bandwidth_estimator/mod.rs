//! Send-side bandwidth estimation toward one subscriber, sans-I/O: Google Congestion Control
//! (draft-ietf-rmcat-gcc-02) as libwebrtc's goog_cc implements it over transport-wide
//! congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).
//!
//! The SFU stamps a transport-wide sequence number on every packet it sends to a subscriber
//! and tells [`BandwidthEstimator::on_packet_sent`] (sequence number, size, send time, probe
//! cluster). The subscriber's browser reports which of them arrived and when
//! ([`crate::twcc::TwccFeedback`]); [`BandwidthEstimator::on_feedback`] matches the reports
//! with the send history and runs the estimators. [`BandwidthEstimator::estimate`] is the
//! bandwidth the layer selection should fit in; [`BandwidthEstimator::poll_probe`] asks the
//! sender to send a probe burst now and then. Nothing reads a clock: every input takes `now`.
//!
//! ## The pipeline (one feedback)
//!
//! 1. **Matching** — each 16-bit sequence number is extended against the highest sent
//!    (closest candidate, so feedback must be about the last 32768 packets, which the
//!    history bound guarantees) and looked up in the send history, a ring that starts at
//!    [`INITIAL_HISTORY`] packets and doubles, up to [`HISTORY_SIZE`], only when a packet
//!    would overwrite one sent less than 2 s ago and not yet reported on. Unknown and already-acknowledged sequence numbers are
//!    skipped; a packet reported lost is counted once.
//! 2. **RTT** — per feedback, min over its packets of (now − send time) − (last arrival in the
//!    feedback − arrival): the round trip without the time the receiver held the report.
//! 3. **Acknowledged bitrate** — received bytes over the last 250 ms of arrival time (10 ms
//!    bins). Behind a standing queue the last 100 ms are used too (the lower of the two):
//!    arrivals then come at exactly the bottleneck rate, and the short window does not mix in
//!    arrivals from before a capacity drop.
//! 4. **Standing queue** — the one-way delay (arrival − send, clocks unsynchronised) of the
//!    newest acknowledged packet above its minimum over the last 10 s, plus what was sent since
//!    beyond what the bottleneck drains ([`BandwidthEstimator::queueing_delay`]).
//! 5. **Delay-based estimate** — [`trendline`]: 5 ms send-time groups, trendline of the
//!    accumulated delay variation, adaptive-threshold overuse detector; [`aimd`]: the rate
//!    controller driven by the detector and the acknowledged bitrate.
//! 6. **Probes** — [`probe`]: a completed cluster's send and receive rates give a result that
//!    raises the estimate at once.
//! 7. **Loss-based estimate** — [`loss_based`]: loss fraction per ≥ 1 s window; < 2 %
//!    increase, 2–10 % hold, > 10 % decrease by (1 − 0.5 × loss).
//! 8. The estimate is min(delay-based, loss-based), scaled down while a **drain** is on,
//!    clamped to the configured bounds.
//!
//! ## Beyond GCC: draining the queue after a capacity drop
//!
//! GCC's multiplicative decrease to 0.85 × the acknowledged rate stops a queue from growing
//! but empties it at only 15 % of the capacity. When the capacity falls fivefold the detector
//! needs a couple of hundred milliseconds of (delayed) feedback, and by then the bottleneck
//! holds most of a second of data, which would take seconds to go. So a delay-based decrease
//! that finds a standing queue of 50 ms or more also scales the estimate by (1 − queue / 1 s),
//! at least 0.5, until the predicted queue is below 30 ms; then the plain AIMD value applies
//! again (the loss-based estimate is capped by the unscaled one, so the drain leaves no
//! lasting mark). A drain that cannot empty the queue — another flow keeps the buffer full —
//! ends after 2 s plus twice the queue it started with, and turns drains off for 30 s so the
//! stream is not starved by a competing TCP flow. The detector itself stays GCC's.
//!
//! ## What the integrator does
//!
//! * Keep one estimator per subscriber transport, and a 64-bit transport sequence counter:
//!   each packet sent to the subscriber (media, RTX, padding, probes) gets the next value;
//!   its low 16 bits go in the transport-wide-cc header extension. Call
//!   [`BandwidthEstimator::on_packet_sent`] with the 64-bit value, the size on the wire
//!   (at least the RTP packet with its SRTP tag; UDP/IP overhead may be added) and the
//!   actual send time.
//! * Hand every transport-wide feedback packet from that subscriber to
//!   [`BandwidthEstimator::on_feedback`] (locate them with [`crate::twcc::feedback_packets`]):
//!   the estimator extends the 16-bit sequence numbers itself.
//! * From the pacer's tick (every 5–20 ms) and after each feedback, call
//!   [`BandwidthEstimator::poll_probe`]; for each cluster returned, send at its target rate
//!   for its duration and packet count — media first, then RTX of recently sent packets or
//!   padding-only packets — tagging every packet with the cluster id.
//! * Pick layers so their total fits [`BandwidthEstimator::estimate`] (which counts what was
//!   passed as packet sizes: RTP payload rates are a few percent lower). Optionally tell the
//!   estimator the most the subscriber could use ([`BandwidthEstimator::set_desired_bitrate`])
//!   so periodic probing stops once that fits.
//!
//! No allocation at steady state: the history only grows while the rate rises, the per-feedback scratch
//! vector is reused (bounded by the history size), the detectors use fixed arrays and the
//! loss controller's minimum history is bounded.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod aimd;
pub mod loss_based;
pub mod probe;
#[cfg(test)]
mod tests;
pub mod trendline;

use std::fmt;
use std::time::{Duration, Instant};

pub use probe::{MIN_PROBE_DURATION, MIN_PROBE_PACKETS, ProbeCluster};

use aimd::AimdRateControl;
use loss_based::LossBasedControl;
use probe::{ProbeBitrateEstimator, ProbeContext, ProbeController};
use trendline::{InterArrival, Trendline};

use crate::twcc::TwccFeedback;

/// Packets the send history remembers at most (a power of two). Feedback on older packets is
/// ignored. At 1200-byte packets that is 20 s at 4 Mbit/s, 2 s at 40 Mbit/s.
pub const HISTORY_SIZE: usize = 8192;
/// Packets the send history starts with: a fixed 8192-entry ring was 384 KiB for every
/// congestion-controlled subscriber, most of it never used (2 s at 2 Mbit/s is ~400 packets).
pub const INITIAL_HISTORY: usize = 256;
/// Without feedback on any packet for this long the delay detector starts over (µs).
const STREAM_TIMEOUT_US: i64 = 2_000_000;
/// Window of the acknowledged bitrate, in bins.
const ACK_WINDOW_BINS: i64 = 25;
/// Bin width of the acknowledged bitrate (µs).
const ACK_BIN_US: i64 = 10_000;
/// Short window (bins) of the acknowledged bitrate, used for the capacity behind a standing
/// queue (arrivals then come at the bottleneck rate).
const ACK_SHORT_WINDOW_BINS: i64 = 10;
/// Bins kept (≥ the window plus one).
const ACK_BINS: usize = 32;
/// Arrival times are clamped to ± this (µs) so that no arithmetic on them overflows.
const MAX_ABS_TIME_US: i64 = 1 << 50;
/// Standing queue (µs) above which a delay-based decrease also drains it.
const DRAIN_MIN_QUEUE_US: i64 = 50_000;
/// The drain aims to empty the queue within this (µs): the estimate is scaled by
/// (1 − queue / this), at least [`DRAIN_MIN_FACTOR`].
const DRAIN_TARGET_US: i64 = 1_000_000;
/// Deepest drain scaling.
const DRAIN_MIN_FACTOR: f64 = 0.5;
/// The drain ends once the standing queue is below this (µs)…
const DRAIN_END_QUEUE_US: i64 = 30_000;
/// …or after this long plus twice the queue it started with (µs)…
const DRAIN_MAX_US: i64 = 2_000_000;
/// …and never after this long (µs).
const DRAIN_LIMIT_US: i64 = 6_000_000;
/// A drain that timed out met a queue it could not empty (another flow's, e.g. TCP filling
/// the buffer): no drain for this long (µs), so as not to starve against it.
const DRAIN_SUPPRESS_US: i64 = 30_000_000;
/// The base one-way delay is the minimum over this many buckets…
const BASE_DELAY_BUCKETS: usize = 10;
/// …of this length (µs).
const BASE_DELAY_BUCKET_US: i64 = 1_000_000;
/// Range of the 24-bit TWCC reference time.
const REFERENCE_RANGE: i64 = 1 << 24;
/// Duration of one reference time unit (µs).
const REFERENCE_UNIT_US: i64 = 64_000;

/// A bitrate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bitrate(pub u64);

impl Bitrate {
    /// `bps` bits per second.
    pub const fn bps(bps: u64) -> Self {
        Self(bps)
    }

    /// `kbps` kilobits (1000 bits) per second.
    pub const fn kbps(kbps: u64) -> Self {
        Self(kbps * 1000)
    }

    /// Bits per second.
    pub const fn as_bps(self) -> u64 {
        self.0
    }

    /// Bytes that take `duration` at this rate.
    pub fn bytes_in(self, duration: Duration) -> u64 {
        (u128::from(self.0) * duration.as_micros() / 8_000_000).min(u128::from(u64::MAX)) as u64
    }

    fn from_f64(bps: f64) -> Self {
        if bps.is_finite() && bps > 0.0 {
            Self(bps.min(u64::MAX as f64) as u64)
        } else {
            Self(0)
        }
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} Mbit/s", self.0 as f64 / 1e6)
    }
}

/// Bounds and start of the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimatorConfig {
    /// The estimate before any feedback.
    pub initial: Bitrate,
    /// The estimate never goes below this.
    pub min: Bitrate,
    /// The estimate never goes above this, nor do probes.
    pub max: Bitrate,
    /// Whether [`BandwidthEstimator::poll_probe`] ever asks for probes.
    pub probing: bool,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        Self {
            initial: Bitrate::kbps(300),
            min: Bitrate::kbps(30),
            max: Bitrate::kbps(10_000),
            probing: true,
        }
    }
}

/// One packet sent toward the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentPacket {
    /// Extended (64-bit) transport-wide sequence number; its low 16 bits are on the wire.
    pub transport_seq: u64,
    /// Size on the wire, bytes.
    pub size: usize,
    /// When it was handed to the socket.
    pub send_time: Instant,
    /// The probe cluster it belongs to ([`ProbeCluster::id`]), if sent for one.
    pub probe_cluster: Option<u32>,
}

/// The delay detector's hypothesis about the bottleneck queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DelayState {
    /// Delay stable: the rate may increase.
    #[default]
    Normal,
    /// Delay growing: the queue fills, the rate is reduced.
    Overusing,
    /// Delay shrinking: a queue drains, the rate is held.
    Underusing,
}

/// Counters of what feedback contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedbackStats {
    /// Feedback calls.
    pub feedbacks: u64,
    /// Statuses reporting a packet received (first report).
    pub received: u64,
    /// Statuses reporting a packet lost (first report).
    pub lost: u64,
    /// Statuses about sequence numbers not in the history.
    pub unknown: u64,
    /// Statuses about packets already reported received.
    pub duplicates: u64,
}

/// Acknowledgement state of a sent packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckStatus {
    Unacked,
    Lost,
    Received,
}

/// One send-history entry.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    send_us: i64,
    size: u32,
    /// Bytes sent up to and including this packet.
    cum_bytes: u64,
    probe: Option<u32>,
    status: AckStatus,
}

const EMPTY_SENT: Sent = Sent {
    seq: u64::MAX,
    send_us: 0,
    size: 0,
    cum_bytes: 0,
    probe: None,
    status: AckStatus::Unacked,
};

/// A packet reported received.
#[derive(Debug, Clone, Copy)]
struct PacketResult {
    send_us: i64,
    arrival_us: i64,
    size: u32,
    cum_bytes: u64,
    probe: Option<u32>,
}

/// Received bytes over a sliding window of arrival time, in fixed bins.
#[derive(Debug, Clone)]
struct AckedBitrate {
    bins: [u64; ACK_BINS],
    /// Bin of the latest arrival.
    head: Option<i64>,
    /// First bin of the current uninterrupted run of arrivals.
    first: i64,
}

impl Default for AckedBitrate {
    fn default() -> Self {
        Self {
            bins: [0; ACK_BINS],
            head: None,
            first: 0,
        }
    }
}

impl AckedBitrate {
    fn slot(&mut self, bin: i64) -> Option<&mut u64> {
        self.bins.get_mut(bin.rem_euclid(ACK_BINS as i64) as usize)
    }

    fn restart(&mut self, bin: i64) {
        self.bins = [0; ACK_BINS];
        self.head = Some(bin);
        self.first = bin;
    }

    fn update(&mut self, arrival_us: i64, size: u64) {
        let bin = arrival_us.div_euclid(ACK_BIN_US);
        match self.head {
            None => self.restart(bin),
            Some(head) if bin > head => {
                if bin - head > ACK_WINDOW_BINS {
                    // Nothing arrived for a whole window: a new run of traffic.
                    self.restart(bin);
                } else {
                    for b in head + 1..=bin {
                        if let Some(s) = self.slot(b) {
                            *s = 0;
                        }
                    }
                    self.head = Some(bin);
                }
            }
            Some(head) if head - bin >= ACK_BINS as i64 => {
                if head - bin > 100 * ACK_BINS as i64 {
                    self.restart(bin); // the receiver clock went far back
                } else {
                    return; // too old
                }
            }
            Some(_) => {}
        }
        if let Some(s) = self.slot(bin) {
            *s = s.saturating_add(size);
        }
    }

    /// Bit/s over the last complete window, if one has been observed.
    fn rate(&self) -> Option<f64> {
        self.rate_over(ACK_WINDOW_BINS)
    }

    /// Bit/s over the last `bins` complete bins.
    fn rate_over(&self, bins: i64) -> Option<f64> {
        let head = self.head?;
        if head - self.first < bins {
            return None;
        }
        let bytes: u64 = (head - bins..head)
            .filter_map(|b| self.bins.get(b.rem_euclid(ACK_BINS as i64) as usize))
            .sum();
        Some(bytes as f64 * 8.0 * 1e6 / (bins * ACK_BIN_US) as f64)
    }
}

/// Windowed minimum of the one-way delay (receiver clock − sender clock, so up to an unknown
/// constant offset): the propagation delay without queueing.
#[derive(Debug, Clone, Default)]
struct BaseDelay {
    /// Per-bucket minimum, with the bucket number.
    buckets: [Option<(i64, i64)>; BASE_DELAY_BUCKETS],
}

impl BaseDelay {
    fn update(&mut self, now: i64, owd: i64) {
        let bucket = now.div_euclid(BASE_DELAY_BUCKET_US);
        let index = bucket.rem_euclid(BASE_DELAY_BUCKETS as i64) as usize;
        if let Some(slot) = self.buckets.get_mut(index) {
            *slot = Some(match *slot {
                Some((b, min)) if b == bucket => (b, min.min(owd)),
                _ => (bucket, owd),
            });
        }
    }

    fn min(&self, now: i64) -> Option<i64> {
        let bucket = now.div_euclid(BASE_DELAY_BUCKET_US);
        self.buckets
            .iter()
            .flatten()
            .filter(|(b, _)| bucket.saturating_sub(*b) < BASE_DELAY_BUCKETS as i64)
            .map(|&(_, min)| min)
            .min()
    }
}

/// Send-side bandwidth estimator toward one subscriber. See the module documentation.
#[derive(Debug, Clone)]
pub struct BandwidthEstimator {
    epoch: Instant,
    config: EstimatorConfig,
    /// A ring indexed by sequence number (its length a power of two).
    history: Vec<Sent>,
    highest_sent: Option<u64>,
    /// Highest sequence number feedback reported on (received or lost).
    highest_reported: Option<u64>,
    /// Bytes sent so far.
    sent_bytes: u64,
    /// Scratch: packets reported received by the feedback being processed.
    results: Vec<PacketResult>,
    fb_lost: u64,
    fb_expected: u64,
    last_reference: Option<i64>,
    /// Latest `now` seen (µs since `epoch`): time never goes back inside.
    last_now: i64,
    inter_arrival: InterArrival,
    trendline: Trendline,
    acked: AckedBitrate,
    aimd: AimdRateControl,
    loss: LossBasedControl,
    probe_estimator: ProbeBitrateEstimator,
    probe_controller: ProbeController,
    rtt_us: Option<f64>,
    last_packet_feedback: Option<i64>,
    base_delay: BaseDelay,
    /// Standing queue (µs) the newest acknowledged packet met: its one-way delay above the
    /// base.
    measured_queue_us: i64,
    /// Standing queue now (µs): the measured one plus what was sent since at a rate above
    /// the capacity.
    queue_delay_us: i64,
    /// While draining a standing queue: (deadline, factor applied to the estimate).
    drain: Option<(i64, f64)>,
    /// No drain before this (µs).
    drain_suppressed_until: i64,
    delay_based: f64,
    estimate: f64,
    desired: Option<f64>,
    stats: FeedbackStats,
}

impl BandwidthEstimator {
    /// A new estimator at `config.initial` (bounds normalised so min ≤ initial ≤ max).
    pub fn new(now: Instant, config: EstimatorConfig) -> Self {
        let min = config.min.0.max(1);
        let max = config.max.0.max(min);
        let initial = config.initial.0.clamp(min, max);
        let config = EstimatorConfig {
            initial: Bitrate(initial),
            min: Bitrate(min),
            max: Bitrate(max),
            probing: config.probing,
        };
        let (initial, min, max) = (initial as f64, min as f64, max as f64);
        Self {
            epoch: now,
            config,
            history: vec![EMPTY_SENT; INITIAL_HISTORY],
            highest_sent: None,
            highest_reported: None,
            sent_bytes: 0,
            results: Vec::new(),
            fb_lost: 0,
            fb_expected: 0,
            last_reference: None,
            last_now: 0,
            inter_arrival: InterArrival::default(),
            trendline: Trendline::default(),
            acked: AckedBitrate::default(),
            aimd: AimdRateControl::new(initial, min, max),
            loss: LossBasedControl::new(initial, min, max),
            probe_estimator: ProbeBitrateEstimator::default(),
            probe_controller: ProbeController::new(config.probing, initial, max),
            rtt_us: None,
            last_packet_feedback: None,
            base_delay: BaseDelay::default(),
            measured_queue_us: 0,
            queue_delay_us: 0,
            drain: None,
            drain_suppressed_until: 0,
            delay_based: initial,
            estimate: initial,
            desired: None,
            stats: FeedbackStats::default(),
        }
    }

    /// The configuration in effect (normalised).
    pub fn config(&self) -> EstimatorConfig {
        self.config
    }

    /// Records a packet sent toward the subscriber. Allocates only when the history must grow.
    pub fn on_packet_sent(&mut self, packet: SentPacket) {
        let seq = packet.transport_seq;
        let send_us = self.micros(packet.send_time);
        let size = u32::try_from(packet.size).unwrap_or(u32::MAX);
        self.sent_bytes = self.sent_bytes.wrapping_add(u64::from(size));
        while self.history.len() < HISTORY_SIZE
            && self
                .history
                .get(history_index(seq, self.history.len()))
                .is_some_and(|old| {
                    old.seq != u64::MAX
                        && old.seq != seq
                        && old.status == AckStatus::Unacked
                        && send_us.saturating_sub(old.send_us) < STREAM_TIMEOUT_US
                })
        {
            self.grow_history();
        }
        let len = self.history.len();
        if let Some(slot) = self.history.get_mut(history_index(seq, len)) {
            *slot = Sent {
                seq,
                send_us,
                size,
                cum_bytes: self.sent_bytes,
                probe: packet.probe_cluster,
                status: AckStatus::Unacked,
            };
        }
        self.highest_sent = Some(self.highest_sent.map_or(seq, |h| h.max(seq)));
        self.probe_estimator
            .on_packet_sent(packet.probe_cluster, seq);
    }

    /// Processes one transport-wide feedback packet received at `now`.
    pub fn on_feedback(&mut self, now: Instant, feedback: &TwccFeedback<'_>) {
        let Some(highest) = self.highest_sent else {
            return;
        };
        let mut at = self
            .unwrap_reference(feedback.reference_time)
            .saturating_mul(REFERENCE_UNIT_US);
        for (seq, delta) in feedback.packets() {
            let arrival = delta.map(|d| {
                at = at.saturating_add(d);
                at
            });
            self.add_status(extend_seq(highest, seq), arrival);
        }
        self.finish_feedback(now);
    }

    /// Processes feedback in another form: statuses `(extended transport sequence number,
    /// arrival time in µs or None if lost)`. Arrival times are on the receiver's clock, in any
    /// base that stays the same across calls (only differences are used).
    pub fn on_feedback_arrivals(
        &mut self,
        now: Instant,
        statuses: impl IntoIterator<Item = (u64, Option<i64>)>,
    ) {
        for (seq, arrival) in statuses {
            self.add_status(seq, arrival);
        }
        self.finish_feedback(now);
    }

    /// The bandwidth estimate: min(delay-based, loss-based), within the configured bounds.
    pub fn estimate(&self) -> Bitrate {
        Bitrate::from_f64(self.estimate)
    }

    /// The delay-based estimate alone.
    pub fn delay_based_estimate(&self) -> Bitrate {
        Bitrate::from_f64(self.delay_based)
    }

    /// The loss-based estimate alone.
    pub fn loss_based_estimate(&self) -> Bitrate {
        Bitrate::from_f64(self.loss.target())
    }

    /// The acknowledged (received) bitrate over the last 250 ms of arrivals, once measured.
    pub fn acknowledged_bitrate(&self) -> Option<Bitrate> {
        self.acked.rate().map(Bitrate::from_f64)
    }

    /// Loss fraction (0–1) of the last complete loss window (≥ 1 s and ≥ 20 packets).
    pub fn loss_rate(&self) -> f64 {
        self.loss.loss()
    }

    /// Smoothed round-trip time measured from feedback, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt_us
            .map(|us| Duration::from_micros(us.max(0.0) as u64))
    }

    /// The standing queue at the bottleneck, as of the last feedback: the newest acknowledged
    /// packet's one-way delay above the minimum of the last ten seconds, plus the growth since
    /// (bytes sent after it beyond what the acknowledged rate drains).
    pub fn queueing_delay(&self) -> Duration {
        Duration::from_micros(self.queue_delay_us.max(0) as u64)
    }

    /// The delay detector's state.
    pub fn state(&self) -> DelayState {
        self.trendline.state()
    }

    /// Counters of the feedback processed so far.
    pub fn stats(&self) -> FeedbackStats {
        self.stats
    }

    /// The most the subscriber could use (e.g. the sum of the best layers it wants); periodic
    /// probing stops once the estimate reaches it. `None`: up to the configured maximum.
    pub fn set_desired_bitrate(&mut self, desired: Option<Bitrate>) {
        self.desired = desired.map(|d| d.0 as f64);
    }

    /// The next probe cluster to send, if one is due: the start-up clusters at the first call,
    /// further ones while probes show more room, and a periodic one when the estimate is below
    /// the maximum and the link looks uncongested. Poll from the pacer's tick and after each
    /// feedback; send clusters one after the other.
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeCluster> {
        let now = self.advance(now);
        let ctx = ProbeContext {
            estimate: self.estimate,
            normal: self.trendline.state() == DelayState::Normal,
            last_decrease: self.aimd.time_last_decrease(),
            loss: self.loss.loss(),
            desired: self.desired,
        };
        self.probe_controller.poll(now, ctx)
    }

    fn micros(&self, t: Instant) -> i64 {
        i64::try_from(t.saturating_duration_since(self.epoch).as_micros())
            .unwrap_or(i64::MAX)
            .min(MAX_ABS_TIME_US)
    }

    /// `now` in µs, never before an earlier `now`.
    fn advance(&mut self, now: Instant) -> i64 {
        self.last_now = self.last_now.max(self.micros(now));
        self.last_now
    }

    /// The 24-bit reference time unwrapped against the previous one.
    fn unwrap_reference(&mut self, reference: u32) -> i64 {
        let r = i64::from(reference) & (REFERENCE_RANGE - 1);
        let unwrapped = match self.last_reference {
            None => r,
            Some(last) => {
                let mut diff = (r - last).rem_euclid(REFERENCE_RANGE);
                if diff >= REFERENCE_RANGE / 2 {
                    diff -= REFERENCE_RANGE;
                }
                let limit = MAX_ABS_TIME_US / REFERENCE_UNIT_US / 2;
                last.saturating_add(diff).clamp(-limit, limit)
            }
        };
        self.last_reference = Some(unwrapped);
        unwrapped
    }

    /// Doubles the send history; entries keep their sequence numbers' places.
    fn grow_history(&mut self) {
        let len = (self.history.len() * 2).clamp(1, HISTORY_SIZE);
        let old = std::mem::replace(&mut self.history, vec![EMPTY_SENT; len]);
        for sent in old.into_iter().filter(|s| s.seq != u64::MAX) {
            if let Some(slot) = self.history.get_mut(history_index(sent.seq, len)) {
                *slot = sent;
            }
        }
    }

    fn add_status(&mut self, seq: u64, arrival: Option<i64>) {
        let len = self.history.len();
        let Some(slot) = self.history.get_mut(history_index(seq, len)) else {
            return;
        };
        if slot.seq != seq {
            self.stats.unknown += 1;
            return;
        }
        self.highest_reported = Some(self.highest_reported.map_or(seq, |h| h.max(seq)));
        match (arrival, slot.status) {
            (None, AckStatus::Unacked) => {
                slot.status = AckStatus::Lost;
                self.fb_lost += 1;
                self.fb_expected += 1;
                self.stats.lost += 1;
            }
            (None, _) => {}
            (Some(_), AckStatus::Received) => self.stats.duplicates += 1,
            (Some(arrival), previous) => {
                if previous == AckStatus::Unacked {
                    self.fb_expected += 1;
                }
                slot.status = AckStatus::Received;
                self.stats.received += 1;
                self.results.push(PacketResult {
                    send_us: slot.send_us,
                    arrival_us: arrival.clamp(-MAX_ABS_TIME_US, MAX_ABS_TIME_US),
                    size: slot.size,
                    cum_bytes: slot.cum_bytes,
                    probe: slot.probe,
                });
            }
        }
    }

    fn finish_feedback(&mut self, now: Instant) {
        let now = self.advance(now);
        self.stats.feedbacks += 1;
        if self.results.is_empty() && self.fb_expected == 0 {
            return; // nothing new: no update (an empty or all-unknown feedback)
        }
        let mut results = std::mem::take(&mut self.results);
        results.sort_unstable_by_key(|r| (r.arrival_us, r.send_us));
        self.update_rtt(now, &results);

        if self
            .last_packet_feedback
            .is_some_and(|t| now.saturating_sub(t) > STREAM_TIMEOUT_US)
        {
            self.inter_arrival.reset();
            self.trendline.reset();
            self.base_delay = BaseDelay::default();
        }
        if !results.is_empty() {
            self.last_packet_feedback = Some(now);
        }
        for r in &results {
            let size = u64::from(r.size);
            self.acked.update(r.arrival_us, size);
            if let Some(id) = r.probe {
                self.probe_estimator
                    .handle(id, r.send_us, r.arrival_us, size);
            }
            if let Some(deltas) = self
                .inter_arrival
                .compute(r.send_us, r.arrival_us, now, size)
            {
                self.trendline.update(deltas, r.arrival_us as f64 / 1000.0);
            }
            self.base_delay
                .update(now, r.arrival_us.saturating_sub(r.send_us));
        }
        self.update_queue_delay(now, &results);
        results.clear();
        self.results = results;

        let controller = &self.probe_controller;
        let probe = self.highest_reported.and_then(|highest| {
            self.probe_estimator.results(highest, |id| {
                controller
                    .requirements(id)
                    .unwrap_or((MIN_PROBE_PACKETS, 0))
            })
        });
        let applied_probe = self.update_delay_based(now, probe);

        let rtt = self.rtt_us.map_or(aimd::DEFAULT_RTT_US, |r| r as i64);
        self.loss.set_delay_limit(self.delay_based);
        if let Some(p) = applied_probe {
            self.loss.set_estimate(p);
        }
        let (lost, expected) = (self.fb_lost, self.fb_expected);
        self.fb_lost = 0;
        self.fb_expected = 0;
        if expected > 0 {
            self.loss.on_packets(now, lost, expected);
        }
        self.loss.update(now, rtt);

        let drain = self.update_drain(now);
        let (min, max) = (self.config.min.0 as f64, self.config.max.0 as f64);
        self.estimate = (self.delay_based.min(self.loss.target()) * drain).clamp(min, max);
        self.probe_controller.on_estimate(now, self.estimate);
    }

    fn update_rtt(&mut self, now: i64, results: &[PacketResult]) {
        let Some(max_arrival) = results.iter().map(|r| r.arrival_us).max() else {
            return;
        };
        let sample = results
            .iter()
            .map(|r| {
                let feedback_rtt = now.saturating_sub(r.send_us);
                let pending = max_arrival.saturating_sub(r.arrival_us);
                feedback_rtt.saturating_sub(pending)
            })
            .min();
        if let Some(sample) = sample.filter(|s| (0..=60_000_000).contains(s)) {
            let sample = sample as f64;
            let rtt = match self.rtt_us {
                None => sample,
                Some(rtt) => 0.875 * rtt + 0.125 * sample,
            };
            self.rtt_us = Some(rtt);
            self.aimd.set_rtt(rtt as i64);
        }
    }

    /// Measures the standing queue and predicts it at `now`.
    fn update_queue_delay(&mut self, now: i64, results: &[PacketResult]) {
        let Some(newest) = results.iter().max_by_key(|r| r.send_us) else {
            return;
        };
        let owd = newest.arrival_us.saturating_sub(newest.send_us);
        self.measured_queue_us = self
            .base_delay
            .min(now)
            .map_or(0, |base| owd.saturating_sub(base).max(0));
        self.queue_delay_us = self.measured_queue_us;
        if let Some(capacity) = self.capacity_behind_queue().filter(|&c| c > 0.0) {
            let sent_since = self.sent_bytes.wrapping_sub(newest.cum_bytes);
            if sent_since < 1 << 40 {
                let drained_in = (sent_since as f64 * 8.0 * 1e6 / capacity) as i64;
                let elapsed = now.saturating_sub(newest.send_us);
                self.queue_delay_us = self
                    .measured_queue_us
                    .saturating_add(drained_in.saturating_sub(elapsed))
                    .clamp(0, 60_000_000);
            }
        }
    }

    /// The bottleneck rate: with a standing queue arrivals come at exactly that rate, and the
    /// short window does not mix in arrivals from before a capacity drop.
    fn capacity_behind_queue(&self) -> Option<f64> {
        let long = self.acked.rate();
        if self.measured_queue_us >= DRAIN_END_QUEUE_US {
            let short = self.acked.rate_over(ACK_SHORT_WINDOW_BINS);
            match (long, short) {
                (Some(l), Some(s)) => Some(l.min(s)),
                (l, s) => l.or(s),
            }
        } else {
            long
        }
    }

    /// Starts, continues or ends a drain (see the module documentation); returns the factor
    /// on the estimate.
    fn update_drain(&mut self, now: i64) -> f64 {
        let decreased_now = self.aimd.time_last_decrease() == Some(now);
        if decreased_now
            && now >= self.drain_suppressed_until
            && self.queue_delay_us >= DRAIN_MIN_QUEUE_US
            && self.measured_queue_us >= DRAIN_END_QUEUE_US
        {
            let factor = (1.0 - self.queue_delay_us as f64 / DRAIN_TARGET_US as f64)
                .clamp(DRAIN_MIN_FACTOR, 1.0);
            // A further decrease while draining deepens it but does not prolong it.
            self.drain = Some(match self.drain {
                Some((deadline, f)) => (deadline, f.min(factor)),
                None => {
                    let limit = DRAIN_MAX_US
                        .saturating_add(self.queue_delay_us.saturating_mul(2))
                        .min(DRAIN_LIMIT_US);
                    (now.saturating_add(limit), factor)
                }
            });
        } else if let Some((deadline, _)) = self.drain {
            if self.queue_delay_us < DRAIN_END_QUEUE_US {
                self.drain = None;
            } else if now > deadline {
                self.drain = None;
                self.drain_suppressed_until = now.saturating_add(DRAIN_SUPPRESS_US);
            }
        }
        self.drain.map_or(1.0, |(_, f)| f)
    }

    /// libwebrtc `DelayBasedBwe::MaybeUpdateEstimate`. Returns the probe result if it was
    /// applied.
    fn update_delay_based(&mut self, now: i64, probe: Option<f64>) -> Option<f64> {
        let state = self.trendline.state();
        let mut applied = None;
        if state == DelayState::Overusing {
            let acked = self.capacity_behind_queue();
            match acked {
                Some(acked) if self.aimd.time_to_reduce_further(now, acked) => {
                    self.aimd.update(now, state, Some(acked));
                }
                None if self.aimd.initial_time_to_reduce_further(now) => {
                    let halved = self.aimd.current() / 2.0;
                    self.aimd.set_estimate(now, halved);
                }
                _ => {}
            }
        } else if let Some(p) = probe.filter(|&p| p > self.aimd.current()) {
            self.aimd.set_estimate(now, p);
            applied = Some(self.aimd.current());
        } else {
            self.aimd.update(now, state, self.acked.rate());
        }
        self.delay_based = self.aimd.current();
        applied
    }
}

/// Where `seq` lives in a history of `len` entries (a power of two).
fn history_index(seq: u64, len: usize) -> usize {
    (seq & (len as u64).wrapping_sub(1)) as usize
}

/// The 64-bit sequence number closest to `highest` whose low 16 bits are `seq`.
fn extend_seq(highest: u64, seq: u16) -> u64 {
    let diff = seq.wrapping_sub(highest as u16) as i16;
    highest.wrapping_add(i64::from(diff) as u64)
}
