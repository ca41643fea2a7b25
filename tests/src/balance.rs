//! How evenly load lands on backends that report ORCA: open-loop calls
//! through `lookaside-client` (`lookaside demo`'s load generator, in the
//! test process), and every backend's utilization read from its own ORCA
//! stream (the control plane's stream follower, into a load table of the
//! test's own), so that every policy, `static` included, is measured the
//! same way.
//!
//! [`BalancedLoad::sample`] returns a [`Balance`] over the last
//! [`SPAN_SAMPLES`] samples: the calls per backend with their latencies
//! and each backend's mean reported utilization.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use lookaside_client::Client;
use lookaside_control_plane::demo::{CallWindow, LoadGenerator, max_over_mean};
use lookaside_control_plane::load::{LoadTable, OrcaStreamConfig, follow_endpoint};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::poll::{self, Check};

/// Time between two samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// Samples a [`Balance`] covers (3 s).
pub const SPAN_SAMPLES: usize = 6;

/// ORCA report interval the test asks each backend for.
const REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// A report older than this does not count.
const FRESH: Duration = Duration::from_millis(1500);

/// Deadline of every call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the client may take to reach a backend.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Load running through `lookaside-client`, with the backends' reports.
#[derive(Debug)]
pub struct BalancedLoad {
    load: LoadGenerator,
    reports: LoadTable,
    followers: Vec<JoinHandle<()>>,
    backends: Vec<(String, SocketAddr)>,
    ticks: Interval,
    samples: VecDeque<Sample>,
    started: Instant,
    // Dropped last: the balanced channel lives as long as its client.
    _client: Client,
}

/// One sample: the calls since the previous one, and the latest fresh
/// utilization of each backend (in `backends` order).
#[derive(Debug)]
struct Sample {
    calls: CallWindow,
    utilization: Vec<Option<f64>>,
}

impl BalancedLoad {
    /// Sends `rate` calls per second to `cluster`, through a
    /// `lookaside-client` of the control plane at `xds`, and follows the
    /// ORCA reports of `backends` (`(name, address)`). Returns once the
    /// client can reach a backend and the load has started.
    pub async fn start(
        xds: SocketAddr,
        cluster: &str,
        backends: Vec<(String, SocketAddr)>,
        rate: f64,
    ) -> Result<Self> {
        let client = Client::builder(format!("http://{xds}"))
            .node_id("balanced-load")
            .build()
            .context("building the lookaside client")?;
        let channel = client.channel(cluster);
        poll::until(
            &format!("the client to reach a backend of {cluster}"),
            READY_TIMEOUT,
            async || {
                Ok(if channel.is_usable() {
                    Check::Done(())
                } else {
                    Check::NotYet("no usable endpoint".to_owned())
                })
            },
        )
        .await?;
        let reports = LoadTable::default();
        let config = OrcaStreamConfig {
            interval: REPORT_INTERVAL,
            ..OrcaStreamConfig::default()
        };
        let followers = backends
            .iter()
            .map(|(_, address)| {
                tokio::spawn(follow_endpoint(*address, reports.clone(), config.clone()))
            })
            .collect();
        let load = LoadGenerator::start(channel, rate, CALL_TIMEOUT);
        let started = Instant::now();
        let mut ticks = tokio::time::interval_at(started + SAMPLE_EVERY, SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Self {
            load,
            reports,
            followers,
            backends,
            ticks,
            samples: VecDeque::new(),
            started,
            _client: client,
        })
    }

    /// How long the load has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Forgets every sample so far (say, the warm-up).
    pub fn reset(&mut self) {
        self.samples.clear();
    }

    /// Waits for the next sample time and returns the balance over the
    /// last [`SPAN_SAMPLES`] samples.
    pub async fn sample(&mut self) -> Balance {
        self.ticks.tick().await;
        let calls = self.load.take();
        let utilization = self
            .backends
            .iter()
            .map(|(_, address)| {
                self.reports
                    .report(address)
                    .filter(|report| report.at.elapsed() < FRESH)
                    .map(|report| report.utilization)
            })
            .collect();
        self.samples.push_back(Sample { calls, utilization });
        while self.samples.len() > SPAN_SAMPLES {
            self.samples.pop_front();
        }
        self.balance()
    }

    fn balance(&self) -> Balance {
        let mut calls = CallWindow::default();
        for sample in &self.samples {
            calls.merge(&sample.calls);
        }
        let mut utilization = BTreeMap::new();
        for (index, (name, _)) in self.backends.iter().enumerate() {
            let seen: Vec<f64> = self
                .samples
                .iter()
                .filter_map(|sample| sample.utilization.get(index).copied().flatten())
                .collect();
            if !seen.is_empty() {
                utilization.insert(name.clone(), seen.iter().sum::<f64>() / seen.len() as f64);
            }
        }
        Balance {
            calls,
            utilization,
            backends: self.backends.iter().map(|(name, _)| name.clone()).collect(),
            samples: self.samples.len(),
        }
    }
}

impl Drop for BalancedLoad {
    fn drop(&mut self) {
        for follower in &self.followers {
            follower.abort();
        }
    }
}

/// How the load landed over a span of samples.
#[derive(Debug, Clone)]
pub struct Balance {
    /// Calls per backend, with latencies, and failures.
    pub calls: CallWindow,
    /// Mean reported utilization of each backend that reported.
    pub utilization: BTreeMap<String, f64>,
    /// Every backend's name.
    pub backends: Vec<String>,
    /// Samples it covers.
    pub samples: usize,
}

impl Balance {
    /// Whether it covers a whole span of [`SPAN_SAMPLES`] samples.
    pub fn is_full(&self) -> bool {
        self.samples >= SPAN_SAMPLES
    }

    /// The largest utilization over the mean (1.0: perfectly even); `None`
    /// until every backend has reported.
    pub fn max_over_mean(&self) -> Option<f64> {
        if self.utilization.len() < self.backends.len() {
            return None;
        }
        let values: Vec<f64> = self.utilization.values().copied().collect();
        max_over_mean(&values)
    }

    /// Calls `backend` answered over the mean of what each of `others`
    /// answered; `None` while the others have none.
    pub fn share_ratio(&self, backend: &str, others: &[&str]) -> Option<f64> {
        let others_mean = others
            .iter()
            .map(|other| self.calls.count(other) as f64)
            .sum::<f64>()
            / others.len().max(1) as f64;
        (others_mean > 0.0).then(|| self.calls.count(backend) as f64 / others_mean)
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut calls = self.calls.clone();
        let total = calls.ok();
        for name in &self.backends {
            let utilization = self
                .utilization
                .get(name)
                .map_or_else(|| "-".to_owned(), |u| format!("{:.0}%", u * 100.0));
            let p99 = calls
                .percentile(name, 0.99)
                .map_or_else(|| "-".to_owned(), |p| format!("{} ms", p.as_millis()));
            write!(
                f,
                "{name}: {} calls ({:.1}%), util {utilization}, p99 {p99}; ",
                calls.count(name),
                calls.share(name) * 100.0
            )?;
        }
        let evenness = self
            .max_over_mean()
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        write!(
            f,
            "utilization max/mean {evenness}; {total} calls, {} failed over {:.1} s",
            calls.failed,
            calls.length.as_secs_f64()
        )
    }
}
