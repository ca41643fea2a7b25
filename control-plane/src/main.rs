//! The `lookaside` binary: `serve` runs the control plane, `validate` checks
//! a config file.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lookaside_control_plane::cli::{Cli, Command, ServeArgs};
use lookaside_control_plane::server::{ServeConfig, start};
use lookaside_control_plane::sources::file::parse_file;
use lookaside_control_plane::telemetry::init_logging;

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
        Command::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("lookaside: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
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
    let config = ServeConfig {
        config: args.source.config.clone(),
        config_poll: Duration::from_millis(args.source.config_poll_ms.max(10)),
        xds_listen: args.xds.xds_listen,
        metrics_listen,
        limits: args.xds.limits(),
        shutdown_grace: Duration::from_millis(args.xds.shutdown_grace_ms),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = start(config, shutdown_signal()).await?;
        running.wait().await.context("gRPC server failed")?;
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
