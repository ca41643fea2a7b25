//! What the source keeps of an EndpointSlice: the Service it belongs to, its
//! TCP ports by name, and its routable endpoints with their health, taken
//! from the slice as soon as it arrives so the whole object (target
//! references, hints, managed fields) is never stored.
//!
//! Owns: reading one slice: its owner label, ports, address type and
//! endpoint conditions.
//! Must never: merge slices or name clusters (`convert` does), or do I/O.

use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointSlice};

use super::labels::Balancing;
use super::service::ServiceKey;
use crate::registry::Health;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// (namespace, name) of an EndpointSlice.
pub(super) type SliceKey = (String, String);

/// The parts of an EndpointSlice that make clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SliceEndpoints {
    /// The slice's namespace and name.
    pub(super) key: SliceKey,
    /// The Service it belongs to; `None` without a service-name label.
    pub(super) service: Option<ServiceKey>,
    /// Policy and ORCA port from the slice's labels (copies of the
    /// Service's), used until the Service itself is seen.
    pub(super) balancing: Balancing,
    /// TCP ports as (name, number); an unnamed port is named `""`. A port
    /// with no number means "all ports", which names no cluster. Empty for
    /// an FQDN slice.
    pub(super) ports: Vec<(String, u16)>,
    /// Endpoints that may be routed to. Empty for an FQDN slice: it names
    /// hosts, and xDS clients need IPs.
    pub(super) endpoints: Vec<RoutableEndpoint>,
}

/// One endpoint of a slice that may be routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RoutableEndpoint {
    /// Its first usable address. The API calls an endpoint's addresses
    /// interchangeable and lets consumers use only the first (as kube-proxy
    /// does): one pod is one endpoint, never one per address.
    pub(super) ip: IpAddr,
    /// Healthy or draining.
    pub(super) health: Health,
    /// Its zone; empty when unknown.
    pub(super) zone: String,
}

impl SliceEndpoints {
    /// What `slice` contributes.
    pub(super) fn from_slice(slice: &EndpointSlice) -> Self {
        let key = (
            slice.metadata.namespace.clone().unwrap_or_default(),
            slice.metadata.name.clone().unwrap_or_default(),
        );
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
            .filter(|name| !name.is_empty())
            .map(|name| (key.0.clone(), name.clone()));
        let balancing = Balancing::from_labels(slice.metadata.labels.as_ref(), &key.1);
        let routable = matches!(slice.address_type.as_str(), "IPv4" | "IPv6");
        let (ports, endpoints) = if routable {
            (
                tcp_ports(slice),
                slice
                    .endpoints
                    .iter()
                    .filter_map(routable_endpoint)
                    .collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Self {
            key,
            service,
            balancing,
            ports,
            endpoints,
        }
    }
}

fn tcp_ports(slice: &EndpointSlice) -> Vec<(String, u16)> {
    let mut ports: Vec<(String, u16)> = slice
        .ports
        .iter()
        .flatten()
        .filter(|port| port.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|port| {
            let number = port
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)?;
            Some((port.name.clone().unwrap_or_default(), number))
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn routable_endpoint(endpoint: &SliceEndpoint) -> Option<RoutableEndpoint> {
    let health = health(endpoint)?;
    let ip: IpAddr = endpoint
        .addresses
        .iter()
        .filter_map(|address| address.parse().ok())
        // Never published: clients would NACK the whole assignment.
        .find(|ip| lookaside_proto::address::unroutable_ip(*ip).is_none())?;
    Some(RoutableEndpoint {
        ip,
        health,
        zone: endpoint.zone.clone().unwrap_or_default(),
    })
}

/// Health from the endpoint's conditions; `None` when it must not be routed.
///
/// As the API specifies, an unset `ready` means ready, an unset `serving`
/// defers to `ready`, and an unset `terminating` means not terminating.
/// Ready -> healthy; serving and terminating -> draining; anything else
/// (not ready and not serving) is left out, as kube-proxy does.
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

/// A slice endpoint for unit tests: one address, its conditions, zone z1.
#[cfg(test)]
pub(super) fn test_endpoint(
    address: &str,
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
) -> SliceEndpoint {
    SliceEndpoint {
        addresses: vec![address.into()],
        conditions: Some(k8s_openapi::api::discovery::v1::EndpointConditions {
            ready,
            serving,
            terminating,
        }),
        zone: Some("z1".into()),
        ..SliceEndpoint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use k8s_openapi::api::discovery::v1::EndpointPort;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn conditions_with_their_nil_defaults() {
        let cases = [
            ((None, None, None), Some(Health::Healthy)),
            ((Some(true), None, None), Some(Health::Healthy)),
            ((Some(false), None, None), None),
            (
                (Some(false), Some(true), Some(true)),
                Some(Health::Draining),
            ),
            ((Some(false), Some(false), Some(true)), None),
            ((Some(true), Some(true), Some(true)), Some(Health::Draining)),
            ((Some(false), Some(true), Some(false)), None),
            ((None, None, Some(true)), Some(Health::Draining)),
        ];
        for ((ready, serving, terminating), expected) in cases {
            let e = test_endpoint("10.0.0.1", ready, serving, terminating);
            assert_eq!(
                health(&e),
                expected,
                "ready {ready:?} serving {serving:?} terminating {terminating:?}"
            );
        }
    }

    #[test]
    fn owner_ports_and_endpoints_are_read_and_the_rest_dropped() {
        let slice = EndpointSlice {
            address_type: "IPv4".into(),
            metadata: ObjectMeta {
                name: Some("greeter-x".into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.to_string(),
                    "greeter".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            ports: Some(vec![
                EndpointPort {
                    name: Some("grpc".into()),
                    port: Some(8080),
                    ..EndpointPort::default()
                },
                EndpointPort {
                    name: Some("dns".into()),
                    port: Some(53),
                    protocol: Some("UDP".into()),
                    ..EndpointPort::default()
                },
                EndpointPort::default(),
            ]),
            endpoints: vec![
                test_endpoint("10.0.0.1", None, None, None),
                test_endpoint("not-an-ip", None, None, None),
                test_endpoint("10.0.0.2", Some(false), Some(false), None),
                // Clients would NACK the whole assignment for it.
                test_endpoint("0.0.0.0", None, None, None),
                // One pod listing several addresses is one endpoint, at its
                // first usable address (they are interchangeable).
                SliceEndpoint {
                    addresses: vec!["0.0.0.0".into(), "10.0.0.3".into(), "10.0.0.4".into()],
                    ..test_endpoint("", None, None, None)
                },
            ],
        };
        let read = SliceEndpoints::from_slice(&slice);
        assert_eq!(read.key, ("ns".into(), "greeter-x".into()));
        assert_eq!(read.service, Some(("ns".into(), "greeter".into())));
        assert_eq!(read.ports, [("grpc".to_string(), 8080)]);
        let ips: Vec<IpAddr> = read.endpoints.iter().map(|e| e.ip).collect();
        assert_eq!(
            ips,
            [IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 3])]
        );

        let fqdn = EndpointSlice {
            address_type: "FQDN".into(),
            ..slice
        };
        let read = SliceEndpoints::from_slice(&fqdn);
        assert!(read.ports.is_empty() && read.endpoints.is_empty());
        assert!(read.service.is_some());
    }
}
