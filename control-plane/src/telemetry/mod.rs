//! Logging and Prometheus metrics.
//!
//! Owns: the log format, every metric the control plane exports, and the
//! HTTP endpoint that serves them.
//! Must never: sit on a hot path with locks; metric handles are atomics.

mod logging;
mod metrics;
mod metrics_http;

pub use logging::{LogFormat, error_chain, init_logging};
pub use metrics::{Metrics, TlsReloadLabels, TypeLabels};
pub use metrics_http::serve_metrics;
