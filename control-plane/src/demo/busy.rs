//! Busy worker-time of a pool of workers, and its utilization over a
//! sliding window.
//!
//! Owns: the integral of busy workers over time and the samples of it that
//! span the window.
//! Must never: read a clock of its own; every moment comes in as an
//! argument, so tests drive it with any times they like.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How many workers are busy over time, and how busy they were lately.
#[derive(Debug, Clone)]
pub struct BusyMeter {
    workers: usize,
    window: Duration,
    /// Workers busy since `last`.
    busy: usize,
    /// Busy worker-seconds up to `last`.
    integral: f64,
    last: Instant,
    /// `(when, busy worker-seconds by then)`, oldest first; the first one is
    /// the latest at or before the start of the window.
    samples: VecDeque<(Instant, f64)>,
}

impl BusyMeter {
    /// A meter of `workers` workers (at least one), all idle at `now`,
    /// whose utilization covers the last `window`.
    pub fn new(workers: usize, window: Duration, now: Instant) -> Self {
        Self {
            workers: workers.max(1),
            window,
            busy: 0,
            integral: 0.0,
            last: now,
            samples: VecDeque::from([(now, 0.0)]),
        }
    }

    /// A worker became busy at `now`.
    pub fn start(&mut self, now: Instant) {
        self.advance(now);
        self.busy += 1;
    }

    /// A worker became idle at `now`.
    pub fn finish(&mut self, now: Instant) {
        self.advance(now);
        self.busy = self.busy.saturating_sub(1);
    }

    /// Workers busy now.
    pub fn busy(&self) -> usize {
        self.busy
    }

    /// Busy worker-seconds from the start until `now`.
    pub fn busy_seconds(&self, now: Instant) -> f64 {
        self.integral + self.busy as f64 * now.saturating_duration_since(self.last).as_secs_f64()
    }

    /// Busy worker-time over all worker-time of the window ending at `now`
    /// (0..=1). Also keeps a sample at `now`: call it regularly (say ten
    /// times per window) and the window slides smoothly.
    pub fn utilization(&mut self, now: Instant) -> f64 {
        let busy_now = self.busy_seconds(now);
        if self.samples.back().is_none_or(|(at, _)| *at < now) {
            self.samples.push_back((now, busy_now));
        }
        let start = now.checked_sub(self.window).unwrap_or(now);
        while self.samples.get(1).is_some_and(|(at, _)| *at <= start) {
            self.samples.pop_front();
        }
        let Some(&(from, busy_then)) = self.samples.front() else {
            return 0.0;
        };
        let wall = now.saturating_duration_since(from).as_secs_f64();
        if wall <= 0.0 {
            return self.busy as f64 / self.workers as f64;
        }
        ((busy_now - busy_then) / (wall * self.workers as f64)).clamp(0.0, 1.0)
    }

    fn advance(&mut self, now: Instant) {
        self.integral = self.busy_seconds(now);
        self.last = self.last.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn idle_workers_are_not_utilized() {
        let t0 = Instant::now();
        let mut meter = BusyMeter::new(4, Duration::from_secs(1), t0);
        assert_eq!(meter.utilization(t0 + 500 * MS), 0.0);
        assert_eq!(meter.busy_seconds(t0 + 500 * MS), 0.0);
    }

    #[test]
    fn utilization_is_busy_worker_time_over_all_worker_time() {
        let t0 = Instant::now();
        let mut meter = BusyMeter::new(2, Duration::from_secs(1), t0);
        // One of two workers busy for the whole second: 50 %.
        meter.start(t0);
        let half = meter.utilization(t0 + 1000 * MS);
        assert!((half - 0.5).abs() < 1e-9, "{half}");
        // Both busy for the next second: 100 % over the last second.
        meter.start(t0 + 1000 * MS);
        for tick in 11..=20 {
            meter.utilization(t0 + tick * 100 * MS);
        }
        let full = meter.utilization(t0 + 2000 * MS);
        assert!((full - 1.0).abs() < 1e-9, "{full}");
        assert!((meter.busy_seconds(t0 + 2000 * MS) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_window_forgets_old_work() {
        let t0 = Instant::now();
        let mut meter = BusyMeter::new(1, Duration::from_secs(1), t0);
        meter.start(t0);
        meter.finish(t0 + 1000 * MS);
        for tick in 1..=30 {
            meter.utilization(t0 + tick * 100 * MS);
        }
        assert_eq!(meter.utilization(t0 + 3000 * MS), 0.0);
        assert_eq!(meter.busy(), 0);
    }

    #[test]
    fn a_partly_busy_window_counts_only_its_busy_part() {
        let t0 = Instant::now();
        let mut meter = BusyMeter::new(1, Duration::from_secs(1), t0);
        for tick in 1..=10 {
            meter.utilization(t0 + tick * 100 * MS);
        }
        // Busy from 1.0 s to 1.25 s, then idle: a quarter of the window.
        meter.start(t0 + 1000 * MS);
        meter.finish(t0 + 1250 * MS);
        for tick in 11..=20 {
            meter.utilization(t0 + tick * 100 * MS);
        }
        let quarter = meter.utilization(t0 + 2000 * MS);
        assert!((quarter - 0.25).abs() < 1e-9, "{quarter}");
    }
}
