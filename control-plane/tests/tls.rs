//! TLS on the gRPC listener: with `--tls-client-ca`, a client presenting a
//! certificate the CA signed gets assignments over ADS, and clients without
//! one, or speaking plaintext, are refused.
//!
//! The certificates in `tests/tls/` are for tests only (100 years), made
//! with `openssl.cnf` there:
//!
//! ```text
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 36500 -subj "/CN=lookaside test CA"
//! openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=lookaside test server" -config openssl.cnf
//! openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 36500 -extfile openssl.cnf -extensions server
//! (the same for client, with -extensions client)
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;

use lookaside_control_plane::server::{Running, ServeConfig, TlsFiles, start};
use lookaside_control_plane::snapshot::ResourceType;
use lookaside_proto::envoy::service::discovery::v3::DiscoveryRequest;
use lookaside_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

fn file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(file(name)).expect("test certificate")
}

async fn serve(dir: &std::path::Path) -> Running {
    let path = dir.join("lookaside.yaml");
    std::fs::write(
        &path,
        "clusters:\n  - name: greeter\n    policy: static\n    endpoints: [{ address: 10.0.0.1:80, weight: 3 }]\n",
    )
    .expect("config");
    let mut config = ServeConfig::local(path);
    config.tls = Some(TlsFiles {
        cert: file("server.pem"),
        key: file("server.key"),
        client_ca: Some(file("ca.pem")),
    });
    start(config, futures::future::pending())
        .await
        .expect("control plane starts")
}

/// Asks for greeter's assignment over `channel`; the first answer or error.
async fn first_answer(channel: Channel) -> Result<usize, tonic::Status> {
    let request = DiscoveryRequest {
        type_url: EDS.into(),
        resource_names: vec!["greeter".into()],
        ..Default::default()
    };
    let mut responses = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(
            futures::stream::iter(vec![request]).chain(futures::stream::pending()),
        )
        .await?
        .into_inner();
    let response = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer in 5 s"))??
        .ok_or_else(|| tonic::Status::unavailable("stream ended"))?;
    Ok(response.resources.len())
}

fn tls(identity: bool) -> ClientTlsConfig {
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem("ca.pem")))
        .domain_name("localhost");
    if identity {
        config.identity(Identity::from_pem(pem("client.pem"), pem("client.key")))
    } else {
        config
    }
}

#[tokio::test]
async fn mutual_tls_admits_certified_clients_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = serve(dir.path()).await;
    let url = format!("https://127.0.0.1:{}", running.xds_address.port());

    // A client with a certificate signed by the CA gets its assignment.
    let certified = Endpoint::from_shared(url.clone())
        .unwrap()
        .tls_config(tls(true))
        .unwrap()
        .connect()
        .await
        .expect("a certified client connects");
    assert_eq!(first_answer(certified).await.expect("answered"), 1);

    // Without a client certificate: refused (at the handshake or the call).
    let anonymous = match Endpoint::from_shared(url.clone())
        .unwrap()
        .tls_config(tls(false))
        .unwrap()
        .connect()
        .await
    {
        Ok(channel) => first_answer(channel).await.err(),
        Err(error) => Some(tonic::Status::unavailable(error.to_string())),
    };
    assert!(
        anonymous.is_some(),
        "a client without a certificate was served"
    );

    // Plaintext: refused.
    let plain =
        match Endpoint::from_shared(format!("http://127.0.0.1:{}", running.xds_address.port()))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => first_answer(channel).await.err(),
            Err(error) => Some(tonic::Status::unavailable(error.to_string())),
        };
    assert!(plain.is_some(), "a plaintext client was served");
}

#[tokio::test]
async fn lookaside_client_speaks_mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = serve(dir.path()).await;
    let client = lookaside_client::Client::builder(format!(
        "https://127.0.0.1:{}",
        running.xds_address.port()
    ))
    .tls(tls(true))
    .build()
    .expect("client");
    let _channel = client.channel("greeter");
    // The control plane sees the client's ADS stream and its EDS ACK.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let acked = running.clients.all().iter().any(|c| {
            c.types
                .iter()
                .any(|t| t.kind == ResourceType::Assignment && !t.acks.acked_version.is_empty())
        });
        if acked {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no ACK over TLS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
