//! The weigh task: reads each new registry and, every control step, the
//! load table; publishes weights.
//!
//! A source change (endpoints added, removed, drained) is published at
//! once. A load-driven change is published for a cluster only when some
//! weight moved by more than the push threshold and the cluster's last
//! push is at least the minimum interval old, so clients are not flooded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{
    ClusterWeigher, EndpointInput, WeighConfig, WeightReason, Weighted, WeightedCluster,
    WeightedEndpoint,
};
use crate::load::LoadTable;
use crate::registry::{Cluster, Health, Registry};
use crate::telemetry::Metrics;
use crate::weigh::next_push;

/// One cluster's weigher and when it was last pushed for load.
#[derive(Debug)]
struct Slot {
    weigher: ClusterWeigher,
    last_push: Option<Instant>,
}

/// Every cluster's weigher and what was last published.
#[derive(Debug)]
pub struct Weigher {
    config: WeighConfig,
    loads: LoadTable,
    clusters: BTreeMap<String, Slot>,
    published: Weighted,
    /// The registry last weighed, to tell which clusters the sources changed.
    previous: Option<Arc<Registry>>,
}

impl Weigher {
    /// A weigher reading load from `loads`.
    pub fn new(config: WeighConfig, loads: LoadTable) -> Self {
        Self {
            config,
            loads,
            clusters: BTreeMap::new(),
            published: Weighted::default(),
            previous: None,
        }
    }

    /// Weights after the sources changed: every cluster re-weighed and
    /// published, without a control step.
    pub fn on_registry(&mut self, registry: &Arc<Registry>, now: Instant) -> &Weighted {
        self.clusters
            .retain(|name, _| registry.clusters.contains_key(name));
        let mut next = Weighted {
            complete: registry.complete,
            ..Weighted::default()
        };
        for cluster in registry.clusters.values() {
            // A cluster the sources did not touch keeps what was published
            // (with thousands of clusters, one change re-weighs one).
            let unchanged = self
                .previous
                .as_ref()
                .and_then(|previous| previous.clusters.get(&cluster.name))
                == Some(cluster);
            if unchanged && let Some(published) = self.published.clusters.get(&cluster.name) {
                next.clusters
                    .insert(cluster.name.clone(), published.clone());
                continue;
            }
            let (weighted, _) = self.weigh_cluster(cluster, now, false);
            next.clusters
                .insert(cluster.name.clone(), Arc::new(weighted));
        }
        self.published = next;
        self.previous = Some(registry.clone());
        &self.published
    }

    /// Weights after one control step. Returns the clusters whose weights
    /// were published (moved past the threshold, not pushed too recently).
    pub fn on_step(&mut self, registry: &Registry, now: Instant) -> Vec<String> {
        let mut pushed = Vec::new();
        for cluster in registry.clusters.values() {
            if !cluster.policy.needs_load() {
                continue;
            }
            let (candidate, inputs) = self.weigh_cluster(cluster, now, true);
            let Some(current) = self.published.clusters.get(&cluster.name) else {
                self.published
                    .clusters
                    .insert(cluster.name.clone(), Arc::new(candidate));
                continue;
            };
            let old: Vec<u32> = current.endpoints.iter().map(|e| e.weight).collect();
            let new: Vec<(u32, WeightReason)> = candidate
                .endpoints
                .iter()
                .map(|e| (e.weight, e.reason))
                .collect();
            let recent = self
                .clusters
                .get(&cluster.name)
                .and_then(|slot| slot.last_push)
                .is_some_and(|last| {
                    now.saturating_duration_since(last) < self.config.push_min_interval
                });
            if recent {
                continue;
            }
            let Some(limited) = next_push(&old, &new, &self.config) else {
                continue;
            };
            let mut candidate = candidate;
            for (endpoint, weight) in candidate.endpoints.iter_mut().zip(limited) {
                endpoint.weight = weight;
            }
            let weights: Vec<(u32, WeightReason)> = candidate
                .endpoints
                .iter()
                .map(|e| (e.weight, e.reason))
                .collect();
            if let Some(slot) = self.clusters.get_mut(&cluster.name) {
                slot.weigher.pushed(&inputs, &weights);
            }
            self.published
                .clusters
                .insert(cluster.name.clone(), Arc::new(candidate));
            if let Some(slot) = self.clusters.get_mut(&cluster.name) {
                slot.last_push = Some(now);
            }
            pushed.push(cluster.name.clone());
        }
        pushed
    }

    /// What was last published.
    pub fn published(&self) -> &Weighted {
        &self.published
    }

    fn inputs(&self, cluster: &Cluster, now: Instant) -> Vec<EndpointInput> {
        let load_driven = cluster.policy.needs_load();
        cluster
            .endpoints
            .iter()
            .map(|endpoint| EndpointInput {
                address: endpoint.address,
                configured_weight: endpoint.weight,
                client_errors: if load_driven {
                    self.loads
                        .clients()
                        .get(&endpoint.address, now)
                        .and_then(|c| c.error_ratio())
                } else {
                    None
                },
                // A draining endpoint gets no new calls: its falling load
                // would only drag the mean down and wind the others' weights
                // to the bound. It weighs in once healthy again.
                report: if load_driven && endpoint.health == Health::Healthy {
                    self.loads
                        .report(&cluster.orca_port.address_of(endpoint.address))
                } else {
                    None
                },
            })
            .collect()
    }

    /// The cluster's weights, and the inputs they were computed from.
    fn weigh_cluster(
        &mut self,
        cluster: &Cluster,
        now: Instant,
        advance: bool,
    ) -> (WeightedCluster, Vec<EndpointInput>) {
        let inputs = self.inputs(cluster, now);
        let config = &self.config;
        let slot = self
            .clusters
            .entry(cluster.name.clone())
            .or_insert_with(|| Slot {
                weigher: ClusterWeigher::new(cluster.policy, config.clone()),
                last_push: None,
            });
        if slot.weigher.policy() != cluster.policy {
            slot.weigher = ClusterWeigher::new(cluster.policy, config.clone());
        }
        let weigher = &mut slot.weigher;
        let load_driven = cluster.policy.needs_load();
        let weights = weigher.weigh(&inputs, now, advance);
        let weighted = WeightedCluster {
            name: cluster.name.clone(),
            policy: cluster.policy.as_str(),
            source: cluster.source.clone(),
            endpoints: cluster
                .endpoints
                .iter()
                .zip(weights)
                .map(|(endpoint, (weight, reason))| WeightedEndpoint {
                    address: endpoint.address,
                    weight,
                    configured_weight: endpoint.weight,
                    reason,
                    load_address: load_driven
                        .then(|| cluster.orca_port.address_of(endpoint.address)),
                    locality: endpoint.locality.clone(),
                    health: endpoint.health,
                })
                .collect(),
        };
        (weighted, inputs)
    }
}

/// Publishes weights for every registry change and every control step
/// until the registry's writer is gone. The returned receiver starts with
/// the current registry's weights.
pub fn run(
    mut registry: watch::Receiver<Arc<Registry>>,
    loads: LoadTable,
    config: WeighConfig,
    metrics: Arc<Metrics>,
) -> watch::Receiver<Arc<Weighted>> {
    let step = config.step;
    let mut weigher = Weigher::new(config, loads);
    let mut current = registry.borrow_and_update().clone();
    let initial = weigher.on_registry(&current, Instant::now()).clone();
    let (tx, rx) = watch::channel(Arc::new(initial));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = registry.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    current = registry.borrow_and_update().clone();
                    weigher.on_registry(&current, Instant::now());
                }
                _ = ticker.tick() => {
                    // The task's own clock, not the tick's: with
                    // `push_min_interval` equal to `step` a push then lands
                    // about every other step (one runs a little early in its
                    // slot and is "too recent"). Measured (session 12, the
                    // balance bench): pushing at every step, on the tick's
                    // time, made the utilization controller oscillate in 2
                    // of 3 runs (p99 1.3-2.8 s instead of 42 ms).
                    let pushed = weigher.on_step(&current, Instant::now());
                    if pushed.is_empty() {
                        continue;
                    }
                    for cluster in &pushed {
                        tracing::debug!(cluster, "weights moved past the threshold");
                        metrics.weight_pushes.inc();
                    }
                }
            }
            let weighted = weigher.published();
            tx.send_if_modified(|published| {
                if **published == *weighted {
                    false
                } else {
                    *published = Arc::new(weighted.clone());
                    true
                }
            });
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::load::Verdict;
    use crate::registry::{Endpoint, Locality, OrcaPort, Policy};
    use crate::weigh::{LoadReport, WeightReason};

    #[test]
    fn a_draining_endpoints_load_does_not_steer_the_others() {
        let address = |port| SocketAddr::from(([10, 0, 0, 1], port));
        let endpoint = |port, health| Endpoint {
            address: address(port),
            weight: 1,
            locality: Locality::default(),
            health,
        };
        let cluster = Cluster {
            name: "g".into(),
            endpoints: vec![
                endpoint(1, Health::Healthy),
                endpoint(2, Health::Healthy),
                endpoint(3, Health::Draining),
            ],
            source: "test".into(),
            policy: Policy::Utilization,
            orca_port: OrcaPort::Same,
        };
        let mut registry = Registry::default();
        registry.clusters.insert(cluster.name.clone(), cluster);
        let registry = Arc::new(registry);
        let loads = LoadTable::default();
        let mut weigher = Weigher::new(WeighConfig::default(), loads.clone());
        for port in [1, 2, 3] {
            // Watched, as the collector's ORCA streams make them.
            loads.update(address(port), |_| {});
        }
        let start = Instant::now();
        weigher.on_registry(&registry, start);
        for second in 1..=30 {
            let now = start + Duration::from_secs(second);
            // The draining one is nearly idle: it gets no new calls.
            for (port, utilization) in [(1, 0.8), (2, 0.6), (3, 0.01)] {
                let report = LoadReport {
                    utilization,
                    rps: 100.0,
                    eps: 0.0,
                    at: now,
                    period: None,
                };
                loads.record(address(port), Verdict::Accepted(report));
            }
            weigher.on_step(&registry, now);
        }
        let endpoints = &weigher.published().clusters["g"].endpoints;
        let (busy, lighter, draining) = (&endpoints[0], &endpoints[1], &endpoints[2]);
        assert_ne!(draining.reason, WeightReason::Feedback, "{endpoints:?}");
        assert!(busy.weight < lighter.weight, "{endpoints:?}");
    }
}
