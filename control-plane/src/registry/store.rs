//! The merged registry and its single writer.
//!
//! Each source replaces its whole contribution at once; the writer merges all
//! contributions and publishes an immutable `Registry` on a `watch` channel.
//! When two sources name the same cluster, the source registered first wins
//! and the clash is logged. A source announced with `expect` makes the
//! registry incomplete until its first contribution arrives, so nothing
//! downstream mistakes "not listed yet" for "deleted".

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::Cluster;

/// Identifies a discovery source, e.g. `file:/etc/lookaside.yaml`.
pub type SourceId = String;

/// Every known cluster, by name. Immutable once published.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Clusters by name.
    pub clusters: BTreeMap<String, Cluster>,
    /// Whether every expected source has contributed at least once (its
    /// first complete list). Until then, clients must not be told that a
    /// cluster is gone.
    pub complete: bool,
}

/// The one writer of the registry.
#[derive(Debug)]
pub struct RegistryWriter {
    /// Contributions in registration order; `None` for an expected source
    /// that has not contributed yet.
    contributions: Vec<(SourceId, Option<Vec<Cluster>>)>,
    tx: watch::Sender<Arc<Registry>>,
}

impl RegistryWriter {
    /// A writer publishing an empty, complete registry.
    pub fn new() -> Self {
        // With no source expected yet, the empty registry is complete.
        let (tx, _) = watch::channel(Arc::new(Registry {
            clusters: BTreeMap::new(),
            complete: true,
        }));
        Self {
            contributions: Vec::new(),
            tx,
        }
    }

    /// A new reader of the published registry.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Registry>> {
        self.tx.subscribe()
    }

    /// Announces `source`: the registry stays incomplete until it
    /// contributes. Registration order decides who wins a name clash.
    pub fn expect(&mut self, source: &str) {
        if !self.contributions.iter().any(|(id, _)| id == source) {
            self.contributions.push((source.to_string(), None));
        }
        self.publish();
    }

    /// Replaces everything `source` contributes and publishes the merge if it
    /// changed.
    pub fn replace(&mut self, source: &str, clusters: Vec<Cluster>) {
        match self.contributions.iter_mut().find(|(id, _)| id == source) {
            Some((_, existing)) => *existing = Some(clusters),
            None => self
                .contributions
                .push((source.to_string(), Some(clusters))),
        }
        self.publish();
    }

    fn publish(&self) {
        let merged = self.merge();
        self.tx.send_if_modified(|current| {
            if **current == merged {
                false
            } else {
                *current = Arc::new(merged);
                true
            }
        });
    }

    /// Applies source updates until every sender is gone.
    pub async fn run(mut self, mut updates: tokio::sync::mpsc::Receiver<(SourceId, Vec<Cluster>)>) {
        while let Some((source, clusters)) = updates.recv().await {
            self.replace(&source, clusters);
        }
    }

    fn merge(&self) -> Registry {
        let mut clusters = BTreeMap::new();
        for (source, contributed) in &self.contributions {
            for cluster in contributed.iter().flatten() {
                if let Some(existing) = clusters.get(&cluster.name) {
                    let existing: &Cluster = existing;
                    tracing::warn!(
                        cluster = %cluster.name,
                        kept = %existing.source,
                        ignored = %source,
                        "cluster defined by two sources; keeping the first"
                    );
                    continue;
                }
                clusters.insert(cluster.name.clone(), cluster.clone());
            }
        }
        Registry {
            clusters,
            complete: self.contributions.iter().all(|(_, c)| c.is_some()),
        }
    }
}

impl Default for RegistryWriter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Endpoint, Health, Locality};

    fn cluster(name: &str, source: &str, port: u16) -> Cluster {
        Cluster {
            name: name.into(),
            endpoints: vec![Endpoint {
                address: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                weight: 1,
                locality: Locality::default(),
                health: Health::Healthy,
            }],
            source: source.into(),
            policy: Default::default(),
            orca_port: Default::default(),
        }
    }

    #[test]
    fn first_source_wins_a_name_clash() {
        let mut writer = RegistryWriter::new();
        let rx = writer.subscribe();
        writer.replace("a", vec![cluster("greeter", "a", 1)]);
        writer.replace(
            "b",
            vec![cluster("greeter", "b", 2), cluster("other", "b", 3)],
        );
        let registry = rx.borrow().clone();
        assert_eq!(registry.clusters.len(), 2);
        assert_eq!(registry.clusters["greeter"].source, "a");
    }

    #[test]
    fn unchanged_contribution_publishes_nothing() {
        let mut writer = RegistryWriter::new();
        let mut rx = writer.subscribe();
        writer.replace("a", vec![cluster("greeter", "a", 1)]);
        assert!(rx.has_changed().unwrap_or(false));
        rx.mark_unchanged();
        writer.replace("a", vec![cluster("greeter", "a", 1)]);
        assert!(!rx.has_changed().unwrap_or(true));
    }

    #[test]
    fn an_expected_source_keeps_the_registry_incomplete_until_it_lists() {
        let mut writer = RegistryWriter::new();
        let rx = writer.subscribe();
        writer.replace("file", vec![cluster("a", "file", 1)]);
        writer.expect("kube");
        assert!(!rx.borrow().complete);
        assert_eq!(rx.borrow().clusters.len(), 1);
        writer.replace("kube", vec![]);
        assert!(rx.borrow().complete);
    }
}
