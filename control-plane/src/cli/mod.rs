//! Command-line interface of the `lookaside` binary. Every flag can also be
//! set through an environment variable named `LOOKASIDE_...`.
//!
//! Owns: flag definitions and their defaults, grouped by area.
//! Must never: start anything; `main` and `server` do.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod demo;
mod tls;
mod weigh;

pub use demo::DemoArgs;
pub use tls::TlsArgs;
pub use weigh::{LoadArgs, WeighArgs};

use crate::sources::kube::{DEFAULT_LABEL_SELECTOR, KubeOptions};
use crate::telemetry::LogFormat;
use crate::xds::Limits;

/// Lookaside: a lookaside load balancer for gRPC.
#[derive(Debug, Parser)]
#[command(name = "lookaside", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane: watch sources, stream weighted assignments over xDS.
    Serve(Box<ServeArgs>),
    /// Check a config file and exit non-zero, naming file, line and reason, if it is invalid.
    Validate(ValidateArgs),
    /// Run the weight controller against simulated servers and print each step.
    Simulate(SimulateArgs),
    /// Watch Lookaside work: a control plane, backends of different
    /// capacities and a client in one process, a table every second, and
    /// one backend slowing down halfway.
    Demo(DemoArgs),
}

/// `lookaside simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Server capacities in requests per second, comma-separated.
    #[arg(
        long,
        env = "LOOKASIDE_SIM_CAPACITIES",
        value_delimiter = ',',
        default_value = "100,100,200"
    )]
    pub capacities: Vec<f64>,
    /// Offered load as a fraction of total capacity.
    #[arg(long, env = "LOOKASIDE_SIM_UTILIZATION", default_value_t = 0.7)]
    pub utilization: f64,
    /// Relative noise on reported utilization (0.2 = +-20 %).
    #[arg(long, env = "LOOKASIDE_SIM_NOISE", default_value_t = 0.0)]
    pub noise: f64,
    /// Control steps to run.
    #[arg(long, env = "LOOKASIDE_SIM_STEPS", default_value_t = 20)]
    pub steps: usize,
    /// Random seed (runs are deterministic).
    #[arg(long, env = "LOOKASIDE_SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// At this step, multiply server `--change-server`'s capacity by `--change-factor`.
    #[arg(long, env = "LOOKASIDE_SIM_CHANGE_AT")]
    pub change_at: Option<usize>,
    /// Which server changes (0-based).
    #[arg(long, env = "LOOKASIDE_SIM_CHANGE_SERVER", default_value_t = 0)]
    pub change_server: usize,
    /// Capacity factor of the change.
    #[arg(long, env = "LOOKASIDE_SIM_CHANGE_FACTOR", default_value_t = 0.5)]
    pub change_factor: f64,
    /// The policy simulated: `utilization` or `wrr`.
    #[arg(long, env = "LOOKASIDE_SIM_POLICY", default_value = "utilization", value_parser = ["utilization", "wrr", "static"])]
    pub policy: String,
}

/// `lookaside serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Discovery sources.
    #[command(flatten)]
    pub source: SourceArgs,
    /// The xDS and admin listener.
    #[command(flatten)]
    pub xds: XdsArgs,
    /// Weight policies.
    #[command(flatten)]
    pub weigh: WeighArgs,
    /// Load report collection.
    #[command(flatten)]
    pub load: LoadArgs,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Logs and metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// `lookaside validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// The config file to check.
    #[arg(long, env = "LOOKASIDE_CONFIG")]
    pub config: PathBuf,
}

/// Where clusters and endpoints come from.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// YAML file of clusters and endpoints; edits apply while running.
    /// Required unless `--kube` is on.
    #[arg(long, env = "LOOKASIDE_CONFIG", required_unless_present = "kube")]
    pub config: Option<PathBuf>,
    /// How often the config file is checked for edits, in milliseconds.
    #[arg(long, env = "LOOKASIDE_CONFIG_POLL_MS", default_value_t = 200)]
    pub config_poll_ms: u64,
    /// Kubernetes discovery.
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Kubernetes discovery: EndpointSlices of opted-in Services.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// Serve every Service labelled for Lookaside as clusters
    /// `SERVICE.NAMESPACE:PORT` (credentials from the pod's service account
    /// or the kubeconfig).
    #[arg(long, env = "LOOKASIDE_KUBE")]
    pub kube: bool,
    /// Watch only this namespace; empty for every namespace.
    #[arg(long, env = "LOOKASIDE_KUBE_NAMESPACE", default_value = "")]
    pub kube_namespace: String,
    /// Label selector that opts a Service (and so its EndpointSlices) in.
    #[arg(long, env = "LOOKASIDE_KUBE_LABEL_SELECTOR", default_value = DEFAULT_LABEL_SELECTOR)]
    pub kube_label_selector: String,
}

impl KubeArgs {
    /// The Kubernetes source to run, if `--kube` is on.
    pub fn options(&self) -> Option<KubeOptions> {
        self.kube.then(|| KubeOptions {
            namespace: Some(self.kube_namespace.trim())
                .filter(|namespace| !namespace.is_empty())
                .map(str::to_string),
            label_selector: self.kube_label_selector.clone(),
        })
    }
}

/// The gRPC listener serving ADS, the admin API, health, and reflection.
#[derive(Debug, Clone, Args)]
pub struct XdsArgs {
    /// Address for ADS and LRS, health, and (unless `--admin-listen` is
    /// set) the admin API, CSDS and reflection.
    #[arg(long, env = "LOOKASIDE_XDS_LISTEN", default_value = "0.0.0.0:18000")]
    pub xds_listen: SocketAddr,
    /// A separate address for the admin API, CSDS, reflection and health,
    /// which the xDS listener then does not serve (same TLS settings).
    #[arg(long, env = "LOOKASIDE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Most concurrent ADS streams this replica accepts (at least 1).
    #[arg(long, env = "LOOKASIDE_XDS_MAX_STREAMS", default_value_t = Limits::default().max_streams, value_parser = at_least_one())]
    pub xds_max_streams: usize,
    /// Most resource names one stream may be subscribed to, over every type
    /// (keep each type's share within `--xds-max-names-per-request`: a
    /// Delta client names all it holds of a type in its first request
    /// after a reconnect).
    #[arg(long, env = "LOOKASIDE_XDS_MAX_SUBSCRIPTIONS_PER_STREAM", default_value_t = Limits::default().max_subscriptions_per_stream, value_parser = at_least_one())]
    pub xds_max_subscriptions_per_stream: usize,
    /// Most resource names one request may carry (at least 1).
    #[arg(long, env = "LOOKASIDE_XDS_MAX_NAMES_PER_REQUEST", default_value_t = Limits::default().max_names_per_request, value_parser = at_least_one())]
    pub xds_max_names_per_request: usize,
    /// On SIGTERM, how long open streams may take to end before the server stops anyway, in milliseconds.
    #[arg(long, env = "LOOKASIDE_SHUTDOWN_GRACE_MS", default_value_t = 5000)]
    pub shutdown_grace_ms: u64,
    /// Largest request message accepted, in bytes (at least 1).
    #[arg(long, env = "LOOKASIDE_XDS_MAX_REQUEST_BYTES", default_value_t = Limits::default().max_request_bytes, value_parser = at_least_one())]
    pub xds_max_request_bytes: usize,
    /// Most requests per second one ADS stream may send (bursts of twice
    /// that); a stream over it is closed with RESOURCE_EXHAUSTED. 0: no limit.
    #[arg(long, env = "LOOKASIDE_XDS_MAX_REQUESTS_PER_SECOND", default_value_t = Limits::default().max_requests_per_second)]
    pub xds_max_requests_per_second: u32,
}

/// A count flag that 0 would turn into "refuse everything".
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

impl XdsArgs {
    /// The limits these flags set.
    pub fn limits(&self) -> Limits {
        Limits {
            max_streams: self.xds_max_streams,
            max_names_per_request: self.xds_max_names_per_request,
            max_subscriptions_per_stream: self.xds_max_subscriptions_per_stream,
            max_request_bytes: self.xds_max_request_bytes,
            max_requests_per_second: self.xds_max_requests_per_second,
            ..Limits::default()
        }
    }
}

/// Logs and metrics.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Address for Prometheus metrics (`/metrics`); empty to disable.
    #[arg(long, env = "LOOKASIDE_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: String,
    /// Log line format.
    #[arg(long, env = "LOOKASIDE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in RUST_LOG syntax, e.g. `info` or `lookaside_control_plane=debug`.
    #[arg(long, env = "LOOKASIDE_LOG", default_value = "info")]
    pub log: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed_and_every_flag_has_an_env_var() {
        Cli::command().debug_assert();
        fn check(command: &clap::Command) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().to_string());
                assert!(
                    env.as_deref().is_some_and(|e| e.starts_with("LOOKASIDE_")),
                    "flag {id} of {} has no LOOKASIDE_ env var",
                    command.get_name()
                );
            }
            for sub in command.get_subcommands() {
                check(sub);
            }
        }
        check(&Cli::command());
    }

    #[test]
    fn limits_that_cannot_work_are_refused() {
        let serve = |extra: &[&str]| {
            let mut argv = vec!["lookaside", "serve", "--config", "x.yaml"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv)
        };
        for flag in [
            "--xds-max-streams",
            "--xds-max-names-per-request",
            "--xds-max-subscriptions-per-stream",
            "--xds-max-request-bytes",
        ] {
            assert!(serve(&[flag, "0"]).is_err(), "{flag} 0 accepted");
        }
        // Over every type, so above one request's names is a setting.
        assert!(serve(&["--xds-max-subscriptions-per-stream", "20000"]).is_ok());
        let Ok(cli) = serve(&[]) else {
            panic!("defaults parse");
        };
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.xds.limits().max_streams, Limits::default().max_streams);
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::parse_from(["lookaside", "serve", "--config", "x.yaml"]);
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.xds.xds_listen.port(), 18000);
        assert_eq!(args.source.config_poll_ms, 200);
        assert_eq!(args.source.kube.options(), None);
    }

    #[test]
    fn demo_defaults_are_the_documented_run() {
        let cli = Cli::parse_from(["lookaside", "demo"]);
        let Command::Demo(args) = cli.command else {
            panic!("not demo")
        };
        assert_eq!(args.options(), crate::demo::DemoOptions::default());
        let cli = Cli::parse_from([
            "lookaside",
            "demo",
            "--policy",
            "static",
            "--duration-s",
            "6",
        ]);
        let Command::Demo(args) = cli.command else {
            panic!("not demo")
        };
        let options = args.options();
        assert_eq!(options.policy, crate::registry::Policy::Static);
        assert_eq!(
            options.slowdown_at(),
            Some(std::time::Duration::from_secs(3))
        );
        assert!(Cli::try_parse_from(["lookaside", "demo", "--policy", "fastest"]).is_err());
    }

    #[test]
    fn kube_makes_the_config_file_optional() {
        assert!(Cli::try_parse_from(["lookaside", "serve"]).is_err());
        let cli = Cli::parse_from(["lookaside", "serve", "--kube", "--kube-namespace", "prod"]);
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.source.config, None);
        let options = args.source.kube.options().ok_or("kube is on");
        assert_eq!(
            options,
            Ok(KubeOptions {
                namespace: Some("prod".into()),
                label_selector: DEFAULT_LABEL_SELECTOR.into(),
            })
        );
    }
}
