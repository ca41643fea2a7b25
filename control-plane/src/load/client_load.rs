//! What clients saw of each endpoint, from their LRS reports: requests and
//! errors per second summed over every reporting client.
//!
//! Owns: per-endpoint, per-client samples and their aggregation.
//! Must never: grow without bound; a stream holds only the samples of its
//! latest report (and only about endpoints the registry knows), they go
//! with the stream, and a sample older than `STALE_AFTER` report intervals
//! is ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// A sample older than this many of its own intervals no longer counts.
const STALE_AFTER: u32 = 3;

/// One client's report about one endpoint over one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientSample {
    /// Calls that finished (successfully or not) in the interval.
    pub finished: u64,
    /// Calls that failed in the interval.
    pub errors: u64,
    /// Calls in flight at the end of the interval.
    pub in_progress: u64,
    /// Length of the interval.
    pub interval: Duration,
    /// When the report arrived.
    pub at: Instant,
}

impl ClientSample {
    /// Adds `other`'s calls (the same endpoint in the same report): its
    /// rates are added, counted over this sample's interval.
    fn add(&mut self, other: &ClientSample) {
        let scale = if other.interval.is_zero() {
            1.0
        } else {
            self.interval.as_secs_f64() / other.interval.as_secs_f64()
        };
        // Saturating float-to-integer conversions: counts stay in range.
        let rescaled = |count: u64| (count as f64 * scale).round() as u64;
        self.finished = self.finished.saturating_add(rescaled(other.finished));
        self.errors = self.errors.saturating_add(rescaled(other.errors));
        self.in_progress = self.in_progress.saturating_add(other.in_progress);
        self.at = self.at.max(other.at);
    }
}

/// Clients' view of one endpoint, summed over every fresh sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientLoad {
    /// Calls per second clients finished on it.
    pub rps: f64,
    /// Failed calls per second clients saw.
    pub eps: f64,
    /// Calls in flight.
    pub in_progress: u64,
    /// How many clients reported on it.
    pub reporters: usize,
    /// When the newest sample arrived.
    pub at: Option<Instant>,
}

impl ClientLoad {
    /// The fraction of calls that failed, if any finished.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.rps > 0.0).then(|| (self.eps / self.rps).clamp(0.0, 1.0))
    }
}

/// Every endpoint's client samples, by LRS stream. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ClientLoads {
    endpoints: Arc<DashMap<SocketAddr, BTreeMap<u64, ClientSample>>>,
    /// Which endpoints each stream's latest report covered.
    streams: Arc<DashMap<u64, Vec<SocketAddr>>>,
}

impl ClientLoads {
    /// Replaces everything stream `stream` reported with its latest report.
    pub fn replace_stream(
        &self,
        stream: u64,
        samples: impl IntoIterator<Item = (SocketAddr, ClientSample)>,
    ) {
        // One sample per endpoint: an endpoint listed twice (in two
        // clusters, or by a client repeating it) counts all its calls once.
        let mut merged: BTreeMap<SocketAddr, ClientSample> = BTreeMap::new();
        for (address, sample) in samples {
            merged
                .entry(address)
                .and_modify(|known| known.add(&sample))
                .or_insert(sample);
        }
        let covered: Vec<SocketAddr> = merged.keys().copied().collect();
        for (address, sample) in merged {
            self.endpoints
                .entry(address)
                .or_default()
                .insert(stream, sample);
        }
        let previous = self.streams.insert(stream, covered.clone());
        for address in previous.unwrap_or_default() {
            // `covered` is sorted: a report listing many endpoints costs
            // n log n, not n squared.
            if covered.binary_search(&address).is_err() {
                self.remove(address, stream);
            }
        }
    }

    /// Forgets everything stream `stream` reported (it ended).
    pub fn forget_stream(&self, stream: u64) {
        if let Some((_, covered)) = self.streams.remove(&stream) {
            for address in covered {
                self.remove(address, stream);
            }
        }
    }

    fn remove(&self, address: SocketAddr, stream: u64) {
        if let Some(mut samples) = self.endpoints.get_mut(&address) {
            samples.remove(&stream);
        }
        self.endpoints
            .remove_if(&address, |_, samples| samples.is_empty());
    }

    /// The clients' view of `address` at `now`, if any fresh sample exists.
    pub fn get(&self, address: &SocketAddr, now: Instant) -> Option<ClientLoad> {
        let samples = self.endpoints.get(address)?;
        let mut load = ClientLoad::default();
        for sample in samples.values() {
            let seconds = sample.interval.as_secs_f64();
            if seconds <= 0.0
                || now.saturating_duration_since(sample.at) > sample.interval * STALE_AFTER
            {
                continue;
            }
            load.rps += sample.finished as f64 / seconds;
            load.eps += sample.errors as f64 / seconds;
            load.in_progress += sample.in_progress;
            load.reporters += 1;
            load.at = load.at.max(Some(sample.at));
        }
        (load.reporters > 0).then_some(load)
    }

    /// Number of endpoints with samples.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether no endpoint has samples.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(finished: u64, errors: u64, at: Instant) -> ClientSample {
        ClientSample {
            finished,
            errors,
            in_progress: 1,
            interval: Duration::from_secs(2),
            at,
        }
    }

    #[test]
    fn clients_add_up_and_stale_or_gone_ones_do_not_count() {
        let loads = ClientLoads::default();
        let address = SocketAddr::from(([10, 0, 0, 1], 80));
        let start = Instant::now();
        loads.replace_stream(1, [(address, sample(200, 20, start))]);
        loads.replace_stream(2, [(address, sample(100, 0, start))]);
        let load = loads.get(&address, start).unwrap_or_default();
        assert_eq!((load.rps, load.eps, load.reporters), (150.0, 10.0, 2));
        assert_eq!(load.error_ratio(), Some(10.0 / 150.0));
        // Stream 1 ends; stream 2 goes quiet past three intervals.
        loads.forget_stream(1);
        assert_eq!(loads.get(&address, start).map(|l| l.rps), Some(50.0));
        assert_eq!(loads.get(&address, start + Duration::from_secs(7)), None);
        loads.forget_stream(2);
        assert!(loads.is_empty());
    }

    #[test]
    fn a_stream_keeps_only_its_latest_report() {
        let loads = ClientLoads::default();
        let first = SocketAddr::from(([10, 0, 0, 1], 80));
        let second = SocketAddr::from(([10, 0, 0, 2], 80));
        let now = Instant::now();
        loads.replace_stream(1, [(first, sample(10, 0, now))]);
        loads.replace_stream(1, [(second, sample(10, 0, now))]);
        assert!(loads.get(&first, now).is_none());
        assert_eq!(loads.len(), 1);
    }

    #[test]
    fn an_endpoint_listed_twice_in_one_report_counts_every_call() {
        // The same endpoint in two clusters (an alias) of one report.
        let loads = ClientLoads::default();
        let address = SocketAddr::from(([10, 0, 0, 1], 80));
        let now = Instant::now();
        let longer = ClientSample {
            interval: Duration::from_secs(4),
            ..sample(120, 60, now)
        };
        loads.replace_stream(1, [(address, sample(100, 10, now)), (address, longer)]);
        // 50 + 30 calls/s, 5 + 15 errors/s.
        let load = loads.get(&address, now).unwrap_or_default();
        assert_eq!((load.rps, load.eps, load.reporters), (80.0, 20.0, 1));
        // A huge report of repeats is one sample, and the next report
        // replaces it.
        let other = SocketAddr::from(([10, 0, 0, 2], 80));
        loads.replace_stream(1, (0..100_000).map(|_| (other, sample(1, 0, now))));
        assert_eq!(loads.get(&other, now).map(|l| l.rps), Some(50_000.0));
        assert!(loads.get(&address, now).is_none());
        assert_eq!(loads.len(), 1);
    }
}
