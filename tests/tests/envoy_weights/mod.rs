//! The Envoy scenario both ADS variants run. Envoy gets CDS/EDS from
//! Lookaside and:
//!
//! - (a) shows the configured weights 1/2/7 in `/clusters`, ACKed;
//! - (c) splits 3000 real gRPC calls 10/20/70 (±3 points);
//! - (b) has the weights of an edited file (7/2/1) within 2 s, and traffic
//!   follows;
//! - sends nothing to an endpoint marked `draining`;
//! - adds and removes a whole cluster as the file does;
//! - reports the calls it sends each endpoint back over LRS, which the
//!   admin API shows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lookaside_tests::backend::Backend;
use lookaside_tests::config::{Config, Endpoint};
use lookaside_tests::control_plane::{CLUSTER_TYPE, ControlPlane, ENDPOINT_TYPE};
use lookaside_tests::envoy::{Envoy, XdsProtocol};
use lookaside_tests::load::call_who;
use lookaside_tests::peers::Peers;
use lookaside_tests::poll::{self, Check};

const CLUSTER: &str = "greeter";
const EXTRA_CLUSTER: &str = "extra";
const CALLS: usize = 3000;
const CONCURRENCY: usize = 16;
/// Envoy's weighted round robin is deterministic: the split is near exact.
const TOLERANCE_POINTS: f64 = 3.0;
/// How soon an edit of the config file must reach Envoy.
const EDIT_DEADLINE: Duration = Duration::from_secs(2);
/// How long Envoy's first LRS reports may take (it reports every 2 s).
const LRS_DEADLINE: Duration = Duration::from_secs(15);
/// How long the control plane may take to see Envoy's ACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the scenario with Envoy speaking `protocol`.
pub(crate) async fn run(protocol: XdsProtocol) -> anyhow::Result<()> {
    let started = Instant::now();
    let name = protocol.admin_name();
    let peers = Peers::locate()?;
    let backends = Backend::start_all(&["b1", "b2", "b3"]).await?;
    let cp = ControlPlane::start(&config(&backends, [1, 2, 7])).await?;
    let envoy = Envoy::start(&peers, cp.xds_addr(), protocol, CLUSTER).await?;
    println!("[{name}] Envoy LIVE after {:?}", started.elapsed());
    let acked = async || {
        cp.wait_for_acks(
            envoy.node_id(),
            name,
            &[CLUSTER_TYPE, ENDPOINT_TYPE],
            ACK_TIMEOUT,
        )
        .await
    };

    // (a) Envoy shows the file's weights, and the control plane saw the ACKs.
    envoy
        .wait_for_weights(CLUSTER, &expected(&backends, [1, 2, 7]), EDIT_DEADLINE)
        .await?;
    let client = acked().await?;
    assert!(
        client.user_agent.to_lowercase().contains("envoy"),
        "user agent {:?} does not name Envoy",
        client.user_agent
    );

    // (c) Traffic through Envoy splits by the weights.
    let split = call_who(envoy.listener_addr(), CALLS, CONCURRENCY).await?;
    println!("[{name}] split for weights 1/2/7: {split}");
    split.check(&shares(&backends, [1, 2, 7]), TOLERANCE_POINTS)?;

    // LRS: with traffic flowing, every endpoint shows what Envoy saw of it.
    poll::until(
        "Envoy's LRS reports in the admin API",
        LRS_DEADLINE,
        async || {
            call_who(envoy.listener_addr(), 100, CONCURRENCY).await?;
            cp.lrs_reported(CLUSTER, 1).await
        },
    )
    .await?;

    // (b) An edit of the file reaches Envoy within 2 s, and traffic follows.
    cp.write_config(&config(&backends, [7, 2, 1])).await?;
    let edited = Instant::now();
    envoy
        .wait_for_weights(CLUSTER, &expected(&backends, [7, 2, 1]), EDIT_DEADLINE)
        .await?;
    println!(
        "[{name}] Envoy had weights 7/2/1 {:?} after the edit",
        edited.elapsed()
    );
    let split = call_who(envoy.listener_addr(), CALLS, CONCURRENCY).await?;
    println!("[{name}] split for weights 7/2/1: {split}");
    split.check(&shares(&backends, [7, 2, 1]), TOLERANCE_POINTS)?;
    acked().await?;

    // A draining endpoint stays known to Envoy but gets no new calls.
    let draining = Config::new().cluster(
        CLUSTER,
        [
            Endpoint::new(backends[0].address(), 7).with_health("draining"),
            Endpoint::new(backends[1].address(), 2),
            Endpoint::new(backends[2].address(), 1),
        ],
    );
    cp.write_config(&draining).await?;
    let flag = format!("{CLUSTER}::{}::health_flags::", backends[0].address());
    poll::until(
        "Envoy to flag the draining endpoint",
        EDIT_DEADLINE,
        async || {
            let page = envoy.clusters_page().await?;
            let line = page.lines().find(|line| line.starts_with(&flag));
            Ok(match line {
                Some(line) if line.contains("draining") => Check::Done(()),
                other => Check::NotYet(format!("{other:?}")),
            })
        },
    )
    .await?;
    let split = call_who(envoy.listener_addr(), CALLS / 3, CONCURRENCY).await?;
    println!("[{name}] split with b1 draining: {split}");
    split.check(
        &[(backends[1].name(), 2), (backends[2].name(), 1)],
        TOLERANCE_POINTS,
    )?;

    // A cluster added to the file appears in Envoy; removed, it disappears.
    let with_extra = draining
        .clone()
        .weighted(EXTRA_CLUSTER, [(backends[2].address(), 5)]);
    cp.write_config(&with_extra).await?;
    let extra = BTreeMap::from([(backends[2].address().to_string(), 5)]);
    envoy
        .wait_for_weights(EXTRA_CLUSTER, &extra, EDIT_DEADLINE)
        .await?;
    cp.write_config(&draining).await?;
    envoy
        .wait_for_weights(EXTRA_CLUSTER, &BTreeMap::new(), EDIT_DEADLINE)
        .await?;
    acked().await?;

    println!("[{name}] done in {:?}", started.elapsed());
    Ok(())
}

fn config(backends: &[Backend], weights: [u32; 3]) -> Config {
    Config::new().weighted(
        CLUSTER,
        backends.iter().zip(weights).map(|(b, w)| (b.address(), w)),
    )
}

/// What Envoy's `/clusters` should show: weight by `host:port`.
fn expected(backends: &[Backend], weights: [u32; 3]) -> BTreeMap<String, u32> {
    backends
        .iter()
        .zip(weights)
        .map(|(b, w)| (b.address().to_string(), w))
        .collect()
}

/// Weight by backend name, for [`lookaside_tests::split::Split::check`].
fn shares(backends: &[Backend], weights: [u32; 3]) -> Vec<(&str, u32)> {
    backends.iter().map(Backend::name).zip(weights).collect()
}
