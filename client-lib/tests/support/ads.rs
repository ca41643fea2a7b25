//! A scripted ADS server: answers requests from a list, reports every
//! request and every stream that ends.

use std::pin::Pin;

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
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// What the server saw.
#[derive(Debug)]
pub enum Seen {
    /// A request on some stream.
    Request(Box<DiscoveryRequest>),
    /// A stream ended (the client closed or reset it).
    Ended,
}

/// An assignment of cluster `greeter`: one locality per endpoint.
pub fn assignment(endpoints: &[(std::net::SocketAddr, u32)]) -> Any {
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

/// Sends the scripted responses one per request (the first stream gets
/// them all), and reports every request and stream end.
struct Scripted {
    responses: std::sync::Mutex<Option<Vec<DiscoveryResponse>>>,
    seen: mpsc::UnboundedSender<Seen>,
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
        let seen = self.seen.clone();
        let (tx, rx) = mpsc::channel(4);
        let mut inbound = request.into_inner();
        tokio::spawn(async move {
            while let Some(Ok(request)) = inbound.next().await {
                let _ = seen.send(Seen::Request(Box::new(request.clone())));
                // Answer each request carrying no error with the next script line.
                if request.error_detail.is_none()
                    && let Some(response) = script.next()
                {
                    let _ = tx.send(Ok(response)).await;
                }
            }
            let _ = seen.send(Seen::Ended);
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

/// Serves `responses` on a local port; returns its address and what it sees.
pub async fn scripted(
    responses: Vec<DiscoveryResponse>,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let server = Scripted {
        responses: std::sync::Mutex::new(Some(responses)),
        seen: seen_tx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (address, seen)
}
