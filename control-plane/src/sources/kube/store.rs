//! What the source knows of the API server: every watched EndpointSlice and
//! Service, grouped by Service, and each Service's clusters, rebuilt from all
//! of that Service's slices whenever any of them (or the Service) changes.
//!
//! Only the Services a change touched are rebuilt, so one slice edit costs
//! the size of its Service, not of the whole cluster.
//!
//! Owns: the known slices and Service ports, and the clusters built from
//! them.
//! Must never: build a cluster from a single event or slice (always from
//! every slice of its Service), or do I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Service;

use super::convert::service_clusters;
use super::service::{ServiceKey, ServicePorts, service_key};
use super::slice::{SliceEndpoints, SliceKey};
use crate::registry::Cluster;

/// Known slices and Services, and the clusters they give.
#[derive(Debug)]
pub(super) struct Store {
    /// The source id written into every cluster.
    source: String,
    /// Slices by the Service they belong to, then by slice name.
    slices: BTreeMap<ServiceKey, BTreeMap<String, SliceEndpoints>>,
    /// Where each stored slice is filed (its Service label can change).
    owners: HashMap<SliceKey, ServiceKey>,
    /// The opted-in Services seen, reduced to their ports.
    services: BTreeMap<ServiceKey, ServicePorts>,
    /// Each Service's clusters as last built.
    clusters: BTreeMap<ServiceKey, Vec<Cluster>>,
    /// Services changed since the last `rebuild`.
    dirty: BTreeSet<ServiceKey>,
}

impl Store {
    /// An empty store for source `source`.
    pub(super) fn new(source: &str) -> Self {
        Self {
            source: source.to_string(),
            slices: BTreeMap::new(),
            owners: HashMap::new(),
            services: BTreeMap::new(),
            clusters: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Adds or replaces a slice. A slice that names no Service is not kept.
    pub(super) fn apply_slice(&mut self, slice: SliceEndpoints) {
        let key = slice.key.clone();
        if self
            .owners
            .get(&key)
            .and_then(|service| self.slices.get(service)?.get(&key.1))
            == Some(&slice)
        {
            return; // a re-sent, unchanged slice
        }
        self.delete_slice(&key);
        let Some(service) = slice.service.clone() else {
            return;
        };
        self.slices
            .entry(service.clone())
            .or_default()
            .insert(key.1.clone(), slice);
        self.owners.insert(key, service.clone());
        self.dirty.insert(service);
    }

    /// Removes a slice.
    pub(super) fn delete_slice(&mut self, key: &SliceKey) {
        let Some(service) = self.owners.remove(key) else {
            return;
        };
        if let Some(slices) = self.slices.get_mut(&service) {
            slices.remove(&key.1);
            if slices.is_empty() {
                self.slices.remove(&service);
            }
        }
        self.dirty.insert(service);
    }

    /// Replaces every slice with `slices` (a complete list).
    pub(super) fn replace_slices(&mut self, slices: Vec<SliceEndpoints>) {
        self.dirty.extend(self.slices.keys().cloned());
        self.slices.clear();
        self.owners.clear();
        for slice in slices {
            self.apply_slice(slice);
        }
    }

    /// Adds or replaces a Service.
    pub(super) fn apply_service(&mut self, service: &Service) {
        let key = service_key(service);
        match ServicePorts::from_service(service) {
            Some(ports) => {
                if self.services.get(&key) != Some(&ports) {
                    self.services.insert(key.clone(), ports);
                    self.dirty.insert(key);
                }
            }
            None => self.delete_service(service),
        }
    }

    /// Removes a Service; its slices, if any remain, keep their endpoints
    /// served under their own port numbers.
    pub(super) fn delete_service(&mut self, service: &Service) {
        let key = service_key(service);
        if self.services.remove(&key).is_some() {
            self.dirty.insert(key);
        }
    }

    /// Replaces every Service with `services` (a complete list).
    pub(super) fn replace_services(&mut self, services: &[Service]) {
        let previous = std::mem::take(&mut self.services);
        for service in services {
            self.apply_service(service);
        }
        for (key, ports) in previous {
            if self.services.get(&key) != Some(&ports) {
                self.dirty.insert(key);
            }
        }
    }

    /// Rebuilds the clusters of every Service changed since the last call.
    /// Returns whether any Service's clusters changed.
    pub(super) fn rebuild(&mut self) -> bool {
        let mut changed = false;
        for key in std::mem::take(&mut self.dirty) {
            let slices = self.slices.get(&key).into_iter().flat_map(|s| s.values());
            let clusters = service_clusters(
                &key.0,
                &key.1,
                self.services.get(&key),
                slices,
                &self.source,
            );
            if clusters.is_empty() {
                changed |= self.clusters.remove(&key).is_some();
            } else if self.clusters.get(&key) != Some(&clusters) {
                self.clusters.insert(key, clusters);
                changed = true;
            }
        }
        changed
    }

    /// Every cluster as last rebuilt, sorted by name.
    pub(super) fn clusters(&self) -> Vec<Cluster> {
        let mut clusters: Vec<Cluster> = self.clusters.values().flatten().cloned().collect();
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        clusters
    }

    /// How many clusters were last rebuilt.
    pub(super) fn cluster_count(&self) -> usize {
        self.clusters.values().map(Vec::len).sum()
    }

    /// How many slices are known.
    pub(super) fn slice_count(&self) -> usize {
        self.owners.len()
    }

    /// How many Services are known.
    pub(super) fn service_count(&self) -> usize {
        self.services.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::super::SERVICE_NAME_LABEL;

    fn slice(name: &str, service: &str, address: &str) -> SliceEndpoints {
        SliceEndpoints::from_slice(&EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: vec![Endpoint {
                addresses: vec![address.into()],
                ..Endpoint::default()
            }],
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.to_string(),
                    service.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            ports: Some(vec![EndpointPort {
                name: Some("grpc".into()),
                port: Some(8080),
                ..EndpointPort::default()
            }]),
        })
    }

    fn service(name: &str, port: i32) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("grpc".into()),
                    port,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn names(store: &Store) -> Vec<String> {
        store
            .clusters()
            .into_iter()
            .filter(|c| !c.name.contains("svc.cluster.local"))
            .map(|c| format!("{} {}", c.name, c.endpoints.len()))
            .collect()
    }

    #[test]
    fn only_touched_services_change_and_a_relabelled_slice_moves() {
        let mut store = Store::new("kube:all");
        store.apply_slice(slice("a-1", "a", "10.0.0.1"));
        store.apply_slice(slice("a-2", "a", "10.0.0.2"));
        store.apply_slice(slice("b-1", "b", "10.0.1.1"));
        assert!(store.rebuild());
        assert_eq!(names(&store), ["a.ns:8080 2", "b.ns:8080 1"]);
        assert!(!store.rebuild(), "nothing changed");

        // The Service arrives: its cluster is renamed to the Service port.
        store.apply_service(&service("a", 80));
        assert!(store.rebuild());
        assert_eq!(names(&store), ["a.ns:80 2", "b.ns:8080 1"]);
        store.apply_service(&service("a", 80));
        assert!(!store.rebuild(), "an equal Service changes nothing");

        // A slice moves from a to b.
        store.apply_slice(slice("a-2", "b", "10.0.0.2"));
        assert!(store.rebuild());
        assert_eq!(names(&store), ["a.ns:80 1", "b.ns:8080 2"]);

        store.delete_slice(&("ns".into(), "a-1".into()));
        store.delete_service(&service("a", 80));
        assert!(store.rebuild());
        assert_eq!(names(&store), ["b.ns:8080 2"]);
        assert_eq!((store.slice_count(), store.service_count()), (2, 0));
    }

    #[test]
    fn a_relist_replaces_everything_known() {
        let mut store = Store::new("kube:all");
        store.apply_slice(slice("a-1", "a", "10.0.0.1"));
        store.apply_service(&service("a", 80));
        store.rebuild();
        store.replace_slices(vec![slice("b-1", "b", "10.0.1.1")]);
        store.replace_services(&[service("b", 81)]);
        assert!(store.rebuild());
        assert_eq!(names(&store), ["b.ns:81 1"]);
        assert_eq!(store.cluster_count(), 2);
    }
}
