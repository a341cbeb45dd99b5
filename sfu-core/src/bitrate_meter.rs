//! The received bitrate of one producer stream over the last second, for the allocator: it
//! needs to know what each simulcast layer costs before choosing one for a subscriber.
//!
//! Ten bins of 100 ms; a packet costs an add and, at most every 100 ms, a bin rotation. Time
//! is a parameter; nothing here reads a clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

const BINS: usize = 10;
const BIN: Duration = Duration::from_millis(100);

/// Bytes received per 100 ms over the last second.
#[derive(Debug, Clone, Default)]
pub struct BitrateMeter {
    bins: [u64; BINS],
    /// The start of the current bin, and of the first one ever (for a young stream's rate).
    current: Option<(Instant, Instant)>,
    index: usize,
}

impl BitrateMeter {
    /// Counts `bytes` received at `now`.
    pub fn record(&mut self, now: Instant, bytes: usize) {
        self.advance(now);
        if let Some(bin) = self.bins.get_mut(self.index) {
            *bin = bin.saturating_add(bytes as u64);
        }
    }

    /// Bits per second over the last second (over the time since the first packet when that is
    /// shorter, but at least one bin, so a stream's first packets do not read as a huge rate).
    pub fn rate(&self, now: Instant) -> u64 {
        let Some((current, first)) = self.current else {
            return 0;
        };
        // Bins that ended more than a second before `now` no longer count.
        let stale = (now.saturating_duration_since(current).as_millis() / BIN.as_millis()) as usize;
        if stale >= BINS {
            return 0;
        }
        let total: u64 = (0..BINS - stale)
            .filter_map(|age| self.bins.get((self.index + BINS - age) % BINS))
            .sum();
        let span = now
            .saturating_duration_since(first)
            .clamp(BIN, BIN * BINS as u32);
        (total as f64 * 8.0 / span.as_secs_f64()) as u64
    }

    fn advance(&mut self, now: Instant) {
        let Some((current, first)) = self.current else {
            self.current = Some((now, now));
            return;
        };
        let elapsed = now.saturating_duration_since(current);
        if elapsed < BIN {
            return;
        }
        let steps = (elapsed.as_millis() / BIN.as_millis()) as usize;
        for _ in 0..steps.min(BINS) {
            self.index = (self.index + 1) % BINS;
            if let Some(bin) = self.bins.get_mut(self.index) {
                *bin = 0;
            }
        }
        self.current = Some((current + BIN * steps.min(u32::MAX as usize) as u32, first));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_steady_rate_and_forgets_a_stopped_stream() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::default();
        // 1000 bytes every 10 ms = 800 kbit/s for 3 s.
        for i in 0..300u32 {
            m.record(t0 + Duration::from_millis(u64::from(i) * 10), 1000);
        }
        let at = t0 + Duration::from_millis(2_995);
        let rate = m.rate(at);
        assert!((760_000..=840_000).contains(&rate), "{rate}");
        assert_eq!(m.rate(t0 + Duration::from_secs(5)), 0);
    }

    #[test]
    fn a_young_stream_reads_its_real_rate() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::default();
        for i in 0..30u32 {
            m.record(t0 + Duration::from_millis(u64::from(i) * 10), 1000);
        }
        let rate = m.rate(t0 + Duration::from_millis(300));
        assert!((700_000..=900_000).contains(&rate), "{rate}");
        assert_eq!(BitrateMeter::default().rate(t0), 0);
    }
}
