//! hyperium `tonic-xds` 0.1.0-alpha.4, one more real proxyless xDS client,
//! against the real `lookaside` binary: `xds:///greeter` resolves through
//! LDS, RDS, CDS and EDS, 300 calls all succeed and reach every backend (it
//! balances with P2C and ignores both endpoint and locality weights, so the
//! split is roughly even whatever the weights), and the admin API lists it
//! with all four types ACKed and no NACK.

use std::time::{Duration, Instant};

use lookaside_tests::backend::Backend;
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::{
    CLUSTER_TYPE, ControlPlane, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE,
};
use lookaside_tests::echo::v1::WhoRequest;
use lookaside_tests::echo::v1::echo_client::EchoClient;
use lookaside_tests::split::Split;
use tonic_xds::{BootstrapConfig, XdsChannelBuilder, XdsChannelConfig, XdsUri};

const CLUSTER: &str = "greeter";
const NODE_ID: &str = "tonic-xds-e2e";
const CALLS: usize = 300;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn tonic_xds_resolves_through_lookaside_and_reaches_every_backend() -> anyhow::Result<()> {
    let started = Instant::now();
    let backends = Backend::start_all(&["b1", "b2", "b3"]).await?;
    let cp = ControlPlane::start(
        &Config::new().weighted(
            CLUSTER,
            backends
                .iter()
                .zip([1, 2, 7])
                .map(|(b, w)| (b.address(), w)),
        ),
    )
    .await?;

    // tonic-xds needs the scheme in server_uri; without it every call hangs.
    let bootstrap = BootstrapConfig::from_json(&format!(
        r#"{{"xds_servers":[{{"server_uri":"http://{}","channel_creds":[{{"type":"insecure"}}],"server_features":["xds_v3"]}}],"node":{{"id":"{NODE_ID}","locality":{{}}}}}}"#,
        cp.xds_addr()
    ))?;
    let channel = XdsChannelBuilder::new(
        XdsChannelConfig::new(XdsUri::parse(&format!("xds:///{CLUSTER}"))?)
            .with_bootstrap(bootstrap),
    )
    .build_grpc_channel()?;
    let mut client = EchoClient::new(channel);

    let mut split = Split::new();
    let mut failures = Vec::new();
    for call in 0..CALLS {
        let mut request = tonic::Request::new(WhoRequest {});
        request.set_timeout(CALL_TIMEOUT);
        match tokio::time::timeout(CALL_TIMEOUT, client.who(request)).await {
            Ok(Ok(reply)) => split.record(&reply.into_inner().backend),
            Ok(Err(status)) => failures.push(format!("call {call}: {status}")),
            Err(_) => failures.push(format!("call {call}: no answer within {CALL_TIMEOUT:?}")),
        }
    }
    println!(
        "tonic-xds split of {CALLS} calls (weights 1/2/7, which it ignores): {split}, {} failed, \
         {:?} since start",
        failures.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    for backend in &backends {
        assert!(
            split.counts().get(backend.name()).copied().unwrap_or(0) > 0,
            "{} got no call: {split}",
            backend.name()
        );
    }

    let seen = cp
        .wait_for_acks(
            NODE_ID,
            "sotw",
            &[LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE],
            Duration::from_secs(5),
        )
        .await?;
    let nacks: u64 = seen.types.iter().map(|state| state.nacks).sum();
    assert_eq!(nacks, 0, "tonic-xds NACKed: {seen:?}");
    println!(
        "admin API: {NODE_ID} ({:?}) ACKed {:?}",
        seen.user_agent,
        seen.types
            .iter()
            .map(|state| (
                state.type_url.rsplit('.').next().unwrap_or_default(),
                &state.acked_version
            ))
            .collect::<Vec<_>>()
    );
    Ok(())
}
