//! A running gRPC Python xDS client (grpcio, C-core): `tests/python/xds_client.py`
//! with `GRPC_XDS_BOOTSTRAP` pointing at Lookaside, one channel to
//! `xds:///CLUSTER` for its whole life. Each [`PythonXdsClient::call`] makes a
//! batch of `Who` calls on that channel and counts who answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::Command;

use crate::peers::Peers;
use crate::process::{ChildProcess, Output};
use crate::split::Split;

/// What the script prints before each batch's JSON result.
const RESULT: &str = "RESULT ";

/// The client script.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("xds_client.py")
}

/// A running Python xDS client.
#[derive(Debug)]
pub struct PythonXdsClient {
    process: ChildProcess,
    node_id: String,
    // Dropped last: the bootstrap lives here.
    _dir: TempDir,
}

impl PythonXdsClient {
    /// Starts the client with a bootstrap naming the control plane at `xds`
    /// and `node_id`, targeting `xds:///{cluster}`. The xDS stream opens with
    /// the first call.
    pub async fn start(
        peers: &Peers,
        xds: SocketAddr,
        cluster: &str,
        node_id: &str,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("lookaside-e2e-python-")
            .tempdir()
            .context("creating a temporary folder")?;
        let bootstrap_path = dir.path().join("xds-bootstrap.json");
        tokio::fs::write(
            &bootstrap_path,
            serde_json::to_vec_pretty(&bootstrap(xds, node_id))?,
        )
        .await
        .with_context(|| format!("writing {}", bootstrap_path.display()))?;
        let mut command = Command::new(peers.python());
        command
            .arg(script())
            .arg(format!("xds:///{cluster}"))
            .env("GRPC_XDS_BOOTSTRAP", &bootstrap_path)
            .env_remove("GRPC_XDS_BOOTSTRAP_CONFIG")
            .env("GRPC_VERBOSITY", "ERROR")
            .env("PYTHONUNBUFFERED", "1");
        let process = ChildProcess::spawn("python xds client", command)?;
        Ok(Self {
            process,
            node_id: node_id.to_owned(),
            _dir: dir,
        })
    }

    /// The `node.id` in its bootstrap.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// What the script printed (stdout and stderr).
    pub fn output(&self) -> &Output {
        self.process.output()
    }

    /// Makes `calls` calls and counts who answered. Fails if any call failed
    /// or the batch took longer than `timeout`.
    pub async fn call(&mut self, calls: u32, timeout: Duration) -> Result<Split> {
        let from = self.process.output().len();
        self.process.send_line(&calls.to_string()).await?;
        let result = self
            .process
            .wait_for_line(from, "a batch result", timeout, |line| {
                line.strip_prefix(RESULT)
                    .and_then(|json| serde_json::from_str::<Value>(json).ok())
            })
            .await?;
        let mut split = Split::new();
        for (backend, count) in counts(&result, "counts")? {
            split.add(&backend, count);
        }
        let errors = counts(&result, "errors")?;
        if !errors.is_empty() {
            bail!(
                "{} of {calls} calls failed: {errors:?} (answered: {split})",
                errors.values().sum::<u64>()
            );
        }
        Ok(split)
    }
}

/// The xDS bootstrap for gRPC.
fn bootstrap(xds: SocketAddr, node_id: &str) -> Value {
    json!({
        "xds_servers": [{
            "server_uri": xds.to_string(),
            "channel_creds": [{ "type": "insecure" }],
            "server_features": ["xds_v3"]
        }],
        "node": { "id": node_id, "locality": {} }
    })
}

/// A `{"name": count}` object of a result line.
fn counts(result: &Value, field: &str) -> Result<BTreeMap<String, u64>> {
    let object = result
        .get(field)
        .and_then(Value::as_object)
        .with_context(|| format!("result without {field}: {result}"))?;
    object
        .iter()
        .map(|(name, count)| {
            let count = count
                .as_u64()
                .with_context(|| format!("{field}.{name} is not a count: {count}"))?;
            Ok((name.clone(), count))
        })
        .collect()
}
