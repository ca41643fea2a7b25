//! Cluster: EDS over ADS, HTTP/2 upstreams, locality-weighted round robin,
//! load reported back over LRS to this same server.

use std::collections::HashMap;

use lookaside_proto::envoy::config::cluster::v3::{
    Cluster, cluster::ClusterDiscoveryType, cluster::CommonLbConfig, cluster::DiscoveryType,
    cluster::EdsClusterConfig, cluster::LbPolicy, cluster::common_lb_config,
};
use lookaside_proto::envoy::config::core::v3::{
    ApiVersion, ConfigSource, Http2ProtocolOptions, SelfConfigSource,
    config_source::ConfigSourceSpecifier,
};
use lookaside_proto::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options::ExplicitHttpConfig,
    http_protocol_options::UpstreamProtocolOptions,
    http_protocol_options::explicit_http_config::ProtocolConfig,
};
use lookaside_proto::google::protobuf::Duration;

use super::{ads_config_source, to_any};

/// Extension name under which Envoy reads upstream HTTP options.
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The Cluster `name`: endpoints from EDS resource `name` over ADS, spoken to
/// over HTTP/2 (gRPC), balanced round robin with locality weights.
pub fn cluster(name: &str) -> Cluster {
    let http2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    let mut protocol_options = HashMap::new();
    protocol_options.insert(HTTP_PROTOCOL_OPTIONS.to_string(), to_any(&http2));
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads_config_source()),
            service_name: name.to_string(),
        }),
        connect_timeout: Some(Duration {
            seconds: 2,
            nanos: 0,
        }),
        lb_policy: LbPolicy::RoundRobin as i32,
        common_lb_config: Some(CommonLbConfig {
            locality_config_specifier: Some(
                common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                    common_lb_config::LocalityWeightedLbConfig {},
                ),
            ),
            ..Default::default()
        }),
        typed_extension_protocol_options: protocol_options,
        // Proxyless gRPC clients report the load they send each locality
        // (one per endpoint) to the server they got the cluster from (gRFC
        // A27: `self` is the only value they accept). Envoy ignores the
        // field and reports per its bootstrap's `load_stats_config`.
        lrs_server: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::Self_(SelfConfigSource {
                transport_api_version: ApiVersion::V3 as i32,
            })),
            resource_api_version: ApiVersion::V3 as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}
