//! The snapshot task: one new snapshot per weight change.

use std::sync::Arc;

use tokio::sync::watch;

use super::client_cap::{over_cap, report};
use super::{Snapshot, build};
use crate::weigh::Weighted;

/// Publishes a snapshot for every change of `weighted`. The receiver starts
/// with the snapshot of the current weights.
pub fn run(mut weighted: watch::Receiver<Arc<Weighted>>) -> watch::Receiver<Arc<Snapshot>> {
    let current = weighted.borrow_and_update().clone();
    let mut over = over_cap(&current);
    report(&Default::default(), &over);
    let first = build(current, 0, None);
    tracing::info!(version = %first.version, "initial snapshot");
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        let mut sequence = 0;
        while weighted.changed().await.is_ok() {
            let current = weighted.borrow_and_update().clone();
            let now_over = over_cap(&current);
            report(&over, &now_over);
            over = now_over;
            let previous = tx.borrow().clone();
            sequence += 1;
            let next = build(current, sequence, Some(&previous));
            if next.version == previous.version {
                continue;
            }
            tracing::info!(version = %next.version, sequence, "new snapshot");
            tx.send_replace(Arc::new(next));
        }
    });
    rx
}
