//! ClusterLoadAssignment: one locality per endpoint, carrying its weight.

use lookaside_proto::convert::proto_address;
use lookaside_proto::envoy::config::core::v3::{HealthStatus, Locality};
use lookaside_proto::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use lookaside_proto::google::protobuf::UInt32Value;

use crate::registry::Health;
use crate::weigh::WeightedCluster;

/// The ClusterLoadAssignment of `cluster`. Every endpoint gets a locality of
/// its own (region and zone from the source, `sub_zone` = its address) whose
/// weight is the endpoint's weight. A cluster without endpoints gets an
/// assignment without endpoints, so clients learn it is empty.
pub fn assignment(cluster: &WeightedCluster) -> ClusterLoadAssignment {
    let endpoints = cluster
        .endpoints
        .iter()
        .map(|endpoint| {
            let weight = Some(UInt32Value {
                value: endpoint.weight.max(1),
            });
            LocalityLbEndpoints {
                locality: Some(Locality {
                    region: endpoint.locality.region.clone(),
                    zone: endpoint.locality.zone.clone(),
                    sub_zone: endpoint.address.to_string(),
                }),
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                        address: Some(proto_address(endpoint.address)),
                        ..Default::default()
                    })),
                    health_status: health_status(endpoint.health) as i32,
                    load_balancing_weight: weight,
                    ..Default::default()
                }],
                load_balancing_weight: weight,
                priority: 0,
                ..Default::default()
            }
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster.name.clone(),
        endpoints,
        ..Default::default()
    }
}

fn health_status(health: Health) -> HealthStatus {
    match health {
        Health::Healthy => HealthStatus::Healthy,
        Health::Draining => HealthStatus::Draining,
        Health::Unhealthy => HealthStatus::Unhealthy,
    }
}
