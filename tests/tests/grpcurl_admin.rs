//! grpcurl 1.8.6 (reflection v1alpha) against the real `lookaside` binary:
//! the services it lists, the admin API's view of weights and clients, and
//! a rejected config edit that names its line while the last good weights
//! keep serving.

use std::collections::BTreeMap;
use std::time::Duration;

use lookaside_tests::backend::Backend;
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::ControlPlane;
use lookaside_tests::grpcurl::Grpcurl;
use lookaside_tests::peers::Peers;
use lookaside_tests::poll::{self, Check};
use lookaside_tests::python::PythonXdsClient;

const CLUSTER: &str = "greeter";
const NODE_ID: &str = "python-grpcurl-test";

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_services_and_reads_the_admin_api() -> anyhow::Result<()> {
    let peers = Peers::locate()?;
    let backends = Backend::start_all(&["b1", "b2", "b3"]).await?;
    let good = Config::new().weighted(
        CLUSTER,
        backends
            .iter()
            .zip([1, 2, 7])
            .map(|(b, w)| (b.address(), w)),
    );
    let want: BTreeMap<String, u64> = backends
        .iter()
        .zip([1, 2, 7])
        .map(|(b, w)| (b.address().to_string(), w))
        .collect();
    let cp = ControlPlane::start(&good).await?;
    let grpcurl = Grpcurl::new(&peers, cp.xds_addr())?;

    // Reflection lists what the xDS port serves.
    let services = grpcurl.list().await?;
    for service in [
        "lookaside.admin.v1.Admin",
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == service),
            "`grpcurl list` lacks {service}: {services:?}"
        );
    }
    let health = grpcurl.call("grpc.health.v1.Health/Check", "{}").await?;
    assert_eq!(health["status"], "SERVING", "health: {health}");

    // GetAssignment shows the file's weights.
    assert_eq!(assignment_weights(&grpcurl).await?, want);

    // A gRPC client that connects shows up in ListClients.
    let mut client = PythonXdsClient::start(&peers, cp.xds_addr(), CLUSTER, NODE_ID).await?;
    client.call(10, Duration::from_secs(30)).await?;
    let listed = poll::until(
        "the Python client in ListClients",
        Duration::from_secs(5),
        async || {
            let reply = grpcurl
                .call("lookaside.admin.v1.Admin/ListClients", "{}")
                .await?;
            let found = reply["clients"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["nodeId"] == NODE_ID)
                .cloned();
            Ok(match found {
                Some(found) => Check::Done(found),
                None => Check::NotYet(reply.to_string()),
            })
        },
    )
    .await?;
    assert_eq!(listed["protocol"], "sotw", "client: {listed}");
    let agent = listed["userAgent"].as_str().unwrap_or_default();
    assert!(agent.contains("gRPC"), "client: {listed}");

    // An invalid edit (weight 0) is rejected, with its line...
    let bad_address = backends[1].address().to_string();
    let bad = Config::new().weighted(
        CLUSTER,
        backends
            .iter()
            .zip([1, 0, 7])
            .map(|(b, w)| (b.address(), w)),
    );
    let bad_line = bad.line_of(&bad_address).expect("the bad endpoint's line");
    cp.write_config(&bad).await?;
    let error = poll::until(
        "ListSources to report the bad edit",
        Duration::from_secs(5),
        async || {
            let reply = grpcurl
                .call("lookaside.admin.v1.Admin/ListSources", "{}")
                .await?;
            let error = reply["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|source| source.get("error"))
                .cloned();
            Ok(match error {
                Some(error) => Check::Done(error),
                None => Check::NotYet(reply.to_string()),
            })
        },
    )
    .await?;
    println!("rejected edit: {error}");
    assert_eq!(
        error["line"].as_u64(),
        Some(u64::from(bad_line)),
        "error should name line {bad_line}: {error}\nconfig:\n{}",
        bad.to_yaml()
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("weight"),
        "message should name the weight: {error}"
    );

    // ... while the last good weights keep serving.
    assert_eq!(assignment_weights(&grpcurl).await?, want);

    // Fixing the file clears the error.
    cp.write_config(&good).await?;
    poll::until(
        "ListSources to clear the error",
        Duration::from_secs(5),
        async || {
            let reply = grpcurl
                .call("lookaside.admin.v1.Admin/ListSources", "{}")
                .await?;
            let errors = reply["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|source| source.get("error").is_some())
                .count();
            Ok(if errors == 0 {
                Check::Done(())
            } else {
                Check::NotYet(reply.to_string())
            })
        },
    )
    .await?;
    Ok(())
}

/// `GetAssignment {"cluster": "greeter"}` through grpcurl: weight by address.
async fn assignment_weights(grpcurl: &Grpcurl) -> anyhow::Result<BTreeMap<String, u64>> {
    let reply = grpcurl
        .call(
            "lookaside.admin.v1.Admin/GetAssignment",
            &format!(r#"{{"cluster":"{CLUSTER}"}}"#),
        )
        .await?;
    let cluster = reply["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == CLUSTER)
        .ok_or_else(|| anyhow::anyhow!("no cluster {CLUSTER} in {reply}"))?;
    Ok(cluster["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let address = e["address"].as_str().unwrap_or_default().to_owned();
            (address, e["weight"].as_u64().unwrap_or_default())
        })
        .collect())
}
