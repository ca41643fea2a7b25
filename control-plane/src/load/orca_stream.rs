//! One out-of-band ORCA stream to one endpoint, kept open with backoff.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lookaside_proto::orca::service::OrcaLoadReportRequest;
use lookaside_proto::orca::service::open_rca_service_client::OpenRcaServiceClient;
use rand::{RngExt, SeedableRng};
use tonic::transport::Endpoint;

use super::{LoadTable, ReportValidator, Verdict};

/// How one endpoint's reports are fetched.
#[derive(Debug, Clone)]
pub struct OrcaStreamConfig {
    /// Report interval asked of the server.
    pub interval: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl Default for OrcaStreamConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Streams `address`'s load reports into `table` until the task is
/// aborted, reconnecting with exponential backoff and jitter.
pub async fn follow_endpoint(address: SocketAddr, table: LoadTable, config: OrcaStreamConfig) {
    let mut validator = ReportValidator::default();
    let mut delay = config.backoff_initial;
    // Jitter differs per endpoint and per process, so reconnects after a
    // shared outage do not arrive in step.
    let seed = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        address.hash(&mut hasher);
        std::process::id().hash(&mut hasher);
        hasher.finish()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    loop {
        let opened = Instant::now();
        if let Err(error) = stream_once(address, &table, &config, &mut validator).await {
            tracing::debug!(endpoint = %address, %error, "ORCA stream ended");
        }
        table.update(address, |load| load.connected = false);
        // A stream that lived a while resets the backoff.
        if opened.elapsed() > config.backoff_max {
            delay = config.backoff_initial;
        }
        let jitter = rng.random_range(0.8..=1.2);
        tokio::time::sleep(delay.mul_f64(jitter)).await;
        delay = (delay * 2).min(config.backoff_max);
    }
}

async fn stream_once(
    address: SocketAddr,
    table: &LoadTable,
    config: &OrcaStreamConfig,
    validator: &mut ReportValidator,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let channel = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(config.connect_timeout)
        .connect()
        .await?;
    let interval = prost_types::Duration {
        seconds: i64::try_from(config.interval.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(config.interval.subsec_nanos()).unwrap_or(0),
    };
    let mut reports = OpenRcaServiceClient::new(channel)
        .stream_core_metrics(OrcaLoadReportRequest {
            report_interval: Some(interval),
            request_cost_names: vec![],
        })
        .await?
        .into_inner();
    table.update(address, |load| load.connected = true);
    while let Some(report) = reports.next().await {
        let report = report?;
        match validator.judge(&report, Instant::now()) {
            Verdict::Accepted(accepted) | Verdict::Clamped(accepted) => {
                table.update(address, |load| {
                    load.report = Some(accepted);
                    load.accepted += 1;
                })
            }
            Verdict::Rejected(reason) => {
                tracing::debug!(endpoint = %address, reason = reason.as_str(), "load report dropped");
                table.update(address, |load| {
                    load.rejected += 1;
                    load.last_rejection = Some(reason);
                });
            }
        }
    }
    Ok(())
}
