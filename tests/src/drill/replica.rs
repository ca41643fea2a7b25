//! One control-plane replica of the fault drill: a `lookaside serve` process
//! reading a config file it shares with the other replicas (as replicas of
//! a Deployment share a ConfigMap), on an xDS port that survives a restart.
//!
//! Unlike [`crate::control_plane::ControlPlane`], which owns its config file,
//! a replica only reads the file it is given; the drill writes it with
//! [`crate::control_plane::write_atomically`]. Admin calls go straight to the replica (never through
//! the drill's proxy) and give up quickly, so polling a dead replica costs
//! one refused connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lookaside_proto::admin::v1::admin_client::AdminClient;
use lookaside_proto::admin::v1::{
    Client, ClusterAssignment, GetAssignmentRequest, ListClientsRequest, ListSourcesRequest, Source,
};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

#[cfg(test)]
use crate::control_plane::listening_address;
use crate::control_plane::spawn_serve;
use crate::poll;
use crate::process::{ChildProcess, Output};

/// How long a restart retries while the port is still taken.
const RESTART_BIND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an admin call may take, connection included.
const ADMIN_TIMEOUT: Duration = Duration::from_millis(1000);

/// What `lookaside serve` logs when it rejects an edit of its config file.
pub const CONFIG_REJECTED: &str = "config rejected";

/// A running (or killed) replica.
#[derive(Debug)]
pub struct Replica {
    name: String,
    process: ChildProcess,
    config_path: PathBuf,
    xds_addr: SocketAddr,
    config_poll_ms: u64,
    /// Every process this replica has been, the current one last; kept so
    /// that a killed process's output can still be read.
    past_outputs: Vec<Output>,
}

impl Replica {
    /// Starts `lookaside serve --config CONFIG_PATH` with xDS on `listen`
    /// (port 0: the OS picks) and returns once it listens.
    pub async fn start(
        name: &str,
        config_path: &Path,
        listen: SocketAddr,
        config_poll_ms: u64,
    ) -> Result<Self> {
        let (process, xds_addr) = spawn(name, config_path, listen, config_poll_ms).await?;
        Ok(Self {
            name: name.to_owned(),
            process,
            config_path: config_path.to_path_buf(),
            xds_addr,
            config_poll_ms,
            past_outputs: Vec::new(),
        })
    }

    /// Its label (`A`, `B`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it serves ADS and the admin API.
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds_addr
    }

    /// What the current process printed (JSON log lines).
    pub fn output(&self) -> &Output {
        self.process.output()
    }

    /// Log lines of every process this replica has been, oldest first.
    pub fn all_lines(&self) -> Vec<String> {
        self.past_outputs
            .iter()
            .chain(std::iter::once(self.process.output()))
            .flat_map(Output::lines)
            .collect()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.process.has_exited(), Ok(false))
    }

    /// Kills it with SIGKILL, as when its pod is lost: streams end without a
    /// goodbye, and connections are reset by the kernel.
    pub async fn kill(&mut self) -> Result<()> {
        self.process.kill().await
    }

    /// Starts it again on the same xDS port, reading the same file,
    /// retrying while the port is still taken. Returns once it listens.
    pub async fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.process.kill().await?;
        }
        let deadline = Instant::now() + RESTART_BIND_TIMEOUT;
        loop {
            match spawn(
                &self.name,
                &self.config_path,
                self.xds_addr,
                self.config_poll_ms,
            )
            .await
            {
                Ok((process, xds_addr)) => {
                    ensure!(
                        xds_addr == self.xds_addr,
                        "replica {} came back on {xds_addr}, not {}",
                        self.name,
                        self.xds_addr
                    );
                    let old = std::mem::replace(&mut self.process, process);
                    self.past_outputs.push(old.output().clone());
                    return Ok(());
                }
                Err(error)
                    if Instant::now() < deadline && format!("{error:#}").contains("in use") =>
                {
                    tokio::time::sleep(poll::INTERVAL).await;
                }
                Err(error) => {
                    return Err(error.context(format!("restarting replica {}", self.name)));
                }
            }
        }
    }

    /// The replica's current assignment of `cluster`, if it serves it.
    pub async fn assignment(&self, cluster: &str) -> Result<Option<ClusterAssignment>> {
        let mut admin = self.admin().await?;
        let response = admin
            .get_assignment(GetAssignmentRequest {
                cluster: cluster.to_owned(),
            })
            .await
            .with_context(|| format!("Admin/GetAssignment on replica {}", self.name))?
            .into_inner();
        Ok(response.clusters.into_iter().find(|c| c.name == cluster))
    }

    /// The xDS clients connected to it.
    pub async fn clients(&self) -> Result<Vec<Client>> {
        let mut admin = self.admin().await?;
        Ok(admin
            .list_clients(ListClientsRequest::default())
            .await
            .with_context(|| format!("Admin/ListClients on replica {}", self.name))?
            .into_inner()
            .clients)
    }

    /// Its discovery sources and their health.
    pub async fn sources(&self) -> Result<Vec<Source>> {
        let mut admin = self.admin().await?;
        Ok(admin
            .list_sources(ListSourcesRequest::default())
            .await
            .with_context(|| format!("Admin/ListSources on replica {}", self.name))?
            .into_inner()
            .sources)
    }

    async fn admin(&self) -> Result<AdminClient<Channel>> {
        let uri = format!("http://{}", self.xds_addr);
        let channel = Endpoint::from_shared(uri.clone())
            .with_context(|| format!("bad admin address {uri}"))?
            .connect_timeout(ADMIN_TIMEOUT)
            .timeout(ADMIN_TIMEOUT)
            .connect()
            .await
            .with_context(|| format!("connecting to replica {} at {uri}", self.name))?;
        Ok(AdminClient::new(channel))
    }
}

/// Starts one `lookaside serve` process; returns it once it listens, with
/// its xDS address.
async fn spawn(
    name: &str,
    config_path: &Path,
    listen: SocketAddr,
    config_poll_ms: u64,
) -> Result<(ChildProcess, SocketAddr)> {
    let label = format!("lookaside replica {name}");
    let (process, xds_addr, _metrics) =
        spawn_serve(&label, config_path, listen, config_poll_ms, &[]).await?;
    Ok((process, xds_addr))
}

/// The `error` field of a JSON log line saying the config was rejected.
pub fn rejection(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if !value.get("message")?.as_str()?.starts_with(CONFIG_REJECTED) {
        return None;
    }
    let error = value
        .get("error")
        .or_else(|| value.get("fields").and_then(|fields| fields.get("error")))?;
    Some(error.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_and_rejection_lines() {
        let line = r#"{"message":"xDS listening","address":"127.0.0.1:39433"}"#;
        assert_eq!(
            listening_address(line, "xDS listening"),
            Some("127.0.0.1:39433".parse().expect("an address"))
        );
        let rejected = r#"{"level":"WARN","message":"config rejected; the last good config keeps serving","source":"file:/x.yaml","error":"/x.yaml:5:7: bad"}"#;
        assert_eq!(rejection(rejected).as_deref(), Some("/x.yaml:5:7: bad"));
        assert_eq!(rejection(line), None);
        assert_eq!(rejection("not json"), None);
    }
}
