//! The state of one ADS stream and the decision of what to send next.
//! Protocol-independent: SotW and Delta plug in through [`Protocol`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use lookaside_proto::envoy::config::core::v3::{Node, node::UserAgentVersionType};

use super::acks::{Acks, Reply};
use super::error::XdsError;
use super::limits::Limits;
use super::rate::RequestRate;
use super::subscription::{Change, Diff, Subscription};
use crate::snapshot::{ResourceType, Snapshot};

/// Client feature by which a SotW client asks for resources wrapped in
/// `envoy.service.discovery.v3.Resource`.
pub(crate) const RESOURCE_IN_SOTW: &str = "xds.config.resource-in-sotw";

/// A wire protocol: state of the world or Delta.
pub(crate) trait Protocol: Send + Sync + 'static {
    /// The request message.
    type Request: prost::Message + Default + Send + 'static;
    /// The response message.
    type Response: super::response::Wire + Send + 'static;
    /// `sotw` or `delta`.
    const NAME: &'static str;

    /// The request's type URL.
    fn type_url(request: &Self::Request) -> &str;

    /// The request's `response_nonce`.
    fn response_nonce(request: &Self::Request) -> &str;

    /// The request's node, if it carries one.
    fn node(request: &Self::Request) -> Option<&Node>;

    /// How many resource names the request carries (for the limit).
    fn name_count(request: &Self::Request) -> usize;

    /// The request's `error_detail` as (code, message): a NACK.
    fn error_detail(request: &Self::Request) -> Option<(i32, String)>;

    /// Applies the request's subscription change.
    fn subscribe(subscription: &mut Subscription, request: &Self::Request) -> Change;

    /// Phrases `diff` for type `kind` as a response. Returns the response and
    /// the version it carries.
    fn respond(
        stream: &Stream,
        kind: ResourceType,
        snapshot: &Snapshot,
        diff: &Diff,
        nonce: &str,
    ) -> (Self::Response, String);

    /// An empty response for a type we do not serve.
    fn empty(type_url: &str, nonce: &str) -> Self::Response;
}

/// What a request did to the stream.
pub(crate) enum Received<P: Protocol> {
    /// A type this server does not serve: the empty answer to send, unless
    /// the request ACKs the previous one.
    UnknownType(Option<P::Response>),
    /// A type we serve: its ACK/NACK verdict (the subscription is updated).
    Applied(ResourceType, Reply),
}

/// One resource type on one stream.
#[derive(Debug, Default)]
pub(crate) struct TypeStream {
    pub(crate) subscription: Subscription,
    pub(crate) acks: Acks,
    /// Must be compared against the snapshot.
    dirty: bool,
    /// Must be answered even if nothing changed.
    force: bool,
    /// When it became dirty, for push latency.
    dirty_since: Option<Instant>,
}

impl TypeStream {
    /// Applies the effect of a request on the subscription.
    pub(crate) fn on_change(&mut self, change: &Change) {
        if change.first || change.added {
            self.force = true;
        }
        if change.first || change.added || change.removed {
            self.mark_dirty(Instant::now());
        }
    }

    fn mark_dirty(&mut self, since: Instant) {
        self.dirty = true;
        if self.dirty_since.is_none() {
            self.dirty_since = Some(since);
        }
    }
}

/// Who is on the other end.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    pub(crate) node_id: String,
    pub(crate) node_cluster: String,
    pub(crate) user_agent: String,
    pub(crate) address: String,
}

/// Everything the server knows about one ADS stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) id: u64,
    pub(crate) peer: Peer,
    pub(crate) connected_at: SystemTime,
    node_cached: bool,
    pub(crate) resource_in_sotw: bool,
    types: [TypeStream; 4],
    /// Unknown type URLs asked for, with the nonce of our empty answer.
    unknown: HashMap<String, String>,
    nonce: u64,
    pub(crate) limits: Arc<Limits>,
    pub(crate) control_plane: Bytes,
    rate: RequestRate,
}

impl Stream {
    pub(crate) fn new(id: u64, address: String, limits: Arc<Limits>, control_plane: Bytes) -> Self {
        Self {
            rate: RequestRate::new(limits.max_requests_per_second),
            id,
            peer: Peer {
                address,
                ..Default::default()
            },
            connected_at: SystemTime::now(),
            node_cached: false,
            resource_in_sotw: false,
            types: Default::default(),
            unknown: HashMap::new(),
            nonce: 0,
            limits,
            control_plane,
        }
    }

    /// Caches the node from the first request that carries one; later nodes
    /// (usually omitted) are ignored.
    pub(crate) fn cache_node(&mut self, node: Option<&Node>) {
        if self.node_cached {
            return;
        }
        let Some(node) = node else { return };
        self.node_cached = true;
        let version = match &node.user_agent_version_type {
            Some(UserAgentVersionType::UserAgentVersion(version)) => version.clone(),
            Some(UserAgentVersionType::UserAgentBuildVersion(build)) => build
                .version
                .as_ref()
                .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch))
                .unwrap_or_default(),
            None => String::new(),
        };
        self.peer.node_id = node.id.clone();
        self.peer.node_cluster = node.cluster.clone();
        self.peer.user_agent = format!("{} {}", node.user_agent_name, version)
            .trim()
            .to_string();
        self.resource_in_sotw = node.client_features.iter().any(|f| f == RESOURCE_IN_SOTW);
    }

    /// Takes one request: its rate budget, then either the empty answer to
    /// a type we do not serve or `apply`. The one dispatch both the server
    /// and the fuzz target run.
    pub(crate) fn receive<P: Protocol>(
        &mut self,
        request: &P::Request,
        now: Instant,
    ) -> Result<Received<P>, XdsError> {
        if !self.answers_latest(P::type_url(request), P::response_nonce(request)) {
            self.check_rate(now)?;
        }
        if ResourceType::from_type_url(P::type_url(request)).is_none() {
            let type_url = P::type_url(request).to_string();
            let nonce = P::response_nonce(request).to_string();
            return Ok(Received::UnknownType(
                self.unknown_type::<P>(&type_url, &nonce)?,
            ));
        }
        let (kind, reply) = self.apply::<P>(request)?;
        Ok(Received::Applied(kind, reply))
    }

    /// Applies one request for a type we serve: node, limits, ACK/NACK, then
    /// the protocol's subscription change. The same steps for SotW and Delta.
    pub(crate) fn apply<P: Protocol>(
        &mut self,
        request: &P::Request,
    ) -> Result<(ResourceType, Reply), XdsError> {
        self.cache_node(P::node(request));
        self.check_names(P::name_count(request))?;
        let kind =
            ResourceType::from_type_url(P::type_url(request)).ok_or(XdsError::MissingTypeUrl)?;
        let state = self.type_stream(kind);
        let reply = state
            .acks
            .on_request(P::response_nonce(request), P::error_detail(request));
        let change = P::subscribe(&mut state.subscription, request);
        state.on_change(&change);
        self.check_subscriptions()?;
        Ok((kind, reply))
    }

    /// Whether a request with `nonce` for `type_url` answers (ACKs or NACKs)
    /// the latest response of that type: such replies are bounded by what
    /// the server sends and cost nothing from the rate budget.
    pub(crate) fn answers_latest(&self, type_url: &str, nonce: &str) -> bool {
        ResourceType::from_type_url(type_url).is_some_and(|kind| {
            let acks = &self.type_state(kind).acks;
            acks.awaiting && !nonce.is_empty() && nonce == acks.last_nonce
        })
    }

    /// Takes one request from the stream's rate budget at `now`.
    pub(crate) fn check_rate(&mut self, now: Instant) -> Result<(), XdsError> {
        if self.rate.allow(now) {
            Ok(())
        } else {
            Err(XdsError::TooManyRequests {
                limit: self.limits.max_requests_per_second,
            })
        }
    }

    /// Checks the number of names in a request.
    pub(crate) fn check_names(&self, count: usize) -> Result<(), XdsError> {
        if count > self.limits.max_names_per_request {
            return Err(XdsError::TooManyNames {
                count,
                limit: self.limits.max_names_per_request,
            });
        }
        Ok(())
    }

    /// Checks the names the stream is subscribed to, over every type
    /// (Delta subscriptions accumulate over requests).
    fn check_subscriptions(&self) -> Result<(), XdsError> {
        let count: usize = self
            .types
            .iter()
            .map(|state| state.subscription.names().len())
            .sum();
        if count > self.limits.max_subscriptions_per_stream {
            return Err(XdsError::TooManySubscriptions {
                count,
                limit: self.limits.max_subscriptions_per_stream,
            });
        }
        Ok(())
    }

    pub(crate) fn type_stream(&mut self, kind: ResourceType) -> &mut TypeStream {
        &mut self.types[kind.index()]
    }

    pub(crate) fn type_state(&self, kind: ResourceType) -> &TypeStream {
        &self.types[kind.index()]
    }

    /// Records a request for a type we do not serve. Returns the empty
    /// response to send, if this is not the ACK of an earlier one.
    pub(crate) fn unknown_type<P: Protocol>(
        &mut self,
        type_url: &str,
        response_nonce: &str,
    ) -> Result<Option<P::Response>, XdsError> {
        if type_url.is_empty() {
            return Err(XdsError::MissingTypeUrl);
        }
        if let Some(nonce) = self.unknown.get(type_url) {
            if nonce == response_nonce {
                return Ok(None);
            }
        } else if self.unknown.len() >= self.limits.max_unknown_types {
            return Err(XdsError::TooManyUnknownTypes {
                count: self.unknown.len() + 1,
                type_url: type_url.to_string(),
            });
        }
        let nonce = self.next_nonce();
        self.unknown.insert(type_url.to_string(), nonce.clone());
        Ok(Some(P::empty(type_url, &nonce)))
    }

    fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        self.nonce.to_string()
    }

    /// A new snapshot arrived: every subscribed type must be compared.
    pub(crate) fn on_snapshot(&mut self, built: Instant) {
        for state in &mut self.types {
            if state.subscription.started() {
                state.mark_dirty(built);
            }
        }
    }

    /// Whether some type must be compared against the snapshot.
    pub(crate) fn wants_to_send(&self) -> bool {
        self.types.iter().any(|t| t.dirty)
    }

    /// The next response to send, in ADS order (CDS, EDS, LDS, RDS), or
    /// `None` when the client has everything. Returns the type, the response
    /// and when the need for it arose.
    pub(crate) fn next_response<P: Protocol>(
        &mut self,
        snapshot: &Snapshot,
    ) -> Option<(ResourceType, P::Response, Option<Instant>)> {
        for kind in ResourceType::ADS_ORDER {
            let state = &mut self.types[kind.index()];
            if !state.dirty {
                continue;
            }
            state.dirty = false;
            let since = state.dirty_since.take();
            if !state.subscription.started() {
                continue;
            }
            let diff = state.subscription.diff(snapshot.resources(kind));
            if diff.is_empty() && !state.force {
                continue;
            }
            state.force = false;
            let nonce = self.next_nonce();
            let (response, version) = P::respond(self, kind, snapshot, &diff, &nonce);
            let state = &mut self.types[kind.index()];
            state.subscription.commit(&diff);
            state.acks.on_response(&version, &nonce);
            self.follow_dependents(kind, &diff, since);
            return Some((kind, response, since));
        }
        None
    }

    /// A sent Cluster must be followed by its assignment, and a sent Listener
    /// by its route configuration, even when those did not change: the client
    /// may have started a new subscription for them.
    fn follow_dependents(&mut self, kind: ResourceType, diff: &Diff, since: Option<Instant>) {
        let dependent = match kind {
            ResourceType::Cluster => ResourceType::Assignment,
            ResourceType::Listener => ResourceType::Route,
            _ => return,
        };
        let state = &mut self.types[dependent.index()];
        let mut any = false;
        for resource in &diff.updated {
            any |= state.subscription.forget(&resource.name);
        }
        if any {
            state.mark_dirty(since.unwrap_or_else(Instant::now));
        }
    }
}
