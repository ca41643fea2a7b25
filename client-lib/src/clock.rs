//! Instants computed from durations the application or a peer gave, which
//! may be anything up to `Duration::MAX` ("no limit").
//!
//! Owns: adding a duration to an instant without overflowing the clock,
//! and the longest period anything repeats at.
//! Must never: shorten a duration that fits (30 years and less are exact).

use std::time::Duration;

use tokio::time::Instant;

/// The longest period a repeated action waits, whatever a peer asks for or
/// a doubling reaches (load reports, ORCA reports, keepalive PINGs).
pub(crate) const LONGEST_PERIOD: Duration = Duration::from_secs(3600);

/// The furthest instant [`later`] gives, past `now`.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `after` past `now`, or, for a duration past the clock's range, 30 years
/// past it: never a panic.
pub(crate) fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after).unwrap_or(now + FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_past_the_clocks_range_is_thirty_years() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(later(now, Duration::MAX), now + FAR);
    }
}
