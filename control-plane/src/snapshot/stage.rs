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
            let previous = tx.borrow().clone();
            sequence += 1;
            let next = build(current, sequence, Some(&previous));
            // The version hashes resources only: the first complete listing
            // is news even when it adds none (ADS streams and readiness
            // wait for it).
            if next.version == previous.version
                && next.weighted.complete == previous.weighted.complete
            {
                continue;
            }
            // Counted only for a new version: what is served (endpoints and
            // their health) is in it.
            let now_over = over_cap(&next.weighted);
            report(&over, &now_over);
            over = now_over;
            tracing::info!(version = %next.version, sequence, "new snapshot");
            tx.send_replace(Arc::new(next));
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_first_complete_listing_is_published_even_when_it_adds_nothing()
    -> Result<(), Box<dyn std::error::Error>> {
        // `--kube` with no opted-in Service yet: the listing completes and
        // adds no cluster.
        let (tx, rx) = watch::channel(Arc::new(Weighted::default()));
        let mut snapshots = run(rx);
        assert!(!snapshots.borrow_and_update().weighted.complete);
        let before = snapshots.borrow().version.clone();
        tx.send_replace(Arc::new(Weighted {
            complete: true,
            ..Weighted::default()
        }));
        tokio::time::timeout(
            Duration::from_secs(5),
            snapshots.wait_for(|s| s.weighted.complete),
        )
        .await??;
        assert_eq!(snapshots.borrow().version, before);
        Ok(())
    }
}
