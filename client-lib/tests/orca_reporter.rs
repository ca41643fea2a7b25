//! The ORCA reporter on a real tonic server, read by a real ORCA client.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use lookaside_client::orca::OrcaReporter;
use lookaside_proto::orca::data::OrcaLoadReport;
use lookaside_proto::orca::service::OrcaLoadReportRequest;
use lookaside_proto::orca::service::open_rca_service_client::OpenRcaServiceClient;
use prost_types::Duration as ProtoDuration;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn server(reporter: &OrcaReporter) -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_health_reporter, health) = tonic_health::server::health_reporter();
    let router = tonic::transport::Server::builder()
        .layer(reporter.layer())
        .add_service(reporter.service())
        .add_service(health);
    tokio::spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn request(interval: Duration) -> OrcaLoadReportRequest {
    OrcaLoadReportRequest {
        report_interval: Some(ProtoDuration {
            seconds: i64::try_from(interval.as_secs()).unwrap(),
            nanos: i32::try_from(interval.subsec_nanos()).unwrap(),
        }),
        request_cost_names: vec![],
    }
}

#[tokio::test]
async fn reports_rates_errors_and_named_metrics() {
    let reporter = OrcaReporter::builder()
        .min_interval(Duration::from_millis(50))
        .build();
    reporter.recorder().set_named("queue_depth", 3.0);
    let channel = server(&reporter).await;
    let mut reports = OpenRcaServiceClient::new(channel.clone())
        .stream_core_metrics(request(Duration::from_millis(200)))
        .await
        .unwrap()
        .into_inner();
    let mut health = HealthClient::new(channel);
    for _ in 0..40 {
        health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
    }
    for _ in 0..10 {
        // Unknown service: NOT_FOUND, an error.
        let _ = health
            .check(HealthCheckRequest {
                service: "nope".into(),
            })
            .await;
    }
    // The calls may straddle report windows (this machine may be busy), so
    // read reports until one shows the server idle again. The rates' own
    // arithmetic is a unit test beside `Window`.
    let mut busy: Vec<OrcaLoadReport> = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let report = reports.next().await.expect("stream open").expect("ok");
            let errors_seen = busy.iter().any(|r| r.eps > 0.0);
            if report.rps_fractional == 0.0 && errors_seen {
                break;
            }
            if report.rps_fractional > 0.0 {
                busy.push(report);
            }
        }
    })
    .await
    .expect("reports show the calls with their errors, then an idle server");
    // The ORCA stream itself is not counted: the health calls were all.
    for report in &busy {
        assert!(report.eps <= report.rps_fractional, "{report:?}");
        assert_eq!(report.named_metrics.get("queue_depth"), Some(&3.0));
        assert!(report.cpu_utilization >= 0.0 && report.cpu_utilization.is_finite());
    }
    assert!(
        busy.iter()
            .any(|r| r.named_metrics.get("in_flight") == Some(&0.0)),
        "in_flight is reported"
    );
}

#[tokio::test]
async fn the_interval_never_goes_below_the_floor() {
    let reporter = OrcaReporter::builder()
        .min_interval(Duration::from_millis(300))
        .build();
    let channel = server(&reporter).await;
    let mut reports = OpenRcaServiceClient::new(channel)
        .stream_core_metrics(request(Duration::from_millis(1)))
        .await
        .unwrap()
        .into_inner();
    let started = Instant::now();
    reports.next().await.unwrap().unwrap();
    reports.next().await.unwrap().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}
