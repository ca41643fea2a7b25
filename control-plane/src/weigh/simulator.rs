//! A deterministic simulator of a cluster under a weight policy: servers of
//! given capacities, a client population that follows pushed weights one
//! step late, noisy load reports, and the real policy code in the loop (the
//! same `ClusterWeigher` and push threshold the weigh stage runs).
//!
//! Used by tests (convergence, stability) and to tune defaults:
//! `lookaside simulate` prints a run step by step.
//!
//! Owns: the load model. Must never: use wall-clock time or unseeded
//! randomness; the same inputs always give the same run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{ClusterWeigher, EndpointInput, LoadReport, WeighConfig, next_push};
use crate::registry::Policy;

/// A simulated server.
#[derive(Debug, Clone)]
pub struct SimServer {
    /// Requests per second it can serve at 100 % utilization.
    pub capacity: f64,
    /// Fraction of requests that fail.
    pub error_rate: f64,
}

/// One step of a run.
#[derive(Debug, Clone)]
pub struct SimStep {
    /// Weights in effect at clients during the step.
    pub weights: Vec<u32>,
    /// True utilization of each server during the step.
    pub utilization: Vec<f64>,
}

/// A simulation.
#[derive(Debug)]
pub struct Simulator {
    servers: Vec<SimServer>,
    /// Total offered load, requests per second.
    pub load: f64,
    /// Relative noise on reported utilization (0.2 = +-20 %).
    pub noise: f64,
    weigher: ClusterWeigher,
    config: WeighConfig,
    rng: StdRng,
    pending: Vec<u32>,
    applied: Vec<u32>,
    clock: Instant,
    step_length: Duration,
}

fn address(index: usize) -> SocketAddr {
    let index = u16::try_from(index).unwrap_or(u16::MAX);
    SocketAddr::from(([10, 0, 0, 1], 8000 + index))
}

impl Simulator {
    /// A run over `servers` with `load` requests per second in total.
    pub fn new(
        servers: Vec<SimServer>,
        load: f64,
        noise: f64,
        seed: u64,
        policy: Policy,
        config: WeighConfig,
    ) -> Self {
        let equal = vec![1000; servers.len()];
        Self {
            load,
            noise,
            config: config.clone(),
            weigher: ClusterWeigher::new(policy, config),
            rng: StdRng::seed_from_u64(seed),
            pending: equal.clone(),
            applied: equal,
            servers,
            clock: Instant::now(),
            step_length: Duration::from_secs(1),
        }
    }

    /// Aggregate utilization: offered load over total capacity.
    pub fn aggregate_utilization(&self) -> f64 {
        self.load / self.servers.iter().map(|s| s.capacity).sum::<f64>()
    }

    /// Changes a server's capacity (a noisy neighbour, a smaller node...).
    pub fn set_capacity(&mut self, index: usize, capacity: f64) {
        if let Some(server) = self.servers.get_mut(index) {
            server.capacity = capacity;
        }
    }

    /// Runs one control step: clients use the weights pushed last step,
    /// servers report, the controller computes the next weights.
    pub fn step(&mut self) -> SimStep {
        self.applied = self.pending.clone();
        let total: f64 = self.applied.iter().map(|&w| f64::from(w)).sum();
        let mut utilization = Vec::with_capacity(self.servers.len());
        let mut reports = Vec::with_capacity(self.servers.len());
        self.clock += self.step_length;
        for (index, server) in self.servers.iter().enumerate() {
            let share = f64::from(self.applied[index]) / total.max(1.0);
            let rps = self.load * share;
            let true_utilization = rps / server.capacity.max(1e-9);
            let noise = if self.noise > 0.0 {
                1.0 + self.rng.random_range(-self.noise..=self.noise)
            } else {
                1.0
            };
            utilization.push(true_utilization);
            reports.push(EndpointInput {
                address: address(index),
                configured_weight: 1,
                client_errors: None,
                report: Some(LoadReport {
                    utilization: (true_utilization * noise).max(0.0),
                    rps,
                    eps: rps * server.error_rate,
                    at: self.clock,
                    period: None,
                }),
            });
        }
        let computed = self.weigher.weigh(&reports, self.clock, true);
        // Pushed only past the threshold and glided, as the weigh stage does.
        if let Some(pushed) = next_push(&self.pending, &computed, &self.config) {
            let with_reasons: Vec<_> = pushed
                .iter()
                .zip(&computed)
                .map(|(&weight, &(_, reason))| (weight, reason))
                .collect();
            self.weigher.pushed(&reports, &with_reasons);
            self.pending = pushed;
        }
        SimStep {
            weights: self.applied.clone(),
            utilization,
        }
    }

    /// The weights the controller would push now.
    pub fn pending_weights(&self) -> &[u32] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weigh::largest_change;

    fn servers(capacities: &[f64]) -> Vec<SimServer> {
        capacities
            .iter()
            .map(|&capacity| SimServer {
                capacity,
                error_rate: 0.0,
            })
            .collect()
    }

    /// A run over servers of `capacities` with the default weigh config.
    fn run(capacities: &[f64], load: f64, noise: f64, seed: u64, policy: Policy) -> Simulator {
        Simulator::new(
            servers(capacities),
            load,
            noise,
            seed,
            policy,
            WeighConfig::default(),
        )
    }

    /// Largest relative distance of `weights` from the proportions `target`.
    fn distance(weights: &[u32], target: &[f64]) -> f64 {
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        let target_total: f64 = target.iter().sum();
        weights
            .iter()
            .zip(target)
            .map(|(&w, &t)| {
                let share = f64::from(w) / total;
                let want = t / target_total;
                (share / want - 1.0).abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn capacities_1_1_2_at_70_percent_converge_within_10_steps_and_stay() {
        // Capacities 100/100/200 rps, 280 rps offered: 70 % aggregate.
        let mut sim = run(&[100.0, 100.0, 200.0], 280.0, 0.0, 1, Policy::Utilization);
        assert!((sim.aggregate_utilization() - 0.7).abs() < 1e-9);
        let mut converged_at = None;
        for step in 1..=30 {
            sim.step();
            let d = distance(sim.pending_weights(), &[1.0, 1.0, 2.0]);
            if d <= 0.10 && converged_at.is_none() {
                converged_at = Some(step);
            }
            if let Some(at) = converged_at {
                assert!(
                    d <= 0.10,
                    "left the band at step {step} (converged at {at}): {d}"
                );
            }
        }
        let at = converged_at.expect("converged");
        assert!(at <= 10, "converged at step {at}");
    }

    #[test]
    fn a_capacity_drop_is_followed_within_10_steps() {
        let mut sim = run(&[100.0, 100.0, 200.0], 280.0, 0.0, 2, Policy::Utilization);
        for _ in 0..15 {
            sim.step();
        }
        // Server 2 loses half its capacity: now 100/100/100.
        sim.set_capacity(2, 100.0);
        let mut followed = None;
        for step in 1..=20 {
            sim.step();
            if followed.is_none() && distance(sim.pending_weights(), &[1.0, 1.0, 1.0]) <= 0.10 {
                followed = Some(step);
            }
        }
        let at = followed.expect("followed");
        assert!(at <= 10, "followed at step {at}");
    }

    #[test]
    fn noisy_reports_do_not_make_weights_oscillate() {
        for seed in 1..=20 {
            let mut sim = run(
                &[100.0, 100.0, 200.0],
                280.0,
                0.2,
                seed,
                Policy::Utilization,
            );
            for _ in 0..15 {
                sim.step();
            }
            let mut previous = sim.pending_weights().to_vec();
            let mut worst: f64 = 0.0;
            let mut mean_distance = 0.0;
            for _ in 0..100 {
                sim.step();
                let current = sim.pending_weights().to_vec();
                // Shares, not raw weights: their scale is arbitrary.
                worst = worst.max(largest_change(&previous, &current));
                mean_distance += distance(&current, &[1.0, 1.0, 2.0]) / 100.0;
                previous = current;
            }
            assert!(
                worst <= 0.10 + 1e-9,
                "seed {seed}: a weight moved {:.1} % in one step",
                worst * 100.0
            );
            // And they stay near 1:1:2.
            assert!(mean_distance <= 0.1, "seed {seed}: {mean_distance}");
        }
    }

    #[test]
    fn a_failing_server_loses_weight() {
        let mut servers = servers(&[100.0, 100.0, 100.0]);
        servers[0].error_rate = 0.5;
        let mut sim = Simulator::new(
            servers,
            150.0,
            0.0,
            4,
            Policy::Utilization,
            WeighConfig::default(),
        );
        for _ in 0..20 {
            sim.step();
        }
        let weights = sim.pending_weights();
        assert!(weights[0] < weights[1] / 2, "{weights:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let run = |seed| {
            let mut sim = run(&[100.0, 150.0], 150.0, 0.2, seed, Policy::Utilization);
            (0..10).map(|_| sim.step().weights).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
    }

    #[test]
    fn wrr_converges_to_capacities_in_a_few_steps() {
        let mut sim = run(&[100.0, 100.0, 200.0], 280.0, 0.0, 5, Policy::Wrr);
        // The per-push cap (8 %) makes it glide: 1.08^4 > 4/3.
        for _ in 0..5 {
            sim.step();
        }
        assert!(distance(sim.pending_weights(), &[1.0, 1.0, 2.0]) <= 0.05);
    }
}
