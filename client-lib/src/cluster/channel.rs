//! The `tower::Service` generated tonic clients call through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::Status;
use tonic::body::Body;
use tower::Service;
use tracing::Instrument;

use super::EndpointSet;
use super::retry;
use crate::endpoint::{Connection, Deadline, RequestBody};
use crate::telemetry::ClusterMetrics;

/// Balances calls over a cluster's usable endpoints by weight. Cheap to
/// clone (one reference count: a call clones it); clones share everything.
#[derive(Debug, Clone)]
pub struct LbChannel {
    shared: Arc<Shared>,
}

/// Also the cluster's lifetime: when the last clone drops, `published`
/// closes and the balancer task ends (see `ClusterBalancer`).
#[derive(Debug)]
struct Shared {
    name: Box<str>,
    set: Arc<ArcSwap<EndpointSet>>,
    published: watch::Receiver<()>,
    first_assignment_timeout: Duration,
    metrics: ClusterMetrics,
}

impl LbChannel {
    pub(super) fn new(
        name: &str,
        set: Arc<ArcSwap<EndpointSet>>,
        published: watch::Receiver<()>,
        first_assignment_timeout: Duration,
        metrics: ClusterMetrics,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                name: name.into(),
                set,
                published,
                first_assignment_timeout,
                metrics,
            }),
        }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.shared.name
    }

    /// Whether some endpoint can take a call now.
    pub fn is_usable(&self) -> bool {
        self.shared.set.load().usable() > 0
    }

    /// Endpoints taking calls now (not ejected).
    pub fn usable_endpoints(&self) -> usize {
        self.shared.set.load().usable()
    }

    /// Endpoints in the latest assignment, usable or not (0 before the
    /// first).
    pub fn assigned_endpoints(&self) -> usize {
        self.shared.set.load().assigned_endpoints
    }

    /// Picks an endpoint not in `tried` (each with whether its connection
    /// failed): a few weighted draws, then (the draws keep landing on tried
    /// endpoints, as they do when the tried ones carry most of the weight)
    /// the first untried endpoint, then, if the connection to every usable
    /// endpoint failed, one of a lower tier (the balancer is about to fail
    /// over).
    fn pick_untried(&self, tried: &[(SocketAddr, bool)]) -> Option<Connection> {
        let was_tried = |address| tried.iter().any(|(t, _)| *t == address);
        let failed = |address| tried.iter().any(|(t, failed)| *t == address && *failed);
        let set = self.shared.set.load();
        let endpoint = (0..4)
            .filter_map(|_| set.pick())
            .find(|endpoint| !was_tried(endpoint.address))
            .or_else(|| set.untried(was_tried))
            .or_else(|| set.fallback(failed, was_tried))?;
        endpoint.metrics.picks.increment(1);
        Some(endpoint.connection.clone())
    }

    /// Waits for the first assignment, up to the configured timeout or the
    /// call's deadline, whichever comes first.
    async fn assigned(&self, deadline: Option<Deadline>) -> Result<(), Status> {
        let mut published = self.shared.published.clone();
        let wait = async {
            while !self.shared.set.load().assigned {
                if published.changed().await.is_err() {
                    break;
                }
            }
        };
        let limit = tokio::time::Instant::now() + self.shared.first_assignment_timeout;
        match deadline {
            Some(deadline) if deadline.at < limit => tokio::time::timeout_at(deadline.at, wait)
                .await
                .map_err(|_| {
                    Status::deadline_exceeded(format!(
                        "cluster {}: deadline of {:?} passed before the first assignment",
                        self.shared.name, deadline.after
                    ))
                }),
            _ => tokio::time::timeout_at(limit, wait).await.map_err(|_| {
                Status::unavailable(format!(
                    "cluster {}: no assignment from the control plane within {:?}",
                    self.shared.name, self.shared.first_assignment_timeout
                ))
            }),
        }
    }
}

impl Service<http::Request<Body>> for LbChannel {
    type Response = http::Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Calls wait for the first assignment or fail fast with UNAVAILABLE
        // (a status tonic passes through); readiness never blocks.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        // Split here, not in the future: a value moved inside a future still
        // takes room in it, and one such future is allocated per call.
        let (parts, body) = request.into_parts();
        // Fixed once: retries share the call's deadline.
        let deadline = Deadline::of(&parts.headers);
        Box::pin(async move {
            if !this.shared.set.load().assigned {
                // Boxed: a rare wait should not grow every call's future.
                Box::pin(this.assigned(deadline)).await?;
            }
            let mut body = RequestBody::read(body).await?;
            // Endpoints not to try again, each with whether its connection
            // failed, and the one that may be tried once more (its
            // connection, not the endpoint, refused).
            let mut tried: Vec<(SocketAddr, bool)> = Vec::new();
            let mut spared: Option<SocketAddr> = None;
            let mut attempts = 0;
            let Some(mut connection) = this.pick_untried(&tried) else {
                let set = this.shared.set.load();
                return Err(Status::unavailable(format!(
                    "cluster {}: none of its {} endpoints is reachable",
                    this.shared.name, set.assigned_endpoints
                ))
                .into());
            };
            loop {
                let address = connection.address();
                // Only built when someone listens: formatting the fields
                // for nobody costs more than the pick.
                let span = if tracing::enabled!(tracing::Level::DEBUG) {
                    tracing::debug_span!("lookaside_call", cluster = %this.shared.name, endpoint = %address)
                } else {
                    tracing::Span::none()
                };
                attempts += 1;
                let attempt = crate::endpoint::call(&connection, &parts, &mut body, deadline);
                let error = match attempt.instrument(span).await {
                    Ok(response) => return Ok(response),
                    Err(error) => error,
                };
                let failed = error.connection_failed();
                if failed {
                    // Eject the endpoint; the balancer probes it back.
                    connection.report_failure();
                }
                if !retry::may_retry(&error, body.replayable(), attempts) {
                    return Err(error.status(&this.shared.name).into());
                }
                // A stream refused, or past a graceful GOAWAY: the endpoint
                // is fine and its next connection may take the call.
                if failed || spared.replace(address).is_some() {
                    tried.push((address, failed));
                }
                // None left: this error says more than "none is reachable".
                let Some(next) = this.pick_untried(&tried) else {
                    return Err(error.status(&this.shared.name).into());
                };
                connection = next;
                this.shared.metrics.retries.increment(1);
                tracing::debug!(cluster = %this.shared.name, endpoint = %address, error = %crate::telemetry::error_chain(&error), "request not processed; trying again");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    /// One such future is allocated per call. At 1 KiB or less it comes
    /// from glibc's per-thread cache; above, every call takes the arena's
    /// slower path (it measured 1,432 bytes before the request head was
    /// built after the connection is ready).
    #[tokio::test]
    async fn a_calls_future_fits_in_a_kibibyte() {
        let (_balancer, mut channel) = super::super::ClusterBalancer::spawn(
            "sized",
            Default::default(),
            Duration::from_secs(1),
        );
        let future = channel.call(http::Request::new(Body::empty()));
        let size = std::mem::size_of_val(&*future);
        assert!(size <= 1024, "a call's future takes {size} bytes");
    }

    /// A channel over `serving` (address, weight) and `fallback` endpoints
    /// (one tier) of loopback ports nothing needs to answer on; no
    /// balancer behind it.
    fn channel_over(serving: &[(u16, u32)], fallback: &[u16]) -> LbChannel {
        let (failures, _reported) = mpsc::unbounded_channel();
        let endpoint = |port| {
            crate::endpoint::Endpoint::new(
                "test",
                loopback(port),
                &Default::default(),
                failures.clone(),
            )
        };
        let set = EndpointSet::new(
            serving
                .iter()
                .map(|&(port, w)| (endpoint(port), w))
                .collect(),
            vec![fallback.iter().map(|&port| endpoint(port)).collect()],
            serving.len() + fallback.len(),
        );
        let (_published, published) = watch::channel(());
        LbChannel::new(
            "test",
            Arc::new(ArcSwap::from_pointee(set)),
            published,
            Duration::from_secs(1),
            ClusterMetrics::new("test"),
        )
    }

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// With the tried endpoint carrying nearly all the weight, weighted
    /// draws keep landing on it; the untried one must still be found.
    #[tokio::test]
    async fn a_retry_finds_the_light_endpoint_beside_a_heavy_tried_one() {
        let channel = channel_over(&[(1, 999), (2, 1)], &[]);
        for _ in 0..1000 {
            let picked = channel
                .pick_untried(&[(loopback(1), false)])
                .map(|c| c.address());
            assert_eq!(picked, Some(loopback(2)));
        }
        assert!(
            channel
                .pick_untried(&[(loopback(1), false), (loopback(2), true)])
                .is_none()
        );
    }

    /// The connection to the serving tier's last endpoint failed and the
    /// balancer has not failed over yet: the retry goes to the next tier,
    /// spread over its endpoints, which no first attempt ever does, nor a
    /// retry after a refused stream.
    #[tokio::test]
    async fn a_retry_falls_back_on_the_next_tier_before_the_balancer_fails_over() {
        let channel = channel_over(&[(1, 1)], &[2, 3]);
        let serving = loopback(1);
        for _ in 0..100 {
            let picked = channel.pick_untried(&[]).map(|c| c.address());
            assert_eq!(
                picked,
                Some(serving),
                "first attempts stay on the serving tier"
            );
        }
        let refused = channel
            .pick_untried(&[(serving, false)])
            .map(|c| c.address());
        assert_eq!(refused, None, "a refused stream is no reason to fail over");
        let retried: std::collections::BTreeSet<u16> = (0..10)
            .filter_map(|_| channel.pick_untried(&[(serving, true)]))
            .map(|c| c.address().port())
            .collect();
        assert_eq!(retried, [2, 3].into(), "retries spread over the next tier");
        assert_eq!(channel.usable_endpoints(), 1, "the fallback is not serving");
        let all = [(serving, true), (loopback(2), true), (loopback(3), false)];
        assert!(channel.pick_untried(&all).is_none());
    }
}
