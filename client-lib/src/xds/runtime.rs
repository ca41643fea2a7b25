//! The runtime the xDS client's background tasks run on: tokio, with every
//! task stoppable.
//!
//! `xds-client`'s ADS worker keeps a handle to itself, so it never notices
//! that every `XdsClient` is gone and would keep its stream to the control
//! plane open for the life of the process. Its tasks are spawned through
//! [`OwnedRuntime`], which remembers them, and [`Worker`] stops them all when
//! dropped.
//! Must never: keep more than the tasks still running.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;

/// Spawns on tokio and remembers each running task.
#[derive(Debug, Clone, Default)]
pub struct OwnedRuntime {
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl OwnedRuntime {
    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<AbortHandle>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        let mut tasks = self.tasks();
        tasks.retain(|task| !task.is_finished());
        tasks.len()
    }
}

impl xds_client::Runtime for OwnedRuntime {
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = tokio::spawn(future).abort_handle();
        let mut tasks = self.tasks();
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Owns the xDS client's background tasks: dropping the last clone stops
/// them (and with them the ADS stream).
#[derive(Debug)]
pub struct Worker {
    runtime: OwnedRuntime,
}

impl Worker {
    /// The owner of every task spawned on `runtime`.
    pub fn new(runtime: OwnedRuntime) -> Self {
        Self { runtime }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        for task in self.runtime.tasks().drain(..) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_client::Runtime;

    #[tokio::test]
    async fn dropping_the_worker_stops_every_task_and_finished_ones_are_forgotten() {
        let runtime = OwnedRuntime::default();
        runtime.spawn(async {});
        let (_never, pending) = tokio::sync::oneshot::channel::<()>();
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let _stopped = stopped_tx;
            let _ = pending.await;
        });
        tokio::task::yield_now().await;
        assert_eq!(runtime.running(), 1, "the finished task is forgotten");
        drop(Worker::new(runtime.clone()));
        let stopped = tokio::time::timeout(Duration::from_secs(5), stopped).await;
        assert!(
            matches!(stopped, Ok(Err(_))),
            "the pending task was not stopped"
        );
        assert_eq!(runtime.running(), 0);
    }
}
