//! TLS of the control plane's own connections to backends' ORCA ports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::TlsError;
use super::files::certificates;
use super::reload::FileSet;

/// PEM files for ORCA connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrcaTlsFiles {
    /// The CA that signed the backends' certificates.
    pub ca: PathBuf,
    /// The control plane's client certificate, for backends that require
    /// one (with `key`).
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// The name the backends' certificates carry; `None` checks the
    /// endpoint's IP address against the certificate's IP SANs.
    pub server_name: Option<String>,
}

/// A checked client configuration, used for each new ORCA connection.
#[derive(Debug, Clone)]
pub struct OrcaTls(pub ClientTlsConfig);

impl FileSet for OrcaTlsFiles {
    type Output = OrcaTls;
    const NAME: &'static str = "orca";

    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.ca.as_path()];
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            paths.push(cert);
            paths.push(key);
        }
        paths
    }

    fn build(&self, contents: &[Vec<u8>]) -> Result<OrcaTls, TlsError> {
        let Some(ca) = contents.first() else {
            return Err(TlsError::Pem {
                path: self.ca.clone(),
                what: "missing file contents".into(),
            });
        };
        // Checked here so a bad file is refused when read, not at the
        // next connection.
        certificates(&self.ca, ca)?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let (Some(cert_path), Some(key_path), [_, cert, key]) = (&self.cert, &self.key, contents)
        {
            // Built once here only to check the pair matches (tonic builds
            // its own at each connection): a mismatched pair is refused
            // when read, not at every connect.
            let chain = certificates(cert_path, cert)?;
            let private = PrivateKeyDer::from_pem_slice(key).map_err(|error| TlsError::Pem {
                path: key_path.clone(),
                what: format!("no usable private key: {error}"),
            })?;
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_root_certificates(RootCertStore::empty())
            .with_client_auth_cert(chain, private)
            .map_err(TlsError::Rustls)?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(OrcaTls(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_file;

    fn files() -> OrcaTlsFiles {
        OrcaTlsFiles {
            ca: "ca.pem".into(),
            cert: Some("client.pem".into()),
            key: Some("client.key".into()),
            server_name: None,
        }
    }

    #[test]
    fn a_matching_client_pair_loads_and_a_mismatched_one_is_refused() {
        let ca = test_file("ca.pem");
        let good = files().build(&[ca.clone(), test_file("client.pem"), test_file("client.key")]);
        assert!(good.is_ok(), "{:?}", good.err());
        let bad = files().build(&[ca, test_file("client.pem"), test_file("server.key")]);
        assert!(bad.is_err(), "a key of another certificate was accepted");
    }
}
