//! How long packets stay in the SFU: from the receive call that brought a batch of datagrams to
//! the end of the send that carried what the worker made of them.
//!
//! This is the delay the SFU adds, measured where it happens, without the sender's or the
//! receiver's own scheduling (which a load generator on the same machine cannot separate from
//! it). Every datagram of a send call (one GSO run, or one datagram) is counted with the time
//! at which that call returned, so a fan-out's first packets count as leaving early and its
//! last as late, as they did; each figure is an upper bound only within one GSO run. The
//! driver records ([`AtomicResidenceHistogram::record`], one atomic add per send, not per packet);
//! anyone holding the worker's handle reads a [`ResidenceHistogram`] and takes quantiles of
//! the difference between two readings.
//!
//! Buckets are log-linear: four per power of two of microseconds (about 19 % wide), from under
//! a microsecond to over a minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB_BUCKETS: u32 = 4;
/// Powers of two of microseconds covered: 2^27 µs is over two minutes.
const OCTAVES: u32 = 27;
/// Bucket count: one for under 4 µs (exact below that resolution), then the log-linear ones.
pub const BUCKETS: usize = (OCTAVES * SUB_BUCKETS) as usize + 1;

/// The bucket of a duration.
fn bucket(d: Duration) -> usize {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    if micros < u64::from(SUB_BUCKETS) {
        return 0;
    }
    // micros >= 4: its highest bit is at position `octave` >= 2; the two bits below it pick
    // the sub-bucket.
    let octave = 63 - micros.leading_zeros();
    let sub = (micros >> (octave - 2)) & u64::from(SUB_BUCKETS - 1);
    let index = (octave - 2) * SUB_BUCKETS + sub as u32 + 1;
    (index as usize).min(BUCKETS - 1)
}

/// The largest duration bucket `index` holds (its upper bound, exclusive, as a duration).
fn upper_bound(index: usize) -> Duration {
    if index == 0 {
        return Duration::from_micros(u64::from(SUB_BUCKETS));
    }
    let i = (index - 1) as u32;
    let octave = i / SUB_BUCKETS + 2;
    let sub = u64::from(i % SUB_BUCKETS);
    let base = 1u64 << octave;
    let step = base / u64::from(SUB_BUCKETS);
    Duration::from_micros(base + (sub + 1) * step)
}

/// Counts of datagrams by time spent in the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidenceHistogram {
    counts: [u64; BUCKETS],
    /// The sum of all counted times, µs.
    sum_micros: u64,
}

impl Default for ResidenceHistogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            sum_micros: 0,
        }
    }
}

impl ResidenceHistogram {
    /// Datagrams counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the times of every datagram counted.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros)
    }

    /// Datagrams counted with a time certainly at most `limit`: those of every bucket that
    /// ends at or below it (exact when `limit` is a power of two of microseconds, as the
    /// Prometheus buckets of `/metrics` are).
    pub fn count_at_most(&self, limit: Duration) -> u64 {
        self.counts
            .iter()
            .enumerate()
            .filter(|(i, _)| upper_bound(*i) <= limit)
            .map(|(_, c)| c)
            .sum()
    }

    /// What was counted after `earlier` (a reading of the same histogram).
    pub fn since(&self, earlier: &Self) -> Self {
        let mut out = *self;
        for (c, e) in out.counts.iter_mut().zip(earlier.counts.iter()) {
            *c = c.saturating_sub(*e);
        }
        out.sum_micros = out.sum_micros.saturating_sub(earlier.sum_micros);
        out
    }

    /// This and `other` together (several workers' histograms).
    pub fn merged(&self, other: &Self) -> Self {
        let mut out = *self;
        for (c, o) in out.counts.iter_mut().zip(other.counts.iter()) {
            *c = c.saturating_add(*o);
        }
        out.sum_micros = out.sum_micros.saturating_add(other.sum_micros);
        out
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper_bound(i));
            }
        }
        Some(upper_bound(BUCKETS - 1))
    }
}

/// The recording side, shared between the driver's thread and its handle.
#[derive(Debug)]
pub struct AtomicResidenceHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_micros: AtomicU64,
}

impl Default for AtomicResidenceHistogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl AtomicResidenceHistogram {
    /// Counts `datagrams` that spent `time` in the SFU.
    pub fn record(&self, time: Duration, datagrams: u64) {
        if datagrams > 0
            && let Some(c) = self.counts.get(bucket(time))
        {
            c.fetch_add(datagrams, Ordering::Relaxed);
            let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
            self.sum_micros
                .fetch_add(micros.saturating_mul(datagrams), Ordering::Relaxed);
        }
    }

    /// The counts now.
    pub fn snapshot(&self) -> ResidenceHistogram {
        let mut out = ResidenceHistogram::default();
        for (o, c) in out.counts.iter_mut().zip(self.counts.iter()) {
            *o = c.load(Ordering::Relaxed);
        }
        out.sum_micros = self.sum_micros.load(Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_lands_in_a_bucket_whose_bound_is_above_it_and_within_a_quarter() {
        for micros in (0u64..5_000).chain([65_535, 1 << 20, 3_000_000, u64::MAX / 2]) {
            let d = Duration::from_micros(micros);
            let b = bucket(d);
            assert!(b < BUCKETS);
            let upper = upper_bound(b);
            if b < BUCKETS - 1 {
                assert!(upper > d, "{micros} µs: bucket {b} ends at {upper:?}");
                if micros >= 4 {
                    assert!(
                        upper.as_secs_f64() <= d.as_secs_f64() * 1.26,
                        "{micros} µs: bucket {b} ends at {upper:?}"
                    );
                }
            }
            if b > 0 {
                assert!(
                    upper_bound(b - 1) <= d,
                    "{micros} µs: belongs above bucket {b}"
                );
            }
        }
    }

    #[test]
    fn quantiles_of_a_recorded_distribution_and_of_a_difference() {
        let h = AtomicResidenceHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        h.record(Duration::from_micros(100), 98);
        h.record(Duration::from_micros(1_500), 1);
        h.record(Duration::from_millis(40), 1);
        let first = h.snapshot();
        assert_eq!(first.count(), 100);
        let p50 = first.quantile(0.5).unwrap();
        assert!(p50 > Duration::from_micros(100) && p50 <= Duration::from_micros(112));
        let p99 = first.quantile(0.99).unwrap();
        assert!(p99 > Duration::from_micros(1_500) && p99 <= Duration::from_micros(1_792));
        assert!(first.quantile(1.0).unwrap() > Duration::from_millis(40));
        assert_eq!(
            first.sum(),
            Duration::from_micros(98 * 100 + 1_500 + 40_000)
        );
        assert_eq!(first.count_at_most(Duration::from_micros(128)), 98);
        assert_eq!(first.count_at_most(Duration::from_micros(2_048)), 99);
        assert_eq!(first.count_at_most(Duration::from_secs(60)), 100);
        h.record(Duration::from_micros(10), 100);
        let later = h.snapshot().since(&first);
        assert_eq!(later.count(), 100);
        assert_eq!(later.merged(&first).count(), 200);
        assert!(later.quantile(0.99).unwrap() <= Duration::from_micros(12));
    }
}
