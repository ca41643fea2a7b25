//! Transparent retry: a call whose request never reached a server may go to
//! another endpoint.
//!
//! As gRPC's own transparent retry, only requests that were not processed
//! are retried: the connection could not be made, the server refused the
//! stream (`REFUSED_STREAM`), or it was past the server's GOAWAY. A request
//! that may have reached the server (connection lost mid-call) is never
//! replayed. Only requests whose whole body is known up front (unary and
//! server-streaming calls) can be replayed; streaming request bodies are
//! passed through untouched.

use crate::endpoint::EndpointError;

/// Whether a call that failed with `error` may go to another endpoint: its
/// body can be sent again and the server never saw it.
pub(super) fn may_retry(error: &EndpointError, replayable: bool, tried: usize) -> bool {
    replayable && tried <= MAX_TRANSPARENT_RETRIES && error.unprocessed()
}

/// Extra attempts on other endpoints for a request no server processed.
const MAX_TRANSPARENT_RETRIES: usize = 2;

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
