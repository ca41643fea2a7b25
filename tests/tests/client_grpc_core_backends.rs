//! `lookaside-client` against gRPC servers that are not tonic: two gRPC
//! Python backends (grpcio, C-core, strict about HTTP/2 and gRPC framing)
//! behind the real `lookaside` binary. The client speaks HTTP/2 itself (on
//! `h2`), so this checks it against a second implementation: unary calls
//! split by weight, a 3 MiB message each way (flow control on C-core's
//! small windows), an error status with its message, the deadline the
//! server sees, server streaming, and a client stream whose messages are
//! still being produced when the call starts.

use std::time::{Duration, Instant};

use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;
use lookaside_tests::echo::v1::WhoReply;
use lookaside_tests::peers::Peers;
use lookaside_tests::python_backend::PythonBackend;
use lookaside_tests::split::Split;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

const CLUSTER: &str = "interop";
/// The client's picker is deterministic: sequential calls split exactly.
const TOLERANCE_POINTS: f64 = 3.0;
const CALLS: usize = 400;

/// Every message of the Interop service is one string in field 1, the wire
/// form of `WhoReply`.
fn text(value: impl Into<String>) -> WhoReply {
    WhoReply {
        backend: value.into(),
    }
}

type Grpc = tonic::client::Grpc<lookaside_client::LbChannel>;
type Codec = tonic_prost::ProstCodec<WhoReply, WhoReply>;

async fn unary(
    grpc: &mut Grpc,
    method: &'static str,
    request: tonic::Request<WhoReply>,
) -> Result<String, tonic::Status> {
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unknown(error.to_string()))?;
    grpc.unary(request, PathAndQuery::from_static(method), Codec::default())
        .await
        .map(|response| response.into_inner().backend)
}

/// A hung call (a flow-control stall, a lost response) fails the test
/// instead of hanging the suite.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn lookaside_client_calls_grpc_core_servers() -> anyhow::Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, checks())
        .await
        .map_err(|_| anyhow::anyhow!("the checks did not finish within {TEST_TIMEOUT:?}"))?
}

async fn checks() -> anyhow::Result<()> {
    let started = Instant::now();
    let peers = Peers::locate()?;
    let (p1, p2) = tokio::try_join!(
        PythonBackend::start(&peers, "p1"),
        PythonBackend::start(&peers, "p2")
    )?;
    let cp = ControlPlane::start(
        &Config::new().weighted(CLUSTER, [(p1.address(), 1), (p2.address(), 3)]),
    )
    .await?;
    let lb = lookaside_client::Client::connect(format!("http://{}", cp.xds_addr())).await?;
    let mut grpc = Grpc::new(lb.channel(CLUSTER))
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);

    // Unary calls split by the weights 1/3.
    let mut split = Split::new();
    for _ in 0..CALLS {
        let name = unary(
            &mut grpc,
            "/lookaside.test.v1.Echo/Who",
            tonic::Request::new(text("")),
        )
        .await?;
        split.record(&name);
    }
    println!(
        "{CALLS} calls to C-core backends, weights 1/3: {split} ({:?} since start)",
        started.elapsed()
    );
    split.check(&[(p1.name(), 1), (p2.name(), 3)], TOLERANCE_POINTS)?;

    // 3 MiB each way: more than every HTTP/2 window on both sides.
    let big: String = "0123456789abcdef".repeat(3 << 16);
    let echoed = unary(
        &mut grpc,
        "/lookaside.test.v1.Interop/Echo",
        tonic::Request::new(text(big.clone())),
    )
    .await?;
    assert!(echoed == big, "a 3 MiB message came back changed");

    // An error status and its message reach the application as sent.
    let Err(failed) = unary(
        &mut grpc,
        "/lookaside.test.v1.Interop/Fail",
        tonic::Request::new(text("")),
    )
    .await
    else {
        anyhow::bail!("the Fail method answered");
    };
    assert_eq!(failed.code(), Code::NotFound, "{failed:?}");
    assert!(
        failed.message().starts_with("nothing here on p"),
        "{failed:?}"
    );

    // The server sees the call's deadline (grpc-timeout as C-core reads it).
    let mut request = tonic::Request::new(text(""));
    request.set_timeout(Duration::from_secs(5));
    let left = unary(&mut grpc, "/lookaside.test.v1.Interop/Deadline", request).await?;
    let left: u64 = left.parse().map_err(|_| anyhow::anyhow!("left: {left}"))?;
    assert!(
        (3000..=5000).contains(&left),
        "the server saw {left} ms left of 5 s"
    );

    // Server streaming: every message, in order, then the end.
    grpc.ready().await.map_err(anyhow::Error::from_boxed)?;
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(text("50")),
            PathAndQuery::from_static("/lookaside.test.v1.Interop/Count"),
            Codec::default(),
        )
        .await?
        .into_inner();
    let mut counted = Vec::new();
    while let Some(message) = stream.message().await? {
        counted.push(message.backend);
    }
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(counted, expected);

    // Client streaming, with messages still being produced: the request
    // body is piped within flow control, not read ahead.
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let producer = tokio::spawn(async move {
        for part in ["a", "b", "c", "d"] {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if sender.send(text(part)).await.is_err() {
                break;
            }
        }
    });
    grpc.ready().await.map_err(anyhow::Error::from_boxed)?;
    let collected = grpc
        .client_streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver)),
            PathAndQuery::from_static("/lookaside.test.v1.Interop/Collect"),
            Codec::default(),
        )
        .await?
        .into_inner()
        .backend;
    producer.await?;
    assert_eq!(collected, "a,b,c,d");

    println!("C-core interop checks passed in {:?}", started.elapsed());
    Ok(())
}
