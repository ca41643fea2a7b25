//! One endpoint's call counters, shared by its connections and the calls
//! on them.
//!
//! Owns: counting a call issued when it gets a stream (or fails to, the
//! connection failing), and succeeded or failed when it ends; and, for
//! failure accrual, the endpoint's run of calls it failed in a row
//! ([`Outcome`] tells what ended a call).
//! Must never: lock or allocate (every call passes here twice), but for
//! the report of a run of failures to the balancer (see `streak`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::streak::{Streak, StreakWatch};

/// Calls to one endpoint so far. Cheap to clone; clones share the counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct EndpointLoad(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    issued: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    /// Calls the endpoint answered with an application's error status
    /// (also counted in `failed`).
    answered: AtomicU64,
    streak: Streak,
}

/// How a call (or an attempt of it) ended on an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `grpc-status: 0` over HTTP 200.
    Succeeded,
    /// The server answered with another status, one an application gives
    /// (NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED...): failed, but
    /// the endpoint is working.
    Answered,
    /// The endpoint failed it: UNAVAILABLE, INTERNAL, UNKNOWN or DATA_LOSS,
    /// an HTTP error status (but 401, 403, 404: answers), no status at
    /// all, a stream the server reset (but with CANCEL).
    EndpointFailed,
    /// The connection failed, or was lost under the call. Failed; the
    /// connection's failure ejects the endpoint on its own (and one lost
    /// connection fails every call on it at once: no run of the
    /// endpoint's).
    ConnectionLost,
    /// The call ended before the endpoint could answer it: its deadline
    /// passed, it was cancelled (by its caller, this client or the server)
    /// or dropped, or it was refused everywhere. Failed, and says nothing
    /// about the endpoint.
    GaveUp,
}

/// The counts at one moment (totals since the counters were made, or the
/// difference of two such).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) issued: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
}

impl EndpointLoad {
    /// A call went to the endpoint.
    pub(crate) fn issued(&self) {
        self.0.issued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters of the endpoint at `address`, whose failures in a row
    /// are watched by `watch`.
    pub(crate) fn watched(watch: StreakWatch, address: std::net::SocketAddr) -> Self {
        Self(Arc::new(Counters {
            streak: Streak::watched(watch, address),
            ..Counters::default()
        }))
    }

    /// A call to the endpoint ended so: succeeded, or failed (any other
    /// outcome; only an endpoint's failure adds to its run of them).
    pub(crate) fn finished(&self, outcome: Outcome) {
        let counter = if outcome == Outcome::Succeeded {
            &self.0.succeeded
        } else {
            &self.0.failed
        };
        // Release: whoever reads this count also sees the call's issue.
        counter.fetch_add(1, Ordering::Release);
        match outcome {
            Outcome::Succeeded => self.0.streak.answered(),
            Outcome::Answered => {
                self.0.answered.fetch_add(1, Ordering::Relaxed);
                self.0.streak.answered();
            }
            Outcome::EndpointFailed => self.0.streak.failed(),
            Outcome::ConnectionLost | Outcome::GaveUp => {}
        }
    }

    /// Calls the endpoint answered so far, with OK or an application's
    /// error status.
    pub(crate) fn answers(&self) -> u64 {
        let succeeded = self.0.succeeded.load(Ordering::Relaxed);
        succeeded.saturating_add(self.0.answered.load(Ordering::Relaxed))
    }

    /// The endpoint's run of failures in a row.
    pub(crate) fn streak(&self) -> &Streak {
        &self.0.streak
    }

    /// A call counted as issued never reached the server (it may go to
    /// another endpoint): it is not counted here.
    pub(crate) fn withdrawn(&self) {
        self.0.issued.fetch_sub(1, Ordering::Relaxed);
    }

    /// An attempt that failed before a stream was opened (the connection
    /// failed): issued and failed at once.
    pub(crate) fn failed_unsent(&self) {
        self.unsent(Outcome::ConnectionLost);
    }

    /// A call that never had a stream here, counted issued and ended so.
    fn unsent(&self, outcome: Outcome) {
        self.issued();
        self.finished(outcome);
    }

    /// The counts now. Ended calls are read first: every call counted as
    /// ended is also counted as issued, so nothing is in progress less
    /// than nothing.
    pub(crate) fn totals(&self) -> Totals {
        let succeeded = self.0.succeeded.load(Ordering::Acquire);
        let failed = self.0.failed.load(Ordering::Acquire);
        Totals {
            issued: self.0.issued.load(Ordering::Relaxed),
            succeeded,
            failed,
        }
    }

    /// Whether anyone but the caller holds these counters (a connection, a
    /// call): if not, they can change no more, and every count the last
    /// holder made is visible (`Arc::get_mut` synchronises with its drop,
    /// where a bare reference count would not).
    pub(crate) fn is_shared(&mut self) -> bool {
        Arc::get_mut(&mut self.0).is_none()
    }
}

/// An attempt its endpoint refused (withdrawn from the count there) while
/// the call looks for somewhere else to go: counted failed on that endpoint
/// when dropped (the call went nowhere, or was dropped while it waited),
/// not once it [`went_on`](Self::went_on).
#[derive(Debug)]
pub(crate) struct Refusal(Option<EndpointLoad>);

impl Refusal {
    /// For an attempt refused by the endpoint counting on `load` (`None`:
    /// not a refusal, nothing to count).
    pub(crate) fn new(load: Option<EndpointLoad>) -> Self {
        Self(load)
    }

    /// The call went on to another attempt: nothing to count here.
    pub(crate) fn went_on(mut self) {
        self.0 = None;
    }
}

impl Drop for Refusal {
    fn drop(&mut self) {
        if let Some(load) = self.0.take() {
            // A refusal is no failure of the endpoint (it was draining, or
            // at its stream limit).
            load.unsent(Outcome::GaveUp);
        }
    }
}

impl Totals {
    /// Calls issued and not ended.
    pub(crate) fn in_progress(&self) -> u64 {
        self.issued
            .saturating_sub(self.succeeded.saturating_add(self.failed))
    }

    /// What changed since `earlier` (counts only grow).
    pub(crate) fn since(&self, earlier: &Self) -> Self {
        Self {
            issued: self.issued.saturating_sub(earlier.issued),
            succeeded: self.succeeded.saturating_sub(earlier.succeeded),
            failed: self.failed.saturating_sub(earlier.failed),
        }
    }

    /// The sum of both.
    pub(crate) fn plus(&self, other: &Self) -> Self {
        Self {
            issued: self.issued.saturating_add(other.issued),
            succeeded: self.succeeded.saturating_add(other.succeeded),
            failed: self.failed.saturating_add(other.failed),
        }
    }

    /// Whether nothing was counted.
    pub(crate) fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_in_progress_from_their_issue_to_their_end() {
        let load = EndpointLoad::default();
        load.issued();
        load.issued();
        load.issued();
        load.finished(Outcome::Succeeded);
        load.failed_unsent();
        load.issued();
        load.withdrawn();
        let totals = load.totals();
        assert_eq!(
            totals,
            Totals {
                issued: 4,
                succeeded: 1,
                failed: 1
            }
        );
        assert_eq!(totals.in_progress(), 2);
        load.finished(Outcome::GaveUp);
        let later = load.totals();
        assert_eq!(
            later.since(&totals),
            Totals {
                issued: 0,
                succeeded: 0,
                failed: 1
            }
        );
        assert_eq!(later.in_progress(), 1);
    }

    #[test]
    fn only_an_endpoints_failures_make_a_run() {
        let (reports, _reported) = tokio::sync::mpsc::channel(8);
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let load = EndpointLoad::watched(StreakWatch::new(2, reports), address);
        load.finished(Outcome::EndpointFailed);
        load.finished(Outcome::GaveUp);
        assert_eq!(load.streak().run(), 1, "giving up ends no run");
        load.finished(Outcome::Answered);
        assert_eq!(load.streak().run(), 0, "an answer ends it");
        load.finished(Outcome::EndpointFailed);
        load.failed_unsent();
        load.finished(Outcome::ConnectionLost);
        assert_eq!(
            load.streak().run(),
            1,
            "a lost connection neither adds nor ends"
        );
        load.finished(Outcome::EndpointFailed);
        assert!(load.streak().reached());
        drop(Refusal::new(Some(load.clone())));
        assert_eq!(load.streak().run(), 2, "a refusal is no failure");
        assert_eq!(load.totals().failed, 8, "every call not OK, for LRS");
        assert_eq!(load.answers(), 1, "the one answered");
    }

    #[test]
    fn counters_held_by_nobody_else_are_not_shared() {
        let mut load = EndpointLoad::default();
        assert!(!load.is_shared());
        let connection = load.clone();
        assert!(load.is_shared());
        drop(connection);
        assert!(!load.is_shared());
    }
}
