//! Delay-based overuse detection: inter-arrival grouping, the trendline filter and the
//! adaptive-threshold overuse detector.
//!
//! ## Inter-arrival grouping (`InterArrival`)
//!
//! GCC (draft-ietf-rmcat-gcc-02 §5.1–5.2) does not compare single packets: a pacer and the
//! network both release packets in bursts, and only the delay *between bursts* says whether
//! a queue grows. Packets are grouped by send time: a group holds the packets sent within
//! 5 ms of its first one (libwebrtc's `InterArrivalDelta`, `kSendTimeGroupLength`). A packet
//! that arrives within 5 ms of the previous one *and* earlier than its send spacing predicts
//! (negative propagation delta) also joins the group, for at most 100 ms: that is a burst
//! released by the network at once (e.g. a Wi-Fi aggregate), whose compression says nothing
//! about the queue. When a group completes, the deltas to the previous group are produced:
//! send delta (between the groups' last send times) and arrival delta (between their last
//! arrivals); their difference is the *delay variation* d(i) of the draft.
//!
//! Safeguards from libwebrtc: packets sent before the current group's first one (reordered)
//! are skipped; three groups in a row whose arrival went backwards reset the grouping; an
//! arrival clock that jumps by three seconds or more against the local clock (the feedback
//! processing time) resets it too.
//!
//! ## Trendline filter (`Trendline`)
//!
//! The draft's Kalman filter was replaced in libwebrtc (`TrendlineEstimator`, goog_cc) by a
//! linear regression, which this follows: the delay variations are accumulated (the queueing
//! delay up to a constant), smoothed exponentially (coefficient 0.9), and the slope of a
//! least-squares line through the last 20 (arrival time, smoothed delay) points is the
//! *trend*. A trend of 0 means the queue is stable; a positive trend approximates
//! (send rate − capacity) / capacity.
//!
//! ## Adaptive threshold detector (draft §5.4–5.5, libwebrtc `TrendlineEstimator::Detect`)
//!
//! The trend is scaled by min(number of deltas, 60) × 4 (the threshold gain) and compared
//! with an adaptive threshold γ: above it for more than 10 ms (and two deltas) with a trend
//! not decreasing is *overuse*; below −γ *underuse*; otherwise *normal*. γ tracks |scaled
//! trend| with gain k_up = 0.0087 when above and k_down = 0.039 when below (per ms, at most
//! 100 ms per update), clamped to [6, 600], and ignores spikes above γ + 15 — so a detector
//! sharing the bottleneck with loss-based TCP flows is not starved (draft §5.4). Everything is
//! in fixed-size arrays: no allocation.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::DelayState;

/// Packets sent within this of a group's first packet belong to the group (µs).
const SEND_TIME_GROUP_LENGTH_US: i64 = 5_000;
/// A packet arriving within this of the previous one may join its burst (µs).
const BURST_DELTA_THRESHOLD_US: i64 = 5_000;
/// Longest burst (arrival span) merged into one group (µs).
const MAX_BURST_DURATION_US: i64 = 100_000;
/// Arrival clock jump, relative to the local clock, that resets the grouping (µs).
const ARRIVAL_TIME_OFFSET_THRESHOLD_US: i64 = 3_000_000;
/// Consecutive groups whose arrival went backwards before the grouping resets.
const REORDERED_RESET_THRESHOLD: u32 = 3;

/// Points the regression runs over.
pub(crate) const WINDOW_SIZE: usize = 20;
/// Exponential smoothing of the accumulated delay.
const SMOOTHING_COEF: f64 = 0.9;
/// Scale from the trend to the detector's unit (libwebrtc `kDefaultTrendlineThresholdGain`).
const THRESHOLD_GAIN: f64 = 4.0;
/// Deltas after which the trend is no longer scaled down (libwebrtc `kMinNumDeltas`).
const MIN_NUM_DELTAS: u32 = 60;
/// Cap on the delta counter.
const DELTA_COUNTER_MAX: u32 = 1000;
/// Threshold adaptation gain when |trend| is above the threshold (per ms).
const K_UP: f64 = 0.0087;
/// Threshold adaptation gain when |trend| is below the threshold (per ms).
const K_DOWN: f64 = 0.039;
/// Spikes further than this above the threshold do not adapt it.
const MAX_ADAPT_OFFSET: f64 = 15.0;
/// Longest time step of one threshold adaptation (ms).
const MAX_TIME_DELTA_MS: f64 = 100.0;
/// Initial threshold and its bounds.
const INITIAL_THRESHOLD: f64 = 12.5;
const MIN_THRESHOLD: f64 = 6.0;
const MAX_THRESHOLD: f64 = 600.0;
/// Time the scaled trend must stay above the threshold before overuse is signalled (ms).
const OVERUSING_TIME_THRESHOLD_MS: f64 = 10.0;

/// One send-time group, all times in µs (send times on the local clock, arrivals on the
/// receiver's, "system" is the local time the feedback was processed).
#[derive(Debug, Clone, Copy)]
struct Group {
    first_send: i64,
    /// Latest send time in the group.
    send: i64,
    first_arrival: i64,
    /// Latest arrival in the group.
    complete: i64,
    last_system: i64,
    size: u64,
}

/// The deltas between two consecutive completed groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupDeltas {
    /// Send delta, ms.
    pub send_ms: f64,
    /// Arrival delta, ms.
    pub arrival_ms: f64,
    /// Size difference, bytes (informational).
    pub size_delta: i64,
}

/// Groups packets into send-time bursts and yields inter-group deltas.
#[derive(Debug, Clone, Default)]
pub(crate) struct InterArrival {
    current: Option<Group>,
    prev: Option<Group>,
    reordered: u32,
}

impl InterArrival {
    /// Forgets all groups.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Adds one received packet (in arrival order); returns the deltas when it starts a new
    /// group and the two before it are complete.
    pub fn compute(
        &mut self,
        send: i64,
        arrival: i64,
        system: i64,
        size: u64,
    ) -> Option<GroupDeltas> {
        let mut deltas = None;
        let Some(mut current) = self.current else {
            self.current = Some(Group {
                first_send: send,
                send,
                first_arrival: arrival,
                complete: arrival,
                last_system: system,
                size,
            });
            return None;
        };
        if send < current.first_send {
            return None; // reordered: sent before the current group started
        }
        if Self::new_group(&current, arrival, send) {
            if let Some(prev) = self.prev {
                let send_delta = current.send.saturating_sub(prev.send);
                let arrival_delta = current.complete.saturating_sub(prev.complete);
                let system_delta = current.last_system.saturating_sub(prev.last_system);
                if arrival_delta.saturating_sub(system_delta) >= ARRIVAL_TIME_OFFSET_THRESHOLD_US {
                    // The receiver's clock jumped: start over.
                    self.reset();
                    return None;
                }
                if arrival_delta < 0 {
                    self.reordered += 1;
                    if self.reordered >= REORDERED_RESET_THRESHOLD {
                        self.reset();
                    }
                    return None;
                }
                self.reordered = 0;
                deltas = Some(GroupDeltas {
                    send_ms: send_delta as f64 / 1000.0,
                    arrival_ms: arrival_delta as f64 / 1000.0,
                    size_delta: (current.size as i64).saturating_sub(prev.size as i64),
                });
            }
            self.prev = Some(current);
            current = Group {
                first_send: send,
                send,
                first_arrival: arrival,
                complete: arrival,
                last_system: system,
                size: 0,
            };
        } else {
            current.send = current.send.max(send);
        }
        current.size = current.size.saturating_add(size);
        current.complete = arrival;
        current.last_system = system;
        self.current = Some(current);
        deltas
    }

    fn new_group(current: &Group, arrival: i64, send: i64) -> bool {
        if Self::belongs_to_burst(current, arrival, send) {
            return false;
        }
        send.saturating_sub(current.first_send) > SEND_TIME_GROUP_LENGTH_US
    }

    fn belongs_to_burst(current: &Group, arrival: i64, send: i64) -> bool {
        let arrival_delta = arrival.saturating_sub(current.complete);
        let send_delta = send.saturating_sub(current.send);
        if send_delta == 0 {
            return true;
        }
        let propagation_delta = arrival_delta.saturating_sub(send_delta);
        propagation_delta < 0
            && arrival_delta <= BURST_DELTA_THRESHOLD_US
            && arrival.saturating_sub(current.first_arrival) < MAX_BURST_DURATION_US
    }
}

/// Trendline filter plus adaptive-threshold overuse detector.
#[derive(Debug, Clone)]
pub(crate) struct Trendline {
    /// Ring of (arrival ms since the first, smoothed delay ms).
    window: [(f64, f64); WINDOW_SIZE],
    len: usize,
    next: usize,
    num_deltas: u32,
    first_arrival_ms: Option<f64>,
    accumulated_delay: f64,
    smoothed_delay: f64,
    prev_trend: f64,
    threshold: f64,
    last_update_ms: Option<f64>,
    /// Time spent over the threshold, ms; `None` when not over it.
    time_over_using: Option<f64>,
    overuse_counter: u32,
    state: DelayState,
}

impl Default for Trendline {
    fn default() -> Self {
        Self {
            window: [(0.0, 0.0); WINDOW_SIZE],
            len: 0,
            next: 0,
            num_deltas: 0,
            first_arrival_ms: None,
            accumulated_delay: 0.0,
            smoothed_delay: 0.0,
            prev_trend: 0.0,
            threshold: INITIAL_THRESHOLD,
            last_update_ms: None,
            time_over_using: None,
            overuse_counter: 0,
            state: DelayState::Normal,
        }
    }
}

impl Trendline {
    /// Forgets everything (the stream timed out or the clocks jumped).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The detector's current hypothesis.
    pub fn state(&self) -> DelayState {
        self.state
    }

    /// Feeds the deltas of one completed group; `arrival_ms` is the arrival time (receiver
    /// clock, ms) of the packet that completed it.
    pub fn update(&mut self, deltas: GroupDeltas, arrival_ms: f64) {
        let delta_ms = deltas.arrival_ms - deltas.send_ms;
        if !delta_ms.is_finite() || !arrival_ms.is_finite() {
            return;
        }
        self.num_deltas = (self.num_deltas + 1).min(DELTA_COUNTER_MAX);
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.accumulated_delay += delta_ms;
        self.smoothed_delay =
            SMOOTHING_COEF * self.smoothed_delay + (1.0 - SMOOTHING_COEF) * self.accumulated_delay;
        if let Some(slot) = self.window.get_mut(self.next) {
            *slot = (arrival_ms - first, self.smoothed_delay);
        }
        self.next = (self.next + 1) % WINDOW_SIZE;
        self.len = (self.len + 1).min(WINDOW_SIZE);
        let mut trend = self.prev_trend;
        if self.len == WINDOW_SIZE
            && let Some(slope) = linear_fit_slope(&self.window)
        {
            trend = slope;
        }
        self.detect(trend, deltas.send_ms, arrival_ms);
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) {
        if self.num_deltas < 2 {
            self.state = DelayState::Normal;
            return;
        }
        let modified_trend =
            f64::from(self.num_deltas.min(MIN_NUM_DELTAS)) * trend * THRESHOLD_GAIN;
        if modified_trend > self.threshold {
            let over = match self.time_over_using {
                // Assume overuse for half the time since the previous group.
                None => send_delta_ms / 2.0,
                Some(t) => t + send_delta_ms,
            };
            self.time_over_using = Some(over);
            self.overuse_counter += 1;
            if over > OVERUSING_TIME_THRESHOLD_MS
                && self.overuse_counter > 1
                && trend >= self.prev_trend
            {
                self.time_over_using = Some(0.0);
                self.overuse_counter = 0;
                self.state = DelayState::Overusing;
            }
        } else if modified_trend < -self.threshold {
            self.time_over_using = None;
            self.overuse_counter = 0;
            self.state = DelayState::Underusing;
        } else {
            self.time_over_using = None;
            self.overuse_counter = 0;
            self.state = DelayState::Normal;
        }
        self.prev_trend = trend;
        self.update_threshold(modified_trend, now_ms);
    }

    fn update_threshold(&mut self, modified_trend: f64, now_ms: f64) {
        let last = *self.last_update_ms.get_or_insert(now_ms);
        self.last_update_ms = Some(now_ms);
        let magnitude = modified_trend.abs();
        if magnitude > self.threshold + MAX_ADAPT_OFFSET {
            // A latency spike (e.g. a sudden capacity drop) must not raise the threshold.
            return;
        }
        let k = if magnitude < self.threshold {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).clamp(0.0, MAX_TIME_DELTA_MS);
        self.threshold += k * (magnitude - self.threshold) * dt;
        self.threshold = self.threshold.clamp(MIN_THRESHOLD, MAX_THRESHOLD);
    }
}

/// Least-squares slope of y over x; `None` when all x are equal.
pub(crate) fn linear_fit_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    let n = points.len() as f64;
    let (sum_x, sum_y) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
    let (x_avg, y_avg) = (sum_x / n, sum_y / n);
    let (mut numerator, mut denominator) = (0.0, 0.0);
    for &(x, y) in points {
        numerator += (x - x_avg) * (y - y_avg);
        denominator += (x - x_avg) * (x - x_avg);
    }
    let slope = numerator / denominator;
    (denominator != 0.0 && slope.is_finite()).then_some(slope)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_estimator_slope_of_a_line() {
        let points: Vec<_> = (0..20)
            .map(|i| (f64::from(i) * 5.0, 2.0 + 0.5 * f64::from(i) * 5.0))
            .collect();
        assert!((linear_fit_slope(&points).unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(linear_fit_slope(&[(1.0, 1.0), (1.0, 5.0)]), None);
        assert_eq!(linear_fit_slope(&[]), None);
    }

    #[test]
    fn bandwidth_estimator_groups_bursts_and_yields_deltas() {
        let mut ia = InterArrival::default();
        // Three packets sent at 0, 1, 2 ms: one group. Then 10 ms later a second group.
        assert_eq!(ia.compute(0, 50_000, 0, 100), None);
        assert_eq!(ia.compute(1_000, 51_000, 0, 100), None);
        assert_eq!(ia.compute(2_000, 52_000, 0, 100), None);
        assert_eq!(
            ia.compute(10_000, 60_000, 0, 100),
            None,
            "first group completes, no prev"
        );
        let d = ia.compute(20_000, 72_000, 0, 100).unwrap();
        // Second group: send 10 ms, complete 60 ms; first: send 2 ms, complete 52 ms.
        assert_eq!(d.send_ms, 8.0);
        assert_eq!(d.arrival_ms, 8.0);
        // Reordered packet: ignored.
        assert_eq!(ia.compute(5_000, 73_000, 0, 100), None);
        let d = ia.compute(30_000, 85_000, 0, 100).unwrap();
        assert_eq!((d.send_ms, d.arrival_ms), (10.0, 12.0));
    }

    #[test]
    fn bandwidth_estimator_trendline_detects_growing_delay() {
        let mut t = Trendline::default();
        // Stable delay: normal.
        for i in 0..100 {
            t.update(
                GroupDeltas {
                    send_ms: 5.0,
                    arrival_ms: 5.0,
                    size_delta: 0,
                },
                f64::from(i) * 5.0,
            );
        }
        assert_eq!(t.state(), DelayState::Normal);
        // Each group arrives 1 ms later than sent: the queue grows 20%.
        let mut now = 500.0;
        for _ in 0..40 {
            now += 6.0;
            t.update(
                GroupDeltas {
                    send_ms: 5.0,
                    arrival_ms: 6.0,
                    size_delta: 0,
                },
                now,
            );
        }
        assert_eq!(t.state(), DelayState::Overusing);
        // Draining.
        for _ in 0..40 {
            now += 4.0;
            t.update(
                GroupDeltas {
                    send_ms: 5.0,
                    arrival_ms: 4.0,
                    size_delta: 0,
                },
                now,
            );
        }
        assert_eq!(t.state(), DelayState::Underusing);
    }
}
