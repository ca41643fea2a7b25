//! Building a snapshot from weights.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{Resource, ResourceType, Snapshot, resources};
use crate::weigh::Weighted;

/// Encodes every resource for `weighted`. Resources whose content did not
/// change since `previous` are shared with it, not re-encoded.
pub fn build(weighted: Arc<Weighted>, sequence: u64, previous: Option<&Snapshot>) -> Snapshot {
    let mut maps: [BTreeMap<String, Arc<Resource>>; 4] = Default::default();
    for cluster in weighted.clusters.values() {
        let name = cluster.name.as_str();
        let reuse = |kind: ResourceType| previous.and_then(|p| p.get(kind, name)).cloned();
        // Listener, RouteConfiguration and Cluster depend only on the name.
        let listener = reuse(ResourceType::Listener).unwrap_or_else(|| {
            Arc::new(Resource::encode(
                ResourceType::Listener,
                name,
                &resources::listener(name),
            ))
        });
        let route = reuse(ResourceType::Route).unwrap_or_else(|| {
            Arc::new(Resource::encode(
                ResourceType::Route,
                name,
                &resources::route(name),
            ))
        });
        let cluster_resource = reuse(ResourceType::Cluster).unwrap_or_else(|| {
            Arc::new(Resource::encode(
                ResourceType::Cluster,
                name,
                &resources::cluster(name),
            ))
        });
        // The assignment depends only on the weighted cluster: an equal one
        // (most clusters, when one of thousands changed) is not re-encoded.
        let unchanged = previous.is_some_and(|p| p.weighted.clusters.get(name) == Some(cluster));
        let assignment = match reuse(ResourceType::Assignment) {
            Some(old) if unchanged => old,
            old => {
                let assignment = Resource::encode(
                    ResourceType::Assignment,
                    name,
                    &resources::assignment(cluster),
                );
                match old {
                    Some(old) if old.version == assignment.version => old,
                    _ => Arc::new(assignment),
                }
            }
        };
        for resource in [listener, route, cluster_resource, assignment] {
            maps[resource.kind.index()].insert(name.to_string(), resource);
        }
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for kind in ResourceType::ADS_ORDER {
        for resource in maps[kind.index()].values() {
            hasher.update(resource.name.as_bytes());
            hasher.update(&[0]);
            hasher.update(resource.version.as_bytes());
        }
        hasher.update(&[1]);
    }
    Snapshot {
        version: format!("{:016x}", hasher.digest()),
        sequence,
        built: Instant::now(),
        built_at: SystemTime::now(),
        weighted,
        resources: maps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weigh::weighted_for_test as weighted;
    use lookaside_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use prost::Message;

    #[test]
    fn every_cluster_gets_four_resources_and_stable_versions() {
        let a = build(weighted(&[("g", &[(1, 1), (2, 2)]), ("h", &[])]), 0, None);
        for kind in ResourceType::ADS_ORDER {
            assert_eq!(a.resources(kind).len(), 2, "{kind:?}");
        }
        let b = build(weighted(&[("g", &[(1, 1), (2, 2)]), ("h", &[])]), 1, None);
        assert_eq!(a.version, b.version);
        let c = build(
            weighted(&[("g", &[(1, 1), (2, 3)]), ("h", &[])]),
            2,
            Some(&a),
        );
        assert_ne!(a.version, c.version);
        // Only the changed assignment got a new version; the rest is shared.
        assert!(Arc::ptr_eq(
            a.get(ResourceType::Cluster, "g").unwrap(),
            c.get(ResourceType::Cluster, "g").unwrap()
        ));
        assert_ne!(
            a.get(ResourceType::Assignment, "g")
                .map(|r| r.version.clone()),
            c.get(ResourceType::Assignment, "g")
                .map(|r| r.version.clone())
        );
        assert_eq!(
            a.get(ResourceType::Assignment, "h")
                .map(|r| r.version.clone()),
            c.get(ResourceType::Assignment, "h")
                .map(|r| r.version.clone())
        );
    }

    #[test]
    fn empty_cluster_gets_an_empty_assignment() {
        let snapshot = build(weighted(&[("h", &[])]), 0, None);
        let resource = snapshot.get(ResourceType::Assignment, "h").cloned();
        let resource = resource.unwrap_or_else(|| panic!("no assignment"));
        let any = lookaside_proto::google::protobuf::Any::decode(resource.any.message())
            .unwrap_or_default();
        let cla = ClusterLoadAssignment::decode(any.value.as_slice()).unwrap_or_default();
        assert_eq!(cla.cluster_name, "h");
        assert!(cla.endpoints.is_empty());
    }

    #[test]
    fn one_locality_per_endpoint_carries_the_weight() {
        let snapshot = build(weighted(&[("g", &[(1, 1), (2, 7)])]), 0, None);
        let resource = snapshot.get(ResourceType::Assignment, "g").cloned();
        let resource = resource.unwrap_or_else(|| panic!("no assignment"));
        let any = lookaside_proto::google::protobuf::Any::decode(resource.any.message())
            .unwrap_or_default();
        let cla = ClusterLoadAssignment::decode(any.value.as_slice()).unwrap_or_default();
        assert_eq!(cla.endpoints.len(), 2);
        let weights: Vec<(u32, u32)> = cla
            .endpoints
            .iter()
            .map(|l| {
                (
                    l.load_balancing_weight.map(|w| w.value).unwrap_or(0),
                    l.lb_endpoints[0]
                        .load_balancing_weight
                        .map(|w| w.value)
                        .unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(weights, vec![(1, 1), (7, 7)]);
        assert!(cla.endpoints.iter().all(|l| l.locality.is_some()));
        assert_ne!(cla.endpoints[0].locality, cla.endpoints[1].locality);
    }
}
