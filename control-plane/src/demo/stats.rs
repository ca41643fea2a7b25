//! What a load generator saw over a window of time: calls per backend,
//! their latencies and percentiles, failures; and how even utilizations
//! are (max/mean).
//!
//! Owns: the counting and the arithmetic.
//! Must never: measure anything itself; callers record.

use std::collections::BTreeMap;
use std::time::Duration;

/// Successful calls answered by one backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendCalls {
    latencies: Vec<Duration>,
    sorted: bool,
}

impl BackendCalls {
    /// Counts one call that took `latency`.
    pub fn record(&mut self, latency: Duration) {
        self.latencies.push(latency);
        self.sorted = false;
    }

    /// How many calls.
    pub fn count(&self) -> u64 {
        self.latencies.len() as u64
    }

    /// The `quantile` (0..=1) of the latencies (nearest rank), if any call
    /// was counted.
    pub fn percentile(&mut self, quantile: f64) -> Option<Duration> {
        if !self.sorted {
            self.latencies.sort_unstable();
            self.sorted = true;
        }
        percentile_of_sorted(&self.latencies, quantile)
    }

    /// Adds `other`'s calls.
    pub fn merge(&mut self, other: &BackendCalls) {
        self.latencies.extend_from_slice(&other.latencies);
        self.sorted = false;
    }
}

/// The `quantile` (0..=1) of `sorted` by nearest rank.
fn percentile_of_sorted(sorted: &[Duration], quantile: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Calls over one window of time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallWindow {
    /// Successful calls by the backend that answered.
    pub backends: BTreeMap<String, BackendCalls>,
    /// Calls that failed (any status, or no answer in time).
    pub failed: u64,
    /// The latest failure, `Code: message`.
    pub last_failure: Option<String>,
    /// How long the window was.
    pub length: Duration,
}

impl CallWindow {
    /// Counts a call answered by `backend` in `latency`.
    pub fn record_ok(&mut self, backend: &str, latency: Duration) {
        match self.backends.get_mut(backend) {
            Some(calls) => calls.record(latency),
            None => {
                let mut calls = BackendCalls::default();
                calls.record(latency);
                self.backends.insert(backend.to_owned(), calls);
            }
        }
    }

    /// Counts a failed call.
    pub fn record_failure(&mut self, why: String) {
        self.failed += 1;
        self.last_failure = Some(why);
    }

    /// Successful calls.
    pub fn ok(&self) -> u64 {
        self.backends.values().map(BackendCalls::count).sum()
    }

    /// Calls `backend` answered.
    pub fn count(&self, backend: &str) -> u64 {
        self.backends.get(backend).map_or(0, BackendCalls::count)
    }

    /// `backend`'s share of the successful calls (0..=1).
    pub fn share(&self, backend: &str) -> f64 {
        let ok = self.ok();
        if ok == 0 {
            return 0.0;
        }
        self.count(backend) as f64 / ok as f64
    }

    /// Every successful call, whoever answered.
    pub fn all(&self) -> BackendCalls {
        let mut all = BackendCalls::default();
        for calls in self.backends.values() {
            all.merge(calls);
        }
        all
    }

    /// `backend`'s `quantile` latency.
    pub fn percentile(&mut self, backend: &str, quantile: f64) -> Option<Duration> {
        self.backends.get_mut(backend)?.percentile(quantile)
    }

    /// Adds `other` (a later window) to this one.
    pub fn merge(&mut self, other: &CallWindow) {
        for (backend, calls) in &other.backends {
            self.backends
                .entry(backend.clone())
                .or_default()
                .merge(calls);
        }
        self.failed += other.failed;
        if other.last_failure.is_some() {
            self.last_failure.clone_from(&other.last_failure);
        }
        self.length += other.length;
    }
}

/// The largest of `values` over their mean: 1.0 is perfectly even. `None`
/// when there is nothing to compare or the mean is zero.
pub fn max_over_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    (mean > 0.0).then(|| max / mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut calls = BackendCalls::default();
        assert_eq!(calls.percentile(0.5), None);
        for ms in (1..=100).rev() {
            calls.record(ms * MS);
        }
        assert_eq!(calls.percentile(0.5), Some(50 * MS));
        assert_eq!(calls.percentile(0.99), Some(99 * MS));
        assert_eq!(calls.percentile(1.0), Some(100 * MS));
        assert_eq!(calls.percentile(0.0), Some(MS));
    }

    #[test]
    fn shares_and_merging() {
        let mut first = CallWindow {
            length: 1000 * MS,
            ..CallWindow::default()
        };
        first.record_ok("a", 10 * MS);
        first.record_ok("b", 20 * MS);
        first.record_ok("b", 30 * MS);
        first.record_failure("Unavailable: gone".into());
        assert_eq!(first.ok(), 3);
        assert!((first.share("b") - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(first.share("c"), 0.0);
        let mut second = CallWindow {
            length: 1000 * MS,
            ..CallWindow::default()
        };
        second.record_ok("c", 40 * MS);
        first.merge(&second);
        assert_eq!(first.ok(), 4);
        assert_eq!(first.failed, 1);
        assert_eq!(first.length, 2000 * MS);
        assert_eq!(first.all().percentile(1.0), Some(40 * MS));
        assert_eq!(first.percentile("b", 0.5), Some(20 * MS));
        assert_eq!(CallWindow::default().share("a"), 0.0);
    }

    #[test]
    fn max_over_mean_measures_unevenness() {
        assert_eq!(max_over_mean(&[0.5, 0.5, 0.5]), Some(1.0));
        let uneven = max_over_mean(&[1.0, 0.5, 0.5]).unwrap_or_default();
        assert!((uneven - 1.5).abs() < 1e-9);
        assert_eq!(max_over_mean(&[]), None);
        assert_eq!(max_over_mean(&[0.0, 0.0]), None);
        assert_eq!(max_over_mean(&[f64::NAN, 1.0]), None);
    }
}
