//! `xds.service.orca.v3.OpenRcaService/StreamCoreMetrics`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use lookaside_proto::orca::data::OrcaLoadReport;
use lookaside_proto::orca::service::OrcaLoadReportRequest;
use lookaside_proto::orca::service::open_rca_service_server::OpenRcaService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::LoadRecorder;
use super::cpu::{CpuSource, CpuWindow};
use crate::clock::LONGEST_PERIOD;

/// Serves this server's load reports, one stream per asking client.
#[derive(Debug, Clone)]
pub struct OrcaStreamService {
    recorder: LoadRecorder,
    cpu: Arc<dyn CpuSource>,
    min_interval: Duration,
}

impl OrcaStreamService {
    pub(crate) fn new(
        recorder: LoadRecorder,
        cpu: Arc<dyn CpuSource>,
        min_interval: Duration,
    ) -> Self {
        Self {
            recorder,
            cpu,
            // Never 0 (a zero interval would spin), never past an hour.
            min_interval: min_interval.clamp(Duration::from_millis(1), LONGEST_PERIOD),
        }
    }

    /// The interval a request gets: what it asks for, never below the floor
    /// nor above an hour (one past the clock's range would overflow the
    /// timer).
    fn interval(&self, request: &OrcaLoadReportRequest) -> Duration {
        let asked = request
            .report_interval
            .as_ref()
            // Negative: none asked, the floor holds.
            .and_then(|d| Duration::try_from(*d).ok())
            .unwrap_or_default();
        asked.clamp(self.min_interval, LONGEST_PERIOD)
    }
}

/// One stream's view: rates are computed over its own interval.
struct Window {
    at: Instant,
    completed: u64,
    errors: u64,
    cpu: CpuWindow,
}

impl Window {
    fn report(
        &mut self,
        now: Instant,
        recorder: &LoadRecorder,
        cpu: &dyn CpuSource,
    ) -> OrcaLoadReport {
        let elapsed = now.duration_since(self.at).as_secs_f64().max(1e-3);
        let completed = recorder.completed();
        let errors = recorder.errors();
        let rps = completed.saturating_sub(self.completed) as f64 / elapsed;
        let eps = errors.saturating_sub(self.errors) as f64 / elapsed;
        self.at = now;
        self.completed = completed;
        self.errors = errors;
        let mut named_metrics: std::collections::HashMap<String, f64> =
            recorder.named().into_iter().collect();
        named_metrics.insert("in_flight".to_string(), recorder.in_flight() as f64);
        OrcaLoadReport {
            cpu_utilization: self.cpu.utilization(cpu).unwrap_or(0.0),
            rps_fractional: rps,
            eps,
            named_metrics,
            application_utilization: recorder.application_utilization().unwrap_or(0.0),
            ..Default::default()
        }
    }
}

type ReportStream = Pin<Box<dyn Stream<Item = Result<OrcaLoadReport, Status>> + Send>>;

#[tonic::async_trait]
impl OpenRcaService for OrcaStreamService {
    type StreamCoreMetricsStream = ReportStream;

    async fn stream_core_metrics(
        &self,
        request: Request<OrcaLoadReportRequest>,
    ) -> Result<Response<ReportStream>, Status> {
        let interval = self.interval(request.get_ref());
        let recorder = self.recorder.clone();
        let cpu = self.cpu.clone();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut window = Window {
                at: Instant::now(),
                completed: recorder.completed(),
                errors: recorder.errors(),
                cpu: CpuWindow::new(cpu.as_ref()),
            };
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = tx.closed() => return,
                }
                let report = window.report(Instant::now(), &recorder, cpu.as_ref());
                if tx.send(Ok(report)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NoCpu;

    impl CpuSource for NoCpu {
        fn cpu_seconds(&self) -> Option<f64> {
            None
        }
        fn cpus(&self) -> f64 {
            1.0
        }
    }

    #[test]
    fn the_interval_asked_for_is_kept_between_a_floor_and_an_hour() {
        let asking = |seconds, nanos| OrcaLoadReportRequest {
            report_interval: Some(prost_types::Duration { seconds, nanos }),
            ..Default::default()
        };
        let floored = OrcaStreamService::new(
            LoadRecorder::default(),
            Arc::new(NoCpu),
            Duration::from_secs(1),
        );
        assert_eq!(floored.interval(&asking(0, 0)), Duration::from_secs(1));
        assert_eq!(floored.interval(&asking(5, 0)), Duration::from_secs(5));
        assert_eq!(
            floored.interval(&asking(i64::MAX, 0)),
            Duration::from_secs(3600)
        );
        assert_eq!(floored.interval(&asking(-1, 0)), Duration::from_secs(1));
        let unfloored =
            OrcaStreamService::new(LoadRecorder::default(), Arc::new(NoCpu), Duration::ZERO);
        assert_eq!(
            unfloored.interval(&asking(0, 0)),
            Duration::from_millis(1),
            "never spins"
        );
    }

    #[test]
    fn rates_are_per_second_over_the_streams_own_window() {
        let recorder = LoadRecorder::default();
        recorder.started();
        recorder.finished(false);
        let start = Instant::now();
        let mut window = Window {
            at: start,
            completed: recorder.completed(),
            errors: recorder.errors(),
            cpu: CpuWindow::new(&NoCpu),
        };
        for error in (0..50).map(|call| call % 5 == 0) {
            recorder.started();
            recorder.finished(error);
        }
        recorder.started();
        let report = window.report(start + Duration::from_millis(200), &recorder, &NoCpu);
        assert_eq!(report.rps_fractional, 250.0, "50 calls in 200 ms");
        assert_eq!(report.eps, 50.0, "10 errors in 200 ms");
        assert_eq!(report.named_metrics.get("in_flight"), Some(&1.0));
        let idle = window.report(start + Duration::from_millis(400), &recorder, &NoCpu);
        assert_eq!((idle.rps_fractional, idle.eps), (0.0, 0.0));
    }
}
