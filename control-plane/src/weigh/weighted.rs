//! The weighted view of the registry: what the snapshot stage reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::WeightReason;
use crate::registry::{Health, Locality};

/// Every cluster with the weights clients should use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Weighted {
    /// Clusters by name, each shared: an unchanged cluster is the same
    /// allocation from one publication to the next (cheap to clone and to
    /// compare).
    pub clusters: BTreeMap<String, std::sync::Arc<WeightedCluster>>,
    /// Whether every discovery source has listed once (see
    /// `Registry::complete`).
    pub complete: bool,
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
    /// Why it has this weight.
    pub reason: WeightReason,
    /// Where its load reports come from, when its policy uses load.
    pub load_address: Option<SocketAddr>,
    /// Where it runs.
    pub locality: Locality,
    /// Whether it takes new calls.
    pub health: Health,
}

/// Test fixture: clusters of `(name, [(port, weight)])` on 127.0.0.1.
#[cfg(test)]
pub(crate) fn weighted_for_test(clusters: &[(&str, &[(u16, u32)])]) -> std::sync::Arc<Weighted> {
    let mut out = Weighted {
        complete: true,
        ..Weighted::default()
    };
    for (name, endpoints) in clusters {
        let endpoints = endpoints
            .iter()
            .map(|(port, weight)| WeightedEndpoint {
                address: SocketAddr::from(([127, 0, 0, 1], *port)),
                weight: *weight,
                configured_weight: *weight,
                reason: WeightReason::Configured,
                load_address: None,
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
        out.clusters
            .insert(name.to_string(), std::sync::Arc::new(cluster));
    }
    std::sync::Arc::new(out)
}
