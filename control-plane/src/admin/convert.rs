//! Domain values to admin messages.

use std::time::{Instant, SystemTime};

use lookaside_proto::admin::v1 as pb;

use crate::load::LoadTable;
use crate::sources::SourceState;
use crate::weigh::WeightedCluster;
use crate::xds::{ClientView, Nack};

pub(super) fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

pub(super) fn cluster(
    cluster: &WeightedCluster,
    assignment_version: String,
    loads: &LoadTable,
) -> pb::ClusterAssignment {
    let now = Instant::now();
    let total: u64 = cluster.endpoints.iter().map(|e| u64::from(e.weight)).sum();
    pb::ClusterAssignment {
        name: cluster.name.clone(),
        assignment_version,
        policy: cluster.policy.to_string(),
        source: cluster.source.clone(),
        endpoints: cluster
            .endpoints
            .iter()
            .map(|endpoint| pb::EndpointAssignment {
                address: endpoint.address.to_string(),
                weight: endpoint.weight,
                configured_weight: endpoint.configured_weight,
                health: endpoint.health.as_str().to_string(),
                locality: Some(pb::Locality {
                    region: endpoint.locality.region.clone(),
                    zone: endpoint.locality.zone.clone(),
                    sub_zone: endpoint.address.to_string(),
                }),
                source: cluster.source.clone(),
                share_percent: if total == 0 {
                    0.0
                } else {
                    f64::from(endpoint.weight) * 100.0 / total as f64
                },
                weight_reason: endpoint.reason.as_str().to_string(),
                load: endpoint
                    .load_address
                    .map(|address| load(address, endpoint.address, loads, now)),
            })
            .collect(),
    }
}

fn load(
    address: std::net::SocketAddr,
    endpoint: std::net::SocketAddr,
    loads: &LoadTable,
    now: Instant,
) -> pb::EndpointLoad {
    let mut out = pb::EndpointLoad {
        orca_address: address.to_string(),
        ..Default::default()
    };
    if let Some(clients) = loads.clients().get(&endpoint, now) {
        out.client_rps = clients.rps;
        out.client_eps = clients.eps;
        out.client_in_progress = clients.in_progress;
        out.client_reporters = u32::try_from(clients.reporters).unwrap_or(u32::MAX);
    }
    let Some(load) = loads.get(&address) else {
        return out;
    };
    out.connected = load.connected;
    out.last_error = load.last_error.unwrap_or_default();
    out.over_cap = load.over_cap;
    out.reports_accepted = load.accepted;
    out.reports_rejected = load.rejected;
    out.last_rejection = load
        .last_rejection
        .map(|r| r.as_str().to_string())
        .unwrap_or_default();
    if let Some(report) = load.report {
        out.has_report = true;
        out.age_seconds = now.saturating_duration_since(report.at).as_secs_f64();
        out.utilization = report.utilization;
        out.rps = report.rps;
        out.eps = report.eps;
    }
    out
}

fn nack(nack: &Nack) -> pb::Nack {
    pb::Nack {
        rejected_version: nack.rejected_version.clone(),
        nonce: nack.nonce.clone(),
        message: nack.message.clone(),
        code: nack.code,
        at: Some(timestamp(nack.at)),
    }
}

pub(super) fn client(view: &ClientView) -> pb::Client {
    pb::Client {
        stream_id: view.stream_id,
        node_id: view.node_id.clone(),
        node_cluster: view.node_cluster.clone(),
        user_agent: view.user_agent.clone(),
        protocol: view.protocol.to_string(),
        peer: view.peer.clone(),
        connected_at: Some(timestamp(view.connected_at)),
        types: view
            .types
            .iter()
            .map(|t| pb::TypeState {
                type_url: t.kind.type_url().to_string(),
                wildcard: t.wildcard,
                subscribed: t
                    .subscribed
                    .iter()
                    .take(crate::xds::MAX_NAMES_SHOWN)
                    .cloned()
                    .collect(),
                acked_version: t.acks.acked_version.clone(),
                sent_version: t.acks.sent_version.clone(),
                pending_nonce: t.acks.pending_nonce().unwrap_or_default().to_string(),
                acks: t.acks.acks,
                nacks: t.acks.nacks,
                last_nack: t.acks.last_nack.as_ref().map(nack),
            })
            .collect(),
    }
}

pub(super) fn source(name: &str, state: &SourceState) -> pb::Source {
    pb::Source {
        name: name.to_string(),
        last_good_at: state.last_good_at.map(timestamp),
        clusters: state.clusters,
        error: state.error.as_ref().map(|e| pb::SourceError {
            message: e.message.clone(),
            file: e.file.clone(),
            line: e.line,
            column: e.column,
            at: Some(timestamp(e.at)),
        }),
    }
}
