//! Following one cluster's assignment.

use xds_client::{ResourceEvent, ResourceWatcher};

use super::AssignmentResource;
use crate::cluster::ClusterBalancer;

/// Feeds every new valid assignment of the watched cluster to `balancer`
/// until the watch ends or nobody uses the cluster's channel any more
/// (dropping the watcher unsubscribes). A rejected (NACKed) or vanished
/// resource keeps the last good assignment serving; so does a control plane
/// that went away (the xDS client reconnects on its own and re-subscribes).
pub async fn follow(
    cluster: &str,
    mut watcher: ResourceWatcher<AssignmentResource>,
    balancer: ClusterBalancer,
) {
    let mut last: Option<AssignmentResource> = None;
    loop {
        let event = tokio::select! {
            event = watcher.next() => event,
            () = balancer.closed() => {
                tracing::debug!(cluster, "channel no longer used; unsubscribing");
                return;
            }
        };
        let Some(event) = event else {
            return;
        };
        match event {
            ResourceEvent::ResourceChanged {
                result: Ok(resource),
                done,
            } if resource.cluster != cluster => {
                // Never another cluster's endpoints. Defence in depth:
                // xds-client hands a named watch only its own resource, and
                // `Client::channel` never watches "" (a wildcard).
                tracing::warn!(cluster, other = %resource.cluster, "assignment of another cluster ignored");
                drop(done);
            }
            ResourceEvent::ResourceChanged {
                result: Ok(resource),
                done,
            } => {
                if last.as_ref() != Some(&*resource) {
                    tracing::info!(
                        cluster,
                        serving = resource.tiers.iter().map(Vec::len).sum::<usize>(),
                        tiers = resource.tiers.len(),
                        total = resource.total_endpoints,
                        "assignment received"
                    );
                    balancer.assign_with_failover(resource.tiers.clone());
                    last = Some((*resource).clone());
                }
                drop(done);
            }
            ResourceEvent::ResourceChanged {
                result: Err(error), ..
            } => {
                tracing::warn!(cluster, %error, "assignment unusable; keeping the last good one");
                balancer.rejected();
            }
            ResourceEvent::AmbientError { error, .. } => {
                tracing::warn!(cluster, %error, "xDS error; keeping the last good assignment");
            }
        }
    }
}
