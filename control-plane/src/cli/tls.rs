//! `lookaside serve`'s TLS flags: the gRPC listeners' certificate and
//! client CA, and the ORCA connections' CA and client certificate.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::tls::{OrcaTlsFiles, TlsFiles};

/// TLS of every connection the control plane accepts or makes.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// PEM certificate chain: serve TLS on the gRPC listeners (with
    /// `--tls-key`). Without it they are plaintext.
    #[arg(long, env = "LOOKASIDE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "LOOKASIDE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA: require clients to present a certificate it signed (mutual
    /// TLS). Needs `--tls-cert`.
    #[arg(long, env = "LOOKASIDE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// How often TLS files are re-read, in milliseconds. A changed set that
    /// loads is used for new connections; open streams keep theirs.
    #[arg(long, env = "LOOKASIDE_TLS_RELOAD_MS", default_value_t = 5000)]
    pub tls_reload_ms: u64,
    /// PEM CA of the backends' ORCA certificates: connect to ORCA ports
    /// over TLS. Without it ORCA streams are plaintext.
    #[arg(long, env = "LOOKASIDE_ORCA_TLS_CA")]
    pub orca_tls_ca: Option<PathBuf>,
    /// PEM client certificate for backends that require one (with
    /// `--orca-tls-key`).
    #[arg(long, env = "LOOKASIDE_ORCA_TLS_CERT", requires_all = ["orca_tls_key", "orca_tls_ca"])]
    pub orca_tls_cert: Option<PathBuf>,
    /// PEM private key of `--orca-tls-cert`.
    #[arg(long, env = "LOOKASIDE_ORCA_TLS_KEY", requires = "orca_tls_cert")]
    pub orca_tls_key: Option<PathBuf>,
    /// The name the backends' certificates carry (e.g.
    /// `greeter.default.svc`); without it each endpoint's IP address must
    /// be in its certificate.
    #[arg(long, env = "LOOKASIDE_ORCA_TLS_SERVER_NAME", requires = "orca_tls_ca")]
    pub orca_tls_server_name: Option<String>,
}

impl TlsArgs {
    /// The listeners' TLS files, if TLS is on.
    pub fn listener(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The ORCA connections' TLS files, if TLS is on for them.
    pub fn orca(&self) -> Option<OrcaTlsFiles> {
        Some(OrcaTlsFiles {
            ca: self.orca_tls_ca.clone()?,
            cert: self.orca_tls_cert.clone(),
            key: self.orca_tls_key.clone(),
            server_name: self.orca_tls_server_name.clone(),
        })
    }

    /// How often the files are re-read.
    pub fn reload(&self) -> Duration {
        Duration::from_millis(self.tls_reload_ms.max(100))
    }
}
