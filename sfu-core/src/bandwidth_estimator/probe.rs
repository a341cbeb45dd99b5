//! Bandwidth probing: when to probe (`ProbeController`, after libwebrtc's goog_cc
//! `ProbeController`) and what a probe measured (`ProbeBitrateEstimator`, after
//! libwebrtc's `ProbeBitrateEstimator`).
//!
//! AIMD alone ramps up at 8 %/s and never beyond 1.5 × what was acknowledged: from 300 kbit/s
//! it would need half a minute to reach 2.5 Mbit/s, and a sender that forwards only what the
//! estimate allows never produces the traffic that would show more is available. A *probe
//! cluster* is a short burst at a target rate above the estimate (media first, padding or
//! retransmissions to fill), at least [`MIN_PROBE_DURATION`] and [`MIN_PROBE_PACKETS`] long;
//! every packet of it carries the cluster id in [`super::SentPacket::probe_cluster`].
//!
//! ## Measuring (`ProbeBitrateEstimator`)
//!
//! Per cluster: the send rate is (bytes − the last sent packet) / (last send − first send),
//! the receive rate (bytes − the first received packet) / (last arrival − first arrival); once
//! at least 65 % of the requested packets and bytes are acknowledged. Intervals above one
//! second, or a receive rate above twice the send rate, are rejected. The result is the
//! smaller of the two rates; and if the receive rate is below 90 % of the send rate the
//! probe saturated the link, whose capacity is then the receive rate: the result is 95 % of
//! it so as not to overuse right away. A result above the current estimate raises both the
//! delay-based and the loss-based estimate immediately (not below it: a probe only reveals
//! room, congestion is the detector's business).
//!
//! ## Deciding (`ProbeController`)
//!
//! * **Start-up**: at the first poll, two clusters at 3 × and 6 × the initial estimate.
//! * **Further probing**: while waiting for a result (at most one second), an estimate above
//!   70 % of the last cluster's target asks for another cluster at 2 × the estimate: the
//!   ramp is exponential until a probe comes back short of its target. 300 kbit/s → 0.9 and
//!   1.8 → 3.6 → 7.2 Mbit/s takes four rounds, well under a second on a 50 ms RTT.
//! * **Periodic (capacity may have grown)**: every [`PERIODIC_INTERVAL_US`] (one second after
//!   a round that raised the estimate by 20 % or more: a probe cut short by jitter or loss
//!   should not stall the ramp for five seconds), when the estimate
//!   is below 90 % of the maximum (and below the caller's desired bitrate, if set), the
//!   detector is *normal* (no queue building or draining), no delay-based decrease happened in
//!   the last second and loss is at most 10 %: a cluster at 2 × the estimate, with further
//!   probing. This catches a capacity step up — otherwise found at the additive-increase pace
//!   of tens of kbit/s per second — within about [`PERIODIC_INTERVAL_US`] plus a few RTTs, and
//!   in application-limited periods (ALR) tells the layer selector how much room a higher
//!   layer would have. It costs a few packets at twice the rate every five seconds: on a
//!   saturated link a queueing bump of about the cluster's length.
//!
//! Targets never exceed the configured maximum; a target capped by it ends further probing.
//! Everything is in fixed arrays: no allocation.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use super::Bitrate;

/// Shortest probe cluster.
pub const MIN_PROBE_DURATION: Duration = Duration::from_millis(15);
/// Fewest packets in a probe cluster (libwebrtc asks for 5; a few more keep a cluster
/// measurable when one or two of its packets are lost).
pub const MIN_PROBE_PACKETS: u32 = 6;
/// Scales of the two start-up clusters, relative to the initial estimate.
const FIRST_EXPONENTIAL_SCALE: f64 = 3.0;
const SECOND_EXPONENTIAL_SCALE: f64 = 6.0;
/// Further (and periodic) clusters, relative to the estimate.
const FURTHER_SCALE: f64 = 2.0;
/// An estimate above this fraction of the last target probes further.
const FURTHER_PROBE_MIN_RATIO: f64 = 0.7;
/// Wait for a result at most this long (µs).
const MAX_WAITING_FOR_RESULT_US: i64 = 1_000_000;
/// Periodic probing interval (µs).
pub const PERIODIC_INTERVAL_US: i64 = 5_000_000;
/// Periodic probing interval after a round that raised the estimate by [`RAISED_RATIO`] or
/// more: there may be more to find (µs).
const PERIODIC_INTERVAL_AFTER_GAIN_US: i64 = 1_000_000;
/// A round whose results lifted the estimate by this factor counts as a gain.
const RAISED_RATIO: f64 = 1.2;
/// Periodic probing only below this fraction of the cap.
const PERIODIC_MAX_RATIO: f64 = 0.9;
/// No periodic probe within this of a delay-based decrease (µs).
const QUIET_AFTER_DECREASE_US: i64 = 1_000_000;
/// Received fractions of the requested packets and bytes a result needs.
const MIN_RECEIVED_PROBES_RATIO: f64 = 0.65;
const MIN_RECEIVED_BYTES_RATIO: f64 = 0.65;
/// Receive / send ratios: above the first the measurement is bogus; below the second the
/// link was saturated.
const MAX_VALID_RATIO: f64 = 2.0;
const MIN_RATIO_FOR_UNSATURATED_LINK: f64 = 0.9;
/// Fraction of a saturated link's receive rate taken as the result.
const TARGET_UTILIZATION_FRACTION: f64 = 0.95;
/// Longest send or receive interval of a valid cluster (µs).
const MAX_PROBE_INTERVAL_US: i64 = 1_000_000;
/// Clusters tracked at once; the oldest is replaced.
const MAX_CLUSTERS: usize = 8;
/// Issued clusters remembered (for their packet and byte minimums).
const MAX_ISSUED: usize = 16;

/// A request to send a probe cluster, from [`super::BandwidthEstimator::poll_probe`].
///
/// Send packets at `target_bitrate` (media first, then padding or RTX) for at least
/// `duration` and at least `min_packets` packets and `min_bytes` bytes, each recorded with
/// `probe_cluster: Some(id)`. Clusters are polled one at a time and should be sent one after
/// the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCluster {
    /// Identifies the cluster in [`super::SentPacket::probe_cluster`].
    pub id: u32,
    /// Rate to send at during the cluster.
    pub target_bitrate: Bitrate,
    /// Least time to send for.
    pub duration: Duration,
    /// Fewest packets to send.
    pub min_packets: u32,
    /// Fewest bytes to send (target rate × duration).
    pub min_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbingState {
    /// Nothing probed yet.
    Init,
    /// Clusters sent; a good enough estimate probes further.
    WaitingForResult,
    /// Done until the periodic probe.
    Complete,
}

/// What the controller needs to know about the estimator at a poll.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeContext {
    pub estimate: f64,
    pub normal: bool,
    pub last_decrease: Option<i64>,
    pub loss: f64,
    pub desired: Option<f64>,
}

/// Decides when to probe and at what rate. Times µs on the local clock, rates bit/s.
#[derive(Debug, Clone)]
pub(crate) struct ProbeController {
    enabled: bool,
    initial_bps: f64,
    max_bps: f64,
    state: ProbingState,
    min_bitrate_to_probe_further: f64,
    time_last_probing_initiated: Option<i64>,
    /// Estimate when the current round started, and the highest since.
    round_start_estimate: f64,
    round_max_estimate: f64,
    periodic_interval: i64,
    pending: [Option<ProbeCluster>; 2],
    next_id: u32,
    issued: [Option<ProbeCluster>; MAX_ISSUED],
    issued_next: usize,
}

impl ProbeController {
    pub fn new(enabled: bool, initial_bps: f64, max_bps: f64) -> Self {
        Self {
            enabled,
            initial_bps,
            max_bps,
            state: ProbingState::Init,
            min_bitrate_to_probe_further: f64::INFINITY,
            time_last_probing_initiated: None,
            round_start_estimate: initial_bps,
            round_max_estimate: initial_bps,
            periodic_interval: PERIODIC_INTERVAL_US,
            pending: [None; 2],
            next_id: 1,
            issued: [None; MAX_ISSUED],
            issued_next: 0,
        }
    }

    /// The next cluster to send, if one is due.
    pub fn poll(&mut self, now: i64, ctx: ProbeContext) -> Option<ProbeCluster> {
        if !self.enabled {
            return None;
        }
        if let Some(cluster) = self.pop_pending() {
            return Some(cluster);
        }
        match self.state {
            ProbingState::Init => {
                let first = self.initial_bps * FIRST_EXPONENTIAL_SCALE;
                let second = self.initial_bps * SECOND_EXPONENTIAL_SCALE;
                self.initiate(now, &[first, second], ctx.estimate, true);
            }
            ProbingState::WaitingForResult => {
                let since = self
                    .time_last_probing_initiated
                    .map_or(i64::MAX, |t| now.saturating_sub(t));
                if since > MAX_WAITING_FOR_RESULT_US {
                    self.state = ProbingState::Complete;
                    self.min_bitrate_to_probe_further = f64::INFINITY;
                    self.periodic_interval =
                        if self.round_max_estimate >= RAISED_RATIO * self.round_start_estimate {
                            PERIODIC_INTERVAL_AFTER_GAIN_US
                        } else {
                            PERIODIC_INTERVAL_US
                        };
                }
            }
            ProbingState::Complete => {
                if self.periodic_probe_due(now, ctx) {
                    self.round_start_estimate = ctx.estimate;
                    self.round_max_estimate = ctx.estimate;
                    self.initiate(now, &[ctx.estimate * FURTHER_SCALE], ctx.estimate, true);
                }
            }
        }
        self.pop_pending()
    }

    fn periodic_probe_due(&self, now: i64, ctx: ProbeContext) -> bool {
        let since = self
            .time_last_probing_initiated
            .map_or(i64::MAX, |t| now.saturating_sub(t));
        let quiet = ctx
            .last_decrease
            .is_none_or(|t| now.saturating_sub(t) >= QUIET_AFTER_DECREASE_US);
        since >= self.periodic_interval
            && ctx.estimate < PERIODIC_MAX_RATIO * self.max_bps
            && ctx.desired.is_none_or(|d| ctx.estimate < d)
            && ctx.normal
            && quiet
            && ctx.loss <= super::loss_based::HIGH_LOSS_THRESHOLD
    }

    /// A new estimate: probe further if the last clusters came back close to their target.
    pub fn on_estimate(&mut self, now: i64, estimate: f64) {
        if self.state == ProbingState::WaitingForResult {
            self.round_max_estimate = self.round_max_estimate.max(estimate);
        }
        if self.enabled
            && self.state == ProbingState::WaitingForResult
            && estimate > self.min_bitrate_to_probe_further
        {
            self.initiate(now, &[estimate * FURTHER_SCALE], estimate, true);
        }
    }

    fn initiate(&mut self, now: i64, targets: &[f64], estimate: f64, mut probe_further: bool) {
        self.pending = [None; 2];
        let mut last_target = 0.0;
        for (slot, &target) in self.pending.iter_mut().zip(targets) {
            let mut target = target;
            if target >= self.max_bps {
                target = self.max_bps;
                probe_further = false;
            }
            if target <= estimate || !target.is_finite() {
                continue; // nothing to learn
            }
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let bits = target * MIN_PROBE_DURATION.as_secs_f64();
            let cluster = ProbeCluster {
                id,
                target_bitrate: Bitrate(target as u64),
                duration: MIN_PROBE_DURATION,
                min_packets: MIN_PROBE_PACKETS,
                min_bytes: (bits / 8.0) as u64,
            };
            *slot = Some(cluster);
            if let Some(issued) = self.issued.get_mut(self.issued_next) {
                *issued = Some(cluster);
            }
            self.issued_next = (self.issued_next + 1) % MAX_ISSUED;
            last_target = target;
        }
        self.time_last_probing_initiated = Some(now);
        if probe_further && last_target > 0.0 {
            self.state = ProbingState::WaitingForResult;
            self.min_bitrate_to_probe_further = FURTHER_PROBE_MIN_RATIO * last_target;
        } else {
            self.state = ProbingState::Complete;
            self.min_bitrate_to_probe_further = f64::INFINITY;
        }
    }

    fn pop_pending(&mut self) -> Option<ProbeCluster> {
        let first = self.pending.iter_mut().find_map(Option::take);
        // Keep order: shift the remaining one to the front.
        if self.pending.first().is_some_and(Option::is_none) {
            self.pending.rotate_left(1);
        }
        first
    }

    /// The packet and byte minimums of an issued cluster.
    pub fn requirements(&self, id: u32) -> Option<(u32, u64)> {
        self.issued
            .iter()
            .flatten()
            .find(|c| c.id == id)
            .map(|c| (c.min_packets, c.min_bytes))
    }
}

/// Arrivals of one cluster's acknowledged packets. Send times on the local clock, receive
/// times on the receiver's, µs.
#[derive(Debug, Clone, Copy)]
struct Arrivals {
    first_send: i64,
    last_send: i64,
    size_last_send: u64,
    first_receive: i64,
    last_receive: i64,
    size_first_receive: u64,
    size_total: u64,
    num_probes: u32,
}

/// One cluster: what was sent of it, and what arrived.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    id: u32,
    /// Highest transport sequence number sent in it.
    last_seq: u64,
    /// A packet outside the cluster was sent after it: it is complete.
    closed: bool,
    /// Measured (or found unmeasurable): nothing more to do.
    done: bool,
    arrivals: Option<Arrivals>,
}

/// Computes probe results from acknowledged probe packets.
///
/// A cluster is measured once, when it is *complete*: closed by a later packet outside it,
/// and feedback has reported on its last packet (received or lost). Measuring a partial
/// cluster, as soon as enough packets arrived, lets jitter compress a short receive interval
/// into a rate the link does not have.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeBitrateEstimator {
    clusters: [Option<Cluster>; MAX_CLUSTERS],
    /// The cluster of the last packet sent, if any.
    open: Option<u32>,
    /// Clusters created so far (to replace the oldest).
    created: u64,
    order: [u64; MAX_CLUSTERS],
}

impl ProbeBitrateEstimator {
    fn find(&mut self, id: u32) -> Option<&mut Cluster> {
        self.clusters.iter_mut().flatten().find(|c| c.id == id)
    }

    /// A packet was sent, in cluster `probe` or none.
    pub fn on_packet_sent(&mut self, probe: Option<u32>, seq: u64) {
        if let Some(open) = self.open.filter(|&o| Some(o) != probe)
            && let Some(c) = self.find(open)
        {
            c.closed = true;
        }
        self.open = probe;
        let Some(id) = probe else {
            return;
        };
        if let Some(c) = self.find(id) {
            c.last_seq = c.last_seq.max(seq);
            return;
        }
        // A new cluster: in a free slot, else instead of the oldest.
        let index = self
            .clusters
            .iter()
            .position(Option::is_none)
            .or_else(|| {
                self.order
                    .iter()
                    .enumerate()
                    .min_by_key(|&(_, n)| *n)
                    .map(|(i, _)| i)
            })
            .unwrap_or(0);
        self.created += 1;
        if let (Some(slot), Some(order)) = (self.clusters.get_mut(index), self.order.get_mut(index))
        {
            *slot = Some(Cluster {
                id,
                last_seq: seq,
                closed: false,
                done: false,
                arrivals: None,
            });
            *order = self.created;
        }
    }

    /// Adds one acknowledged probe packet of cluster `id`.
    pub fn handle(&mut self, id: u32, send: i64, receive: i64, size: u64) {
        let Some(c) = self.find(id).filter(|c| !c.done) else {
            return;
        };
        let a = c.arrivals.get_or_insert(Arrivals {
            first_send: send,
            last_send: send,
            size_last_send: size,
            first_receive: receive,
            last_receive: receive,
            size_first_receive: size,
            size_total: 0,
            num_probes: 0,
        });
        if send < a.first_send {
            a.first_send = send;
        }
        if send > a.last_send {
            a.last_send = send;
            a.size_last_send = size;
        }
        if receive < a.first_receive {
            a.first_receive = receive;
            a.size_first_receive = size;
        }
        if receive > a.last_receive {
            a.last_receive = receive;
        }
        a.size_total = a.size_total.saturating_add(size);
        a.num_probes = a.num_probes.saturating_add(1);
    }

    /// Measures the clusters completed by feedback up to `highest_reported` (the highest
    /// sequence number any feedback reported on); `requirements` gives a cluster's minimum
    /// packets and bytes. Returns the highest result, if any.
    pub fn results(
        &mut self,
        highest_reported: u64,
        requirements: impl Fn(u32) -> (u32, u64),
    ) -> Option<f64> {
        let mut best: Option<f64> = None;
        for c in self.clusters.iter_mut().flatten() {
            if c.done || !c.closed || highest_reported < c.last_seq {
                continue;
            }
            c.done = true;
            let Some(a) = c.arrivals else {
                continue;
            };
            if let Some(rate) = measure(&a, requirements(c.id)) {
                best = Some(best.map_or(rate, |b: f64| b.max(rate)));
            }
        }
        best
    }
}

/// libwebrtc `ProbeBitrateEstimator::HandleProbeAndEstimateBitrate`, on a whole cluster.
fn measure(a: &Arrivals, (min_packets, min_bytes): (u32, u64)) -> Option<f64> {
    let min_probes = f64::from(min_packets) * MIN_RECEIVED_PROBES_RATIO;
    let min_size = min_bytes as f64 * MIN_RECEIVED_BYTES_RATIO;
    if f64::from(a.num_probes) < min_probes || (a.size_total as f64) < min_size {
        return None;
    }
    let send_interval = a.last_send.saturating_sub(a.first_send);
    let receive_interval = a.last_receive.saturating_sub(a.first_receive);
    if send_interval <= 0
        || send_interval > MAX_PROBE_INTERVAL_US
        || receive_interval <= 0
        || receive_interval > MAX_PROBE_INTERVAL_US
    {
        return None;
    }
    // The interval does not cover the last packet's sending, nor the first's receiving.
    let send_size = a.size_total.saturating_sub(a.size_last_send);
    let send_rate = send_size as f64 * 8.0 * 1e6 / send_interval as f64;
    let receive_size = a.size_total.saturating_sub(a.size_first_receive);
    let receive_rate = receive_size as f64 * 8.0 * 1e6 / receive_interval as f64;
    if send_rate <= 0.0 || receive_rate / send_rate > MAX_VALID_RATIO {
        return None;
    }
    if receive_rate < MIN_RATIO_FOR_UNSATURATED_LINK * send_rate {
        // The link was saturated: its capacity is the receive rate.
        return Some(TARGET_UTILIZATION_FRACTION * receive_rate);
    }
    Some(send_rate.min(receive_rate))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx(estimate: f64) -> ProbeContext {
        ProbeContext {
            estimate,
            normal: true,
            last_decrease: None,
            loss: 0.0,
            desired: None,
        }
    }

    #[test]
    fn bandwidth_estimator_probe_result_is_min_of_send_and_receive_rates() {
        let mut e = ProbeBitrateEstimator::default();
        let req = |_| (5, 0);
        // 10 packets of 1000 bytes sent 1 ms apart (8 Mbit/s), received 2 ms apart (4 Mbit/s).
        for i in 0..10u64 {
            e.on_packet_sent(Some(7), 100 + i);
        }
        for i in 0..10 {
            e.handle(7, i * 1000, 50_000 + i * 2000, 1000);
        }
        assert_eq!(e.results(109, req), None, "not closed yet");
        e.on_packet_sent(None, 110);
        assert_eq!(e.results(108, req), None, "last packet not reported yet");
        let r = e.results(109, req).unwrap();
        assert!((r - 0.95 * 4e6).abs() < 1e3, "{r}");
        assert_eq!(e.results(200, req), None, "measured once");
        // Unsaturated: received as sent.
        for i in 0..10u64 {
            e.on_packet_sent(Some(8), 200 + i);
            e.handle(8, i as i64 * 2000, 60_000 + i as i64 * 2000, 1000);
        }
        e.on_packet_sent(Some(9), 210);
        assert!((e.results(210, req).unwrap() - 4e6).abs() < 1e3);
        // Too few packets arrived: nothing.
        e.on_packet_sent(None, 211);
        e.handle(9, 0, 70_000, 1000);
        assert_eq!(e.results(211, req), None);
        // Unknown clusters are ignored.
        e.handle(42, 0, 70_000, 1000);
    }

    #[test]
    fn bandwidth_estimator_probe_controller_ramps_exponentially_then_stops() {
        let mut p = ProbeController::new(true, 300e3, 10e6);
        let a = p.poll(0, ctx(300e3)).unwrap();
        let b = p.poll(0, ctx(300e3)).unwrap();
        assert_eq!(a.target_bitrate, Bitrate(900_000));
        assert_eq!(b.target_bitrate, Bitrate(1_800_000));
        assert!(b.id > a.id);
        assert_eq!(p.poll(0, ctx(300e3)), None);
        p.on_estimate(100_000, 1.7e6);
        let c = p.poll(100_000, ctx(1.7e6)).unwrap();
        assert_eq!(c.target_bitrate, Bitrate(3_400_000));
        p.on_estimate(200_000, 2.0e6); // below 70 % of 3.4: stop
        assert_eq!(p.poll(200_000, ctx(2e6)), None);
        assert_eq!(p.poll(1_300_000, ctx(2e6)), None);
        // Periodic probe after five seconds, unless the detector is not normal.
        let mut busy = ctx(2e6);
        busy.normal = false;
        assert_eq!(p.poll(5_300_000, busy), None);
        let d = p.poll(5_300_000, ctx(2e6)).unwrap();
        assert_eq!(d.target_bitrate, Bitrate(4_000_000));
        assert!(p.requirements(d.id).is_some());
    }
}
