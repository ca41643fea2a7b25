//! TLS towards endpoints: calls reach a backend that speaks only TLS, with
//! a client certificate when it requires one; a backend whose certificate
//! is not trusted, or that requires a certificate the client lacks, is
//! ejected and its calls fail with UNAVAILABLE naming the TLS handshake.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lookaside_client::LbChannel;
use lookaside_client::cluster::ClusterBalancer;
use lookaside_client::endpoint::{ConnectionSettings, EndpointTls};
use support::{Backend, call, until};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The control plane's test certificates: a CA, a server certificate for
/// 127.0.0.1 and localhost, a client certificate, and a second CA.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../control-plane/tests/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn server_tls(require_client_certificate: bool) -> ServerTlsConfig {
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(
        fixture("server.pem"),
        fixture("server.key"),
    ));
    if require_client_certificate {
        tls.client_ca_root(Certificate::from_pem(fixture("ca.pem")))
    } else {
        tls
    }
}

fn balanced(name: &str, tls: EndpointTls, backend: &Backend) -> (ClusterBalancer, LbChannel) {
    balanced_probing(name, tls, &[backend.address], Duration::from_secs(30))
}

/// A cluster of `addresses` (weight 1 each) whose ejected endpoints are
/// probed every `probe`.
fn balanced_probing(
    name: &str,
    tls: EndpointTls,
    addresses: &[std::net::SocketAddr],
    probe: Duration,
) -> (ClusterBalancer, LbChannel) {
    let settings = ConnectionSettings {
        tls: Some(tls),
        probe_backoff_initial: probe,
        probe_backoff_max: probe,
        ..ConnectionSettings::default()
    };
    let (cluster, channel) = ClusterBalancer::spawn(name, settings, Duration::from_secs(2));
    cluster.assign(addresses.iter().map(|&address| (address, 1)).collect());
    (cluster, channel)
}

#[tokio::test]
async fn calls_reach_a_tls_backend_checked_by_its_ip_address_or_a_name() {
    let backend = Backend::start_tls(server_tls(false)).await;
    let by_ip = EndpointTls::new(&fixture("ca.pem")).unwrap();
    let (_cluster, channel) = balanced("tls", by_ip, &backend);
    for _ in 0..10 {
        call(&channel).await.expect("call over TLS");
    }
    let uri = backend.last_uri().unwrap();
    assert_eq!(uri.scheme_str(), Some("https"));
    let authority = |uri: &http::Uri| uri.authority().map(|a| a.as_str().to_string());
    assert_eq!(authority(&uri), Some(backend.address.to_string()));
    let by_name = EndpointTls::new(&fixture("ca.pem"))
        .and_then(|tls| tls.server_name("localhost"))
        .unwrap();
    let (_named, channel) = balanced("named", by_name, &backend);
    call(&channel)
        .await
        .expect("call over TLS, checked as localhost");
    // The name the certificate carries is the requests' authority too.
    let named = format!("localhost:{}", backend.address.port());
    assert_eq!(authority(&backend.last_uri().unwrap()), Some(named));
    assert_eq!(backend.served(), 11);
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    // This thread's own recorder: every task of this runtime runs here.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let backend = Backend::start_tls(server_tls(true)).await;
    let identity = EndpointTls::with_identity(
        &fixture("ca.pem"),
        &fixture("client.pem"),
        &fixture("client.key"),
    )
    .unwrap();
    let (_cluster, channel) = balanced("mtls", identity, &backend);
    call(&channel)
        .await
        .expect("call with a client certificate");

    // TLS 1.3 refuses the missing certificate only after the client's
    // side of the handshake: probes that stopped there would let the
    // endpoint back in again and again.
    let anonymous = EndpointTls::new(&fixture("ca.pem")).unwrap();
    let (_refused, channel) = balanced_probing(
        "anonymous",
        anonymous,
        &[backend.address],
        Duration::from_millis(10),
    );
    let status = call(&channel).await.expect_err("no client certificate");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    until("the endpoint is ejected", || {
        channel.usable_endpoints() == 0
    })
    .await;
    let before = backend.accepted();
    until("probes came", || backend.accepted() >= before + 5).await;
    let recovered = support::counted(
        &snapshotter,
        "lookaside_client_recoveries_total",
        "anonymous",
    );
    assert!(!recovered, "a probe let it back in");
    assert_eq!(backend.served(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_ejects_the_endpoint() {
    let backend = Backend::start_tls(server_tls(false)).await;
    let other_ca = EndpointTls::new(&fixture("ca2.pem")).unwrap();
    let (_cluster, channel) = balanced("untrusted", other_ca, &backend);
    until("the endpoint is ejected", || {
        channel.usable_endpoints() == 0
    })
    .await;
    let status = call(&channel).await.expect_err("untrusted certificate");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // A name the certificate does not carry is refused the same way.
    let wrong_name = EndpointTls::new(&fixture("ca.pem"))
        .and_then(|tls| tls.server_name("greeter.default.svc"))
        .unwrap();
    let (_named, channel) = balanced("wrong-name", wrong_name, &backend);
    let status = call(&channel).await.expect_err("wrong server name");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // The call that met the handshake names it; later ones find the
    // endpoint ejected.
    let message = status.message();
    assert!(
        message.contains("TLS handshake") || message.contains("reachable"),
        "{status:?}"
    );
    assert_eq!(backend.served(), 0);
}

#[tokio::test]
async fn a_tls_server_that_does_not_agree_to_http2_is_refused() {
    use rustls_pki_types::pem::PemObject;
    // A TLS server (the test certificate) offering no ALPN protocol, as an
    // HTTP/1.1-only server would.
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(&fixture("server.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&fixture("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(tls) = acceptor.accept(tcp).await {
                held.push(tls);
            }
        }
    });
    let tls = EndpointTls::new(&fixture("ca.pem")).unwrap();
    let (_cluster, channel) = balanced_probing("http1", tls, &[address], Duration::from_secs(30));
    let status = call(&channel).await.expect_err("no HTTP/2 there");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // The first call waits for the warm-up attempt (this runtime runs one
    // task at a time) and meets its error.
    assert!(status.message().contains("ALPN"), "{status:?}");
    until("the endpoint is ejected", || {
        channel.usable_endpoints() == 0
    })
    .await;
    server.abort();
}

#[tokio::test]
async fn calls_caught_by_a_backend_that_refuses_the_client_go_to_another() {
    // Both backends trust the test CA's server certificate; the first also
    // wants a client certificate this client lacks.
    let strict = Backend::start_tls(server_tls(true)).await;
    let open = Backend::start_tls(server_tls(false)).await;
    let tls = EndpointTls::new(&fixture("ca.pem")).unwrap();
    let addresses = [strict.address, open.address];
    let (_cluster, channel) = balanced_probing("mixed", tls, &addresses, Duration::from_secs(30));
    for _ in 0..20 {
        call(&channel)
            .await
            .expect("a call caught by the refusal is retried");
    }
    assert_eq!((strict.served(), open.served()), (0, 20));
}

/// Replaces `path` at once, as a Secret mount swaps its files.
fn replace(path: &std::path::Path, content: &[u8]) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test]
async fn rotated_files_are_read_again_and_a_broken_set_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    // Another CA first: the backend's certificate is refused.
    std::fs::write(&ca, fixture("ca2.pem")).unwrap();
    let backend = Backend::start_tls(server_tls(false)).await;
    let tls = EndpointTls::from_files(&ca, None).unwrap();
    let (_cluster, channel) = balanced_probing(
        "rotated",
        tls.clone(),
        &[backend.address],
        Duration::from_millis(20),
    );
    until("the refused endpoint is ejected", || {
        channel.usable_endpoints() == 0
    })
    .await;
    // The right CA arrives: the next probe reads it and gets through.
    replace(&ca, &fixture("ca.pem"));
    until("the endpoint is back", || channel.usable_endpoints() == 1).await;
    call(&channel).await.expect("a call with the rotated CA");

    // A broken CA file: new connections keep the last good configuration.
    replace(&ca, b"not a certificate");
    let (_second, again) = balanced("rotated-again", tls, &backend);
    call(&again)
        .await
        .expect("the last good configuration still serves");
    assert!(
        EndpointTls::from_files(&ca, None).is_err(),
        "a broken set is refused when first read"
    );
}
