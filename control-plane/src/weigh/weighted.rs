//! The weighted view of the registry, and the static policy.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::registry::{Health, Locality, MAX_WEIGHT, MIN_WEIGHT, Registry};

/// Every cluster with the weights clients should use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Weighted {
    /// Clusters by name.
    pub clusters: BTreeMap<String, WeightedCluster>,
}

/// A cluster with final weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedCluster {
    /// Cluster name.
    pub name: String,
    /// Name of the policy that produced the weights.
    pub policy: &'static str,
    /// Where the cluster came from.
    pub source: String,
    /// Endpoints in source order.
    pub endpoints: Vec<WeightedEndpoint>,
}

/// An endpoint with its final weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedEndpoint {
    /// IP and port.
    pub address: SocketAddr,
    /// Weight sent to clients, always in `[MIN_WEIGHT, MAX_WEIGHT]`.
    pub weight: u32,
    /// Weight the source asked for.
    pub configured_weight: u32,
    /// Where it runs.
    pub locality: Locality,
    /// Whether it takes new calls.
    pub health: Health,
}

/// The `static` policy: the source's weights, clamped to `[1, 10000]`.
pub fn weigh_static(registry: &Registry) -> Weighted {
    let clusters = registry
        .clusters
        .values()
        .map(|cluster| {
            let endpoints = cluster
                .endpoints
                .iter()
                .map(|endpoint| WeightedEndpoint {
                    address: endpoint.address,
                    weight: endpoint.weight.clamp(MIN_WEIGHT, MAX_WEIGHT),
                    configured_weight: endpoint.weight,
                    locality: endpoint.locality.clone(),
                    health: endpoint.health,
                })
                .collect();
            let weighted = WeightedCluster {
                name: cluster.name.clone(),
                policy: "static",
                source: cluster.source.clone(),
                endpoints,
            };
            (cluster.name.clone(), weighted)
        })
        .collect();
    Weighted { clusters }
}

/// Test fixture: clusters of `(name, [(port, weight)])` on 127.0.0.1.
#[cfg(test)]
pub(crate) fn weighted_for_test(clusters: &[(&str, &[(u16, u32)])]) -> std::sync::Arc<Weighted> {
    let mut out = Weighted::default();
    for (name, endpoints) in clusters {
        let endpoints = endpoints
            .iter()
            .map(|(port, weight)| WeightedEndpoint {
                address: SocketAddr::from(([127, 0, 0, 1], *port)),
                weight: *weight,
                configured_weight: *weight,
                locality: Locality::default(),
                health: Health::Healthy,
            })
            .collect();
        let cluster = WeightedCluster {
            name: name.to_string(),
            policy: "static",
            source: "test".into(),
            endpoints,
        };
        out.clusters.insert(name.to_string(), cluster);
    }
    std::sync::Arc::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Cluster, Endpoint};

    #[test]
    fn static_policy_clamps_into_the_routable_range() {
        let mut registry = Registry::default();
        let endpoint = |port: u16, weight: u32| Endpoint {
            address: SocketAddr::from(([10, 0, 0, 1], port)),
            weight,
            locality: Locality::default(),
            health: Health::Healthy,
        };
        registry.clusters.insert(
            "g".into(),
            Cluster {
                name: "g".into(),
                endpoints: vec![endpoint(1, 0), endpoint(2, 7), endpoint(3, 50_000)],
                source: "test".into(),
            },
        );
        let weighted = weigh_static(&registry);
        let weights: Vec<u32> = weighted.clusters["g"]
            .endpoints
            .iter()
            .map(|e| e.weight)
            .collect();
        assert_eq!(weights, vec![1, 7, 10_000]);
    }
}
