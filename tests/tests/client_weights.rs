//! `lookaside-client` (through `lb-load`) against the real `lookaside`
//! binary and three test backends: 3000 calls split by the weights 1/2/7,
//! and a running client follows an edit of the weights within 2 s.

use std::time::{Duration, Instant};

use lookaside_tests::backend::Backend;
use lookaside_tests::client_load::{ClientLoad, LoadOptions};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;

const CLUSTER: &str = "greeter";
const CALLS: u64 = 3000;
/// The client's picker is deterministic: sequential calls split exactly
/// (300/600/2100); the check allows 3 points.
const TOLERANCE_POINTS: f64 = 3.0;
/// How soon a running client must follow an edit of the file.
const EDIT_DEADLINE: Duration = Duration::from_secs(2);
/// A window of progress (100 ms at 1000 calls/s) split as the new weights
/// within this many points counts as followed.
const WINDOW_TOLERANCE_POINTS: f64 = 5.0;
/// Fewest calls in a window that counts (at 1000 calls/s, about 100 ms).
const MIN_WINDOW_CALLS: u64 = 80;

#[tokio::test(flavor = "multi_thread")]
async fn lookaside_client_splits_by_weight_and_follows_edits() -> anyhow::Result<()> {
    let started = Instant::now();
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

    // 3000 sequential calls split by the weights.
    let report = ClientLoad::run(cp.xds_addr(), &LoadOptions::calls(CLUSTER, CALLS)).await?;
    let split = report.split();
    let exact = split.counts().values().copied().collect::<Vec<_>>() == vec![300, 600, 2100];
    println!(
        "split of {CALLS} sequential calls for weights 1/2/7: {split} (exact 300/600/2100: {exact}), \
         {} failed, in {} ms",
        report.failed, report.elapsed_ms
    );
    assert_eq!(report.failed, 0, "failed calls: {:?}", report.messages);
    assert_eq!(report.ok, CALLS);
    split.check(&shares([1, 2, 7]), TOLERANCE_POINTS)?;

    // A running client follows an edit of the weights within 2 s.
    let options = LoadOptions::timed(CLUSTER, Duration::from_secs(8), 1000).concurrency(2);
    let mut load = ClientLoad::start(cp.xds_addr(), &options).await?;
    load.wait_for(
        "the load to run on weights 1/2/7",
        Duration::from_secs(5),
        |progress| progress.ok >= 300,
    )
    .await?;
    cp.write_config(&config([7, 2, 1])).await?;
    let edited_ms = load.now_ms();
    let window = load
        .wait_for_split(
            edited_ms,
            &shares([7, 2, 1]),
            WINDOW_TOLERANCE_POINTS,
            MIN_WINDOW_CALLS,
            EDIT_DEADLINE + Duration::from_secs(1),
        )
        .await?;
    let follow_ms = window.to_ms - edited_ms;
    println!(
        "edit to 7/2/1 followed within {follow_ms} ms (first matching window {}..{} ms after the \
         edit: {})",
        window.from_ms - edited_ms,
        window.to_ms - edited_ms,
        window.split
    );
    assert!(
        Duration::from_millis(follow_ms) <= EDIT_DEADLINE,
        "the client followed the edit after {follow_ms} ms, over {EDIT_DEADLINE:?}"
    );
    load.stop().await?;
    let report = load.finish().await?;
    println!(
        "timed load: {} ok, {} failed, split {}",
        report.ok,
        report.failed,
        report.split()
    );
    assert_eq!(report.failed, 0, "failed calls: {:?}", report.messages);
    println!("done in {:?}", started.elapsed());
    Ok(())
}
