//! Test backends: `test-backend` processes serving `lookaside.test.v1.Echo`,
//! each answering `Who` with its own name. Separate processes, so a test can
//! stop one the way a pod stops: gracefully ([`Backend::terminate`], SIGTERM:
//! GOAWAY, calls in flight finish) or abruptly ([`Backend::kill`], SIGKILL).

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::process::Command;

use crate::process::{ChildProcess, Output};
use crate::workspace;

/// What `test-backend` prints once it listens, followed by the address.
pub const LISTENING: &str = "listening on ";
/// What `test-backend --report-arrivals` prints after each burst of calls,
/// followed by `N first F p50 M last L` (microseconds since the Unix epoch).
pub const ARRIVALS: &str = "arrivals ";
/// What `test-backend` prints when SIGTERM starts its graceful shutdown.
pub const DRAINING: &str = "draining";
/// What `test-backend` prints when its graceful shutdown has finished.
pub const STOPPED: &str = "stopped";
/// What `test-backend` prints when calls outlived its shutdown grace.
pub const GRACE_EXPIRED: &str = "shutdown grace expired";

/// How long a backend may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Backend::terminate`] waits for a graceful exit (the backend's
/// own grace is 5 s).
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(8);

/// Starts `command` and waits until it prints `listening on ADDRESS` (as
/// `test-backend` and the Python backend do); returns it and the address.
pub async fn spawn_listening(
    name: &str,
    command: Command,
    timeout: Duration,
) -> Result<(ChildProcess, SocketAddr)> {
    let mut process = ChildProcess::spawn(name, command)?;
    let address = process
        .wait_for_line(0, "its address", timeout, |line| {
            line.strip_prefix(LISTENING)?.trim().parse().ok()
        })
        .await?;
    Ok((process, address))
}

/// A running test backend.
#[derive(Debug)]
pub struct Backend {
    name: String,
    address: SocketAddr,
    process: ChildProcess,
}

impl Backend {
    /// Starts a backend called `name` on a port the OS picks.
    pub async fn start(name: &str) -> Result<Self> {
        Self::start_with_delay(name, Duration::ZERO).await
    }

    /// Starts a backend called `name` whose `Who` calls each take `delay`.
    pub async fn start_with_delay(name: &str, delay: Duration) -> Result<Self> {
        Self::start_with_args(name, delay, &[]).await
    }

    /// Starts a backend called `name` whose `Who` calls each take `delay`,
    /// with `extra` appended to its command line (e.g. `--workers 2`; see
    /// `test-backend --help`).
    pub async fn start_with_args(name: &str, delay: Duration, extra: &[String]) -> Result<Self> {
        let binary = workspace::binary("test-backend")?;
        let mut command = Command::new(binary);
        command
            .args(["--name", name])
            .args(["--listen", "127.0.0.1:0"])
            .args(["--delay-ms", &delay.as_millis().to_string()])
            .args(extra);
        let (process, address) =
            spawn_listening(&format!("test-backend {name}"), command, START_TIMEOUT).await?;
        Ok(Self {
            name: name.to_owned(),
            address,
            process,
        })
    }

    /// Starts one backend per name, concurrently.
    pub async fn start_all(names: &[&str]) -> Result<Vec<Self>> {
        Self::start_all_with_delay(names, Duration::ZERO).await
    }

    /// Starts one backend per name, concurrently, each call taking `delay`.
    pub async fn start_all_with_delay(names: &[&str], delay: Duration) -> Result<Vec<Self>> {
        Self::start_all_with_args(names, delay, &[]).await
    }

    /// Starts one backend per name, concurrently, each call taking `delay`,
    /// each with `extra` appended to its command line.
    pub async fn start_all_with_args(
        names: &[&str],
        delay: Duration,
        extra: &[String],
    ) -> Result<Vec<Self>> {
        futures::future::try_join_all(
            names
                .iter()
                .map(|name| Self::start_with_args(name, delay, extra)),
        )
        .await
    }

    /// The name it answers `Who` with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its OS process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.process.id()
    }

    /// What it printed so far.
    pub fn output(&self) -> &Output {
        self.process.output()
    }

    /// Stops it gracefully, as Kubernetes stops a pod: SIGTERM, then waits
    /// until it has exited. It sends GOAWAY on every connection and lets the
    /// calls in flight finish first. Fails unless it exits 0 after finishing
    /// its graceful shutdown.
    pub async fn terminate(&mut self) -> Result<ExitStatus> {
        let name = &self.name;
        self.process
            .signal("TERM")
            .await
            .with_context(|| format!("terminating backend {name}"))?;
        let status = self.process.wait(TERMINATE_TIMEOUT).await?;
        let output = self.process.output();
        ensure!(
            status.success() && output.lines().iter().any(|line| line == STOPPED),
            "backend {name} did not stop gracefully after SIGTERM ({status}); its last output:\n{}",
            output.tail(20)
        );
        Ok(status)
    }

    /// Kills it (SIGKILL), as when a pod dies.
    pub async fn kill(&mut self) -> Result<()> {
        self.process
            .kill()
            .await
            .with_context(|| format!("killing backend {}", self.name))
    }
}
