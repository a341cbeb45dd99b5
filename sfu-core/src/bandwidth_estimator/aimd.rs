//! The delay-based rate controller: AIMD driven by the overuse detector and the acknowledged
//! bitrate (draft-ietf-rmcat-gcc-02 §5.5, libwebrtc `AimdRateControl` and
//! `LinkCapacityEstimator`).
//!
//! The detector's signal drives a three-state machine (draft §5.5, Figure 2):
//!
//! | signal \ state | Hold     | Increase | Decrease |
//! |----------------|----------|----------|----------|
//! | overuse        | Decrease | Decrease | —        |
//! | normal         | Increase | —        | —        |
//! | underuse       | Hold     | Hold     | Hold     |
//!
//! * **Decrease**: the estimate becomes 0.85 × the *acknowledged* bitrate (what actually got
//!   through, so the queue built by the overuse drains), never an increase; then Hold until
//!   the detector sees the queue stop draining. Every decrease also feeds the *link capacity*
//!   estimate: an exponential average (α = 0.05) of the acknowledged rates at which overuse
//!   happened, with a normalised deviation.
//! * **Increase**: near the link capacity (an estimate exists and the throughput has not
//!   exceeded it by three deviations) the increase is *additive*: about one average packet per
//!   response time (2 × (RTT + 100 ms)), at least 4 kbit/s per second. Far from it (no
//!   estimate, or the throughput left its ±3σ band, which resets it) the increase is
//!   *multiplicative*, 8 % per second. Either way the estimate never exceeds
//!   1.5 × acknowledged + 10 kbit/s: without traffic to confirm it an estimate is a guess
//!   (that is what probing is for, see `probe.rs`).
//! * While overusing, a further decrease happens when an RTT (clamped to 10–200 ms) has passed
//!   since the last change, or the throughput fell below half the estimate.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::DelayState;

/// Multiplicative decrease factor (β).
pub(crate) const BACKOFF_FACTOR: f64 = 0.85;
/// Multiplicative increase per second.
const MULTIPLICATIVE_INCREASE_PER_SECOND: f64 = 1.08;
/// RTT assumed until one is measured (µs).
pub(crate) const DEFAULT_RTT_US: i64 = 200_000;
/// Smallest additive increase rate, bit/s per second.
const MIN_ADDITIVE_INCREASE_BPS_PER_SECOND: f64 = 4_000.0;

/// Rate-control state (draft §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateControlState {
    Hold,
    Increase,
    Decrease,
}

/// Estimate of the link capacity from the throughput at which overuse happened.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinkCapacity {
    estimate_kbps: Option<f64>,
    deviation_kbps: f64,
}

impl LinkCapacity {
    fn deviation_estimate_kbps(&self) -> f64 {
        self.estimate_kbps
            .map_or(0.0, |e| (self.deviation_kbps * e).max(0.0).sqrt())
    }

    /// Upper bound (bit/s): estimate + 3σ, infinite without an estimate.
    pub fn upper_bound(&self) -> f64 {
        self.estimate_kbps.map_or(f64::INFINITY, |e| {
            (e + 3.0 * self.deviation_estimate_kbps()) * 1000.0
        })
    }

    /// Lower bound (bit/s): estimate − 3σ, 0 without an estimate.
    pub fn lower_bound(&self) -> f64 {
        self.estimate_kbps.map_or(0.0, |e| {
            ((e - 3.0 * self.deviation_estimate_kbps()) * 1000.0).max(0.0)
        })
    }

    /// The estimate (bit/s), if any.
    pub fn estimate(&self) -> Option<f64> {
        self.estimate_kbps.map(|e| e * 1000.0)
    }

    fn reset(&mut self) {
        self.estimate_kbps = None;
    }

    fn on_overuse_detected(&mut self, acknowledged_bps: f64) {
        self.update(acknowledged_bps, 0.05);
    }

    fn update(&mut self, sample_bps: f64, alpha: f64) {
        let sample = sample_bps / 1000.0;
        let estimate = match self.estimate_kbps {
            None => sample,
            Some(e) => (1.0 - alpha) * e + alpha * sample,
        };
        self.estimate_kbps = Some(estimate);
        let norm = estimate.max(1.0);
        let error = estimate - sample;
        self.deviation_kbps =
            ((1.0 - alpha) * self.deviation_kbps + alpha * error * error / norm).clamp(0.4, 2.5);
    }
}

/// The AIMD controller. Times are µs on the local clock, rates bit/s.
#[derive(Debug, Clone)]
pub(crate) struct AimdRateControl {
    min_bps: f64,
    max_bps: f64,
    current: f64,
    state: RateControlState,
    time_last_change: Option<i64>,
    time_last_decrease: Option<i64>,
    latest_throughput: Option<f64>,
    link: LinkCapacity,
    rtt_us: i64,
}

impl AimdRateControl {
    pub fn new(initial_bps: f64, min_bps: f64, max_bps: f64) -> Self {
        Self {
            min_bps,
            max_bps,
            current: initial_bps.clamp(min_bps, max_bps),
            state: RateControlState::Hold,
            time_last_change: None,
            time_last_decrease: None,
            latest_throughput: None,
            link: LinkCapacity::default(),
            rtt_us: DEFAULT_RTT_US,
        }
    }

    pub fn current(&self) -> f64 {
        self.current
    }

    #[cfg(test)]
    pub fn state(&self) -> RateControlState {
        self.state
    }

    pub fn time_last_decrease(&self) -> Option<i64> {
        self.time_last_decrease
    }

    pub fn set_rtt(&mut self, rtt_us: i64) {
        self.rtt_us = rtt_us.max(0);
    }

    /// Whether, while overusing, another decrease is due.
    pub fn time_to_reduce_further(&self, now: i64, throughput: f64) -> bool {
        let interval = self.rtt_us.clamp(10_000, 200_000);
        match self.time_last_change {
            None => return true,
            Some(t) if now.saturating_sub(t) >= interval => return true,
            Some(_) => {}
        }
        throughput < 0.5 * self.current
    }

    /// Overuse before any acknowledged bitrate: halve every 200 ms.
    pub fn initial_time_to_reduce_further(&self, now: i64) -> bool {
        self.time_to_reduce_further(now, self.current / 2.0 - 1.0)
    }

    /// Sets the estimate outright (a probe result, or the halving above).
    pub fn set_estimate(&mut self, now: i64, bps: f64) {
        let prev = self.current;
        self.current = self.clamp(bps);
        self.time_last_change = Some(now);
        if self.current < prev {
            self.time_last_decrease = Some(now);
        }
    }

    /// One update with the detector's state and the acknowledged bitrate, if measured.
    pub fn update(&mut self, now: i64, signal: DelayState, throughput: Option<f64>) -> f64 {
        let estimated_throughput = throughput
            .or(self.latest_throughput)
            .unwrap_or(self.current);
        if throughput.is_some() {
            self.latest_throughput = throughput;
        }
        self.change_state(now, signal);
        let mut new_bitrate = None;
        match self.state {
            RateControlState::Hold => {}
            RateControlState::Increase => {
                if estimated_throughput > self.link.upper_bound() {
                    self.link.reset();
                }
                let increase_limit = 1.5 * estimated_throughput + 10_000.0;
                if self.current < increase_limit {
                    let last = self.time_last_change.unwrap_or(now);
                    let increased = if self.link.estimate().is_some() {
                        self.current + self.additive_increase(now, last)
                    } else {
                        self.current + self.multiplicative_increase(now, last)
                    };
                    new_bitrate = Some(increased.min(increase_limit));
                }
                self.time_last_change = Some(now);
            }
            RateControlState::Decrease => {
                let mut decreased = estimated_throughput * BACKOFF_FACTOR;
                if decreased > self.current
                    && let Some(link) = self.link.estimate()
                {
                    decreased = BACKOFF_FACTOR * link;
                }
                if decreased < self.current {
                    new_bitrate = Some(decreased);
                }
                if estimated_throughput < self.link.lower_bound() {
                    // Far below the remembered capacity: it changed, start over.
                    self.link.reset();
                }
                self.link.on_overuse_detected(estimated_throughput);
                // Hold until the queue stops draining.
                self.state = RateControlState::Hold;
                self.time_last_change = Some(now);
                self.time_last_decrease = Some(now);
            }
        }
        self.current = self.clamp(new_bitrate.unwrap_or(self.current));
        self.current
    }

    fn change_state(&mut self, now: i64, signal: DelayState) {
        match signal {
            DelayState::Normal => {
                if self.state == RateControlState::Hold {
                    self.time_last_change = Some(now);
                    self.state = RateControlState::Increase;
                }
            }
            DelayState::Overusing => self.state = RateControlState::Decrease,
            DelayState::Underusing => self.state = RateControlState::Hold,
        }
    }

    fn multiplicative_increase(&self, now: i64, last: i64) -> f64 {
        let seconds = (now.saturating_sub(last) as f64 / 1e6).clamp(0.0, 1.0);
        let alpha = MULTIPLICATIVE_INCREASE_PER_SECOND.powf(seconds);
        (self.current * (alpha - 1.0)).max(1_000.0)
    }

    fn additive_increase(&self, now: i64, last: i64) -> f64 {
        let seconds = (now.saturating_sub(last) as f64 / 1e6).max(0.0);
        self.near_max_increase_rate_bps_per_second() * seconds
    }

    /// About one average packet per response time.
    fn near_max_increase_rate_bps_per_second(&self) -> f64 {
        let frame_size_bits = self.current / 30.0;
        let packets_per_frame = (frame_size_bits / (1200.0 * 8.0)).ceil().max(1.0);
        let avg_packet_bits = frame_size_bits / packets_per_frame;
        let response_time_s = 2.0 * (self.rtt_us as f64 / 1e6 + 0.1);
        (avg_packet_bits / response_time_s).max(MIN_ADDITIVE_INCREASE_BPS_PER_SECOND)
    }

    fn clamp(&self, bps: f64) -> f64 {
        if bps.is_finite() {
            bps.clamp(self.min_bps, self.max_bps)
        } else {
            self.current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_estimator_aimd_decreases_to_085_of_throughput_then_holds() {
        let mut c = AimdRateControl::new(2e6, 1e4, 1e7);
        let now = 1_000_000;
        let r = c.update(now, DelayState::Overusing, Some(1e6));
        assert!((r - 850_000.0).abs() < 1.0, "{r}");
        assert_eq!(c.state(), RateControlState::Hold);
        // Underuse: hold.
        assert_eq!(
            c.update(now + 100_000, DelayState::Underusing, Some(1e6)),
            r
        );
        // Normal: increase, additively since the link capacity is known (~1 Mbit/s).
        let r2 = c.update(now + 200_000, DelayState::Normal, Some(1e6));
        let r3 = c.update(now + 1_200_000, DelayState::Normal, Some(1e6));
        assert!(r3 > r2 && r3 - r2 < 50_000.0, "{r2} {r3}");
    }

    #[test]
    fn bandwidth_estimator_aimd_increases_multiplicatively_far_from_capacity() {
        let mut c = AimdRateControl::new(1e6, 1e4, 1e7);
        c.update(0, DelayState::Normal, Some(1e6));
        let r = c.update(1_000_000, DelayState::Normal, Some(1e6));
        assert!((1.075e6..1.09e6).contains(&r), "{r}");
        // Never above 1.5 × throughput + 10 kbit/s.
        for i in 2..100 {
            c.update(i * 1_000_000, DelayState::Normal, Some(1e6));
        }
        assert!((c.current() - 1.51e6).abs() < 1.0);
    }
}
