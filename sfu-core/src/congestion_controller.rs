//! Congestion control toward one subscriber transport: the pieces of [`crate::bandwidth_estimator`],
//! [`crate::pacer`] and [`crate::allocator`] joined into what the worker drives.
//!
//! A subscriber gets congestion control when it negotiated the transport-wide sequence number
//! header extension (transport-cc). Then every RTP packet toward it (media, retransmissions,
//! probe padding) is written with a placeholder for that number and handed to
//! [`CongestionController::enqueue`] unprotected; [`CongestionController::send`] takes what the
//! pacer releases, stamps the next transport-wide sequence number in send order, protects it
//! with SRTP and queues the datagram, and records it in the estimator's send history. The
//! subscriber's transport-wide feedback goes to [`CongestionController::on_rtcp`], which
//! updates the estimate and the pacing rate. The worker reads [`CongestionController::estimate`]
//! to run the allocator over the subscriber's consumers and stores the result here for stats.
//!
//! What this module must not do: choose layers itself or touch consumers (the worker owns them),
//! read a clock or touch a socket.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::ConsumerId;
use crate::allocator::Allocation;
use crate::bandwidth_estimator::{
    BandwidthEstimator, Bitrate, DelayState, EstimatorConfig, SentPacket,
};
use crate::buffer_pool::BufferPool;
use crate::pacer::{Pacer, PacerConfig, PacerDrop, PacerStats, PacketClass, Released};
use crate::srtp::SrtpContext;
use crate::twcc::{self, TwccFeedback};
use crate::webrtc_transport::TransportStats;
use crate::worker::Transmit;

/// The allocator runs at most this often on feedback (and at least every layer check).
pub const ALLOCATION_INTERVAL: Duration = Duration::from_millis(100);
/// After a step down, no step up for this long at first…
pub const UPGRADE_HOLD_MIN: Duration = Duration::from_secs(1);
/// …doubling each time a step up is undone within [`UPGRADE_TRIAL`], up to this.
pub const UPGRADE_HOLD_MAX: Duration = Duration::from_secs(16);
/// A step up followed by a step down within this did not fit.
pub const UPGRADE_TRIAL: Duration = Duration::from_secs(5);
/// A standing queue this long at the bottleneck means the link is congested now.
pub const CONGESTED_QUEUE: Duration = Duration::from_millis(60);
/// Behind a standing queue longer than this, the allocation leaves room to drain it…
pub const DRAIN_QUEUE: Duration = Duration::from_millis(150);
/// …within about this long.
pub const DRAIN_TIME: Duration = Duration::from_secs(1);
/// Steps up fit the median budget of this recent window, so that an overestimate lasting
/// less than half of it (one probe's, on a token-bucket link where a short burst passes at
/// line rate) moves nobody up, while the sawtooth of a link used to capacity does not hold
/// anyone down either.
pub const STEADY_WINDOW: Duration = Duration::from_millis(2_000);
/// Budgets remembered for the steady window (one per allocation, every 100 ms or more).
const BUDGET_SAMPLES: usize = 32;

/// Settings of congestion control toward subscribers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CongestionConfig {
    /// Bounds, start and probing of each subscriber's estimate.
    pub estimator: EstimatorConfig,
    /// The pacer (its initial estimate is the estimator's).
    pub pacer: PacerConfig,
}

impl Default for CongestionConfig {
    fn default() -> Self {
        let estimator = EstimatorConfig {
            // Enough for a middle layer at once; probing finds the rest within a second or two.
            initial: Bitrate::kbps(1_000),
            min: Bitrate::kbps(50),
            max: Bitrate::kbps(20_000),
            probing: true,
        };
        Self {
            estimator,
            pacer: PacerConfig {
                initial_estimate: estimator.initial,
                ..PacerConfig::default()
            },
        }
    }
}

/// A packet written for the subscriber, waiting in the pacer: not yet protected, its
/// transport-wide sequence number not yet stamped.
#[derive(Debug)]
pub struct PacedPacket {
    /// The plain RTP packet.
    pub buf: Vec<u8>,
    /// Its header length (for SRTP).
    pub header_len: usize,
    /// The SRTP rollover counter of its sequence number.
    pub roc: u32,
    /// Where the two bytes of the transport-wide sequence number go.
    pub transport_cc_offset: usize,
    /// The consumer it belongs to.
    pub consumer: ConsumerId,
}

/// A snapshot of one subscriber's congestion control, for stats and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct CongestionStats {
    /// The bandwidth estimate the allocation fits in.
    pub estimate: Bitrate,
    /// The delay-based estimate alone.
    pub delay_based: Bitrate,
    /// The loss-based estimate alone.
    pub loss_based: Bitrate,
    /// What the subscriber acknowledged receiving lately.
    pub acknowledged: Option<Bitrate>,
    /// Loss fraction of the last loss window (0–1).
    pub loss_rate: f64,
    /// Round-trip time measured from feedback.
    pub rtt: Option<Duration>,
    /// The standing queue at the bottleneck the estimator sees.
    pub queueing_delay: Duration,
    /// The delay detector's state.
    pub delay_state: DelayState,
    /// Transport-wide feedback packets processed.
    pub feedbacks: u64,
    /// The pacer's counters.
    pub pacer: PacerStats,
    /// Packets in the pacer now.
    pub pacer_queue_packets: usize,
    /// Bytes in the pacer now.
    pub pacer_queue_bytes: usize,
    /// How long the oldest packet in the pacer has waited.
    pub pacer_queue_delay: Duration,
    /// The last allocation: the highest stream each consumer may receive (`None`: paused for
    /// lack of bandwidth).
    pub allocations: Vec<(ConsumerId, Option<usize>)>,
}

/// Congestion control of one subscriber transport.
pub struct CongestionController {
    estimator: BandwidthEstimator,
    pacer: Pacer<PacedPacket>,
    next_transport_seq: u64,
    released: Vec<Released<PacedPacket>>,
    allocations: Vec<Allocation>,
    next_allocation: Instant,
    feedbacks: u64,
    upgrade_hold_until: Instant,
    upgrade_hold: Duration,
    allocated_bps: u64,
    last_upgrade: Option<Instant>,
    /// Recent allocation budgets, oldest first.
    budgets: VecDeque<(Instant, u64)>,
    /// Where the search for a consumer that can send probe padding starts next.
    pub padding_cursor: usize,
}

impl CongestionController {
    /// Congestion control starting at `now`.
    pub fn new(now: Instant, config: CongestionConfig) -> Self {
        Self {
            estimator: BandwidthEstimator::new(now, config.estimator),
            pacer: Pacer::new(
                PacerConfig {
                    initial_estimate: config.estimator.initial,
                    ..config.pacer
                },
                now,
            ),
            next_transport_seq: 0,
            released: Vec::new(),
            allocations: Vec::new(),
            next_allocation: now,
            feedbacks: 0,
            upgrade_hold_until: now,
            upgrade_hold: UPGRADE_HOLD_MIN,
            allocated_bps: 0,
            budgets: VecDeque::with_capacity(BUDGET_SAMPLES),
            last_upgrade: None,
            padding_cursor: 0,
        }
    }

    /// Queues a packet for the pacer.
    pub fn enqueue(&mut self, now: Instant, packet: PacedPacket, class: PacketClass) {
        let size = packet.buf.len();
        self.pacer.enqueue(now, packet, size, class);
    }

    /// Sends what the pacer releases now: stamps each packet's transport-wide sequence number
    /// in send order, protects it and queues it for `destination`. Buffers of packets the pacer
    /// dropped go back to `pool`; the consumers whose video it dropped (their decoders now
    /// need a keyframe) are added to `broken`. Starts a probe cluster when the estimator asks.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        now: Instant,
        srtp: &mut SrtpContext,
        destination: SocketAddr,
        transmits: &mut VecDeque<Transmit>,
        pool: &mut BufferPool,
        stats: &mut TransportStats,
        broken: &mut Vec<ConsumerId>,
    ) {
        if self.pacer.probing().is_none()
            && let Some(cluster) = self.estimator.poll_probe(now)
        {
            self.pacer.start_probe(now, cluster);
        }
        let mut released = std::mem::take(&mut self.released);
        released.clear();
        self.pacer.poll(now, &mut released);
        for r in released.drain(..) {
            let mut p = r.item;
            let seq = self.next_transport_seq;
            self.next_transport_seq += 1;
            let off = p.transport_cc_offset;
            if let Some(slot) = p.buf.get_mut(off..off + 2) {
                slot.copy_from_slice(&(seq as u16).to_be_bytes());
            }
            if srtp.protect_rtp(&mut p.buf, p.header_len, p.roc).is_err() {
                pool.give_back(p.buf);
                continue;
            }
            self.estimator.on_packet_sent(SentPacket {
                transport_seq: seq,
                size: p.buf.len(),
                send_time: now,
                probe_cluster: r.probe_cluster,
            });
            stats.rtp_out += 1;
            stats.bytes_out += p.buf.len() as u64;
            transmits.push_back(Transmit {
                destination,
                contents: p.buf,
            });
        }
        self.released = released;
        for d in self.pacer.drain_dropped() {
            if d.class == PacketClass::Video
                && d.reason == PacerDrop::Expired
                && !broken.contains(&d.item.consumer)
            {
                broken.push(d.item.consumer);
            }
            pool.give_back(d.item.buf);
        }
    }

    /// Bytes of probe padding the running probe cluster needs now, if any.
    pub fn padding_needed(&mut self, now: Instant) -> Option<usize> {
        self.pacer.padding_needed(now)
    }

    /// Reads the transport-wide feedback in a compound RTCP packet from the subscriber;
    /// returns whether there was any. Malformed feedback is ignored (the compound packet was
    /// validated before; a feedback element that does not parse is counted by the caller).
    pub fn on_rtcp(&mut self, now: Instant, compound: &[u8]) -> Result<bool, twcc::TwccError> {
        let mut any = false;
        let mut error = None;
        for packet in twcc::feedback_packets(compound) {
            match TwccFeedback::parse(packet) {
                Ok(feedback) => {
                    self.estimator.on_feedback(now, &feedback);
                    self.feedbacks += 1;
                    any = true;
                }
                Err(e) => error = Some(e),
            }
        }
        if any {
            self.pacer.set_rate(now, self.estimator.estimate());
            if self.pacer.probing().is_none()
                && let Some(cluster) = self.estimator.poll_probe(now)
            {
                self.pacer.start_probe(now, cluster);
            }
        }
        match error {
            Some(e) if !any => Err(e),
            _ => Ok(any),
        }
    }

    /// When [`Self::send`] has something to do next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pacer.poll_timeout()
    }

    /// The bandwidth estimate toward the subscriber.
    pub fn estimate(&self) -> Bitrate {
        self.estimator.estimate()
    }

    /// Whether any transport-wide feedback arrived yet (before, the estimate is the configured
    /// initial guess).
    pub fn has_feedback(&self) -> bool {
        self.feedbacks > 0
    }

    /// What the allocator may share out: the estimate, less what draining a standing queue at
    /// the bottleneck needs. After a sharp drop in capacity the link holds up to a second or
    /// more of packets sent at the old rate; only sending less than the capacity empties it,
    /// and video that cannot fit in what is left is paused until it has gone.
    pub fn allocation_budget(&self) -> Bitrate {
        let estimate = self.estimator.estimate();
        let queue = self.estimator.queueing_delay();
        if queue < DRAIN_QUEUE {
            return estimate;
        }
        let drain_rate = self.estimator.acknowledged_bitrate().unwrap_or(estimate).0 as f64;
        let backlog_bits = drain_rate * queue.as_secs_f64();
        let budget = estimate.0 as f64 - backlog_bits / DRAIN_TIME.as_secs_f64();
        Bitrate(budget.max(0.0) as u64)
    }

    /// Remembers the budget of an allocation at `now` (kept for [`STEADY_WINDOW`]).
    pub fn record_budget(&mut self, now: Instant, budget: Bitrate) {
        while self
            .budgets
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > STEADY_WINDOW)
            || self.budgets.len() >= BUDGET_SAMPLES
        {
            self.budgets.pop_front();
        }
        self.budgets.push_back((now, budget.0));
    }

    /// The median allocation budget of the last [`STEADY_WINDOW`] (the lower middle one of an
    /// even count; `u64::MAX` before any).
    pub fn steady_budget(&self) -> u64 {
        let mut sorted = [0u64; BUDGET_SAMPLES];
        let n = self.budgets.len().min(BUDGET_SAMPLES);
        for (slot, (_, b)) in sorted.iter_mut().zip(&self.budgets) {
            *slot = *b;
        }
        let Some(samples) = sorted.get_mut(..n) else {
            return u64::MAX;
        };
        samples.sort_unstable();
        samples
            .get(n.saturating_sub(1) / 2)
            .copied()
            .unwrap_or(u64::MAX)
    }

    /// The bitrate the last allocation gave out.
    pub fn allocated(&self) -> u64 {
        self.allocated_bps
    }

    /// Whether a consumer may move up a layer now (the last step down has settled).
    pub fn may_upgrade(&self, now: Instant) -> bool {
        now >= self.upgrade_hold_until
    }

    /// A consumer moved up a layer.
    pub fn on_upgrade(&mut self, now: Instant) {
        self.last_upgrade = Some(now);
    }

    /// A consumer moved down: hold further steps up, longer each time a step up did not last.
    pub fn on_downgrade(&mut self, now: Instant) {
        let failed_upgrade = self
            .last_upgrade
            .is_some_and(|at| now.saturating_duration_since(at) < UPGRADE_TRIAL);
        self.upgrade_hold = if failed_upgrade {
            (self.upgrade_hold * 2).min(UPGRADE_HOLD_MAX)
        } else {
            UPGRADE_HOLD_MIN
        };
        self.last_upgrade = None;
        self.upgrade_hold_until = now + self.upgrade_hold;
    }

    /// Whether the bottleneck holds a standing queue now (the estimator's view).
    pub fn is_congested(&self) -> bool {
        self.estimator.queueing_delay() >= CONGESTED_QUEUE
    }

    /// Whether the allocator should run again (at most every [`ALLOCATION_INTERVAL`] on
    /// feedback).
    pub fn allocation_due(&self, now: Instant) -> bool {
        now >= self.next_allocation
    }

    /// Records the allocator's result and the most the subscriber could use (probing stops
    /// once the estimate reaches it).
    pub fn set_allocations(
        &mut self,
        now: Instant,
        allocations: Vec<Allocation>,
        allocated: u64,
        desired: Option<Bitrate>,
    ) {
        self.allocations = allocations;
        self.allocated_bps = allocated;
        self.next_allocation = now + ALLOCATION_INTERVAL;
        self.estimator.set_desired_bitrate(desired);
    }

    /// A snapshot for stats.
    pub fn stats(&self, now: Instant) -> CongestionStats {
        CongestionStats {
            estimate: self.estimator.estimate(),
            delay_based: self.estimator.delay_based_estimate(),
            loss_based: self.estimator.loss_based_estimate(),
            acknowledged: self.estimator.acknowledged_bitrate(),
            loss_rate: self.estimator.loss_rate(),
            rtt: self.estimator.rtt(),
            queueing_delay: self.estimator.queueing_delay(),
            delay_state: self.estimator.state(),
            feedbacks: self.feedbacks,
            pacer: self.pacer.stats(),
            pacer_queue_packets: self.pacer.len(),
            pacer_queue_bytes: self.pacer.queued_bytes(),
            pacer_queue_delay: self.pacer.queue_delay(now),
            allocations: self
                .allocations
                .iter()
                .map(|a| (a.consumer, a.layer))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steady_budget_is_the_median_of_the_recent_window() {
        let t0 = Instant::now();
        let mut cc = CongestionController::new(t0, CongestionConfig::default());
        assert_eq!(cc.steady_budget(), u64::MAX);
        cc.record_budget(t0, Bitrate(1_000_000));
        for i in 1..=30u64 {
            cc.record_budget(t0 + Duration::from_millis(100 * i), Bitrate(3_000_000 + i));
        }
        // The 1 Mbit/s sample is 3 s old: forgotten. Samples 10..=30 are in the window.
        assert_eq!(cc.steady_budget(), 3_000_020);
        // Neither a moment's overestimate nor a moment's dip moves it much.
        cc.record_budget(t0 + Duration::from_millis(3_100), Bitrate(9_000_000));
        cc.record_budget(t0 + Duration::from_millis(3_200), Bitrate(9_000_000));
        assert_eq!(cc.steady_budget(), 3_000_022);
        cc.record_budget(t0 + Duration::from_millis(3_300), Bitrate(500_000));
        assert_eq!(cc.steady_budget(), 3_000_022);
        // An estimate that stays low for most of the window brings it down.
        for i in 34..=45u64 {
            cc.record_budget(t0 + Duration::from_millis(100 * i), Bitrate(600_000));
        }
        assert_eq!(cc.steady_budget(), 600_000);
    }
}
