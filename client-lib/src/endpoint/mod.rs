//! One backend address and its long-lived HTTP/2 connection.
//!
//! Owns: the connection (made on demand, plain or TLS, keepalive PINGs so a
//! dead peer is found in seconds, connect timeout, no Nagle, replaced after
//! GOAWAY), the calls in flight on it (held back past the server's stream
//! limit, so a call h2 never sent is not lost with the connection),
//! sending one call on it (request and response bodies, flow control,
//! deadline), what each failure means, and whether the endpoint is
//! currently usable. Calls go from the caller's task straight onto the h2
//! connection (tonic's `Channel` adds a dispatch queue and a task per call,
//! which doubled the client's CPU per call; docs/BENCHMARKS.md).
//! Must never: pick endpoints or know about weights.

mod backoff;
mod call;
mod coalescing;
mod connection;
mod deadline;
mod dial;
mod error;
mod handle;
mod in_flight;
mod keepalive;
mod pipe;
mod request_body;
mod response_body;
mod settings;
mod tls;
mod tls_files;

pub(crate) use backoff::backoff;
pub(crate) use call::call;
pub(crate) use connection::Connection;
pub(crate) use connection::Failures;
pub use deadline::Deadline;
pub(crate) use dial::{Established, establish};
pub use error::EndpointError;
pub use handle::Endpoint;
pub use request_body::{MAX_REPLAYABLE, RequestBody};
pub use settings::{ConnectionSettings, ConnectionSettingsError};
pub use tls::{EndpointTls, TlsError};
