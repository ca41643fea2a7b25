//! One ADS stream's protocol state driven synchronously, for the fuzz
//! targets in `control-plane/fuzz`: the same [`Stream`] the server drives,
//! fed requests, snapshots and reads directly instead of through gRPC.
//!
//! Owns: nothing of its own. [`AdsStream::sotw_request`] and
//! [`AdsStream::delta_request`] take the steps of `server::receive` (rate
//! budget, unknown types, ACK/NACK and subscription), and the `next_*`
//! methods the send step of `server::drive`.
//! Must never: be used by the server, or grow protocol logic of its own:
//! what it exercises must be what the server runs.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use lookaside_proto::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};

use super::delta::Delta;
use super::sotw::Sotw;
use super::stream::{Protocol, Received, Stream};
use super::{Acks, DeltaResponse, Limits, SotwResponse, XdsError};
use crate::snapshot::{ResourceType, Snapshot};

/// One ADS stream. A stream speaks one protocol: feed it SotW or Delta
/// requests, not both.
#[derive(Debug)]
pub struct AdsStream {
    stream: Stream,
}

impl AdsStream {
    /// A new stream under `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            stream: Stream::new(1, "fuzz".into(), Arc::new(limits), Bytes::new()),
        }
    }

    /// Handles a state-of-the-world request received at `now`. `Ok(Some)`
    /// is the empty answer to a type the server does not serve; `Err` ends
    /// the stream.
    pub fn sotw_request(
        &mut self,
        request: &DiscoveryRequest,
        now: Instant,
    ) -> Result<Option<SotwResponse>, XdsError> {
        self.receive::<Sotw>(request, now)
    }

    /// Handles a Delta request received at `now`, as
    /// [`AdsStream::sotw_request`].
    pub fn delta_request(
        &mut self,
        request: &DeltaDiscoveryRequest,
        now: Instant,
    ) -> Result<Option<DeltaResponse>, XdsError> {
        self.receive::<Delta>(request, now)
    }

    /// A new snapshot was published.
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) {
        self.stream.on_snapshot(snapshot.built);
    }

    /// Whether the stream would send if the client read.
    pub fn wants_to_send(&self) -> bool {
        self.stream.wants_to_send()
    }

    /// The next state-of-the-world response against `snapshot`, if any.
    pub fn next_sotw(&mut self, snapshot: &Snapshot) -> Option<(ResourceType, SotwResponse)> {
        self.stream
            .next_response::<Sotw>(snapshot)
            .map(|(kind, response, _)| (kind, response))
    }

    /// The next Delta response against `snapshot`, if any.
    pub fn next_delta(&mut self, snapshot: &Snapshot) -> Option<(ResourceType, DeltaResponse)> {
        self.stream
            .next_response::<Delta>(snapshot)
            .map(|(kind, response, _)| (kind, response))
    }

    /// The ACK state of `kind`.
    pub fn acks(&self, kind: ResourceType) -> &Acks {
        &self.stream.type_state(kind).acks
    }

    /// `Stream::receive`, the server's own dispatch, without its metrics,
    /// logs and queue.
    fn receive<P: Protocol>(
        &mut self,
        request: &P::Request,
        now: Instant,
    ) -> Result<Option<P::Response>, XdsError> {
        Ok(match self.stream.receive::<P>(request, now)? {
            Received::UnknownType(empty) => empty,
            Received::Applied(..) => None,
        })
    }
}
