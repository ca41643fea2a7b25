//! gRPC's wait-for-ready: a call that finds no usable endpoint waits for one
//! (until its deadline) instead of failing fast with UNAVAILABLE.
//!
//! Owns: the per-call marker, and the wait for the cluster's endpoint set
//! to have a usable endpoint.
//! Must never: hold a fail-fast call (the default) or wait past a call's
//! deadline.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::EndpointSet;

/// Marks one call wait-for-ready, as gRPC's per-call option does: if no
/// endpoint of the cluster is usable when it starts (none assigned yet, or
/// every one ejected), it waits for one until its deadline (without a
/// deadline, as long as it takes) instead of failing fast with UNAVAILABLE.
///
/// ```
/// # fn example() {
/// let mut request = tonic::Request::new(());
/// request.extensions_mut().insert(lookaside_client::WaitForReady);
/// # }
/// ```
///
/// For every call of a channel, see [`crate::LbChannel::wait_for_ready`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitForReady;

/// Resolves once `set` has a usable endpoint (at once if it has one):
/// `true`, or `false` when the cluster is gone.
pub(super) async fn usable(
    set: Arc<ArcSwap<EndpointSet>>,
    mut published: watch::Receiver<()>,
) -> bool {
    // Seen before looking: a set published after the look wakes it.
    published.mark_unchanged();
    while set.load().usable() == 0 {
        if published.changed().await.is_err() {
            return false;
        }
    }
    true
}
