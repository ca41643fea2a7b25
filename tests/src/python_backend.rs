//! A running gRPC Python backend (grpcio, C-core): `tests/python/echo_server.py`,
//! a gRPC server that is not tonic. It answers `Who` with its name and serves
//! `lookaside.test.v1.Interop` (echo, a failing call, the deadline it saw,
//! server and client streaming); see the script for what each method does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use tokio::process::Command;

use crate::backend::spawn_listening;
use crate::peers::Peers;
use crate::process::{ChildProcess, Output};

/// How long the server may take to start listening (Python imports grpc).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The server script.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("echo_server.py")
}

/// A running Python backend; killed on drop.
#[derive(Debug)]
pub struct PythonBackend {
    name: String,
    address: SocketAddr,
    process: ChildProcess,
}

impl PythonBackend {
    /// Starts a backend called `name` on a port the OS picks.
    pub async fn start(peers: &Peers, name: &str) -> Result<Self> {
        let mut command = Command::new(peers.python());
        command
            .arg(script())
            .arg(name)
            .env("GRPC_VERBOSITY", "ERROR")
            .env("PYTHONUNBUFFERED", "1");
        let (process, address) =
            spawn_listening(&format!("python backend {name}"), command, START_TIMEOUT).await?;
        Ok(Self {
            name: name.to_owned(),
            address,
            process,
        })
    }

    /// The name it answers `Who` with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What it printed (stdout and stderr).
    pub fn output(&self) -> &Output {
        self.process.output()
    }
}
