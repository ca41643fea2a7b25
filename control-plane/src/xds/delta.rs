//! Delta (incremental): responses carry only what changed, and
//! `removed_resources` for what is gone.

use lookaside_proto::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::acks::Reply;
use super::error::XdsError;
use super::response::DeltaResponse;
use super::stream::{Protocol, Stream};
use super::subscription::Diff;
use crate::snapshot::{ResourceType, Snapshot};

/// `DeltaAggregatedResources`.
#[derive(Debug)]
pub(crate) struct Delta;

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaResponse;
    const NAME: &'static str = "delta";

    fn type_url(request: &DeltaDiscoveryRequest) -> &str {
        &request.type_url
    }

    fn response_nonce(request: &DeltaDiscoveryRequest) -> &str {
        &request.response_nonce
    }

    fn apply(
        stream: &mut Stream,
        request: DeltaDiscoveryRequest,
    ) -> Result<(ResourceType, Reply), XdsError> {
        stream.cache_node(request.node.as_ref());
        stream.check_names(
            request.resource_names_subscribe.len()
                + request.resource_names_unsubscribe.len()
                + request.initial_resource_versions.len(),
        )?;
        let Some(kind) = ResourceType::from_type_url(&request.type_url) else {
            return Err(XdsError::MissingTypeUrl);
        };
        let error = request.error_detail.map(|s| (s.code, s.message));
        let state = stream.type_stream(kind);
        let reply = state.acks.on_request(&request.response_nonce, error);
        let change = if state.subscription.started() {
            state.subscription.update_delta(
                &request.resource_names_subscribe,
                &request.resource_names_unsubscribe,
            )
        } else {
            state.subscription.start_delta(
                &request.resource_names_subscribe,
                &request.resource_names_unsubscribe,
                &request.initial_resource_versions,
            )
        };
        state.on_change(&change);
        Ok((kind, reply))
    }

    fn respond(
        stream: &Stream,
        kind: ResourceType,
        snapshot: &Snapshot,
        diff: &Diff,
        nonce: &str,
    ) -> (DeltaResponse, String) {
        let response = DeltaResponse {
            system_version_info: snapshot.version.clone(),
            resources: diff
                .updated
                .iter()
                .map(|r| r.wrapped.bytes.clone())
                .collect(),
            type_url: kind.type_url().to_string(),
            nonce: nonce.to_string(),
            removed_resources: diff.removed.clone(),
            control_plane: stream.control_plane.clone(),
        };
        (response, snapshot.version.clone())
    }

    fn empty(type_url: &str, nonce: &str) -> DeltaResponse {
        DeltaResponse {
            type_url: type_url.to_string(),
            nonce: nonce.to_string(),
            ..Default::default()
        }
    }
}
