//! One backend address and its long-lived HTTP/2 connection.
//!
//! Owns: how a connection is configured (keepalive pings so a dead peer is
//! found in seconds, connect timeout, no Nagle) and whether the endpoint is
//! currently usable.
//! Must never: pick endpoints or know about weights.

mod connection;
mod settings;

pub use connection::Endpoint;
pub use settings::ConnectionSettings;
