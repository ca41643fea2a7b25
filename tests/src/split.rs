//! Where calls landed: per-backend counts, and how they compare with the
//! shares that weights ask for.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Result, bail};

/// Calls counted per backend name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    counts: BTreeMap<String, u64>,
}

impl Split {
    /// An empty count.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one call answered by `backend`.
    pub fn record(&mut self, backend: &str) {
        self.add(backend, 1);
    }

    /// Counts `calls` calls answered by `backend`.
    pub fn add(&mut self, backend: &str, calls: u64) {
        *self.counts.entry(backend.to_owned()).or_default() += calls;
    }

    /// Calls per backend.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// All calls counted.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// `backend`'s share of all calls, in percent.
    pub fn percent(&self, backend: &str) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let count = self.counts.get(backend).copied().unwrap_or(0);
        count as f64 * 100.0 / total as f64
    }

    /// Checks that every backend's share is within `tolerance` percentage
    /// points of its weight's share of `weights`, and that no other backend
    /// got calls.
    pub fn check(&self, weights: &[(&str, u32)], tolerance: f64) -> Result<()> {
        if self.total() == 0 {
            bail!("no calls were counted");
        }
        let total_weight: u64 = weights.iter().map(|(_, weight)| u64::from(*weight)).sum();
        let mut problems = Vec::new();
        for (backend, weight) in weights {
            let want = f64::from(*weight) * 100.0 / total_weight as f64;
            let got = self.percent(backend);
            if (got - want).abs() > tolerance {
                problems.push(format!(
                    "{backend}: {got:.1}% but weight {weight} asks for {want:.1}% (±{tolerance})"
                ));
            }
        }
        for backend in self.counts.keys() {
            if !weights.iter().any(|(name, _)| name == backend) {
                problems.push(format!("{backend} got calls but has no weight"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("split {self} is off: {}", problems.join("; "))
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(backend, count)| format!("{backend}={count} ({:.1}%)", self.percent(backend)))
            .collect();
        write!(f, "[{}] of {}", parts.join(", "), self.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_shares_against_weights() {
        let mut split = Split::new();
        split.add("a", 95);
        split.add("b", 205);
        split.add("c", 700);
        assert!(split.check(&[("a", 1), ("b", 2), ("c", 7)], 1.0).is_ok());
        assert!(split.check(&[("a", 1), ("b", 2), ("c", 7)], 0.4).is_err());
        assert!(split.check(&[("a", 1), ("b", 2)], 50.0).is_err());
        assert!(Split::new().check(&[("a", 1)], 100.0).is_err());
    }
}
