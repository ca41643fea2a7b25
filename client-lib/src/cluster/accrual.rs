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

use tokio::time::Instant;

use crate::endpoint::FailureAccrual;

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

/// An endpoint's priority tier as failure accrual counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tier {
    /// Endpoints assigned to it.
    pub(super) assigned: usize,
    /// Of those, out for a penalty.
    pub(super) out: usize,
    /// Of those, taking calls (connected, not out).
    pub(super) usable: usize,
}

/// Why an endpoint that failed calls in a row stays in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kept {
    /// It is already out.
    AlreadyOut,
    /// It is the last usable endpoint of its tier.
    LastUsable,
    /// As many endpoints as the cap allows are out.
    Cap(usize),
}

impl Penalties {
    pub(super) fn new(settings: FailureAccrual) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
        }
    }

    /// Whether calls stay away from `address` now.
    pub(super) fn is_out(&self, address: SocketAddr) -> bool {
        self.entries
            .get(&address)
            .is_some_and(|penalty| penalty.until.is_some())
    }

    /// How many endpoints of a tier of `assigned` may be out at once.
    fn cap(&self, assigned: usize) -> usize {
        let percent = usize::try_from(self.settings.max_ejected_percent).unwrap_or(usize::MAX);
        (assigned.saturating_mul(percent) / 100).max(1)
    }

    /// When the next endpoint comes back, if any is out.
    pub(super) fn next_return(&self) -> Option<Instant> {
        self.entries.values().filter_map(|p| p.until).min()
    }

    /// Takes `address` out at `now`, if allowed: `tier(self)` counts its
    /// tier (this endpoint among the usable ones; asked only once the
    /// endpoint is found not out, as it may count every endpoint), and
    /// `answers` are the calls it answered so far. Returns the penalty.
    pub(super) fn take_out(
        &mut self,
        address: SocketAddr,
        now: Instant,
        tier: impl FnOnce(&Self) -> Tier,
        answers: u64,
    ) -> Result<Duration, Kept> {
        if self.is_out(address) {
            return Err(Kept::AlreadyOut);
        }
        let tier = tier(self);
        let cap = self.cap(tier.assigned);
        if tier.out >= cap {
            return Err(Kept::Cap(cap));
        }
        if tier.usable <= 1 {
            return Err(Kept::LastUsable);
        }
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
                until: Some(now + penalty),
                answers,
            },
        );
        Ok(penalty)
    }

    /// The endpoints whose penalty is over at `now`: they come back, each
    /// with the calls it answered so far (read by `answers`).
    pub(super) fn due(
        &mut self,
        now: Instant,
        answers: impl Fn(SocketAddr) -> u64,
    ) -> Vec<SocketAddr> {
        let back: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|(_, penalty)| penalty.until.is_some_and(|until| until <= now))
            .map(|(address, _)| *address)
            .collect();
        for address in &back {
            self.end(*address, answers(*address));
        }
        back
    }

    /// Ends the penalties of a tier of `assigned` endpoints beyond its cap
    /// (after endpoints of it were removed), those due soonest first: `out`
    /// are its endpoints out. Returns those that came back.
    pub(super) fn trim(
        &mut self,
        assigned: usize,
        mut out: Vec<SocketAddr>,
        answers: impl Fn(SocketAddr) -> u64,
    ) -> Vec<SocketAddr> {
        let over = out.len().saturating_sub(self.cap(assigned));
        out.sort_by_key(|address| self.entries.get(address).and_then(|p| p.until));
        out.truncate(over);
        for address in &out {
            self.end(*address, answers(*address));
        }
        out
    }

    /// `address` is back, having answered `answers` calls so far.
    fn end(&mut self, address: SocketAddr, answers: u64) {
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

    fn penalties(max_ejected_percent: u32) -> Penalties {
        Penalties::new(FailureAccrual {
            consecutive_failures: 3,
            penalty_initial: Duration::from_secs(1),
            penalty_max: Duration::from_secs(8),
            max_ejected_percent,
        })
    }

    /// A tier of `assigned`, `out` of them out, `usable` taking calls.
    fn tier(assigned: usize, out: usize, usable: usize) -> impl FnOnce(&Penalties) -> Tier {
        move |_| Tier {
            assigned,
            out,
            usable,
        }
    }

    /// Within a fifth of `expected`, and never over the longest penalty.
    fn about(penalty: Duration, expected: u64) -> bool {
        let expected = Duration::from_secs(expected);
        penalty >= expected.mul_f64(0.79)
            && penalty <= expected.mul_f64(1.21)
            && penalty <= Duration::from_secs(8)
    }

    #[tokio::test(start_paused = true)]
    async fn a_penalty_doubles_while_the_endpoint_fails_at_once_after_it() {
        let mut out = penalties(50);
        let one = address(1);
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..6 {
            let penalty = out.take_out(one, now, tier(4, 0, 4), 10).unwrap();
            lengths.push(penalty);
            assert!(out.is_out(one));
            assert_eq!(
                out.take_out(one, now, tier(4, 1, 3), 10),
                Err(Kept::AlreadyOut)
            );
            assert_eq!(out.next_return(), Some(now + penalty));
            assert!(out.due(now + penalty / 2, |_| 10).is_empty());
            now += penalty;
            assert_eq!(out.due(now, |_| 10), vec![one]);
            assert!(!out.is_out(one));
            assert_eq!(out.next_return(), None);
        }
        let expected = [1, 2, 4, 8, 8, 8];
        for (penalty, expected) in lengths.iter().zip(expected) {
            assert!(about(*penalty, expected), "{lengths:?}");
        }
        // It answered a call since it came back: the first penalty again.
        let penalty = out.take_out(one, now, tier(4, 0, 4), 11).unwrap();
        assert!(about(penalty, 1), "{penalty:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_cap_of_a_tier_is_out_and_never_its_last_usable_endpoint() {
        let now = Instant::now();
        let mut out = penalties(50);
        assert!(out.take_out(address(1), now, tier(5, 1, 4), 0).is_ok());
        assert_eq!(
            out.take_out(address(2), now, tier(5, 2, 3), 0),
            Err(Kept::Cap(2))
        );
        let mut tiny = penalties(10);
        assert!(
            tiny.take_out(address(1), now, tier(3, 0, 3), 0).is_ok(),
            "one may always be out"
        );
        assert_eq!(
            tiny.take_out(address(2), now, tier(3, 1, 2), 0),
            Err(Kept::Cap(1))
        );
        let mut all = penalties(100);
        assert_eq!(
            all.take_out(address(2), now, tier(2, 1, 1), 0),
            Err(Kept::LastUsable)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn penalties_beyond_the_cap_end_soonest_due_first() {
        let now = Instant::now();
        let mut out = penalties(50);
        let (one, two, three) = (address(1), address(2), address(3));
        out.take_out(one, now, tier(6, 0, 6), 0).unwrap();
        // Answered nothing since: out for longer.
        out.due(now + Duration::from_secs(2), |_| 0);
        out.take_out(one, now, tier(6, 0, 6), 0).unwrap();
        out.take_out(two, now, tier(6, 1, 5), 0).unwrap();
        out.take_out(three, now, tier(6, 2, 4), 0).unwrap();
        // Three of six endpoints were removed: one of the three may stay.
        let mut back = out.trim(3, vec![one, two, three], |_| 0);
        back.sort();
        assert_eq!(back, vec![two, three], "{one} is due last");
        assert!(out.is_out(one));
        assert!(out.trim(3, vec![one], |_| 0).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_endpoint_is_forgotten() {
        let now = Instant::now();
        let mut out = penalties(50);
        out.take_out(address(1), now, tier(4, 0, 4), 0).unwrap();
        out.retain(|a| *a != address(1));
        assert!(!out.is_out(address(1)));
        assert_eq!(out.next_return(), None);
    }
}
