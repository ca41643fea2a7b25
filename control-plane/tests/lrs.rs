//! LRS from clients: the control plane asks for every cluster at endpoint
//! granularity, and what a client reports shows per endpoint in the admin
//! API.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use lookaside_control_plane::server::{ServeConfig, start};
use lookaside_proto::admin::v1::GetAssignmentRequest;
use lookaside_proto::admin::v1::admin_client::AdminClient;
use lookaside_proto::envoy::config::core::v3::{Locality, Node};
use lookaside_proto::envoy::config::endpoint::v3::{ClusterStats, UpstreamLocalityStats};
use lookaside_proto::envoy::service::load_stats::v3::LoadStatsRequest;
use lookaside_proto::envoy::service::load_stats::v3::load_reporting_service_client::LoadReportingServiceClient;
use lookaside_proto::google::protobuf::Duration as PbDuration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

fn report(successes: u64, errors: u64) -> LoadStatsRequest {
    LoadStatsRequest {
        node: Some(Node {
            id: "client-1".into(),
            ..Default::default()
        }),
        cluster_stats: vec![ClusterStats {
            cluster_name: "greeter".into(),
            load_report_interval: Some(PbDuration {
                seconds: 1,
                nanos: 0,
            }),
            upstream_locality_stats: vec![UpstreamLocalityStats {
                locality: Some(Locality {
                    sub_zone: "127.0.0.1:9".into(),
                    ..Default::default()
                }),
                total_successful_requests: successes,
                total_error_requests: errors,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn client_reports_show_per_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("lookaside.yaml");
    std::fs::write(
        &config,
        "clusters:\n  - name: greeter\n    endpoints: [{ address: 127.0.0.1:9 }]\n",
    )
    .expect("write config");
    let running = start(ServeConfig::local(config), futures::future::pending())
        .await
        .expect("control plane starts");
    let channel = Channel::from_shared(format!("http://{}", running.xds_address))
        .unwrap()
        .connect()
        .await
        .expect("connects");

    let (requests, rx) = tokio::sync::mpsc::channel(4);
    // The first request only says hello (Envoy's does).
    requests
        .send(LoadStatsRequest {
            node: Some(Node {
                id: "client-1".into(),
                ..Default::default()
            }),
            cluster_stats: vec![],
        })
        .await
        .unwrap();
    let mut responses = LoadReportingServiceClient::new(channel.clone())
        .stream_load_stats(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    let asked = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("answered")
        .expect("ok")
        .expect("a response");
    assert!(asked.send_all_clusters);
    assert_eq!(asked.clusters, vec!["greeter".to_string()]);
    assert!(asked.report_endpoint_granularity);
    assert!(asked.load_reporting_interval.is_some());

    requests.send(report(90, 10)).await.unwrap();
    let mut admin = AdminClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let assignment = admin
            .get_assignment(GetAssignmentRequest {
                cluster: "greeter".into(),
            })
            .await
            .expect("admin")
            .into_inner();
        let load = assignment.clusters[0].endpoints[0]
            .load
            .clone()
            .unwrap_or_default();
        if load.client_reporters == 1 {
            assert_eq!((load.client_rps, load.client_eps), (100.0, 10.0));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "report never shown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(requests);
}
