//! Listener: an `api_listener` for proxyless gRPC clients.

use lookaside_proto::envoy::config::listener::v3::{ApiListener, Listener};
use lookaside_proto::envoy::extensions::filters::http::router::v3::Router;
use lookaside_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier,
    http_filter::ConfigType,
};

use super::{ads_config_source, to_any};

/// The Listener for cluster `name`: an HttpConnectionManager whose routes come
/// from RDS resource `name`, with the router filter last.
pub fn listener(name: &str) -> Listener {
    let manager = HttpConnectionManager {
        stat_prefix: name.to_string(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: name.to_string(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".to_string(),
            config_type: Some(ConfigType::TypedConfig(to_any(&Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: name.to_string(),
        api_listener: Some(ApiListener {
            api_listener: Some(to_any(&manager)),
        }),
        ..Default::default()
    }
}
