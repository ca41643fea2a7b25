//! The ORCA reporter: a recorder, its layer and its service.

use std::sync::Arc;
use std::time::Duration;

use lookaside_proto::orca::service::open_rca_service_server::OpenRcaServiceServer;

use super::{CpuSource, LoadRecorder, OrcaLayer, OrcaStreamService, ProcessCpu};

/// Builds an [`OrcaReporter`].
#[derive(Debug, Clone)]
pub struct OrcaReporterBuilder {
    cpu: Arc<dyn CpuSource>,
    min_interval: Duration,
}

impl OrcaReporterBuilder {
    /// Where CPU utilization comes from (default: this process, relative to
    /// its cgroup quota or the machine's cores; in a pod without a CPU
    /// limit, give its request: `ProcessCpu::with_cpus`).
    pub fn cpu_source(mut self, source: impl CpuSource) -> Self {
        self.cpu = Arc::new(source);
        self
    }

    /// The shortest report interval granted, whatever a client asks
    /// (default 1 s; gRFC A51 servers default to 30 s).
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The reporter.
    pub fn build(self) -> OrcaReporter {
        OrcaReporter {
            recorder: LoadRecorder::default(),
            cpu: self.cpu,
            min_interval: self.min_interval,
        }
    }
}

/// Measures a tonic server's load and serves it over ORCA.
#[derive(Debug, Clone)]
pub struct OrcaReporter {
    recorder: LoadRecorder,
    cpu: Arc<dyn CpuSource>,
    min_interval: Duration,
}

impl OrcaReporter {
    /// A builder with defaults.
    pub fn builder() -> OrcaReporterBuilder {
        OrcaReporterBuilder {
            cpu: Arc::new(ProcessCpu::default()),
            min_interval: Duration::from_secs(1),
        }
    }

    /// The layer that measures calls: `Server::builder().layer(orca.layer())`.
    pub fn layer(&self) -> OrcaLayer {
        OrcaLayer::new(self.recorder.clone())
    }

    /// The `OpenRcaService` to add next to your own services.
    pub fn service(&self) -> OpenRcaServiceServer<OrcaStreamService> {
        OpenRcaServiceServer::new(OrcaStreamService::new(
            self.recorder.clone(),
            self.cpu.clone(),
            self.min_interval,
        ))
    }

    /// The recorder, to set application metrics.
    pub fn recorder(&self) -> &LoadRecorder {
        &self.recorder
    }
}
