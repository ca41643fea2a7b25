//! One ADS stream per client: a `lookaside_client::Client` subscribes each
//! cluster on the stream it already has as channels are created, as the
//! real `lookaside`'s admin API shows.

use std::time::Duration;

use anyhow::Result;
use lookaside_tests::backend::Backend;
use lookaside_tests::config::Config;
use lookaside_tests::control_plane::{ControlPlane, ENDPOINT_TYPE};
use lookaside_tests::echo::v1::WhoRequest;
use lookaside_tests::echo::v1::echo_client::EchoClient;
use lookaside_tests::poll::{Check, until};

const NODE: &str = "one-stream";

/// The backend that answered one call through `channel`.
async fn who(channel: &lookaside_client::LbChannel) -> Result<String> {
    Ok(EchoClient::new(channel.clone())
        .who(WhoRequest {})
        .await?
        .into_inner()
        .backend)
}

/// The clusters each of `NODE`'s streams is subscribed to, sorted.
async fn streams(control_plane: &ControlPlane) -> Result<Vec<Vec<String>>> {
    Ok(control_plane
        .clients()
        .await?
        .into_iter()
        .filter(|client| client.node_id == NODE)
        .map(|client| {
            let mut clusters: Vec<String> = client
                .types
                .into_iter()
                .filter(|state| state.type_url == ENDPOINT_TYPE)
                .flat_map(|state| state.subscribed)
                .collect();
            clusters.sort();
            clusters
        })
        .collect())
}

/// Waits until `NODE` has exactly one stream, subscribed to `clusters`.
async fn one_stream_with(control_plane: &ControlPlane, clusters: &[&str]) -> Result<()> {
    let what = format!("one stream of {NODE} subscribed to {clusters:?}");
    until(&what, Duration::from_secs(10), async || {
        let seen = streams(control_plane).await?;
        Ok(if seen == [clusters.to_vec()] {
            Check::Done(())
        } else {
            Check::NotYet(format!("streams (subscribed clusters): {seen:?}"))
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn clusters_are_added_to_the_one_stream_as_channels_are_created() -> Result<()> {
    let backends = Backend::start_all(&["g", "o"]).await?;
    let config = Config::new()
        .weighted("greeter", [(backends[0].address(), 1)])
        .weighted("other", [(backends[1].address(), 1)]);
    let control_plane = ControlPlane::start(&config).await?;
    let lb = lookaside_client::Client::builder(format!("http://{}", control_plane.xds_addr()))
        .node_id(NODE)
        .load_reports(false)
        .build()?;

    let greeter = lb.channel("greeter");
    assert_eq!(who(&greeter).await?, "g");
    one_stream_with(&control_plane, &["greeter"]).await?;

    let other = lb.channel("other");
    assert_eq!(who(&other).await?, "o");
    one_stream_with(&control_plane, &["greeter", "other"]).await?;

    Ok(())
}
