//! TLS for every connection the control plane accepts (xDS, admin, LRS,
//! health, reflection) or makes (ORCA streams to backends), from PEM files
//! that are re-read while serving: a rotated certificate is used for new
//! connections while established ones, and their streams, carry on.
//!
//! Owns: reading and checking the PEM files, the reload loop, and the TLS
//! accept loop of the gRPC listeners.
//! Must never: drop an established connection on reload, or replace a
//! working configuration with one that failed to load.

mod acceptor;
mod client;
mod error;
mod files;
mod reload;

pub use acceptor::TlsIncoming;
pub use client::{OrcaTls, OrcaTlsFiles};
pub use error::TlsError;
pub use files::{ServerTls, TlsFiles};
pub use reload::{Reloading, reloading};

/// A test certificate or key from `control-plane/tests/tls/` (empty if
/// missing, which the tests then fail on).
#[cfg(test)]
fn test_file(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name);
    std::fs::read(path).unwrap_or_default()
}
