//! The capacity model of a demo backend: `K` workers, each call holding one
//! for `cost` (times the slowdown), calls queueing in order for a free one.
//!
//! Owns: the workers, the slowdown factor and the busy meter they feed.
//! Must never: burn CPU. A call sleeps while it holds its worker, so a
//! demo of many backends runs on a two-core laptop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::BusyMeter;

/// How far back utilization looks.
pub const UTILIZATION_WINDOW: Duration = Duration::from_secs(1);

/// A pool of workers that serve calls one at a time each.
#[derive(Debug)]
pub struct Workers {
    count: usize,
    cost: Duration,
    /// `f64` bits of the slowdown factor.
    slowdown: AtomicU64,
    free: Semaphore,
    meter: Mutex<BusyMeter>,
}

impl Workers {
    /// `count` workers (at least one), each call taking `cost`.
    pub fn new(count: usize, cost: Duration) -> Self {
        let count = count.max(1);
        Self {
            count,
            cost,
            slowdown: AtomicU64::new(1.0_f64.to_bits()),
            free: Semaphore::new(count),
            meter: Mutex::new(BusyMeter::new(count, UTILIZATION_WINDOW, Instant::now())),
        }
    }

    /// Serves one call: waits for a free worker (first come, first served)
    /// and holds it for the cost of a call. A call dropped while it waits
    /// or works frees its place at once.
    pub async fn serve(&self) {
        // The semaphore is never closed, so this never fails; a closed one
        // would serve at once rather than hang.
        let Ok(_permit) = self.free.acquire().await else {
            return;
        };
        let _busy = Busy::start(self);
        tokio::time::sleep(self.call_time()).await;
    }

    /// How many workers there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// How long a call holds its worker, slowdown included.
    pub fn call_time(&self) -> Duration {
        self.cost.mul_f64(self.slowdown())
    }

    /// Calls per second the workers can serve now.
    pub fn capacity(&self) -> f64 {
        self.count as f64 / self.call_time().as_secs_f64().max(1e-6)
    }

    /// Makes every call from now on take `factor` times its cost (1: normal
    /// speed, 2: half the capacity). Factors that are not finite and
    /// positive are ignored; tiny ones are raised to 0.01.
    pub fn set_slowdown(&self, factor: f64) {
        if factor.is_finite() && factor > 0.0 {
            self.slowdown
                .store(factor.max(0.01).to_bits(), Ordering::Relaxed);
        }
    }

    /// The current slowdown factor.
    pub fn slowdown(&self) -> f64 {
        f64::from_bits(self.slowdown.load(Ordering::Relaxed))
    }

    /// Busy worker-time over all worker-time in the last
    /// [`UTILIZATION_WINDOW`] (0..=1).
    pub fn utilization(&self) -> f64 {
        self.meter().utilization(Instant::now())
    }

    /// Busy worker-seconds since the start.
    pub fn busy_seconds(&self) -> f64 {
        self.meter().busy_seconds(Instant::now())
    }

    /// Workers serving a call now.
    pub fn busy(&self) -> usize {
        self.meter().busy()
    }

    fn meter(&self) -> MutexGuard<'_, BusyMeter> {
        // The meter holds plain numbers: a panic elsewhere leaves them valid.
        self.meter.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One worker's busy spell: counted from creation until drop.
struct Busy<'a> {
    workers: &'a Workers,
}

impl<'a> Busy<'a> {
    fn start(workers: &'a Workers) -> Self {
        workers.meter().start(Instant::now());
        Self { workers }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.workers.meter().finish(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Starts `calls` calls at once; returns when each finished, in order.
    async fn burst(workers: &Arc<Workers>, calls: usize) -> Vec<Duration> {
        let start = Instant::now();
        let tasks: Vec<_> = (0..calls)
            .map(|_| {
                let workers = workers.clone();
                tokio::spawn(async move {
                    workers.serve().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.unwrap_or_default());
        }
        done
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_workers_queue() {
        let workers = Arc::new(Workers::new(2, 40 * MS));
        assert_eq!(workers.capacity(), 50.0);
        let done = burst(&workers, 4).await;
        assert_eq!(done, vec![40 * MS, 40 * MS, 80 * MS, 80 * MS]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slowdown_stretches_every_call_and_halves_capacity() {
        let workers = Arc::new(Workers::new(2, 40 * MS));
        workers.set_slowdown(2.0);
        assert_eq!(workers.capacity(), 25.0);
        assert_eq!(burst(&workers, 2).await, vec![80 * MS, 80 * MS]);
        workers.set_slowdown(f64::NAN);
        workers.set_slowdown(-1.0);
        assert_eq!(workers.slowdown(), 2.0);
    }

    #[tokio::test(start_paused = true)]
    async fn utilization_follows_the_offered_load() {
        let workers = Arc::new(Workers::new(4, 10 * MS));
        // 200 calls/s of 10 ms on 4 workers: half of the 400 calls/s
        // capacity, sampled as the backend does.
        let mut sample = tokio::time::interval(100 * MS);
        let mut arrivals = tokio::time::interval(5 * MS);
        let start = Instant::now();
        let mut utilization = 0.0;
        while start.elapsed() < 2000 * MS {
            tokio::select! {
                _ = arrivals.tick() => {
                    let workers = workers.clone();
                    tokio::spawn(async move { workers.serve().await });
                }
                _ = sample.tick() => utilization = workers.utilization(),
            }
        }
        assert!((utilization - 0.5).abs() < 0.03, "{utilization}");
        // 400 calls of 10 ms.
        assert!(
            (workers.busy_seconds() - 4.0).abs() < 0.05,
            "{}",
            workers.busy_seconds()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_call_frees_its_worker() {
        let workers = Arc::new(Workers::new(1, 1000 * MS));
        let first = {
            let workers = workers.clone();
            tokio::spawn(async move { workers.serve().await })
        };
        tokio::time::sleep(10 * MS).await;
        assert_eq!(workers.busy(), 1);
        first.abort();
        let _ = first.await;
        assert_eq!(workers.busy(), 0);
        assert_eq!(burst(&workers, 1).await, vec![1000 * MS]);
    }
}
