//! lookaside-client reports what its calls to each endpoint did over LRS,
//! as the protocol says: the node first, reports only once the server
//! answered, at the interval it asked for, covering only what followed;
//! a control plane that takes no reports (UNIMPLEMENTED) is not asked
//! again, one that fails is.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lookaside_client::Client;
use lookaside_proto::envoy::service::load_stats::v3::load_reporting_service_server::{
    LoadReportingService, LoadReportingServiceServer,
};
use lookaside_proto::envoy::service::load_stats::v3::{LoadStatsRequest, LoadStatsResponse};
use support::{Backend, call};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

const INTERVAL: Duration = Duration::from_millis(100);

/// An LRS server that hands the test every message, answers the first
/// when the test says so, or refuses every stream with `refuse`.
#[derive(Clone)]
struct FakeLrs {
    received: mpsc::UnboundedSender<LoadStatsRequest>,
    answer: Arc<tokio::sync::Mutex<Option<oneshot::Receiver<LoadStatsResponse>>>>,
    refuse: Option<Code>,
    /// Never answers: the handler does not return.
    silent: bool,
    streams: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl LoadReportingService for FakeLrs {
    type StreamLoadStatsStream = ReceiverStream<Result<LoadStatsResponse, Status>>;

    async fn stream_load_stats(
        &self,
        request: Request<Streaming<LoadStatsRequest>>,
    ) -> Result<Response<Self::StreamLoadStatsStream>, Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        if let Some(code) = self.refuse {
            return Err(Status::new(code, "refused by the test"));
        }
        if self.silent {
            std::future::pending::<()>().await;
        }
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let fake = self.clone();
        tokio::spawn(async move {
            let mut answered = false;
            while let Ok(Some(message)) = inbound.message().await {
                let _ = fake.received.send(message);
                if !answered {
                    answered = true;
                    let answer = fake.answer.lock().await.take();
                    if let Some(answer) = answer
                        && let Ok(response) = answer.await
                    {
                        let _ = tx.send(Ok(response)).await;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Fake {
    address: SocketAddr,
    received: mpsc::UnboundedReceiver<LoadStatsRequest>,
    answer: Option<oneshot::Sender<LoadStatsResponse>>,
    streams: Arc<AtomicU64>,
}

async fn fake_lrs(refuse: Option<Code>) -> Fake {
    fake_lrs_with(refuse, false).await
}

async fn fake_lrs_with(refuse: Option<Code>, silent: bool) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (received_tx, received) = mpsc::unbounded_channel();
    let (answer, answer_rx) = oneshot::channel();
    let streams = Arc::new(AtomicU64::new(0));
    let service = FakeLrs {
        received: received_tx,
        answer: Arc::new(tokio::sync::Mutex::new(Some(answer_rx))),
        refuse,
        silent,
        streams: streams.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LoadReportingServiceServer::new(service))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Fake {
        address,
        received,
        answer: Some(answer),
        streams,
    }
}

fn client(control_plane: SocketAddr, backend: SocketAddr) -> Client {
    builder(control_plane, backend).build().unwrap()
}

fn builder(control_plane: SocketAddr, backend: SocketAddr) -> lookaside_client::ClientBuilder {
    Client::builder(format!("http://{control_plane}"))
        .node_id("load-reporter")
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(20))
        .fallback("greeter", vec![(backend, 1)])
}

async fn next(received: &mut mpsc::UnboundedReceiver<LoadStatsRequest>) -> LoadStatsRequest {
    tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .expect("a message within 5 s")
        .expect("the fake lives")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_each_endpoints_calls_once_the_server_asks_at_its_interval() {
    let backend = Backend::start().await;
    // Fails every call at its very end: INTERNAL after a message.
    let late = support::StatusPeer::start("13").await;
    let mut fake = fake_lrs(None).await;
    let lb = builder(fake.address, backend.address)
        .fallback("late", vec![(late.address, 1)])
        .build()
        .unwrap();
    let channel = lb.channel("greeter");
    let late_channel = lb.channel("late");

    let first = next(&mut fake.received).await;
    let node = first.node.expect("the node comes first");
    assert_eq!(node.id, "load-reporter");
    assert!(
        node.client_features
            .iter()
            .any(|feature| feature == "envoy.lrs.supports_send_all_clusters")
    );
    assert!(first.cluster_stats.is_empty(), "nothing asked for yet");

    // Calls before the server's answer: not reported (nobody asked).
    call(&channel).await.unwrap();
    call(&channel).await.unwrap();
    fake.answer
        .take()
        .unwrap()
        .send(LoadStatsResponse {
            send_all_clusters: true,
            load_reporting_interval: Some(lookaside_proto::google::protobuf::Duration {
                seconds: 0,
                nanos: i32::try_from(INTERVAL.as_nanos()).unwrap(),
            }),
            report_endpoint_granularity: true,
            ..Default::default()
        })
        .unwrap();
    // Let the answer arrive before the calls to count.
    let quiet = next(&mut fake.received).await;
    assert!(quiet.node.is_none(), "the node is sent once");
    assert!(
        quiet.cluster_stats.is_empty(),
        "the calls before the answer are not reported: {:?}",
        quiet.cluster_stats
    );

    for _ in 0..3 {
        call(&channel).await.unwrap();
    }
    for _ in 0..2 {
        assert_eq!(
            support::call_service(&channel, "unknown")
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
    }
    for _ in 0..2 {
        assert_eq!(
            call(&late_channel).await.unwrap_err().code(),
            Code::Internal
        );
    }

    // Reports come every interval; add them up, per cluster, until all
    // seven calls are in.
    let mut totals: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let ended = |totals: &BTreeMap<String, (u64, u64, u64)>| {
        totals.values().map(|(_, s, f)| s + f).sum::<u64>()
    };
    let mut reports = 0;
    while ended(&totals) < 7 {
        let report = next(&mut fake.received).await;
        reports += 1;
        assert!(
            reports < 50,
            "seven calls never reported in full: {totals:?}"
        );
        for cluster in &report.cluster_stats {
            let (issued, succeeded, failed) =
                totals.entry(cluster.cluster_name.clone()).or_default();
            let interval = cluster.load_report_interval.as_ref().unwrap();
            let interval = Duration::new(
                u64::try_from(interval.seconds).unwrap(),
                u32::try_from(interval.nanos).unwrap(),
            );
            assert!(
                interval >= INTERVAL / 2 && interval < INTERVAL * 20,
                "each report covers about the interval: {interval:?}"
            );
            for locality in &cluster.upstream_locality_stats {
                for endpoint in &locality.upstream_endpoint_stats {
                    *issued += endpoint.total_issued_requests;
                    *succeeded += endpoint.total_successful_requests;
                    *failed += endpoint.total_error_requests;
                }
            }
        }
    }
    assert_eq!(
        totals.get("greeter"),
        Some(&(5, 3, 2)),
        "the calls after the answer, by outcome (not the two before)"
    );
    assert_eq!(
        totals.get("late"),
        Some(&(2, 0, 2)),
        "an error status in the trailers, after a message, is a failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_without_lrs_is_not_asked_again_one_that_fails_is() {
    let backend = Backend::start().await;
    let failing = fake_lrs(Some(Code::Unavailable)).await;
    let without = fake_lrs(Some(Code::Unimplemented)).await;
    let _failing_client = client(failing.address, backend.address);
    let _without_client = client(without.address, backend.address);
    support::until("both control planes asked", || {
        without.streams.load(Ordering::SeqCst) >= 1 && failing.streams.load(Ordering::SeqCst) >= 1
    })
    .await;
    let asked = failing.streams.load(Ordering::SeqCst);
    support::until("the failing control plane asked five times more", || {
        failing.streams.load(Ordering::SeqCst) >= asked + 5
    })
    .await;
    assert_eq!(
        without.streams.load(Ordering::SeqCst),
        1,
        "asked once, in the time the other was asked five times more"
    );
}

/// A control plane that takes the stream and never answers (its handler
/// never returns; its connection still answers PINGs) is given up on after
/// the first-answer timeout (30 s) and asked again.
#[tokio::test(start_paused = true)]
async fn a_control_plane_that_never_answers_is_asked_again() {
    let backend = Backend::start().await;
    let silent = fake_lrs_with(None, true).await;
    let _client = client(silent.address, backend.address);
    let started = tokio::time::Instant::now();
    support::until_within("asked again", Duration::from_secs(120), || {
        silent.streams.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(29),
        "not before the first-answer timeout"
    );
}
