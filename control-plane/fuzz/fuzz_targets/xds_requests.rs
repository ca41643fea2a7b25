//! Fuzz target: the ADS stream state machine (`control-plane/src/xds`:
//! subscription, ACK/NACK, what to send next) fed an arbitrary sequence of
//! state-of-the-world and Delta requests (subscribe, unsubscribe, ACK, NACK
//! with arbitrary nonces, versions, type URLs, names and nodes), interleaved
//! with snapshot changes, reads, time passing and reconnects.
//!
//! A model client keeps what it asked for (the xDS rules for wildcard and
//! legacy wildcard, SotW replace, Delta subscribe/unsubscribe) and what it
//! holds; a Delta client either forgets what it unsubscribes from or, as
//! Envoy does, keeps what the wildcard still covers. Checked, as in
//! `xds/subscription_props.rs`:
//! - nothing panics, and every error that ends a stream is one the request
//!   earned (too many names, no type URL, too many unknown types, rate);
//! - every response decodes, is for a type the client started, has a fresh
//!   nonce, and names only resources the client is subscribed to, at the
//!   snapshot's content; a full-state SotW response carries the whole
//!   subscribed set; Delta removals name only gone, subscribed resources;
//! - a stream that reports nothing to send has nothing to send;
//! - at the end the client converges to exactly its subscribed set at the
//!   latest versions: on the same stream when it never rejected anything,
//!   and always after a reconnect that re-sends its subscriptions.

#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lookaside_control_plane::fuzzing::AdsStream;
use lookaside_control_plane::registry::{Health, Locality, MAX_WEIGHT, MIN_WEIGHT};
use lookaside_control_plane::snapshot::{ResourceType, Snapshot, build};
use lookaside_control_plane::weigh::{WeightReason, Weighted, WeightedCluster, WeightedEndpoint};
use lookaside_control_plane::xds::{Limits, Wire, XdsError};
use lookaside_proto::envoy::config::cluster::v3::Cluster;
use lookaside_proto::envoy::config::core::v3::Node;
use lookaside_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use lookaside_proto::envoy::config::listener::v3::Listener;
use lookaside_proto::envoy::config::route::v3::RouteConfiguration;
use lookaside_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use lookaside_proto::google::protobuf::Any;
use lookaside_proto::google::rpc;
use prost::Message;

/// Cluster names the snapshots use (valid names: no `*`).
const CLUSTERS: [&str; 5] = ["a", "b", "c", "d", "greeter.default:50051"];
/// Names requests use: the clusters, the wildcard and one that never exists.
const NAMES: [&str; 7] = ["a", "b", "c", "d", "greeter.default:50051", "*", "gone"];
/// Type URLs we do not serve.
const UNKNOWN_TYPES: [&str; 3] = [
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
    "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration",
    "type.googleapis.com/envoy.config.cluster.v3.Cluster ",
];
const WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";
const RESOURCE_IN_SOTW: &str = "xds.config.resource-in-sotw";
const WILDCARD: &str = "*";
/// Reads the settling client allows before the stream must be quiet.
const SETTLE_READS: usize = 64;

#[derive(Arbitrary, Debug)]
struct Input {
    delta: bool,
    /// A Delta client keeps what it unsubscribed from while the wildcard
    /// still covers it (as Envoy does), instead of forgetting it.
    keeps_unsubscribed: bool,
    limits: LimitsSpec,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct LimitsSpec {
    /// 0: the default.
    names: u8,
    /// 0: the default.
    subscriptions: u8,
    unknown_types: u8,
    /// 0: no rate limit.
    rate: u8,
}

impl LimitsSpec {
    fn limits(self) -> Limits {
        Limits {
            max_names_per_request: if self.names == 0 {
                Limits::default().max_names_per_request
            } else {
                usize::from(self.names)
            },
            max_subscriptions_per_stream: if self.subscriptions == 0 {
                Limits::default().max_subscriptions_per_stream
            } else {
                usize::from(self.subscriptions)
            },
            max_unknown_types: usize::from(self.unknown_types % 20),
            max_requests_per_second: u32::from(self.rate),
            ..Limits::default()
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Request(Box<RequestSpec>),
    Snapshot(Vec<ClusterSpec>),
    Read {
        count: u8,
        reply: Reply,
    },
    /// Time passes, in milliseconds.
    Advance(u16),
    Reconnect {
        delta: bool,
    },
}

/// What the client does with a response it reads.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Applies it and ACKs.
    Ack,
    /// Rejects it and NACKs.
    Nack,
    /// Applies it and says nothing (yet).
    Silent,
}

#[derive(Arbitrary, Debug)]
struct RequestSpec {
    type_url: TypeSel,
    /// SotW `resource_names`, Delta `resource_names_subscribe`.
    names: Vec<NameSel>,
    /// Delta `resource_names_unsubscribe`.
    unsubscribe: Vec<NameSel>,
    /// Delta `initial_resource_versions`.
    initial: Vec<(NameSel, VersionSel)>,
    nonce: NonceSel,
    version_info: String,
    error: Option<(i32, String)>,
    node: Option<NodeSpec>,
}

#[derive(Arbitrary, Debug)]
enum TypeSel {
    Served(u8),
    Unknown(u8),
    Empty,
    Raw(String),
}

impl TypeSel {
    fn url(&self) -> String {
        match self {
            TypeSel::Served(i) => ResourceType::ADS_ORDER[usize::from(*i) % 4]
                .type_url()
                .to_string(),
            TypeSel::Unknown(i) => UNKNOWN_TYPES[usize::from(*i) % UNKNOWN_TYPES.len()].to_string(),
            TypeSel::Empty => String::new(),
            TypeSel::Raw(raw) => raw.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum NameSel {
    Pool(u8),
    Raw(String),
}

impl NameSel {
    fn name(&self) -> String {
        match self {
            NameSel::Pool(i) => NAMES[usize::from(*i) % NAMES.len()].to_string(),
            NameSel::Raw(raw) => raw.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum VersionSel {
    /// The version the current snapshot has for the name (if any).
    Current,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum NonceSel {
    None,
    /// The latest nonce the client saw for the request's type.
    Latest,
    /// A nonce the server may have used.
    Number(u16),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct NodeSpec {
    id: String,
    resource_in_sotw: bool,
    features: Vec<String>,
}

impl NodeSpec {
    fn node(&self) -> Node {
        let mut client_features = self.features.clone();
        if self.resource_in_sotw {
            client_features.push(RESOURCE_IN_SOTW.to_string());
        }
        Node {
            id: self.id.clone(),
            user_agent_name: "fuzz".into(),
            client_features,
            ..Default::default()
        }
    }
}

#[derive(Arbitrary, Debug)]
struct ClusterSpec {
    name: u8,
    endpoints: Vec<(u8, u16, bool)>,
}

/// A snapshot of `specs`; later specs of the same name win.
fn snapshot(specs: &[ClusterSpec], sequence: u64, previous: Option<&Snapshot>) -> Snapshot {
    let mut weighted = Weighted {
        complete: true,
        ..Weighted::default()
    };
    for spec in specs {
        let name = CLUSTERS[usize::from(spec.name) % CLUSTERS.len()];
        let mut seen = HashSet::new();
        let endpoints = spec
            .endpoints
            .iter()
            .filter(|(port, _, _)| seen.insert(*port))
            .map(|&(port, weight, draining)| {
                let weight = u32::from(weight).clamp(MIN_WEIGHT, MAX_WEIGHT);
                WeightedEndpoint {
                    address: SocketAddr::from(([10, 0, 0, 1], 8000 + u16::from(port))),
                    weight,
                    configured_weight: weight,
                    reason: WeightReason::Configured,
                    load_address: None,
                    locality: Locality::default(),
                    health: if draining {
                        Health::Draining
                    } else {
                        Health::Healthy
                    },
                }
            })
            .collect();
        weighted.clusters.insert(
            name.to_string(),
            Arc::new(WeightedCluster {
                name: name.to_string(),
                policy: "static",
                source: "fuzz".into(),
                endpoints,
            }),
        );
    }
    build(Arc::new(weighted), sequence, previous)
}

/// The resource message (without its Any) the snapshot holds for `name`.
fn current_value(snapshot: &Snapshot, kind: ResourceType, name: &str) -> Option<Vec<u8>> {
    let resource = snapshot.get(kind, name)?;
    let any = Any::decode(resource.any.message()).expect("the snapshot's Any decodes");
    Some(any.value)
}

/// The name inside a resource message of type `kind`.
fn name_of(kind: ResourceType, value: &[u8]) -> String {
    match kind {
        ResourceType::Listener => Listener::decode(value).expect("Listener decodes").name,
        ResourceType::Route => {
            RouteConfiguration::decode(value)
                .expect("RouteConfiguration decodes")
                .name
        }
        ResourceType::Cluster => Cluster::decode(value).expect("Cluster decodes").name,
        ResourceType::Assignment => {
            ClusterLoadAssignment::decode(value)
                .expect("ClusterLoadAssignment decodes")
                .cluster_name
        }
    }
}

fn index(kind: ResourceType) -> usize {
    ResourceType::ADS_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

/// What the client asked for of one type on the current stream, and what it
/// holds (SotW: the resource message; Delta: the version).
#[derive(Debug, Default, Clone)]
struct TypeModel {
    started: bool,
    wildcard: bool,
    /// Wildcard because the first request named nothing.
    legacy: bool,
    names: BTreeSet<String>,
    held: BTreeMap<String, Vec<u8>>,
    /// The latest response nonce of this type the client saw.
    last_nonce: String,
}

impl TypeModel {
    fn covers(&self, name: &str) -> bool {
        self.started && (self.wildcard || self.names.contains(name))
    }

    /// SotW: the names replace the subscription. An empty first request is
    /// a (legacy) wildcard, kept while later requests are empty too.
    fn sotw(&mut self, requested: &[String]) {
        let first = !self.started;
        self.started = true;
        if requested.is_empty() && (first || self.legacy) {
            self.legacy = true;
            self.wildcard = true;
            self.names.clear();
            return;
        }
        self.legacy = false;
        self.wildcard = requested.iter().any(|n| n == WILDCARD);
        self.names = requested
            .iter()
            .filter(|n| *n != WILDCARD)
            .cloned()
            .collect();
    }

    /// Delta: a first request naming nothing is a wildcard; then names are
    /// added, then removed; `*` adds or removes the wildcard. Unless it
    /// `keeps` them, the client forgets the names it unsubscribes from.
    fn delta(&mut self, subscribe: &[String], unsubscribe: &[String], keeps: bool) {
        if !self.started {
            self.started = true;
            if subscribe.is_empty() {
                self.legacy = true;
                self.wildcard = true;
            }
        }
        for name in subscribe {
            if name == WILDCARD {
                self.wildcard = true;
            } else {
                self.names.insert(name.clone());
            }
        }
        for name in unsubscribe {
            if name == WILDCARD {
                self.wildcard = false;
                self.legacy = false;
            } else if self.names.remove(name) && !keeps {
                self.held.remove(name);
            }
        }
    }

    /// The client forgets what it no longer subscribes to.
    fn prune(&mut self) {
        let keep: Vec<String> = self
            .held
            .keys()
            .filter(|name| self.covers(name))
            .cloned()
            .collect();
        self.held.retain(|name, _| keep.contains(name));
    }

    /// The SotW `resource_names` that restate this subscription.
    fn sotw_names(&self) -> Vec<String> {
        if self.legacy && self.names.is_empty() {
            return Vec::new();
        }
        let mut names: Vec<String> = self.names.iter().cloned().collect();
        if self.wildcard {
            names.push(WILDCARD.to_string());
        }
        names
    }

    /// Whether restating the subscription on a new stream asks for anything
    /// (an empty first request would be a wildcard it does not want).
    fn wants_anything(&self) -> bool {
        self.started && (self.wildcard || !self.names.is_empty())
    }
}

struct Client {
    /// The current stream's limits.
    limits: Limits,
    keeps_unsubscribed: bool,
    delta: bool,
    stream: AdsStream,
    /// The server ended the stream.
    closed: bool,
    /// The client rejected a response on this stream: the server believes it
    /// has what it does not.
    rejected: bool,
    /// Whether the stream wraps SotW resources (from the first node).
    resource_in_sotw: Option<bool>,
    types: [TypeModel; 4],
    nonces: HashSet<String>,
    snapshot: Snapshot,
    sequence: u64,
    now: Instant,
}

impl Client {
    fn new(input: &Input) -> Self {
        Client {
            limits: input.limits.limits(),
            keeps_unsubscribed: input.keeps_unsubscribed,
            delta: input.delta,
            stream: AdsStream::new(input.limits.limits()),
            closed: false,
            rejected: false,
            resource_in_sotw: None,
            types: Default::default(),
            nonces: HashSet::new(),
            snapshot: snapshot(&[], 0, None),
            sequence: 0,
            now: Instant::now(),
        }
    }

    /// A new stream: the client keeps what it holds, the server knows
    /// nothing.
    fn reconnect(&mut self, delta: bool, limits: Limits) {
        // A client that changes protocol starts from scratch (SotW holds
        // resources, Delta versions).
        if delta != self.delta {
            for model in &mut self.types {
                model.held.clear();
            }
        }
        self.delta = delta;
        self.stream = AdsStream::new(limits.clone());
        self.limits = limits;
        self.closed = false;
        self.rejected = false;
        self.resource_in_sotw = None;
        self.nonces.clear();
        for model in &mut self.types {
            let held = std::mem::take(&mut model.held);
            *model = TypeModel {
                held,
                ..TypeModel::default()
            };
        }
    }

    fn on_snapshot(&mut self, specs: &[ClusterSpec]) {
        self.sequence += 1;
        let next = snapshot(specs, self.sequence, Some(&self.snapshot));
        self.stream.on_snapshot(&next);
        self.snapshot = next;
    }

    fn request(&mut self, spec: &RequestSpec) {
        if self.closed {
            return;
        }
        let type_url = spec.type_url.url();
        let kind = ResourceType::from_type_url(&type_url);
        let nonce = match &spec.nonce {
            NonceSel::None => String::new(),
            NonceSel::Latest => kind
                .map(|k| self.types[index(k)].last_nonce.clone())
                .unwrap_or_default(),
            NonceSel::Number(n) => n.to_string(),
            NonceSel::Raw(raw) => raw.clone(),
        };
        let names: Vec<String> = spec.names.iter().map(NameSel::name).collect();
        let error_detail = spec.error.as_ref().map(|(code, message)| rpc::Status {
            code: *code,
            message: message.clone(),
            details: vec![],
        });
        let node = spec.node.as_ref().map(NodeSpec::node);
        if self.delta {
            let unsubscribe: Vec<String> = spec.unsubscribe.iter().map(NameSel::name).collect();
            let initial: HashMap<String, String> = spec
                .initial
                .iter()
                .map(|(name, version)| {
                    let name = name.name();
                    let version = match version {
                        VersionSel::Current => kind
                            .and_then(|k| self.snapshot.get(k, &name))
                            .map(|r| r.version.clone())
                            .unwrap_or_default(),
                        VersionSel::Raw(raw) => raw.clone(),
                    };
                    (name, version)
                })
                .collect();
            let request = DeltaDiscoveryRequest {
                node,
                type_url,
                resource_names_subscribe: names,
                resource_names_unsubscribe: unsubscribe,
                initial_resource_versions: initial,
                response_nonce: nonce,
                error_detail,
                ..Default::default()
            };
            self.send_delta(&request);
        } else {
            let request = DiscoveryRequest {
                version_info: spec.version_info.clone(),
                node,
                resource_names: names,
                type_url,
                response_nonce: nonce,
                error_detail,
                ..Default::default()
            };
            self.send_sotw(&request);
        }
    }

    /// Whether the request must end the stream whatever the rate.
    fn over_names(&self, kind: Option<ResourceType>, count: usize) -> bool {
        kind.is_some() && count > self.limits.max_names_per_request
    }

    /// Names the stream would be subscribed to, over every type, once
    /// `kind`'s subscription is `after`.
    fn subscribed_with(&self, kind: Option<ResourceType>, after: &TypeModel) -> usize {
        ResourceType::ADS_ORDER
            .iter()
            .map(|k| {
                if Some(*k) == kind {
                    after.names.len()
                } else {
                    self.types[index(*k)].names.len()
                }
            })
            .sum()
    }

    /// A request the server accepted was within every limit.
    fn assert_within_limits(&self, kind: Option<ResourceType>, count: usize, subscribed: usize) {
        assert!(!self.over_names(kind, count), "{count} names were accepted");
        assert!(
            kind.is_none() || subscribed <= self.limits.max_subscriptions_per_stream,
            "{subscribed} subscriptions were accepted"
        );
    }

    /// The empty answer to a type the server does not serve: that type, no
    /// resources, a fresh nonce.
    fn check_empty_answer(&mut self, asked: &str, type_url: &str, empty: bool, nonce: String) {
        assert_eq!(type_url, asked);
        assert!(empty, "an unserved type got resources");
        assert!(self.nonces.insert(nonce), "nonce reused");
    }

    fn check_error(&self, error: &XdsError, type_url: &str, count: usize, subscribed: usize) {
        let kind = ResourceType::from_type_url(type_url);
        match error {
            XdsError::TooManyNames { .. } => assert!(self.over_names(kind, count), "{error}"),
            XdsError::TooManySubscriptions { .. } => assert!(
                kind.is_some() && subscribed > self.limits.max_subscriptions_per_stream,
                "{error}"
            ),
            XdsError::MissingTypeUrl => assert!(type_url.is_empty(), "{error}"),
            XdsError::TooManyUnknownTypes { .. } => {
                assert!(kind.is_none() && !type_url.is_empty(), "{error}")
            }
            XdsError::TooManyRequests { .. } => {
                assert!(self.limits.max_requests_per_second > 0, "{error}")
            }
            XdsError::TooManyStreams { .. } => panic!("a stream cannot hit the stream limit"),
        }
    }

    fn cache_node(&mut self, node: Option<&Node>) {
        if self.resource_in_sotw.is_none()
            && let Some(node) = node
        {
            self.resource_in_sotw =
                Some(node.client_features.iter().any(|f| f == RESOURCE_IN_SOTW));
        }
    }

    fn send_sotw(&mut self, request: &DiscoveryRequest) {
        let kind = ResourceType::from_type_url(&request.type_url);
        let count = request.resource_names.len();
        let mut after = kind
            .map(|k| self.types[index(k)].clone())
            .unwrap_or_default();
        after.sotw(&request.resource_names);
        let subscribed = self.subscribed_with(kind, &after);
        match self.stream.sotw_request(request, self.now) {
            Err(error) => {
                self.check_error(&error, &request.type_url, count, subscribed);
                self.closed = true;
            }
            Ok(empty) => {
                self.assert_within_limits(kind, count, subscribed);
                match kind {
                    Some(kind) => {
                        assert!(empty.is_none(), "a served type got an empty answer");
                        self.cache_node(request.node.as_ref());
                        let model = &mut self.types[index(kind)];
                        model.sotw(&request.resource_names);
                        model.prune();
                    }
                    None => {
                        if let Some(empty) = empty {
                            let decoded =
                                DiscoveryResponse::decode(empty.encode_to_vec().as_slice())
                                    .expect("an empty answer decodes");
                            self.check_empty_answer(
                                &request.type_url,
                                &decoded.type_url,
                                decoded.resources.is_empty(),
                                decoded.nonce,
                            );
                        }
                    }
                }
            }
        }
    }

    fn send_delta(&mut self, request: &DeltaDiscoveryRequest) {
        let kind = ResourceType::from_type_url(&request.type_url);
        // As the server counts: the versions a reconnecting client claims
        // are not names of the request.
        let count =
            request.resource_names_subscribe.len() + request.resource_names_unsubscribe.len();
        let mut after = kind
            .map(|k| self.types[index(k)].clone())
            .unwrap_or_default();
        after.delta(
            &request.resource_names_subscribe,
            &request.resource_names_unsubscribe,
            self.keeps_unsubscribed,
        );
        let subscribed = self.subscribed_with(kind, &after);
        match self.stream.delta_request(request, self.now) {
            Err(error) => {
                self.check_error(&error, &request.type_url, count, subscribed);
                self.closed = true;
            }
            Ok(empty) => {
                self.assert_within_limits(kind, count, subscribed);
                match kind {
                    Some(kind) => {
                        assert!(empty.is_none(), "a served type got an empty answer");
                        let model = &mut self.types[index(kind)];
                        if !model.started {
                            // What the client says it has is what it has.
                            model.held = request
                                .initial_resource_versions
                                .iter()
                                .map(|(name, version)| (name.clone(), version.clone().into_bytes()))
                                .collect();
                        }
                        model.delta(
                            &request.resource_names_subscribe,
                            &request.resource_names_unsubscribe,
                            self.keeps_unsubscribed,
                        );
                        model.prune();
                    }
                    None => {
                        if let Some(empty) = empty {
                            let decoded =
                                DeltaDiscoveryResponse::decode(empty.encode_to_vec().as_slice())
                                    .expect("an empty answer decodes");
                            self.check_empty_answer(
                                &request.type_url,
                                &decoded.type_url,
                                decoded.resources.is_empty(),
                                decoded.nonce,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Reads up to `count` responses. Returns how many there were.
    fn read(&mut self, count: usize, reply: Reply) -> usize {
        if self.closed {
            return 0;
        }
        for read in 0..count {
            let wants = self.stream.wants_to_send();
            let sent = if self.delta {
                self.stream
                    .next_delta(&self.snapshot)
                    .map(|(kind, response)| {
                        let decoded =
                            DeltaDiscoveryResponse::decode(response.encode_to_vec().as_slice())
                                .expect("a Delta response decodes");
                        self.on_delta(kind, decoded, reply);
                    })
            } else {
                self.stream
                    .next_sotw(&self.snapshot)
                    .map(|(kind, response)| {
                        let decoded =
                            DiscoveryResponse::decode(response.encode_to_vec().as_slice())
                                .expect("a SotW response decodes");
                        self.on_sotw(kind, decoded, reply);
                    })
            };
            if sent.is_none() {
                return read;
            }
            assert!(wants, "a response came from a stream with nothing to send");
            if self.closed {
                return read + 1;
            }
        }
        count
    }

    fn check_common(&mut self, kind: ResourceType, type_url: &str, nonce: &str) {
        assert_eq!(type_url, kind.type_url());
        assert!(!nonce.is_empty(), "a response without a nonce");
        assert!(
            self.nonces.insert(nonce.to_string()),
            "nonce {nonce} reused"
        );
        let model = &mut self.types[index(kind)];
        assert!(
            model.started,
            "{} sent before the client asked",
            kind.short_name()
        );
        model.last_nonce = nonce.to_string();
    }

    fn on_sotw(&mut self, kind: ResourceType, response: DiscoveryResponse, reply: Reply) {
        self.check_common(kind, &response.type_url, &response.nonce);
        assert!(!response.version_info.is_empty());
        let mut got = BTreeMap::new();
        for any in &response.resources {
            let (name, value) = if any.type_url == WRAPPER {
                assert_eq!(self.resource_in_sotw, Some(true), "wrapped without asking");
                let resource = Resource::decode(any.value.as_slice()).expect("Resource decodes");
                let inner = resource.resource.expect("a wrapped resource has its Any");
                assert_eq!(inner.type_url, kind.type_url());
                assert_eq!(name_of(kind, &inner.value), resource.name);
                (resource.name, inner.value)
            } else {
                assert_ne!(self.resource_in_sotw, Some(true), "not wrapped as asked");
                assert_eq!(any.type_url, kind.type_url());
                (name_of(kind, &any.value), any.value.clone())
            };
            let model = &self.types[index(kind)];
            assert!(
                model.covers(&name),
                "SotW sent {} {name:?} while subscribed to {:?} (wildcard {})",
                kind.short_name(),
                model.names,
                model.wildcard
            );
            assert_eq!(
                Some(&value),
                current_value(&self.snapshot, kind, &name).as_ref(),
                "{name} is not the snapshot's"
            );
            assert!(
                got.insert(name.clone(), value).is_none(),
                "{name} sent twice"
            );
        }
        let model = &self.types[index(kind)];
        let in_scope: BTreeSet<&String> = self
            .snapshot
            .resources(kind)
            .keys()
            .filter(|name| model.covers(name))
            .collect();
        let sent: BTreeSet<&String> = got.keys().collect();
        if kind.is_full_state() {
            assert_eq!(sent, in_scope, "a full-state response lacks resources");
        } else {
            assert!(sent.is_subset(&in_scope));
        }
        if reply == Reply::Nack {
            self.rejected = true;
        } else {
            let model = &mut self.types[index(kind)];
            if kind.is_full_state() {
                model.held = got;
            } else {
                model.held.extend(got);
            }
        }
        if reply != Reply::Silent {
            let request = DiscoveryRequest {
                version_info: response.version_info,
                resource_names: self.types[index(kind)].sotw_names(),
                type_url: kind.type_url().to_string(),
                response_nonce: response.nonce,
                error_detail: (reply == Reply::Nack).then(|| rpc::Status {
                    code: 3,
                    message: "rejected".into(),
                    details: vec![],
                }),
                ..Default::default()
            };
            self.send_sotw(&request);
        }
    }

    fn on_delta(&mut self, kind: ResourceType, response: DeltaDiscoveryResponse, reply: Reply) {
        self.check_common(kind, &response.type_url, &response.nonce);
        assert_eq!(response.system_version_info, self.snapshot.version);
        let model = &self.types[index(kind)];
        let mut updated = BTreeMap::new();
        for resource in &response.resources {
            let name = &resource.name;
            assert!(
                model.covers(name),
                "Delta sent {} {name:?} while subscribed to {:?} (wildcard {})",
                kind.short_name(),
                model.names,
                model.wildcard
            );
            let current = self
                .snapshot
                .get(kind, name)
                .expect("Delta sent a resource the snapshot lacks");
            assert_eq!(resource.version, current.version);
            let any = resource
                .resource
                .as_ref()
                .expect("a Delta resource has its Any");
            assert_eq!(any.type_url, kind.type_url());
            assert_eq!(
                Some(&any.value),
                current_value(&self.snapshot, kind, name).as_ref()
            );
            assert!(
                updated
                    .insert(name.clone(), resource.version.clone().into_bytes())
                    .is_none(),
                "{name} sent twice"
            );
        }
        for name in &response.removed_resources {
            assert!(model.covers(name), "removal of {name:?}, not subscribed");
            assert!(
                self.snapshot.get(kind, name).is_none(),
                "{name} removed but exists"
            );
            assert!(
                !updated.contains_key(name),
                "{name} both updated and removed"
            );
        }
        if reply == Reply::Nack {
            self.rejected = true;
        } else {
            let model = &mut self.types[index(kind)];
            model.held.extend(updated);
            for name in &response.removed_resources {
                model.held.remove(name);
            }
        }
        if reply != Reply::Silent {
            let request = DeltaDiscoveryRequest {
                type_url: kind.type_url().to_string(),
                response_nonce: response.nonce,
                error_detail: (reply == Reply::Nack).then(|| rpc::Status {
                    code: 3,
                    message: "rejected".into(),
                    details: vec![],
                }),
                ..Default::default()
            };
            self.send_delta(&request);
        }
    }

    /// Reads and ACKs until the stream has nothing more to send.
    fn settle(&mut self) {
        let read = self.read(SETTLE_READS, Reply::Ack);
        assert!(read < SETTLE_READS, "the stream never went quiet");
        assert!(self.closed || !self.stream.wants_to_send());
    }

    /// Holds exactly the subscribed resources at the snapshot's content
    /// (SotW cannot remove an EDS or RDS resource: only existing ones are
    /// compared there).
    fn assert_converged(&self, when: &str) {
        for kind in ResourceType::ADS_ORDER {
            let model = &self.types[index(kind)];
            if !model.started {
                // Nothing asked on this stream: what the client kept from
                // an earlier one is not the server's business.
                continue;
            }
            let want: BTreeMap<String, Vec<u8>> = self
                .snapshot
                .resources(kind)
                .iter()
                .filter(|(name, _)| model.covers(name))
                .map(|(name, resource)| {
                    let value = if self.delta {
                        resource.version.clone().into_bytes()
                    } else {
                        current_value(&self.snapshot, kind, name).unwrap_or_default()
                    };
                    (name.clone(), value)
                })
                .collect();
            if self.delta || kind.is_full_state() {
                assert_eq!(
                    model.held,
                    want,
                    "{when}: {} did not converge",
                    kind.short_name()
                );
            } else {
                for (name, value) in &want {
                    assert_eq!(
                        model.held.get(name),
                        Some(value),
                        "{when}: {} {name} did not converge",
                        kind.short_name()
                    );
                }
                assert!(model.held.keys().all(|name| model.covers(name)));
            }
        }
    }

    /// A new stream restating every subscription, as a client does after a
    /// reconnect.
    fn resubscribe(&mut self, delta: bool) {
        let wanted: Vec<TypeModel> = self.types.to_vec();
        self.reconnect(delta, Limits::default());
        for kind in ResourceType::ADS_ORDER {
            let want = &wanted[index(kind)];
            if !want.wants_anything() {
                self.types[index(kind)].held.clear();
                continue;
            }
            self.now += Duration::from_secs(1);
            if delta {
                let mut subscribe: Vec<String> = want.names.iter().cloned().collect();
                if want.wildcard {
                    subscribe.push(WILDCARD.to_string());
                }
                let mut held = std::mem::take(&mut self.types[index(kind)].held);
                held.retain(|name, _| want.covers(name));
                let initial = held
                    .into_iter()
                    .filter_map(|(name, version)| Some((name, String::from_utf8(version).ok()?)))
                    .collect();
                self.send_delta(&DeltaDiscoveryRequest {
                    type_url: kind.type_url().to_string(),
                    resource_names_subscribe: subscribe,
                    initial_resource_versions: initial,
                    ..Default::default()
                });
            } else {
                self.send_sotw(&DiscoveryRequest {
                    type_url: kind.type_url().to_string(),
                    resource_names: want.sotw_names(),
                    ..Default::default()
                });
            }
            assert!(!self.closed, "restating a subscription ended the stream");
            let model = &self.types[index(kind)];
            assert_eq!(model.wildcard, want.wildcard);
            assert_eq!(model.names, want.names);
        }
    }
}

fuzz_target!(|input: Input| {
    let mut client = Client::new(&input);
    for op in &input.ops {
        match op {
            Op::Request(spec) => client.request(spec),
            Op::Snapshot(specs) => client.on_snapshot(specs),
            Op::Read { count, reply } => {
                client.read(usize::from(*count % 16), *reply);
            }
            Op::Advance(ms) => client.now += Duration::from_millis(u64::from(*ms)),
            Op::Reconnect { delta } => client.reconnect(*delta, input.limits.limits()),
        }
    }
    // Same stream: a client that never rejected anything converges by
    // reading and ACKing.
    if !client.closed {
        client.settle();
        if !client.rejected && !client.closed {
            client.assert_converged("same stream");
        }
    }
    // New stream, same protocol: always converges.
    let delta = client.delta;
    client.resubscribe(delta);
    client.settle();
    client.assert_converged("after a reconnect");
});
