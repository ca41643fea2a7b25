//! Scale-up: the config file goes from 3 to 6 endpoints while
//! `lookaside-client` sends steady load; the 3 new endpoints get their share
//! (equal weights: a sixth each) within 2 s, and no call fails.

use std::time::{Duration, Instant};

use lookaside_tests::backend::Backend;
use lookaside_tests::client_load::{ClientLoad, LoadOptions};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;

const CLUSTER: &str = "greeter";
/// How soon the new endpoints must get their share.
const SCALE_UP_DEADLINE: Duration = Duration::from_secs(2);
/// A window within this many points of a sixth each counts.
const WINDOW_TOLERANCE_POINTS: f64 = 5.0;
/// Fewest calls in a window that counts (at 1000 calls/s, about 200 ms:
/// 25 per endpoint, so that calls in flight at its edges move a share by
/// little).
const MIN_WINDOW_CALLS: u64 = 150;

#[tokio::test(flavor = "multi_thread")]
async fn new_endpoints_get_their_share_within_two_seconds() -> anyhow::Result<()> {
    let started = Instant::now();
    let backends = Backend::start_all(&["b1", "b2", "b3", "b4", "b5", "b6"]).await?;
    let config = |count: usize| {
        Config::new().weighted(CLUSTER, backends[..count].iter().map(|b| (b.address(), 1)))
    };
    let cp = ControlPlane::start(&config(3)).await?;
    let options = LoadOptions::timed(CLUSTER, Duration::from_secs(8), 1000).concurrency(4);
    let mut load = ClientLoad::start(cp.xds_addr(), &options).await?;
    let before = load
        .wait_for("steady load on 3 endpoints", Duration::from_secs(5), |p| {
            p.ok >= 300
        })
        .await?;
    println!("before: {}", before.split());

    cp.write_config(&config(6)).await?;
    let edited_ms = load.now_ms();
    let all: Vec<(&str, u32)> = backends.iter().map(|b| (b.name(), 1)).collect();
    let window = load
        .wait_for_split(
            edited_ms,
            &all,
            WINDOW_TOLERANCE_POINTS,
            MIN_WINDOW_CALLS,
            SCALE_UP_DEADLINE + Duration::from_secs(1),
        )
        .await?;
    let follow_ms = window.to_ms - edited_ms;
    println!(
        "3 -> 6 endpoints: new ones at their share within {follow_ms} ms of the edit (window \
         {}..{} ms after it: {})",
        window.from_ms - edited_ms,
        window.to_ms - edited_ms,
        window.split
    );
    let new_names: Vec<&str> = backends[3..].iter().map(Backend::name).collect();
    if let Some(first) = load.progress().iter().find(|line| {
        new_names
            .iter()
            .all(|name| line.backends.get(*name).is_some_and(|count| *count > 0))
    }) {
        println!(
            "all 3 new endpoints had answered by the progress line {} ms after the edit",
            first.elapsed_ms.saturating_sub(edited_ms)
        );
    }
    assert!(
        Duration::from_millis(follow_ms) <= SCALE_UP_DEADLINE,
        "the new endpoints got their share {follow_ms} ms after the edit, over \
         {SCALE_UP_DEADLINE:?}"
    );

    load.stop().await?;
    let report = load.finish().await?;
    println!(
        "load: {} ok, {} failed; split {}; done in {:?}",
        report.ok,
        report.failed,
        report.split(),
        started.elapsed()
    );
    assert_eq!(report.failed, 0, "failed calls: {:?}", report.messages);
    Ok(())
}
