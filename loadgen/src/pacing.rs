//! How many packets a publisher owes at a given moment, and how many fit in one GSO send.
//!
//! Owns the arithmetic of the send schedule: the offered rate integrated over time, what was
//! built, what was given up when the load generator fell too far behind (counted, never
//! hidden), and the largest GSO burst the kernel accepts for a datagram size. It must not do
//! I/O or read a clock: the caller passes the elapsed time.
//!
//! The rule that matters for correctness: a packet's counter (hence its RTP sequence number
//! and SRTP index) is taken only when the packet is built, and every built packet goes on the
//! wire (a socket that is full keeps it for later). Packets given up are never built, so the
//! sequence numbers on the wire stay consecutive however far behind the sender falls: the
//! SFU's SRTP index estimate (RFC 3711 §3.3.1, which only tolerates jumps under 2^15) never
//! breaks, and what is reported as offered but not sent is exactly what was given up.

use std::time::Duration;

/// Largest UDP payload of one `sendmsg`: a GSO burst's segments together may not exceed it
/// (65,535 minus the 8-byte UDP and 20-byte IPv4 headers), or the kernel answers `EMSGSIZE`.
pub const MAX_GSO_BYTES: usize = 65_507;

/// Segments of `datagram` bytes in one GSO send: at most what the socket allows
/// (`max_segments`, from `quinn-udp`) and at most [`MAX_GSO_BYTES`] in all; at least 1.
pub fn gso_batch(datagram: usize, max_segments: usize) -> usize {
    let by_size = MAX_GSO_BYTES.checked_div(datagram).unwrap_or(1);
    max_segments.min(by_size).max(1)
}

/// One publisher's place in its send schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendSchedule {
    /// Packets per second asked for.
    rate: f64,
    /// How far behind (in packets) the sender may fall before it gives packets up rather
    /// than catching up in one long burst.
    max_lag: u64,
    /// Packets built so far (each one went, or will go, on the wire).
    pub built: u64,
    /// Packets the schedule offered that were given up (never built, never sent).
    pub given_up: u64,
    /// Packets offered before the last rate change, and when it was.
    base: (u64, Duration),
}

impl SendSchedule {
    /// A schedule at `rate` packets/s that gives up what is more than `max_lag` behind.
    pub fn new(rate: f64, max_lag: Duration) -> Self {
        let mut s = Self {
            rate,
            max_lag: 1,
            built: 0,
            given_up: 0,
            base: (0, Duration::ZERO),
        };
        s.max_lag = s.lag_for(max_lag);
        s
    }

    fn lag_for(&self, max_lag: Duration) -> u64 {
        let lag = (self.rate * max_lag.as_secs_f64()).ceil();
        if lag.is_finite() && lag >= 1.0 {
            lag as u64
        } else {
            1
        }
    }

    /// From `elapsed` on, offers `rate` packets/s (what was offered before stays offered).
    pub fn set_rate(&mut self, rate: f64, elapsed: Duration, max_lag: Duration) {
        self.base = (self.offered(elapsed), elapsed);
        self.rate = rate;
        self.max_lag = self.lag_for(max_lag);
    }

    /// The rate offered now, packets/s.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Packets offered by `elapsed` since the schedule started.
    pub fn offered(&self, elapsed: Duration) -> u64 {
        let (base, since) = self.base;
        let due = elapsed.saturating_sub(since).as_secs_f64() * self.rate;
        if due.is_finite() && due > 0.0 {
            base + due as u64
        } else {
            base
        }
    }

    /// Packets owed at `elapsed` (offered, not built, not given up). When more than the
    /// allowed lag is owed the excess is given up first (and counted in `given_up`).
    pub fn owed(&mut self, elapsed: Duration) -> u64 {
        let owed = self
            .offered(elapsed)
            .saturating_sub(self.built + self.given_up);
        if owed > self.max_lag {
            self.given_up += owed - self.max_lag;
            self.max_lag
        } else {
            owed
        }
    }

    /// Records that `n` packets were built.
    pub fn built(&mut self, n: u64) {
        self.built += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gso_burst_of_full_size_packets_stays_under_64_kib() {
        // 1200-byte payload + RTP header + GCM tag: the old sender's 64-segment bursts were
        // 78 KiB and the kernel refused every one of them.
        let datagram = 12 + 1200 + 16;
        let n = gso_batch(datagram, 64);
        assert_eq!(n, 53);
        assert!(n * datagram <= MAX_GSO_BYTES);
        // Small packets are limited by the socket's segment count.
        assert_eq!(gso_batch(100, 64), 64);
        // No GSO, or a nonsensical size: one datagram at a time.
        assert_eq!(gso_batch(1228, 1), 1);
        assert_eq!(gso_batch(0, 64), 1);
        assert_eq!(gso_batch(70_000, 64), 1);
    }

    #[test]
    fn owed_follows_the_rate_and_counts_what_is_built() {
        let mut s = SendSchedule::new(100_000.0, Duration::from_secs(1));
        assert_eq!(s.owed(Duration::ZERO), 0);
        assert_eq!(s.owed(Duration::from_millis(1)), 100);
        s.built(60);
        assert_eq!(s.owed(Duration::from_millis(1)), 40);
        s.built(40);
        assert_eq!(s.owed(Duration::from_millis(3)), 200);
        assert_eq!(s.given_up, 0);
    }

    #[test]
    fn falling_too_far_behind_gives_packets_up_and_counts_them() {
        let mut s = SendSchedule::new(1000.0, Duration::from_millis(100));
        // Two seconds without a tick: 2000 offered, 100 may still be sent, 1900 are given up.
        assert_eq!(s.owed(Duration::from_secs(2)), 100);
        assert_eq!(s.given_up, 1900);
        s.built(100);
        assert_eq!(s.owed(Duration::from_secs(2)), 0);
        // Offered = built + given up + owed, always.
        let owed = s.owed(Duration::from_millis(2500));
        assert_eq!(
            s.offered(Duration::from_millis(2500)),
            s.built + s.given_up + owed
        );
    }

    #[test]
    fn a_rate_change_keeps_what_was_offered_before() {
        let mut s = SendSchedule::new(100.0, Duration::from_secs(1));
        assert_eq!(s.offered(Duration::from_secs(2)), 200);
        s.set_rate(1000.0, Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(s.rate(), 1000.0);
        assert_eq!(s.offered(Duration::from_secs(2)), 200);
        assert_eq!(s.offered(Duration::from_secs(3)), 1200);
        // An elapsed time before the change (a late caller) offers nothing new.
        assert_eq!(s.offered(Duration::from_secs(1)), 200);
    }

    #[test]
    fn a_tiny_rate_still_has_a_lag_of_one_packet() {
        let mut s = SendSchedule::new(0.5, Duration::from_millis(10));
        assert_eq!(s.owed(Duration::from_secs(5)), 1);
        assert_eq!(s.given_up, 1);
    }
}
