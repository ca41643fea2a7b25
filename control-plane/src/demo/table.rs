//! The table the demo prints every second: one row per backend (capacity,
//! weight and why, share of calls, utilization, latency) and a line for
//! how even the utilizations are.
//!
//! Owns: the columns and their formatting.
//! Must never: gather the numbers; the runner fills a [`Frame`].

use std::fmt::Write as _;
use std::time::Duration;

use super::max_over_mean;

/// One backend's line.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    /// Its name.
    pub(super) backend: String,
    /// Calls per second it can serve now.
    pub(super) capacity: f64,
    /// How many times slower than normal it is (1: normal).
    pub(super) slowdown: f64,
    /// The weight the control plane publishes for it, if any yet.
    pub(super) weight: Option<u32>,
    /// Why it has that weight (`feedback`, `slow_start`, ...).
    pub(super) reason: String,
    /// Its share of the calls answered in the window (0..=1).
    pub(super) share: f64,
    /// Its utilization over the last second (0..=1).
    pub(super) utilization: f64,
    /// Median latency of its calls in the window, seen by the client.
    pub(super) p50: Option<Duration>,
    /// 99th percentile latency of its calls in the window.
    pub(super) p99: Option<Duration>,
}

/// Everything one second's table shows.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Frame {
    /// Seconds since the load started.
    pub(super) second: u64,
    /// Calls started per second.
    pub(super) sent_per_second: f64,
    /// Calls answered in the window.
    pub(super) ok: u64,
    /// Calls failed in the window.
    pub(super) failed: u64,
    /// One row per backend.
    pub(super) rows: Vec<Row>,
    /// Median latency of all calls in the window.
    pub(super) p50: Option<Duration>,
    /// 99th percentile latency of all calls in the window.
    pub(super) p99: Option<Duration>,
}

impl Frame {
    /// Largest utilization over the mean (1.00: perfectly even).
    pub(super) fn max_over_mean(&self) -> Option<f64> {
        let utilizations: Vec<f64> = self.rows.iter().map(|row| row.utilization).collect();
        max_over_mean(&utilizations)
    }
}

/// The column titles, printed once above the first table and again now
/// and then.
pub(super) fn column_titles() -> String {
    format!(
        "{:>5}  {:<7} {:>9} {:>7} {:<11} {:>7} {:>6} {:>8} {:>8}",
        "time", "backend", "capacity", "weight", "set by", "share", "util", "p50", "p99"
    )
}

/// The table of one second.
pub(super) fn render(frame: &Frame) -> String {
    let mut out = String::new();
    for (index, row) in frame.rows.iter().enumerate() {
        let time = if index == 0 {
            format!("{}s", frame.second)
        } else {
            String::new()
        };
        let weight = row
            .weight
            .map_or_else(|| "-".to_owned(), |weight| weight.to_string());
        let _ = write!(
            out,
            "{time:>5}  {:<7} {:>7.0}/s {weight:>7} {:<11} {:>6.1}% {:>5.0}% {:>8} {:>8}",
            row.backend,
            row.capacity,
            row.reason,
            row.share * 100.0,
            row.utilization * 100.0,
            latency(row.p50),
            latency(row.p99),
        );
        if row.slowdown > 1.0 + 1e-9 {
            let _ = write!(out, "  <- {}x slower", trim_number(row.slowdown));
        }
        out.push('\n');
    }
    let evenness = frame
        .max_over_mean()
        .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}"));
    let _ = write!(
        out,
        "{:>5}  utilization max/mean {evenness} (1.00 = even); sent {:.0}/s, answered {}, \
         failed {}; all calls p50 {} p99 {}",
        "",
        frame.sent_per_second,
        frame.ok,
        frame.failed,
        latency(frame.p50),
        latency(frame.p99),
    );
    out
}

/// A latency for a table cell: `-` when unknown, else milliseconds (one
/// decimal under 10 ms), or seconds from 10 s on.
pub(super) fn latency(latency: Option<Duration>) -> String {
    let Some(latency) = latency else {
        return "-".to_owned();
    };
    let ms = latency.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

/// `2` for 2.0, `1.5` for 1.5.
pub(super) fn trim_number(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn row(backend: &str, capacity: f64, weight: u32, share: f64, utilization: f64) -> Row {
        Row {
            backend: backend.to_owned(),
            capacity,
            slowdown: 1.0,
            weight: Some(weight),
            reason: "feedback".to_owned(),
            share,
            utilization,
            p50: Some(41 * MS),
            p99: Some(62 * MS),
        }
    }

    fn frame() -> Frame {
        Frame {
            second: 12,
            sent_per_second: 320.0,
            ok: 318,
            failed: 2,
            rows: vec![
                row("a", 100.0, 750, 0.25, 0.8),
                row("b", 100.0, 751, 0.25, 0.8),
                row("c", 200.0, 1499, 0.5, 0.8),
            ],
            p50: Some(41 * MS),
            p99: Some(1500 * MS),
        }
    }

    #[test]
    fn one_line_per_backend_then_the_summary_line() {
        let text = render(&frame());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[0],
            "  12s  a           100/s     750 feedback      25.0%    80%     41ms     62ms"
        );
        assert!(lines[1].starts_with("       b "), "{text}");
        assert!(lines[2].contains("200/s    1499"), "{text}");
        assert_eq!(
            lines[3],
            "       utilization max/mean 1.00 (1.00 = even); sent 320/s, answered 318, failed 2; \
             all calls p50 41ms p99 1500ms"
        );
    }

    #[test]
    fn the_titles_line_up_with_the_rows() {
        let titles = column_titles();
        let text = render(&frame());
        let first = text.lines().next().unwrap_or_default();
        // Right-aligned columns end where their titles end.
        for title in ["capacity", "weight", "share", "util", "p50", "p99"] {
            let end = titles.find(title).unwrap_or_default() + title.len();
            assert_ne!(
                first.as_bytes().get(end - 1),
                Some(&b' '),
                "{title}:\n{titles}\n{first}"
            );
            assert!(
                first.as_bytes().get(end).is_none_or(|c| *c == b' '),
                "{title}:\n{titles}\n{first}"
            );
        }
    }

    #[test]
    fn a_slowed_backend_is_marked_and_unknowns_are_dashes() {
        let mut frame = frame();
        frame.rows[0].slowdown = 2.0;
        frame.rows[0].capacity = 50.0;
        frame.rows[1].weight = None;
        frame.rows[1].p99 = None;
        frame.rows[0].utilization = 1.0;
        let text = render(&frame);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("  <- 2x slower"), "{text}");
        assert!(lines[0].contains(" 50/s "), "{text}");
        assert!(lines[1].contains("       - feedback"), "{text}");
        assert!(lines[1].ends_with("41ms        -"), "{text}");
        let evenness = 1.0 / ((1.0 + 0.8 + 0.8) / 3.0);
        assert!(
            lines[3].contains(&format!("max/mean {evenness:.2}")),
            "{text}"
        );
    }

    #[test]
    fn latencies_read_well_at_every_scale() {
        assert_eq!(latency(None), "-");
        assert_eq!(latency(Some(Duration::from_micros(4200))), "4.2ms");
        assert_eq!(latency(Some(41 * MS)), "41ms");
        assert_eq!(latency(Some(1234 * MS)), "1234ms");
        assert_eq!(latency(Some(12_300 * MS)), "12.3s");
        assert_eq!(trim_number(2.0), "2");
        assert_eq!(trim_number(1.5), "1.5");
    }
}
