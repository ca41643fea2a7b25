//! Clusters with more serving endpoints than lookaside-client accepts
//! (`lookaside_proto::limits::MAX_SERVING_ENDPOINTS`): its clients NACK
//! their assignment and keep their last one, so the operator is told.
//!
//! Owns: finding such clusters and the log line when one passes the cap
//! or comes back under it.
//! Must never: change what is served (other xDS clients take any size).

use std::collections::BTreeMap;

use lookaside_proto::limits::MAX_SERVING_ENDPOINTS;

use crate::registry::Health;
use crate::weigh::Weighted;

/// Clusters over the cap, with their serving endpoints.
pub(super) type OverCap = BTreeMap<String, usize>;

/// The clusters of `weighted` over the cap.
pub(super) fn over_cap(weighted: &Weighted) -> OverCap {
    weighted
        .clusters
        .iter()
        .filter_map(|(name, cluster)| {
            let serving = cluster
                .endpoints
                .iter()
                .filter(|endpoint| endpoint.health == Health::Healthy)
                .count();
            (serving > MAX_SERVING_ENDPOINTS).then(|| (name.clone(), serving))
        })
        .collect()
}

/// Logs each cluster that went over the cap since `before`, and each that
/// came back under it.
pub(super) fn report(before: &OverCap, now: &OverCap) {
    for (cluster, serving) in now {
        if !before.contains_key(cluster) {
            tracing::warn!(
                cluster,
                serving,
                cap = MAX_SERVING_ENDPOINTS,
                "more serving endpoints than lookaside-client accepts: its clients NACK this \
                 cluster's assignment and keep their last one"
            );
        }
    }
    for cluster in before.keys().filter(|cluster| !now.contains_key(*cluster)) {
        tracing::info!(cluster, "back under lookaside-client's endpoint cap");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weigh::weighted_for_test;

    #[test]
    fn only_serving_endpoints_count() {
        let ports: Vec<(u16, u32)> = (1..=u16::try_from(MAX_SERVING_ENDPOINTS + 1).unwrap())
            .map(|port| (port, 1))
            .collect();
        let over = weighted_for_test(&[("big", &ports), ("small", &ports[..3])]);
        let expected = BTreeMap::from([("big".to_string(), MAX_SERVING_ENDPOINTS + 1)]);
        assert_eq!(over_cap(&over), expected);
        // One of them draining: at the cap, not over it.
        let mut draining = (*over).clone();
        if let Some(big) = draining.clusters.get_mut("big") {
            std::sync::Arc::make_mut(big).endpoints[0].health = Health::Draining;
        }
        assert!(over_cap(&draining).is_empty());
    }
}
