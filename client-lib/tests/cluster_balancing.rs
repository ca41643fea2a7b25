//! A cluster balancer in front of real in-process tonic servers: calls split
//! by weight, follow re-weighting, skip dead endpoints, and fail with clear
//! statuses when nothing is usable.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::LbChannel;
use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use support::{Backend, call};

fn balancer(name: &str) -> (ClusterBalancer, LbChannel) {
    let settings = ConnectionSettings {
        probe_backoff_initial: Duration::from_millis(20),
        probe_backoff_max: Duration::from_millis(200),
        ..ConnectionSettings::default()
    };
    ClusterBalancer::spawn(name, settings, Duration::from_millis(300))
}

#[tokio::test]
async fn calls_split_exactly_by_weight_and_follow_reweighting() {
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let (cluster, channel) = balancer("greeter");
    cluster.assign(vec![
        (backends[0].address, 1),
        (backends[1].address, 2),
        (backends[2].address, 7),
    ]);
    for _ in 0..1000 {
        call(&channel).await.expect("call");
    }
    let served: Vec<u64> = backends.iter().map(Backend::served).collect();
    assert_eq!(served, vec![100, 200, 700]);

    cluster.assign(vec![
        (backends[0].address, 7),
        (backends[1].address, 2),
        (backends[2].address, 1),
    ]);
    // The new set is published by the balancer task; wait for it.
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let before: Vec<u64> = backends.iter().map(Backend::served).collect();
            for _ in 0..10 {
                call(&channel).await.expect("call");
            }
            let delta: Vec<u64> = backends
                .iter()
                .zip(before)
                .map(|(b, s)| b.served() - s)
                .collect();
            if delta == vec![7, 2, 1] {
                break;
            }
        }
    })
    .await
    .expect("re-weighting followed");
}

#[tokio::test]
async fn a_dead_endpoint_is_ejected_and_later_calls_succeed() {
    let mut backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let (cluster, channel) = balancer("greeter");
    cluster.assign(backends.iter().map(|b| (b.address, 1)).collect());
    for _ in 0..30 {
        call(&channel).await.expect("call");
    }
    backends[0].kill();
    let mut failures = 0;
    for _ in 0..300 {
        if call(&channel).await.is_err() {
            failures += 1;
        }
    }
    // Only calls racing the detection may fail; the rest go elsewhere.
    assert!(failures <= 3, "{failures} failed calls");
    let tail_failures = {
        let mut n = 0;
        for _ in 0..300 {
            if call(&channel).await.is_err() {
                n += 1;
            }
        }
        n
    };
    assert_eq!(tail_failures, 0, "calls after detection must not fail");
}

/// An ejected endpoint comes back: the connection its probe made is the
/// one calls use (one connection per recovery, not the probe's and then
/// another).
#[tokio::test]
async fn a_recovered_endpoint_takes_calls_on_the_connection_its_probe_made() {
    let port = support::closed_address();
    let (cluster, channel) = balancer("recovering");
    cluster.assign(vec![(port, 1)]);
    support::until("the endpoint nobody listens on is ejected", || {
        channel.assigned_endpoints() == 1 && !channel.is_usable()
    })
    .await;
    let backend = Backend::start_at(port).await;
    support::until("the endpoint recovered", || channel.is_usable()).await;
    for _ in 0..3 {
        call(&channel).await.expect("the recovered endpoint serves");
    }
    assert_eq!(backend.served(), 3);
    assert_eq!(
        backend.accepted(),
        1,
        "the probe's connection serves the calls"
    );
}

#[tokio::test]
async fn calls_wait_for_the_first_assignment_then_fail_clearly() {
    let (_cluster, channel) = balancer("never-assigned");
    let status = call(&channel).await.expect_err("no assignment");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("never-assigned"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("no assignment"),
        "{}",
        status.message()
    );

    // An assignment arriving while a call waits lets it through.
    let backend = Backend::start().await;
    let (cluster, channel) = balancer("late");
    let waiting = tokio::spawn(async move { call(&channel).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cluster.assign(vec![(backend.address, 1)]);
    waiting
        .await
        .unwrap()
        .expect("call went through once assigned");
}

#[tokio::test]
async fn no_usable_endpoint_fails_fast_naming_the_cluster() {
    let mut backend = Backend::start().await;
    let (cluster, channel) = balancer("lonely");
    cluster.assign(vec![(backend.address, 1)]);
    call(&channel).await.expect("call");
    backend.kill();
    // The first call after the kill discovers it; then calls fail fast.
    let _ = call(&channel).await;
    tokio::time::timeout(Duration::from_secs(2), async {
        while channel.is_usable() {
            let _ = call(&channel).await;
        }
    })
    .await
    .expect("ejected");
    let started = std::time::Instant::now();
    let status = call(&channel).await.expect_err("nothing usable");
    assert!(started.elapsed() < Duration::from_millis(100), "fails fast");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("lonely"), "{}", status.message());
}

/// Runs `calls` calls from `concurrency` tasks; returns the failures.
async fn load(
    channel: &lookaside_client::LbChannel,
    concurrency: usize,
    calls: usize,
) -> Vec<tonic::Status> {
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for _ in 0..calls / concurrency {
                if let Err(status) = call(&channel).await {
                    failures.push(status);
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gracefully_stopped_endpoint_costs_no_call() {
    let mut backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let (cluster, channel) = balancer("greeter");
    cluster.assign(backends.iter().map(|b| (b.address, 1)).collect());
    let running = {
        let channel = channel.clone();
        tokio::spawn(async move { load(&channel, 8, 4000).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    backends[0].drain();
    let failures = running.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        failures.first()
    );
    let after = backends[0].served();
    let more = load(&channel, 4, 400).await;
    assert!(more.is_empty());
    assert_eq!(
        backends[0].served(),
        after,
        "the stopped endpoint gets no more calls"
    );
}
