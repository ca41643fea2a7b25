//! Why a TLS file set could not be used.

use std::path::PathBuf;

/// Why a TLS configuration could not be built from its files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read TLS file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind wanted.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the certificates or key (a key that does not match
    /// the certificate, an unsupported algorithm, a bad CA).
    #[error("TLS configuration rejected")]
    Rustls(#[source] rustls::Error),
    /// The client-certificate verifier could not be built from the CA.
    #[error("client CA rejected")]
    ClientCa(#[source] rustls::server::VerifierBuilderError),
}
