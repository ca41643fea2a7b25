//! The whole control plane on the file and Kubernetes sources, against the
//! fake API server: until the first complete list of EndpointSlices (the
//! file is read at once), ADS streams are
//! held (a state-of-the-world answer would tell clients every cluster is
//! gone) and the readiness service reports NOT_SERVING; after it, clients
//! get the endpoints, named by the Service port clients dial, and the probe
//! turns SERVING.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod ads_fixture;
mod fake_kube;

use std::time::Duration;

use ads_fixture::{eventually, http_status, open_sotw_streams};
use fake_kube::FakeKube;
use lookaside_control_plane::server::{ADS_SERVICE, Discovery, Running, ServeConfig, start_with};
use lookaside_control_plane::sources::kube::KubeOptions;
use lookaside_proto::envoy::config::core::v3::address::Address::SocketAddress;
use lookaside_proto::envoy::config::core::v3::socket_address::PortSpecifier::PortValue;
use lookaside_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use lookaside_proto::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint;
use lookaside_proto::envoy::service::discovery::v3::DiscoveryRequest;
use lookaside_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use prost::Message;
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn greeter_slice(addresses: &[&str]) -> serde_json::Value {
    let endpoints: Vec<_> = addresses
        .iter()
        .map(|a| json!({ "addresses": [a], "conditions": { "ready": true } }))
        .collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": "greeter-abc",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "greeter",
                "lookaside.io/enabled": "true",
                "lookaside.io/policy": "static",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "name": "grpc", "port": 50051, "protocol": "TCP" }],
    })
}

async fn readiness(channel: Channel) -> ServingStatus {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: ADS_SERVICE.into(),
        })
        .await
        .expect("health check");
    ServingStatus::try_from(response.into_inner().status).expect("status")
}

/// The control plane on a config file holding `config` and on `kube`'s
/// namespace `default`, with a metrics listener; a channel to its xDS port.
async fn start(kube: &FakeKube, config: &str) -> (tempfile::TempDir, Running, Channel) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lookaside.yaml");
    std::fs::write(&path, config).expect("write config");
    let mut serve = ServeConfig::local(path);
    serve.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = start_with(
        serve,
        Discovery {
            file: true,
            kube: Some(KubeOptions {
                namespace: Some("default".into()),
                ..KubeOptions::default()
            }),
            kube_client: Some(kube.client()),
        },
        futures::future::pending(),
    )
    .await
    .expect("control plane starts");
    let channel = Channel::from_shared(format!("http://{}", running.xds_address))
        .unwrap()
        .connect()
        .await
        .expect("connects");
    (dir, running, channel)
}

#[tokio::test]
async fn ads_waits_for_the_first_complete_list() {
    let kube = FakeKube::start().await;
    kube.set_failing(true);
    kube.apply(greeter_slice(&["10.1.0.1", "10.1.0.2"]));
    // Clients dial port 80; the pods listen on 50051.
    kube.apply(json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": "greeter",
            "namespace": "default",
            "labels": { "lookaside.io/enabled": "true", "lookaside.io/policy": "static" },
        },
        "spec": { "ports": [{ "name": "grpc", "port": 80, "targetPort": 50051 }] },
    }));
    // The file source lists at once; the Kubernetes one cannot yet.
    let (_dir, running, channel) = start(
        &kube,
        "clusters:\n  - name: from-file\n    endpoints: [{ address: 10.9.0.1:80 }]\n",
    )
    .await;
    assert_eq!(readiness(channel.clone()).await, ServingStatus::NotServing);
    let metrics = running.metrics_address.expect("metrics listen");
    assert_eq!(http_status(metrics, "/readyz").await, 503);
    assert_eq!(http_status(metrics, "/healthz").await, 200);

    let (requests, rx) = tokio::sync::mpsc::channel(4);
    // A wildcard CDS request first: answered too early, it would be an
    // empty list that deletes every cluster on the client.
    for (type_url, names) in [(CDS, vec![]), (EDS, vec!["greeter.default:80".into()])] {
        requests
            .send(DiscoveryRequest {
                type_url: type_url.into(),
                resource_names: names,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut responses = AggregatedDiscoveryServiceClient::new(channel.clone())
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    // The API server fails every list: no answer may come, not even an
    // empty one.
    let early = tokio::time::timeout(Duration::from_millis(500), responses.message()).await;
    assert!(early.is_err(), "answered before the first list: {early:?}");

    kube.set_failing(false);
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(15), responses.message())
            .await
            .expect("answered after the list")
            .expect("stream ok")
            .expect("a response")
    };
    let clusters = next().await;
    assert_eq!(clusters.type_url, CDS);
    // The file's cluster and both names of the one opted-in Service.
    assert_eq!(clusters.resources.len(), 3);
    let response = next().await;
    assert_eq!(response.type_url, EDS);
    let assignment =
        ClusterLoadAssignment::decode(response.resources[0].value.as_slice()).expect("decodes");
    assert_eq!(assignment.cluster_name, "greeter.default:80");
    let ports: Vec<u32> = assignment
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| {
            let address = e.host_identifier.as_ref()?;
            let Endpoint(endpoint) = address else {
                return None;
            };
            let socket = endpoint.address.as_ref()?.address.as_ref()?;
            let SocketAddress(socket) = socket else {
                return None;
            };
            match socket.port_specifier {
                Some(PortValue(port)) => Some(port),
                _ => None,
            }
        })
        .collect();
    assert_eq!(ports, [50051, 50051], "endpoints keep the pods' port");
    eventually(Duration::from_secs(5), "ready", || async {
        readiness(channel.clone()).await == ServingStatus::Serving
    })
    .await;
    // The plaintext probe (for a TLS-only gRPC port) agrees.
    assert_eq!(http_status(metrics, "/readyz").await, 200);
    drop(requests);
}

#[tokio::test]
async fn a_list_that_adds_nothing_still_makes_it_ready_and_held_clients_may_leave() {
    // No opted-in Service at all: the first complete list changes no
    // resource, and must still end the wait.
    let kube = FakeKube::start().await;
    kube.set_failing(true);
    let (_dir, running, channel) = start(&kube, "clusters: []\n").await;
    let metrics = running.metrics_address.expect("metrics listen");
    let open_streams = || open_sotw_streams(&running);
    let wildcard_cds = async || {
        let (requests, rx) = tokio::sync::mpsc::channel(4);
        requests
            .send(DiscoveryRequest {
                type_url: CDS.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let responses = AggregatedDiscoveryServiceClient::new(channel.clone())
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("stream opens")
            .into_inner();
        (requests, responses)
    };

    // Held while the API server fails; a client that gives up is let go.
    let (requests, mut responses) = wildcard_cds().await;
    let early = tokio::time::timeout(Duration::from_millis(300), responses.message()).await;
    assert!(early.is_err(), "answered before the first list: {early:?}");
    assert_eq!(open_streams(), 1);
    drop((requests, responses));
    eventually(
        Duration::from_secs(5),
        "a client that left lets its stream go",
        || async { open_streams() == 0 },
    )
    .await;

    kube.set_failing(false);
    eventually(Duration::from_secs(15), "ready", || async {
        readiness(channel.clone()).await == ServingStatus::Serving
    })
    .await;
    assert_eq!(http_status(metrics, "/readyz").await, 200);
    let (_requests, mut responses) = wildcard_cds().await;
    let answer = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("answered once listed")
        .expect("stream ok")
        .expect("a response");
    assert_eq!(answer.type_url, CDS);
    assert!(answer.resources.is_empty());
}
