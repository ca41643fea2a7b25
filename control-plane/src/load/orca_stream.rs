//! One out-of-band ORCA stream to one endpoint, kept open with backoff.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lookaside_proto::orca::service::OrcaLoadReportRequest;
use lookaside_proto::orca::service::open_rca_service_client::OpenRcaServiceClient;
use rand::{RngExt, SeedableRng};
use tonic::transport::Endpoint;

use super::{LoadTable, ReportValidator, StreamError, Verdict};
use crate::tls::{OrcaTls, Reloading};

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
    /// TLS towards the backends, current at each new connection; `None`
    /// speaks plaintext.
    pub tls: Option<Reloading<OrcaTls>>,
}

impl Default for OrcaStreamConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            tls: None,
        }
    }
}

/// Streams `address`'s load reports into `table` until the task is
/// aborted, reconnecting with exponential backoff and jitter.
pub async fn follow_endpoint(address: SocketAddr, table: LoadTable, config: OrcaStreamConfig) {
    // The entry exists from here on; every later write only updates it, so
    // a stream stopped by the collector cannot bring it back.
    table.update(address, |_| {});
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
        let ended = stream_once(address, &table, &config, &mut validator).await;
        if let Err(error) = &ended {
            tracing::debug!(endpoint = %address, %error, "ORCA stream ended");
        }
        table.update_watched(address, |load| {
            load.connected = false;
            load.last_error = Some(match &ended {
                Ok(()) => "the server ended the stream".to_string(),
                Err(error) => error.to_string(),
            });
        });
        // A stream that lived a while resets the backoff; a server that
        // does not serve ORCA is asked again only rarely.
        if opened.elapsed() > config.backoff_max {
            delay = config.backoff_initial;
        }
        if matches!(&ended, Err(StreamError::Status(status)) if status.code() == tonic::Code::Unimplemented)
        {
            delay = config.backoff_max;
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
) -> Result<(), StreamError> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(StreamError::Uri)?
        .connect_timeout(config.connect_timeout);
    if let Some(tls) = &config.tls {
        let current = tls.borrow().0.clone();
        endpoint = endpoint.tls_config(current).map_err(StreamError::Connect)?;
    }
    let channel = endpoint.connect().await.map_err(StreamError::Connect)?;
    // Out of range only beyond 292 billion years.
    let interval = prost_types::Duration::try_from(config.interval).unwrap_or_default();
    let mut reports = OpenRcaServiceClient::new(channel)
        .stream_core_metrics(OrcaLoadReportRequest {
            report_interval: Some(interval),
            request_cost_names: vec![],
        })
        .await
        .map_err(StreamError::Status)?
        .into_inner();
    table.update_watched(address, |load| {
        load.connected = true;
        load.last_error = None;
    });
    validator.new_stream();
    while let Some(report) = reports.next().await {
        let verdict = validator.judge(&report.map_err(StreamError::Status)?, Instant::now());
        if let Verdict::Rejected(reason) = &verdict {
            tracing::debug!(endpoint = %address, reason = reason.as_str(), "load report dropped");
        }
        table.record(address, verdict);
    }
    Ok(())
}
