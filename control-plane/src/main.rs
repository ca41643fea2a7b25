//! The `lookaside` binary: `serve` runs the control plane, `validate` checks
//! a config file, `simulate` and `demo` show the weight policies at work.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lookaside_control_plane::cli::{Cli, Command, DemoArgs, ServeArgs, SimulateArgs};
use lookaside_control_plane::load::CollectorConfig;
use lookaside_control_plane::server::{Discovery, ServeConfig, start_with};
use lookaside_control_plane::sources::file::parse_file;
use lookaside_control_plane::telemetry::{LogFormat, init_logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => match parse_file(&args.config) {
            Ok(clusters) => {
                let endpoints: usize = clusters.iter().map(|c| c.endpoints.len()).sum();
                println!(
                    "{}: ok ({} clusters, {} endpoints)",
                    args.config.display(),
                    clusters.len(),
                    endpoints
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        Command::Simulate(args) => {
            simulate(&args);
            ExitCode::SUCCESS
        }
        Command::Demo(args) => match demo(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("lookaside demo: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("lookaside: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Prints a simulated run: per step, weights pushed to clients and true
/// utilization of each server.
fn simulate(args: &SimulateArgs) {
    use lookaside_control_plane::registry::Policy;
    use lookaside_control_plane::weigh::WeighConfig;
    use lookaside_control_plane::weigh::simulator::{SimServer, Simulator};
    let servers: Vec<SimServer> = args
        .capacities
        .iter()
        .map(|&capacity| SimServer {
            capacity,
            error_rate: 0.0,
        })
        .collect();
    let load = args.capacities.iter().sum::<f64>() * args.utilization;
    let mut sim = Simulator::new(
        servers,
        load,
        args.noise,
        args.seed,
        Policy::parse(&args.policy).unwrap_or_default(),
        WeighConfig::default(),
    );
    println!(
        "capacities {:?} rps, offered {load:.0} rps ({:.0} %), noise +-{:.0} %",
        args.capacities,
        args.utilization * 100.0,
        args.noise * 100.0
    );
    println!("{:>4}  {:<28}  utilization", "step", "weights at clients");
    for step in 1..=args.steps {
        if args.change_at == Some(step) {
            let capacity = args
                .capacities
                .get(args.change_server)
                .copied()
                .unwrap_or(0.0);
            sim.set_capacity(args.change_server, capacity * args.change_factor);
            println!(
                "      -- server {} capacity x{} --",
                args.change_server, args.change_factor
            );
        }
        let result = sim.step();
        let weights = result
            .weights
            .iter()
            .map(|w| format!("{w:>5}"))
            .collect::<Vec<_>>()
            .join(" ");
        let utilization = result
            .utilization
            .iter()
            .map(|u| format!("{:>4.0}%", u * 100.0))
            .collect::<Vec<_>>()
            .join(" ");
        let max = result.utilization.iter().copied().fold(0.0, f64::max);
        let mean = result.utilization.iter().sum::<f64>() / result.utilization.len().max(1) as f64;
        println!(
            "{step:>4}  {weights:<28}  {utilization}   max/mean {:.2}",
            max / mean.max(1e-9)
        );
    }
}

fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    init_logging(LogFormat::Text, &args.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(lookaside_control_plane::demo::run(&args.options()))?;
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.telemetry.log_format, &args.telemetry.log);
    let metrics_listen = match args.telemetry.metrics_listen.trim() {
        "" => None,
        text => Some(
            text.parse()
                .with_context(|| format!("--metrics-listen {text:?} is not an address"))?,
        ),
    };
    let discovery = Discovery {
        file: args.source.config.is_some(),
        kube: args.source.kube.options(),
        kube_client: None,
    };
    let config = ServeConfig {
        config: args.source.config.clone().unwrap_or_default(),
        config_poll: Duration::from_millis(args.source.config_poll_ms.max(10)),
        xds_listen: args.xds.xds_listen,
        metrics_listen,
        limits: args.xds.limits(),
        shutdown_grace: Duration::from_millis(args.xds.shutdown_grace_ms),
        weigh: args.weigh.config(),
        load: CollectorConfig {
            tls: args.tls.orca(),
            ..args.load.config()
        },
        admin_listen: args.xds.admin_listen,
        tls: args.tls.listener(),
        tls_reload: args.tls.reload(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = start_with(config, discovery, shutdown_signal()).await?;
        running
            .wait()
            .await
            .context("control plane stopped abnormally")?;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}
