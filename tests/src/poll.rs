//! Waiting for a condition with a deadline. Tests never sleep to let
//! something happen: they check the condition again and again until it holds
//! or the deadline passes, and then say what they saw last.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

/// How long to wait between two checks.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// What one check found.
#[derive(Debug)]
pub enum Check<T> {
    /// The condition holds; this is the value to return.
    Done(T),
    /// Not yet; what was seen instead (reported on timeout).
    NotYet(String),
    /// It never will (say, the process to wait for exited): fail now.
    Never(String),
}

/// Runs `check` every [`INTERVAL`] until it returns [`Check::Done`], or fails
/// once `timeout` has passed or when it returns [`Check::Never`]. An `Err` from `check` counts as "not yet" (a
/// peer may refuse connections while it starts); the last one seen is in the
/// timeout error.
pub async fn until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<Check<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut checks = 0u32;
    loop {
        checks += 1;
        let last = match check().await {
            Ok(Check::Done(value)) => return Ok(value),
            Ok(Check::NotYet(seen)) => seen,
            Ok(Check::Never(why)) => bail!("gave up waiting for {what}: {why}"),
            Err(error) => format!("error: {error:#}"),
        };
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "timed out after {timeout:?} ({checks} checks) waiting for {what}; last seen: {last}"
            );
        }
        tokio::time::sleep(INTERVAL.min(deadline - now)).await;
    }
}
