//! gRPC Python (grpcio 1.85, C-core), a proxyless xDS client, against the
//! real `lookaside` binary: `xds:///greeter` resolves through LDS, RDS, CDS
//! and EDS, calls split by the weights (gRPC ignores endpoint weights but
//! honours locality weights, and Lookaside sends one locality per endpoint),
//! a running channel follows a weight edit, and stops calling an endpoint
//! marked draining. It reports the load it sent each endpoint over LRS
//! (the Cluster names the control plane itself as its LRS server).

use std::time::{Duration, Instant};

use lookaside_tests::backend::Backend;
use lookaside_tests::config::{Config, Endpoint};
use lookaside_tests::control_plane::{
    CLUSTER_TYPE, ControlPlane, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE,
};
use lookaside_tests::peers::Peers;
use lookaside_tests::poll::{self, Check};
use lookaside_tests::python::PythonXdsClient;

const CLUSTER: &str = "greeter";
const NODE_ID: &str = "python-test";
/// gRPC picks a locality at random by weight: 3000 calls land within a point
/// or two of the weights; 5 points is far outside chance.
const TOLERANCE_POINTS: f64 = 5.0;
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn grpc_python_splits_by_locality_weight_and_follows_edits() -> anyhow::Result<()> {
    let started = Instant::now();
    let peers = Peers::locate()?;
    let backends = Backend::start_all(&["b1", "b2", "b3"]).await?;
    let config = |weights: [u32; 3]| {
        Config::new().weighted(
            CLUSTER,
            backends.iter().zip(weights).map(|(b, w)| (b.address(), w)),
        )
    };
    let shares = |weights: [u32; 3]| -> Vec<(&str, u32)> {
        backends.iter().map(Backend::name).zip(weights).collect()
    };
    let cp = ControlPlane::start(&config([1, 2, 7])).await?;
    let mut client = PythonXdsClient::start(&peers, cp.xds_addr(), CLUSTER, NODE_ID).await?;

    let split = client.call(3000, BATCH_TIMEOUT).await?;
    println!(
        "split for weights 1/2/7: {split} ({:?} since start)",
        started.elapsed()
    );
    split.check(&shares([1, 2, 7]), TOLERANCE_POINTS)?;

    let seen = cp
        .wait_for_acks(
            NODE_ID,
            "sotw",
            &[LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE],
            Duration::from_secs(5),
        )
        .await?;
    assert!(
        seen.user_agent.contains("gRPC"),
        "user agent {:?} does not name gRPC",
        seen.user_agent
    );

    // LRS: with calls flowing, every endpoint shows what the client sent it.
    poll::until(
        "the Python client's LRS reports in the admin API",
        Duration::from_secs(30),
        async || {
            client.call(300, BATCH_TIMEOUT).await?;
            cp.lrs_reported(CLUSTER, 1).await
        },
    )
    .await?;

    // Edit the weights: the running channel follows.
    cp.write_config(&config([7, 2, 1])).await?;
    let edited = Instant::now();
    let followed = poll::until(
        "the Python client's split to follow 7/2/1",
        Duration::from_secs(10),
        async || {
            let split = client.call(1000, BATCH_TIMEOUT).await?;
            Ok(match split.check(&shares([7, 2, 1]), TOLERANCE_POINTS) {
                Ok(()) => Check::Done(split),
                Err(error) => Check::NotYet(format!("{error:#}")),
            })
        },
    )
    .await?;
    println!("followed 7/2/1 after {:?}: {followed}", edited.elapsed());
    let split = client.call(3000, BATCH_TIMEOUT).await?;
    println!("split for weights 7/2/1: {split}");
    split.check(&shares([7, 2, 1]), TOLERANCE_POINTS)?;

    // A draining endpoint gets no new calls; the others keep their weights.
    let draining = Config::new().cluster(
        CLUSTER,
        [
            Endpoint::new(backends[0].address(), 7).with_health("draining"),
            Endpoint::new(backends[1].address(), 2),
            Endpoint::new(backends[2].address(), 1),
        ],
    );
    cp.write_config(&draining).await?;
    let remaining = [(backends[1].name(), 2), (backends[2].name(), 1)];
    let followed = poll::until(
        "the Python client to stop calling the draining endpoint",
        Duration::from_secs(10),
        async || {
            let split = client.call(1000, BATCH_TIMEOUT).await?;
            Ok(match split.check(&remaining, TOLERANCE_POINTS) {
                Ok(()) => Check::Done(split),
                Err(error) => Check::NotYet(format!("{error:#}")),
            })
        },
    )
    .await?;
    println!("split with b1 draining: {followed}");
    println!("done in {:?}", started.elapsed());
    Ok(())
}
