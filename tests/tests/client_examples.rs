//! The greeter examples of lookaside-client (`client-lib/examples/`), run as
//! their docs say: three `greeter_server` processes behind the real
//! `lookaside serve`, and `greeter_client` prints how its calls split.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;
use lookaside_tests::process::ChildProcess;
use lookaside_tests::workspace;
use tokio::process::Command;

const CALLS: usize = 1000;

/// `greeter_server --name name` on a free port, and the address it bound.
async fn greeter_server(name: &str) -> Result<(ChildProcess, SocketAddr)> {
    let mut command = Command::new(workspace::binary("examples/greeter_server")?);
    command.args(["--listen", "127.0.0.1:0", "--name", name]);
    let mut server = ChildProcess::spawn(&format!("greeter_server {name}"), command)?;
    let prefix = format!("greeter {name} listening on ");
    let address = server
        .wait_for_line(0, "its address", Duration::from_secs(10), |line| {
            line.strip_prefix(&prefix)?
                .trim()
                .parse::<SocketAddr>()
                .ok()
        })
        .await?;
    Ok((server, address))
}

/// The calls per server and the failed calls `greeter_client` printed
/// (`<server>: <calls> calls (<share> %)` lines, then `failed: <n>`).
fn parse_split(stdout: &str) -> Result<(Vec<(String, usize)>, usize)> {
    let mut split = Vec::new();
    let mut failed = None;
    for line in stdout.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let count: usize = rest
            .split_whitespace()
            .next()
            .context("a count")?
            .parse()
            .with_context(|| format!("a count in {line:?}"))?;
        match name.trim() {
            "failed" => failed = Some(count),
            server => split.push((server.to_owned(), count)),
        }
    }
    let Some(failed) = failed else {
        bail!("no `failed:` line in {stdout:?}");
    };
    Ok((split, failed))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_greeter_examples_split_calls_by_weight_through_lookaside_serve() -> Result<()> {
    let mut servers = Vec::new();
    let mut endpoints = Vec::new();
    for (name, weight) in [("a", 1), ("b", 2), ("c", 7)] {
        let (server, address) = greeter_server(name).await?;
        servers.push(server);
        endpoints.push((address, weight));
    }
    // Static weights: the default policy (utilization) would weigh by the
    // servers' ORCA reports, which follow this machine's load, not the
    // examples.
    let config = Config::new()
        .weighted("greeter", endpoints)
        .policy("greeter", "static");
    let control_plane = ControlPlane::start(&config).await?;

    let mut client = Command::new(workspace::binary("examples/greeter_client")?);
    client.args([
        "--control-plane",
        &format!("http://{}", control_plane.xds_addr()),
        "--cluster",
        "greeter",
        "--calls",
        &CALLS.to_string(),
    ]);
    client.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), client.output())
        .await
        .context("greeter_client finishes within 60 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("greeter_client printed:\n{stdout}");
    assert!(output.status.success(), "{}: {stderr}", output.status);
    let (split, failed) = parse_split(&stdout)?;
    assert_eq!(failed, 0, "{stderr}");
    let names: Vec<&str> = split.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "every server answered");
    // Within 3 points of 1/2/7, as the weight check (the first
    // calls may go out while a connection is still being made).
    for ((name, calls), weight) in split.iter().zip([1, 2, 7]) {
        let share = *calls as f64 * 100.0 / CALLS as f64;
        let want = f64::from(weight) * 10.0;
        assert!(
            (share - want).abs() <= 3.0,
            "{name}: {share:.1} % of the calls, want {want:.0} % (+-3): {split:?}"
        );
    }
    Ok(())
}
