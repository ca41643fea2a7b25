//! Tuning of the weigh stage: how often it steps, when it pushes, and each
//! policy's knobs.

use std::time::Duration;

/// How the weigh stage runs.
#[derive(Debug, Clone)]
pub struct WeighConfig {
    /// Time between two control steps of the load-driven policies.
    pub step: Duration,
    /// A load-driven cluster is pushed only when some endpoint's weight
    /// moved by more than this fraction (0.05 = 5 %) since the last push.
    pub push_threshold: f64,
    /// The largest relative change of one endpoint's share in one
    /// load-driven push (0.08 = +-8 %): weights glide instead of jumping,
    /// whatever noise the reports carry.
    pub max_push_change: f64,
    /// While an endpoint of the cluster is saturated, shares may move this
    /// many times faster.
    pub saturated_fall: f64,
    /// A load-driven cluster is pushed at most this often. Membership and
    /// health changes from the sources are never held back.
    pub push_min_interval: Duration,
    /// Knobs of the `utilization` policy; `expiry`, `max_ratio` and slow
    /// start apply to `wrr` too.
    pub controller: ControllerConfig,
    /// Errors cost this much utilization per error/request ratio in the
    /// `wrr` formula (gRPC's `error_utilization_penalty`).
    pub wrr_error_penalty: f64,
}

impl Default for WeighConfig {
    fn default() -> Self {
        Self {
            step: Duration::from_secs(1),
            push_threshold: 0.05,
            max_push_change: 0.08,
            saturated_fall: 3.0,
            push_min_interval: Duration::from_secs(1),
            controller: ControllerConfig::default(),
            wrr_error_penalty: 1.0,
        }
    }
}

/// Tuning of the `utilization` controller. The defaults are what the
/// simulator tests.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Exponent of the multiplicative correction (0..=1): 1 corrects fully
    /// in one step, smaller damps.
    pub gain: f64,
    /// Weight of a new report in the utilization average (0..=1].
    pub smoothing: f64,
    /// Largest relative weight change in one step (0.25 = +-25 %).
    pub max_step: f64,
    /// Largest max/min weight ratio in a cluster.
    pub max_ratio: f64,
    /// Load added per error/request ratio.
    pub error_penalty: f64,
    /// Reports older than this are ignored (the endpoint gets the mean),
    /// unless three of the server's report periods are longer (see
    /// `EndpointInput::fresh_report`).
    pub expiry: Duration,
    /// Utilization at or above which an endpoint counts as saturated: its
    /// queue grows but its reports cannot say by how much.
    pub saturated_at: f64,
    /// Load charged to a saturated endpoint, as a multiple of the larger of
    /// its load and the cluster mean.
    pub saturation_penalty: f64,
    /// Steps a new endpoint takes to ramp from `slow_start_floor` to its
    /// computed weight.
    pub slow_start_steps: u32,
    /// Fraction of the mean a new endpoint starts at.
    pub slow_start_floor: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            gain: 0.5,
            smoothing: 0.5,
            max_step: 0.5,
            max_ratio: 10.0,
            error_penalty: 1.0,
            expiry: Duration::from_secs(10),
            saturated_at: 0.95,
            saturation_penalty: 1.5,
            slow_start_steps: 5,
            slow_start_floor: 0.25,
        }
    }
}
