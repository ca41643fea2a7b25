//! The xDS protocol rules, each pinned by a test that drives one stream's
//! state machine directly (no network, fully deterministic).

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use super::delta::Delta;
use super::limits::Limits;
use super::response::Wire;
use super::sotw::Sotw;
use super::stream::{RESOURCE_IN_SOTW, Stream};
use crate::snapshot::{ResourceType, Snapshot, build};
use crate::weigh::weighted_for_test as weighted;
use lookaside_proto::envoy::config::core::v3::Node;
use lookaside_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use lookaside_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use lookaside_proto::google::rpc;

const CDS: ResourceType = ResourceType::Cluster;
const EDS: ResourceType = ResourceType::Assignment;
const LDS: ResourceType = ResourceType::Listener;
const RDS: ResourceType = ResourceType::Route;

fn snapshot(clusters: &[(&str, &[(u16, u32)])]) -> Snapshot {
    build(weighted(clusters), 0, None)
}

fn names(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn node(id: &str, features: &[&str]) -> Node {
    Node {
        id: id.into(),
        cluster: "c".into(),
        user_agent_name: "test".into(),
        client_features: names(features),
        ..Default::default()
    }
}

fn new_stream() -> Stream {
    Stream::new(
        1,
        "peer".into(),
        Arc::new(Limits::default()),
        Default::default(),
    )
}

/// Everything a SotW client would see.
struct SotwClient {
    stream: Stream,
    snapshot: Snapshot,
}

impl SotwClient {
    fn new(snapshot: Snapshot) -> Self {
        Self {
            stream: new_stream(),
            snapshot,
        }
    }

    fn request(&mut self, kind: ResourceType, resource_names: &[&str], nonce: &str) {
        self.raw(DiscoveryRequest {
            node: Some(node("n1", &[])),
            type_url: kind.type_url().into(),
            resource_names: names(resource_names),
            response_nonce: nonce.into(),
            ..Default::default()
        });
    }

    fn nack(&mut self, kind: ResourceType, resource_names: &[&str], nonce: &str) {
        self.raw(DiscoveryRequest {
            type_url: kind.type_url().into(),
            resource_names: names(resource_names),
            response_nonce: nonce.into(),
            error_detail: Some(rpc::Status {
                code: 3,
                message: "weight 0 is invalid".into(),
                details: vec![],
            }),
            ..Default::default()
        });
    }

    fn raw(&mut self, request: DiscoveryRequest) {
        let _ = self
            .stream
            .apply::<Sotw>(&request)
            .expect("request accepted");
    }

    fn set_snapshot(&mut self, snapshot: Snapshot) {
        self.stream.on_snapshot(snapshot.built);
        self.snapshot = snapshot;
    }

    /// The next response, decoded as a real client would.
    fn next(&mut self) -> Option<DiscoveryResponse> {
        let (_, response, _) = self.stream.next_response::<Sotw>(&self.snapshot)?;
        Some(DiscoveryResponse::decode(response.encode_to_vec().as_slice()).expect("decodes"))
    }

    /// Every response until the stream has nothing more to say.
    fn drain(&mut self) -> Vec<DiscoveryResponse> {
        std::iter::from_fn(|| self.next()).collect()
    }
}

fn resource_names(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|any| match ResourceType::from_type_url(&any.type_url) {
            Some(ResourceType::Assignment) => {
                ClusterLoadAssignment::decode(any.value.as_slice())
                    .expect("assignment")
                    .cluster_name
            }
            Some(ResourceType::Cluster) => {
                lookaside_proto::envoy::config::cluster::v3::Cluster::decode(any.value.as_slice())
                    .expect("cluster")
                    .name
            }
            Some(ResourceType::Listener) => {
                lookaside_proto::envoy::config::listener::v3::Listener::decode(any.value.as_slice())
                    .expect("listener")
                    .name
            }
            Some(ResourceType::Route) => {
                lookaside_proto::envoy::config::route::v3::RouteConfiguration::decode(
                    any.value.as_slice(),
                )
                .expect("route")
                .name
            }
            None => panic!("unexpected type {}", any.type_url),
        })
        .collect()
}

// --- version, nonce, ACK, NACK -------------------------------------------

#[test]
fn version_and_nonce_are_tracked_per_type() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    client.request(CDS, &[], "");
    client.request(LDS, &["a"], "");
    let cds = client.next().expect("CDS answered");
    let lds = client.next().expect("LDS answered");
    assert_eq!(cds.type_url, CDS.type_url());
    assert_eq!(lds.type_url, LDS.type_url());
    assert_ne!(cds.nonce, lds.nonce, "every response has its own nonce");
    assert!(!cds.version_info.is_empty() && !lds.version_info.is_empty());
    // ACKing LDS with its nonce acknowledges LDS only.
    client.request(LDS, &["a"], &lds.nonce);
    assert_eq!(
        client.stream.type_state(LDS).acks.acked_version,
        lds.version_info
    );
    assert_eq!(client.stream.type_state(CDS).acks.acked_version, "");
    assert_eq!(
        client.stream.type_state(CDS).acks.pending_nonce(),
        Some(cds.nonce.as_str())
    );
}

#[test]
fn nack_is_detected_by_error_detail_and_keeps_the_last_acked_version() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    client.request(EDS, &["a"], "");
    let first = client.next().expect("EDS answered");
    client.request(EDS, &["a"], &first.nonce);
    client.set_snapshot(snapshot(&[("a", &[(1, 5)])]));
    let second = client.next().expect("changed assignment pushed");
    assert_ne!(first.version_info, second.version_info);
    client.nack(EDS, &["a"], &second.nonce);
    let acks = &client.stream.type_state(EDS).acks;
    assert_eq!(
        acks.acked_version, first.version_info,
        "stays on the last ACKed version"
    );
    let nack = acks.last_nack.as_ref().expect("NACK recorded");
    assert_eq!(nack.rejected_version, second.version_info);
    assert_eq!(nack.message, "weight 0 is invalid");
    assert_eq!((acks.acks, acks.nacks), (1, 1));
    // The NACKed content is not re-sent in a loop...
    assert!(client.next().is_none());
    // ...but the next change is.
    client.set_snapshot(snapshot(&[("a", &[(1, 6)])]));
    assert!(client.next().is_some());
}

#[test]
fn nack_is_visible_in_the_client_view() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    client.request(EDS, &["a"], "");
    let first = client.next().expect("EDS answered");
    client.nack(EDS, &["a"], &first.nonce);
    let clients = super::Clients::default();
    clients.publish(&client.stream, "sotw");
    let view = clients.all();
    let eds = view[0]
        .types
        .iter()
        .find(|t| t.kind == EDS)
        .expect("EDS state");
    assert_eq!(eds.acks.nacks, 1);
    assert_eq!(view[0].node_id, "n1");
}

#[test]
fn the_client_view_follows_each_publish_and_shares_unchanged_lists() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    let clients = super::Clients::default();
    let eds = |clients: &super::Clients| {
        clients.all()[0]
            .types
            .iter()
            .find(|t| t.kind == EDS)
            .cloned()
            .expect("EDS state")
    };
    client.request(EDS, &["a"], "");
    clients.publish(&client.stream, "sotw");
    assert!(eds(&clients).resources.is_empty(), "nothing sent yet");
    let first = client.next().expect("EDS answered");
    clients.publish(&client.stream, "sotw");
    let sent = eds(&clients);
    let held: Vec<(String, bool)> = sent
        .resources
        .iter()
        .map(|(name, version)| (name.clone(), version.is_some()))
        .collect();
    assert_eq!(held, vec![("a".to_string(), true)]);
    // An ACK changes the ACK state only: the lists are the same allocation.
    client.request(EDS, &["a"], &first.nonce);
    clients.publish(&client.stream, "sotw");
    let acked = eds(&clients);
    assert_eq!(acked.acks.acked_version, first.version_info);
    assert!(std::sync::Arc::ptr_eq(&sent.resources, &acked.resources));
    // A new subscription rebuilds them.
    client.request(EDS, &["a", "b"], &first.nonce);
    clients.publish(&client.stream, "sotw");
    let rebuilt = eds(&clients);
    assert_eq!(
        rebuilt.subscribed.iter().cloned().collect::<Vec<_>>(),
        names(&["a", "b"])
    );
    // The names are the stream's own set, shared, not copied.
    assert!(std::sync::Arc::ptr_eq(
        &rebuilt.subscribed,
        client.stream.type_state(EDS).subscription.names()
    ));
}

#[test]
fn a_client_is_found_by_any_name_it_subscribes_to_not_only_those_shown() {
    // 150 clusters: the admin API shows 100, every one finds the client.
    let wanted: Vec<String> = (0..150).map(|i| format!("c{i:03}")).collect();
    let clusters: Vec<(&str, &[(u16, u32)])> =
        wanted.iter().map(|n| (n.as_str(), &[][..])).collect();
    let mut client = SotwClient::new(snapshot(&clusters));
    let requested: Vec<&str> = wanted.iter().map(String::as_str).collect();
    client.request(EDS, &requested, "");
    let clients = super::Clients::default();
    clients.publish(&client.stream, "sotw");
    let view = &clients.all()[0];
    assert!(view.subscribes_to("c120"));
    assert!(view.subscribes_to("c000"));
    assert!(!view.subscribes_to("c150"));
}

// --- node and stale nonces -----------------------------------------------

#[test]
fn node_is_cached_from_the_first_request() {
    let mut client = SotwClient::new(snapshot(&[("a", &[])]));
    client.raw(DiscoveryRequest {
        node: Some(node("first", &[])),
        type_url: CDS.type_url().into(),
        ..Default::default()
    });
    client.raw(DiscoveryRequest {
        node: Some(node("second", &[])),
        type_url: LDS.type_url().into(),
        resource_names: names(&["a"]),
        ..Default::default()
    });
    client.raw(DiscoveryRequest {
        node: None,
        type_url: EDS.type_url().into(),
        resource_names: names(&["a"]),
        ..Default::default()
    });
    assert_eq!(client.stream.peer.node_id, "first");
    assert_eq!(client.stream.peer.node_cluster, "c");
}

#[test]
fn stale_nonce_does_not_ack_but_keeps_subscription_changes() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)]), ("b", &[(2, 1)])]));
    client.request(EDS, &["a"], "");
    let first = client.next().expect("answered");
    client.set_snapshot(snapshot(&[("a", &[(1, 2)]), ("b", &[(2, 1)])]));
    let second = client.next().expect("pushed");
    // The client, not having seen `second`, answers `first` and adds "b".
    client.request(EDS, &["a", "b"], &first.nonce);
    let acks = &client.stream.type_state(EDS).acks;
    assert_eq!(acks.acks, 0, "a stale nonce acknowledges nothing");
    assert_eq!(acks.pending_nonce(), Some(second.nonce.as_str()));
    let third = client.next().expect("the new name is answered");
    assert_eq!(resource_names(&third), names(&["a", "b"]));
}

// --- what gets answered --------------------------------------------------

#[test]
fn newly_requested_names_are_answered_even_when_nothing_changed() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)]), ("b", &[(2, 1)])]));
    client.request(EDS, &["a"], "");
    let first = client.next().expect("answered");
    client.request(EDS, &["a"], &first.nonce);
    assert!(client.next().is_none());
    client.request(EDS, &["a", "b"], &first.nonce);
    let second = client.next().expect("new name answered");
    assert_eq!(resource_names(&second), names(&["a", "b"]));
}

#[test]
fn newly_requested_missing_name_is_still_answered() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    client.request(CDS, &["a"], "");
    let first = client.next().expect("answered");
    client.request(CDS, &["a", "nope"], &first.nonce);
    let second = client
        .next()
        .expect("answered although nothing exists for it");
    assert_eq!(
        resource_names(&second),
        names(&["a"]),
        "absent = does not exist"
    );
}

#[test]
fn a_plain_ack_is_never_answered_with_identical_content() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    for kind in ResourceType::ADS_ORDER {
        client.request(kind, &["a"], "");
    }
    let responses = client.drain();
    assert_eq!(responses.len(), 4);
    for response in &responses {
        let kind = ResourceType::from_type_url(&response.type_url).expect("known type");
        client.request(kind, &["a"], &response.nonce);
    }
    assert!(client.drain().is_empty());
    // A new snapshot with the same content for these names sends nothing.
    client.set_snapshot(snapshot(&[("a", &[(1, 1)]), ("other", &[(9, 1)])]));
    assert!(client.drain().is_empty());
}

#[test]
fn unsubscribe_then_resubscribe_resends() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)]), ("b", &[(2, 1)])]));
    client.request(EDS, &["a", "b"], "");
    let first = client.next().expect("answered");
    client.request(EDS, &["b"], &first.nonce);
    // Dropping a name needs no answer for EDS.
    assert!(client.next().is_none());
    client.request(EDS, &["a", "b"], &first.nonce);
    let again = client.next().expect("re-sent");
    assert_eq!(resource_names(&again), names(&["a", "b"]));
}

// --- wildcard --------------------------------------------------------------

#[test]
fn legacy_wildcard_only_for_a_first_request_without_names() {
    let mut client = SotwClient::new(snapshot(&[("a", &[]), ("b", &[])]));
    client.request(CDS, &[], "");
    let first = client.next().expect("answered");
    assert_eq!(resource_names(&first), names(&["a", "b"]));
    // Envoy's empty ACKs keep the wildcard: a new cluster still arrives.
    client.request(CDS, &[], &first.nonce);
    client.set_snapshot(snapshot(&[("a", &[]), ("b", &[]), ("c", &[])]));
    let second = client.next().expect("new cluster pushed");
    assert_eq!(resource_names(&second), names(&["a", "b", "c"]));

    // A stream that named resources first: a later empty list unsubscribes all.
    let mut client = SotwClient::new(snapshot(&[("a", &[]), ("b", &[])]));
    client.request(LDS, &["a"], "");
    let first = client.next().expect("answered");
    client.request(LDS, &[], &first.nonce);
    client.set_snapshot(snapshot(&[("a", &[(1, 1)]), ("b", &[]), ("c", &[])]));
    assert!(client.drain().is_empty(), "nothing is subscribed any more");
    assert!(
        client
            .stream
            .type_state(LDS)
            .subscription
            .names()
            .is_empty()
    );
}

// --- full state, empty assignments -----------------------------------------

#[test]
fn sotw_lds_and_cds_carry_the_full_requested_set() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)]), ("b", &[(2, 1)]), ("c", &[])]));
    client.request(LDS, &["a", "b"], "");
    let first = client.next().expect("answered");
    client.request(LDS, &["a", "b"], &first.nonce);
    // Only "b" goes away... the response lists everything still there.
    client.set_snapshot(snapshot(&[("a", &[(1, 1)]), ("c", &[])]));
    let second = client.next().expect("deletion pushed");
    assert_eq!(resource_names(&second), names(&["a"]));
    // An EDS-only change in another cluster sends every subscribed CDS name.
    let mut client = SotwClient::new(snapshot(&[("a", &[]), ("b", &[])]));
    client.request(CDS, &["a", "b"], "");
    let cds = client.next().expect("answered");
    assert_eq!(resource_names(&cds), names(&["a", "b"]));
}

#[test]
fn a_known_cluster_without_endpoints_gets_an_empty_assignment() {
    let mut client = SotwClient::new(snapshot(&[("empty", &[])]));
    client.request(EDS, &["empty"], "");
    let response = client.next().expect("never silence");
    assert_eq!(response.resources.len(), 1);
    let cla = ClusterLoadAssignment::decode(response.resources[0].value.as_slice()).expect("CLA");
    assert_eq!(cla.cluster_name, "empty");
    assert!(cla.endpoints.is_empty());
}

// --- ADS ordering ----------------------------------------------------------

#[test]
fn clusters_go_before_assignments_and_listeners_before_routes() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    // Requests arrive in the "wrong" order; responses go out in ADS order.
    client.request(RDS, &["a"], "");
    client.request(EDS, &["a"], "");
    client.request(LDS, &["a"], "");
    client.request(CDS, &["a"], "");
    let order: Vec<String> = client.drain().iter().map(|r| r.type_url.clone()).collect();
    let expected: Vec<String> = [CDS, EDS, LDS, RDS]
        .iter()
        .map(|k| k.type_url().to_string())
        .collect();
    assert_eq!(order, expected);
}

#[test]
fn a_cluster_is_never_sent_without_its_assignment_existing() {
    // Every Cluster in every snapshot has an assignment of the same name.
    let snapshot = snapshot(&[("a", &[(1, 1)]), ("empty", &[])]);
    for name in snapshot.resources(CDS).keys() {
        assert!(
            snapshot.get(EDS, name).is_some(),
            "{name} has no assignment"
        );
    }
}

#[test]
fn a_changed_cluster_is_followed_by_its_assignment() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    client.request(CDS, &[], "");
    client.request(EDS, &["a"], "");
    for response in client.drain() {
        let kind = ResourceType::from_type_url(&response.type_url).expect("type");
        client.request(
            kind,
            if kind == CDS { &[] } else { &["a"] },
            &response.nonce,
        );
    }
    // Simulate a Cluster whose content changed while the assignment did not:
    // the client re-subscribes to EDS when it re-creates the cluster, and
    // must get the assignment again.
    let mut changed = snapshot(&[("a", &[(1, 1)])]);
    let mut cluster = (**changed.get(CDS, "a").expect("cluster")).clone();
    cluster.version = "changed".into();
    changed.replace_for_test(CDS, cluster);
    client.set_snapshot(changed);
    let sent: Vec<String> = client.drain().iter().map(|r| r.type_url.clone()).collect();
    assert_eq!(
        sent,
        vec![CDS.type_url().to_string(), EDS.type_url().to_string()]
    );
}

// --- resource-in-sotw ------------------------------------------------------

#[test]
fn sotw_resources_are_wrapped_only_when_the_client_asks() {
    let mut plain = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    plain.request(CDS, &["a"], "");
    let response = plain.next().expect("answered");
    assert_eq!(response.resources[0].type_url, CDS.type_url());

    let mut wrapped = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    wrapped.raw(DiscoveryRequest {
        node: Some(node("n", &[RESOURCE_IN_SOTW])),
        type_url: CDS.type_url().into(),
        resource_names: names(&["a"]),
        ..Default::default()
    });
    let response = wrapped.next().expect("answered");
    assert_eq!(
        response.resources[0].type_url,
        "type.googleapis.com/envoy.service.discovery.v3.Resource"
    );
    let inner = lookaside_proto::envoy::service::discovery::v3::Resource::decode(
        response.resources[0].value.as_slice(),
    )
    .expect("Resource");
    assert_eq!(inner.name, "a");
    assert_eq!(
        inner.resource.map(|a| a.type_url),
        Some(CDS.type_url().to_string())
    );
}

// --- Delta -----------------------------------------------------------------

struct DeltaClient {
    stream: Stream,
    snapshot: Snapshot,
}

impl DeltaClient {
    fn new(snapshot: Snapshot) -> Self {
        Self {
            stream: new_stream(),
            snapshot,
        }
    }

    fn request(&mut self, request: DeltaDiscoveryRequest) {
        let _ = self.stream.apply::<Delta>(&request).expect("accepted");
    }

    fn subscribe(
        &mut self,
        kind: ResourceType,
        subscribe: &[&str],
        unsubscribe: &[&str],
        nonce: &str,
    ) {
        self.request(DeltaDiscoveryRequest {
            type_url: kind.type_url().into(),
            resource_names_subscribe: names(subscribe),
            resource_names_unsubscribe: names(unsubscribe),
            response_nonce: nonce.into(),
            ..Default::default()
        });
    }

    fn set_snapshot(&mut self, snapshot: Snapshot) {
        self.stream.on_snapshot(snapshot.built);
        self.snapshot = snapshot;
    }

    fn next(&mut self) -> Option<DeltaDiscoveryResponse> {
        let (_, response, _) = self.stream.next_response::<Delta>(&self.snapshot)?;
        Some(DeltaDiscoveryResponse::decode(response.encode_to_vec().as_slice()).expect("decodes"))
    }
}

fn delta_names(response: &DeltaDiscoveryResponse) -> Vec<String> {
    response.resources.iter().map(|r| r.name.clone()).collect()
}

#[test]
fn delta_sends_changes_only_and_removed_resources_for_deletions() {
    let mut client = DeltaClient::new(snapshot(&[("a", &[(1, 1)]), ("b", &[(2, 1)])]));
    client.subscribe(CDS, &[], &[], "");
    let first = client.next().expect("answered");
    assert_eq!(delta_names(&first), names(&["a", "b"]));
    client.subscribe(CDS, &[], &[], &first.nonce);
    client.set_snapshot(snapshot(&[("a", &[(1, 1)])]));
    let second = client.next().expect("deletion pushed");
    assert!(second.resources.is_empty());
    assert_eq!(second.removed_resources, names(&["b"]));
}

#[test]
fn delta_initial_resource_versions_yield_updates_and_removals() {
    let current = snapshot(&[("a", &[(1, 1)]), ("b", &[(2, 1)])]);
    let a_version = current.get(EDS, "a").expect("a").version.clone();
    let mut client = DeltaClient::new(current);
    let initial: HashMap<String, String> = [
        ("a".to_string(), a_version),
        ("b".to_string(), "stale".to_string()),
        ("gone".to_string(), "old".to_string()),
    ]
    .into_iter()
    .collect();
    client.request(DeltaDiscoveryRequest {
        type_url: EDS.type_url().into(),
        resource_names_subscribe: names(&["a", "b", "gone"]),
        initial_resource_versions: initial,
        ..Default::default()
    });
    let response = client.next().expect("answered");
    assert_eq!(
        delta_names(&response),
        names(&["b"]),
        "a is current, b is stale"
    );
    assert_eq!(response.removed_resources, names(&["gone"]));
}

#[test]
fn delta_subscribed_names_are_always_sent() {
    let mut client = DeltaClient::new(snapshot(&[("a", &[(1, 1)]), ("b", &[(2, 1)])]));
    client.subscribe(EDS, &["a"], &[], "");
    let first = client.next().expect("answered");
    assert_eq!(delta_names(&first), names(&["a"]));
    client.subscribe(EDS, &["b", "missing"], &[], &first.nonce);
    let second = client.next().expect("new names answered");
    assert_eq!(delta_names(&second), names(&["b"]));
    assert_eq!(
        second.removed_resources,
        names(&["missing"]),
        "absent names are reported"
    );
    // Unsubscribe then resubscribe re-sends.
    client.subscribe(EDS, &[], &["a"], &second.nonce);
    assert!(client.next().is_none());
    client.subscribe(EDS, &["a"], &[], &second.nonce);
    assert_eq!(delta_names(&client.next().expect("re-sent")), names(&["a"]));
}

#[test]
fn delta_nack_keeps_the_last_acked_version() {
    let mut client = DeltaClient::new(snapshot(&[("a", &[(1, 1)])]));
    client.subscribe(EDS, &["a"], &[], "");
    let first = client.next().expect("answered");
    client.subscribe(EDS, &[], &[], &first.nonce);
    client.set_snapshot(snapshot(&[("a", &[(1, 3)])]));
    let second = client.next().expect("pushed");
    client.request(DeltaDiscoveryRequest {
        type_url: EDS.type_url().into(),
        response_nonce: second.nonce.clone(),
        error_detail: Some(rpc::Status {
            code: 3,
            message: "no".into(),
            details: vec![],
        }),
        ..Default::default()
    });
    let acks = &client.stream.type_state(EDS).acks;
    assert_eq!(acks.acked_version, first.system_version_info);
    assert_eq!(acks.nacks, 1);
    assert!(client.next().is_none());
}

// --- garbage ---------------------------------------------------------------

#[test]
fn too_many_names_is_refused_with_the_limit_named() {
    let mut stream = Stream::new(
        1,
        "p".into(),
        Arc::new(Limits {
            max_names_per_request: 3,
            ..Limits::default()
        }),
        Default::default(),
    );
    let error = stream
        .apply::<Sotw>(&DiscoveryRequest {
            type_url: EDS.type_url().into(),
            resource_names: names(&["a", "b", "c", "d"]),
            ..Default::default()
        })
        .expect_err("refused");
    assert!(error.to_string().contains("limit is 3"), "{error}");
}

#[test]
fn unknown_types_get_an_empty_answer_once_and_are_bounded() {
    let mut stream = new_stream();
    let first = stream
        .unknown_type::<Sotw>("type.googleapis.com/x.Unknown", "")
        .expect("answered")
        .expect("an empty response");
    assert!(first.resources.is_empty());
    // Its ACK is not answered again.
    assert!(
        stream
            .unknown_type::<Sotw>("type.googleapis.com/x.Unknown", &first.nonce)
            .expect("fine")
            .is_none()
    );
    for i in 1..Limits::default().max_unknown_types {
        stream
            .unknown_type::<Sotw>(&format!("type.googleapis.com/x.U{i}"), "")
            .expect("within the limit");
    }
    assert!(
        stream
            .unknown_type::<Sotw>("type.googleapis.com/x.Last", "")
            .is_err()
    );
    assert!(
        stream.unknown_type::<Sotw>("", "").is_err(),
        "ADS needs a type URL"
    );
}

// --- slow clients ----------------------------------------------------------

#[test]
fn a_slow_client_gets_only_the_latest_state() {
    let mut client = SotwClient::new(snapshot(&[("a", &[(1, 1)])]));
    client.request(EDS, &["a"], "");
    let first = client.next().expect("answered");
    client.request(EDS, &["a"], &first.nonce);
    // Fifty changes arrive while the client cannot read.
    for weight in 2..=51 {
        client.set_snapshot(snapshot(&[("a", &[(1, weight)])]));
    }
    let responses = client.drain();
    assert_eq!(responses.len(), 1, "coalesced into one response");
    let cla =
        ClusterLoadAssignment::decode(responses[0].resources[0].value.as_slice()).expect("CLA");
    let weight = cla.endpoints[0].lb_endpoints[0]
        .load_balancing_weight
        .map(|w| w.value);
    assert_eq!(weight, Some(51), "and it is the latest");
}
