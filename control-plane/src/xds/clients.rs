//! Connected clients, as the admin API shows them. Each stream writes only
//! its own entry; readers copy.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

use super::acks::Acks;
use super::stream::Stream;
use crate::snapshot::ResourceType;

/// How many subscribed names of one type the admin view keeps per stream.
pub(crate) const MAX_NAMES_SHOWN: usize = 100;
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
    /// Explicit names: the stream's own set, shared, not copied (the admin
    /// API shows at most `MAX_NAMES_SHOWN`).
    pub subscribed: Arc<BTreeSet<String>>,
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
            .any(|t| t.wildcard || t.subscribed.contains(name))
    }
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
                let resources = previous_types
                    .iter()
                    .find(|t| t.kind == kind && t.revision == revision)
                    .map(|t| t.resources.clone())
                    .unwrap_or_else(|| subscription.known(MAX_RESOURCES_SHOWN).into());
                Some(TypeView {
                    kind,
                    wildcard: subscription.is_wildcard(),
                    subscribed: subscription.names().clone(),
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
