//! Waiting on a cluster's endpoint set: for its first assignment, and for
//! gRPC's wait-for-ready calls, which wait for a usable endpoint (until
//! their deadline) instead of failing fast with UNAVAILABLE.
//!
//! Owns: the per-call marker, waiting until the published endpoint set
//! satisfies a condition, bounding a wait-for-ready wait by the call's
//! deadline, and the statuses such waits end with.
//! Must never: pick endpoints or decide which calls wait (the channel
//! does), or wait past a call's deadline when one is given.

use std::future::Future;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tonic::Status;

use super::EndpointSet;
use crate::endpoint::Deadline;

/// Marks one call wait-for-ready, as gRPC's per-call option does; see
/// [`crate::LbChannel::wait_for_ready`] for what such a call does (here
/// for this call only, on any channel).
///
/// ```
/// # fn example() {
/// let mut request = tonic::Request::new(());
/// request.extensions_mut().insert(lookaside_client::WaitForReady);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitForReady;

/// Waits until `found` finds something in the cluster's endpoint set (it is
/// asked at once, then after each set the balancer publishes). `None`: the
/// balancer has stopped, no set will follow.
pub(super) async fn until<T>(
    set: &ArcSwap<EndpointSet>,
    published: &watch::Receiver<()>,
    mut found: impl FnMut(&EndpointSet) -> Option<T>,
) -> Option<T> {
    let mut published = published.clone();
    // Seen before looking: a set published after the look wakes it.
    published.mark_unchanged();
    loop {
        if let Some(found) = found(&set.load()) {
            return Some(found);
        }
        if published.changed().await.is_err() {
            return None;
        }
    }
}

/// `wait` for a wait-for-ready call of `cluster`, up to the call's
/// deadline if it has one; `waiting` says for what, should it pass.
pub(super) async fn within<T>(
    cluster: &str,
    deadline: Option<Deadline>,
    waiting: &str,
    wait: impl Future<Output = T>,
) -> Result<T, Status> {
    let Some(deadline) = deadline else {
        return Ok(wait.await);
    };
    tokio::time::timeout_at(deadline.at, wait)
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "cluster {cluster}: deadline of {:?} passed while {waiting} (the call waits for \
                 one: wait for ready)",
                deadline.after
            ))
        })
}

/// The status of a wait-for-ready call whose cluster's balancer stopped
/// while it waited: nothing will become usable.
pub(super) fn stopped(cluster: &str) -> Status {
    Status::unavailable(format!(
        "cluster {cluster}: no endpoint usable, and its balancer has stopped (no assignment \
         will follow)"
    ))
}
