//! Per-server and per-stream limits of the ADS server.

/// Limits applied to every ADS stream.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent ADS streams per server.
    pub max_streams: usize,
    /// Resource names in one request.
    pub max_names_per_request: usize,
    /// Resource names one stream may be subscribed to, over every type.
    /// Keep each type's share at most `max_names_per_request`: a Delta
    /// client names all it holds of a type in the first request after a
    /// reconnect.
    pub max_subscriptions_per_stream: usize,
    /// Size of one decoded request message, in bytes.
    pub max_request_bytes: usize,
    /// Distinct unknown type URLs one stream may ask for.
    pub max_unknown_types: usize,
    /// Requests per second one stream may send (bursts of twice that);
    /// 0 for no limit. ACKs and NACKs of the latest response are free: they
    /// are bounded by what the server sends.
    pub max_requests_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_streams: 50_000,
            max_names_per_request: 10_000,
            max_subscriptions_per_stream: 10_000,
            max_request_bytes: 4 * 1024 * 1024,
            max_unknown_types: 16,
            max_requests_per_second: 100,
        }
    }
}

impl Limits {
    /// The most clusters one client can follow whole: a wildcard-CDS
    /// Envoy subscribes EDS to every cluster it is sent, in one request
    /// (the wildcard itself names none).
    pub fn clusters_one_client_can_follow(&self) -> usize {
        self.max_names_per_request
            .min(self.max_subscriptions_per_stream)
    }
}

/// Whether the served clusters fit what one client can follow, tracked so
/// that only a change is reported.
#[derive(Debug, Default)]
pub(crate) struct FollowableClusters {
    over: bool,
}

impl FollowableClusters {
    /// `Some(true)` when `clusters` just went over `limits`, `Some(false)`
    /// when it just came back under, else `None`.
    pub(crate) fn observe(&mut self, clusters: usize, limits: &Limits) -> Option<bool> {
        let over = clusters > limits.clusters_one_client_can_follow();
        (over != self.over).then(|| {
            self.over = over;
            over
        })
    }
}

/// Warns (once per crossing) while more clusters are served than one
/// client can follow: a wildcard-CDS Envoy's EDS request would be refused.
pub(crate) async fn warn_when_clusters_outgrow(
    mut snapshots: tokio::sync::watch::Receiver<std::sync::Arc<crate::snapshot::Snapshot>>,
    limits: Limits,
) {
    let mut followable = FollowableClusters::default();
    loop {
        let clusters = snapshots
            .borrow_and_update()
            .resources(crate::snapshot::ResourceType::Cluster)
            .len();
        match followable.observe(clusters, &limits) {
            Some(true) => tracing::warn!(
                clusters,
                followable = limits.clusters_one_client_can_follow(),
                "more clusters served than one client can follow: a wildcard-CDS Envoy's \
                 EDS request will be refused; raise --xds-max-names-per-request and \
                 --xds-max-subscriptions-per-stream"
            ),
            Some(false) => tracing::info!(
                clusters,
                "the served clusters fit what one client can follow again"
            ),
            None => {}
        }
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_the_followable_cluster_count_is_reported_once_each_way() {
        let limits = Limits::default();
        // 10,000 names per request and subscriptions per stream.
        assert_eq!(limits.clusters_one_client_can_follow(), 10_000);
        let mut followable = FollowableClusters::default();
        assert_eq!(followable.observe(100, &limits), None);
        assert_eq!(followable.observe(10_001, &limits), Some(true));
        assert_eq!(followable.observe(12_000, &limits), None);
        assert_eq!(followable.observe(10_000, &limits), Some(false));
        assert_eq!(followable.observe(10, &limits), None);
        let tight = Limits {
            max_subscriptions_per_stream: 500,
            ..Limits::default()
        };
        assert_eq!(tight.clusters_one_client_can_follow(), 500);
    }
}
