//! Failure accrual: an endpoint that fails calls in a row (its connection
//! up, its server answering UNAVAILABLE or INTERNAL, resetting streams...)
//! is taken out of the picker for a penalty, as Linkerd's consecutive
//! failure accrual and Envoy's `consecutive_5xx` outlier detection do. The
//! control plane would lower its weight too, but only as fast as load
//! reports travel; this takes the failing calls away within a few.
//!
//! Owns: each penalised endpoint's penalty (doubling while it fails again
//! at once after coming back, from the start once it answered a call in
//! between), when it comes back, and the cap on how many of a priority
//! tier's endpoints may be out.
//! Must never: take out the last usable endpoint of a tier (failure accrual
//! never makes calls fail over; the balancer also ignores penalties in a
//! tier left with no other usable endpoint), or more than the cap (a
//! failure the client causes, a poison request, fails every endpoint
//! alike).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::load::StreakWatch;

/// When an endpoint whose connection is up is taken out for failing calls
/// in a row, and for how long. Counted: UNAVAILABLE, INTERNAL, UNKNOWN,
/// DATA_LOSS, no status, an HTTP error status (but 401, 403, 404), a
/// stream the server reset (but with CANCEL) or that h2 reset for a
/// malformed response. Any other answer (OK or an
/// application's error status) ends a run; a deadline, a cancellation, a
/// stream this client reset, or a lost or failed connection (ejection's
/// business: the endpoint is probed back) neither adds to it nor ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureAccrual {
    /// Failures in a row that take an endpoint out (at least 1).
    pub consecutive_failures: u32,
    /// The first penalty; doubled each time the endpoint fails again at
    /// once after coming back (its first call back fails), give or take a
    /// fifth (never past `penalty_max`). Back to this once it answers a
    /// call after coming back.
    pub penalty_initial: Duration,
    /// The longest penalty.
    pub penalty_max: Duration,
    /// At most this share of a priority tier's endpoints is out for a
    /// penalty at once (as Envoy's outlier detection's
    /// `max_ejection_percent`; endpoints ejected for a failed connection do
    /// not count): at least one may be, unless it is the last one of its
    /// tier taking calls (failure accrual never makes calls fail over). An
    /// endpoint kept in by the cap is taken out as soon as there is room,
    /// if it has not answered a call since.
    pub max_ejection_percent: u32,
}

impl Default for FailureAccrual {
    /// Envoy's consecutive failures (5) and Linkerd's penalties (1 s, up to
    /// 60 s); at most half the endpoints out.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            penalty_initial: Duration::from_secs(1),
            penalty_max: Duration::from_secs(60),
            max_ejection_percent: 50,
        }
    }
}

/// The cluster's penalised endpoints. Owned by the balancer task.
#[derive(Debug)]
pub(super) struct Penalties {
    settings: FailureAccrual,
    entries: HashMap<SocketAddr, Penalty>,
}

#[derive(Debug)]
struct Penalty {
    /// Penalties in a row, each without an answered call since the one
    /// before (0: the first).
    level: u32,
    /// When it comes back; `None` once it has.
    until: Option<Instant>,
    /// The calls the endpoint answered when it came back (or was taken
    /// out): more at its next run of failures means it answered in
    /// between.
    answers: u64,
}

/// One priority tier of the cluster, as failure accrual counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Tier {
    /// Endpoints assigned to it.
    pub(super) assigned: usize,
    /// Those out for a penalty.
    pub(super) out: Vec<SocketAddr>,
    /// Those taking calls: connected (not ejected) and not out.
    pub(super) taking_calls: usize,
}

/// Why an endpoint that failed calls in a row stays in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kept {
    /// It is the last endpoint of its tier taking calls.
    LastTakingCalls,
    /// As many of its tier's endpoints as the cap allows are out.
    Cap(usize),
}

impl Penalties {
    pub(super) fn new(settings: FailureAccrual) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
        }
    }

    /// What the endpoints' counters report to: a run of the configured
    /// length, on `reports`.
    pub(super) fn watch(&self, reports: mpsc::Sender<SocketAddr>) -> StreakWatch {
        StreakWatch::new(self.settings.consecutive_failures, reports)
    }

    /// Whether calls stay away from `address` now.
    pub(super) fn is_out(&self, address: SocketAddr) -> bool {
        self.entries
            .get(&address)
            .is_some_and(|penalty| penalty.until.is_some())
    }

    /// How many endpoints of a tier of `assigned` may be out at once.
    fn cap(&self, assigned: usize) -> usize {
        let percent = usize::try_from(self.settings.max_ejection_percent).unwrap_or(usize::MAX);
        (assigned.saturating_mul(percent) / 100).max(1)
    }

    /// When the next endpoint comes back, if any is out.
    pub(super) fn next_return(&self) -> Option<Instant> {
        self.entries.values().filter_map(|p| p.until).min()
    }

    /// Whether one more endpoint of `tier` may be taken out.
    pub(super) fn room(&self, tier: &Tier) -> Result<(), Kept> {
        let cap = self.cap(tier.assigned);
        if tier.out.len() >= cap {
            return Err(Kept::Cap(cap));
        }
        if tier.taking_calls <= 1 {
            return Err(Kept::LastTakingCalls);
        }
        Ok(())
    }

    /// Takes `address` (not out) of `tier` out at `now`, if allowed;
    /// `answers` are the calls it answered so far. Returns the penalty.
    pub(super) fn take_out(
        &mut self,
        address: SocketAddr,
        now: Instant,
        tier: &Tier,
        answers: u64,
    ) -> Result<Duration, Kept> {
        self.room(tier)?;
        let level = match self.entries.get(&address) {
            // Failed again before answering a call since it came back.
            Some(previous) if answers <= previous.answers => previous.level.saturating_add(1),
            _ => 0,
        };
        let (initial, max) = (self.settings.penalty_initial, self.settings.penalty_max);
        // The jitter stays under the longest penalty.
        let penalty = crate::endpoint::backoff(initial, max, level).min(max);
        self.entries.insert(
            address,
            Penalty {
                level,
                until: Some(crate::clock::later(now, penalty)),
                answers,
            },
        );
        Ok(penalty)
    }

    /// The endpoints whose penalty is over at `now` (to [`end`](Self::end)).
    pub(super) fn due(&self, now: Instant) -> Vec<SocketAddr> {
        self.entries
            .iter()
            .filter(|(_, penalty)| penalty.until.is_some_and(|until| until <= now))
            .map(|(address, _)| *address)
            .collect()
    }

    /// The penalties of `tier` beyond its cap (after endpoints of it were
    /// removed), to [`end`](Self::end): first those of `connected`
    /// endpoints (which then take calls again; an ejected one would not),
    /// each group due soonest first.
    pub(super) fn over_cap(
        &self,
        tier: &Tier,
        connected: impl Fn(SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let mut out = tier.out.clone();
        let over = out.len().saturating_sub(self.cap(tier.assigned));
        out.sort_by_key(|address| {
            let until = self.entries.get(address).and_then(|p| p.until);
            (!connected(*address), until)
        });
        out.truncate(over);
        out
    }

    /// `address` is back, having answered `answers` calls so far.
    pub(super) fn end(&mut self, address: SocketAddr, answers: u64) {
        if let Some(penalty) = self.entries.get_mut(&address) {
            penalty.until = None;
            penalty.answers = answers;
        }
    }

    /// Forgets the endpoints no longer assigned.
    pub(super) fn retain(&mut self, assigned: impl Fn(&SocketAddr) -> bool) {
        self.entries.retain(|address, _| assigned(address));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn penalties(max_ejection_percent: u32) -> Penalties {
        Penalties::new(FailureAccrual {
            consecutive_failures: 3,
            penalty_initial: Duration::from_secs(1),
            penalty_max: Duration::from_secs(8),
            max_ejection_percent,
        })
    }

    /// A tier of `assigned`, `out` of them out, `taking_calls` taking calls.
    fn tier(assigned: usize, out: &[SocketAddr], taking_calls: usize) -> Tier {
        Tier {
            assigned,
            out: out.to_vec(),
            taking_calls,
        }
    }

    /// Within a fifth of `expected`, and never over the longest penalty.
    fn about(penalty: Duration, expected: u64) -> bool {
        let expected = Duration::from_secs(expected);
        penalty >= expected.mul_f64(0.79)
            && penalty <= expected.mul_f64(1.21)
            && penalty <= Duration::from_secs(8)
    }

    /// Ends the penalties due at `now`, each having answered `answers`.
    fn bring_back(out: &mut Penalties, now: Instant, answers: u64) -> Vec<SocketAddr> {
        let due = out.due(now);
        for address in &due {
            out.end(*address, answers);
        }
        due
    }

    #[tokio::test(start_paused = true)]
    async fn a_penalty_doubles_while_the_endpoint_fails_at_once_after_it() {
        let mut out = penalties(50);
        let one = address(1);
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..6 {
            let penalty = out.take_out(one, now, &tier(4, &[], 4), 10).unwrap();
            lengths.push(penalty);
            assert!(out.is_out(one));
            assert_eq!(out.next_return(), Some(now + penalty));
            assert!(bring_back(&mut out, now + penalty / 2, 10).is_empty());
            now += penalty;
            assert_eq!(bring_back(&mut out, now, 10), vec![one]);
            assert!(!out.is_out(one));
            assert_eq!(out.next_return(), None);
        }
        let expected = [1, 2, 4, 8, 8, 8];
        for (penalty, expected) in lengths.iter().zip(expected) {
            assert!(about(*penalty, expected), "{lengths:?}");
        }
        // It answered a call since it came back: the first penalty again.
        let penalty = out.take_out(one, now, &tier(4, &[], 4), 11).unwrap();
        assert!(about(penalty, 1), "{penalty:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_cap_of_a_tier_is_out_and_never_its_last_endpoint_taking_calls() {
        let now = Instant::now();
        let mut out = penalties(50);
        let (one, two) = (address(1), address(2));
        assert!(out.take_out(one, now, &tier(5, &[], 5), 0).is_ok());
        assert!(out.take_out(two, now, &tier(5, &[one], 4), 0).is_ok());
        let full = tier(5, &[one, two], 3);
        assert_eq!(out.take_out(address(3), now, &full, 0), Err(Kept::Cap(2)));
        let mut tiny = penalties(10);
        assert!(
            tiny.take_out(one, now, &tier(3, &[], 3), 0).is_ok(),
            "one may always be out"
        );
        let one_out = tier(3, &[one], 2);
        assert_eq!(tiny.take_out(two, now, &one_out, 0), Err(Kept::Cap(1)));
        let mut all = penalties(100);
        let last = tier(2, &[one], 1);
        assert_eq!(all.take_out(two, now, &last, 0), Err(Kept::LastTakingCalls));
    }

    #[tokio::test(start_paused = true)]
    async fn penalties_beyond_the_cap_end_connected_then_soonest_due_first() {
        let now = Instant::now();
        let mut out = penalties(50);
        let (one, two, three) = (address(1), address(2), address(3));
        out.take_out(one, now, &tier(6, &[], 6), 0).unwrap();
        // Answered nothing since: out for longer.
        bring_back(&mut out, now + Duration::from_secs(2), 0);
        out.take_out(one, now, &tier(6, &[], 6), 0).unwrap();
        out.take_out(two, now, &tier(6, &[one], 5), 0).unwrap();
        out.take_out(three, now, &tier(6, &[one, two], 4), 0)
            .unwrap();
        // Three of six endpoints were removed: one of the three may stay.
        let shrunk = tier(3, &[one, two, three], 0);
        let mut over = out.over_cap(&shrunk, |_| true);
        over.sort();
        assert_eq!(over, vec![two, three], "{one} is due last");
        assert!(out.over_cap(&tier(3, &[one], 2), |_| true).is_empty());
        // Ending an ejected endpoint's penalty would bring nothing back.
        let connected = |address| address != two;
        let mut over = out.over_cap(&shrunk, connected);
        over.sort();
        assert_eq!(over, vec![one, three], "{two} is ejected");
        // One over the cap: of the connected, the one due soonest.
        let over = out.over_cap(&tier(4, &[one, two, three], 1), connected);
        assert_eq!(over, vec![three], "{one} is due after {three}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_endpoint_is_forgotten() {
        let now = Instant::now();
        let mut out = penalties(50);
        out.take_out(address(1), now, &tier(4, &[], 4), 0).unwrap();
        out.retain(|a| *a != address(1));
        assert!(!out.is_out(address(1)));
        assert_eq!(out.next_return(), None);
    }
}
