//! The control plane is killed (SIGKILL) while `lookaside-client` sends
//! steady load: not one call fails, the last assignment keeps serving. The
//! control plane comes back on the same port with a new assignment (another
//! backend and other weights): the same client follows it.

use std::time::{Duration, Instant};

use lookaside_tests::backend::Backend;
use lookaside_tests::client_load::{ClientLoad, LoadOptions};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::{ControlPlane, ENDPOINT_TYPE};

const CLUSTER: &str = "greeter";
const NODE_ID: &str = "lb-load-cp-killed";
const RATE: u32 = 1000;
/// A window split within this many points of the weights counts.
const WINDOW_TOLERANCE_POINTS: f64 = 5.0;
/// Fewest calls in a window that counts (at 1000 calls/s, about 100 ms).
const MIN_WINDOW_CALLS: u64 = 80;
/// How soon the client must follow the restarted control plane (its
/// reconnect backoff is at most 500 ms).
const FOLLOW_DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_control_plane_fails_no_call_and_its_successor_is_followed() -> anyhow::Result<()>
{
    let started = Instant::now();
    let backends = Backend::start_all(&["b1", "b2", "b3", "b4"]).await?;
    let first = [1, 2, 7];
    let second = [4, 3, 2, 1];
    let config = |weights: &[u32]| {
        Config::new().weighted(
            CLUSTER,
            backends.iter().zip(weights).map(|(b, w)| (b.address(), *w)),
        )
    };
    let shares = |weights: &[u32]| -> Vec<(&str, u32)> {
        backends
            .iter()
            .map(Backend::name)
            .zip(weights.iter().copied())
            .collect()
    };
    let mut cp = ControlPlane::start(&config(&first)).await?;
    let options = LoadOptions::timed(CLUSTER, Duration::from_secs(15), RATE)
        .concurrency(4)
        .node_id(NODE_ID);
    let mut load = ClientLoad::start(cp.xds_addr(), &options).await?;
    load.wait_for("steady load", Duration::from_secs(5), |progress| {
        progress.ok >= 300 && progress.backends.len() == 3
    })
    .await?;
    cp.wait_for_acks(NODE_ID, "sotw", &[ENDPOINT_TYPE], Duration::from_secs(5))
        .await?;

    // Kill it: calls go on, split as before.
    let kill_ms = load.now_ms();
    cp.kill().await?;
    let kill_line = load
        .latest()
        .ok_or_else(|| anyhow::anyhow!("no progress line before the kill"))?;
    let later = load
        .wait_for(
            "1000 more calls without the control plane",
            Duration::from_secs(5),
            |progress| progress.ok >= kill_line.ok + 1000,
        )
        .await?;
    let without = later.since(&kill_line);
    println!(
        "control plane killed at {kill_ms} ms; {} calls on the last assignment, {} failed so far: \
         {without}",
        without.total(),
        later.failed
    );
    without.check(&shares(&first), WINDOW_TOLERANCE_POINTS)?;

    // Restart it on the same port with another assignment: the client
    // reconnects and follows.
    cp.write_config(&config(&second)).await?;
    let restart_ms = load.now_ms();
    cp.restart().await?;
    let listening_ms = load.now_ms();
    let window = load
        .wait_for_split(
            listening_ms,
            &shares(&second),
            WINDOW_TOLERANCE_POINTS,
            MIN_WINDOW_CALLS,
            FOLLOW_DEADLINE,
        )
        .await?;
    println!(
        "restarted at {restart_ms} ms, listening on {} after {} ms; the client followed 4/3/2/1 \
         (b4 added) within {} ms of it listening: {}",
        cp.xds_addr(),
        listening_ms - restart_ms,
        window.to_ms - listening_ms,
        window.split
    );
    if let Some(first) = load
        .progress()
        .iter()
        .find(|line| line.backends.contains_key(backends[3].name()))
    {
        println!(
            "b4 had answered by the progress line {} ms after the restart began",
            first.elapsed_ms.saturating_sub(restart_ms)
        );
    }
    cp.wait_for_acks(NODE_ID, "sotw", &[ENDPOINT_TYPE], Duration::from_secs(5))
        .await?;

    load.stop().await?;
    let report = load.finish().await?;
    println!(
        "load: {} ok, {} failed in {} ms; split {}; done in {:?}",
        report.ok,
        report.failed,
        report.elapsed_ms,
        report.split(),
        started.elapsed()
    );
    assert_eq!(
        report.failed,
        0,
        "calls failed around the control plane's death at {kill_ms} ms or restart at \
         {restart_ms} ms: {:?}; first failures: {:?}",
        report.messages,
        report.failures.iter().take(10).collect::<Vec<_>>()
    );
    Ok(())
}
