//! A token bucket bounding how many requests one ADS stream may send per
//! second: a client stuck in a request loop is closed with a status naming
//! the limit, instead of taking CPU from everyone else.
//!
//! Owns: one stream's bucket. Must never: read a clock of its own; time is
//! passed in, so tests are deterministic.

use std::time::Instant;

/// Requests per second with a burst of twice that.
#[derive(Debug, Clone)]
pub(crate) struct RequestRate {
    per_second: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RequestRate {
    /// A full bucket for `per_second` requests per second (0: unlimited).
    pub(crate) fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            tokens: per_second * 2.0,
            last: None,
        }
    }

    /// Takes one token at `now`; `false` when the stream is over its rate.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + refill).min(self.per_second * 2.0);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let start = Instant::now();
        let mut rate = RequestRate::new(10);
        let burst = (0..25).filter(|_| rate.allow(start)).count();
        assert_eq!(burst, 20);
        // Half a second later, five more.
        let later = start + Duration::from_millis(500);
        let more = (0..10).filter(|_| rate.allow(later)).count();
        assert_eq!(more, 5);
    }

    #[test]
    fn zero_means_unlimited() {
        let now = Instant::now();
        let mut rate = RequestRate::new(0);
        assert!((0..10_000).all(|_| rate.allow(now)));
    }
}
