//! The four resources that carry one balanced cluster `NAME`.
//!
//! | resource | name | for |
//! |---|---|---|
//! | Listener with an `api_listener` HttpConnectionManager | NAME | proxyless gRPC (`xds:///NAME`) |
//! | RouteConfiguration, one virtual host `*`, one route to the cluster | NAME | proxyless gRPC |
//! | Cluster, type EDS over ADS, HTTP/2, locality-weighted | NAME | Envoy and gRPC |
//! | ClusterLoadAssignment, one locality per endpoint | NAME | Envoy and gRPC |
//!
//! Weights: every endpoint sits in its own locality whose
//! `load_balancing_weight` is the endpoint's weight, and the endpoint carries
//! the same weight. gRPC clients ignore endpoint weights under round_robin but
//! honour locality weights (gRFC A52); Envoy honours locality weights because
//! the Cluster enables `locality_weighted_lb_config`. One shape serves every
//! client family, so every stream shares one encoding.

mod assignment;
mod cluster;
mod listener;
mod route;

pub use assignment::assignment;
pub use cluster::cluster;
pub use listener::listener;
pub use route::route;

use lookaside_proto::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, config_source::ConfigSourceSpecifier,
};

/// "Fetch this over the same ADS stream", in the v3 API.
fn ads_config_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// Packs `message` into an `Any` with its type URL.
fn to_any<M: prost::Message + prost::Name>(message: &M) -> lookaside_proto::google::protobuf::Any {
    lookaside_proto::google::protobuf::Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}
