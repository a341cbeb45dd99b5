//! A fixed-size latency histogram in microseconds with ~1.6 % relative precision.
//!
//! Owns only counting and percentile reading: recording is an index computation and an
//! increment, with no allocation after construction, so it can sit on the receive path of
//! hundreds of thousands of packets per second. It must not read clocks; callers pass values.

/// Values below this are recorded exactly (one bucket per microsecond).
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above [`LINEAR`] (the 6 bits below the leading one).
const SUB_BUCKETS: u64 = 64;
/// Powers of two covered above [`LINEAR`]: up to 2^40 µs (~12 days), far beyond any run.
const OCTAVES: u64 = 34;
const BUCKETS: usize = (LINEAR + OCTAVES * SUB_BUCKETS) as usize;

/// Counts of latencies in microseconds.
#[derive(Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("total", &self.total)
            .field("p50", &self.percentile(50.0))
            .field("p99", &self.percentile(99.0))
            .field("max", &self.max)
            .finish()
    }
}

fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let octave = 63 - u64::from(us.leading_zeros()); // >= 7
    let sub = (us >> (octave - 6)) & (SUB_BUCKETS - 1);
    let index = LINEAR + (octave - 7) * SUB_BUCKETS + sub;
    (index as usize).min(BUCKETS - 1)
}

/// The largest value that falls into bucket `index` (percentiles are reported as upper bounds).
fn bucket_upper(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR {
        return index;
    }
    let octave = (index - LINEAR) / SUB_BUCKETS + 7;
    let sub = (index - LINEAR) % SUB_BUCKETS;
    let width = 1u64 << (octave - 6);
    ((SUB_BUCKETS + sub) << (octave - 6)) + width - 1
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    /// Records one latency of `us` microseconds.
    pub fn record(&mut self, us: u64) {
        if let Some(c) = self.counts.get_mut(bucket_of(us)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(us);
        self.sum += u128::from(us);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Forgets everything recorded.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.max = 0;
        self.sum = 0;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean (exact), 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at or below which `p` percent of the values lie (an upper bound within the
    /// bucket precision, never above [`Self::max`]); 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_contain_their_values() {
        let mut last = 0;
        for v in (0..5000).chain([1 << 20, (1 << 20) + 12345, 1 << 39]) {
            let b = bucket_of(v);
            assert!(b >= last || v > 5000, "bucket order at {v}");
            last = b;
            assert!(bucket_upper(b) >= v, "upper bound of {v}");
            assert!(
                bucket_upper(b) as f64 <= v as f64 * 1.016 + 1.0,
                "precision at {v}: {}",
                bucket_upper(b)
            );
        }
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = LatencyHistogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 1000);
        let p50 = h.percentile(50.0);
        assert!((500..=508).contains(&p50), "{p50}");
        let p99 = h.percentile(99.0);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert!((h.mean() - 500.5).abs() < 1e-9);
        let mut other = LatencyHistogram::new();
        other.record(5000);
        h.merge(&other);
        assert_eq!(h.max(), 5000);
        assert_eq!(h.percentile(100.0), 5000);
    }
}
