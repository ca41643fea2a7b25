//! Why a load report stream ended.

/// Why an ORCA stream to an endpoint ended or could not open.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The endpoint's address does not make a URI (a defect).
    #[error("invalid endpoint URI: {0}")]
    Uri(#[source] tonic::transport::Error),
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    /// The server refused or broke the stream (UNIMPLEMENTED: it does not
    /// serve ORCA).
    #[error("ORCA stream failed: {} {}", .0.code(), .0.message())]
    Status(#[source] tonic::Status),
}
