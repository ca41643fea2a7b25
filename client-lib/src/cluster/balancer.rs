//! The single writer of a cluster's endpoint set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::accrual::{FailureAccrual, Penalties, Tier};
use super::{EndpointSet, LbChannel};
use crate::endpoint::{Connection, ConnectionSettings, Endpoint, Established, Failures};
use crate::load::ClusterLoads;
use crate::telemetry::ClusterMetrics;

/// Endpoints and weights for a cluster, as the control plane sent them.
pub type Assignment = Vec<(SocketAddr, u32)>;

/// One assigned endpoint: its handle, weight and priority tier (0 first).
#[derive(Debug)]
struct Assigned {
    endpoint: Endpoint,
    weight: u32,
    tier: usize,
}

/// How many probe reports may wait; a probe waits for room.
const RECOVERY_QUEUE: usize = 64;

/// How many reports of endpoints failing calls in a row may wait; more
/// are dropped (the run is reported again at its next doubling, at most 64
/// thresholds later).
const STREAK_QUEUE: usize = 64;

/// Feeds assignments to a cluster's balancer task.
///
/// The task (which owns the endpoints, their connections and probes) lives
/// while both this and some clone of the cluster's [`LbChannel`] do: when
/// the last channel clone drops, it ends and [`closed`](Self::closed)
/// resolves; when this drops, it ends and the channels keep serving the
/// last endpoint set.
#[derive(Debug)]
pub struct ClusterBalancer {
    assignments: watch::Sender<Option<Vec<Assignment>>>,
    metrics: ClusterMetrics,
    loads: Arc<ClusterLoads>,
}

impl ClusterBalancer {
    /// Starts the balancer task for cluster `name`, with the default
    /// [`FailureAccrual`]; returns its input and the channel calls go
    /// through (cheap to clone). `settings` are taken as they are (see
    /// [`ConnectionSettings::validate`]).
    pub fn spawn(
        name: &str,
        settings: ConnectionSettings,
        first_assignment_timeout: Duration,
    ) -> (Self, LbChannel) {
        let accrual = Some(FailureAccrual::default());
        Self::spawn_with_accrual(name, settings, first_assignment_timeout, accrual)
    }

    /// The same, with `accrual` (`None`: an endpoint is taken out only when
    /// its connection fails).
    pub fn spawn_with_accrual(
        name: &str,
        settings: ConnectionSettings,
        first_assignment_timeout: Duration,
        accrual: Option<FailureAccrual>,
    ) -> (Self, LbChannel) {
        let set = Arc::new(ArcSwap::from_pointee(EndpointSet::unassigned()));
        let (assignments, assignments_rx) = watch::channel(None);
        // Unbounded, yet at most one report per endpoint waits in it.
        let (failures_tx, failures_rx) = mpsc::unbounded_channel();
        let (published_tx, published_rx) = watch::channel(());
        let metrics = ClusterMetrics::new(name);
        let (streaks_tx, streaks_rx) = mpsc::channel(STREAK_QUEUE);
        let penalties = accrual.map(Penalties::new);
        let watch = penalties.as_ref().map(|p| p.watch(streaks_tx));
        let loads = ClusterLoads::watching(name, watch);
        let channel = LbChannel::new(
            name,
            set.clone(),
            published_rx,
            first_assignment_timeout,
            metrics.clone(),
        );
        let task = Task::new(
            name,
            settings,
            set,
            failures_tx,
            published_tx,
            metrics.clone(),
            (loads.clone(), penalties),
        );
        tokio::spawn(task.run(assignments_rx, failures_rx, streaks_rx));
        (
            Self {
                assignments,
                metrics,
                loads,
            },
            channel,
        )
    }

    /// Replaces the cluster's endpoints and weights.
    pub fn assign(&self, assignment: Assignment) {
        self.assign_with_failover(vec![assignment]);
    }

    /// Replaces the cluster's endpoints with tiers in priority order: calls
    /// go to the first tier that has a usable endpoint, so when every
    /// endpoint of a tier is ejected, the next one takes over until one
    /// recovers. Every tier's endpoints are connected at once and kept
    /// connected (a connection that ends is made again), so a failover
    /// finds its connections ready, and an endpoint that went away since
    /// already ejected; one that froze without closing its connection is
    /// found by the failover's first calls, which retry on the next one
    /// (or, with `ConnectionSettings::keepalive_while_idle`, by its idle
    /// connection's keepalive).
    /// An address in two tiers belongs to the first.
    pub fn assign_with_failover(&self, tiers: Vec<Assignment>) {
        self.assignments.send_replace(Some(tiers));
    }

    /// What the calls to each of the cluster's endpoints did, for load
    /// reports.
    pub(crate) fn loads(&self) -> Arc<ClusterLoads> {
        self.loads.clone()
    }

    /// Counts an assignment that was rejected (NACKed or unusable).
    pub fn rejected(&self) {
        self.metrics.rejected.increment(1);
    }

    /// Resolves once no clone of the cluster's channel is left (the task
    /// has ended): nobody needs its assignments any more.
    pub async fn closed(&self) {
        self.assignments.closed().await;
    }
}

struct Task {
    name: String,
    settings: ConnectionSettings,
    set: Arc<ArcSwap<EndpointSet>>,
    /// Where the endpoints' connections report their failures.
    failures: Failures,
    /// Every assigned endpoint, every tier.
    endpoints: BTreeMap<SocketAddr, Assigned>,
    /// The tier calls go to now, if any endpoint is usable.
    serving_tier: Option<usize>,
    /// The probe of each ejected endpoint. A probe stops when its endpoint
    /// recovers, is removed, or the balancer goes away: it never dials a
    /// removed pod's address forever.
    probes: HashMap<SocketAddr, (u64, AbortHandle)>,
    /// Number of the next probe: a probe reports its number with the
    /// address, so a report from an earlier probe of the same address
    /// (aborted after it had sent) is told apart and ignored.
    next_probe: u64,
    /// Endpoints out for failing calls in a row (failure accrual), if on.
    penalties: Option<Penalties>,
    /// Endpoints that failed a run but were kept in (their tier's cap was
    /// reached, or they were its last taking calls): looked at again when
    /// room may have freed (a penalty ended, an endpoint recovered, an
    /// assignment came), not only when their run is reported again (ever
    /// less often).
    kept: BTreeSet<SocketAddr>,
    published: watch::Sender<()>,
    metrics: ClusterMetrics,
    /// Where each new endpoint gets its call counters.
    loads: Arc<ClusterLoads>,
}

impl Task {
    /// A task with no endpoint yet; its endpoints count their calls on
    /// `loads`, whose runs of failures `penalties` watches (if on).
    fn new(
        name: &str,
        settings: ConnectionSettings,
        set: Arc<ArcSwap<EndpointSet>>,
        failures: Failures,
        published: watch::Sender<()>,
        metrics: ClusterMetrics,
        (loads, penalties): (Arc<ClusterLoads>, Option<Penalties>),
    ) -> Self {
        Self {
            name: name.to_string(),
            penalties,
            kept: BTreeSet::new(),
            settings,
            set,
            failures,
            endpoints: BTreeMap::new(),
            serving_tier: None,
            probes: HashMap::new(),
            next_probe: 0,
            published,
            metrics,
            loads,
        }
    }

    async fn run(
        mut self,
        mut assignments: watch::Receiver<Option<Vec<Assignment>>>,
        mut failures: mpsc::UnboundedReceiver<SocketAddr>,
        mut streaks: mpsc::Receiver<SocketAddr>,
    ) {
        let (recovered_tx, mut recovered) = mpsc::channel::<Recovered>(RECOVERY_QUEUE);
        loop {
            let next_return = self.penalties.as_ref().and_then(Penalties::next_return);
            tokio::select! {
                // No channel left: nothing will call through this cluster.
                () = self.published.closed() => return,
                changed = assignments.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let next = assignments.borrow_and_update().clone();
                    if let Some(next) = next {
                        self.apply(next);
                    }
                }
                Some(address) = failures.recv() => self.eject(address, &recovered_tx),
                Some(address) = streaks.recv() => {
                    self.penalise(address);
                }
                () = at(next_return) => self.bring_back(),
                Some((address, number, established)) = recovered.recv() => {
                    if let Some(connection) = self.recover(address, number) {
                        // The probe's connection is its connection now, so
                        // that it is watched again (an endpoint no call
                        // uses, a failover tier's, is otherwise never
                        // dialled) without connecting twice; before calls
                        // can find it usable.
                        connection.adopt(established);
                        self.reconsider();
                        self.publish();
                    }
                }
            }
        }
    }

    /// Takes a failed endpoint out of the set and probes it until it
    /// answers again.
    fn eject(&mut self, address: SocketAddr, recovered: &mpsc::Sender<Recovered>) {
        let Some(Assigned { endpoint, .. }) = self.endpoints.get(&address) else {
            return;
        };
        endpoint.connection.failure_taken();
        if !endpoint.set_usable(false) {
            return;
        }
        warn!(cluster = %self.name, endpoint = %address, "connection failed; endpoint ejected until it answers again");
        endpoint.metrics.ejections.increment(1);
        self.publish();
        let number = self.next_probe;
        self.next_probe += 1;
        let probe = tokio::spawn(probe(
            address,
            number,
            self.settings.clone(),
            recovered.clone(),
        ));
        if let Some((_, previous)) = self.probes.insert(address, (number, probe.abort_handle())) {
            previous.abort();
        }
    }

    /// Each priority tier's endpoints as failure accrual counts them.
    fn tiers(&self) -> BTreeMap<usize, Tier> {
        let mut tiers: BTreeMap<usize, Tier> = BTreeMap::new();
        let penalties = self.penalties.as_ref();
        for (address, assigned) in &self.endpoints {
            let tier = tiers.entry(assigned.tier).or_default();
            tier.assigned += 1;
            if penalties.is_some_and(|p| p.is_out(*address)) {
                tier.out.push(*address);
            } else if assigned.endpoint.is_usable() {
                tier.taking_calls += 1;
            }
        }
        tiers
    }

    /// The endpoint at `address` if failure accrual may take it out: on,
    /// assigned, not out already, not answered a call since its run, and
    /// connected (an ejected one is probed: its run starts over if it
    /// recovers).
    fn still_failing(&self, address: SocketAddr) -> Option<&Assigned> {
        let penalties = self.penalties.as_ref()?;
        let candidate = self.endpoints.get(&address)?;
        let failing = !penalties.is_out(address)
            && candidate.endpoint.connection.load().streak().reached()
            && candidate.endpoint.is_usable();
        failing.then_some(candidate)
    }

    /// A report: the endpoint at `address` failed a run of calls. Takes it
    /// out for a penalty if there is room, and publishes the set.
    fn penalise(&mut self, address: SocketAddr) {
        let Some(number) = self.still_failing(address).map(|candidate| candidate.tier) else {
            self.kept.remove(&address);
            return;
        };
        let mut tier = self.tiers().remove(&number).unwrap_or_default();
        if self.take_out(address, &mut tier) {
            self.publish();
        }
    }

    /// Takes out the endpoint at `address` of `tier` (counted, and counted
    /// again when it goes out) for a penalty, unless it is no longer
    /// failing, is the last of its tier taking calls, or its tier's cap is
    /// reached (then it is kept in, see `kept`); whether it did. The caller
    /// publishes.
    fn take_out(&mut self, address: SocketAddr, tier: &mut Tier) -> bool {
        let Some(candidate) = self.still_failing(address) else {
            self.kept.remove(&address);
            return false;
        };
        let load = candidate.endpoint.connection.load();
        let (run, answers) = (load.streak().run(), load.answers());
        let metrics = candidate.endpoint.metrics.clone();
        let Some(penalties) = self.penalties.as_mut() else {
            return false;
        };
        match penalties.take_out(address, tokio::time::Instant::now(), tier, answers) {
            Ok(penalty) => {
                warn!(cluster = %self.name, endpoint = %address, failures = run, ?penalty, "endpoint failed calls in a row; out for a penalty");
                metrics.penalties.increment(1);
                self.kept.remove(&address);
                tier.out.push(address);
                tier.taking_calls = tier.taking_calls.saturating_sub(1);
                true
            }
            Err(kept) => {
                debug!(cluster = %self.name, endpoint = %address, ?kept, "endpoint failed calls in a row; kept in");
                self.metrics.withheld.increment(1);
                self.kept.insert(address);
                false
            }
        }
    }

    /// Brings back the endpoints whose penalty is over.
    fn bring_back(&mut self) {
        let now = tokio::time::Instant::now();
        let due = self
            .penalties
            .as_ref()
            .map(|p| p.due(now))
            .unwrap_or_default();
        if due.is_empty() {
            return;
        }
        self.came_back(due, "its penalty is over");
        self.reconsider();
        self.publish();
    }

    /// Ends the penalties beyond each tier's cap once endpoints of it were
    /// removed (the caller reconsiders and publishes).
    fn trim_penalties(&mut self) {
        let Some(penalties) = &self.penalties else {
            return;
        };
        let connected = |address| {
            self.endpoints
                .get(&address)
                .is_some_and(|assigned| assigned.endpoint.is_usable())
        };
        let over: Vec<SocketAddr> = self
            .tiers()
            .values()
            .flat_map(|tier| penalties.over_cap(tier, connected))
            .collect();
        self.came_back(over, "its tier shrank below its cap");
    }

    /// Ends the penalties of `back`: each is taken out again (for twice as
    /// long, unless it answered a call since it was taken out) if it fails
    /// a call before answering one. The caller publishes.
    fn came_back(&mut self, back: Vec<SocketAddr>, why: &str) {
        let Some(penalties) = self.penalties.as_mut() else {
            return;
        };
        for address in &back {
            let Some(Assigned { endpoint, .. }) = self.endpoints.get(address) else {
                continue;
            };
            let load = endpoint.connection.load();
            penalties.end(*address, load.answers());
            load.streak().on_probation();
            info!(cluster = %self.name, endpoint = %address, why, "endpoint back after a penalty");
        }
    }

    /// Looks again at the endpoints kept in after a run of failures (see
    /// `kept`) when room may have freed: those still failing (no answer
    /// since) go out now if there is room; those no longer failing
    /// (answered since, ejected, removed) are forgotten. Counts the tiers
    /// once (a poison request can keep thousands in). The caller publishes.
    fn reconsider(&mut self) {
        if self.kept.is_empty() {
            return;
        }
        let mut tiers = self.tiers();
        for address in std::mem::take(&mut self.kept) {
            let (Some(penalties), Some(candidate)) = (&self.penalties, self.still_failing(address))
            else {
                continue;
            };
            let Some(tier) = tiers.get_mut(&candidate.tier) else {
                continue;
            };
            // No room: kept in, and not counted as withheld again (that
            // counts runs, not looks).
            if penalties.room(tier).is_err() {
                self.kept.insert(address);
                continue;
            }
            self.take_out(address, tier);
        }
    }

    /// Marks an endpoint whose probe `number` got through usable again;
    /// its connection if that changed anything (the caller gives it the
    /// probe's connection, then publishes the set).
    fn recover(&mut self, address: SocketAddr, number: u64) -> Option<Connection> {
        if !matches!(self.probes.get(&address), Some((current, _)) if *current == number) {
            debug!(cluster = %self.name, endpoint = %address, "report of an earlier probe ignored");
            return None;
        }
        self.probes.remove(&address);
        let Assigned { endpoint, .. } = self.endpoints.get(&address)?;
        if !endpoint.set_usable(true) {
            return None;
        }
        info!(cluster = %self.name, endpoint = %address, "endpoint reachable again");
        // A new connection (often a restarted server): its run of failures
        // starts over.
        endpoint.connection.load().streak().answered();
        endpoint.metrics.recoveries.increment(1);
        Some(endpoint.connection.clone())
    }

    fn apply(&mut self, tiers: Vec<Assignment>) {
        let mut next: BTreeMap<SocketAddr, Assigned> = BTreeMap::new();
        for (tier, assignment) in tiers.into_iter().enumerate() {
            for (address, weight) in assignment {
                // An address listed twice (in two localities, say) is one
                // endpoint with both weights: two Endpoints for one address
                // would replace each other's connection on every update.
                if let Some(assigned) = next.get_mut(&address) {
                    if assigned.tier == tier {
                        assigned.weight = assigned.weight.saturating_add(weight);
                    }
                    continue;
                }
                let endpoint = match self.endpoints.remove(&address) {
                    Some(Assigned { endpoint, .. }) => endpoint,
                    None => {
                        debug!(cluster = %self.name, endpoint = %address, tier, "endpoint added");
                        Endpoint::new(
                            &self.name,
                            address,
                            &self.settings,
                            self.failures.clone(),
                            self.loads.endpoint(address),
                        )
                    }
                };
                next.insert(
                    address,
                    Assigned {
                        endpoint,
                        weight,
                        tier,
                    },
                );
            }
        }
        // What is left was removed: dropping our clone lets in-flight calls
        // finish on theirs, then the connection closes. Its probe stops.
        for (address, removed) in &self.endpoints {
            debug!(cluster = %self.name, endpoint = %address, "endpoint removed");
            removed.endpoint.connection.retire();
            if let Some((_, probe)) = self.probes.remove(address) {
                probe.abort();
            }
        }
        self.endpoints = next;
        if let Some(penalties) = self.penalties.as_mut() {
            penalties.retain(|address| self.endpoints.contains_key(address));
        }
        self.trim_penalties();
        // Once per assignment, not per endpoint made: the removed ones'
        // counters go once their last counts are reported (or past a cap).
        self.loads.forget_gone();
        self.metrics.assignments.increment(1);
        self.reconsider();
        self.publish();
    }

    /// Publishes the endpoints taking calls of the first tier that has any.
    fn publish(&mut self) {
        let out =
            |address: &SocketAddr| self.penalties.as_ref().is_some_and(|p| p.is_out(*address));
        // Tiers with an endpoint taking calls: there, penalties count. (In a
        // tier whose other endpoints were ejected since, an endpoint out for
        // failing calls takes them again: failure accrual never leaves a
        // tier without one.)
        let tiers = match &self.penalties {
            Some(_) => self.tiers(),
            None => BTreeMap::new(),
        };
        let penalties_count = |tier| tiers.get(&tier).is_some_and(|t| t.taking_calls > 0);
        // Connected (not ejected), and not out for failing calls.
        let takes_calls = |address: &SocketAddr, assigned: &Assigned| {
            assigned.endpoint.is_usable() && !(out(address) && penalties_count(assigned.tier))
        };
        let tier = self
            .endpoints
            .iter()
            .filter(|(address, assigned)| takes_calls(address, assigned))
            .map(|(_, assigned)| assigned.tier)
            .min();
        let mut usable: Vec<(Endpoint, u32)> = Vec::new();
        let mut lower: BTreeMap<usize, Vec<Endpoint>> = BTreeMap::new();
        for (address, assigned) in &self.endpoints {
            if !takes_calls(address, assigned) {
                continue;
            }
            if Some(assigned.tier) == tier {
                usable.push((assigned.endpoint.clone(), assigned.weight));
            } else {
                let endpoint = assigned.endpoint.clone();
                lower.entry(assigned.tier).or_default().push(endpoint);
            }
        }
        // Tiers count priorities that have a serving endpoint, from 0.
        match (std::mem::replace(&mut self.serving_tier, tier), tier) {
            (Some(from), Some(to)) if to > from => {
                warn!(cluster = %self.name, from, to, "no usable endpoint left in a tier; calls fail over to the next");
            }
            (Some(from), Some(to)) if to < from => {
                info!(cluster = %self.name, from, to, "calls back on a higher tier");
            }
            _ => {}
        }
        let fallback = lower.into_values().collect();
        let set = EndpointSet::new(usable, fallback, self.endpoints.len());
        debug!(cluster = %self.name, usable = set.usable(), assigned = set.assigned_endpoints, "endpoint set published");
        self.metrics.usable.set(set.usable() as f64);
        self.set.store(Arc::new(set));
        self.published.send_replace(());
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        for (_, probe) in self.probes.values() {
            probe.abort();
        }
        // The cluster is gone: none of its endpoints takes calls here.
        self.metrics.usable.set(0.0);
    }
}

/// Resolves at `instant`; never if `None`.
async fn at(instant: Option<tokio::time::Instant>) {
    match instant {
        Some(instant) => tokio::time::sleep_until(instant).await,
        None => std::future::pending().await,
    }
}

/// An endpoint's probe got through: its address, the probe's number and
/// the connection it made.
type Recovered = (SocketAddr, u64, Established);

/// Tries `address` with exponential backoff until it answers an HTTP/2
/// PING on a new connection (TLS included, when set).
async fn probe(
    address: SocketAddr,
    number: u64,
    settings: ConnectionSettings,
    recovered: mpsc::Sender<Recovered>,
) {
    let (initial, max) = (settings.probe_backoff_initial, settings.probe_backoff_max);
    for round in 0.. {
        // Give or take a fifth: the clients that ejected an endpoint at the
        // same moment do not all probe it at the same moment.
        tokio::time::sleep(crate::endpoint::backoff(initial, max, round)).await;
        if let Ok(established) = crate::endpoint::establish(address, &settings).await {
            let _ = recovered.send((address, number, established)).await;
            return;
        }
        if recovered.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str) -> Task {
        let settings = ConnectionSettings {
            probe_backoff_initial: Duration::from_millis(10),
            probe_backoff_max: Duration::from_millis(40),
            ..ConnectionSettings::default()
        };
        task_with(name, settings, (ClusterLoads::new(name), None))
    }

    /// A task whose connection failures and reports go nowhere.
    fn task_with(
        name: &str,
        settings: ConnectionSettings,
        counting: (Arc<ClusterLoads>, Option<Penalties>),
    ) -> Task {
        let (failures, _) = mpsc::unbounded_channel();
        let (published, _) = watch::channel(());
        let set = Arc::new(ArcSwap::from_pointee(EndpointSet::unassigned()));
        let metrics = ClusterMetrics::new(name);
        Task::new(name, settings, set, failures, published, metrics, counting)
    }

    /// Failures in a row that take an endpoint out in [`accruing`].
    const RUN: u32 = 3;

    /// A task whose endpoints are taken out after [`RUN`] failures in a
    /// row (reports are not read: tests call `penalise`).
    fn accruing(name: &str) -> Task {
        let (streaks, _) = mpsc::channel(STREAK_QUEUE);
        let penalties = Penalties::new(FailureAccrual {
            consecutive_failures: RUN,
            ..FailureAccrual::default()
        });
        let loads = ClusterLoads::watching(name, Some(penalties.watch(streaks)));
        task_with(
            name,
            ConnectionSettings::default(),
            (loads, Some(penalties)),
        )
    }

    /// `address` fails a run of calls; the task hears of it.
    fn fails_a_run(task: &mut Task, address: SocketAddr) {
        let assigned = task.endpoints.get(&address).expect("an assigned endpoint");
        for _ in 0..RUN {
            let load = assigned.endpoint.connection.load();
            load.issued();
            load.finished(crate::load::Outcome::EndpointFailed);
        }
        task.penalise(address);
    }

    /// The endpoints of the next 12 picks, each once, in address order.
    fn served(task: &Task) -> Vec<SocketAddr> {
        let set = task.set.load();
        let picked: std::collections::BTreeSet<SocketAddr> = (0..12)
            .filter_map(|_| set.pick().map(|e| e.address))
            .collect();
        picked.into_iter().collect()
    }

    fn local(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_out_for_a_penalty_serves_when_its_tier_has_no_other() {
        let mut task = accruing("alone");
        let (recovered, _keep_open) = mpsc::channel(1);
        let (a, b, c) = (local(20), local(21), local(22));
        task.apply(vec![vec![(a, 1), (b, 1), (c, 1)]]);
        fails_a_run(&mut task, a);
        assert_eq!(served(&task), vec![b, c], "a is out");
        task.eject(b, &recovered);
        assert_eq!(served(&task), vec![c]);
        task.eject(c, &recovered);
        assert_eq!(
            served(&task),
            vec![a],
            "the tier's only connected endpoint serves, penalty or not"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failure_accrual_never_makes_calls_fail_over() {
        let mut task = accruing("tiers");
        let (a, backup) = (local(20), local(21));
        task.apply(vec![vec![(a, 1)], vec![(backup, 1)]]);
        fails_a_run(&mut task, a);
        assert_eq!(served(&task), vec![a], "the last of its tier stays");
        assert!(!task.penalties.as_ref().is_some_and(|p| p.is_out(a)));
        assert!(task.kept.contains(&a), "kept in, not ignored");
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_kept_in_by_the_cap_is_taken_out_once_there_is_room() {
        let mut task = accruing("room");
        let (a, b, c) = (local(20), local(21), local(22));
        task.apply(vec![vec![(a, 1), (b, 1), (c, 1)]]);
        fails_a_run(&mut task, a);
        fails_a_run(&mut task, b);
        assert_eq!(served(&task), vec![b, c], "one of 3 out at most: b kept");
        // a's penalty (1 s, give or take a fifth) ends.
        tokio::time::advance(Duration::from_secs(2)).await;
        task.bring_back();
        assert_eq!(served(&task), vec![a, c], "b out at once, no failure more");
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovered_endpoints_run_starts_over() {
        let mut task = accruing("recovered");
        let (recovered, _keep_open) = mpsc::channel(1);
        let (a, b) = (local(20), local(21));
        task.apply(vec![vec![(a, 1), (b, 1)]]);
        task.eject(a, &recovered);
        // Its last calls before the connection went failed too.
        fails_a_run(&mut task, a);
        let number = task.probes.get(&a).map(|(number, _)| *number);
        recover(&mut task, a, number.unwrap_or_default());
        // A report of that run, read late (or its run's next report).
        task.penalise(a);
        assert_eq!(served(&task), vec![a, b], "not out for its last life's run");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tier_that_shrinks_brings_back_penalised_endpoints_beyond_its_cap() {
        let mut task = accruing("shrinks");
        let (a, b, c, d) = (local(20), local(21), local(22), local(23));
        task.apply(vec![vec![(a, 1), (b, 1), (c, 1), (d, 1)]]);
        fails_a_run(&mut task, a);
        fails_a_run(&mut task, b);
        fails_a_run(&mut task, c);
        assert_eq!(served(&task), vec![c, d], "half of 4 out at most");
        task.apply(vec![vec![(a, 1), (b, 1), (c, 1)]]);
        let served = served(&task);
        assert_eq!(served.len(), 2, "one of 3 out: {served:?}");
        assert!(served.contains(&c));
    }

    /// An address nothing listens on: every probe fails.
    const DEAD: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

    /// Lets the runtime run other tasks until `probe` has ended.
    async fn ended(probe: &AbortHandle) -> bool {
        for _ in 0..1000 {
            if probe.is_finished() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        false
    }

    /// Probe `number` of [`DEAD`] reports it back (with no connection to
    /// hand over: one is made).
    fn recover(task: &mut Task, address: SocketAddr, number: u64) {
        if let Some(connection) = task.recover(address, number) {
            connection.warm_up();
            task.publish();
        }
    }

    fn probing(task: &mut Task, recovered: &mpsc::Sender<Recovered>) -> AbortHandle {
        task.apply(vec![vec![(DEAD, 1)]]);
        task.eject(DEAD, recovered);
        task.probes
            .get(&DEAD)
            .map(|(_, probe)| probe.clone())
            .unwrap_or_else(|| panic!("an ejected endpoint is probed"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_endpoints_probe_stops() {
        let mut task = task("probed");
        let (recovered, _keep_open) = mpsc::channel(1);
        let probe = probing(&mut task, &recovered);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !probe.is_finished(),
            "the probe keeps trying a dead endpoint"
        );
        task.apply(Vec::new());
        assert!(ended(&probe).await, "the removed endpoint is still probed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_balancer_stops_its_probes() {
        let mut task = task("dropped");
        let (recovered, _keep_open) = mpsc::channel(1);
        let probe = probing(&mut task, &recovered);
        drop(task);
        assert!(ended(&probe).await, "the probe outlived its balancer");
    }

    #[tokio::test]
    async fn an_address_listed_twice_is_one_endpoint_with_both_weights() {
        let mut task = task("twice");
        let other = SocketAddr::from(([127, 0, 0, 1], 10));
        task.apply(vec![vec![(DEAD, 1), (other, 2), (DEAD, 1)]]);
        let weights: Vec<(SocketAddr, u32)> = task
            .endpoints
            .iter()
            .map(|(address, assigned)| (*address, assigned.weight))
            .collect();
        assert_eq!(weights, vec![(DEAD, 2), (other, 2)]);
        assert_eq!(task.set.load().usable(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_probes_late_report_is_ignored() {
        let mut task = task("late");
        let (recovered, _keep_open) = mpsc::channel(1);
        let _probe = probing(&mut task, &recovered);
        let usable = |task: &Task| task.endpoints.get(&DEAD).map(|a| a.endpoint.is_usable());
        assert_eq!(usable(&task), Some(false));
        let current = task.probes.get(&DEAD).map(|(number, _)| *number);
        // A probe from before the endpoint was removed and added again.
        recover(&mut task, DEAD, current.unwrap_or_default() + 1);
        assert_eq!(usable(&task), Some(false), "a stale report un-ejected it");
        assert!(
            task.probes.contains_key(&DEAD),
            "the current probe was forgotten"
        );
        recover(&mut task, DEAD, current.unwrap_or_default());
        assert_eq!(usable(&task), Some(true));
        assert!(task.probes.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn calls_fail_over_to_the_next_tier_while_a_tier_is_all_ejected() {
        let mut task = task("tiers");
        let (recovered, _keep_open) = mpsc::channel(1);
        let backup = SocketAddr::from(([127, 0, 0, 1], 10));
        // The backup is also listed in the first tier's place: ignored there.
        task.apply(vec![vec![(DEAD, 1)], vec![(backup, 1), (DEAD, 5)]]);
        assert_eq!(task.endpoints.len(), 2);
        assert_eq!(served(&task), vec![DEAD], "the first tier serves");
        let fallback = task
            .set
            .load()
            .fallback(|a| a == DEAD, |a| a == DEAD)
            .map(|e| e.address);
        assert_eq!(
            fallback,
            Some(backup),
            "a retry may fall back on the backup"
        );
        task.eject(DEAD, &recovered);
        assert_eq!(served(&task), vec![backup], "the backup takes over");
        assert_eq!(task.set.load().assigned_endpoints, 2);
        let number = task.probes.get(&DEAD).map(|(number, _)| *number);
        recover(&mut task, DEAD, number.unwrap_or_default());
        assert_eq!(served(&task), vec![DEAD], "back on the first tier");
        assert_eq!(
            task.endpoints.get(&DEAD).map(|a| (a.weight, a.tier)),
            Some((1, 0))
        );
    }
}
