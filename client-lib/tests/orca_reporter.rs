//! The ORCA reporter on a real tonic server, read by a real ORCA client.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use lookaside_client::orca::OrcaReporter;
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
    let report = tokio::time::timeout(Duration::from_secs(2), reports.next())
        .await
        .expect("a report")
        .expect("stream open")
        .expect("ok");
    // 50 calls in about 200 ms; the ORCA stream itself is not counted.
    assert!(
        report.rps_fractional > 50.0,
        "rps {}",
        report.rps_fractional
    );
    assert!(report.eps > 10.0, "eps {}", report.eps);
    assert!(report.eps < report.rps_fractional);
    assert_eq!(report.named_metrics.get("queue_depth"), Some(&3.0));
    assert_eq!(report.named_metrics.get("in_flight"), Some(&0.0));
    assert!(report.cpu_utilization >= 0.0 && report.cpu_utilization.is_finite());
    // Idle afterwards: the next report shows no traffic.
    let idle = reports.next().await.unwrap().unwrap();
    assert_eq!(idle.rps_fractional, 0.0);
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
