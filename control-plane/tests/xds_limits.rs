//! Every ADS limit over real gRPC: a client over it is refused or closed
//! with RESOURCE_EXHAUSTED naming the flag, the refusal is counted in
//! `lookaside_xds_limit_hits_total`, and a well-behaved client on the same
//! connection keeps receiving updates.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use futures::StreamExt;
use lookaside_control_plane::server::Running;
use lookaside_control_plane::telemetry::Metrics;
use lookaside_control_plane::xds::Limits;
use lookaside_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use lookaside_proto::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tonic::transport::Channel;

mod ads_fixture;
use ads_fixture::{EDS, EdsWatcher, channel, config, serve};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// A control plane with `limits` and a client following greeter's weight.
struct Limited {
    dir: tempfile::TempDir,
    running: Running,
    channel: Channel,
    watcher: EdsWatcher,
}

impl Limited {
    async fn start(limits: Limits) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = serve(dir.path(), limits).await;
        let channel = channel(&running).await;
        let mut watcher = EdsWatcher::open(channel.clone()).await;
        assert_eq!(watcher.next_weight().await, 1);
        Self {
            dir,
            running,
            channel,
            watcher,
        }
    }

    /// Sends `requests` on a new SotW stream; the status it is ended with.
    async fn sotw(&self, requests: Vec<DiscoveryRequest>) -> tonic::Status {
        let opened = AggregatedDiscoveryServiceClient::new(self.channel.clone())
            .stream_aggregated_resources(
                futures::stream::iter(requests).chain(futures::stream::pending()),
            )
            .await;
        match opened {
            Err(status) => status,
            Ok(response) => closing_status(response.into_inner()).await,
        }
    }

    /// Sends `requests` on a new Delta stream; the status it is ended with.
    async fn delta(&self, requests: Vec<DeltaDiscoveryRequest>) -> tonic::Status {
        let opened = AggregatedDiscoveryServiceClient::new(self.channel.clone())
            .delta_aggregated_resources(
                futures::stream::iter(requests).chain(futures::stream::pending()),
            )
            .await;
        match opened {
            Err(status) => status,
            Ok(response) => closing_status(response.into_inner()).await,
        }
    }

    /// `status` names `flag`, `limit` counted it once, and the watcher
    /// still follows an edit.
    async fn assert_refused(&mut self, status: &tonic::Status, flag: &str, limit: &'static str) {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains(flag), "{}", status.message());
        let hits = self
            .running
            .metrics
            .limit_hits
            .get_or_create(&Metrics::limit(limit))
            .get();
        assert_eq!(hits, 1, "{limit} hits");
        self.edit(7).await;
    }

    /// Edits greeter's weight; the watcher must see it.
    async fn edit(&mut self, weight: u32) {
        std::fs::write(self.dir.path().join("lookaside.yaml"), config(weight)).expect("edit");
        assert_eq!(self.watcher.next_weight().await, weight);
    }
}

/// Reads `responses` until the server ends the stream; its status.
async fn closing_status<T: std::fmt::Debug>(mut responses: tonic::Streaming<T>) -> tonic::Status {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), responses.next())
            .await
            .expect("closed within 5 s")
        {
            Some(Ok(_)) => continue,
            Some(Err(status)) => return status,
            None => panic!("ended without a status"),
        }
    }
}

fn cds() -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: CDS.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn streams_over_the_limit_are_refused() {
    let mut limited = Limited::start(Limits {
        max_streams: 1,
        ..Limits::default()
    })
    .await;
    let status = limited.sotw(vec![cds()]).await;
    limited
        .assert_refused(&status, "--xds-max-streams", "streams")
        .await;
}

#[tokio::test]
async fn a_request_naming_too_many_resources_is_refused() {
    let mut limited = Limited::start(Limits {
        max_names_per_request: 100,
        ..Limits::default()
    })
    .await;
    let huge = DiscoveryRequest {
        type_url: EDS.into(),
        resource_names: (0..1000).map(|i| format!("name-{i}")).collect(),
        ..Default::default()
    };
    let status = limited.sotw(vec![huge]).await;
    limited
        .assert_refused(&status, "--xds-max-names-per-request", "names_per_request")
        .await;
}

#[tokio::test]
async fn a_delta_stream_over_the_subscription_limit_is_closed() {
    let mut limited = Limited::start(Limits {
        max_subscriptions_per_stream: 5,
        ..Limits::default()
    })
    .await;
    // Each request is small; together they subscribe to 6 names.
    let requests = (0..3)
        .map(|i| DeltaDiscoveryRequest {
            type_url: EDS.into(),
            resource_names_subscribe: vec![format!("a-{i}"), format!("b-{i}")],
            ..Default::default()
        })
        .collect();
    let status = limited.delta(requests).await;
    limited
        .assert_refused(
            &status,
            "--xds-max-subscriptions-per-stream",
            "subscriptions_per_stream",
        )
        .await;
}

#[tokio::test]
async fn an_oversized_request_is_refused() {
    let mut limited = Limited::start(Limits {
        max_request_bytes: 1024,
        ..Limits::default()
    })
    .await;
    let oversized = DiscoveryRequest {
        type_url: EDS.into(),
        resource_names: vec!["x".repeat(4096)],
        ..Default::default()
    };
    let status = limited.sotw(vec![oversized]).await;
    limited
        .assert_refused(&status, "--xds-max-request-bytes", "request_bytes")
        .await;
}

#[tokio::test]
async fn a_stream_over_the_request_rate_is_closed_but_acks_are_free() {
    let mut limited = Limited::start(Limits {
        max_requests_per_second: 5,
        ..Limits::default()
    })
    .await;
    // A client in a loop: 50 requests at once, well over 5/s (burst 10).
    let status = limited.sotw((0..50).map(|_| cds()).collect()).await;
    limited
        .assert_refused(
            &status,
            "--xds-max-requests-per-second",
            "requests_per_second",
        )
        .await;
    // ACKs of the latest response are free: a client that follows a burst
    // of edits (more ACKs than the burst allows) is not closed.
    for weight in 10..25 {
        limited.edit(weight).await;
    }
}
