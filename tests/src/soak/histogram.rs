//! A fixed-size, lock-free latency histogram: log-linear buckets (32 per
//! power of two, so a reported percentile is within about 3 % above the
//! true value), recorded from many tasks at once through atomics. Its size
//! never depends on how many values it holds, which keeps the soak driver's
//! memory flat however long it runs. It never allocates after creation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two (2^SUB_BITS).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Largest power of two covered (2^40 microseconds is 12 days).
const MAX_EXPONENT: u32 = 40;
/// Bucket count.
const BUCKETS: usize = ((MAX_EXPONENT - SUB_BITS + 2) as usize) * SUB as usize;

/// Counts of durations, at microsecond resolution.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }

    /// Adds one value.
    pub fn record(&self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.buckets[index(micros)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// Adds every value of `other`.
    pub fn merge(&self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter().zip(other.buckets.iter()) {
            let n = theirs.load(Ordering::Relaxed);
            if n > 0 {
                mine.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.count
            .fetch_add(other.count.load(Ordering::Relaxed), Ordering::Relaxed);
        self.max_micros
            .fetch_max(other.max_micros.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// How many values.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The largest value, exactly.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_micros.load(Ordering::Relaxed))
    }

    /// The value below which a fraction `q` (0..=1) of the values lie: the
    /// upper edge of the bucket holding it (never more than the maximum).
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The rank of the wanted value, 1-based.
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                let upper = upper_edge(i).min(self.max_micros.load(Ordering::Relaxed));
                return Some(Duration::from_micros(upper));
            }
        }
        Some(self.max())
    }
}

/// The bucket of `micros`.
fn index(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let exponent = (63 - micros.leading_zeros()).min(MAX_EXPONENT);
    let shift = exponent - SUB_BITS;
    let mantissa = (micros >> shift).min(2 * SUB - 1);
    let i = u64::from(exponent - SUB_BITS + 1) * SUB + (mantissa - SUB);
    (i as usize).min(BUCKETS - 1)
}

/// The largest value bucket `i` holds.
fn upper_edge(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let mantissa = SUB + i % SUB;
    ((mantissa + 1) << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values() {
        for micros in (0..100_000u64).chain([1 << 20, (1 << 30) + 12345, 1 << 39]) {
            let i = index(micros);
            assert!(upper_edge(i) >= micros, "{micros} in bucket {i}");
            if i > 0 {
                assert!(upper_edge(i - 1) < micros, "{micros} in bucket {i}");
            }
            // Within 1/32 above the value.
            assert!(upper_edge(i) as f64 <= micros as f64 * (1.0 + 1.0 / 32.0) + 1.0);
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let histogram = Histogram::new();
        assert_eq!(histogram.quantile(0.5), None);
        for ms in 1..=1000u64 {
            histogram.record(Duration::from_millis(ms));
        }
        let p50 = histogram.quantile(0.5).expect("values").as_secs_f64() * 1e3;
        let p99 = histogram.quantile(0.99).expect("values").as_secs_f64() * 1e3;
        assert!((500.0..=516.0).contains(&p50), "p50 {p50}");
        assert!((990.0..=1000.0).contains(&p99), "p99 {p99}");
        assert_eq!(histogram.quantile(1.0), Some(Duration::from_millis(1000)));
        assert_eq!(histogram.max(), Duration::from_millis(1000));

        let merged = Histogram::new();
        merged.merge(&histogram);
        merged.record(Duration::from_secs(5));
        assert_eq!(merged.count(), 1001);
        assert_eq!(merged.max(), Duration::from_secs(5));
        assert_eq!(merged.quantile(0.5), histogram.quantile(0.5));
    }
}
