//! Transparent retry: a call whose request never reached a server may go to
//! another endpoint.
//!
//! As gRPC's own transparent retry, only requests that were not processed
//! are retried: the connection could not be made, the server refused the
//! stream (`REFUSED_STREAM`), or it was past the server's GOAWAY. A request
//! that may have reached the server (connection lost mid-call) is never
//! replayed. A failed connection excludes its endpoint from the call's
//! later attempts; a refused stream or a graceful GOAWAY spares it once
//! (its next connection may take the call, which matters when it is the
//! only endpoint). A body known up front (unary and server-streaming
//! calls) is sent again; a streaming request body only if no attempt took
//! it yet (the attempt failed before its stream opened). The cap holds for
//! fail-fast calls; a wait-for-ready call whose connections failed waits for
//! the balancer's next endpoint set and starts over (`may_requeue`).

use crate::endpoint::EndpointError;

/// Whether a call that failed with `error` on its `attempts`th attempt may
/// be tried again: its body can be sent again and the server never saw it.
pub(super) fn may_retry(error: &EndpointError, replayable: bool, attempts: usize) -> bool {
    replayable && attempts <= MAX_TRANSPARENT_RETRIES && error.unprocessed()
}

/// Extra attempts for a request no server processed.
const MAX_TRANSPARENT_RETRIES: usize = 2;

/// How a wait-for-ready call that failed goes on once it has no endpoint
/// left to try (gRPC queues such a call again). Not capped: each round
/// waits for a new endpoint set or a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Requeue {
    /// The connection failed: it waits for the balancer's next endpoint
    /// set (the endpoint is ejected, and probed back).
    NextSet,
    /// The endpoints answer but refused the call (a refused stream, a
    /// GOAWAY): it tries them again after a pause.
    Pause,
}

/// How a wait-for-ready call that failed with `error` goes on (see
/// [`Requeue`]); `None`: it fails, the request may have been processed or
/// its body cannot (`replayable`) be sent again.
pub(super) fn requeue(error: &EndpointError, replayable: bool) -> Option<Requeue> {
    if !replayable || !error.unprocessed() {
        None
    } else if error.connection_failed() {
        Some(Requeue::NextSet)
    } else {
        Some(Requeue::Pause)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn only_unprocessed_replayable_requests_are_retried_a_bounded_number_of_times() {
        let refused = EndpointError::Connect {
            address: SocketAddr::from(([127, 0, 0, 1], 1)),
            source: Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        };
        assert!(may_retry(&refused, true, 1));
        assert!(!may_retry(&refused, false, 1), "a streaming body is gone");
        assert!(!may_retry(&refused, true, 3), "at most two extra attempts");
        let reset = EndpointError::Response {
            address: SocketAddr::from(([127, 0, 0, 1], 1)),
            source: Arc::new(h2::Error::from(h2::Reason::CANCEL)),
        };
        assert!(
            !may_retry(&reset, true, 1),
            "the request may have been processed"
        );
    }
}
