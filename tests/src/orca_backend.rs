//! ORCA backends: `orca-backend` processes, each a greeter with a modelled
//! capacity (`--workers` calls at once, `--cost-ms` each, times a slowdown)
//! that reports its utilization over ORCA, as `lookaside demo`'s backends
//! do.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use tokio::process::Command;

use crate::backend::LISTENING;
use crate::process::{ChildProcess, Output};
use crate::workspace;

/// How long a backend may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What an ORCA backend is.
#[derive(Debug, Clone, PartialEq)]
pub struct OrcaBackendSpec {
    /// The name its replies carry.
    pub name: String,
    /// Calls served at once.
    pub workers: usize,
    /// How long one call holds a worker, before the slowdown.
    pub cost: Duration,
    /// Every call takes this many times its cost.
    pub slowdown: f64,
}

impl OrcaBackendSpec {
    /// Calls per second it can serve.
    pub fn capacity(&self) -> f64 {
        self.workers as f64 / (self.cost.as_secs_f64() * self.slowdown).max(1e-6)
    }
}

/// A running `orca-backend`.
#[derive(Debug)]
pub struct OrcaBackend {
    spec: OrcaBackendSpec,
    address: SocketAddr,
    process: ChildProcess,
}

impl OrcaBackend {
    /// Starts `spec` on a port the OS picks; returns once it listens.
    pub async fn start(spec: OrcaBackendSpec) -> Result<Self> {
        let mut command = Command::new(workspace::binary("orca-backend")?);
        command
            .args(["--name", &spec.name])
            .args(["--workers", &spec.workers.to_string()])
            .args(["--cost-ms", &spec.cost.as_millis().to_string()])
            .args(["--slowdown", &spec.slowdown.to_string()]);
        let mut process = ChildProcess::spawn(&format!("orca-backend {}", spec.name), command)?;
        let address = process
            .wait_for_line(0, "its address", START_TIMEOUT, |line| {
                line.strip_prefix(LISTENING)?.trim().parse().ok()
            })
            .await?;
        Ok(Self {
            spec,
            address,
            process,
        })
    }

    /// Starts one backend per spec, concurrently.
    pub async fn start_all(specs: Vec<OrcaBackendSpec>) -> Result<Vec<Self>> {
        futures::future::try_join_all(specs.into_iter().map(Self::start)).await
    }

    /// The name its replies carry.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Where it serves the greeter and ORCA.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What it was started as.
    pub fn spec(&self) -> &OrcaBackendSpec {
        &self.spec
    }

    /// What it printed so far.
    pub fn output(&self) -> &Output {
        self.process.output()
    }
}
