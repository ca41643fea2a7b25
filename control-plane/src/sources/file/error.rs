//! Errors of the file source.

use std::path::PathBuf;

/// A config file that cannot be used, and exactly why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content is invalid.
    #[error("{path}:{line}:{column}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: u32,
        /// 1-based column (0 when unknown).
        column: u32,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// The file, line and column the error points at.
    pub fn position(&self) -> (String, u32, u32) {
        match self {
            ConfigError::Read { path, .. } => (path.display().to_string(), 0, 0),
            ConfigError::Invalid {
                path, line, column, ..
            } => (path.display().to_string(), *line, *column),
        }
    }
}
