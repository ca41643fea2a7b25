//! Delta (incremental): responses carry only what changed, and
//! `removed_resources` for what is gone.

use lookaside_proto::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::response::DeltaResponse;
use super::stream::{Protocol, Stream};
use super::subscription::{Change, Diff, Subscription};
use crate::snapshot::{ResourceType, Snapshot};
use lookaside_proto::envoy::config::core::v3::Node;

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

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    /// Subscribes and unsubscribes. The versions a reconnecting client
    /// says it holds are not counted: a wildcard client may hold more
    /// resources than a request may name, and the message size bounds them.
    fn name_count(request: &DeltaDiscoveryRequest) -> usize {
        request.resource_names_subscribe.len() + request.resource_names_unsubscribe.len()
    }

    fn error_detail(request: &DeltaDiscoveryRequest) -> Option<(i32, String)> {
        request
            .error_detail
            .as_ref()
            .map(|s| (s.code, s.message.clone()))
    }

    /// The first request of a type also says what the client already has.
    fn subscribe(subscription: &mut Subscription, request: &DeltaDiscoveryRequest) -> Change {
        if subscription.started() {
            subscription.update_delta(
                &request.resource_names_subscribe,
                &request.resource_names_unsubscribe,
            )
        } else {
            subscription.start_delta(
                &request.resource_names_subscribe,
                &request.resource_names_unsubscribe,
                &request.initial_resource_versions,
            )
        }
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
