//! File discovery: a YAML file of clusters and endpoints, watched for edits.
//!
//! ```yaml
//! clusters:
//!   - name: greeter
//!     endpoints:
//!       - { address: 127.0.0.1:50051, weight: 1, zone: z1 }
//!       - { address: 127.0.0.1:50052, weight: 2 }
//! ```
//!
//! Owns: the file format, its validation (with file, line and column in every
//! error) and the poll loop that applies edits.
//! Must never: publish a file that failed validation.

mod error;
mod parse;
mod schema;
mod watch;

pub use error::ConfigError;
pub use parse::{parse, parse_file, parse_update};
pub use watch::{FileSource, source_id};
