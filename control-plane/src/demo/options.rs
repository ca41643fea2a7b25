//! What a demo run is: its backends, its load, its policy and its
//! slowdown, checked before anything starts.
//!
//! Owns: the demo's knobs, their defaults and what follows from them
//! (workers per backend, the rate, when the slowdown comes).
//! Must never: start anything.

use std::net::SocketAddr;
use std::time::Duration;

use super::{DemoBackendConfig, DemoError};
use crate::registry::Policy;

/// Most backends a demo runs (named `a` to `z`).
pub const MAX_BACKENDS: usize = 26;

/// How a demo runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// The demo cluster's weight policy.
    pub policy: Policy,
    /// Each backend's capacity in calls per second.
    pub capacities: Vec<f64>,
    /// How long one call holds a backend's worker.
    pub cost: Duration,
    /// Calls sent as a fraction of the total capacity.
    pub load: f64,
    /// How long the load runs.
    pub duration: Duration,
    /// When a backend slows down; `None`: halfway.
    pub slow_at: Option<Duration>,
    /// Which backend slows down (0-based).
    pub slow_backend: usize,
    /// By how much (2: every call takes twice as long).
    pub slowdown: f64,
    /// Control step of the weight policy (and its push interval).
    pub step: Duration,
    /// ORCA report interval asked of the backends.
    pub orca_interval: Duration,
    /// Where the control plane listens.
    pub xds_listen: SocketAddr,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            policy: Policy::Utilization,
            capacities: vec![100.0, 100.0, 200.0],
            cost: Duration::from_millis(40),
            load: 0.75,
            duration: Duration::from_secs(40),
            slow_at: None,
            slow_backend: 0,
            slowdown: 2.0,
            step: Duration::from_millis(500),
            orca_interval: Duration::from_millis(500),
            xds_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl DemoOptions {
    /// The backends to start, named `a`, `b`, ...: each gets
    /// `capacity * cost` workers (at least one), so its capacity is as
    /// asked up to rounding. Fails on options no demo can run with.
    pub fn backends(&self) -> Result<Vec<DemoBackendConfig>, DemoError> {
        self.check()?;
        Ok(self
            .capacities
            .iter()
            .zip('a'..='z')
            .map(|(capacity, name)| {
                let workers = (capacity * self.cost.as_secs_f64()).round().max(1.0) as usize;
                DemoBackendConfig::new(&name.to_string(), workers, self.cost)
            })
            .collect())
    }

    /// Calls per second to send: `load` of the backends' total capacity
    /// (after rounding to whole workers).
    pub fn rate(&self) -> f64 {
        let total: f64 = self
            .backends()
            .unwrap_or_default()
            .iter()
            .map(|backend| backend.workers as f64 / backend.cost.as_secs_f64().max(1e-6))
            .sum();
        total * self.load
    }

    /// When the slowdown comes, if it comes within the run.
    pub fn slowdown_at(&self) -> Option<Duration> {
        let at = self.slow_at.unwrap_or(self.duration / 2);
        (at < self.duration && (self.slowdown - 1.0).abs() > 1e-9).then_some(at)
    }

    fn check(&self) -> Result<(), DemoError> {
        let fail = |why: String| Err(DemoError::Options(why));
        if self.capacities.is_empty() || self.capacities.len() > MAX_BACKENDS {
            return fail(format!(
                "--capacities: give 1 to {MAX_BACKENDS} backends, not {}",
                self.capacities.len()
            ));
        }
        if let Some(bad) = self
            .capacities
            .iter()
            .find(|c| !c.is_finite() || **c <= 0.0)
        {
            return fail(format!(
                "--capacities: {bad} is not a positive number of calls per second"
            ));
        }
        if self.cost.is_zero() {
            return fail("--cost-ms must be at least 1".to_owned());
        }
        if !self.load.is_finite() || self.load <= 0.0 || self.load > 2.0 {
            return fail(format!(
                "--load {} is out of range: a fraction of the total capacity in (0, 2]",
                self.load
            ));
        }
        if !self.slowdown.is_finite() || self.slowdown <= 0.0 {
            return fail(format!(
                "--slowdown {} must be a positive factor",
                self.slowdown
            ));
        }
        if self.slow_backend >= self.capacities.len() {
            return fail(format!(
                "--slow-backend {} does not exist: backends are numbered 0 to {}",
                self.slow_backend,
                self.capacities.len() - 1
            ));
        }
        if self.duration.is_zero() {
            return fail("--duration-s must be at least 1".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_three_backends_of_one_one_and_two_at_three_quarters() {
        let options = DemoOptions::default();
        let backends = options.backends().unwrap_or_default();
        let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let workers: Vec<usize> = backends.iter().map(|b| b.workers).collect();
        assert_eq!(workers, [4, 4, 8]);
        assert!((options.rate() - 300.0).abs() < 1e-9);
        assert_eq!(options.slowdown_at(), Some(Duration::from_secs(20)));
    }

    #[test]
    fn the_rate_follows_whole_workers() {
        let options = DemoOptions {
            capacities: vec![10.0, 30.0],
            cost: Duration::from_millis(40),
            load: 0.5,
            ..DemoOptions::default()
        };
        // 0.4 and 1.2 workers round to 1 and 1: 25 calls/s each.
        assert!((options.rate() - 25.0).abs() < 1e-9);
    }

    #[test]
    fn no_slowdown_when_it_would_come_after_the_end_or_changes_nothing() {
        let late = DemoOptions {
            slow_at: Some(Duration::from_secs(50)),
            ..DemoOptions::default()
        };
        assert_eq!(late.slowdown_at(), None);
        let none = DemoOptions {
            slowdown: 1.0,
            ..DemoOptions::default()
        };
        assert_eq!(none.slowdown_at(), None);
    }

    #[test]
    fn options_no_demo_can_run_with_are_refused_with_the_flag_named() {
        let cases = [
            (
                DemoOptions {
                    capacities: vec![],
                    ..DemoOptions::default()
                },
                "--capacities",
            ),
            (
                DemoOptions {
                    capacities: vec![100.0, -1.0],
                    ..DemoOptions::default()
                },
                "--capacities: -1",
            ),
            (
                DemoOptions {
                    load: f64::NAN,
                    ..DemoOptions::default()
                },
                "--load",
            ),
            (
                DemoOptions {
                    slow_backend: 3,
                    ..DemoOptions::default()
                },
                "--slow-backend 3",
            ),
            (
                DemoOptions {
                    slowdown: 0.0,
                    ..DemoOptions::default()
                },
                "--slowdown",
            ),
            (
                DemoOptions {
                    cost: Duration::ZERO,
                    ..DemoOptions::default()
                },
                "--cost-ms",
            ),
        ];
        for (options, flag) in cases {
            let error = options.backends().map(|_| ()).map_err(|e| e.to_string());
            assert!(
                error.as_ref().is_err_and(|e| e.contains(flag)),
                "{flag}: {error:?}"
            );
        }
    }
}
