//! The single writer of a cluster's endpoint set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{EndpointSet, LbChannel};
use crate::endpoint::{ConnectionSettings, Endpoint};
use crate::telemetry::ClusterMetrics;

/// Endpoints and weights for a cluster, as the control plane sent them.
pub type Assignment = Vec<(SocketAddr, u32)>;

/// How many failure reports may wait; more are dropped (the endpoint is
/// already being ejected).
const FAILURE_QUEUE: usize = 64;

/// Owns a cluster's endpoints. Feed it assignments; hand out its channel.
#[derive(Debug)]
pub struct ClusterBalancer {
    assignments: watch::Sender<Option<Assignment>>,
    channel: LbChannel,
}

impl ClusterBalancer {
    /// Starts the balancer task for cluster `name`.
    pub fn spawn(
        name: &str,
        settings: ConnectionSettings,
        first_assignment_timeout: Duration,
    ) -> Self {
        let set = Arc::new(ArcSwap::from_pointee(EndpointSet::unassigned()));
        let (assignments, assignments_rx) = watch::channel(None);
        let (failures_tx, failures_rx) = mpsc::channel(FAILURE_QUEUE);
        let (published_tx, published_rx) = watch::channel(());
        let metrics = ClusterMetrics::new(name);
        let channel = LbChannel::new(
            name,
            set.clone(),
            failures_tx.clone(),
            published_rx,
            first_assignment_timeout,
            metrics.clone(),
        );
        let task = Task {
            name: name.to_string(),
            settings,
            set,
            failures: failures_tx,
            endpoints: BTreeMap::new(),
            published: published_tx,
            metrics: metrics.clone(),
        };
        tokio::spawn(task.run(assignments_rx, failures_rx));
        Self {
            assignments,
            channel,
        }
    }

    /// Replaces the cluster's endpoints and weights.
    pub fn assign(&self, assignment: Assignment) {
        self.assignments.send_replace(Some(assignment));
    }

    /// Counts an assignment that was rejected (NACKed or unusable).
    pub fn rejected(&self) {
        self.channel.metrics().rejected.increment(1);
    }

    /// The channel calls go through. Cheap to clone.
    pub fn channel(&self) -> LbChannel {
        self.channel.clone()
    }
}

struct Task {
    name: String,
    settings: ConnectionSettings,
    set: Arc<ArcSwap<EndpointSet>>,
    /// Where calls and connection attempts report failed connections.
    failures: mpsc::Sender<SocketAddr>,
    /// Every assigned endpoint with its weight.
    endpoints: BTreeMap<SocketAddr, (Endpoint, u32)>,
    published: watch::Sender<()>,
    metrics: ClusterMetrics,
}

impl Task {
    async fn run(
        mut self,
        mut assignments: watch::Receiver<Option<Assignment>>,
        mut failures: mpsc::Receiver<SocketAddr>,
    ) {
        let (recovered_tx, mut recovered) = mpsc::channel::<SocketAddr>(FAILURE_QUEUE);
        loop {
            tokio::select! {
                changed = assignments.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let next = assignments.borrow_and_update().clone();
                    if let Some(next) = next {
                        self.apply(next);
                    }
                }
                Some(address) = failures.recv() => {
                    if let Some((endpoint, _)) = self.endpoints.get(&address)
                        && endpoint.set_usable(false)
                    {
                        warn!(cluster = %self.name, endpoint = %address, "connection failed; endpoint ejected until it answers again");
                        endpoint.metrics.ejections.increment(1);
                        self.publish();
                        tokio::spawn(probe(address, self.settings.clone(), recovered_tx.clone()));
                    }
                }
                Some(address) = recovered.recv() => {
                    if let Some((endpoint, _)) = self.endpoints.get(&address)
                        && endpoint.set_usable(true)
                    {
                        info!(cluster = %self.name, endpoint = %address, "endpoint reachable again");
                        endpoint.metrics.recoveries.increment(1);
                        self.publish();
                    }
                }
            }
        }
    }

    fn apply(&mut self, assignment: Assignment) {
        let mut next = BTreeMap::new();
        for (address, weight) in assignment {
            let endpoint = match self.endpoints.remove(&address) {
                Some((endpoint, _)) => endpoint,
                None => {
                    debug!(cluster = %self.name, endpoint = %address, "endpoint added");
                    Endpoint::new(&self.name, address, &self.settings, self.failures.clone())
                }
            };
            next.insert(address, (endpoint, weight));
        }
        // What is left was removed: dropping our clone lets in-flight calls
        // finish on theirs, then the connection closes.
        for address in self.endpoints.keys() {
            debug!(cluster = %self.name, endpoint = %address, "endpoint removed");
        }
        self.endpoints = next;
        self.metrics.assignments.increment(1);
        self.publish();
    }

    fn publish(&self) {
        let usable: Vec<(Endpoint, u32)> = self
            .endpoints
            .values()
            .filter(|(endpoint, _)| endpoint.is_usable())
            .map(|(endpoint, weight)| (endpoint.clone(), *weight))
            .collect();
        let set = EndpointSet::new(usable, self.endpoints.len());
        debug!(cluster = %self.name, usable = set.usable(), assigned = set.assigned_endpoints, "endpoint set published");
        self.metrics.usable.set(set.usable() as f64);
        self.set.store(Arc::new(set));
        self.published.send_replace(());
    }
}

/// Tries to connect to `address` with exponential backoff until it answers.
async fn probe(
    address: SocketAddr,
    settings: ConnectionSettings,
    recovered: mpsc::Sender<SocketAddr>,
) {
    let mut delay = settings.probe_backoff_initial;
    loop {
        tokio::time::sleep(delay).await;
        let attempt = tokio::time::timeout(
            settings.connect_timeout,
            tokio::net::TcpStream::connect(address),
        )
        .await;
        if let Ok(Ok(_)) = attempt {
            let _ = recovered.send(address).await;
            return;
        }
        if recovered.is_closed() {
            return;
        }
        delay = (delay * 2).min(settings.probe_backoff_max);
    }
}
