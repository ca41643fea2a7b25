//! Exponential backoff with jitter, for everything in the client that
//! tries again: connections made again, probes of ejected endpoints,
//! wait-for-ready calls that were refused, penalties of endpoints that
//! fail calls in a row.
//!
//! Owns: the delay of the `round`th try and its spread.
//! Must never: sleep (callers do), or return more than the cap allows
//! (give or take the jitter's fifth).

use std::time::Duration;

/// The delay before try `round` (from 0): `initial`, doubling each round
/// up to `max` (never below `initial`), give or take a fifth.
pub(crate) fn backoff(initial: Duration, max: Duration, round: u32) -> Duration {
    let delay = initial
        .saturating_mul(1 << round.min(30))
        .min(max.max(initial));
    jitter(delay)
}

/// `delay` give or take a fifth, so clients that lost their connections
/// at the same moment do not all come back at the same moment.
fn jitter(delay: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Randomly keyed per call: enough randomness for spreading, no crate.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fifth = delay / 5;
    let spread = u64::try_from(fifth.as_nanos().saturating_mul(2)).unwrap_or(u64::MAX);
    let offset = Duration::from_nanos(random.checked_rem(spread).unwrap_or(0));
    (delay - fifth) + offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_give_or_take_a_fifth() {
        let within = |delay: Duration, of: u64| {
            let of = Duration::from_millis(of);
            delay >= of - of / 5 && delay <= of + of / 5
        };
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(1));
        assert!(within(backoff(initial, max, 0), 100));
        assert!(within(backoff(initial, max, 2), 400));
        assert!(within(backoff(initial, max, 9), 1000));
        assert!(within(backoff(initial, max, u32::MAX), 1000));
        assert!(
            within(backoff(initial, Duration::ZERO, 3), 100),
            "never below initial"
        );
    }
}
