//! An endpoint's run of calls it failed in a row, for failure accrual.
//!
//! Owns: counting the failures in a row (reset by any answer from the
//! server) and telling the cluster's balancer when the run reaches its
//! threshold, and again at twice, four times, eight times... that, and at
//! every 64 times: a balancer that could not take the endpoint out (its
//! tier's cap was reached) hears of it again, ever less often, so that
//! many endpoints failing every call (a poison request) cost it a few
//! looks, not one per few failures (the balancer also looks again at the
//! endpoints it kept in whenever room may have freed). A report that
//! finds the balancer's queue full is dropped; the next one comes at the
//! next doubling, at most 64 thresholds later.
//! Must never: lock, allocate or write shared memory on a call that
//! succeeds after another that did (the common case reads one atomic).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::mpsc;

/// Who hears of a run of failures, and after how many.
#[derive(Debug, Clone)]
pub(crate) struct StreakWatch {
    /// Failures in a row that are reported (>= 1).
    threshold: u32,
    /// The balancer's queue of endpoints that reached it (bounded).
    reports: mpsc::Sender<SocketAddr>,
}

impl StreakWatch {
    /// Reports on `reports` the address of an endpoint that failed
    /// `threshold` calls in a row (0 counts as 1).
    pub(crate) fn new(threshold: u32, reports: mpsc::Sender<SocketAddr>) -> Self {
        Self {
            threshold: threshold.max(1),
            reports,
        }
    }
}

/// The failures in a row of one endpoint; not counted unless watched.
#[derive(Debug, Default)]
pub(crate) struct Streak {
    failures: AtomicU32,
    watch: Option<(StreakWatch, SocketAddr)>,
}

impl Streak {
    /// A run of the endpoint at `address`, counted for `watch`.
    pub(crate) fn watched(watch: StreakWatch, address: SocketAddr) -> Self {
        Self {
            failures: AtomicU32::new(0),
            watch: Some((watch, address)),
        }
    }

    /// The server answered: the run is over.
    pub(crate) fn answered(&self) {
        // Read first: a healthy endpoint's calls never write the line.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// The endpoint failed a call.
    pub(crate) fn failed(&self) {
        let Some((watch, address)) = &self.watch else {
            return;
        };
        let run = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if reported_at(run, watch.threshold) {
            let _ = watch.reports.try_send(*address);
        }
    }

    /// Failures in a row now.
    pub(crate) fn run(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether the run has reached the threshold.
    pub(crate) fn reached(&self) -> bool {
        self.watch
            .as_ref()
            .is_some_and(|(watch, _)| self.run() >= watch.threshold)
    }

    /// The endpoint is back after a penalty: one more failure before any
    /// answer reaches the threshold again.
    pub(crate) fn on_probation(&self) {
        if let Some((watch, _)) = &self.watch {
            self.failures
                .store(watch.threshold.saturating_sub(1), Ordering::Relaxed);
        }
    }
}

/// Whether a run of `run` failures is reported, for `threshold`.
fn reported_at(run: u32, threshold: u32) -> bool {
    run.is_multiple_of(threshold) && {
        let runs = run / threshold;
        runs.is_power_of_two() || runs.is_multiple_of(64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

    fn watched(threshold: u32) -> (Streak, mpsc::Receiver<SocketAddr>) {
        let (reports, reported) = mpsc::channel(8);
        let streak = Streak::watched(StreakWatch::new(threshold, reports), ADDRESS);
        (streak, reported)
    }

    /// How many reports are queued.
    fn reports(reported: &mut mpsc::Receiver<SocketAddr>) -> usize {
        std::iter::from_fn(|| reported.try_recv().ok())
            .inspect(|address| assert_eq!(*address, ADDRESS))
            .count()
    }

    #[test]
    fn a_long_run_is_reported_ever_less_often_then_every_64_thresholds() {
        let (streak, mut reported) = watched(1);
        let mut at = Vec::new();
        for run in 1..=400 {
            streak.failed();
            if reports(&mut reported) > 0 {
                at.push(run);
            }
        }
        assert_eq!(at, vec![1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 320, 384]);
    }

    #[test]
    fn a_run_is_reported_at_its_threshold_and_twice_that() {
        let (streak, mut reported) = watched(3);
        streak.failed();
        streak.failed();
        assert_eq!(
            reports(&mut reported),
            0,
            "two failures are no run of three"
        );
        assert!(!streak.reached());
        streak.failed();
        assert!(streak.reached());
        assert_eq!(reports(&mut reported), 1, "three in a row");
        streak.failed();
        streak.failed();
        assert_eq!(reports(&mut reported), 0, "not at four or five");
        streak.failed();
        assert_eq!(reports(&mut reported), 1, "six in a row: again");
        for _ in 0..5 {
            streak.failed();
        }
        assert_eq!(reports(&mut reported), 0, "not at nine");
        streak.failed();
        assert_eq!(reports(&mut reported), 1, "twelve");
    }

    #[test]
    fn an_answer_ends_the_run() {
        let (streak, mut reported) = watched(3);
        streak.failed();
        streak.failed();
        streak.answered();
        streak.failed();
        streak.failed();
        assert_eq!(reports(&mut reported), 0, "never three in a row");
        assert_eq!(streak.run(), 2);
    }

    #[test]
    fn on_probation_one_failure_completes_a_run() {
        let (streak, mut reported) = watched(5);
        streak.on_probation();
        streak.failed();
        assert_eq!(reports(&mut reported), 1);
        streak.on_probation();
        streak.answered();
        streak.failed();
        assert_eq!(reports(&mut reported), 0, "an answer ended the probation");
    }

    #[test]
    fn a_full_queue_drops_the_report_and_a_later_one_comes() {
        let (reports_tx, mut reported) = mpsc::channel(1);
        let streak = Streak::watched(StreakWatch::new(1, reports_tx), ADDRESS);
        streak.failed();
        streak.failed();
        assert_eq!(reports(&mut reported), 1, "the second found it full");
        streak.failed();
        streak.failed();
        assert_eq!(reports(&mut reported), 1, "the fourth");
    }

    #[test]
    fn an_unwatched_streak_counts_nothing() {
        let streak = Streak::default();
        streak.failed();
        streak.on_probation();
        assert_eq!(streak.run(), 0);
        assert!(!streak.reached());
    }
}
