//! Client Status Discovery Service (`envoy.service.status.v3`): what every
//! connected client has, per resource, in the standard form that Envoy
//! tooling and `grpcurl` understand.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use lookaside_proto::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use lookaside_proto::envoy::config::core::v3::Node;
use lookaside_proto::envoy::service::status::v3::client_status_discovery_service_server::{
    ClientStatusDiscoveryService, ClientStatusDiscoveryServiceServer,
};
use lookaside_proto::envoy::service::status::v3::{
    ClientConfig, ClientStatusRequest, ClientStatusResponse, ConfigStatus,
    client_config::GenericXdsConfig,
};
use lookaside_proto::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use lookaside_proto::google::protobuf::{Any, Timestamp};
use prost::Message;

use crate::snapshot::Snapshot;
use crate::xds::{ClientView, Clients, TypeView};

/// Implements CSDS from the connected clients' state.
#[derive(Debug, Clone)]
pub struct CsdsService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    clients: Clients,
}

impl CsdsService {
    /// A service reading the given state.
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>, clients: Clients) -> Self {
        Self { snapshots, clients }
    }

    /// The server to add to a tonic router.
    pub fn into_server(self) -> ClientStatusDiscoveryServiceServer<Self> {
        ClientStatusDiscoveryServiceServer::new(self)
    }

    fn status(&self, request: &ClientStatusRequest) -> Result<ClientStatusResponse, Status> {
        supported(request)?;
        let snapshot = self.snapshots.borrow().clone();
        let config = self
            .clients
            .all()
            .iter()
            .filter(|client| matches(request, client))
            .map(|client| client_config(client, &snapshot, !request.exclude_resource_contents))
            .collect();
        Ok(ClientStatusResponse { config })
    }
}

/// Refuses the matchers this server cannot apply, rather than answer as if
/// they matched every client.
fn supported(request: &ClientStatusRequest) -> Result<(), Status> {
    for matcher in &request.node_matchers {
        if !matcher.node_metadatas.is_empty() {
            return Err(Status::unimplemented(
                "node_metadatas matchers are not supported; match on node_id",
            ));
        }
        if let Some(id) = &matcher.node_id {
            match &id.match_pattern {
                Some(
                    MatchPattern::Exact(_)
                    | MatchPattern::Prefix(_)
                    | MatchPattern::Suffix(_)
                    | MatchPattern::Contains(_),
                ) => {}
                _ => {
                    return Err(Status::unimplemented(
                        "node_id matchers: exact, prefix, suffix or contains (safe_regex is not \
                         supported)",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `text`, in ASCII lower case when `ignore_case` (as Envoy compares).
fn fold_case(text: &str, ignore_case: bool) -> std::borrow::Cow<'_, str> {
    if ignore_case {
        text.to_ascii_lowercase().into()
    } else {
        text.into()
    }
}

fn string_matches(matcher: &StringMatcher, value: &str) -> bool {
    // Copied only to fold case.
    let ignore_case = matcher.ignore_case;
    let fold = |text| fold_case(text, ignore_case);
    let value = fold(value);
    match &matcher.match_pattern {
        Some(MatchPattern::Exact(exact)) => value == fold(exact),
        Some(MatchPattern::Prefix(prefix)) => value.starts_with(&*fold(prefix)),
        Some(MatchPattern::Suffix(suffix)) => value.ends_with(&*fold(suffix)),
        Some(MatchPattern::Contains(part)) => value.contains(&*fold(part)),
        // Refused by `supported` before any matching.
        _ => false,
    }
}

fn matches(request: &ClientStatusRequest, client: &ClientView) -> bool {
    request.node_matchers.is_empty()
        || request.node_matchers.iter().any(|m| {
            m.node_id
                .as_ref()
                .is_none_or(|matcher| string_matches(matcher, &client.node_id))
        })
}

fn client_config(client: &ClientView, snapshot: &Snapshot, contents: bool) -> ClientConfig {
    let node = Node {
        id: client.node_id.clone(),
        cluster: client.node_cluster.clone(),
        user_agent_name: client.user_agent.clone(),
        ..Default::default()
    };
    let generic_xds_configs = client
        .types
        .iter()
        .flat_map(|t| type_configs(t, snapshot, contents))
        .collect();
    ClientConfig {
        node: Some(node),
        generic_xds_configs,
        client_scope: String::new(),
        ..Default::default()
    }
}

fn type_configs(view: &TypeView, snapshot: &Snapshot, contents: bool) -> Vec<GenericXdsConfig> {
    let last_nacked = view
        .acks
        .last_nack
        .as_ref()
        .filter(|n| n.nonce == view.acks.last_nonce);
    let mut configs: Vec<GenericXdsConfig> = view
        .resources
        .iter()
        .map(|(name, version)| {
            let (config_status, client_status) = match (version, last_nacked) {
                (None, _) => (ConfigStatus::Synced, ClientResourceStatus::DoesNotExist),
                (Some(_), Some(_)) => (ConfigStatus::Error, ClientResourceStatus::Nacked),
                (Some(_), None) if view.acks.awaiting => {
                    (ConfigStatus::Stale, ClientResourceStatus::Requested)
                }
                (Some(_), None) => (ConfigStatus::Synced, ClientResourceStatus::Acked),
            };
            let xds_config = version
                .as_ref()
                .filter(|_| contents)
                .and_then(|v| snapshot.get(view.kind, name).filter(|r| &r.version == v))
                .and_then(|resource| Any::decode(resource.any.message()).ok());
            GenericXdsConfig {
                type_url: view.kind.type_url().to_string(),
                name: name.clone(),
                version_info: version.clone().unwrap_or_default(),
                xds_config,
                config_status: config_status as i32,
                client_status: client_status as i32,
                error_state: last_nacked.map(|nack| UpdateFailureState {
                    details: nack.message.clone(),
                    version_info: nack.rejected_version.clone(),
                    last_update_attempt: Some(timestamp(nack.at)),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    // Subscribed names not sent yet.
    for name in view.subscribed.iter().take(crate::xds::MAX_NAMES_SHOWN) {
        if !view.resources.iter().any(|(known, _)| known == name) {
            configs.push(GenericXdsConfig {
                type_url: view.kind.type_url().to_string(),
                name: name.clone(),
                config_status: ConfigStatus::NotSent as i32,
                client_status: ClientResourceStatus::Requested as i32,
                ..Default::default()
            });
        }
    }
    configs
}

fn timestamp(at: std::time::SystemTime) -> Timestamp {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientStatusDiscoveryService for CsdsService {
    type StreamClientStatusStream = StatusStream;

    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<StatusStream>, Status> {
        let service = self.clone();
        let stream = request
            .into_inner()
            .map(move |request| request.and_then(|request| service.status(&request)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn fetch_client_status(
        &self,
        request: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        self.status(request.get_ref()).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ResourceType;
    use crate::xds::Acks;

    #[test]
    fn unsupported_matchers_are_refused_and_ignore_case_is_applied() {
        use lookaside_proto::envoy::r#type::matcher::v3::{
            NodeMatcher, RegexMatcher, StructMatcher,
        };
        let by_id = |pattern: MatchPattern, ignore_case: bool| ClientStatusRequest {
            node_matchers: vec![NodeMatcher {
                node_id: Some(StringMatcher {
                    match_pattern: Some(pattern),
                    ignore_case,
                }),
                node_metadatas: vec![],
            }],
            ..Default::default()
        };
        // Answered as if they matched everyone before.
        let regex = by_id(
            MatchPattern::SafeRegex(RegexMatcher {
                regex: "^zzz$".into(),
                ..Default::default()
            }),
            false,
        );
        assert_eq!(
            supported(&regex).map_err(|s| s.code()),
            Err(tonic::Code::Unimplemented)
        );
        let metadata = ClientStatusRequest {
            node_matchers: vec![NodeMatcher {
                node_id: None,
                node_metadatas: vec![StructMatcher::default()],
            }],
            ..Default::default()
        };
        assert_eq!(
            supported(&metadata).map_err(|s| s.code()),
            Err(tonic::Code::Unimplemented)
        );
        let exact = by_id(MatchPattern::Exact("Envoy-1".into()), true);
        assert!(supported(&exact).is_ok());
        let Some(matcher) = exact.node_matchers[0].node_id.as_ref() else {
            panic!("built with a node_id matcher");
        };
        assert!(string_matches(matcher, "envoy-1"));
        let strict = StringMatcher {
            ignore_case: false,
            ..matcher.clone()
        };
        assert!(!string_matches(&strict, "envoy-1"));
    }

    #[test]
    fn statuses_follow_acks_and_nacks() {
        let snapshot = crate::snapshot::build(Default::default(), 0, None);
        let mut view = TypeView {
            kind: ResourceType::Assignment,
            wildcard: false,
            subscribed: std::sync::Arc::new(["a", "b", "later"].map(String::from).into()),
            resources: vec![("a".into(), Some("v1".into())), ("b".into(), None)].into(),
            acks: Acks::default(),
            revision: 0,
        };
        let configs = type_configs(&view, &snapshot, true);
        let status = |name: &str, configs: &[GenericXdsConfig]| {
            configs
                .iter()
                .find(|c| c.name == name)
                .map(|c| (c.config_status, c.client_status))
        };
        assert_eq!(
            status("a", &configs),
            Some((
                ConfigStatus::Synced as i32,
                ClientResourceStatus::Acked as i32
            ))
        );
        assert_eq!(
            status("b", &configs),
            Some((
                ConfigStatus::Synced as i32,
                ClientResourceStatus::DoesNotExist as i32
            ))
        );
        assert_eq!(
            status("later", &configs),
            Some((
                ConfigStatus::NotSent as i32,
                ClientResourceStatus::Requested as i32
            ))
        );
        view.acks.last_nonce = "2".into();
        view.acks.last_nack = Some(crate::xds::Nack {
            rejected_version: "v2".into(),
            nonce: "2".into(),
            message: "bad".into(),
            code: 3,
            at: std::time::SystemTime::now(),
        });
        let configs = type_configs(&view, &snapshot, true);
        let a = configs.iter().find(|c| c.name == "a").expect("a");
        assert_eq!(a.client_status, ClientResourceStatus::Nacked as i32);
        assert_eq!(
            a.error_state.as_ref().map(|e| e.details.as_str()),
            Some("bad")
        );
    }
}
