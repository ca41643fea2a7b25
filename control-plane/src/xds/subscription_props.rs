//! Property tests of the subscription state machine (SotW and Delta share
//! it): for any sequence of subscribe, unsubscribe, ACK, NACK, snapshot
//! change and reconnect, a client never receives a resource it did not ask
//! for, and after a reconnect it ends with exactly the resources it is
//! subscribed to, at the latest version.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use lookaside_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use lookaside_proto::google::protobuf::Any;
use lookaside_proto::google::rpc;
use proptest::prelude::*;
use prost::Message;

use super::delta::Delta;
use super::limits::Limits;
use super::response::Wire;
use super::sotw::Sotw;
use super::stream::Stream;
use crate::snapshot::{ResourceType, Snapshot, build};
use crate::weigh::weighted_for_test as weighted;

const EDS: ResourceType = ResourceType::Assignment;
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// The snapshots a run moves between: clusters come, go and change weight.
fn snapshot(variant: u8) -> Snapshot {
    let clusters: &[(&str, &[(u16, u32)])] = match variant % 4 {
        0 => &[("a", &[(1, 1)]), ("b", &[(2, 1)]), ("c", &[(3, 1)])],
        1 => &[("a", &[(1, 5)]), ("b", &[(2, 1)]), ("d", &[(4, 2)])],
        2 => &[
            ("a", &[(1, 2)]),
            ("b", &[(2, 3)]),
            ("c", &[(3, 4)]),
            ("d", &[(4, 5)]),
        ],
        _ => &[],
    };
    build(weighted(clusters), u64::from(variant), None)
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe(usize),
    Unsubscribe(usize),
    /// The next response is rejected.
    NackNext,
    Snapshot(u8),
    Reconnect,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        (0..NAMES.len()).prop_map(Op::Subscribe),
        (0..NAMES.len()).prop_map(Op::Unsubscribe),
        Just(Op::NackNext),
        (0u8..4).prop_map(Op::Snapshot),
        Just(Op::Reconnect),
    ];
    proptest::collection::vec(op, 0..40)
}

fn new_stream() -> Stream {
    Stream::new(
        1,
        "peer".into(),
        Arc::new(Limits::default()),
        Default::default(),
    )
}

fn nack_detail() -> Option<rpc::Status> {
    Some(rpc::Status {
        code: 3,
        message: "rejected".into(),
        details: vec![],
    })
}

/// The Any the snapshot holds for `name`, if it exists.
fn current(snapshot: &Snapshot, name: &str) -> Option<Any> {
    let resource = snapshot.get(EDS, name)?;
    Any::decode(resource.any.message()).ok()
}

/// A SotW EDS client: it accepts or rejects each response and remembers
/// what it holds.
struct SotwModel {
    stream: Stream,
    snapshot: Snapshot,
    subscribed: BTreeSet<String>,
    held: BTreeMap<String, Any>,
    version: String,
    nack_next: bool,
    /// Whether this stream has sent a request yet: a first request with no
    /// names is a wildcard subscription, which this client never wants.
    opened: bool,
}

impl SotwModel {
    fn send(&mut self, nonce: &str, error: bool) {
        if !self.opened && self.subscribed.is_empty() {
            return;
        }
        self.opened = true;
        let request = DiscoveryRequest {
            type_url: EDS.type_url().into(),
            resource_names: self.subscribed.iter().cloned().collect(),
            response_nonce: nonce.into(),
            version_info: self.version.clone(),
            error_detail: if error { nack_detail() } else { None },
            ..Default::default()
        };
        let _ = self.stream.apply::<Sotw>(&request);
    }

    /// Reads every response, checking none names an unsubscribed resource.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..20 {
            let Some((_, response, _)) = self.stream.next_response::<Sotw>(&self.snapshot) else {
                return Ok(());
            };
            let response = DiscoveryResponse::decode(response.encode_to_vec().as_slice())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut decoded = Vec::new();
            for any in &response.resources {
                let assignment =
                    lookaside_proto::envoy::config::endpoint::v3::ClusterLoadAssignment::decode(
                        any.value.as_slice(),
                    )
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(
                    self.subscribed.contains(&assignment.cluster_name),
                    "received {} while subscribed to {:?}",
                    assignment.cluster_name,
                    self.subscribed
                );
                decoded.push((assignment.cluster_name, any.clone()));
            }
            if std::mem::take(&mut self.nack_next) {
                self.send(&response.nonce, true);
            } else {
                self.held.extend(decoded);
                self.version = response.version_info.clone();
                self.send(&response.nonce, false);
            }
        }
        Err(TestCaseError::fail("the stream never went quiet"))
    }

    fn settled(&self) -> Result<(), TestCaseError> {
        for name in &self.subscribed {
            let want = current(&self.snapshot, name);
            if want.is_some() {
                prop_assert_eq!(self.held.get(name), want.as_ref(), "{} is stale", name);
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sotw_clients_get_only_what_they_ask_for_and_converge(ops in ops()) {
        let mut client = SotwModel {
            stream: new_stream(),
            snapshot: snapshot(0),
            subscribed: BTreeSet::new(),
            held: BTreeMap::new(),
            version: String::new(),
            nack_next: false,
            opened: false,
        };
        for op in ops {
            match op {
                Op::Subscribe(i) => {
                    client.subscribed.insert(NAMES[i].to_string());
                    client.send("", false);
                }
                Op::Unsubscribe(i) => {
                    client.subscribed.remove(NAMES[i]);
                    client.send("", false);
                }
                Op::NackNext => client.nack_next = true,
                Op::Snapshot(v) => {
                    let next = snapshot(v);
                    client.stream.on_snapshot(next.built);
                    client.snapshot = next;
                }
                Op::Reconnect => {
                    client.stream = new_stream();
                    client.opened = false;
                    client.send("", false);
                }
            }
            client.drain()?;
        }
        // Settle: a reconnect, then every response accepted.
        client.nack_next = false;
        client.stream = new_stream();
        client.opened = false;
        client.send("", false);
        client.drain()?;
        client.settled()?;
    }
}

/// A Delta EDS client.
struct DeltaModel {
    stream: Stream,
    snapshot: Snapshot,
    subscribed: BTreeSet<String>,
    /// name -> version held.
    held: BTreeMap<String, String>,
    nack_next: bool,
    /// As for SotW: a first request that subscribes to nothing would be a
    /// wildcard subscription.
    opened: bool,
}

impl DeltaModel {
    fn send(&mut self, request: DeltaDiscoveryRequest) {
        if !self.opened && request.resource_names_subscribe.is_empty() {
            return;
        }
        self.opened = true;
        let _ = self.stream.apply::<Delta>(&DeltaDiscoveryRequest {
            type_url: EDS.type_url().into(),
            ..request
        });
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..20 {
            let Some((_, response, _)) = self.stream.next_response::<Delta>(&self.snapshot) else {
                return Ok(());
            };
            let response = DeltaDiscoveryResponse::decode(response.encode_to_vec().as_slice())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for resource in &response.resources {
                prop_assert!(
                    self.subscribed.contains(&resource.name),
                    "received {} while subscribed to {:?}",
                    resource.name,
                    self.subscribed
                );
            }
            if std::mem::take(&mut self.nack_next) {
                self.send(DeltaDiscoveryRequest {
                    response_nonce: response.nonce.clone(),
                    error_detail: nack_detail(),
                    ..Default::default()
                });
                continue;
            }
            for resource in &response.resources {
                self.held
                    .insert(resource.name.clone(), resource.version.clone());
            }
            for removed in &response.removed_resources {
                self.held.remove(removed);
            }
            self.send(DeltaDiscoveryRequest {
                response_nonce: response.nonce.clone(),
                ..Default::default()
            });
        }
        Err(TestCaseError::fail("the stream never went quiet"))
    }

    fn settled(&self) -> Result<(), TestCaseError> {
        let want: BTreeMap<String, String> = self
            .subscribed
            .iter()
            .filter_map(|name| {
                self.snapshot
                    .get(EDS, name)
                    .map(|r| (name.clone(), r.version.clone()))
            })
            .collect();
        prop_assert_eq!(&self.held, &want);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn delta_clients_get_only_what_they_ask_for_and_converge(ops in ops()) {
        let mut client = DeltaModel {
            stream: new_stream(),
            snapshot: snapshot(0),
            subscribed: BTreeSet::new(),
            held: BTreeMap::new(),
            nack_next: false,
            opened: false,
        };
        for op in ops {
            match op {
                Op::Subscribe(i) => {
                    client.subscribed.insert(NAMES[i].to_string());
                    client.send(DeltaDiscoveryRequest {
                        resource_names_subscribe: vec![NAMES[i].to_string()],
                        ..Default::default()
                    });
                }
                Op::Unsubscribe(i) => {
                    client.subscribed.remove(NAMES[i]);
                    // A client forgets what it unsubscribed from.
                    client.held.remove(NAMES[i]);
                    client.send(DeltaDiscoveryRequest {
                        resource_names_unsubscribe: vec![NAMES[i].to_string()],
                        ..Default::default()
                    });
                }
                Op::NackNext => client.nack_next = true,
                Op::Snapshot(v) => {
                    let next = snapshot(v);
                    client.stream.on_snapshot(next.built);
                    client.snapshot = next;
                }
                Op::Reconnect => {
                    client.stream = new_stream();
                    client.opened = false;
                    client.send(DeltaDiscoveryRequest {
                        resource_names_subscribe: client.subscribed.iter().cloned().collect(),
                        initial_resource_versions: client.held.clone().into_iter().collect(),
                        ..Default::default()
                    });
                }
            }
            client.drain()?;
        }
        client.nack_next = false;
        client.stream = new_stream();
        client.opened = false;
        client.send(DeltaDiscoveryRequest {
            resource_names_subscribe: client.subscribed.iter().cloned().collect(),
            initial_resource_versions: client.held.clone().into_iter().collect(),
            ..Default::default()
        });
        client.drain()?;
        client.settled()?;
    }
}
