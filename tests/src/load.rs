//! Sending `Who` calls to the Echo service (directly, or through a proxy such
//! as Envoy) and counting which backend answered each.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::{StreamExt, TryStreamExt};
use tonic::transport::Endpoint;

use crate::echo::v1::WhoRequest;
use crate::echo::v1::echo_client::EchoClient;
use crate::split::Split;

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes `calls` unary `Who` calls to `target` over one HTTP/2 connection,
/// at most `concurrency` at a time, and counts who answered. Fails on the
/// first failed call.
pub async fn call_who(target: SocketAddr, calls: usize, concurrency: usize) -> Result<Split> {
    let uri = format!("http://{target}");
    let channel = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("bad endpoint {uri}"))?
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connecting to {uri}"))?;
    let client = EchoClient::new(channel);
    let names: Vec<String> = futures::stream::iter(0..calls)
        .map(|call| {
            let mut client = client.clone();
            async move {
                client
                    .who(WhoRequest {})
                    .await
                    .map(|reply| reply.into_inner().backend)
                    .map_err(|status| {
                        anyhow!("call {call} of {calls} to {target} failed: {status}")
                    })
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut split = Split::new();
    for name in &names {
        split.record(name);
    }
    Ok(split)
}
