//! From one Service's EndpointSlices (and its ports, once seen) to its
//! clusters: naming by Service port, merging every slice and deduplicating
//! addresses.
//!
//! Owns: the naming and merging rules documented in the module root.
//! Must never: do I/O or keep state between calls; the same input always
//! gives the same clusters, in the same order.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::service::ServicePorts;
use super::slice::SliceEndpoints;
use crate::registry::{Cluster, Endpoint, Health, Locality};

/// Suffix of the fully qualified alias of every cluster name.
const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// Every cluster of Service `service` in `namespace`, sorted by name, with
/// endpoints sorted by address. `ports` is the Service as last seen, `None`
/// until it has been; `slices` are all of its slices; `source` is written
/// into each cluster.
///
/// A cluster is named by the Service port; its endpoints carry the slice
/// port of the same name (the pods' target port). A slice port whose name
/// matches no known Service port names its cluster by its own number
/// instead, so its endpoints stay served, unless that number is a Service
/// port another slice port feeds by name with another pod port (its
/// cluster would get the pods' other port). Every
/// Service port is named even when no slice lists it yet.
pub(super) fn service_clusters<'a>(
    namespace: &str,
    service: &str,
    ports: Option<&ServicePorts>,
    slices: impl IntoIterator<Item = &'a SliceEndpoints>,
    source: &str,
) -> Vec<Cluster> {
    let slices: Vec<&SliceEndpoints> = slices.into_iter().collect();
    let balancing = match (ports, slices.first()) {
        (Some(ports), _) => ports.balancing,
        (None, Some(slice)) => slice.balancing,
        (None, None) => Default::default(),
    };
    // Whether a slice port feeds Service port `number` by name with another
    // pod port: a fallback named `number` would mix that port in. Asked only
    // for a port that falls back (a race), so not precomputed.
    let fed_with_another = |number: u16| {
        ports.is_some_and(|ports| {
            slices
                .iter()
                .flat_map(|slice| &slice.ports)
                .any(|(name, pod_port)| {
                    ports.ports.get(name) == Some(&number) && *pod_port != number
                })
        })
    };
    // cluster (Service) port -> address (with the slice port) -> endpoint
    let mut merged: BTreeMap<u16, BTreeMap<SocketAddr, Endpoint>> = BTreeMap::new();
    for port in ports.into_iter().flat_map(|p| p.ports.values()) {
        merged.entry(*port).or_default();
    }
    for slice in &slices {
        for (name, target) in &slice.ports {
            let target = *target;
            let port = match ports.and_then(|p| p.ports.get(name)) {
                Some(port) => *port,
                // Its number is a Service port that another slice port
                // feeds by name: falling back would mix the pods' other port
                // into that cluster. (A renamed port whose number is its
                // own Service port's, e.g. 50051 -> 50051, falls back to
                // exactly the right cluster.)
                None if fed_with_another(target) => {
                    tracing::debug!(
                        namespace,
                        service,
                        slice = slice.key.1,
                        port = name,
                        target,
                        "no Service port of this name, and its number is a port another \
                         slice port feeds; left out"
                    );
                    continue;
                }
                None => {
                    tracing::debug!(
                        namespace,
                        service,
                        slice = slice.key.1,
                        port = name,
                        target,
                        known = ports.is_some(),
                        "no Service port of this name; naming the cluster by the slice port"
                    );
                    target
                }
            };
            let endpoints = merged.entry(port).or_default();
            for endpoint in &slice.endpoints {
                let address = SocketAddr::new(endpoint.ip, target);
                // During a move between slices an address can be listed
                // twice; keep its most usable state.
                match endpoints.get(&address) {
                    Some(existing) if rank(existing.health) >= rank(endpoint.health) => {}
                    _ => {
                        endpoints.insert(
                            address,
                            Endpoint {
                                address,
                                weight: 1,
                                locality: Locality {
                                    region: String::new(),
                                    zone: endpoint.zone.clone(),
                                },
                                health: endpoint.health,
                            },
                        );
                    }
                }
            }
        }
    }
    let mut clusters = Vec::with_capacity(merged.len() * 2);
    for (port, endpoints) in merged {
        let endpoints: Vec<Endpoint> = endpoints.into_values().collect();
        for name in [
            format!("{service}.{namespace}:{port}"),
            format!("{service}.{namespace}.{CLUSTER_DOMAIN}:{port}"),
        ] {
            clusters.push(Cluster {
                name,
                endpoints: endpoints.clone(),
                source: source.to_string(),
                policy: balancing.policy,
                orca_port: balancing.orca_port,
            });
        }
    }
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    clusters
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
    use crate::registry::{OrcaPort, Policy};
    use crate::sources::kube::SERVICE_NAME_LABEL;
    use crate::sources::kube::labels::Balancing;
    use crate::sources::kube::slice::test_endpoint;
    use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointPort, EndpointSlice};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn slice(
        name: &str,
        address_type: &str,
        ports: &[(&str, i32, &str)],
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
                    "greeter".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name: Some((*name).into()),
                        port: Some(*port),
                        protocol: Some((*protocol).into()),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
        }
    }

    fn greeter<'a>(
        ports: Option<&ServicePorts>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Vec<Cluster> {
        let read: Vec<SliceEndpoints> =
            slices.into_iter().map(SliceEndpoints::from_slice).collect();
        service_clusters("default", "greeter", ports, &read, "kube:all")
    }

    /// (cluster, endpoint address) of every short-named cluster.
    fn served(clusters: &[Cluster]) -> Vec<(&str, String)> {
        clusters
            .iter()
            .filter(|c| !c.name.contains(CLUSTER_DOMAIN))
            .flat_map(|c| {
                c.endpoints
                    .iter()
                    .map(|e| (c.name.as_str(), e.address.to_string()))
            })
            .collect()
    }

    fn names(clusters: &[Cluster]) -> Vec<&str> {
        clusters.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn slices_merge_and_addresses_dedupe_with_the_best_health() {
        let a = slice(
            "g-a",
            "IPv4",
            &[("grpc", 50051, "TCP")],
            vec![
                test_endpoint("10.0.0.1", Some(true), Some(true), Some(false)),
                test_endpoint("10.0.0.2", Some(false), Some(true), Some(true)),
            ],
        );
        let b = slice(
            "g-b",
            "IPv4",
            &[("grpc", 50051, "TCP")],
            vec![
                test_endpoint("10.0.0.2", Some(true), None, None),
                test_endpoint("10.0.0.3", None, None, None),
            ],
        );
        let clusters = greeter(None, [&a, &b]);
        assert_eq!(
            names(&clusters),
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
            "IPv6",
            &[("grpc", 8080, "TCP"), ("dns", 53, "UDP")],
            vec![
                test_endpoint("fd00::1", Some(true), Some(true), Some(false)),
                test_endpoint("fd00::2", Some(false), Some(true), Some(true)),
                test_endpoint("fd00::3", Some(false), Some(false), Some(true)),
                test_endpoint("fd00::4", Some(false), Some(false), Some(false)),
                test_endpoint("fd00::5", Some(false), None, None),
            ],
        );
        let clusters = greeter(None, [&s]);
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
            "IPv4",
            &[("", 1, "TCP")],
            vec![test_endpoint("10.0.0.1", Some(false), Some(false), None)],
        );
        let fqdn = slice(
            "h",
            "FQDN",
            &[("", 2, "TCP")],
            vec![test_endpoint("example.com", None, None, None)],
        );
        let clusters = greeter(None, [&empty, &fqdn]);
        assert_eq!(
            names(&clusters),
            ["greeter.default.svc.cluster.local:1", "greeter.default:1"]
        );
        assert!(clusters.iter().all(|c| c.endpoints.is_empty()));
    }

    fn ports(pairs: &[(&str, u16)]) -> ServicePorts {
        ServicePorts {
            ports: pairs.iter().map(|(n, p)| ((*n).to_string(), *p)).collect(),
            balancing: Balancing {
                policy: Policy::Static,
                orca_port: OrcaPort::Port(9000),
            },
        }
    }

    #[test]
    fn clusters_are_named_by_the_service_port_of_the_same_name() {
        let s = slice(
            "g",
            "IPv4",
            &[("grpc", 8080, "TCP"), ("admin", 9001, "TCP")],
            vec![test_endpoint("10.0.0.1", None, None, None)],
        );
        let service = ports(&[("grpc", 80), ("admin", 9000), ("metrics", 9090)]);
        let clusters = greeter(Some(&service), [&s]);
        let by_name: Vec<(&str, Vec<String>)> = clusters
            .iter()
            .filter(|c| !c.name.contains(CLUSTER_DOMAIN))
            .map(|c| {
                (
                    c.name.as_str(),
                    c.endpoints.iter().map(|e| e.address.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            by_name,
            [
                ("greeter.default:80", vec!["10.0.0.1:8080".to_string()]),
                ("greeter.default:9000", vec!["10.0.0.1:9001".to_string()]),
                // A Service port no slice lists (yet) has no endpoints.
                ("greeter.default:9090", vec![]),
            ]
        );
        assert_eq!(clusters.len(), 6);
        // The Service's labels win over the slices'.
        assert!(clusters.iter().all(|c| c.policy == Policy::Static));
        assert!(clusters.iter().all(|c| c.orca_port == OrcaPort::Port(9000)));
    }

    #[test]
    fn an_unmatched_slice_port_falls_back_to_its_own_number() {
        let s = slice(
            "g",
            "IPv4",
            &[("grpc", 8080, "TCP"), ("", 7070, "TCP")],
            vec![test_endpoint("10.0.0.1", None, None, None)],
        );
        // The Service is not seen yet: every port is named by its number.
        let unseen = greeter(None, [&s]);
        assert_eq!(
            names(&unseen),
            [
                "greeter.default.svc.cluster.local:7070",
                "greeter.default.svc.cluster.local:8080",
                "greeter.default:7070",
                "greeter.default:8080",
            ]
        );
        // Seen: the named port maps, the unnamed one (no Service port "")
        // keeps its number; no endpoint is dropped.
        let seen = greeter(Some(&ports(&[("grpc", 80)])), [&s]);
        let endpoints = served(&seen);
        assert_eq!(
            endpoints,
            [
                ("greeter.default:7070", "10.0.0.1:7070".to_string()),
                ("greeter.default:80", "10.0.0.1:8080".to_string()),
            ]
        );
    }

    #[test]
    fn an_unmatched_slice_port_never_joins_another_service_port() {
        // Service `http: 80 -> 8080`, `grpc: 8080 -> 9090`; `http` renamed
        // to `web` and the slices not rewritten yet: the slice port
        // ("http", 8080) must not fall back into the gRPC cluster `:8080`.
        let s = slice(
            "g",
            "IPv4",
            &[("http", 8080, "TCP"), ("grpc", 9090, "TCP")],
            vec![test_endpoint("10.0.0.1", None, None, None)],
        );
        let clusters = greeter(Some(&ports(&[("web", 80), ("grpc", 8080)])), [&s]);
        let endpoints = served(&clusters);
        assert_eq!(
            endpoints,
            [("greeter.default:8080", "10.0.0.1:9090".to_string())]
        );
        assert_eq!(
            names(&clusters),
            [
                "greeter.default.svc.cluster.local:80",
                "greeter.default.svc.cluster.local:8080",
                "greeter.default:80",
                "greeter.default:8080",
            ]
        );
    }

    #[test]
    fn a_renamed_port_whose_number_is_its_own_falls_back_to_its_cluster() {
        // `grpc: 50051 -> 50051` renamed to `grpc-api`, the slices not
        // rewritten yet: the fallback `:50051` is exactly the right cluster.
        let s = slice(
            "g",
            "IPv4",
            &[("grpc", 50051, "TCP")],
            vec![test_endpoint("10.0.0.1", None, None, None)],
        );
        let clusters = greeter(Some(&ports(&[("grpc-api", 50051)])), [&s]);
        assert_eq!(
            served(&clusters),
            [("greeter.default:50051", "10.0.0.1:50051".to_string())]
        );
        // Slices rewritten one at a time: the old one still falls back.
        let rewritten = slice(
            "g-new",
            "IPv4",
            &[("grpc-api", 50051, "TCP")],
            vec![test_endpoint("10.0.0.2", None, None, None)],
        );
        let clusters = greeter(Some(&ports(&[("grpc-api", 50051)])), [&s, &rewritten]);
        assert_eq!(
            served(&clusters),
            [
                ("greeter.default:50051", "10.0.0.1:50051".to_string()),
                ("greeter.default:50051", "10.0.0.2:50051".to_string())
            ]
        );
    }

    #[test]
    fn a_target_port_change_mid_rollout_keeps_both_ports_under_one_cluster() {
        let old = slice(
            "g-old",
            "IPv4",
            &[("grpc", 8080, "TCP")],
            vec![test_endpoint("10.0.0.1", None, None, None)],
        );
        let new = slice(
            "g-new",
            "IPv4",
            &[("grpc", 9090, "TCP")],
            vec![test_endpoint("10.0.0.2", None, None, None)],
        );
        let clusters = greeter(Some(&ports(&[("grpc", 80)])), [&old, &new]);
        assert_eq!(clusters.len(), 2);
        let addresses: Vec<String> = clusters[1]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(addresses, ["10.0.0.1:8080", "10.0.0.2:9090"]);
    }
}
