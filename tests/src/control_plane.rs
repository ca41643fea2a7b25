//! A running `lookaside serve`: started with a config file in a temporary
//! folder, ports chosen by the OS and read back from its JSON log lines,
//! killed when dropped. A test can kill it and start it again on the same
//! xDS port, as when a control-plane pod dies and comes back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lookaside_proto::admin::v1::admin_client::AdminClient;
use lookaside_proto::admin::v1::{
    Client, ClusterAssignment, GetAssignmentRequest, ListClientsRequest, ListSourcesRequest, Source,
};
use tempfile::TempDir;
use tokio::process::Command;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::config::Config;
use crate::poll::{self, Check};
use crate::process::{ChildProcess, Output};
use crate::workspace;

/// Type URL of xDS Listeners (LDS).
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Type URL of xDS RouteConfigurations (RDS).
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Type URL of xDS Clusters (CDS).
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Type URL of xDS ClusterLoadAssignments (EDS).
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// How long `lookaside` may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`ControlPlane::restart`] retries while its port is still taken.
const RESTART_BIND_TIMEOUT: Duration = Duration::from_secs(5);

/// What the OS says when a port is taken (`EADDRINUSE`).
const ADDRESS_IN_USE: &str = "in use";

/// How often the control plane re-reads its config file, in milliseconds.
pub const CONFIG_POLL_MS: u64 = 100;

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    process: ChildProcess,
    config_path: PathBuf,
    /// Flags added to `lookaside serve`'s own, kept for restarts.
    extra_args: Vec<String>,
    xds_addr: SocketAddr,
    metrics_addr: SocketAddr,
    // Dropped last: the config file lives here.
    _dir: TempDir,
}

impl ControlPlane {
    /// Writes `config` to a temporary file and starts `lookaside serve` on it,
    /// with xDS and metrics on ports the OS picks. Returns once both listen.
    pub async fn start(config: &Config) -> Result<Self> {
        Self::start_with_yaml(&config.to_yaml()).await
    }

    /// Like [`ControlPlane::start`], with the config file's text as is.
    pub async fn start_with_yaml(yaml: &str) -> Result<Self> {
        Self::start_with_args(yaml, &[]).await
    }

    /// Like [`ControlPlane::start_with_yaml`], with `extra_args` added to
    /// the command line (e.g. `--weigh-step-ms 500`; see
    /// `lookaside serve --help`).
    pub async fn start_with_args(yaml: &str, extra_args: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("lookaside-e2e-")
            .tempdir()
            .context("creating a temporary folder")?;
        let config_path = dir.path().join("lookaside.yaml");
        write_atomically(&config_path, yaml).await?;
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let extra_args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let (process, xds_addr, metrics_addr) = spawn(&config_path, any_port, &extra_args).await?;
        Ok(Self {
            process,
            config_path,
            extra_args,
            xds_addr,
            metrics_addr,
            _dir: dir,
        })
    }

    /// Kills the control plane (SIGKILL), as when its pod dies: ADS streams
    /// end without a goodbye. The config file stays; see
    /// [`ControlPlane::restart`].
    pub async fn kill(&mut self) -> Result<()> {
        self.process.kill().await
    }

    /// Starts the control plane again (killing it first if it still runs) on
    /// the same xDS address, so clients find it where they were told to, and
    /// with whatever the config file holds now. Binding is retried for a few
    /// seconds while the port is still taken. The metrics port may change.
    pub async fn restart(&mut self) -> Result<()> {
        if !self.process.has_exited()? {
            self.process.kill().await?;
        }
        let deadline = Instant::now() + RESTART_BIND_TIMEOUT;
        loop {
            match spawn(&self.config_path, self.xds_addr, &self.extra_args).await {
                Ok((process, xds_addr, metrics_addr)) => {
                    // The old process's output is shown when it is dropped.
                    self.process = process;
                    self.metrics_addr = metrics_addr;
                    ensure!(
                        xds_addr == self.xds_addr,
                        "restarted control plane listens on {xds_addr}, not {}",
                        self.xds_addr
                    );
                    return Ok(());
                }
                Err(error)
                    if Instant::now() < deadline
                        && format!("{error:#}").contains(ADDRESS_IN_USE) =>
                {
                    tokio::time::sleep(poll::INTERVAL).await;
                }
                Err(error) => {
                    return Err(
                        error.context(format!("restarting the control plane on {}", self.xds_addr))
                    );
                }
            }
        }
    }

    /// Where ADS, the admin API, health and reflection are served.
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds_addr
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The config file the control plane watches.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The control plane's log lines (JSON).
    pub fn output(&self) -> &Output {
        self.process.output()
    }

    /// Replaces the config file; the control plane picks the edit up within
    /// [`CONFIG_POLL_MS`].
    pub async fn write_config(&self, config: &Config) -> Result<()> {
        self.write_config_yaml(&config.to_yaml()).await
    }

    /// Replaces the config file with `yaml` as is (may be invalid on purpose).
    pub async fn write_config_yaml(&self, yaml: &str) -> Result<()> {
        write_atomically(&self.config_path, yaml).await
    }

    /// A client of the admin API (`lookaside.admin.v1.Admin`).
    pub async fn admin(&self) -> Result<AdminClient<Channel>> {
        let endpoint = format!("http://{}", self.xds_addr);
        AdminClient::connect(endpoint.clone())
            .await
            .with_context(|| format!("connecting to the admin API at {endpoint}"))
    }

    /// The control plane's current assignment of `cluster`, if it serves it.
    pub async fn assignment(&self, cluster: &str) -> Result<Option<ClusterAssignment>> {
        let response = self
            .admin()
            .await?
            .get_assignment(GetAssignmentRequest {
                cluster: cluster.to_owned(),
            })
            .await
            .context("Admin/GetAssignment")?
            .into_inner();
        Ok(response.clusters.into_iter().find(|c| c.name == cluster))
    }

    /// Whether every endpoint of `cluster` shows LRS load from exactly
    /// `reporters` clients with calls flowing (`Done`), or what it shows.
    pub async fn lrs_reported(&self, cluster: &str, reporters: u32) -> Result<Check<()>> {
        let Some(assignment) = self.assignment(cluster).await? else {
            return Ok(Check::NotYet(format!("no assignment of {cluster}")));
        };
        let seen: Vec<(u32, f64)> = assignment
            .endpoints
            .iter()
            .map(|e| {
                let load = e.load.clone().unwrap_or_default();
                (load.client_reporters, load.client_rps)
            })
            .collect();
        Ok(
            if !seen.is_empty() && seen.iter().all(|&(n, rps)| n == reporters && rps > 0.0) {
                Check::Done(())
            } else {
                Check::NotYet(format!("(reporters, rps) per endpoint: {seen:?}"))
            },
        )
    }

    /// The connected xDS clients.
    pub async fn clients(&self) -> Result<Vec<Client>> {
        Ok(self
            .admin()
            .await?
            .list_clients(ListClientsRequest::default())
            .await
            .context("Admin/ListClients")?
            .into_inner()
            .clients)
    }

    /// Waits until the admin API shows an ADS stream from `node_id`, speaking
    /// `protocol` (`sotw` or `delta`), that ACKed the latest version it was
    /// sent of every type in `types`. Fails at once on any NACK.
    pub async fn wait_for_acks(
        &self,
        node_id: &str,
        protocol: &str,
        types: &[&str],
        timeout: Duration,
    ) -> Result<Client> {
        let what = format!("{node_id} to ACK {types:?} over {protocol} ADS");
        poll::until(&what, timeout, async || {
            let clients = self.clients().await?;
            let Some(client) = clients.iter().find(|client| client.node_id == node_id) else {
                let nodes: Vec<&str> = clients.iter().map(|c| c.node_id.as_str()).collect();
                return Ok(Check::NotYet(format!("connected nodes: {nodes:?}")));
            };
            if let Some(nacked) = client.types.iter().find(|state| state.nacks > 0) {
                return Ok(Check::Never(format!("{node_id} NACKed: {nacked:?}")));
            }
            if client.protocol != protocol {
                return Ok(Check::Never(format!(
                    "{node_id} is listed with protocol {:?}, want {protocol:?}: {client:?}",
                    client.protocol
                )));
            }
            let settled = types.iter().all(|type_url| {
                client.types.iter().any(|state| {
                    state.type_url == *type_url
                        && state.acks > 0
                        && !state.acked_version.is_empty()
                        && state.acked_version == state.sent_version
                        && state.pending_nonce.is_empty()
                })
            });
            Ok(if settled {
                Check::Done(client.clone())
            } else {
                Check::NotYet(format!("{client:?}"))
            })
        })
        .await
    }

    /// The discovery sources and their health.
    pub async fn sources(&self) -> Result<Vec<Source>> {
        Ok(self
            .admin()
            .await?
            .list_sources(ListSourcesRequest::default())
            .await
            .context("Admin/ListSources")?
            .into_inner()
            .sources)
    }
}

/// Starts `lookaside serve` on `config_path` with xDS on `xds_listen`,
/// metrics on a port the OS picks and `extra_args`; returns once both
/// listen, with their addresses.
async fn spawn(
    config_path: &Path,
    xds_listen: SocketAddr,
    extra_args: &[String],
) -> Result<(ChildProcess, SocketAddr, SocketAddr)> {
    spawn_serve(
        "lookaside",
        config_path,
        xds_listen,
        CONFIG_POLL_MS,
        extra_args,
    )
    .await
}

/// `spawn` with the process named `label` in failures and the file polled
/// every `config_poll_ms` (the fault drill's replicas).
pub async fn spawn_serve(
    label: &str,
    config_path: &Path,
    xds_listen: SocketAddr,
    config_poll_ms: u64,
    extra_args: &[String],
) -> Result<(ChildProcess, SocketAddr, SocketAddr)> {
    let binary = workspace::binary("lookaside")?;
    let mut command = Command::new(&binary);
    command
        .arg("serve")
        .arg("--config")
        .arg(config_path)
        .args(["--xds-listen", &xds_listen.to_string()])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .args(["--config-poll-ms", &config_poll_ms.to_string()])
        .args(extra_args)
        .env_remove("RUST_LOG");
    let mut process = ChildProcess::spawn(label, command)?;
    let xds_addr = process
        .wait_for_line(0, "\"xDS listening\"", START_TIMEOUT, |line| {
            listening_address(line, "xDS listening")
        })
        .await?;
    let metrics_addr = process
        .wait_for_line(0, "\"metrics listening\"", START_TIMEOUT, |line| {
            listening_address(line, "metrics listening")
        })
        .await?;
    Ok((process, xds_addr, metrics_addr))
}

/// The `address` of a JSON log line whose `message` is `message`.
pub(crate) fn listening_address(line: &str, message: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("message")?.as_str()? != message {
        return None;
    }
    // tracing's JSON layer puts fields at the top level or under "fields".
    let address = value
        .get("address")
        .or_else(|| value.get("fields").and_then(|fields| fields.get("address")))?;
    address.as_str()?.parse().ok()
}

/// Writes `path` through a temporary file and a rename, so the control
/// plane's poller never reads half a file.
pub async fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let temporary = path.with_extension("yaml.tmp");
    tokio::fs::write(&temporary, contents)
        .await
        .with_context(|| format!("writing {}", temporary.display()))?;
    tokio::fs::rename(&temporary, path)
        .await
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_of_a_listening_line() {
        let line = r#"{"timestamp":"t","level":"INFO","message":"xDS listening","address":"127.0.0.1:39433","target":"x"}"#;
        assert_eq!(
            listening_address(line, "xDS listening"),
            Some("127.0.0.1:39433".parse().unwrap())
        );
        assert_eq!(listening_address(line, "metrics listening"), None);
        assert_eq!(listening_address("not json", "xDS listening"), None);
    }
}
