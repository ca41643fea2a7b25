//! Open-loop load through `lookaside-client` for the fault drill: one
//! `Echo/Who` call every `1/rate` seconds whatever the earlier calls are
//! doing (a call that hangs does not delay the next one), each recorded with
//! when it started, when it ended and how (the backend that answered, or
//! the gRPC status code).
//!
//! Calls in flight are capped; a tick that finds the cap reached records a
//! call that was never sent, so an overloaded generator shows in the figures
//! instead of silently lowering the rate. Times are offsets from an origin
//! the drill gives, so its own events share the time line. It never retries
//! a call itself: what fails here failed for the application.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lookaside_client::LbChannel;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::echo::v1::WhoRequest;
use crate::echo::v1::echo_client::EchoClient;

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by the backend with this name.
    Ok(String),
    /// Failed with this status.
    Failed {
        /// The gRPC status code, e.g. `Unavailable`.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// Never sent: the cap on calls in flight was reached.
    NotSent,
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// When it started, since the origin.
    pub start: Duration,
    /// When it ended, since the origin.
    pub end: Duration,
    /// How.
    pub outcome: Outcome,
}

impl CallRecord {
    /// The backend that answered, if the call succeeded.
    pub fn backend(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Ok(name) => Some(name),
            _ => None,
        }
    }

    /// Whether the call failed or was never sent.
    pub fn failed(&self) -> bool {
        !matches!(self.outcome, Outcome::Ok(_))
    }

    /// The failure's label for the figures: the status code's name, or
    /// `NotSent`; `None` for a success.
    pub fn failure_label(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Ok(_) => None,
            Outcome::Failed { code, .. } => Some(format!("{code:?}")),
            Outcome::NotSent => Some("NotSent".to_owned()),
        }
    }
}

/// What the load is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSpec {
    /// Calls per second.
    pub rate: u32,
    /// Deadline of each call.
    pub call_timeout: Duration,
    /// Calls in flight at most.
    pub max_in_flight: usize,
}

#[derive(Debug)]
struct Shared {
    origin: Instant,
    stop: AtomicBool,
    records: Mutex<Vec<CallRecord>>,
}

impl Shared {
    fn records(&self) -> MutexGuard<'_, Vec<CallRecord>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn since_origin(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Load running in the background.
#[derive(Debug)]
pub struct OpenLoop {
    shared: Arc<Shared>,
    in_flight: Arc<Semaphore>,
    spec: LoadSpec,
    ticker: JoinHandle<()>,
}

impl OpenLoop {
    /// Starts calling `channel` now, at `spec.rate`, timing everything from
    /// `origin`.
    pub fn start(channel: LbChannel, spec: LoadSpec, origin: Instant) -> Self {
        let shared = Arc::new(Shared {
            origin,
            stop: AtomicBool::new(false),
            records: Mutex::new(Vec::new()),
        });
        let in_flight = Arc::new(Semaphore::new(spec.max_in_flight));
        let ticker = tokio::spawn(tick(channel, spec, shared.clone(), in_flight.clone()));
        Self {
            shared,
            in_flight,
            spec,
            ticker,
        }
    }

    /// Successful calls per backend and failed calls among the calls that
    /// ended at `from` or later.
    pub fn summary_since(&self, from: Duration) -> (BTreeMap<String, u64>, u64) {
        let records = self.shared.records();
        let mut backends = BTreeMap::new();
        let mut failed = 0;
        for record in records.iter().filter(|record| record.end >= from) {
            match record.backend() {
                Some(name) => *backends.entry(name.to_owned()).or_default() += 1,
                None => failed += 1,
            }
        }
        (backends, failed)
    }

    /// Stops sending, waits for the calls in flight to end (at most their
    /// deadline and a second), and returns every call, by start time.
    pub async fn stop(self) -> Vec<CallRecord> {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.ticker.await;
        let all = u32::try_from(self.spec.max_in_flight).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            self.spec.call_timeout + Duration::from_secs(2),
            self.in_flight.acquire_many(all),
        )
        .await;
        let mut records = std::mem::take(&mut *self.shared.records());
        records.sort_by_key(|record| record.start);
        records
    }
}

async fn tick(channel: LbChannel, spec: LoadSpec, shared: Arc<Shared>, in_flight: Arc<Semaphore>) {
    let period = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
    let mut interval = tokio::time::interval(period);
    // Open loop: ticks missed while the runtime was busy are made up at once.
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let client = EchoClient::new(channel);
    while !shared.stop.load(Ordering::Relaxed) {
        interval.tick().await;
        let start = shared.since_origin();
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            shared.records().push(CallRecord {
                start,
                end: start,
                outcome: Outcome::NotSent,
            });
            continue;
        };
        let mut client = client.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut request = tonic::Request::new(WhoRequest {});
            request.set_timeout(spec.call_timeout);
            // The outer timeout catches a call that ignores its deadline.
            let outcome = match tokio::time::timeout(
                spec.call_timeout + Duration::from_millis(500),
                client.who(request),
            )
            .await
            {
                Ok(Ok(reply)) => Outcome::Ok(reply.into_inner().backend),
                Ok(Err(status)) => Outcome::Failed {
                    code: status.code(),
                    message: status.message().to_owned(),
                },
                Err(_) => Outcome::Failed {
                    code: tonic::Code::DeadlineExceeded,
                    message: format!("no answer within {:?} (client side)", spec.call_timeout),
                },
            };
            let end = shared.since_origin();
            shared.records().push(CallRecord {
                start,
                end,
                outcome,
            });
            drop(permit);
        });
    }
}
