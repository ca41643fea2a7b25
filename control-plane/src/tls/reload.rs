//! Re-reading a set of PEM files while serving.
//!
//! Files are read every poll and compared byte for byte with what was last
//! loaded (a Kubernetes Secret mount swaps a symlink, so modification times
//! alone mislead). A set that changed is rebuilt; the result replaces the
//! current configuration only if it loads, so a half-written key or a
//! mismatched pair leaves the previous one serving.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::TlsError;
use crate::telemetry::{Metrics, TlsReloadLabels, error_chain};

/// Files that together make one TLS configuration.
pub trait FileSet: Send + Sync + 'static {
    /// What they make.
    type Output: Send + Sync + 'static;
    /// The `files` label of the reload metric.
    const NAME: &'static str;
    /// The files, in the order `build` receives their contents.
    fn paths(&self) -> Vec<&Path>;
    /// The configuration, from the files' contents.
    fn build(&self, contents: &[Vec<u8>]) -> Result<Self::Output, TlsError>;
}

/// The current configuration of a file set; cheap to clone.
pub type Reloading<T> = watch::Receiver<Arc<T>>;

/// Loads `files` now (an error here is fatal: nothing was serving yet) and
/// then every `poll`, publishing each changed set that loads.
pub async fn reloading<F: FileSet>(
    files: F,
    poll: Duration,
    metrics: Arc<Metrics>,
) -> Result<Reloading<F::Output>, TlsError> {
    let mut contents = read(&files).await?;
    let (tx, rx) = watch::channel(Arc::new(files.build(&contents)?));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = tx.closed() => return,
            }
            let fresh = match read(&files).await {
                Ok(fresh) => fresh,
                // A file briefly missing mid-rotation: try again next poll.
                Err(error) => {
                    let error = error_chain(&error);
                    tracing::debug!(%error, files = F::NAME, "TLS file unreadable; keeping the current configuration");
                    continue;
                }
            };
            if fresh == contents {
                continue;
            }
            let outcome = match files.build(&fresh) {
                Ok(config) => {
                    tracing::info!(
                        files = F::NAME,
                        "TLS files changed: new connections use them"
                    );
                    tx.send_replace(Arc::new(config));
                    "loaded"
                }
                Err(error) => {
                    let error = error_chain(&error);
                    tracing::error!(%error, files = F::NAME, "TLS files changed but do not load; the previous configuration keeps serving");
                    "rejected"
                }
            };
            // Either way this content has been judged: a rejected set is
            // not re-logged every poll, only when it changes again.
            contents = fresh;
            metrics
                .tls_reloads
                .get_or_create(&TlsReloadLabels {
                    files: F::NAME,
                    outcome,
                })
                .inc();
        }
    });
    Ok(rx)
}

/// Every file's contents, read off the async workers: a slow or hung
/// mount must not stall one.
async fn read<F: FileSet>(files: &F) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut contents = Vec::new();
    for path in files.paths() {
        contents.push(
            tokio::fs::read(path)
                .await
                .map_err(|source| TlsError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
        );
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// One file whose content must be a number.
    struct Number(PathBuf);

    impl FileSet for Number {
        type Output = u32;
        const NAME: &'static str = "test";
        fn paths(&self) -> Vec<&Path> {
            vec![self.0.as_path()]
        }
        fn build(&self, contents: &[Vec<u8>]) -> Result<u32, TlsError> {
            String::from_utf8_lossy(&contents[0])
                .trim()
                .parse()
                .map_err(|_| TlsError::Pem {
                    path: self.0.clone(),
                    what: "not a number".into(),
                })
        }
    }

    async fn next(rx: &mut Reloading<u32>) -> u32 {
        // Real time: the poll reads real files.
        match tokio::time::timeout(Duration::from_secs(5), rx.changed()).await {
            Ok(Ok(())) => **rx.borrow_and_update(),
            _ => 0,
        }
    }

    #[tokio::test]
    async fn a_good_change_replaces_and_a_bad_one_keeps_the_last_good() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n");
        std::fs::write(&path, "1").expect("write");
        let metrics = Arc::new(Metrics::new());
        let mut rx = reloading(
            Number(path.clone()),
            Duration::from_millis(10),
            metrics.clone(),
        )
        .await
        .expect("loads");
        assert_eq!(**rx.borrow(), 1);
        std::fs::write(&path, "2").expect("write");
        assert_eq!(next(&mut rx).await, 2);
        std::fs::write(&path, "garbage").expect("write");
        // Wait for the rejection to be counted, then check nothing changed.
        let rejected = TlsReloadLabels {
            files: "test",
            outcome: "rejected",
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while metrics.tls_reloads.get_or_create(&rejected).get() == 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(metrics.tls_reloads.get_or_create(&rejected).get(), 1);
        assert_eq!(**rx.borrow(), 2);
        std::fs::write(&path, "3").expect("write");
        assert_eq!(next(&mut rx).await, 3);
    }

    #[tokio::test]
    async fn a_missing_file_fails_at_start() {
        let metrics = Arc::new(Metrics::new());
        let result = reloading(
            Number("/nonexistent/n".into()),
            Duration::from_secs(1),
            metrics,
        )
        .await
        .map(|_| ());
        let error = result.err().map(|e| error_chain(&e)).unwrap_or_default();
        assert!(error.contains("/nonexistent/n"), "{error}");
    }
}
