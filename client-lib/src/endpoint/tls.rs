//! TLS towards endpoints: the rustls configuration a new connection
//! handshakes with (trusted CAs, a client certificate for mutual TLS, HTTP/2
//! by ALPN) and the name certificates are checked against, and the byte
//! stream a connection runs on, plain or TLS.
//!
//! Must never: read files (the application passes PEM bytes or its own
//! rustls configuration), or fall back to plaintext when TLS is set.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::tls_files::TlsFiles;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM input held nothing usable.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration (a key that does not match its
    /// certificate, say).
    #[error("rustls refused the {what}")]
    Rustls {
        /// What was being set up.
        what: &'static str,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// A TLS file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a DNS name or an IP address.
    #[error("{name:?} is not a valid server name")]
    ServerName {
        /// What was given.
        name: String,
    },
}

/// TLS for the connections to a client's endpoints. Cheap to clone.
///
/// Certificates are checked against the endpoint's IP address unless a
/// server name is set with [`server_name`](Self::server_name) (pod
/// certificates usually name the service, not the pod's IP).
#[derive(Debug, Clone)]
pub struct EndpointTls {
    config: Source,
    server_name: Option<ServerName<'static>>,
}

/// Where the rustls configuration comes from.
#[derive(Debug, Clone)]
enum Source {
    /// Built once.
    Fixed(Arc<rustls::ClientConfig>),
    /// Rebuilt when its files change.
    Files(Arc<TlsFiles>),
}

impl EndpointTls {
    /// Trusts the CA certificates in `ca_pem`; no client certificate.
    pub fn new(ca_pem: &[u8]) -> Result<Self, TlsError> {
        Ok(Self::from_config(client_config(ca_pem, None)?))
    }

    /// Trusts the CA certificates in `ca_pem` and presents the certificate
    /// chain `cert_pem` with its private key `key_pem` (mutual TLS).
    pub fn with_identity(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Ok(Self::from_config(client_config(
            ca_pem,
            Some((cert_pem, key_pem)),
        )?))
    }

    /// As [`new`](Self::new) (without `identity`) or
    /// [`with_identity`](Self::with_identity) (with a certificate file and
    /// a key file), from PEM files that may rotate: they are read now (an
    /// error if they do not load), and read again when one changes, as
    /// each new connection or probe finds. A changed set that does not load
    /// (half written, a key of another certificate) is logged, and new
    /// connections keep the previous one; connections already made keep
    /// theirs.
    pub fn from_files(
        ca: impl Into<std::path::PathBuf>,
        identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            config: Source::Files(Arc::new(TlsFiles::open(ca.into(), identity)?)),
            server_name: None,
        })
    }

    /// An application's own rustls configuration; its ALPN protocols are
    /// replaced by HTTP/2's (gRPC speaks nothing else).
    pub fn from_config(mut config: rustls::ClientConfig) -> Self {
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self {
            config: Source::Fixed(Arc::new(config)),
            server_name: None,
        }
    }

    /// Checks every endpoint's certificate against `name` (a DNS name or an
    /// IP address) instead of the endpoint's IP address; a DNS name is also
    /// the `:authority` of requests (with the endpoint's port).
    pub fn server_name(mut self, name: &str) -> Result<Self, TlsError> {
        let parsed = ServerName::try_from(name.to_string()).map_err(|_| TlsError::ServerName {
            name: name.to_string(),
        })?;
        self.server_name = Some(parsed);
        Ok(self)
    }

    /// The configured server name, if it is a DNS name (requests then
    /// carry it as their `:authority`).
    pub(crate) fn dns_name(&self) -> Option<&str> {
        match &self.server_name {
            Some(ServerName::DnsName(name)) => Some(name.as_ref()),
            _ => None,
        }
    }

    /// Runs the TLS handshake on `tcp`, a connection to `address`.
    pub(crate) async fn handshake(
        &self,
        address: SocketAddr,
        tcp: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()));
        let config = match &self.config {
            Source::Fixed(config) => config.clone(),
            Source::Files(files) => files.current().await,
        };
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }
}

/// A configuration trusting the CAs in `ca_pem` and presenting `identity`
/// (a certificate chain and its key, PEM) when given, speaking HTTP/2.
pub(super) fn client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = builder(ca_pem)?;
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain = certificates("client certificate", cert_pem)?;
            let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| TlsError::Pem {
                what: "client key",
                reason: format!("no usable private key: {error}"),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Rustls {
                    what: "client certificate and key",
                    source,
                })?
        }
    };
    // gRPC speaks nothing else.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A configuration builder trusting the CAs in `ca_pem`, on ring (not the
/// process-wide default provider, which an application may not have set).
fn builder(
    ca_pem: &[u8],
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, TlsError>
{
    let mut roots = RootCertStore::empty();
    for certificate in certificates("CA", ca_pem)? {
        roots.add(certificate).map_err(|source| TlsError::Rustls {
            what: "CA certificate",
            source,
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_root_certificates(roots))
}

/// Every certificate in `pem`, at least one.
fn certificates(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what,
            reason: format!("unreadable certificate: {error}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(chain)
}

/// The byte stream a connection runs on.
#[derive(Debug)]
pub(crate) enum Io {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: its buffers are large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(tcp) => tcp.is_write_vectored(),
            Io::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The control plane's test certificates (control-plane/tests/tls).
    pub(in crate::endpoint) fn fixture_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../control-plane/tests/tls")
            .join(name)
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = fixture_path(name);
        std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    #[test]
    fn builds_with_h2_and_refuses_what_cannot_work() {
        let tls = client_config(&fixture("ca.pem"), None).map(|config| config.alpn_protocols);
        assert_eq!(tls.ok(), Some(vec![b"h2".to_vec()]));
        let mutual = EndpointTls::with_identity(
            &fixture("ca.pem"),
            &fixture("client.pem"),
            &fixture("client.key"),
        );
        assert!(mutual.is_ok(), "{:?}", mutual.err());
        let mismatched = EndpointTls::with_identity(
            &fixture("ca.pem"),
            &fixture("client.pem"),
            &fixture("server.key"),
        );
        assert!(
            matches!(mismatched, Err(TlsError::Rustls { .. })),
            "{mismatched:?}"
        );
        assert!(matches!(
            EndpointTls::new(b"not pem"),
            Err(TlsError::Pem { .. })
        ));
        let named =
            EndpointTls::new(&fixture("ca.pem")).and_then(|tls| tls.server_name("bad name!"));
        assert!(matches!(named, Err(TlsError::ServerName { .. })));
    }
}
