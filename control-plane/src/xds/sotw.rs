//! State of the world: every response carries the full requested set of its
//! type, so a client treats a missing Listener or Cluster as deleted.

use lookaside_proto::envoy::service::discovery::v3::DiscoveryRequest;

use super::response::SotwResponse;
use super::stream::{Protocol, Stream};
use super::subscription::{Change, Diff, Subscription};
use crate::snapshot::{ResourceType, Snapshot};
use lookaside_proto::envoy::config::core::v3::Node;

/// `StreamAggregatedResources`.
#[derive(Debug)]
pub(crate) struct Sotw;

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Response = SotwResponse;
    const NAME: &'static str = "sotw";

    fn type_url(request: &DiscoveryRequest) -> &str {
        &request.type_url
    }

    fn response_nonce(request: &DiscoveryRequest) -> &str {
        &request.response_nonce
    }

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn name_count(request: &DiscoveryRequest) -> usize {
        request.resource_names.len()
    }

    fn error_detail(request: &DiscoveryRequest) -> Option<(i32, String)> {
        request
            .error_detail
            .as_ref()
            .map(|s| (s.code, s.message.clone()))
    }

    /// The request's names replace the subscription.
    fn subscribe(subscription: &mut Subscription, request: &DiscoveryRequest) -> Change {
        subscription.replace(&request.resource_names)
    }

    fn respond(
        stream: &Stream,
        kind: ResourceType,
        snapshot: &Snapshot,
        _diff: &Diff,
        nonce: &str,
    ) -> (SotwResponse, String) {
        let state = stream.type_state(kind);
        let resources = state.subscription.in_scope(snapshot.resources(kind));
        // The version names the content: equal sets get equal versions.
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for resource in &resources {
            hasher.update(resource.name.as_bytes());
            hasher.update(&[0]);
            hasher.update(resource.version.as_bytes());
        }
        let version = format!("{:016x}", hasher.digest());
        let encoded = resources
            .iter()
            .map(|r| {
                if stream.resource_in_sotw {
                    r.wrapped_any.bytes.clone()
                } else {
                    r.any.bytes.clone()
                }
            })
            .collect();
        let response = SotwResponse {
            version_info: version.clone(),
            resources: encoded,
            type_url: kind.type_url().to_string(),
            nonce: nonce.to_string(),
            control_plane: stream.control_plane.clone(),
        };
        (response, version)
    }

    fn empty(type_url: &str, nonce: &str) -> SotwResponse {
        SotwResponse {
            type_url: type_url.to_string(),
            nonce: nonce.to_string(),
            ..Default::default()
        }
    }
}
