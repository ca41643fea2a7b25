//! From EndpointSlices to clusters: naming, merging every slice of a Service,
//! deduplicating addresses, and mapping endpoint conditions to health.
//!
//! Owns: the mapping rules documented in the module root.
//! Must never: do I/O or keep state between calls; the same slices always
//! give the same clusters, in the same order.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointSlice};

use crate::registry::{Cluster, Endpoint, Health, Locality, OrcaPort, Policy};

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Optional Service label (copied onto its slices) choosing the weight
/// policy: `static`, `utilization` (default) or `wrr`.
pub const POLICY_LABEL: &str = "lookaside.io/policy";

/// Optional Service label (copied onto its slices): the port the pods serve
/// ORCA load reports on, when it is not the balanced port.
pub const ORCA_PORT_LABEL: &str = "lookaside.io/orca-port";

/// Suffix of the fully qualified alias of every cluster name.
const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// Every cluster the given slices describe, sorted by name, with endpoints
/// sorted by address. `source` is written into each cluster.
pub fn clusters_from_slices<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    source: &str,
) -> Vec<Cluster> {
    // (namespace, service, port) -> address -> endpoint
    let mut merged: BTreeMap<(String, String, u16), BTreeMap<SocketAddr, Endpoint>> =
        BTreeMap::new();
    // (namespace, service) -> options, from the first slice that names them.
    let mut options: BTreeMap<(String, String), (Policy, OrcaPort)> = BTreeMap::new();
    for slice in slices {
        let Some((namespace, service)) = owner(slice) else {
            continue;
        };
        options
            .entry((namespace.clone(), service.clone()))
            .or_insert_with(|| balancing_options(slice));
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue; // FQDN slices name hosts; xDS clients need IPs.
        }
        for port in tcp_ports(slice) {
            let endpoints = merged
                .entry((namespace.clone(), service.clone(), port))
                .or_default();
            for endpoint in &slice.endpoints {
                let Some(health) = health(endpoint) else {
                    continue;
                };
                let locality = Locality {
                    region: String::new(),
                    zone: endpoint.zone.clone().unwrap_or_default(),
                };
                for address in &endpoint.addresses {
                    let Ok(ip) = address.parse::<IpAddr>() else {
                        continue;
                    };
                    let address = SocketAddr::new(ip, port);
                    let candidate = Endpoint {
                        address,
                        weight: 1,
                        locality: locality.clone(),
                        health,
                    };
                    // During a move between slices an address can be listed
                    // twice; keep its most usable state.
                    match endpoints.get(&address) {
                        Some(existing) if rank(existing.health) >= rank(health) => {}
                        _ => {
                            endpoints.insert(address, candidate);
                        }
                    }
                }
            }
        }
    }
    let mut clusters = Vec::with_capacity(merged.len() * 2);
    for ((namespace, service, port), endpoints) in merged {
        let endpoints: Vec<Endpoint> = endpoints.into_values().collect();
        let (policy, orca_port) = options
            .get(&(namespace.clone(), service.clone()))
            .copied()
            .unwrap_or_default();
        for name in [
            format!("{service}.{namespace}:{port}"),
            format!("{service}.{namespace}.{CLUSTER_DOMAIN}:{port}"),
        ] {
            clusters.push(Cluster {
                name,
                endpoints: endpoints.clone(),
                source: source.to_string(),
                policy,
                orca_port,
            });
        }
    }
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    clusters
}

/// The policy and ORCA port a slice's labels ask for. An unknown value
/// keeps the default and is logged, so a typo never drops a Service.
fn balancing_options(slice: &EndpointSlice) -> (Policy, OrcaPort) {
    let labels = slice.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    let policy = match label(POLICY_LABEL) {
        None => Policy::default(),
        Some(value) => Policy::parse(value).unwrap_or_else(|| {
            tracing::warn!(
                slice = slice.metadata.name.as_deref().unwrap_or(""),
                value,
                "unknown {POLICY_LABEL}; expected static, utilization or wrr; using utilization"
            );
            Policy::default()
        }),
    };
    let orca_port = match label(ORCA_PORT_LABEL) {
        None => OrcaPort::Same,
        Some(value) => match value.parse::<u16>() {
            Ok(port) if port > 0 => OrcaPort::Port(port),
            _ => {
                tracing::warn!(
                    slice = slice.metadata.name.as_deref().unwrap_or(""),
                    value,
                    "invalid {ORCA_PORT_LABEL}; expected a port number; using the balanced port"
                );
                OrcaPort::Same
            }
        },
    };
    (policy, orca_port)
}

/// The slice's (namespace, Service name), if it belongs to a Service.
fn owner(slice: &EndpointSlice) -> Option<(String, String)> {
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    if service.is_empty() {
        return None;
    }
    let namespace = slice.metadata.namespace.clone().unwrap_or_default();
    Some((namespace, service.clone()))
}

/// The slice's TCP port numbers (a port with no number means "all ports",
/// which names no cluster).
fn tcp_ports(slice: &EndpointSlice) -> Vec<u16> {
    let mut ports: Vec<u16> = slice
        .ports
        .iter()
        .flatten()
        .filter(|port| port.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|port| port.port.and_then(|p| u16::try_from(p).ok()))
        .filter(|port| *port != 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Health from the endpoint's conditions; `None` when it must not be routed.
///
/// As the API specifies, an unset `ready` means ready, an unset `serving`
/// defers to `ready`, and an unset `terminating` means not terminating.
fn health(endpoint: &SliceEndpoint) -> Option<Health> {
    let conditions = endpoint.conditions.as_ref();
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    match (ready, serving, terminating) {
        (_, true, true) => Some(Health::Draining),
        (true, _, false) => Some(Health::Healthy),
        _ => None,
    }
}

fn rank(health: Health) -> u8 {
    match health {
        Health::Healthy => 2,
        Health::Draining => 1,
        Health::Unhealthy => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn slice(
        name: &str,
        service: &str,
        address_type: &str,
        ports: &[(i32, &str)],
        endpoints: Vec<SliceEndpoint>,
    ) -> EndpointSlice {
        EndpointSlice {
            address_type: address_type.into(),
            endpoints,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.to_string(),
                    service.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            ports: Some(
                ports
                    .iter()
                    .map(|(port, protocol)| EndpointPort {
                        port: Some(*port),
                        protocol: Some((*protocol).into()),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
        }
    }

    fn endpoint(
        address: &str,
        ready: Option<bool>,
        serving: Option<bool>,
        terminating: Option<bool>,
    ) -> SliceEndpoint {
        SliceEndpoint {
            addresses: vec![address.into()],
            conditions: Some(EndpointConditions {
                ready,
                serving,
                terminating,
            }),
            zone: Some("z1".into()),
            ..SliceEndpoint::default()
        }
    }

    #[test]
    fn slices_merge_and_addresses_dedupe_with_the_best_health() {
        let a = slice(
            "g-a",
            "greeter",
            "IPv4",
            &[(50051, "TCP")],
            vec![
                endpoint("10.0.0.1", Some(true), Some(true), Some(false)),
                endpoint("10.0.0.2", Some(false), Some(true), Some(true)),
            ],
        );
        let b = slice(
            "g-b",
            "greeter",
            "IPv4",
            &[(50051, "TCP")],
            vec![
                endpoint("10.0.0.2", Some(true), None, None),
                endpoint("10.0.0.3", None, None, None),
            ],
        );
        let clusters = clusters_from_slices([&a, &b], "kube:all");
        let names: Vec<_> = clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "greeter.default.svc.cluster.local:50051",
                "greeter.default:50051"
            ]
        );
        assert_eq!(clusters[0].endpoints, clusters[1].endpoints);
        let endpoints = &clusters[1].endpoints;
        assert_eq!(endpoints.len(), 3);
        assert!(endpoints.iter().all(|e| e.health == Health::Healthy));
        assert!(endpoints.iter().all(|e| e.locality.zone == "z1"));
        assert_eq!(clusters[1].source, "kube:all");
    }

    #[test]
    fn conditions_map_to_health_or_omission() {
        let s = slice(
            "g",
            "greeter",
            "IPv6",
            &[(8080, "TCP"), (53, "UDP")],
            vec![
                endpoint("fd00::1", Some(true), Some(true), Some(false)),
                endpoint("fd00::2", Some(false), Some(true), Some(true)),
                endpoint("fd00::3", Some(false), Some(false), Some(true)),
                endpoint("fd00::4", Some(false), Some(false), Some(false)),
                endpoint("fd00::5", Some(false), None, None),
            ],
        );
        let clusters = clusters_from_slices([&s], "k");
        assert_eq!(clusters.len(), 2, "UDP ports are not served");
        let health: Vec<_> = clusters[1]
            .endpoints
            .iter()
            .map(|e| (e.address.to_string(), e.health))
            .collect();
        assert_eq!(
            health,
            [
                ("[fd00::1]:8080".to_string(), Health::Healthy),
                ("[fd00::2]:8080".to_string(), Health::Draining),
            ]
        );
    }

    #[test]
    fn no_routable_endpoint_still_names_the_cluster_and_fqdn_is_skipped() {
        let empty = slice(
            "g",
            "greeter",
            "IPv4",
            &[(1, "TCP")],
            vec![endpoint("10.0.0.1", Some(false), Some(false), None)],
        );
        let fqdn = slice(
            "h",
            "other",
            "FQDN",
            &[(1, "TCP")],
            vec![endpoint("example.com", None, None, None)],
        );
        let clusters = clusters_from_slices([&empty, &fqdn], "k");
        assert_eq!(clusters.len(), 2);
        assert!(clusters.iter().all(|c| c.endpoints.is_empty()));
    }
}
