//! The loss-based controller (draft-ietf-rmcat-gcc-02 §6, libwebrtc
//! `SendSideBandwidthEstimation`, the classic "v0" loss controller).
//!
//! Loss is measured from transport-wide feedback: each feedback says which of the packets
//! it covers arrived. Counts accumulate until a window of at least one second *and* at least
//! 20 packets is complete; its loss fraction p then drives the estimate A_s:
//!
//! * p < 2 %: increase — A_s = 1.08 × (the lowest A_s of the last second) + 1 kbit/s (so an
//!   8 %/s ramp, and no faster than the delay-based estimate allows: A_s never exceeds it);
//! * 2 % ≤ p ≤ 10 %: hold. Random (non-congestion) loss, e.g. on Wi-Fi, lands here and must
//!   not throttle the stream;
//! * p > 10 %: decrease — A_s = A_s × (1 − 0.5 p), at most once per loss report and once per
//!   300 ms + RTT (the draft's "once per feedback interval").
//!
//! The transmitted estimate is min(delay-based, A_s) (draft §6). As in libwebrtc, A_s is capped
//! by the delay-based estimate on every update, so after a delay-based decrease it climbs
//! back only at 8 %/s and only while loss stays below 2 %; a probe result
//! (`LossBasedControl::set_estimate`) resets it upward at once. During the first two seconds
//! with no loss, A_s follows the delay-based estimate up directly (libwebrtc's start phase).
//! The minimum history is a bounded deque (at most `MAX_HISTORY` entries).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::VecDeque;

/// Loss at or below this allows an increase.
pub(crate) const LOW_LOSS_THRESHOLD: f64 = 0.02;
/// Loss above this causes a decrease.
pub(crate) const HIGH_LOSS_THRESHOLD: f64 = 0.10;
/// Shortest loss window (µs).
const LOSS_WINDOW_US: i64 = 1_000_000;
/// Fewest packets a loss fraction is computed over.
const MIN_PACKETS: u64 = 20;
/// The increase is relative to the minimum over this (µs).
const INCREASE_INTERVAL_US: i64 = 1_000_000;
/// Decreases are at least this (plus an RTT) apart (µs).
const DECREASE_INTERVAL_US: i64 = 300_000;
/// Without a loss report for this long, loss no longer drives the estimate (µs).
const REPORT_TIMEOUT_US: i64 = 6_000_000;
/// Time after the first feedback during which a loss-free estimate follows the delay-based
/// one up (µs).
const START_PHASE_US: i64 = 2_000_000;
/// Bound of the minimum history.
pub(crate) const MAX_HISTORY: usize = 64;

/// The loss-based estimate. Times are µs on the local clock, rates bit/s.
#[derive(Debug, Clone)]
pub(crate) struct LossBasedControl {
    min_bps: f64,
    max_bps: f64,
    target: f64,
    delay_limit: f64,
    /// Loss fraction of the last complete window.
    loss: f64,
    last_report: Option<i64>,
    first_feedback: Option<i64>,
    has_decreased_since_report: bool,
    time_last_decrease: Option<i64>,
    lost_acc: u64,
    expected_acc: u64,
    window_start: Option<i64>,
    /// Increasing-minimum deque of (time, target).
    history: VecDeque<(i64, f64)>,
}

impl LossBasedControl {
    pub fn new(initial_bps: f64, min_bps: f64, max_bps: f64) -> Self {
        Self {
            min_bps,
            max_bps,
            target: initial_bps.clamp(min_bps, max_bps),
            delay_limit: f64::INFINITY,
            loss: 0.0,
            last_report: None,
            first_feedback: None,
            has_decreased_since_report: false,
            time_last_decrease: None,
            lost_acc: 0,
            expected_acc: 0,
            window_start: None,
            history: VecDeque::with_capacity(MAX_HISTORY),
        }
    }

    #[cfg(test)]
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    pub fn target(&self) -> f64 {
        self.target
    }

    /// Loss fraction of the last complete window (0 before the first).
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// The delay-based estimate, which caps this one.
    pub fn set_delay_limit(&mut self, bps: f64) {
        self.delay_limit = bps;
    }

    /// A probe result: the estimate becomes `bps` at once (libwebrtc `SetSendBitrate`).
    pub fn set_estimate(&mut self, bps: f64) {
        self.delay_limit = f64::INFINITY;
        self.set_target(bps);
        self.history.clear();
    }

    /// Counts one feedback's statuses: `lost` of `expected` reported lost.
    pub fn on_packets(&mut self, now: i64, lost: u64, expected: u64) {
        self.first_feedback.get_or_insert(now);
        let start = *self.window_start.get_or_insert(now);
        self.lost_acc = self.lost_acc.saturating_add(lost);
        self.expected_acc = self.expected_acc.saturating_add(expected);
        if now.saturating_sub(start) >= LOSS_WINDOW_US && self.expected_acc >= MIN_PACKETS {
            self.loss = (self.lost_acc as f64 / self.expected_acc as f64).clamp(0.0, 1.0);
            self.lost_acc = 0;
            self.expected_acc = 0;
            self.window_start = Some(now);
            self.last_report = Some(now);
            self.has_decreased_since_report = false;
        }
    }

    fn recent_report(&self, now: i64) -> bool {
        self.last_report
            .is_some_and(|t| now.saturating_sub(t) < REPORT_TIMEOUT_US)
    }

    fn in_start_phase(&self, now: i64) -> bool {
        self.first_feedback
            .is_none_or(|t| now.saturating_sub(t) < START_PHASE_US)
    }

    /// Updates the estimate (after each feedback).
    pub fn update(&mut self, now: i64, rtt_us: i64) {
        if self.loss == 0.0 && self.in_start_phase(now) && self.delay_limit.is_finite() {
            let raised = self.target.max(self.delay_limit);
            if raised != self.target {
                self.history.clear();
                self.push_history(now);
                self.set_target(raised);
                return;
            }
        }
        self.update_min_history(now);
        if self.recent_report(now) {
            if self.loss <= LOW_LOSS_THRESHOLD {
                let base = self.history.front().map_or(self.target, |&(_, b)| b);
                self.set_target(base * 1.08 + 1_000.0);
                return;
            }
            if self.loss > HIGH_LOSS_THRESHOLD {
                let interval = DECREASE_INTERVAL_US.saturating_add(rtt_us.max(0));
                let due = self
                    .time_last_decrease
                    .is_none_or(|t| now.saturating_sub(t) >= interval);
                if !self.has_decreased_since_report && due {
                    self.time_last_decrease = Some(now);
                    self.has_decreased_since_report = true;
                    self.set_target(self.target * (1.0 - 0.5 * self.loss));
                    return;
                }
            }
            // 2–10 %: hold.
        }
        self.set_target(self.target);
    }

    fn set_target(&mut self, bps: f64) {
        let capped = bps.min(self.delay_limit);
        if capped.is_finite() {
            self.target = capped.clamp(self.min_bps, self.max_bps);
        }
    }

    fn push_history(&mut self, now: i64) {
        if self.history.len() >= MAX_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((now, self.target));
    }

    fn update_min_history(&mut self, now: i64) {
        while self
            .history
            .front()
            .is_some_and(|&(t, _)| now.saturating_sub(t) + 1_000 > INCREASE_INTERVAL_US)
        {
            self.history.pop_front();
        }
        while self.history.back().is_some_and(|&(_, b)| self.target <= b) {
            self.history.pop_back();
        }
        self.push_history(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(loss: f64) -> f64 {
        let mut c = LossBasedControl::new(1e6, 1e4, 1e7);
        let mut now = 0;
        // 20 s, feedback every 50 ms with 20 packets each; the delay-based limit is lifted
        // after the start phase.
        for i in 0..400 {
            now += 50_000;
            c.set_delay_limit(if i < 60 { 1e6 } else { 1e7 });
            let lost = (loss * 20.0).round() as u64;
            c.on_packets(now, lost, 20);
            c.update(now, 50_000);
        }
        c.target()
    }

    #[test]
    fn bandwidth_estimator_loss_thresholds() {
        assert!(run(0.0) > 2e6, "low loss increases: {}", run(0.0));
        let held = run(0.05);
        assert!((9e5..1.2e6).contains(&held), "2–10 % holds: {held}");
        assert!(run(0.2) < 3e5, "heavy loss decreases: {}", run(0.2));
    }
}
