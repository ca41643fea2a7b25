//! Failure accrual: an endpoint that fails calls in a row (its connection
//! up, its server answering UNAVAILABLE or INTERNAL, resetting streams...)
//! is taken out of the picker for a penalty, as Linkerd's consecutive
//! failure accrual and Envoy's `consecutive_5xx` outlier detection do. The
//! control plane would lower its weight too, but only as fast as load
//! reports travel; this takes the failing calls away within a few.
//!
//! Owns: each penalised endpoint's penalty (doubling while it fails again
//! at once after coming back, from the start once it answered a call in
//! between), when it comes back, and the cap on how many may be out.
//! Must never: take out an endpoint when that would leave the cluster none
//! usable, or more than the cap (a failure the client causes, a poison
//! request, fails every endpoint alike).

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
    /// The endpoint's successful calls when it came back (or was taken
    /// out): more at the next failure run means it answered in between.
    succeeded: u64,
}

/// Why an endpoint that failed calls in a row stays in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kept {
    /// It is already out.
    AlreadyOut,
    /// It is the last usable endpoint.
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

    /// Endpoints out now.
    fn out(&self) -> usize {
        self.entries.values().filter(|p| p.until.is_some()).count()
    }

    /// When the next endpoint comes back, if any is out.
    pub(super) fn next_return(&self) -> Option<Instant> {
        self.entries.values().filter_map(|p| p.until).min()
    }

    /// Takes `address` out at `now`, if allowed: `assigned` endpoints in the
    /// cluster, `usable(self)` of them taking calls (this one included;
    /// asked last, it may count them all), and the endpoint's `succeeded`
    /// calls so far. Returns the penalty.
    pub(super) fn take_out(
        &mut self,
        address: SocketAddr,
        now: Instant,
        assigned: usize,
        usable: impl FnOnce(&Self) -> usize,
        succeeded: u64,
    ) -> Result<Duration, Kept> {
        if self.is_out(address) {
            return Err(Kept::AlreadyOut);
        }
        let percent = usize::try_from(self.settings.max_ejected_percent).unwrap_or(usize::MAX);
        let cap = (assigned.saturating_mul(percent) / 100).max(1);
        if self.out() >= cap {
            return Err(Kept::Cap(cap));
        }
        if usable(self) <= 1 {
            return Err(Kept::LastUsable);
        }
        let level = match self.entries.get(&address) {
            // Failed again before answering a call since it came back.
            Some(previous) if succeeded <= previous.succeeded => previous.level.saturating_add(1),
            _ => 0,
        };
        let penalty = crate::endpoint::backoff(
            self.settings.penalty_initial,
            self.settings.penalty_max,
            level,
        );
        self.entries.insert(
            address,
            Penalty {
                level,
                until: Some(now + penalty),
                succeeded,
            },
        );
        Ok(penalty)
    }

    /// The endpoints whose penalty is over at `now`: they come back, each
    /// with its `succeeded` calls so far (read by `succeeded`).
    pub(super) fn due(
        &mut self,
        now: Instant,
        succeeded: impl Fn(SocketAddr) -> u64,
    ) -> Vec<SocketAddr> {
        let mut back = Vec::new();
        for (address, penalty) in &mut self.entries {
            if penalty.until.is_some_and(|until| until <= now) {
                penalty.until = None;
                penalty.succeeded = succeeded(*address);
                back.push(*address);
            }
        }
        back
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

    /// Within a fifth of `expected`.
    fn about(penalty: Duration, expected: u64) -> bool {
        let expected = Duration::from_secs(expected);
        penalty >= expected.mul_f64(0.79) && penalty <= expected.mul_f64(1.21)
    }

    #[tokio::test(start_paused = true)]
    async fn a_penalty_doubles_while_the_endpoint_fails_at_once_after_it() {
        let mut out = penalties(50);
        let one = address(1);
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..5 {
            let penalty = out.take_out(one, now, 4, |_| 4, 10).unwrap();
            lengths.push(penalty);
            assert!(out.is_out(one));
            assert_eq!(out.take_out(one, now, 4, |_| 4, 10), Err(Kept::AlreadyOut));
            assert_eq!(out.next_return(), Some(now + penalty));
            assert!(out.due(now + penalty / 2, |_| 10).is_empty());
            now += penalty;
            assert_eq!(out.due(now, |_| 10), vec![one]);
            assert!(!out.is_out(one));
            assert_eq!(out.next_return(), None);
        }
        let expected = [1, 2, 4, 8, 8];
        for (penalty, expected) in lengths.iter().zip(expected) {
            assert!(about(*penalty, expected), "{lengths:?}");
        }
        // It answered a call since it came back: the first penalty again.
        let penalty = out.take_out(one, now, 4, |_| 4, 11).unwrap();
        assert!(about(penalty, 1), "{penalty:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_cap_is_out_and_never_the_last_usable_endpoint() {
        let now = Instant::now();
        let mut out = penalties(50);
        assert!(out.take_out(address(1), now, 5, |_| 5, 0).is_ok());
        assert!(out.take_out(address(2), now, 5, |_| 4, 0).is_ok());
        assert_eq!(
            out.take_out(address(3), now, 5, |_| 3, 0),
            Err(Kept::Cap(2))
        );
        let mut tiny = penalties(10);
        assert!(
            tiny.take_out(address(1), now, 3, |_| 3, 0).is_ok(),
            "one may always be out"
        );
        assert_eq!(
            tiny.take_out(address(2), now, 3, |_| 2, 0),
            Err(Kept::Cap(1))
        );
        let mut all = penalties(100);
        assert!(all.take_out(address(1), now, 2, |_| 2, 0).is_ok());
        assert_eq!(
            all.take_out(address(2), now, 2, |_| 1, 0),
            Err(Kept::LastUsable)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_endpoint_is_forgotten() {
        let now = Instant::now();
        let mut out = penalties(50);
        out.take_out(address(1), now, 4, |_| 4, 0).unwrap();
        out.retain(|a| *a != address(1));
        assert!(!out.is_out(address(1)));
        assert_eq!(out.next_return(), None);
    }
}
