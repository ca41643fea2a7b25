//! Connected clients, as the admin API shows them. Each stream writes only
//! its own entry; readers copy.

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

use super::acks::Acks;
use super::stream::Stream;
use crate::snapshot::ResourceType;

/// How many subscribed names of one type the admin view keeps per stream.
const MAX_NAMES_SHOWN: usize = 100;
/// How many resources of one type the admin view lists per stream.
const MAX_RESOURCES_SHOWN: usize = 1000;

/// One connected stream.
#[derive(Debug, Clone)]
pub struct ClientView {
    /// Server-assigned stream id.
    pub stream_id: u64,
    /// `node.id`.
    pub node_id: String,
    /// `node.cluster`.
    pub node_cluster: String,
    /// `node.user_agent_name` and version.
    pub user_agent: String,
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    /// Remote address.
    pub peer: String,
    /// When the stream opened.
    pub connected_at: SystemTime,
    /// Per subscribed type.
    pub types: Vec<TypeView>,
}

/// One resource type of one stream.
#[derive(Debug, Clone)]
pub struct TypeView {
    /// The type.
    pub kind: ResourceType,
    /// Subscribed to everything.
    pub wildcard: bool,
    /// Explicit names (at most 100 shown).
    pub subscribed: Arc<[String]>,
    /// Every explicit name, hashed (8 bytes each, bounded by the
    /// subscription limit), so `subscribes_to` sees past the 100 shown.
    pub(crate) name_hashes: Arc<std::collections::HashSet<u64>>,
    /// What the client has: name and version, or `None` when it was told
    /// the resource does not exist (at most 1000 shown).
    pub resources: Arc<[(String, Option<String>)]>,
    /// ACK state.
    pub acks: Acks,
    /// The subscription revision `subscribed` and `resources` were built
    /// at: an ACK changes only `acks`, and the lists are shared, not
    /// rebuilt.
    pub(crate) revision: u64,
}

impl ClientView {
    /// Whether the client subscribes to cluster `name` in any type.
    pub fn subscribes_to(&self, name: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.wildcard || t.name_hashes.contains(&name_hash(name)))
    }
}

/// The hash `TypeView::name_hashes` holds for `name`.
pub(crate) fn name_hash(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

/// Every connected stream.
#[derive(Debug, Clone, Default)]
pub struct Clients {
    streams: Arc<DashMap<u64, ClientView>>,
}

impl Clients {
    pub(crate) fn publish(&self, stream: &Stream, protocol: &'static str) {
        // The previous view's lists, reused where still current. Its read
        // guard is dropped before the insert below (same shard).
        let previous = self.streams.get(&stream.id);
        let previous_types = previous.as_deref().map_or(&[][..], |view| &view.types);
        let types: Vec<TypeView> = ResourceType::ADS_ORDER
            .into_iter()
            .filter_map(|kind| {
                let state = stream.type_state(kind);
                let subscription = &state.subscription;
                if !subscription.started() {
                    return None;
                }
                let revision = subscription.revision();
                let (subscribed, name_hashes, resources) = previous_types
                    .iter()
                    .find(|t| t.kind == kind && t.revision == revision)
                    .map(|t| {
                        (
                            t.subscribed.clone(),
                            t.name_hashes.clone(),
                            t.resources.clone(),
                        )
                    })
                    .unwrap_or_else(|| {
                        (
                            subscription
                                .names()
                                .iter()
                                .take(MAX_NAMES_SHOWN)
                                .cloned()
                                .collect(),
                            Arc::new(subscription.names().iter().map(|n| name_hash(n)).collect()),
                            subscription.known(MAX_RESOURCES_SHOWN).into(),
                        )
                    });
                Some(TypeView {
                    kind,
                    wildcard: subscription.is_wildcard(),
                    subscribed,
                    name_hashes,
                    resources,
                    acks: state.acks.clone(),
                    revision,
                })
            })
            .collect();
        drop(previous);
        self.streams.insert(
            stream.id,
            ClientView {
                stream_id: stream.id,
                node_id: stream.peer.node_id.clone(),
                node_cluster: stream.peer.node_cluster.clone(),
                user_agent: stream.peer.user_agent.clone(),
                protocol,
                peer: stream.peer.address.clone(),
                connected_at: stream.connected_at,
                types,
            },
        );
    }

    pub(crate) fn remove(&self, id: u64) {
        self.streams.remove(&id);
    }

    /// A copy of every client, by stream id.
    pub fn all(&self) -> Vec<ClientView> {
        let mut all: Vec<ClientView> = self.streams.iter().map(|e| e.value().clone()).collect();
        all.sort_by_key(|c| c.stream_id);
        all
    }

    /// Number of connected streams.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is connected.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_to_sees_names_past_the_ones_shown() {
        // A client subscribed to 150 clusters: 100 shown, every one found.
        let names: Vec<String> = (0..150).map(|i| format!("c{i:03}")).collect();
        let view = ClientView {
            stream_id: 1,
            node_id: "envoy-1".into(),
            node_cluster: String::new(),
            user_agent: String::new(),
            protocol: "sotw",
            peer: String::new(),
            connected_at: SystemTime::now(),
            types: vec![TypeView {
                kind: ResourceType::Assignment,
                wildcard: false,
                subscribed: names.iter().take(MAX_NAMES_SHOWN).cloned().collect(),
                name_hashes: Arc::new(names.iter().map(|n| name_hash(n)).collect()),
                resources: Arc::from([]),
                acks: Acks::default(),
                revision: 0,
            }],
        };
        assert!(!view.types[0].subscribed.iter().any(|n| n == "c120"));
        assert!(view.subscribes_to("c120"));
        assert!(view.subscribes_to("c000"));
        assert!(!view.subscribes_to("c150"));
    }
}
