//! A server that limits its concurrent streams (`SETTINGS_MAX_CONCURRENT_
//! STREAMS`) is killed (SIGKILL) while `lookaside-client` has more calls
//! for it than the limit. The calls past the limit were never sent: they
//! go to the other endpoint and succeed; only the calls the server was
//! processing fail (whether it processed them, nobody can tell).

use std::time::Duration;

use lookaside_tests::backend::{ARRIVALS, Backend};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;
use lookaside_tests::echo::v1::WhoRequest;
use lookaside_tests::echo::v1::echo_client::EchoClient;
use lookaside_tests::poll::Check;

const CLUSTER: &str = "greeter";
/// The limited server's stream limit.
const LIMIT: usize = 4;
/// Concurrent calls over the two endpoints (weights 1/1: about half each,
/// so about 8 wait for the limited server's streams).
const CALLS: usize = 24;

#[tokio::test(flavor = "multi_thread")]
async fn calls_waiting_for_a_killed_servers_streams_go_elsewhere() -> anyhow::Result<()> {
    // Holds its calls long past the kill; the spare answers at once.
    let limits = [
        "--max-concurrent-streams".to_owned(),
        LIMIT.to_string(),
        "--report-arrivals".to_owned(),
    ];
    let (mut limited, spare) = tokio::try_join!(
        Backend::start_with_args("limited", Duration::from_secs(30), &limits),
        Backend::start("spare"),
    )?;
    let cp = ControlPlane::start(
        &Config::new().weighted(CLUSTER, [(limited.address(), 1), (spare.address(), 1)]),
    )
    .await?;
    let lb = lookaside_client::Client::connect(format!("http://{}", cp.xds_addr())).await?;
    let channel = lb.channel(CLUSTER);

    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let mut client = EchoClient::new(channel.clone());
            tokio::spawn(async move {
                client
                    .who(WhoRequest::default())
                    .await
                    .map(|reply| reply.into_inner().backend)
            })
        })
        .collect();

    // The limited server has its fill (it reports each burst once no call
    // arrived for 250 ms); the calls past it wait in the client.
    let arrived = |backend: &Backend| -> usize {
        backend
            .output()
            .lines()
            .iter()
            .filter_map(|line| {
                line.strip_prefix(ARRIVALS)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum()
    };
    lookaside_tests::poll::until(
        &format!("{LIMIT} calls at the limited server"),
        Duration::from_secs(10),
        async || {
            let seen = arrived(&limited);
            Ok(if seen >= LIMIT {
                Check::Done(())
            } else {
                Check::NotYet(format!("{seen} arrived"))
            })
        },
    )
    .await?;
    limited.kill().await?;

    let mut answered_by_spare = 0;
    let mut failed = Vec::new();
    for call in calls {
        match tokio::time::timeout(Duration::from_secs(10), call).await?? {
            Ok(name) => {
                assert_eq!(name, spare.name(), "only the spare is left to answer");
                answered_by_spare += 1;
            }
            Err(status) => failed.push(status),
        }
    }
    println!(
        "{answered_by_spare} calls answered by the spare, {} failed: {:?}",
        failed.len(),
        failed
            .iter()
            .map(tonic::Status::message)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        failed.len(),
        LIMIT,
        "only the calls the killed server had failed: {failed:?}"
    );
    assert!(
        failed
            .iter()
            .all(|status| status.code() == tonic::Code::Unavailable),
        "{failed:?}"
    );
    Ok(())
}
