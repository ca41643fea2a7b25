//! A malformed assignment (weight 0) is NACKed with the reason, and the
//! previous assignment keeps serving. The control plane here is a scripted
//! fake, since the real one never sends weight 0.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::pin::Pin;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use futures::Stream;
use lookaside_client::Client;
use prost::Message;
use support::{Backend, call};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

fn assignment(endpoints: &[(std::net::SocketAddr, u32)]) -> Any {
    let cla = ClusterLoadAssignment {
        cluster_name: "greeter".into(),
        endpoints: endpoints
            .iter()
            .map(|(address, weight)| LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(Address {
                            address: Some(address::Address::SocketAddress(SocketAddress {
                                address: address.ip().to_string(),
                                port_specifier: Some(socket_address::PortSpecifier::PortValue(
                                    u32::from(address.port()),
                                )),
                                ..Default::default()
                            })),
                        }),
                        ..Default::default()
                    })),
                    load_balancing_weight: Some(UInt32Value { value: *weight }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    Any {
        type_url: EDS.into(),
        value: cla.encode_to_vec(),
    }
}

/// Sends the scripted responses one per request, and reports every request.
struct Scripted {
    responses: std::sync::Mutex<Option<Vec<DiscoveryResponse>>>,
    requests: mpsc::UnboundedSender<DiscoveryRequest>,
}

type Out = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaOut = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Scripted {
    type StreamAggregatedResourcesStream = Out;
    type DeltaAggregatedResourcesStream = DeltaOut;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Out>, Status> {
        let mut script = self
            .responses
            .lock()
            .unwrap()
            .take()
            .unwrap_or_default()
            .into_iter();
        let seen = self.requests.clone();
        let (tx, rx) = mpsc::channel(4);
        let mut inbound = request.into_inner();
        tokio::spawn(async move {
            while let Some(Ok(request)) = inbound.next().await {
                let _ = seen.send(request.clone());
                // Answer each request carrying no error with the next script line.
                if request.error_detail.is_none()
                    && let Some(response) = script.next()
                {
                    let _ = tx.send(Ok(response)).await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaOut>, Status> {
        Err(Status::unimplemented("SotW only"))
    }
}

#[tokio::test]
async fn weight_zero_is_nacked_and_the_last_good_assignment_keeps_serving() {
    let backends = [Backend::start().await, Backend::start().await];
    let good = DiscoveryResponse {
        version_info: "1".into(),
        resources: vec![assignment(&[
            (backends[0].address, 1),
            (backends[1].address, 1),
        ])],
        type_url: EDS.into(),
        nonce: "n1".into(),
        ..Default::default()
    };
    let bad = DiscoveryResponse {
        version_info: "2".into(),
        resources: vec![assignment(&[
            (backends[0].address, 0),
            (backends[1].address, 1),
        ])],
        type_url: EDS.into(),
        nonce: "n2".into(),
        ..Default::default()
    };
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = Scripted {
        responses: std::sync::Mutex::new(Some(vec![good, bad])),
        requests: seen_tx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let lb = Client::builder(format!("http://{address}"))
        .build()
        .expect("client");
    let channel = lb.channel("greeter");
    for _ in 0..10 {
        call(&channel).await.expect("call");
    }
    assert_eq!((backends[0].served(), backends[1].served()), (5, 5));

    // Requests: subscribe, ACK of n1 (which the script answers with the bad
    // response), then the NACK of n2.
    let nack = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let request = seen.recv().await.expect("requests");
            if request.error_detail.is_some() {
                return request;
            }
        }
    })
    .await
    .expect("a NACK arrives");
    assert_eq!(nack.response_nonce, "n2");
    assert_eq!(
        nack.version_info, "1",
        "the NACK names the last good version"
    );
    let message = nack.error_detail.map(|s| s.message).unwrap_or_default();
    assert!(message.contains("load_balancing_weight 0"), "{message}");

    // The previous assignment still serves both endpoints evenly.
    for _ in 0..10 {
        call(&channel).await.expect("call");
    }
    assert_eq!((backends[0].served(), backends[1].served()), (10, 10));
}
