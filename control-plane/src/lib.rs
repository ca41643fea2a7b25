//! Lookaside control plane.
//!
//! Data flows one way through these stages, each owning its state and
//! publishing the next one over a `tokio::sync::watch` channel (one writer,
//! many cheap readers):
//!
//! `sources` (what endpoints exist) -> `registry` (merged, per cluster) ->
//! `weigh` (weight policy) -> `snapshot` (immutable, versioned xDS resources,
//! encoded once) -> `xds` (ADS streams that diff each client's state against
//! the latest snapshot and send what changed).
//!
//! `admin` and `telemetry` only read. No stage reaches backwards.
//! `closing` is how the streaming services (ADS, LRS) end a stream.
//!
//! `demo` runs all of it in one process, with modelled backends and a
//! client, for `lookaside demo`.

pub mod admin;
pub mod cli;
mod closing;
pub mod demo;
pub mod load;
pub mod registry;
pub mod server;
pub mod snapshot;
pub mod sources;
pub mod telemetry;
pub mod tls;
pub mod weigh;
pub mod xds;

/// What the fuzz targets in `control-plane/fuzz` drive that the public API
/// does not reach. Not an API: it may change with the targets.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::xds::fuzzing::AdsStream;
}
