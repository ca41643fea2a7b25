//! Flags of the weigh and load stages.

use std::time::Duration;

use clap::Args;

use crate::load::{CollectorConfig, OrcaStreamConfig};
use crate::weigh::{ControllerConfig, WeighConfig};

/// How weights follow load.
#[derive(Debug, Clone, Args)]
pub struct WeighArgs {
    /// Time between control steps of load-driven policies, in milliseconds.
    #[arg(long, env = "LOOKASIDE_WEIGH_STEP_MS", default_value_t = 1000)]
    pub weigh_step_ms: u64,
    /// Push a load-driven cluster only when a weight moved by more than
    /// this fraction since its last push.
    #[arg(long, env = "LOOKASIDE_PUSH_THRESHOLD", default_value_t = 0.05)]
    pub push_threshold: f64,
    /// Push a load-driven cluster at most this often, in milliseconds.
    #[arg(long, env = "LOOKASIDE_PUSH_MIN_INTERVAL_MS", default_value_t = 1000)]
    pub push_min_interval_ms: u64,
    /// A load report older than this counts as missing (the endpoint gets
    /// the cluster mean), in milliseconds, unless its server reports less
    /// often: then three of its report periods (counted up to 2 min).
    #[arg(long, env = "LOOKASIDE_REPORT_EXPIRY_MS", default_value_t = 10_000)]
    pub report_expiry_ms: u64,
    /// Largest max/min weight ratio within a cluster.
    #[arg(long, env = "LOOKASIDE_MAX_WEIGHT_RATIO", default_value_t = 10.0)]
    pub max_weight_ratio: f64,
    /// Control steps a new endpoint takes to ramp up to its full weight
    /// (0: no slow start).
    #[arg(long, env = "LOOKASIDE_SLOW_START_STEPS", default_value_t = 5)]
    pub slow_start_steps: u32,
}

impl WeighArgs {
    /// The weigh stage's config.
    pub fn config(&self) -> WeighConfig {
        WeighConfig {
            step: Duration::from_millis(self.weigh_step_ms.max(10)),
            push_threshold: self.push_threshold.max(0.0),
            push_min_interval: Duration::from_millis(self.push_min_interval_ms),
            controller: ControllerConfig {
                expiry: Duration::from_millis(self.report_expiry_ms),
                max_ratio: self.max_weight_ratio.max(1.0),
                slow_start_steps: self.slow_start_steps,
                ..ControllerConfig::default()
            },
            ..WeighConfig::default()
        }
    }
}

/// How load reports are collected.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Report interval asked of each endpoint's ORCA stream, in milliseconds.
    #[arg(long, env = "LOOKASIDE_ORCA_INTERVAL_MS", default_value_t = 1000)]
    pub orca_interval_ms: u64,
    /// The most ORCA streams this replica keeps open; endpoints over the cap
    /// get the mean weight and are reported in metrics.
    #[arg(long, env = "LOOKASIDE_ORCA_MAX_STREAMS", default_value_t = 10_000)]
    pub orca_max_streams: usize,
    /// How often clients that speak LRS are asked to report, in milliseconds.
    #[arg(long, env = "LOOKASIDE_LRS_INTERVAL_MS", default_value_t = 2000)]
    pub lrs_interval_ms: u64,
}

impl LoadArgs {
    /// The load stage's config.
    pub fn config(&self) -> CollectorConfig {
        CollectorConfig {
            stream: OrcaStreamConfig {
                interval: Duration::from_millis(self.orca_interval_ms.max(10)),
                ..OrcaStreamConfig::default()
            },
            max_streams: self.orca_max_streams,
            lrs_interval: Duration::from_millis(self.lrs_interval_ms.max(100)),
            tls: None,
        }
    }
}
