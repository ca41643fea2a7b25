//! The gRPC listeners' PEM files and the rustls server configuration built
//! from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;
use super::reload::FileSet;

/// PEM files of the gRPC listeners' TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA
    /// (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// A checked server configuration, ready for new connections.
#[derive(Debug, Clone)]
pub struct ServerTls(pub Arc<rustls::ServerConfig>);

impl FileSet for TlsFiles {
    type Output = ServerTls;
    const NAME: &'static str = "listener";

    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cert.as_path(), self.key.as_path()];
        paths.extend(self.client_ca.as_deref());
        paths
    }

    fn build(&self, contents: &[Vec<u8>]) -> Result<ServerTls, TlsError> {
        let [cert, key, rest @ ..] = contents else {
            return Err(TlsError::Pem {
                path: self.cert.clone(),
                what: "missing file contents".into(),
            });
        };
        let chain = certificates(&self.cert, cert)?;
        let key = private_key(&self.key, key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?;
        let builder = match (&self.client_ca, rest.first()) {
            (Some(path), Some(ca)) => {
                let roots = root_store(path, ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(TlsError::ClientCa)?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(TlsError::Rustls)?;
        // gRPC is HTTP/2 only.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ServerTls(Arc::new(config)))
    }
}

/// Every certificate in `pem`, at least one.
pub(super) fn certificates(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("unreadable certificate: {error}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no CERTIFICATE block".into(),
        });
    }
    Ok(chain)
}

/// The private key in `pem` (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| TlsError::Pem {
        path: path.to_path_buf(),
        what: format!("no usable private key: {error}"),
    })
}

/// A root store of every certificate in `pem`.
fn root_store(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, pem)? {
        roots.add(cert).map_err(TlsError::Rustls)?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_file;

    fn files(client_ca: bool) -> TlsFiles {
        TlsFiles {
            cert: "server.pem".into(),
            key: "server.key".into(),
            client_ca: client_ca.then(|| "ca.pem".into()),
        }
    }

    #[test]
    fn builds_from_valid_files_with_h2() {
        let built = files(true)
            .build(&[
                test_file("server.pem"),
                test_file("server.key"),
                test_file("ca.pem"),
            ])
            .map(|tls| tls.0.alpn_protocols.clone());
        assert_eq!(built.ok(), Some(vec![b"h2".to_vec()]));
    }

    #[test]
    fn a_mismatched_key_is_rejected() {
        let error = files(false)
            .build(&[test_file("server.pem"), test_file("client.key")])
            .err()
            .map(|error| error.to_string());
        assert!(error.is_some(), "a key of another certificate was accepted");
    }

    #[test]
    fn a_truncated_certificate_names_its_file() {
        let mut cert = test_file("server.pem");
        cert.truncate(cert.len() / 2);
        let error = files(false)
            .build(&[cert, test_file("server.key")])
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("server.pem"), "{error}");
    }
}
