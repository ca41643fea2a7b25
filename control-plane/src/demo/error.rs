//! Why a demo could not run.
//!
//! Owns: the demo's error type.
//! Must never: print; `main` says what went wrong.

use std::net::SocketAddr;
use std::time::Duration;

use crate::server::StartError;

/// Why a demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The options make no runnable demo; names the flag.
    #[error("{0}")]
    Options(String),
    /// A demo backend could not listen.
    #[error("a demo backend cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The demo's config file could not be written.
    #[error("cannot write the demo's config file: {0}")]
    ConfigFile(#[source] std::io::Error),
    /// The control plane did not start.
    #[error("the demo's control plane did not start: {0}")]
    ControlPlane(#[from] StartError),
    /// The client could not be built.
    #[error("the demo's client: {0}")]
    Client(#[from] lookaside_client::ClientError),
    /// The client had no usable endpoint in time.
    #[error("the client had no usable backend after {0:?}")]
    NotReady(Duration),
}
