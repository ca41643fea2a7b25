//! ClusterLoadAssignment as the client accepts it.

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use lookaside_proto::address::unroutable;
use lookaside_proto::convert::socket_addr;
use prost::Message;
use xds_client::resource::TypeUrl;

use super::weigh::{Locality, weigh};
use crate::cluster::Assignment;

pub use lookaside_proto::limits::MAX_SERVING_ENDPOINTS;

/// Type URL of ClusterLoadAssignment.
pub const EDS_TYPE_URL: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// A validated assignment: the endpoints that may take calls, with weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentResource {
    /// Cluster name.
    pub cluster: String,
    /// The serving endpoints of each priority that has any, highest
    /// first, with their weights (>= 1) by locality and endpoint weight
    /// (see `weigh`): calls go to the first tier with a usable endpoint.
    pub tiers: Vec<Assignment>,
    /// Endpoints in the resource, serving or not.
    pub total_endpoints: usize,
}

fn invalid(message: String) -> xds_client::Error {
    xds_client::Error::Validation(message)
}

impl xds_client::Resource for AssignmentResource {
    type Message = ClusterLoadAssignment;
    const TYPE_URL: TypeUrl = TypeUrl::new(EDS_TYPE_URL);
    const ALL_RESOURCES_REQUIRED_IN_SOTW: bool = false;

    fn deserialize(bytes: Bytes) -> xds_client::Result<ClusterLoadAssignment> {
        ClusterLoadAssignment::decode(bytes).map_err(Into::into)
    }

    fn name(message: &ClusterLoadAssignment) -> &str {
        &message.cluster_name
    }

    /// An `Err` here NACKs the response with the message; the client keeps
    /// its last good assignment.
    fn validate(message: ClusterLoadAssignment) -> xds_client::Result<Self> {
        let mut localities = Vec::with_capacity(message.endpoints.len());
        let mut total = 0;
        for locality in &message.endpoints {
            let locality_weight = locality.load_balancing_weight.map(|w| w.value);
            if locality_weight == Some(0) {
                return Err(invalid(format!(
                    "cluster {}: locality {:?} has load_balancing_weight 0",
                    message.cluster_name, locality.locality
                )));
            }
            let mut serving = Vec::new();
            for endpoint in &locality.lb_endpoints {
                total += 1;
                let Some(lb_endpoint::HostIdentifier::Endpoint(inner)) = &endpoint.host_identifier
                else {
                    return Err(invalid(format!(
                        "cluster {}: an endpoint has no address",
                        message.cluster_name
                    )));
                };
                let address = inner
                    .address
                    .as_ref()
                    .and_then(socket_addr)
                    .ok_or_else(|| {
                        invalid(format!(
                            "cluster {}: endpoint address {:?} is not an IP:port socket address",
                            message.cluster_name, inner.address
                        ))
                    })?;
                if let Some(why) = unroutable(address) {
                    return Err(invalid(format!(
                        "cluster {}: endpoint {address} cannot take calls: {why}",
                        message.cluster_name
                    )));
                }
                let weight = endpoint.load_balancing_weight.map(|w| w.value);
                if weight == Some(0) {
                    return Err(invalid(format!(
                        "cluster {}: endpoint {address} has load_balancing_weight 0",
                        message.cluster_name
                    )));
                }
                let health =
                    HealthStatus::try_from(endpoint.health_status).unwrap_or(HealthStatus::Unknown);
                if matches!(health, HealthStatus::Healthy | HealthStatus::Unknown) {
                    serving.push((address, weight));
                }
            }
            localities.push(Locality {
                priority: locality.priority,
                weight: locality_weight,
                endpoints: serving,
            });
        }
        let serving: usize = localities.iter().map(|l| l.endpoints.len()).sum();
        if serving > MAX_SERVING_ENDPOINTS {
            return Err(invalid(format!(
                "cluster {}: {serving} serving endpoints, more than the {MAX_SERVING_ENDPOINTS} a client \
                 connects to",
                message.cluster_name
            )));
        }
        Ok(Self {
            cluster: message.cluster_name,
            tiers: weigh(&localities),
            total_endpoints: total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{
        Address, SocketAddress, address, socket_address,
    };
    use envoy_types::pb::envoy::config::endpoint::v3::{Endpoint, LbEndpoint, LocalityLbEndpoints};
    use envoy_types::pb::google::protobuf::UInt32Value;
    use xds_client::Resource;

    fn endpoint(port: u32, weight: Option<u32>, health: HealthStatus) -> LocalityLbEndpoints {
        LocalityLbEndpoints {
            load_balancing_weight: weight.map(|value| UInt32Value { value }),
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: "10.0.0.1".into(),
                            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                })),
                health_status: health as i32,
                load_balancing_weight: weight.map(|value| UInt32Value { value }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn cla(endpoints: Vec<LocalityLbEndpoints>) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: "g".into(),
            endpoints,
            ..Default::default()
        }
    }

    #[test]
    fn serving_endpoints_with_weights() {
        let resource = AssignmentResource::validate(cla(vec![
            endpoint(1, Some(3), HealthStatus::Healthy),
            endpoint(2, None, HealthStatus::Unknown),
            endpoint(3, Some(5), HealthStatus::Draining),
        ]))
        .expect("valid");
        let ports: Vec<Vec<(u16, u32)>> = resource
            .tiers
            .iter()
            .map(|tier| tier.iter().map(|(a, w)| (a.port(), *w)).collect())
            .collect();
        assert_eq!(
            ports,
            vec![vec![(1, 3), (2, 1)]],
            "draining endpoints take no calls"
        );
        assert_eq!(resource.total_endpoints, 3);
    }

    #[test]
    fn weight_zero_is_rejected_with_the_endpoint_named() {
        let error =
            AssignmentResource::validate(cla(vec![endpoint(7, Some(0), HealthStatus::Healthy)]))
                .expect_err("NACK");
        assert!(
            error.to_string().contains("load_balancing_weight 0"),
            "{error}"
        );
    }

    /// `cla` with the first endpoint's address replaced by `address`.
    fn at(address: &str, port: u32) -> ClusterLoadAssignment {
        let mut changed = cla(vec![endpoint(port, Some(1), HealthStatus::Healthy)]);
        if let Some(lb_endpoint::HostIdentifier::Endpoint(e)) =
            &mut changed.endpoints[0].lb_endpoints[0].host_identifier
            && let Some(Address {
                address: Some(address::Address::SocketAddress(s)),
            }) = &mut e.address
        {
            s.address = address.into();
        }
        changed
    }

    #[test]
    fn addresses_no_call_can_reach_are_rejected_with_the_endpoint_named() {
        // The rule itself is `lookaside_proto::address::unroutable`'s.
        for (address, port, why) in [("10.0.0.1", 0, "port 0"), ("0.0.0.0", 80, "unspecified")] {
            let error = AssignmentResource::validate(at(address, port)).expect_err("NACK");
            let named = format!("{address}:{port}");
            assert!(error.to_string().contains(why), "{address}: {error}");
            assert!(error.to_string().contains(&named), "{error}");
        }
        assert!(AssignmentResource::validate(at("fd00::7", 80)).is_ok());
    }

    #[test]
    fn an_assignment_past_the_endpoint_cap_is_rejected() {
        let one = |port| endpoint(port, Some(1), HealthStatus::Healthy);
        let mut endpoints: Vec<LocalityLbEndpoints> = (1..=1000).map(one).collect();
        // Ten endpoints in each locality: 10,000 in all.
        for locality in &mut endpoints {
            let first = locality.lb_endpoints[0].clone();
            locality.lb_endpoints.extend(std::iter::repeat_n(first, 9));
        }
        // Draining ones are listed but not connected to: not counted.
        endpoints.push(endpoint(1001, Some(1), HealthStatus::Draining));
        let at_cap = cla(endpoints.clone());
        assert!(
            AssignmentResource::validate(at_cap).is_ok(),
            "10,000 is allowed"
        );
        endpoints.push(one(1002));
        let error = AssignmentResource::validate(cla(endpoints)).expect_err("NACK");
        assert!(
            error.to_string().contains("10001 serving endpoints"),
            "{error}"
        );
    }

    #[test]
    fn hostnames_are_rejected() {
        let mut bad = cla(vec![endpoint(7, Some(1), HealthStatus::Healthy)]);
        if let Some(lb_endpoint::HostIdentifier::Endpoint(e)) =
            &mut bad.endpoints[0].lb_endpoints[0].host_identifier
            && let Some(Address {
                address: Some(address::Address::SocketAddress(s)),
            }) = &mut e.address
        {
            s.address = "greeter.default".into();
        }
        assert!(AssignmentResource::validate(bad).is_err());
    }
}
