//! `--admin-listen`: the admin API, CSDS and reflection move to their own
//! port, the xDS port keeps ADS (and health) only, and each port refuses
//! the other's services.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use lookaside_control_plane::server::{ServeConfig, start};
use lookaside_proto::admin::v1::ListClustersRequest;
use lookaside_proto::admin::v1::admin_client::AdminClient;
use lookaside_proto::envoy::service::discovery::v3::DiscoveryRequest;
use lookaside_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

mod ads_fixture;
use ads_fixture::{EDS, EdsWatcher};

async fn channel(address: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

/// The services `channel`'s server reflection lists.
async fn reflected_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let request = ServerReflectionRequest {
        message_request: Some(MessageRequest::ListServices(String::new())),
        ..Default::default()
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection answers")
        .into_inner();
    match responses
        .message()
        .await
        .expect("a response")
        .and_then(|r| r.message_response)
    {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("not a service list: {other:?}"),
    }
}

#[tokio::test]
async fn admin_and_xds_listen_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lookaside.yaml");
    std::fs::write(
        &path,
        "clusters:\n  - name: greeter\n    policy: static\n    endpoints: [{ address: 10.0.0.1:80, weight: 3 }]\n",
    )
    .expect("config");
    let mut config = ServeConfig::local(path);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = start(config, futures::future::pending())
        .await
        .expect("control plane starts");
    assert_ne!(running.admin_address, running.xds_address);
    let xds = channel(running.xds_address).await;
    let admin = channel(running.admin_address).await;

    // ADS on the xDS port.
    let mut watcher = EdsWatcher::open(xds.clone()).await;
    assert_eq!(watcher.next_weight().await, 3);

    // The admin API on the admin port, and not on the xDS port.
    let clusters = AdminClient::new(admin.clone())
        .list_clusters(ListClustersRequest::default())
        .await
        .expect("admin answers on its port")
        .into_inner();
    assert_eq!(clusters.clusters.len(), 1);
    let refused = AdminClient::new(xds.clone())
        .list_clusters(ListClustersRequest::default())
        .await
        .expect_err("no admin on the xDS port");
    assert_eq!(refused.code(), tonic::Code::Unimplemented);

    // No ADS on the admin port.
    let request = DiscoveryRequest {
        type_url: EDS.into(),
        resource_names: vec!["greeter".into()],
        ..Default::default()
    };
    let outcome = AggregatedDiscoveryServiceClient::new(admin.clone())
        .stream_aggregated_resources(futures::stream::iter(vec![request]))
        .await;
    let code = match outcome {
        Err(status) => status.code(),
        Ok(response) => {
            let mut stream = response.into_inner();
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Err(status)) => status.code(),
                other => panic!("ADS answered on the admin port: {other:?}"),
            }
        }
    };
    assert_eq!(code, tonic::Code::Unimplemented);

    // Reflection on the admin port lists what that port serves, not ADS.
    let listed = reflected_services(admin.clone()).await;
    assert!(
        listed.iter().any(|s| s == "lookaside.admin.v1.Admin"),
        "{listed:?}"
    );
    assert!(
        !listed
            .iter()
            .any(|s| s.contains("AggregatedDiscoveryService")),
        "{listed:?}"
    );

    // Health answers on both, for probes.
    for channel in [xds, admin] {
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health answers")
            .into_inner()
            .status;
        assert_eq!(status, 1, "SERVING");
    }
}
