//! Shared fixtures for the Kubernetes tests: EndpointSlice and Service
//! objects as the API server sends them, a running `KubeSource` against a
//! `FakeKube`, and a wait for its next matching contribution.
//!
//! Owns: building objects and waiting with a deadline.
//! Must never: sleep to synchronise; every wait polls a channel or state up
//! to a deadline.

use std::sync::Arc;
use std::time::Duration;

use lookaside_control_plane::registry::Cluster;
use lookaside_control_plane::sources::SourceStatus;
use lookaside_control_plane::sources::kube::{KubeOptions, KubeSource};
use lookaside_control_plane::telemetry::Metrics;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::FakeKube;

/// The opt-in label.
pub const OPT_IN: (&str, &str) = ("lookaside.io/enabled", "true");

/// The namespace every fixture lives in.
pub const NAMESPACE: &str = "default";

/// How an endpoint's conditions are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// ready, serving, not terminating.
    Ready,
    /// A terminating pod that still serves: not ready, serving, terminating.
    Draining,
    /// A terminating pod that stopped serving.
    Gone,
    /// Not ready, not serving, not terminating (starting up).
    NotReady,
}

/// One endpoint of a slice: address, conditions, zone.
pub type Pod<'a> = (&'a str, State, &'a str);

/// A slice of Service `service` whose single port is `grpc` 50051.
pub fn slice(
    name: &str,
    service: &str,
    opted_in: bool,
    address_type: &str,
    endpoints: &[Pod<'_>],
) -> Value {
    slice_with_ports(
        name,
        service,
        opted_in,
        address_type,
        &[("grpc", 50051)],
        endpoints,
    )
}

/// An opted-in IPv4 slice of Service `greeter`, the tests' usual case.
pub fn greeter_slice(name: &str, endpoints: &[Pod<'_>]) -> Value {
    slice(name, "greeter", true, "IPv4", endpoints)
}

/// A slice of Service `service` with TCP `ports` as (name, number); an
/// empty name is an unnamed port.
pub fn slice_with_ports(
    name: &str,
    service: &str,
    opted_in: bool,
    address_type: &str,
    ports: &[(&str, u16)],
    endpoints: &[Pod<'_>],
) -> Value {
    let mut labels = json!({ "kubernetes.io/service-name": service });
    if opted_in {
        labels[OPT_IN.0] = json!(OPT_IN.1);
    }
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(address, state, zone)| {
            let (ready, serving, terminating) = match state {
                State::Ready => (true, true, false),
                State::Draining => (false, true, true),
                State::Gone => (false, false, true),
                State::NotReady => (false, false, false),
            };
            json!({
                "addresses": [address],
                "conditions": { "ready": ready, "serving": serving, "terminating": terminating },
                "zone": zone,
                "targetRef": { "kind": "Pod", "namespace": NAMESPACE, "name": format!("{service}-{address}") },
            })
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|(name, port)| json!({ "name": name, "port": port, "protocol": "TCP" }))
        .collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": { "name": name, "namespace": NAMESPACE, "labels": labels },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports,
    })
}

/// A ClusterIP Service `name` with TCP `ports` as (name, port, targetPort).
pub fn service(name: &str, opted_in: bool, ports: &[(&str, u16, u16)]) -> Value {
    let mut labels = json!({ "app": name });
    if opted_in {
        labels[OPT_IN.0] = json!(OPT_IN.1);
    }
    let ports: Vec<Value> = ports
        .iter()
        .map(|(name, port, target)| {
            json!({ "name": name, "port": port, "targetPort": target, "protocol": "TCP" })
        })
        .collect();
    json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": { "name": name, "namespace": NAMESPACE, "labels": labels },
        "spec": { "type": "ClusterIP", "selector": { "app": name }, "ports": ports },
        "status": { "loadBalancer": {} },
    })
}

/// Ready endpoints in zone `z1`.
pub fn ready<'a>(addresses: &[&'a str]) -> Vec<Pod<'a>> {
    addresses.iter().map(|a| (*a, State::Ready, "z1")).collect()
}

/// `count` distinct pod IPs from 10.`block`.0.1 upwards.
pub fn pod_ips(block: u8, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.{block}.{}.{}", i / 250, i % 250 + 1))
        .collect()
}

/// A `KubeSource` running against a fake API server.
pub struct Running {
    /// Its contributions, in order.
    pub updates: mpsc::Receiver<(String, Vec<Cluster>)>,
    /// Its status entry.
    pub status: SourceStatus,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the source on namespace `default` of `server`.
pub fn run(server: &FakeKube) -> Running {
    let status = SourceStatus::default();
    let source = KubeSource::new(
        server.client(),
        KubeOptions {
            namespace: Some(NAMESPACE.into()),
            ..KubeOptions::default()
        },
        status.clone(),
        Arc::new(Metrics::new()),
    );
    assert_eq!(source.id(), "kube:default");
    let (tx, updates) = mpsc::channel(64);
    let task = tokio::spawn(source.run(tx));
    Running {
        updates,
        status,
        task,
    }
}

/// The next published contribution that satisfies `done`, within `within`.
pub async fn until(
    running: &mut Running,
    within: Duration,
    done: impl Fn(&[Cluster]) -> bool,
) -> Vec<Cluster> {
    let deadline = Instant::now() + within;
    loop {
        let (id, clusters) = tokio::time::timeout_at(deadline, running.updates.recv())
            .await
            .expect("no matching update in time")
            .expect("source stopped");
        assert_eq!(id, "kube:default");
        if done(&clusters) {
            return clusters;
        }
    }
}

/// Polls `check` until it holds, failing after `within`.
pub async fn eventually(within: Duration, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The addresses of cluster `name`, in order; empty if there is none.
pub fn addresses(clusters: &[Cluster], name: &str) -> Vec<String> {
    clusters
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.endpoints.iter().map(|e| e.address.to_string()).collect())
        .unwrap_or_default()
}

/// The names of `clusters`, in order.
pub fn names(clusters: &[Cluster]) -> Vec<&str> {
    clusters.iter().map(|c| c.name.as_str()).collect()
}
