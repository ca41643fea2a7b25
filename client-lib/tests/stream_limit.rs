//! A server's limit on concurrent streams (`SETTINGS_MAX_CONCURRENT_
//! STREAMS`): calls past it wait in the client, a finished stream the
//! application keeps does not hold a slot, and calls waiting on a server
//! that sends GOAWAY go elsewhere at once rather than after its calls in
//! flight. (A server killed with calls waiting: tests/tests/
//! client_stream_limit.rs.) The limited peer is a raw h2 server.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::ConnectionSettings;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// How the limited peer treats the requests it gets.
#[derive(Clone, Copy)]
enum Answer {
    /// One SERVING message and status OK, at once.
    AtOnce,
    /// Nothing for a minute (the test is over long before).
    Never,
}

/// A raw h2 server on one connection, allowing one stream at a time. It
/// tells `arrived` of each request; `drain` makes it send GOAWAY (calls in
/// flight go on). It accepts one connection only.
async fn limited_peer(
    answer: Answer,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
    let (drain, mut drained) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        // No second connection: a client that comes back is refused.
        drop(listener);
        let mut connection = h2::server::Builder::new()
            .max_concurrent_streams(1)
            .handshake::<_, Bytes>(socket)
            .await
            .unwrap();
        let mut draining = false;
        loop {
            tokio::select! {
                request = connection.accept() => {
                    let Some(Ok((_request, respond))) = request else { return };
                    let _ = arrived.send(());
                    tokio::spawn(respond_to(respond, answer));
                }
                _ = &mut drained, if !draining => {
                    draining = true;
                    connection.graceful_shutdown();
                }
            }
        }
    });
    (address, arrivals, drain)
}

async fn respond_to(respond: h2::server::SendResponse<Bytes>, answer: Answer) {
    if let Answer::Never = answer {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    support::answer(respond, "0");
}

/// Starts `n` calls through `channel`; returns them once the limited peer
/// has received one.
async fn calls_held_by(
    channel: &lookaside_client::LbChannel,
    n: usize,
    arrivals: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
) -> Vec<tokio::task::JoinHandle<Result<(), tonic::Status>>> {
    let calls = (0..n)
        .map(|_| {
            let channel = channel.clone();
            tokio::spawn(async move { support::call(&channel).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(5), arrivals.recv())
        .await
        .expect("a call reaches the limited server");
    calls
}

/// A server stream that has ended, kept by the application, leaves the
/// server's only stream free for the next call (HTTP/2 closed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_stream_the_application_keeps_leaves_its_slot_free() {
    let (address, _arrivals, _drain) = limited_peer(Answer::AtOnce).await;
    let (_cluster, channel) = support::cluster("kept", &[address]);
    let mut health = HealthClient::new(channel);
    let mut kept = health
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch opens")
        .into_inner();
    assert!(kept.message().await.expect("a message").is_some());
    assert!(
        kept.message().await.expect("status OK").is_none(),
        "the stream ended"
    );
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        health.check(HealthCheckRequest::default()),
    )
    .await
    .expect("the next call does not wait for the kept stream");
    assert!(next.is_ok(), "{next:?}");
    drop(kept);
}

/// Calls waiting for a server's streams when it sends GOAWAY (draining)
/// go to another endpoint at once, not after the server's calls in flight
/// (here: a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_on_a_draining_server_go_elsewhere_at_once() {
    let (limited, mut arrivals, drain) = limited_peer(Answer::Never).await;
    let spare = support::Backend::start().await;
    let (cluster, channel) = ClusterBalancer::spawn(
        "draining",
        ConnectionSettings::default(),
        Duration::from_secs(2),
    );
    // Equal weights: the picks alternate, two calls each.
    cluster.assign(vec![(limited, 1), (spare.address, 1)]);
    // The limited server holds one call; the other call picked for it
    // waits in the client for its only stream: every pick is made once the
    // spare has answered its two (on a loaded machine the GOAWAY could
    // otherwise come before the fourth call is picked, and the test would
    // not see a call waiting).
    let calls = calls_held_by(&channel, 4, &mut arrivals).await;
    support::until("the spare answered its two calls", || spare.served() == 2).await;
    drain.send(()).unwrap();

    let mut calls: futures::stream::FuturesUnordered<_> = calls.into_iter().collect();
    tokio::time::timeout(Duration::from_secs(3), async {
        for _ in 0..3 {
            let result = futures::StreamExt::next(&mut calls).await.unwrap();
            result.unwrap().expect("answered by the spare");
        }
    })
    .await
    .expect("all but the call the draining server holds are answered within 3 s");
    assert_eq!(calls.len(), 1, "the held call is still on");
    assert_eq!(spare.served(), 3);
    assert!(
        arrivals.try_recv().is_err(),
        "the draining server got one call only"
    );
}

/// Calls waiting for a server's streams show in
/// `lookaside_client_calls_waiting_for_stream`, and leave it when they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_for_a_stream_are_counted() {
    let snapshotter = support::process_recorder();
    // A debugging snapshot hands out a gauge's change since the last one
    // (it swaps the value for 0): the test keeps the running total.
    let mut total = 0.0;
    let mut waiting = move || {
        total += snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(key, _, _, value)| match value {
                // This cluster's: the binary's other tests have calls
                // waiting too, and the recorder is the process's.
                metrics_util::debugging::DebugValue::Gauge(gauge)
                    if key.key().name() == "lookaside_client_calls_waiting_for_stream"
                        && key.key().labels().any(|l| l.value() == "counted") =>
                {
                    Some(gauge.into_inner())
                }
                _ => None,
            })
            .unwrap_or(0.0);
        total
    };
    let (address, mut arrivals, _drain) = limited_peer(Answer::Never).await;
    let (_cluster, channel) = support::cluster("counted", &[address]);
    let calls = calls_held_by(&channel, 3, &mut arrivals).await;
    support::until("two calls waiting", || waiting() == 2.0).await;
    assert_eq!(waiting(), 2.0, "no more than two");
    for call in calls {
        call.abort();
    }
    support::until("no call waiting", || waiting() == 0.0).await;
}
