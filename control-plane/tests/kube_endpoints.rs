//! What a Service's clusters hold, through the real kube-rs client and a
//! fake API server: every endpoint of a Service spread over many slices,
//! scaling, a killed pod, terminating pods drained, ports matched by name
//! to the Service port clients dial, and dual-stack duplicates.
//! The list/watch protocol itself is in `kube_source.rs`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod fake_kube;

use std::time::Duration;

use fake_kube::FakeKube;
use fake_kube::fixtures::{
    Pod, State, addresses, greeter_slice, names, pod_ips, ready, run, service, slice,
    slice_with_ports, until,
};
use lookaside_control_plane::registry::{Cluster, Health};
use tokio::time::Instant;

const GREETER: &str = "greeter.default:50051";
const GREETER_FQDN: &str = "greeter.default.svc.cluster.local:50051";

fn health(clusters: &[Cluster], name: &str) -> Vec<(String, Health)> {
    clusters
        .iter()
        .find(|c| c.name == name)
        .map(|c| {
            c.endpoints
                .iter()
                .map(|e| (e.address.to_string(), e.health))
                .collect()
        })
        .unwrap_or_default()
}

fn pods(addresses: &[String], state: State) -> Vec<Pod<'_>> {
    addresses
        .iter()
        .map(|a| (a.as_str(), state, "z1"))
        .collect()
}

#[tokio::test]
async fn all_250_endpoints_across_3_slices_are_served() {
    let server = FakeKube::start().await;
    server.apply(service("greeter", true, &[("grpc", 50051, 50051)]));
    let ips = pod_ips(1, 250);
    // The EndpointSlice controller's default: at most 100 per slice.
    for (i, chunk) in ips.chunks(100).enumerate() {
        server.apply(slice(
            &format!("greeter-{i}"),
            "greeter",
            true,
            "IPv4",
            &pods(chunk, State::Ready),
        ));
    }
    let mut running = run(&server);
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;
    let served = addresses(&clusters, GREETER);
    assert_eq!(served.len(), 250, "a reader of one slice would see 100");
    let mut expected: Vec<String> = ips.iter().map(|ip| format!("{ip}:50051")).collect();
    let mut got = served.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(addresses(&clusters, GREETER_FQDN), served);

    // A change to the last slice alone keeps the other 200.
    server.apply(greeter_slice(
        "greeter-2",
        &pods(&ips[200..210], State::Ready),
    ));
    until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).len() == 210
    })
    .await;
}

#[tokio::test]
async fn scaling_3_to_10_to_2_is_followed_within_a_second() {
    let server = FakeKube::start().await;
    server.apply(service("greeter", true, &[("grpc", 50051, 50051)]));
    let ips = pod_ips(2, 10);
    server.apply(greeter_slice("greeter-a", &pods(&ips[..3], State::Ready)));
    let mut running = run(&server);
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;
    assert_eq!(addresses(&clusters, GREETER).len(), 3);

    // 3 -> 10: new pods start not ready, then become ready.
    let mut starting = pods(&ips[..3], State::Ready);
    starting.extend(pods(&ips[3..], State::NotReady));
    server.apply(greeter_slice("greeter-a", &starting));
    let started = Instant::now();
    server.apply(greeter_slice("greeter-a", &pods(&ips, State::Ready)));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).len() == 10
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        health(&clusters, GREETER)
            .iter()
            .all(|(_, h)| *h == Health::Healthy)
    );

    // 10 -> 2: eight pods terminate (drained while they still serve), then
    // leave the slice.
    let mut stopping = pods(&ips[..2], State::Ready);
    stopping.extend(pods(&ips[2..], State::Draining));
    server.apply(greeter_slice("greeter-a", &stopping));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        health(c, GREETER)
            .iter()
            .filter(|(_, h)| *h == Health::Draining)
            .count()
            == 8
    })
    .await;
    assert_eq!(addresses(&clusters, GREETER).len(), 10);
    let started = Instant::now();
    server.apply(greeter_slice("greeter-a", &pods(&ips[..2], State::Ready)));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).len() == 2
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    let expected: Vec<String> = ips[..2].iter().map(|ip| format!("{ip}:50051")).collect();
    assert_eq!(addresses(&clusters, GREETER), expected);
}

#[tokio::test]
async fn a_killed_pod_is_drained_then_removed() {
    let server = FakeKube::start().await;
    server.apply(service("greeter", true, &[("grpc", 50051, 50051)]));
    server.apply(greeter_slice(
        "greeter-a",
        &ready(&["10.3.0.1", "10.3.0.2", "10.3.0.3"]),
    ));
    let mut running = run(&server);
    until(&mut running, Duration::from_secs(5), |_| true).await;

    // `kubectl delete pod`: the pod is terminating and still serving.
    server.apply(greeter_slice(
        "greeter-a",
        &[
            ("10.3.0.1", State::Ready, "z1"),
            ("10.3.0.2", State::Draining, "z1"),
            ("10.3.0.3", State::Ready, "z1"),
        ],
    ));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        health(c, GREETER).contains(&("10.3.0.2:50051".to_string(), Health::Draining))
    })
    .await;
    assert_eq!(
        health(&clusters, GREETER),
        [
            ("10.3.0.1:50051".to_string(), Health::Healthy),
            ("10.3.0.2:50051".to_string(), Health::Draining),
            ("10.3.0.3:50051".to_string(), Health::Healthy),
        ]
    );

    // Its container exits: gone from the slice, gone from the cluster;
    // its replacement comes up elsewhere.
    server.apply(greeter_slice(
        "greeter-a",
        &ready(&["10.3.0.1", "10.3.0.3", "10.3.0.4"]),
    ));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).contains(&"10.3.0.4:50051".to_string())
    })
    .await;
    assert_eq!(
        addresses(&clusters, GREETER),
        ["10.3.0.1:50051", "10.3.0.3:50051", "10.3.0.4:50051"]
    );
}

#[tokio::test]
async fn terminating_pods_are_drained_while_they_serve_and_left_out_after() {
    let server = FakeKube::start().await;
    server.apply(service("greeter", true, &[("grpc", 50051, 50051)]));
    // A rolling update in flight: two old pods terminating (one still
    // serving), two new pods (one not ready yet).
    server.apply(greeter_slice(
        "greeter-a",
        &[
            ("10.4.0.1", State::Draining, "z1"),
            ("10.4.0.2", State::Gone, "z1"),
            ("10.4.0.3", State::Ready, "z2"),
            ("10.4.0.4", State::NotReady, "z2"),
        ],
    ));
    let mut running = run(&server);
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;
    assert_eq!(
        health(&clusters, GREETER),
        [
            ("10.4.0.1:50051".to_string(), Health::Draining),
            ("10.4.0.3:50051".to_string(), Health::Healthy),
        ]
    );
    assert_eq!(health(&clusters, GREETER_FQDN), health(&clusters, GREETER));

    // Every pod of the old version terminating and still serving: all
    // draining, none dropped mid-call.
    server.apply(greeter_slice(
        "greeter-a",
        &[
            ("10.4.0.1", State::Draining, "z1"),
            ("10.4.0.3", State::Draining, "z2"),
        ],
    ));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        health(c, GREETER)
            .iter()
            .all(|(_, h)| *h == Health::Draining)
    })
    .await;
    assert_eq!(addresses(&clusters, GREETER).len(), 2);
}

#[tokio::test]
async fn ports_match_by_name_clusters_take_the_service_port_endpoints_the_target_port() {
    let server = FakeKube::start().await;
    // Clients dial port 80; pods listen on 8080. A second, unnamed Service
    // with a single port shows the `""` name matching.
    server.apply(service(
        "greeter",
        true,
        &[("grpc", 80, 8080), ("admin", 9000, 9001)],
    ));
    server.apply(service("echo", true, &[("", 7000, 7070)]));
    server.apply(slice_with_ports(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &[("grpc", 8080), ("admin", 9001)],
        &ready(&["10.5.0.1", "10.5.0.2"]),
    ));
    server.apply(slice_with_ports(
        "echo-a",
        "echo",
        true,
        "IPv4",
        &[("", 7070)],
        &ready(&["10.5.1.1"]),
    ));
    let mut running = run(&server);
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;
    assert_eq!(
        names(&clusters),
        [
            "echo.default.svc.cluster.local:7000",
            "echo.default:7000",
            "greeter.default.svc.cluster.local:80",
            "greeter.default.svc.cluster.local:9000",
            "greeter.default:80",
            "greeter.default:9000",
        ]
    );
    assert_eq!(
        addresses(&clusters, "greeter.default:80"),
        ["10.5.0.1:8080", "10.5.0.2:8080"]
    );
    assert_eq!(
        addresses(&clusters, "greeter.default.svc.cluster.local:80"),
        ["10.5.0.1:8080", "10.5.0.2:8080"]
    );
    assert_eq!(
        addresses(&clusters, "greeter.default:9000"),
        ["10.5.0.1:9001", "10.5.0.2:9001"]
    );
    assert_eq!(addresses(&clusters, "echo.default:7000"), ["10.5.1.1:7070"]);

    // The Service's port changes (80 -> 81): the cluster follows it.
    server.apply(service(
        "greeter",
        true,
        &[("grpc", 81, 8080), ("admin", 9000, 9001)],
    ));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        !addresses(c, "greeter.default:81").is_empty()
    })
    .await;
    assert!(addresses(&clusters, "greeter.default:80").is_empty());
}

#[tokio::test]
async fn a_slice_seen_before_its_service_is_served_under_its_own_port_until_then() {
    let server = FakeKube::start().await;
    let mut running = run(&server);
    // Both lists are empty: an empty contribution.
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;
    assert!(clusters.is_empty());

    // The slice event wins the race between the two watches.
    server.apply(slice_with_ports(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &[("grpc", 8080)],
        &ready(&["10.6.0.1"]),
    ));
    let clusters = until(&mut running, Duration::from_secs(1), |c| !c.is_empty()).await;
    assert_eq!(
        addresses(&clusters, "greeter.default:8080"),
        ["10.6.0.1:8080"]
    );

    // The Service arrives: renamed to the port clients dial.
    server.apply(service("greeter", true, &[("grpc", 80, 8080)]));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        !addresses(c, "greeter.default:80").is_empty()
    })
    .await;
    assert_eq!(
        names(&clusters),
        ["greeter.default.svc.cluster.local:80", "greeter.default:80"]
    );
    assert_eq!(
        addresses(&clusters, "greeter.default:80"),
        ["10.6.0.1:8080"]
    );
}

#[tokio::test]
async fn dual_stack_slices_serve_both_families_and_duplicates_count_once() {
    let server = FakeKube::start().await;
    server.apply(service("greeter", true, &[("grpc", 50051, 50051)]));
    // A dual-stack Service has one slice per family for the same pods;
    // during a move an address can also sit in two slices of one family.
    server.apply(greeter_slice(
        "greeter-v4-a",
        &ready(&["10.7.0.1", "10.7.0.2"]),
    ));
    server.apply(greeter_slice(
        "greeter-v4-b",
        &[
            ("10.7.0.2", State::Ready, "z1"),
            ("10.7.0.3", State::Ready, "z1"),
        ],
    ));
    server.apply(slice(
        "greeter-v6-a",
        "greeter",
        true,
        "IPv6",
        &ready(&["fd00::7:1", "fd00::7:2", "fd00::7:3"]),
    ));
    server.apply(slice(
        "greeter-v6-b",
        "greeter",
        true,
        "IPv6",
        &[("fd00::7:3", State::Draining, "z1")],
    ));
    let mut running = run(&server);
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;
    assert_eq!(
        health(&clusters, GREETER),
        [
            ("10.7.0.1:50051".to_string(), Health::Healthy),
            ("10.7.0.2:50051".to_string(), Health::Healthy),
            ("10.7.0.3:50051".to_string(), Health::Healthy),
            ("[fd00::7:1]:50051".to_string(), Health::Healthy),
            ("[fd00::7:2]:50051".to_string(), Health::Healthy),
            // Listed ready in one slice and draining in another: the most
            // usable state wins.
            ("[fd00::7:3]:50051".to_string(), Health::Healthy),
        ]
    );

    // The duplicate's other copy goes: still one endpoint, still served.
    server.delete("default", "greeter-v4-a");
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).len() == 5
    })
    .await;
    assert!(addresses(&clusters, GREETER).contains(&"10.7.0.2:50051".to_string()));
    assert!(!addresses(&clusters, GREETER).contains(&"10.7.0.1:50051".to_string()));
}
