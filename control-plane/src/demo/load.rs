//! An open-loop load generator: `Greeter/SayHello` calls at a fixed rate
//! through any tonic channel (the demo gives it a `lookaside-client`
//! balanced channel), counting per backend who answered and how fast.
//!
//! Open loop: calls start on schedule whether or not earlier ones have
//! answered, as independent users do, so a slow backend builds a queue
//! instead of quietly slowing the load down.
//!
//! Owns: the schedule, the calls in flight and the window being counted.
//! Must never: retry, or pick endpoints itself; the channel balances.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::CallWindow;
use super::greeter::helloworld::HelloRequest;
use super::greeter::helloworld::greeter_client::GreeterClient;

/// Extra time past a call's deadline before the generator gives up on it
/// by itself.
const DEADLINE_SLACK: Duration = Duration::from_millis(500);

/// A running load generator; dropping it stops starting calls (calls in
/// flight finish and are still counted).
#[derive(Debug)]
pub struct LoadGenerator {
    rate: f64,
    window: Arc<Mutex<(Instant, CallWindow)>>,
    task: JoinHandle<()>,
}

impl LoadGenerator {
    /// Starts `rate` calls per second through `channel`, each with the
    /// deadline `call_timeout`.
    pub fn start<T>(channel: T, rate: f64, call_timeout: Duration) -> Self
    where
        T: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
        T::Future: Send,
        T::Error: Into<tonic::codegen::StdError>,
        T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
        <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
    {
        let rate = if rate.is_finite() { rate.max(0.1) } else { 1.0 };
        let window = Arc::new(Mutex::new((Instant::now(), CallWindow::default())));
        let task = {
            let window = window.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                // Late ticks fire at once: the rate holds on average even
                // when the timer or the machine lags.
                ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
                loop {
                    ticks.tick().await;
                    let client = GreeterClient::new(channel.clone());
                    tokio::spawn(call(client, call_timeout, window.clone()));
                }
            })
        };
        Self { rate, window, task }
    }

    /// Calls started per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// What was counted since the previous `take` (or the start), and
    /// starts a new window.
    pub fn take(&self) -> CallWindow {
        let mut guard = lock(&self.window);
        let now = Instant::now();
        let (started, counted) = &mut *guard;
        let mut window = std::mem::take(counted);
        window.length = now.saturating_duration_since(*started);
        *started = now;
        window
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One call, counted when it ends.
async fn call<T>(
    mut client: GreeterClient<T>,
    timeout: Duration,
    window: Arc<Mutex<(Instant, CallWindow)>>,
) where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let started = Instant::now();
    let mut request = tonic::Request::new(HelloRequest {
        name: "demo".to_owned(),
    });
    request.set_timeout(timeout);
    let outcome = tokio::time::timeout(timeout + DEADLINE_SLACK, client.say_hello(request)).await;
    let latency = started.elapsed();
    let (_, counted) = &mut *lock(&window);
    match outcome {
        Ok(Ok(reply)) => counted.record_ok(&reply.into_inner().server, latency),
        Ok(Err(status)) => {
            counted.record_failure(format!("{:?}: {}", status.code(), status.message()));
        }
        Err(_) => counted.record_failure(format!("no answer within {timeout:?}")),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain counters: a panic elsewhere leaves them usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
