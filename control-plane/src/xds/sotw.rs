//! State of the world: every response carries the full requested set of its
//! type, so a client treats a missing Listener or Cluster as deleted.

use lookaside_proto::envoy::service::discovery::v3::DiscoveryRequest;

use super::acks::Reply;
use super::error::XdsError;
use super::response::SotwResponse;
use super::stream::{Protocol, Stream};
use super::subscription::Diff;
use crate::snapshot::{ResourceType, Snapshot};

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

    fn apply(
        stream: &mut Stream,
        request: DiscoveryRequest,
    ) -> Result<(ResourceType, Reply), XdsError> {
        stream.cache_node(request.node.as_ref());
        stream.check_names(request.resource_names.len())?;
        let Some(kind) = ResourceType::from_type_url(&request.type_url) else {
            return Err(XdsError::MissingTypeUrl);
        };
        let error = request.error_detail.map(|s| (s.code, s.message));
        let state = stream.type_stream(kind);
        let reply = state.acks.on_request(&request.response_nonce, error);
        let change = state.subscription.replace(&request.resource_names);
        state.on_change(&change);
        Ok((kind, reply))
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
