//! A running Envoy that takes its clusters and endpoints from Lookaside over
//! ADS (state of the world or delta), with a static listener that routes all
//! traffic to one of those clusters, its admin interface on a port the OS
//! picks (read back through `--admin-address-path`), killed when dropped.
//!
//! Envoy gets CDS and EDS from us but no LDS: it ignores an `api_listener`
//! that arrives over LDS, so Envoy users bring their own listener.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::Command;

use crate::http;
use crate::peers::Peers;
use crate::poll::{self, Check};
use crate::process::{ChildProcess, Output};

/// How long Envoy may take to start and fetch its first clusters.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The name of the static cluster that points at the control plane.
pub const XDS_CLUSTER: &str = "lookaside";

/// The name of the static listener.
pub const LISTENER: &str = "ingress";

/// Which ADS variant Envoy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdsProtocol {
    /// State of the world: `StreamAggregatedResources`.
    Sotw,
    /// Incremental: `DeltaAggregatedResources`.
    Delta,
}

impl XdsProtocol {
    /// `ads_config.api_type` in Envoy's bootstrap.
    pub fn api_type(self) -> &'static str {
        match self {
            Self::Sotw => "GRPC",
            Self::Delta => "DELTA_GRPC",
        }
    }

    /// How Lookaside's admin API names it (`Client.protocol`).
    pub fn admin_name(self) -> &'static str {
        match self {
            Self::Sotw => "sotw",
            Self::Delta => "delta",
        }
    }
}

/// A running Envoy.
#[derive(Debug)]
pub struct Envoy {
    process: ChildProcess,
    node_id: String,
    admin_addr: SocketAddr,
    listener_addr: SocketAddr,
    // Dropped last: the bootstrap lives here.
    _dir: TempDir,
}

impl Envoy {
    /// Starts Envoy with an ADS stream (`protocol`) to the control plane at
    /// `xds`, and a listener that routes every request to `routed_cluster`.
    /// Returns once Envoy is LIVE (its first CDS/EDS answers arrived) and its
    /// listener is bound.
    pub async fn start(
        peers: &Peers,
        xds: SocketAddr,
        protocol: XdsProtocol,
        routed_cluster: &str,
    ) -> Result<Self> {
        let binary = peers.envoy()?;
        let dir = tempfile::Builder::new()
            .prefix("lookaside-e2e-envoy-")
            .tempdir()
            .context("creating a temporary folder")?;
        let node_id = format!("envoy-e2e-{}", protocol.admin_name());
        let bootstrap_path = dir.path().join("bootstrap.json");
        let bootstrap = bootstrap(&node_id, xds, protocol, routed_cluster);
        tokio::fs::write(&bootstrap_path, serde_json::to_vec_pretty(&bootstrap)?)
            .await
            .with_context(|| format!("writing {}", bootstrap_path.display()))?;
        let admin_path = dir.path().join("admin-address");

        let mut command = Command::new(&binary);
        command
            .arg("-c")
            .arg(&bootstrap_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // No hot restart: no shared memory to collide with another Envoy
            // of a concurrent test, and none left behind by a SIGKILL.
            .arg("--disable-hot-restart")
            .args(["--concurrency", "2"])
            // Quiet start-up; keep cluster and xDS events (and NACK reasons).
            .args(["--log-level", "warning"])
            .args(["--component-log-level", "upstream:info,config:info"]);
        let mut process = ChildProcess::spawn("envoy", command)?;

        let admin_addr = poll::until("Envoy's admin address", START_TIMEOUT, async || {
            if process.has_exited()? {
                return Ok(Check::Never(format!(
                    "envoy exited; its last output:\n{}",
                    process.output().tail(40)
                )));
            }
            read_admin_address(&admin_path).await
        })
        .await?;
        poll::until("Envoy to be LIVE", START_TIMEOUT, async || {
            if process.has_exited()? {
                return Ok(Check::Never(format!(
                    "envoy exited; its last output:\n{}",
                    process.output().tail(40)
                )));
            }
            let ready = http::get(admin_addr, "/ready").await?;
            Ok(if ready.status == 200 {
                Check::Done(())
            } else {
                Check::NotYet(format!("/ready: {} {}", ready.status, ready.body.trim()))
            })
        })
        .await?;
        let listeners = http::get_ok(admin_addr, "/listeners?format=json").await?;
        let listener_addr = listener_address(&listeners, LISTENER)?;
        Ok(Self {
            process,
            node_id,
            admin_addr,
            listener_addr,
            _dir: dir,
        })
    }

    /// Envoy's `node.id`.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Envoy's admin interface.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The static listener that routes to the balanced cluster.
    pub fn listener_addr(&self) -> SocketAddr {
        self.listener_addr
    }

    /// What Envoy logged.
    pub fn output(&self) -> &Output {
        self.process.output()
    }

    /// Envoy's `/clusters` page, as text.
    pub async fn clusters_page(&self) -> Result<String> {
        http::get_ok(self.admin_addr, "/clusters").await
    }

    /// The weight of every endpoint of `cluster`, by `host:port`, as Envoy
    /// sees them (`/clusters`, lines `CLUSTER::HOST::weight::N`).
    pub async fn cluster_weights(&self, cluster: &str) -> Result<BTreeMap<String, u32>> {
        Ok(parse_weights(&self.clusters_page().await?, cluster))
    }

    /// Waits until Envoy's weights for `cluster` are exactly `expected`.
    pub async fn wait_for_weights(
        &self,
        cluster: &str,
        expected: &BTreeMap<String, u32>,
        timeout: Duration,
    ) -> Result<()> {
        let what = format!("Envoy's weights of {cluster} to become {expected:?}");
        poll::until(&what, timeout, async || {
            let weights = self.cluster_weights(cluster).await?;
            Ok(if &weights == expected {
                Check::Done(())
            } else {
                Check::NotYet(format!("{weights:?}"))
            })
        })
        .await
    }
}

/// Envoy's bootstrap: ADS to `xds` for CDS (and EDS through the clusters),
/// LRS load reports to `xds`, a static cluster for the control plane, a
/// static listener to `routed_cluster`.
fn bootstrap(node_id: &str, xds: SocketAddr, protocol: XdsProtocol, routed_cluster: &str) -> Value {
    json!({
        "node": { "id": node_id, "cluster": "lookaside-e2e" },
        "admin": { "address": socket_address("127.0.0.1", 0) },
        "dynamic_resources": {
            "ads_config": {
                "api_type": protocol.api_type(),
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{ "envoy_grpc": { "cluster_name": XDS_CLUSTER } }]
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" }
        },
        // Envoy reports what it sees of each endpoint back over LRS.
        "cluster_manager": {
            "load_stats_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{ "envoy_grpc": { "cluster_name": XDS_CLUSTER } }]
            }
        },
        "static_resources": {
            "clusters": [{
                "name": XDS_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                },
                "load_assignment": {
                    "cluster_name": XDS_CLUSTER,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                        "address": socket_address(&xds.ip().to_string(), xds.port())
                    } }] }]
                }
            }],
            "listeners": [{
                "name": LISTENER,
                "address": socket_address("127.0.0.1", 0),
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": LISTENER,
                        "codec_type": "AUTO",
                        "route_config": {
                            "name": "all-to-one-cluster",
                            // The cluster arrives later over CDS.
                            "validate_clusters": false,
                            "virtual_hosts": [{
                                "name": "all",
                                "domains": ["*"],
                                "routes": [{
                                    "match": { "prefix": "/" },
                                    "route": { "cluster": routed_cluster, "timeout": "10s" }
                                }]
                            }]
                        },
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                            }
                        }]
                    }
                }] }]
            }]
        }
    })
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": address, "port_value": port } })
}

/// The admin address Envoy wrote to `path`, once it did.
async fn read_admin_address(path: &Path) -> Result<Check<SocketAddr>> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Check::NotYet(format!("{} not written yet", path.display())));
        }
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    Ok(match text.trim().parse() {
        Ok(address) => Check::Done(address),
        Err(_) => Check::NotYet(format!("{} holds {text:?}", path.display())),
    })
}

/// The bound address of listener `name` in `/listeners?format=json`.
fn listener_address(page: &str, name: &str) -> Result<SocketAddr> {
    let page: Value = serde_json::from_str(page).context("/listeners is not JSON")?;
    let statuses = page
        .get("listener_statuses")
        .and_then(Value::as_array)
        .context("/listeners has no listener_statuses")?;
    let listener = statuses
        .iter()
        .find(|status| status.get("name").and_then(Value::as_str) == Some(name))
        .with_context(|| format!("/listeners has no listener {name}: {page}"))?;
    let socket = listener
        .pointer("/local_address/socket_address")
        .with_context(|| format!("listener {name} has no socket address: {listener}"))?;
    let address = socket
        .get("address")
        .and_then(Value::as_str)
        .context("listener address without an IP")?;
    let port = socket
        .get("port_value")
        .and_then(Value::as_u64)
        .context("listener address without a port")?;
    format!("{address}:{port}")
        .parse()
        .with_context(|| format!("bad listener address {socket}"))
}

/// Weights of `cluster`'s hosts in a `/clusters` page.
fn parse_weights(page: &str, cluster: &str) -> BTreeMap<String, u32> {
    let mut weights = BTreeMap::new();
    for line in page.lines() {
        // CLUSTER::HOST::STAT::VALUE; HOST may itself hold "::" (IPv6).
        let mut from_end = line.rsplitn(3, "::");
        let (Some(value), Some(stat), Some(rest)) =
            (from_end.next(), from_end.next(), from_end.next())
        else {
            continue;
        };
        if stat != "weight" {
            continue;
        }
        let Some((name, host)) = rest.split_once("::") else {
            continue;
        };
        if name == cluster
            && let Ok(weight) = value.parse()
        {
            weights.insert(host.to_owned(), weight);
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weights_from_the_clusters_page() {
        let page = "\
greeter::observability_name::greeter
greeter::default_priority::max_connections::1024
greeter::127.0.0.1:50051::cx_active::1
greeter::127.0.0.1:50051::weight::1
greeter::127.0.0.1:50052::weight::2
greeter::127.0.0.1:50052::zone::z1
other::127.0.0.1:1::weight::9
lookaside::127.0.0.1:18000::weight::1
";
        let weights = parse_weights(page, "greeter");
        assert_eq!(
            weights,
            BTreeMap::from([
                ("127.0.0.1:50051".to_owned(), 1),
                ("127.0.0.1:50052".to_owned(), 2)
            ])
        );
    }

    #[test]
    fn finds_the_listener_address() {
        let page = r#"{"listener_statuses":[{"name":"ingress","local_address":{"socket_address":{"address":"127.0.0.1","port_value":10000}}}]}"#;
        assert_eq!(
            listener_address(page, "ingress").unwrap(),
            "127.0.0.1:10000".parse().unwrap()
        );
        assert!(listener_address(page, "other").is_err());
    }
}
