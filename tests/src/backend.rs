//! Test backends: `test-backend` processes serving `lookaside.test.v1.Echo`,
//! each answering `Who` with its own name. Separate processes, so a test can
//! kill one the way a pod dies.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::Command;

use crate::process::ChildProcess;
use crate::workspace;

/// What `test-backend` prints once it listens, followed by the address.
pub const LISTENING: &str = "listening on ";

/// How long a backend may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

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
        let binary = workspace::binary("test-backend")?;
        let mut command = Command::new(binary);
        command
            .args(["--name", name])
            .args(["--listen", "127.0.0.1:0"]);
        let mut process = ChildProcess::spawn(&format!("test-backend {name}"), command)?;
        let address = process
            .wait_for_line(0, "its address", START_TIMEOUT, |line| {
                line.strip_prefix(LISTENING)?.trim().parse().ok()
            })
            .await?;
        Ok(Self {
            name: name.to_owned(),
            address,
            process,
        })
    }

    /// Starts one backend per name, concurrently.
    pub async fn start_all(names: &[&str]) -> Result<Vec<Self>> {
        futures::future::try_join_all(names.iter().map(|name| Self::start(name))).await
    }

    /// The name it answers `Who` with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Kills it (SIGKILL), as when a pod dies.
    pub async fn kill(&mut self) -> Result<()> {
        self.process
            .kill()
            .await
            .with_context(|| format!("killing backend {}", self.name))
    }
}
