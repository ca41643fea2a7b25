//! What the fault drill's call records say about one event: how many calls
//! failed in its window (by status code, with calls in flight at a kill
//! counted apart), and when the load had converged to the expected split.
//!
//! Pure functions over [`CallRecord`]s sorted by start time; no clock, no
//! I/O, so every definition here is unit-tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::load::CallRecord;

/// Failed calls in an event's window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures {
    /// Failures by status code name (`NotSent` for calls never sent), other
    /// than those below.
    pub by_code: BTreeMap<String, u64>,
    /// Failures of calls that were in flight at a kill (see [`failures`]),
    /// by status code name.
    pub in_flight_at_kill: BTreeMap<String, u64>,
}

impl Failures {
    /// Failures other than calls in flight at a kill.
    pub fn unexpected(&self) -> u64 {
        self.by_code.values().sum()
    }

    /// Calls in flight at a kill that failed.
    pub fn in_flight(&self) -> u64 {
        self.in_flight_at_kill.values().sum()
    }
}

/// The failed calls that ended in `[from, until)`. With `kill_at`, a failed
/// call counts as in flight at the kill if it ended at or after the kill and
/// started no later than the client could know of it: the end of the first
/// call that failed at or after the kill (calls sent on the connection
/// before the reset reached the client die with it, as those in flight do).
pub fn failures(
    records: &[CallRecord],
    from: Duration,
    until: Duration,
    kill_at: Option<Duration>,
) -> Failures {
    let noticed = kill_at.and_then(|kill| {
        records
            .iter()
            .filter(|record| record.failed() && record.end >= kill)
            .map(|record| record.end)
            .min()
    });
    let mut found = Failures::default();
    for record in records {
        let Some(label) = record.failure_label() else {
            continue;
        };
        if record.end < from || record.end >= until {
            continue;
        }
        let in_flight = kill_at.is_some_and(|kill| record.end >= kill)
            && noticed.is_some_and(|noticed| record.start <= noticed);
        let bucket = if in_flight {
            &mut found.in_flight_at_kill
        } else {
            &mut found.by_code
        };
        *bucket.entry(label).or_default() += 1;
    }
    found
}

/// `12 (Unavailable 10, NotSent 2)`, or `0`.
pub fn describe_counts(counts: &BTreeMap<String, u64>) -> String {
    let total: u64 = counts.values().sum();
    if total == 0 {
        return "0".to_owned();
    }
    let mut text = format!("{total} (");
    for (index, (label, count)) in counts.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{label} {count}");
    }
    text.push(')');
    text
}

/// What the load should look like after an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// Backends that should take calls, with their weights.
    pub expected: Vec<(String, u32)>,
    /// Backends among them that did not take calls before the event.
    pub new: Vec<String>,
    /// When a backend was SIGKILLed, if the event did: failed calls in
    /// flight then are expected (see [`failures`] for which).
    pub kill_at: Option<Duration>,
}

/// When the load converged after an event, and how it split afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Convergence {
    /// From the event to the start of the last call that did not match the
    /// expectation, or to the first call of the last new backend, whichever
    /// is later; zero if every call matched from the event on. `None` if a
    /// new backend never answered.
    pub after: Option<Duration>,
    /// Successful calls per backend from then until the end of the window.
    pub split: BTreeMap<String, u64>,
    /// Whether that split holds only expected backends, each within the
    /// tolerance of its weight's share.
    pub split_ok: bool,
}

/// How the calls that STARTED in `[from, until)` converged to
/// `expectation`. A call does not match if it failed (other than in flight
/// at the kill) or was answered by a backend not expected; a call that ended
/// at `until` or later is judged with the next event instead. `records` must be
/// sorted by start time; `tolerance_points` is in percentage points.
pub fn load_converged(
    records: &[CallRecord],
    from: Duration,
    until: Duration,
    expectation: &Expectation,
    tolerance_points: f64,
) -> Convergence {
    let first = records.partition_point(|record| record.start < from);
    let last = records.partition_point(|record| record.start < until);
    let calls = &records[first..last];
    let expected = |name: &str| expectation.expected.iter().any(|(e, _)| e == name);
    let noticed = expectation.kill_at.and_then(|kill| {
        calls
            .iter()
            .filter(|call| call.failed() && call.end >= kill)
            .map(|call| call.end)
            .min()
    });
    let mismatch = calls
        .iter()
        // A call still running at `until` belongs to what happened then.
        .filter(|call| call.end < until)
        .filter(|call| match call.backend() {
            Some(backend) => !expected(backend),
            None => {
                !(expectation.kill_at.is_some_and(|kill| call.end >= kill)
                    && noticed.is_some_and(|noticed| call.start <= noticed))
            }
        })
        .map(|call| call.start)
        .max();
    let mut last_new = None;
    for name in &expectation.new {
        let Some(first) = calls
            .iter()
            .find(|call| call.backend() == Some(name.as_str()))
            .map(|call| call.start)
        else {
            return Convergence {
                after: None,
                split: split(records, from, until),
                split_ok: false,
            };
        };
        last_new = last_new.max(Some(first));
    }
    let after = mismatch
        .max(last_new)
        .map_or(Duration::ZERO, |at| at - from);
    // Calls after the last mismatch, from the last new backend's first call.
    let mut settled = BTreeMap::new();
    for call in calls {
        if mismatch.is_some_and(|at| call.start <= at) || last_new.is_some_and(|at| call.start < at)
        {
            continue;
        }
        if let Some(backend) = call.backend() {
            *settled.entry(backend.to_owned()).or_default() += 1;
        }
    }
    let total_weight: u32 = expectation.expected.iter().map(|(_, w)| *w).sum();
    let total_calls: u64 = settled.values().sum();
    let split_ok = total_calls > 0
        && total_weight > 0
        && settled.keys().all(|name| expected(name))
        && expectation.expected.iter().all(|(name, weight)| {
            let share = settled.get(name).copied().unwrap_or(0) as f64 / total_calls as f64;
            let want = f64::from(*weight) / f64::from(total_weight);
            ((share - want) * 100.0).abs() <= tolerance_points
        });
    Convergence {
        after: Some(after),
        split: settled,
        split_ok,
    }
}

/// `b1 50.0 %, b3 50.0 %` of `split`.
pub fn describe_split(split: &BTreeMap<String, u64>) -> String {
    let total: u64 = split.values().sum();
    if total == 0 {
        return "no calls".to_owned();
    }
    split
        .iter()
        .map(|(name, count)| format!("{name} {:.1} %", *count as f64 * 100.0 / total as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Start of the first call at or after `from` answered by `backend`.
pub fn first_answer(records: &[CallRecord], backend: &str, from: Duration) -> Option<Duration> {
    records
        .iter()
        .filter(|record| record.start >= from && record.backend() == Some(backend))
        .map(|record| record.start)
        .min()
}

/// Start of the last call started at or after `from` answered by `backend`.
pub fn last_answer(records: &[CallRecord], backend: &str, from: Duration) -> Option<Duration> {
    records
        .iter()
        .filter(|record| record.start >= from && record.backend() == Some(backend))
        .map(|record| record.start)
        .max()
}

/// Successful calls per backend among the calls that started in
/// `[from, until)`.
pub fn split(records: &[CallRecord], from: Duration, until: Duration) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for record in records {
        if record.start >= from
            && record.start < until
            && let Some(backend) = record.backend()
        {
            *counts.entry(backend.to_owned()).or_default() += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::load::Outcome;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn ok(start: u64, backend: &str) -> CallRecord {
        CallRecord {
            start: ms(start),
            end: ms(start + 1),
            outcome: Outcome::Ok(backend.to_owned()),
        }
    }

    fn failed(start: u64, end: u64) -> CallRecord {
        CallRecord {
            start: ms(start),
            end: ms(end),
            outcome: Outcome::Failed {
                code: tonic::Code::Unavailable,
                message: String::new(),
            },
        }
    }

    fn expect(expected: &[&str], new: &[&str], kill_at: Option<u64>) -> Expectation {
        Expectation {
            expected: expected
                .iter()
                .map(|name| ((*name).to_owned(), 1))
                .collect(),
            new: new.iter().map(|name| (*name).to_owned()).collect(),
            kill_at: kill_at.map(ms),
        }
    }

    #[test]
    fn failures_count_by_end_time_and_separate_calls_in_flight_at_a_kill() {
        let records = vec![
            failed(0, 5),     // before the window
            failed(90, 120),  // in flight at the kill (100)
            failed(105, 110), // sent before the client noticed (110)
            failed(130, 140),
            ok(150, "b1"),
            CallRecord {
                start: ms(160),
                end: ms(160),
                outcome: Outcome::NotSent,
            },
            failed(190, 250), // ends after the window
        ];
        let found = failures(&records, ms(100), ms(200), Some(ms(100)));
        assert_eq!(found.in_flight(), 2);
        assert_eq!(found.unexpected(), 2);
        assert_eq!(
            describe_counts(&found.by_code),
            "2 (NotSent 1, Unavailable 1)"
        );
        let without_kill = failures(&records, ms(100), ms(200), None);
        assert_eq!(without_kill.in_flight(), 0);
        assert_eq!(without_kill.unexpected(), 4);
        assert_eq!(describe_counts(&BTreeMap::new()), "0");
    }

    #[test]
    fn the_load_converges_at_the_last_call_on_a_drained_backend() {
        // b2 answers until 90 ms; from 100 ms on b1 and b3 alternate.
        let mut records = Vec::new();
        for start in (0..400).step_by(5) {
            let backend = match (start < 100, start / 5 % 3, start / 5 % 2) {
                (true, 0, _) => "b2",
                (true, 1, _) | (false, _, 0) => "b1",
                _ => "b3",
            };
            records.push(ok(start, backend));
        }
        let converged = load_converged(
            &records,
            ms(0),
            ms(400),
            &expect(&["b1", "b3"], &[], None),
            1.0,
        );
        assert_eq!(converged.after, Some(ms(90)));
        assert!(converged.split_ok, "{converged:?}");
        assert_eq!(describe_split(&converged.split), "b1 50.8 %, b3 49.2 %");
        assert_eq!(last_answer(&records, "b2", ms(0)), Some(ms(90)));
        assert_eq!(first_answer(&records, "b3", ms(100)), Some(ms(105)));
    }

    #[test]
    fn a_new_backend_converges_at_its_first_call_and_failures_count_unless_in_flight_at_a_kill() {
        let mut records: Vec<CallRecord> = (0..40)
            .map(|i| ok(i * 10, if i % 2 == 0 || i < 10 { "b1" } else { "b4" }))
            .collect();
        // In flight at the kill (at 50 ms): allowed; a later failure is not.
        records.insert(0, failed(0, 60));
        let add = expect(&["b1", "b4"], &["b4"], Some(50));
        let converged = load_converged(&records, ms(0), ms(400), &add, 5.0);
        assert_eq!(converged.after, Some(ms(110)));
        assert!(converged.split_ok, "{converged:?}");
        records.push(failed(300, 301));
        records.sort_by_key(|record| record.start);
        let converged = load_converged(&records, ms(0), ms(400), &add, 5.0);
        assert_eq!(converged.after, Some(ms(300)));
        // A failure that ends after the window is the next event's.
        records.push(failed(390, 420));
        records.sort_by_key(|record| record.start);
        let converged = load_converged(&records, ms(0), ms(400), &add, 5.0);
        assert_eq!(converged.after, Some(ms(300)));
        // A new backend that never answers: not converged.
        let never = load_converged(
            &records,
            ms(0),
            ms(400),
            &expect(&["b1", "b5"], &["b5"], None),
            5.0,
        );
        assert_eq!(never.after, None);
        assert!(!never.split_ok);
        // All on b1 while b1 and b4 should share: the split is off.
        let skewed: Vec<CallRecord> = (0..20).map(|i| ok(i * 10, "b1")).collect();
        let off = load_converged(
            &skewed,
            ms(0),
            ms(200),
            &expect(&["b1", "b4"], &[], None),
            5.0,
        );
        assert_eq!(off.after, Some(ms(0)));
        assert!(!off.split_ok);
        assert_eq!(split(&skewed, ms(0), ms(50)).get("b1"), Some(&5));
    }
}
