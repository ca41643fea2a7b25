//! Decides which endpoints' load is watched: one ORCA stream per endpoint
//! of every cluster whose policy needs load, opened when the endpoint
//! appears, closed when it goes, at most `max_streams` at once.
//!
//! Owns: the set of running streams and the cap.
//! Must never: block on a stream or let a stream outlive its endpoint.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{LoadTable, OrcaStreamConfig, follow_endpoint};
use crate::registry::{Health, Registry};
use crate::telemetry::Metrics;
use crate::tls::OrcaTlsFiles;

/// How load is collected.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Each stream's settings.
    pub stream: OrcaStreamConfig,
    /// The most ORCA streams this replica keeps open. Endpoints beyond it
    /// (in address order) are marked over the cap and get the mean weight.
    pub max_streams: usize,
    /// How often LRS clients are asked to report.
    pub lrs_interval: Duration,
    /// TLS files for the ORCA connections (re-read on change); `None`
    /// speaks plaintext.
    pub tls: Option<OrcaTlsFiles>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            stream: OrcaStreamConfig::default(),
            max_streams: 10_000,
            lrs_interval: Duration::from_secs(2),
            tls: None,
        }
    }
}

/// The ORCA addresses `registry` wants watched, in address order.
pub fn wanted(registry: &Registry) -> BTreeSet<SocketAddr> {
    registry
        .clusters
        .values()
        .filter(|cluster| cluster.policy.needs_load())
        .flat_map(|cluster| {
            cluster
                .endpoints
                .iter()
                .filter(|endpoint| endpoint.health != Health::Unhealthy)
                .map(|endpoint| cluster.orca_port.address_of(endpoint.address))
        })
        .collect()
}

/// Follows the registry until its writer is gone, keeping one stream per
/// wanted endpoint. Aborting the returned task's future (dropping it) stops
/// every stream.
pub async fn run(
    mut registry: watch::Receiver<Arc<Registry>>,
    table: LoadTable,
    config: CollectorConfig,
    metrics: Arc<Metrics>,
) {
    let mut streams = Streams::default();
    metrics
        .orca_streams_limit
        .set(i64::try_from(config.max_streams).unwrap_or(i64::MAX));
    loop {
        let wanted = wanted(&registry.borrow_and_update());
        streams.sync(&wanted, &table, &config);
        metrics
            .orca_streams
            .set(i64::try_from(streams.running.len()).unwrap_or(i64::MAX));
        metrics
            .orca_streams_over_cap
            .set(i64::try_from(wanted.len().saturating_sub(streams.running.len())).unwrap_or(0));
        if registry.changed().await.is_err() {
            break;
        }
    }
}

/// The running streams; aborts them all when dropped.
#[derive(Default)]
struct Streams {
    running: HashMap<SocketAddr, AbortHandle>,
    over_cap: BTreeSet<SocketAddr>,
}

impl Streams {
    fn sync(&mut self, wanted: &BTreeSet<SocketAddr>, table: &LoadTable, config: &CollectorConfig) {
        self.running.retain(|address, stream| {
            let keep = wanted.contains(address);
            if !keep {
                stream.abort();
                table.remove(address);
                tracing::debug!(endpoint = %address, "stopped following load");
            }
            keep
        });
        for address in std::mem::take(&mut self.over_cap) {
            if !wanted.contains(&address) {
                table.remove(&address);
            }
        }
        for address in wanted {
            if self.running.contains_key(address) {
                continue;
            }
            if self.running.len() >= config.max_streams {
                self.over_cap.insert(*address);
                table.update(*address, |load| load.over_cap = true);
                continue;
            }
            table.update(*address, |load| load.over_cap = false);
            let task = tokio::spawn(follow_endpoint(
                *address,
                table.clone(),
                config.stream.clone(),
            ));
            self.running.insert(*address, task.abort_handle());
            tracing::debug!(endpoint = %address, "following load");
        }
        if !self.over_cap.is_empty() {
            tracing::warn!(
                over_cap = self.over_cap.len(),
                max_streams = config.max_streams,
                "ORCA stream cap reached: these endpoints get the mean weight"
            );
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        for stream in self.running.values() {
            stream.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Cluster, Endpoint, Locality, OrcaPort, Policy};

    fn cluster(name: &str, policy: Policy, orca_port: OrcaPort, ports: &[u16]) -> Cluster {
        Cluster {
            name: name.into(),
            endpoints: ports
                .iter()
                .map(|&port| Endpoint {
                    address: SocketAddr::from(([127, 0, 0, 1], port)),
                    weight: 1,
                    locality: Locality::default(),
                    health: if port == 13 {
                        Health::Unhealthy
                    } else {
                        Health::Healthy
                    },
                })
                .collect(),
            source: "test".into(),
            policy,
            orca_port,
        }
    }

    fn registry(clusters: Vec<Cluster>) -> Registry {
        let mut registry = Registry::default();
        for cluster in clusters {
            registry.clusters.insert(cluster.name.clone(), cluster);
        }
        registry
    }

    fn addresses(ports: &[u16]) -> BTreeSet<SocketAddr> {
        ports
            .iter()
            .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect()
    }

    #[test]
    fn only_load_driven_healthy_endpoints_are_wanted_once_each() {
        let registry = registry(vec![
            cluster("a", Policy::Utilization, OrcaPort::Same, &[11, 12, 13]),
            cluster("alias", Policy::Wrr, OrcaPort::Same, &[11, 12]),
            cluster("s", Policy::Static, OrcaPort::Same, &[21]),
            cluster("m", Policy::Utilization, OrcaPort::Port(9), &[31]),
        ]);
        assert_eq!(wanted(&registry), addresses(&[9, 11, 12]));
    }

    #[tokio::test(start_paused = true)]
    async fn streams_follow_membership_and_respect_the_cap() {
        let table = LoadTable::default();
        let config = CollectorConfig {
            max_streams: 2,
            ..CollectorConfig::default()
        };
        let mut streams = Streams::default();
        streams.sync(&addresses(&[1, 2, 3]), &table, &config);
        assert_eq!(streams.running.len(), 2);
        assert_eq!(streams.over_cap, addresses(&[3]));
        let third = SocketAddr::from(([127, 0, 0, 1], 3));
        assert!(table.get(&third).is_some_and(|l| l.over_cap));
        // One goes: the one over the cap gets its stream.
        streams.sync(&addresses(&[2, 3]), &table, &config);
        assert_eq!(
            streams.running.keys().copied().collect::<BTreeSet<_>>(),
            addresses(&[2, 3])
        );
        assert!(streams.over_cap.is_empty());
        assert!(table.get(&SocketAddr::from(([127, 0, 0, 1], 1))).is_none());
        streams.sync(&BTreeSet::new(), &table, &config);
        assert!(streams.running.is_empty());
    }
}
