//! Envoy 1.40 against the real `lookaside` binary over state-of-the-world
//! ADS (`StreamAggregatedResources`): weights in `/clusters`, a config edit
//! applied within 2 s, and 3000 gRPC calls split 1/2/7 through Envoy.

mod envoy_weights;

use lookaside_tests::envoy::XdsProtocol;

#[tokio::test(flavor = "multi_thread")]
async fn envoy_over_sotw_ads_splits_by_weight_and_follows_edits() -> anyhow::Result<()> {
    envoy_weights::run(XdsProtocol::Sotw).await
}
