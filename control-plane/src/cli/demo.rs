//! Flags of `lookaside demo`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::demo::DemoOptions;
use crate::registry::Policy;

/// `lookaside demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Weight policy of the demo's cluster: `utilization` follows load,
    /// `wrr` is gRPC's weighted round robin formula, `static` keeps the
    /// config file's equal weights.
    #[arg(long, env = "LOOKASIDE_DEMO_POLICY", default_value = "utilization", value_parser = ["utilization", "wrr", "static"])]
    pub policy: String,
    /// Backend capacities in calls per second, comma-separated: one backend
    /// each, named a, b, c, ...
    #[arg(
        long,
        env = "LOOKASIDE_DEMO_CAPACITIES",
        value_delimiter = ',',
        default_value = "100,100,200"
    )]
    pub capacities: Vec<f64>,
    /// How long one call holds a backend worker, in milliseconds (a backend
    /// of capacity C has C * cost / 1000 workers).
    #[arg(long, env = "LOOKASIDE_DEMO_COST_MS", default_value_t = 40)]
    pub cost_ms: u64,
    /// Calls sent, as a fraction of the backends' total capacity.
    #[arg(long, env = "LOOKASIDE_DEMO_LOAD", default_value_t = 0.75)]
    pub load: f64,
    /// How long the demo runs, in seconds.
    #[arg(long, env = "LOOKASIDE_DEMO_DURATION_S", default_value_t = 40)]
    pub duration_s: u64,
    /// When a backend slows down, in seconds from the start (default: half
    /// the duration).
    #[arg(long, env = "LOOKASIDE_DEMO_SLOW_AT_S")]
    pub slow_at_s: Option<u64>,
    /// Which backend slows down: 0 for a, 1 for b, ...
    #[arg(long, env = "LOOKASIDE_DEMO_SLOW_BACKEND", default_value_t = 0)]
    pub slow_backend: usize,
    /// How much slower it gets: every call takes this many times as long
    /// (1: no slowdown).
    #[arg(long, env = "LOOKASIDE_DEMO_SLOWDOWN", default_value_t = 2.0)]
    pub slowdown: f64,
    /// Control step of the weight policy, and the least time between two
    /// pushes, in milliseconds.
    #[arg(long, env = "LOOKASIDE_DEMO_STEP_MS", default_value_t = 500)]
    pub step_ms: u64,
    /// ORCA report interval asked of the backends, in milliseconds.
    #[arg(long, env = "LOOKASIDE_DEMO_ORCA_INTERVAL_MS", default_value_t = 500)]
    pub orca_interval_ms: u64,
    /// Where the demo's control plane serves xDS and the admin API; port 0
    /// picks a free one (printed at the start).
    #[arg(long, env = "LOOKASIDE_DEMO_XDS_LISTEN", default_value = "127.0.0.1:0")]
    pub xds_listen: SocketAddr,
    /// Log filter in RUST_LOG syntax; logs go to stderr.
    #[arg(long, env = "LOOKASIDE_DEMO_LOG", default_value = "error")]
    pub log: String,
}

impl DemoArgs {
    /// The run these flags describe.
    pub fn options(&self) -> DemoOptions {
        DemoOptions {
            policy: Policy::parse(&self.policy).unwrap_or_default(),
            capacities: self.capacities.clone(),
            cost: Duration::from_millis(self.cost_ms),
            load: self.load,
            duration: Duration::from_secs(self.duration_s),
            slow_at: self.slow_at_s.map(Duration::from_secs),
            slow_backend: self.slow_backend,
            slowdown: self.slowdown,
            step: Duration::from_millis(self.step_ms.max(10)),
            orca_interval: Duration::from_millis(self.orca_interval_ms.max(10)),
            xds_listen: self.xds_listen,
        }
    }
}
