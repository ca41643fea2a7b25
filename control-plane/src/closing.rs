//! How a server stream (ADS, LRS) tells its client why it ends.
//!
//! Owns: the bounded wait for room for the last word, and the status a
//! shutting-down replica ends streams with.
//! Must never: wait on a client that does not read longer than
//! `CLOSE_WAIT` (a closing stream, and a shutdown, would hang on it).

use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;

/// How long a closing stream waits for room in its queue to tell the
/// client why.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Ends a stream with `last` (its status), after the response queued
/// before it: waits up to `CLOSE_WAIT` for the client to read that one
/// (dropped at once, the status would become OK trailers), never longer.
pub(crate) async fn close_with<I>(tx: &mpsc::Sender<I>, last: I) {
    let _ = tokio::time::timeout(CLOSE_WAIT, tx.send(last)).await;
}

/// Why a stream ends when its replica shuts down; `then` is what the
/// client should do elsewhere ("reconnect", "report").
pub(crate) fn shutting_down(then: &str) -> Status {
    Status::unavailable(format!(
        "control plane shutting down; {then} to another replica"
    ))
}
