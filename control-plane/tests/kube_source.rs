//! The Kubernetes source against a fake API server that speaks the real
//! list/watch protocol: slices merge, changes arrive within a second, a 410
//! Gone re-lists, a dropped watch resumes without one, nothing is published
//! before both initial lists, Services that did not opt in are not served,
//! bookmarks change nothing, and only what `API_ACCESS` declares is read.
//! What endpoints and names a Service gets is in `kube_endpoints.rs`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod fake_kube;

use std::time::Duration;

use fake_kube::fixtures::{
    State, addresses, eventually, greeter_slice, names, ready, run, service, slice,
    slice_with_ports, until,
};
use fake_kube::{FakeKube, Kind};
use lookaside_control_plane::registry::{Cluster, Health};
use lookaside_control_plane::sources::kube::API_ACCESS;
use tokio::time::Instant;

const GREETER: &str = "greeter.default:50051";
const GREETER_FQDN: &str = "greeter.default.svc.cluster.local:50051";

#[tokio::test]
async fn slices_of_a_service_merge_into_one_cluster_under_both_names() {
    let server = FakeKube::start().await;
    server.apply(greeter_slice(
        "greeter-a",
        &[
            ("10.0.0.1", State::Ready, "z1"),
            ("10.0.0.2", State::Draining, "z1"),
            ("10.0.0.9", State::NotReady, "z1"),
        ],
    ));
    server.apply(greeter_slice(
        "greeter-b",
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
    server.apply(greeter_slice(
        "greeter-a",
        &ready(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    ));
    server.apply(greeter_slice("greeter-b", &ready(&["10.0.1.1"])));
    let mut running = run(&server);
    let clusters = until(&mut running, Duration::from_secs(5), |_| true).await;
    assert_eq!(addresses(&clusters, GREETER).len(), 4);

    // Scale 3 -> 5 in the first slice.
    let started = Instant::now();
    server.apply(greeter_slice(
        "greeter-a",
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
    server.apply(greeter_slice(
        "greeter-a",
        &ready(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    ));
    let mut running = run(&server);
    until(&mut running, Duration::from_secs(5), |_| true).await;
    assert_eq!(server.lists(), 1);

    // History is lost while the state changes: the open watch gets 410 Gone
    // and only a new list can show the change.
    let service_lists = server.lists_of(Kind::Service);
    server.replace_and_expire(
        Kind::EndpointSlice,
        vec![
            greeter_slice("greeter-a", &ready(&["10.0.0.7", "10.0.0.8"])),
            slice("echo-a", "echo", true, "IPv4", &ready(&["10.0.2.1"])),
        ],
    );
    let clusters = until(&mut running, Duration::from_secs(10), |c| c.len() == 4).await;
    assert!(server.lists() >= 2, "no re-list after 410 Gone");
    // History is lost for every kind: Services re-list too.
    eventually(Duration::from_secs(10), "Services re-listed", || {
        server.lists_of(Kind::Service) > service_lists
    })
    .await;
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
    server.apply(greeter_slice("greeter-a", &ready(&["10.0.0.1"])));
    let mut running = run(&server);
    until(&mut running, Duration::from_secs(5), |_| true).await;

    server.set_failing(true);
    eventually(Duration::from_secs(10), "watch failure reported", || {
        running.status.all()[0].1.error.is_some()
    })
    .await;
    let error = running.status.all()[0].1.error.clone().unwrap();
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
    server.apply(greeter_slice(
        "greeter-a",
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
    server.apply(service("secret", false, &[("grpc", 50051, 50051)]));
    server.apply(service("greeter", true, &[("grpc", 50051, 50051)]));
    server.apply(slice(
        "secret-a",
        "secret",
        false,
        "IPv4",
        &ready(&["10.0.9.1"]),
    ));
    server.apply(greeter_slice("greeter-a", &ready(&["10.0.0.1"])));
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
    server.apply(greeter_slice(
        "greeter-a",
        &ready(&["10.0.0.1", "10.0.0.2"]),
    ));
    let clusters = until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).len() == 2
    })
    .await;
    assert_eq!(clusters.len(), 2);

    // Taking the label off (Kubernetes copies it from the Service to its
    // slices) stops serving the Service; putting it back serves it again.
    server.apply(service("greeter", false, &[("grpc", 50051, 50051)]));
    server.apply(slice(
        "greeter-a",
        "greeter",
        false,
        "IPv4",
        &ready(&["10.0.0.1", "10.0.0.2"]),
    ));
    until(&mut running, Duration::from_secs(1), <[Cluster]>::is_empty).await;
    server.apply(service("greeter", true, &[("grpc", 50051, 50051)]));
    server.apply(greeter_slice(
        "greeter-a",
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
    server.apply(greeter_slice("greeter-a", &ready(&["10.0.0.1"])));
    let mut running = run(&server);
    let before = until(&mut running, Duration::from_secs(5), |_| true).await;

    server.bookmark();
    server.bookmark();
    server.apply(greeter_slice(
        "greeter-a",
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

#[tokio::test]
async fn a_dropped_watch_resumes_from_its_resource_version_without_a_relist() {
    let server = FakeKube::start().await;
    server.apply(service("greeter", true, &[("grpc", 50051, 50051)]));
    server.apply(greeter_slice("greeter-a", &ready(&["10.0.0.1"])));
    let mut running = run(&server);
    until(&mut running, Duration::from_secs(5), |_| true).await;
    let watches = server.watches_of(Kind::EndpointSlice);
    let service_watches = server.watches_of(Kind::Service);

    // The server ends every watch (a timeout, a restart behind a load
    // balancer); a change lands while the source is between watches.
    server.drop_watches();
    server.apply(greeter_slice(
        "greeter-a",
        &ready(&["10.0.0.1", "10.0.0.2"]),
    ));
    let clusters = until(&mut running, Duration::from_secs(10), |c| {
        addresses(c, GREETER).len() == 2
    })
    .await;
    assert_eq!(addresses(&clusters, GREETER_FQDN).len(), 2);
    // Both watches came back, from where they were: no list, no error.
    assert!(server.watches_of(Kind::EndpointSlice) > watches);
    eventually(Duration::from_secs(10), "Service watch resumed", || {
        server.watches_of(Kind::Service) > service_watches
    })
    .await;
    assert_eq!(server.lists(), 1, "a resumed watch must not re-list");
    assert_eq!(server.lists_of(Kind::Service), 1);
    assert!(running.status.all()[0].1.error.is_none());

    // And it keeps following changes.
    server.delete("default", "greeter-a");
    until(&mut running, Duration::from_secs(1), |c| {
        addresses(c, GREETER).is_empty()
    })
    .await;
}

#[tokio::test]
async fn nothing_is_published_until_both_initial_lists_are_complete() {
    let server = FakeKube::start().await;
    server.apply(service("greeter", true, &[("grpc", 80, 8080)]));
    server.apply(slice_with_ports(
        "greeter-a",
        "greeter",
        true,
        "IPv4",
        &[("grpc", 8080)],
        &ready(&["10.0.0.1"]),
    ));
    // Slices list fine; Services cannot be listed yet.
    server.set_failing_kind(Kind::Service, true);
    let mut running = run(&server);
    eventually(Duration::from_secs(5), "slices listed", || {
        server.lists() >= 1
    })
    .await;
    eventually(
        Duration::from_secs(5),
        "Service list failure reported",
        || {
            running
                .status
                .all()
                .first()
                .and_then(|(_, state)| state.error.as_ref())
                .is_some_and(|e| e.message.contains("Services"))
        },
    )
    .await;
    // Publishing now would name the cluster by the slice port (8080), then
    // rename it: no contribution at all may come before the Service list.
    assert!(
        running.updates.try_recv().is_err(),
        "published before the Service list"
    );

    server.set_failing_kind(Kind::Service, false);
    let clusters = until(&mut running, Duration::from_secs(10), |_| true).await;
    assert_eq!(
        names(&clusters),
        ["greeter.default.svc.cluster.local:80", "greeter.default:80"]
    );
    assert_eq!(
        addresses(&clusters, "greeter.default:80"),
        ["10.0.0.1:8080"]
    );
}

#[tokio::test]
async fn the_source_only_lists_and_watches_what_api_access_declares() {
    let server = FakeKube::start().await;
    server.apply(service("greeter", true, &[("grpc", 50051, 50051)]));
    server.apply(greeter_slice(
        "greeter-a",
        &[("10.0.0.1", State::Ready, "z1")],
    ));
    let mut running = run(&server);
    until(&mut running, Duration::from_secs(5), |_| true).await;
    eventually(Duration::from_secs(5), "both kinds watched", || {
        server.watches_of(Kind::EndpointSlice) >= 1 && server.watches_of(Kind::Service) >= 1
    })
    .await;

    let requests = server.requests();
    for request in &requests {
        let declared = API_ACCESS.iter().any(|access| {
            (access.group, access.resource) == request.resource
                && access.verbs.contains(&request.verb)
        });
        assert!(declared, "undeclared request {request:?}");
        assert_eq!(request.selector, "lookaside.io/enabled=true");
    }
    // And everything declared is used.
    for access in API_ACCESS {
        for verb in access.verbs {
            assert!(
                requests
                    .iter()
                    .any(|r| r.resource == (access.group, access.resource) && r.verb == *verb),
                "{verb} {} declared but never requested",
                access.resource
            );
        }
    }
}
