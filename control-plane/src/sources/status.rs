//! Health of each discovery source, written by the sources and read by the
//! admin API.

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

/// Why the latest input of a source was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// Human-readable reason, including file, line and column when known.
    pub message: String,
    /// File the error is in, if any.
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
    /// When the input was rejected.
    pub at: SystemTime,
}

/// What a source currently serves and whether its latest input was good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceState {
    /// When the input currently served was loaded.
    pub last_good_at: Option<SystemTime>,
    /// How many clusters it contributes.
    pub clusters: u32,
    /// Set while the latest input is rejected.
    pub error: Option<SourceError>,
}

/// Status of every source, by source id. Each source writes only its own
/// entry; the admin API reads all of them.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    entries: Arc<DashMap<String, SourceState>>,
}

impl SourceStatus {
    /// Records a good input from `source`.
    pub fn loaded(&self, source: &str, clusters: u32) {
        self.entries.insert(
            source.to_string(),
            SourceState {
                last_good_at: Some(SystemTime::now()),
                clusters,
                error: None,
            },
        );
    }

    /// Records a rejected input; the last good state is kept.
    pub fn rejected(&self, source: &str, error: SourceError) {
        self.entries
            .entry(source.to_string())
            .and_modify(|state| state.error = Some(error.clone()))
            .or_insert_with(|| SourceState {
                last_good_at: None,
                clusters: 0,
                error: Some(error),
            });
    }

    /// A copy of every source's state, sorted by source id.
    pub fn all(&self) -> Vec<(String, SourceState)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
