//! The Kubernetes source against a fake API server that speaks the real
//! list/watch protocol: slices merge, changes arrive within a second, a 410
//! Gone re-lists, Services that did not opt in are not served, and bookmarks
//! change nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod fake_kube;

use std::sync::Arc;
use std::time::Duration;

use fake_kube::FakeKube;
use lookaside_control_plane::registry::{Cluster, Health};
use lookaside_control_plane::sources::SourceStatus;
use lookaside_control_plane::sources::kube::{KubeOptions, KubeSource};
use lookaside_control_plane::telemetry::Metrics;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

const OPT_IN: (&str, &str) = ("lookaside.io/enabled", "true");

/// How an endpoint's conditions are set.
#[derive(Clone, Copy)]
enum State {
    Ready,
    Draining,
    NotReady,
}

fn slice(
    name: &str,
    service: &str,
    opted_in: bool,
    address_type: &str,
    endpoints: &[(&str, State, &str)],
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
                State::NotReady => (false, false, false),
            };
            json!({
                "addresses": [address],
                "conditions": { "ready": ready, "serving": serving, "terminating": terminating },
                "zone": zone,
            })
        })
        .collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": { "name": name, "namespace": "default", "labels": labels },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{ "name": "grpc", "port": 50051, "protocol": "TCP" }],
    })
}

fn ready(addresses: &[&'static str]) -> Vec<(&'static str, State, &'static str)> {
    addresses.iter().map(|a| (*a, State::Ready, "z1")).collect()
}

struct Running {
    updates: mpsc::Receiver<(String, Vec<Cluster>)>,
    status: SourceStatus,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn run(server: &FakeKube) -> Running {
    let status = SourceStatus::default();
    let source = KubeSource::new(
        server.client(),
        KubeOptions {
            namespace: Some("default".into()),
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
async fn until(
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

fn addresses(clusters: &[Cluster], name: &str) -> Vec<String> {
    clusters
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.endpoints.iter().map(|e| e.address.to_string()).collect())
        .unwrap_or_default()
}

const GREETER: &str = "greeter.default:50051";
const GREETER_FQDN: &str = "greeter.default.svc.cluster.local:50051";

#[tokio::test]
async fn slices_of_a_service_merge_into_one_cluster_under_both_names() {
    let server = FakeKube::start().await;
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &[
            ("10.0.0.1", State::Ready, "z1"),
            ("10.0.0.2", State::Draining, "z1"),
            ("10.0.0.9", State::NotReady, "z1"),
        ],
    ));
    server.apply(slice(
        "greeter-b",
        "greeter",
        true,
        "IPv4",
        &[
            ("10.0.0.3", State::Ready, "z2"),
            ("10.0.0.1", State::Ready, "z1"),
        ],
    ));
    server.apply(slice(
        "greeter-c",
        "greeter",
        true,
        "IPv6",
        &[("fd00::4", State::Ready, "z2")],
    ));
    let mut running = run(&server);
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;

    let names: Vec<_> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [GREETER_FQDN, GREETER]);
    assert_eq!(clusters[0].endpoints, clusters[1].endpoints);
    let endpoints: Vec<_> = clusters[1]
        .endpoints
        .iter()
        .map(|e| {
            (
                e.address.to_string(),
                e.health,
                e.locality.zone.as_str(),
                e.weight,
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        [
            ("10.0.0.1:50051".to_string(), Health::Healthy, "z1", 1),
            ("10.0.0.2:50051".to_string(), Health::Draining, "z1", 1),
            ("10.0.0.3:50051".to_string(), Health::Healthy, "z2", 1),
            ("[fd00::4]:50051".to_string(), Health::Healthy, "z2", 1),
        ]
    );
    assert_eq!(clusters[1].source, "kube:default");
    let status = running.status.all();
    assert_eq!(status[0].0, "kube:default");
    assert_eq!(status[0].1.clusters, 2);
    assert!(status[0].1.error.is_none());
}

#[tokio::test]
async fn modified_and_deleted_slices_arrive_within_a_second() {
    let server = FakeKube::start().await;
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    ));
    server.apply(slice(
        "greeter-b",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.1.1"]),
    ));
    let mut running = run(&server);
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;
    assert_eq!(addresses(&clusters, GREETER).len(), 4);

    // Scale 3 -> 5 in the first slice.
    let started = Instant::now();
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]),
    ));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).len() == 6
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(addresses(&clusters, GREETER_FQDN).len(), 6);

    // The second slice goes away.
    let started = Instant::now();
    server.delete("default", "greeter-b");
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).len() == 5
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!addresses(&clusters, GREETER).contains(&"10.0.1.1:50051".to_string()));
}

#[tokio::test]
async fn gone_relists_and_converges_to_the_current_state() {
    let server = FakeKube::start().await;
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    ));
    let mut running = run(&server);
    until(&mut running, Duration::from_secs(5), |_| true).await;
    assert_eq!(server.lists(), 1);

    // History is lost while the state changes: the open watch gets 410 Gone
    // and only a new list can show the change.
    server.replace_and_expire(vec![
        slice(
            "greeter-a",
            "greeter",
            true,
            "IPv4",
            &ready(&["10.0.0.7", "10.0.0.8"]),
        ),
        slice("echo-a", "echo", true, "IPv4", &ready(&["10.0.2.1"])),
    ]);
    let clusters = until(&mut running, Duration::from_secs(10), |c| c.len() == 4).await;
    assert!(server.lists() >= 2, "no re-list after 410 Gone");
    assert_eq!(
        addresses(&clusters, GREETER),
        ["10.0.0.7:50051", "10.0.0.8:50051"]
    );
    assert_eq!(
        addresses(&clusters, "echo.default:50051"),
        ["10.0.2.1:50051"]
    );
    assert!(running.status.all()[0].1.error.is_none());

    // And it keeps watching from the new list.
    server.delete("default", "echo-a");
    until(&mut running, Duration::from_secs(1), |c| c.len() == 2).await;
}

#[tokio::test]
async fn a_failing_api_server_is_reported_and_the_last_endpoints_keep_serving() {
    let server = FakeKube::start().await;
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1"]),
    ));
    let mut running = run(&server);
    until(&mut running, Duration::from_secs(5), |_| true).await;

    server.set_failing(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    let error = loop {
        if let Some(error) = running.status.all()[0].1.error.clone() {
            break error;
        }
        assert!(Instant::now() < deadline, "watch failure not reported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        error.message.contains("Kubernetes watch"),
        "{}",
        error.message
    );
    assert_eq!(running.status.all()[0].1.clusters, 2);
    // Nothing was withdrawn.
    assert!(running.updates.try_recv().is_err());

    // Back again: changes flow and the error clears.
    server.set_failing(false);
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1", "10.0.0.2"]),
    ));
    until(&mut running, Duration::from_secs(10), |c| {
        addresses(c, GREETER).len() == 2
    })
    .await;
    assert!(running.status.all()[0].1.error.is_none());
}

#[tokio::test]
async fn services_without_the_opt_in_label_are_not_served() {
    let server = FakeKube::start().await;
    server.apply(slice(
        "secret-a",
        "secret",
        false,
        "IPv4",
        &ready(&["10.0.9.1"]),
    ));
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1"]),
    ));
    let mut running = run(&server);
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;
    let names: Vec<_> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [GREETER_FQDN, GREETER]);

    // A later change to the unlabelled Service is not served either.
    server.apply(slice(
        "secret-a",
        "secret",
        false,
        "IPv4",
        &ready(&["10.0.9.1", "10.0.9.2"]),
    ));
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1", "10.0.0.2"]),
    ));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).len() == 2
    })
    .await;
    assert_eq!(clusters.len(), 2);

    // Taking the label off (Kubernetes copies it from the Service to its
    // slices) stops serving the Service; putting it back serves it again.
    server.apply(slice(
        "greeter-a",
        "greeter",
        false,
        "IPv4",
        &ready(&["10.0.0.1", "10.0.0.2"]),
    ));
    until(&mut running, Duration::from_secs(1), <[Cluster]>::is_empty).await;
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1", "10.0.0.2"]),
    ));
    until(&mut running, Duration::from_secs(1), |c| c.len() == 2).await;
    assert!(
        server
            .selectors()
            .iter()
            .all(|s| s == "lookaside.io/enabled=true")
    );
}

#[tokio::test]
async fn a_bookmark_changes_nothing() {
    let server = FakeKube::start().await;
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1"]),
    ));
    let mut running = run(&server);
    let before = until(&mut running, Duration::from_secs(5), |_| true).await;

    server.bookmark();
    server.bookmark();
    server.apply(slice(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &ready(&["10.0.0.1", "10.0.0.2"]),
    ));
    // The very next update is the edit: the bookmarks before it published
    // nothing, and the watch did not restart.
    let (_, after) = tokio::time::timeout(Duration::from_secs(1), running.updates.recv())
        .await
        .expect("no update")
        .expect("closed");
    assert_eq!(addresses(&before, GREETER).len(), 1);
    assert_eq!(addresses(&after, GREETER).len(), 2);
    assert_eq!(server.lists(), 1);
    assert!(server.bookmark_watches() >= 1, "bookmarks never asked for");
    assert!(running.status.all()[0].1.error.is_none());
}
