//! Watching the config file.
//!
//! Polls the file's content (not its mtime or inotify events) at a fixed
//! interval: Kubernetes ConfigMap volumes replace files through symlink swaps
//! that inotify watchers miss, and a content hash never does. An edit applies
//! within one interval (default 200 ms) plus a 100 ms settle check.
//!
//! A writer that is not atomic (`cmd > file`, most tools) empties the file
//! first and may pause mid-write. The settle check keeps out content still
//! changing, and while running a file without a `clusters` key (empty,
//! comments only) is refused (the last good config keeps serving;
//! `clusters: []` serves none), as are `clusters:` or `endpoints:` with
//! nothing after them (see the schema). At start-up such a file is taken
//! as no clusters. Writing a new
//! file and renaming it over the old one is safe at any speed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tracing::{info, warn};
use xxhash_rust::xxh3::xxh3_64;

use super::{ConfigError, parse, parse_update};
use crate::registry::Cluster;
use crate::sources::{SourceError, SourceStatus};
use crate::telemetry::Metrics;

/// How long a changed file must stay unchanged before it is applied.
const SETTLE: Duration = Duration::from_millis(100);

/// The source id of a config file: `file:PATH`.
pub fn source_id(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// A watched config file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    id: String,
    interval: Duration,
    status: SourceStatus,
    metrics: Arc<Metrics>,
    last_hash: Option<u64>,
}

impl FileSource {
    /// A source for `path`, polled every `interval`.
    pub fn new(
        path: PathBuf,
        interval: Duration,
        status: SourceStatus,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            id: source_id(&path),
            path,
            interval,
            status,
            metrics,
            last_hash: None,
        }
    }

    /// This source's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Loads the file once. Used at start-up, where an invalid file is fatal.
    pub fn load(&mut self) -> Result<Vec<Cluster>, ConfigError> {
        let bytes = std::fs::read(&self.path).map_err(|source| ConfigError::Read {
            path: self.path.clone(),
            source,
        })?;
        let clusters = parse(self.text(&bytes)?, &self.path)?;
        self.last_hash = Some(xxh3_64(&bytes));
        self.status.loaded(&self.id, count(&clusters));
        Ok(clusters)
    }

    /// Polls the file until `updates` closes, sending every valid edit.
    pub async fn run(mut self, updates: mpsc::Sender<(String, Vec<Cluster>)>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(result) = self.poll().await else {
                continue;
            };
            match result {
                Ok(clusters) => {
                    info!(source = %self.id, clusters = clusters.len(), "config applied");
                    self.status.loaded(&self.id, count(&clusters));
                    if updates.send((self.id.clone(), clusters)).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    warn!(source = %self.id, %error, "config rejected; the last good config keeps serving");
                    self.metrics
                        .config_rejections
                        .get_or_create(&Metrics::source(&self.id))
                        .inc();
                    let (file, line, column) = error.position();
                    self.status.rejected(
                        &self.id,
                        SourceError {
                            message: error.to_string(),
                            file,
                            line,
                            column,
                            at: SystemTime::now(),
                        },
                    );
                }
            }
        }
    }

    /// `None` when the content did not change since the last poll.
    async fn poll(&mut self) -> Option<Result<Vec<Cluster>, ConfigError>> {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(source) => {
                // Report a missing file once, not every interval.
                if self.last_hash == Some(0) {
                    return None;
                }
                self.last_hash = Some(0);
                return Some(Err(ConfigError::Read {
                    path: self.path.clone(),
                    source,
                }));
            }
        };
        let hash = xxh3_64(&bytes);
        if self.last_hash == Some(hash) {
            return None;
        }
        // A writer that is not atomic (`echo > file`, many tools) can be
        // caught half-way, and a truncated file may still be valid YAML.
        // Apply only content that is the same on a second read shortly after.
        tokio::time::sleep(SETTLE).await;
        match tokio::fs::read(&self.path).await {
            Ok(again) if again == bytes => {}
            // Still changing (or gone): look again on the next tick.
            _ => return None,
        }
        self.last_hash = Some(hash);
        Some(
            self.text(&bytes)
                .and_then(|text| parse_update(text, &self.path)),
        )
    }

    /// `bytes` as text, or why not.
    fn text<'a>(&self, bytes: &'a [u8]) -> Result<&'a str, ConfigError> {
        std::str::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
            path: self.path.clone(),
            line: 0,
            column: 0,
            reason: format!("not UTF-8: {e}"),
        })
    }
}

fn count(clusters: &[Cluster]) -> u32 {
    u32::try_from(clusters.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, weight: 3 }\n";
    const BETTER: &str =
        "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, weight: 4 }\n";
    const BAD: &str =
        "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, weight: 0 }\n";

    /// `l.yaml` holding `text` in a new folder, and a source polling it
    /// every 10 ms.
    fn watched(
        text: &str,
    ) -> Result<(tempfile::TempDir, SourceStatus, FileSource), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("l.yaml");
        std::fs::write(&path, text)?;
        let status = SourceStatus::default();
        let source = FileSource::new(
            path,
            Duration::from_millis(10),
            status.clone(),
            Arc::new(Metrics::new()),
        );
        Ok((dir, status, source))
    }

    /// The source's error once it mentions `needle` (every poll of the
    /// file that settles reports its verdict).
    async fn until_rejected(status: &SourceStatus, needle: &str) -> SourceError {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(error) = status.all().into_iter().find_map(|(_, state)| state.error)
                && error.message.contains(needle)
            {
                return error;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no rejection mentioning {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn edits_apply_and_bad_edits_are_reported_and_skipped()
    -> Result<(), Box<dyn std::error::Error>> {
        let (dir, status, mut source) = watched(GOOD)?;
        let path = dir.path().join("l.yaml");
        let initial = source.load()?;
        assert_eq!(initial[0].endpoints[0].weight, 3);
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(source.run(tx));

        std::fs::write(&path, BAD)?;
        // The bad edit shows up in the status, and nothing is published.
        let error = until_rejected(&status, "weight 0").await;
        assert_eq!(error.line, 4);
        assert!(rx.try_recv().is_err());

        std::fs::write(&path, BETTER)?;
        let (_, clusters) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await?
            .ok_or("closed")?;
        assert_eq!(clusters[0].endpoints[0].weight, 4);
        assert!(status.all()[0].1.error.is_none());
        task.abort();
        Ok(())
    }

    #[tokio::test]
    async fn a_slow_writer_is_never_caught_half_way() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, status, mut source) = watched(GOOD)?;
        let path = dir.path().join("l.yaml");
        source.load()?;
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(source.run(tx));

        // `cmd > file`: emptied at once, then written in pieces, each state
        // held until the watcher has read and refused it (valid YAML every
        // time): empty, `clusters:` alone, a cluster cut at `endpoints:`.
        // (A cut after `- name: g` is a cluster with no endpoints, which a
        // file may say: only the settle check and atomic writes keep that
        // out.)
        let states = [
            ("", "no `clusters:` key"),
            ("clusters:\n", "clusters: expected a list"),
            (
                "clusters:\n  - name: g\n    endpoints:\n",
                "endpoints: expected a list",
            ),
        ];
        for (written, refusal) in states {
            std::fs::write(&path, written)?;
            until_rejected(&status, refusal).await;
            assert!(
                rx.try_recv().is_err(),
                "a half-written file was applied: {written:?}"
            );
        }
        std::fs::write(&path, BETTER)?;
        let (_, clusters) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await?
            .ok_or("closed")?;
        assert!(rx.try_recv().is_err());
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].endpoints[0].weight, 4);
        task.abort();
        Ok(())
    }
}
