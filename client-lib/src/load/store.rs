//! Every endpoint's counters, per cluster, and what a report carries: what
//! changed since the cluster's last report.
//!
//! Owns: the counters of every endpoint a cluster's balancer made (usable,
//! ejected, or removed with calls still on it) until their last counts are
//! reported. Must never: hand the reporter a count twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::count::{EndpointLoad, Totals};
use super::streak::StreakWatch;

/// Counters of endpoints gone whose last counts were not reported yet,
/// kept at most per cluster (the oldest go first): a client whose reports
/// stopped, or never started, keeps no more than these.
const MAX_GONE_UNREPORTED: usize = 256;

/// One cluster's endpoint counters: the balancer adds an entry per endpoint
/// it makes, the reporter reads them (and forgets those nobody counts on).
#[derive(Debug)]
pub(crate) struct ClusterLoads {
    name: Box<str>,
    /// Who hears of an endpoint's failures in a row, if anyone.
    streaks: Option<StreakWatch>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    entries: Vec<Entry>,
    /// When the counts in `reported` were taken (or counting started).
    since: Instant,
}

#[derive(Debug)]
struct Entry {
    address: SocketAddr,
    load: EndpointLoad,
    /// The counts at the last report.
    reported: Totals,
}

/// What one endpoint did since the last report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndpointReport {
    pub(crate) address: SocketAddr,
    /// Calls issued, succeeded and failed since the last report.
    pub(crate) delta: Totals,
    /// Calls in progress now.
    pub(crate) in_progress: u64,
}

/// One cluster's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterReport {
    pub(crate) cluster: String,
    /// The time the counts cover.
    pub(crate) interval: Duration,
    /// Endpoints with calls counted or in progress, by address.
    pub(crate) endpoints: Vec<EndpointReport>,
}

impl ClusterLoads {
    /// The counters of cluster `name`, none yet.
    #[cfg(test)]
    pub(crate) fn new(name: &str) -> Arc<Self> {
        Self::watching(name, None)
    }

    /// The same, the endpoints' failures in a row watched by `streaks`.
    pub(crate) fn watching(name: &str, streaks: Option<StreakWatch>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            streaks,
            state: Mutex::new(State {
                entries: Vec::new(),
                since: Instant::now(),
            }),
        })
    }

    /// The cluster's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counters for a new endpoint at `address`. An address removed and
    /// added again while calls were still on the old one gets new counters:
    /// a report adds both up.
    pub(crate) fn endpoint(&self, address: SocketAddr) -> EndpointLoad {
        let load = match &self.streaks {
            Some(watch) => EndpointLoad::watched(watch.clone(), address),
            None => EndpointLoad::default(),
        };
        self.state().entries.push(Entry {
            address,
            load: load.clone(),
            reported: Totals::default(),
        });
        load
    }

    /// What changed since the last report (or [`restart`](Self::restart)),
    /// as of `now`. Counters nobody holds any more (their endpoint is gone
    /// and its last call ended) are reported a last time and forgotten.
    pub(crate) fn take(&self, now: Instant) -> ClusterReport {
        let mut state = self.state();
        let interval = now.saturating_duration_since(state.since);
        state.since = now;
        let mut by_address: BTreeMap<SocketAddr, EndpointReport> = BTreeMap::new();
        state.entries.retain_mut(|entry| {
            // Looked at before the counts: once nobody else holds them,
            // they cannot change, so these counts are the last.
            let held = entry.load.is_shared();
            let totals = entry.load.totals();
            let delta = totals.since(&entry.reported);
            entry.reported = totals;
            let report = by_address.entry(entry.address).or_insert(EndpointReport {
                address: entry.address,
                delta: Totals::default(),
                in_progress: 0,
            });
            report.delta = report.delta.plus(&delta);
            report.in_progress = report.in_progress.saturating_add(totals.in_progress());
            held
        });
        ClusterReport {
            cluster: self.name.to_string(),
            interval,
            endpoints: by_address
                .into_values()
                .filter(|report| !report.delta.is_zero() || report.in_progress > 0)
                .collect(),
        }
    }

    /// Counting starts over at `now`: what happened before is not
    /// reported (a new LRS stream reports only what followed its start).
    pub(crate) fn restart(&self, now: Instant) {
        let mut state = self.state();
        state.since = now;
        for entry in &mut state.entries {
            entry.reported = entry.load.totals();
        }
    }

    /// Forgets the counters nobody holds any more whose counts were all
    /// reported, then, past [`MAX_GONE_UNREPORTED`] such, the oldest of
    /// those not reported (their last counts are lost). The balancer calls
    /// it once per assignment, so counters stay bounded without reports.
    pub(crate) fn forget_gone(&self) {
        let mut state = self.state();
        let entries = &mut state.entries;
        entries.retain_mut(|entry| entry.load.is_shared() || entry.load.totals() != entry.reported);
        let gone = entries
            .iter_mut()
            .map(|entry| !entry.load.is_shared())
            .filter(|gone| *gone)
            .count();
        let mut excess = gone.saturating_sub(MAX_GONE_UNREPORTED);
        if excess == 0 {
            return;
        }
        tracing::debug!(cluster = %self.name, dropped = excess, "counts of endpoints gone dropped unreported (no load report took them)");
        // The oldest first: entries are in the order they were made.
        entries.retain_mut(|entry| {
            let drop = excess > 0 && !entry.load.is_shared();
            excess -= usize::from(drop);
            !drop
        });
    }
}

/// Every cluster's counters in one client. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadStore(Arc<Mutex<Vec<Arc<ClusterLoads>>>>);

impl LoadStore {
    fn clusters_locked(&self) -> MutexGuard<'_, Vec<Arc<ClusterLoads>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a cluster's counters (a client makes one balancer per cluster,
    /// and adds it once).
    pub(crate) fn add(&self, loads: Arc<ClusterLoads>) {
        self.clusters_locked().push(loads);
    }

    /// Every cluster's counters.
    pub(crate) fn clusters(&self) -> Vec<Arc<ClusterLoads>> {
        self.clusters_locked().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Outcome;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_carries_what_changed_since_the_last_one_over_the_time_between() {
        let loads = ClusterLoads::new("greeter");
        let one = loads.endpoint(address(1));
        let _idle = loads.endpoint(address(2));
        one.issued();
        one.issued();
        one.finished(Outcome::Succeeded);
        tokio::time::advance(Duration::from_secs(2)).await;
        let first = loads.take(Instant::now());
        assert_eq!(first.interval, Duration::from_secs(2));
        assert_eq!(
            first.endpoints,
            vec![EndpointReport {
                address: address(1),
                delta: Totals {
                    issued: 2,
                    succeeded: 1,
                    failed: 0
                },
                in_progress: 1,
            }],
            "the idle endpoint is left out"
        );
        one.finished(Outcome::EndpointFailed);
        tokio::time::advance(Duration::from_secs(3)).await;
        let second = loads.take(Instant::now());
        assert_eq!(second.interval, Duration::from_secs(3));
        assert_eq!(
            second.endpoints[0].delta,
            Totals {
                issued: 0,
                succeeded: 0,
                failed: 1
            }
        );
        assert_eq!(second.endpoints[0].in_progress, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_endpoints_last_counts_are_reported_once_then_forgotten() {
        let loads = ClusterLoads::new("greeter");
        let gone = loads.endpoint(address(1));
        gone.issued();
        gone.finished(Outcome::EndpointFailed);
        drop(gone);
        let last = loads.take(Instant::now());
        assert_eq!(last.endpoints.len(), 1);
        assert_eq!(last.endpoints[0].delta.failed, 1);
        assert!(loads.state().entries.is_empty(), "forgotten");
        assert!(loads.take(Instant::now()).endpoints.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn without_reports_only_so_many_gone_endpoints_are_kept() {
        let loads = ClusterLoads::new("greeter");
        for port in 0..1000 {
            let gone = loads.endpoint(address(port));
            gone.issued();
            gone.finished(Outcome::Succeeded);
        }
        let live = loads.endpoint(address(5000));
        loads.forget_gone();
        assert_eq!(loads.state().entries.len(), MAX_GONE_UNREPORTED + 1);
        let report = loads.take(Instant::now());
        assert_eq!(
            report.endpoints.first().map(|e| e.address),
            Some(address(u16::try_from(1000 - MAX_GONE_UNREPORTED).unwrap())),
            "the newest are kept"
        );
        assert_eq!(loads.state().entries.len(), 1, "reported: forgotten");
        // Gone after its counts were reported: forgotten at the next
        // assignment, without waiting for a report.
        drop(live);
        let _another = loads.endpoint(address(5001));
        loads.forget_gone();
        assert_eq!(loads.state().entries.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_added_again_is_one_endpoint_in_the_report() {
        let loads = ClusterLoads::new("greeter");
        let old = loads.endpoint(address(1));
        let new = loads.endpoint(address(1));
        old.issued();
        new.issued();
        new.finished(Outcome::Succeeded);
        let report = loads.take(Instant::now());
        assert_eq!(report.endpoints.len(), 1);
        assert_eq!(report.endpoints[0].delta.issued, 2);
        assert_eq!(report.endpoints[0].in_progress, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_drops_what_came_before() {
        let loads = ClusterLoads::new("greeter");
        let one = loads.endpoint(address(1));
        one.issued();
        one.finished(Outcome::Succeeded);
        tokio::time::advance(Duration::from_secs(60)).await;
        loads.restart(Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        let report = loads.take(Instant::now());
        assert!(report.endpoints.is_empty());
        assert_eq!(report.interval, Duration::from_secs(1));
    }
}
