//! TLS on the gRPC listener: with `--tls-client-ca`, a client presenting a
//! certificate the CA signed gets assignments over ADS, and clients without
//! one, or speaking plaintext, are refused. A rotated certificate serves new
//! connections while streams opened before it live on.
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

use lookaside_control_plane::server::{Running, ServeConfig, start};
use lookaside_control_plane::snapshot::ResourceType;
use lookaside_control_plane::tls::TlsFiles;
use lookaside_proto::envoy::service::discovery::v3::DiscoveryRequest;
use lookaside_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

mod ads_fixture;
use ads_fixture::{EDS, EdsWatcher};

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

/// A channel to `url` trusting only `ca`, or the error of connecting.
async fn connect_trusting(url: &str, ca: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem(ca)))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_connections_and_open_streams_live_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("lookaside.yaml");
    let config = |weight: u32| {
        format!(
            "clusters:\n  - name: greeter\n    policy: static\n    endpoints: [{{ address: 10.0.0.1:80, weight: {weight} }}]\n"
        )
    };
    std::fs::write(&config_path, config(3)).expect("config");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(file("server.pem"), &cert).expect("cert");
    std::fs::copy(file("server.key"), &key).expect("key");
    let mut serve = ServeConfig::local(config_path.clone());
    serve.config_poll = Duration::from_millis(20);
    serve.tls = Some(TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
    });
    serve.tls_reload = Duration::from_millis(20);
    let running = start(serve, futures::future::pending())
        .await
        .expect("control plane starts");
    let url = format!("https://127.0.0.1:{}", running.xds_address.port());

    // A stream on a connection made with the first certificate.
    let old = connect_trusting(&url, "ca.pem")
        .await
        .expect("first CA trusted");
    let mut watcher = EdsWatcher::open(old).await;
    assert_eq!(watcher.next_weight().await, 3);

    // Rotate to a certificate of another CA, the way a Secret update lands:
    // one file, then the other (the mismatched pair in between is refused).
    std::fs::copy(file("server2.pem"), &cert).expect("rotate cert");
    std::fs::copy(file("server2.key"), &key).expect("rotate key");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(channel) = connect_trusting(&url, "ca2.pem").await
            && first_answer(channel).await.is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New connections no longer get the old certificate...
    let stale = match connect_trusting(&url, "ca.pem").await {
        Ok(channel) => first_answer(channel).await.err(),
        Err(error) => Some(tonic::Status::unavailable(error.to_string())),
    };
    assert!(stale.is_some(), "the old certificate is still served");
    // ...while the stream opened before the rotation still follows edits.
    std::fs::write(&config_path, config(7)).expect("edit");
    assert_eq!(watcher.next_weight().await, 7);
}
