//! The ADS server: state-of-the-world (`StreamAggregatedResources`) and
//! Delta (`DeltaAggregatedResources`) streams serving LDS, RDS, CDS and EDS.
//!
//! Owns: per-stream protocol state (subscriptions, versions, nonces,
//! ACK/NACK), the decision of what each client must be sent, and the view of
//! connected clients for the admin API.
//! Must never: build or encode resources (the snapshot did), or queue more
//! than one response per stream: a slow client gets the latest state when it
//! next can read.
//!
//! Both protocols share `subscription` (what a client asked for and has),
//! `acks` (nonce and ACK/NACK accounting) and `stream` (what to send next, in
//! ADS order); `sotw` and `delta` only phrase requests and responses.

mod acks;
mod body;
mod clients;
mod codec;
mod delta;
mod error;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod limits;
#[cfg(test)]
mod protocol_tests;
mod rate;
mod response;
mod server;
mod sotw;
mod stream;
mod subscription;
#[cfg(test)]
mod subscription_props;

pub use acks::{Acks, Nack};
pub(crate) use clients::MAX_NAMES_SHOWN;
pub use clients::{ClientView, Clients, TypeView};
pub use error::XdsError;
pub use limits::Limits;
pub(crate) use limits::warn_when_clusters_outgrow;
pub use response::{DeltaResponse, SotwResponse, Wire};
pub use server::AdsServer;

use crate::snapshot::ResourceType;
use acks::Reply;

fn log_reply(kind: ResourceType, reply: &Reply, protocol: &str) {
    match reply {
        Reply::Nack(nack) => tracing::warn!(
            r#type = kind.short_name(),
            protocol,
            version = %nack.rejected_version,
            nonce = %nack.nonce,
            error = %nack.message,
            "client NACKed; it keeps its last ACKed version"
        ),
        Reply::LateNack(nack) => tracing::warn!(
            r#type = kind.short_name(),
            protocol,
            nonce = %nack.nonce,
            error = %nack.message,
            "client NACKed an earlier response (a later one was already sent)"
        ),
        Reply::Stale => tracing::debug!(r#type = kind.short_name(), protocol, "stale nonce"),
        Reply::Ack => tracing::debug!(r#type = kind.short_name(), protocol, "ACK"),
        Reply::Fresh | Reply::Repeat => {}
    }
}
