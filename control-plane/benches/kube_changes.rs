//! Kubernetes source benchmark: N Services x M endpoints through the fake
//! API server into a whole in-process control plane with one ADS client;
//! one EndpointSlice changes at a time; how long until the client has the
//! new ClusterLoadAssignment, and how much memory does it all take?
//!
//! ```text
//! cargo bench -p lookaside-control-plane --bench kube_changes
//! cargo bench -p lookaside-control-plane --bench kube_changes -- --protocol sotw --subscribe 10
//! ```
//!
//! The fake API server (`tests/fake_kube`) runs in this process and keeps
//! objects as serialized JSON; its share of the RSS is measured before the
//! control plane starts and reported apart. Services use the `static`
//! policy, so no ORCA stream is opened to the (unreachable) endpoints.
//! Latency is measured from the moment the changed slice is handed to the
//! fake server to the moment the client has decoded the assignment that
//! contains the change; changes are made one at a time.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

#[path = "../tests/fake_kube/mod.rs"]
mod fake_kube;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fake_kube::FakeKube;
use fake_kube::fixtures::{NAMESPACE, State, service, slice_with_ports};
use futures::StreamExt;
use lookaside_control_plane::registry::Cluster;
use lookaside_control_plane::server::{Discovery, ServeConfig, start_with};
use lookaside_control_plane::sources::SourceStatus;
use lookaside_control_plane::sources::kube::{KubeOptions, KubeSource};
use lookaside_control_plane::telemetry::Metrics;
use lookaside_proto::envoy::config::core::v3::address::Address;
use lookaside_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use lookaside_proto::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use lookaside_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use lookaside_proto::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const SERVICE_PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;

#[derive(Debug, Parser)]
struct Args {
    /// Opted-in Services.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoints per Service (one slice each; the controller's default
    /// slice size is 100).
    #[arg(long, default_value_t = 100)]
    endpoints: usize,
    /// Slice changes to measure.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Services whose assignment the client subscribes to (changes go to
    /// these); 0 for all.
    #[arg(long, default_value_t = 0)]
    subscribe: usize,
    /// `delta` (only changed resources are sent) or `sotw` (every
    /// subscribed resource in every response).
    #[arg(long, default_value = "delta", value_parser = ["delta", "sotw"])]
    protocol: String,
    /// `all`: the whole control plane and an ADS client; `source`: the
    /// Kubernetes source alone, measured to its published contribution.
    #[arg(long, default_value = "all", value_parser = ["all", "source"])]
    stage: String,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

fn name(service: usize) -> String {
    format!("svc-{service}")
}

fn cluster(service: usize) -> String {
    format!("svc-{service}.{NAMESPACE}:{SERVICE_PORT}")
}

fn pod_ip(service: usize, endpoint: usize) -> String {
    format!(
        "10.{}.{}.{}",
        1 + service / 256,
        service % 256,
        1 + endpoint % 250
    )
}

/// The address that marks change `change`: unique per change.
fn marker(change: usize) -> String {
    format!("10.200.{}.{}", change / 250, 1 + change % 250)
}

/// Service `service`'s slice; with `change`, its first endpoint is moved to
/// that change's marker address.
fn slice_of(service: usize, endpoints: usize, change: Option<usize>) -> Value {
    let mut addresses: Vec<String> = (0..endpoints).map(|e| pod_ip(service, e)).collect();
    if let (Some(change), Some(first)) = (change, addresses.first_mut()) {
        *first = marker(change);
    }
    let pods: Vec<(&str, State, &str)> = addresses
        .iter()
        .map(|a| (a.as_str(), State::Ready, "zone-a"))
        .collect();
    let mut slice = slice_with_ports(
        &format!("{}-abcde", name(service)),
        &name(service),
        true,
        "IPv4",
        &[("grpc", TARGET_PORT)],
        &pods,
    );
    slice["metadata"]["labels"]["lookaside.io/policy"] = json!("static");
    slice
}

fn service_of(index: usize) -> Value {
    let mut object = service(&name(index), true, &[("grpc", SERVICE_PORT, TARGET_PORT)]);
    object["metadata"]["labels"]["lookaside.io/policy"] = json!("static");
    object
}

/// `key` of /proc/self/status, in KiB.
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(key))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The IPs of `assignment`'s endpoints.
fn ips(assignment: &ClusterLoadAssignment) -> Vec<String> {
    assignment
        .endpoints
        .iter()
        .flat_map(|locality| &locality.lb_endpoints)
        .filter_map(|endpoint| match endpoint.host_identifier.as_ref()? {
            HostIdentifier::Endpoint(endpoint) => endpoint.address.as_ref()?.address.as_ref(),
            _ => None,
        })
        .filter_map(|address| match address {
            Address::SocketAddress(socket) => Some(socket.address.clone()),
            _ => None,
        })
        .collect()
}

/// Where changes are observed: the ADS client, or the source's output.
enum Observer {
    Ads(Seen),
    Source(mpsc::UnboundedReceiver<(Instant, Vec<Cluster>)>),
}

impl Observer {
    /// The next thing observed, within `within`: when, and the
    /// (cluster name, endpoint IPs) it carries of the clusters `wanted`
    /// names (all when `None`).
    async fn next(
        &mut self,
        within: Duration,
        wanted: Option<&str>,
    ) -> (Instant, Vec<(String, Vec<String>)>) {
        let wanted = |name: &str| wanted.is_none_or(|w| w == name);
        let next = async {
            match self {
                Observer::Ads(seen) => seen.recv().await.map(|(at, mut assignments)| {
                    assignments.retain(|(name, _)| wanted(name));
                    (at, assignments)
                }),
                Observer::Source(seen) => seen.recv().await.map(|(at, clusters)| {
                    let named = clusters
                        .iter()
                        .filter(|c| wanted(&c.name))
                        .map(|c| {
                            let ips = c.endpoints.iter().map(|e| e.address.ip().to_string());
                            (c.name.clone(), ips.collect())
                        })
                        .collect();
                    (at, named)
                }),
            }
        };
        tokio::time::timeout(within, next)
            .await
            .expect("observed in time")
            .expect("still running")
    }
}

/// What the client keeps of each response: when it arrived, and the
/// (cluster name, endpoint IPs) of every assignment in it. Assignments are
/// decoded one at a time and dropped, as a client that applies them would.
type Seen = mpsc::UnboundedReceiver<(Instant, Vec<(String, Vec<String>)>)>;

/// Decodes one assignment into its name and endpoint IPs.
fn summary(bytes: &[u8]) -> (String, Vec<String>) {
    let assignment = ClusterLoadAssignment::decode(bytes).expect("a ClusterLoadAssignment");
    let ips = ips(&assignment);
    (assignment.cluster_name, ips)
}

/// Opens one ADS stream subscribed to `names` and forwards every EDS
/// response, ACKing each.
async fn subscribe(channel: Channel, names: Vec<String>, delta: bool) -> Seen {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(512 << 20)
        .max_encoding_message_size(64 << 20);
    if delta {
        let (requests, rx) = mpsc::channel(16);
        requests
            .send(DeltaDiscoveryRequest {
                type_url: EDS.into(),
                resource_names_subscribe: names,
                ..Default::default()
            })
            .await
            .expect("send");
        let mut responses = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("delta stream")
            .into_inner();
        tokio::spawn(async move {
            while let Some(Ok(response)) = responses.next().await {
                let at = Instant::now();
                let assignments = response
                    .resources
                    .iter()
                    .filter_map(|r| r.resource.as_ref())
                    .map(|any| summary(&any.value))
                    .collect();
                let ack = DeltaDiscoveryRequest {
                    type_url: EDS.into(),
                    response_nonce: response.nonce.clone(),
                    ..Default::default()
                };
                if requests.send(ack).await.is_err() || seen_tx.send((at, assignments)).is_err() {
                    break;
                }
            }
        });
    } else {
        let (requests, rx) = mpsc::channel(16);
        let subscription = DiscoveryRequest {
            type_url: EDS.into(),
            resource_names: names,
            ..Default::default()
        };
        requests.send(subscription.clone()).await.expect("send");
        let mut responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("sotw stream")
            .into_inner();
        tokio::spawn(async move {
            while let Some(Ok(response)) = responses.next().await {
                let at = Instant::now();
                let assignments = response
                    .resources
                    .iter()
                    .map(|any| summary(&any.value))
                    .collect();
                let ack = DiscoveryRequest {
                    version_info: response.version_info.clone(),
                    response_nonce: response.nonce.clone(),
                    ..subscription.clone()
                };
                if requests.send(ack).await.is_err() || seen_tx.send((at, assignments)).is_err() {
                    break;
                }
            }
        });
    }
    seen
}

/// The Kubernetes source alone: every contribution it publishes, with when.
fn run_source(kube: &FakeKube) -> mpsc::UnboundedReceiver<(Instant, Vec<Cluster>)> {
    let source = KubeSource::new(
        kube.client(),
        KubeOptions::default(),
        SourceStatus::default(),
        Arc::new(Metrics::new()),
    );
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(source.run(tx));
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((_, clusters)) = rx.recv().await {
            if seen_tx.send((Instant::now(), clusters)).is_err() {
                break;
            }
        }
    });
    seen
}

/// Every time `stage` publishes, from now on.
fn published_at<T: Send + Sync + 'static>(
    mut stage: watch::Receiver<T>,
) -> mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while stage.changed().await.is_ok() {
            if tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    rx
}

/// The last publication in `[sent, until]` (`sent` if none); later ones
/// are dropped too: they belong to no measured change.
fn last_before(
    published: &mut mpsc::UnboundedReceiver<Instant>,
    sent: Instant,
    until: Instant,
) -> Instant {
    let mut last = sent;
    while let Ok(at) = published.try_recv() {
        if at >= sent && at <= until {
            last = at;
        }
    }
    last
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let subscribed = if args.subscribe == 0 {
        args.services
    } else {
        args.subscribe.min(args.services)
    };
    println!(
        "kube_changes: {} services x {} endpoints, {} changes, {} client subscribed to {} assignments",
        args.services, args.endpoints, args.changes, args.protocol, subscribed
    );
    let rss_start = status_kib("VmRSS:");

    let kube = FakeKube::start().await;
    for index in 0..args.services {
        kube.apply(service_of(index));
        kube.apply(slice_of(index, args.endpoints, None));
    }
    let rss_fake = status_kib("VmRSS:");

    let started = Instant::now();
    let mut running = None;
    let mut stages = None;
    let mut observer = if args.stage == "source" {
        Observer::Source(run_source(&kube))
    } else {
        let control_plane = start_with(
            ServeConfig::local(std::path::PathBuf::new()),
            Discovery {
                file: false,
                kube: Some(KubeOptions::default()),
                kube_client: Some(kube.client()),
            },
            futures::future::pending(),
        )
        .await
        .expect("control plane starts");
        let channel = Channel::from_shared(format!("http://{}", control_plane.xds_address))
            .expect("uri")
            .connect()
            .await
            .expect("connects");
        // When each later stage publishes, to split the latency.
        stages = Some((
            published_at(control_plane.weighted.clone()),
            published_at(control_plane.snapshots.clone()),
        ));
        running = Some(control_plane);
        let names: Vec<String> = (0..subscribed).map(cluster).collect();
        Observer::Ads(subscribe(channel, names, args.protocol == "delta").await)
    };

    // Every subscribed assignment, complete.
    let mut complete = std::collections::BTreeSet::new();
    while complete.len() < subscribed {
        for (name, endpoints) in observer.next(Duration::from_secs(120), None).await.1 {
            if endpoints.len() == args.endpoints {
                complete.insert(name);
            }
        }
    }
    let synced = started.elapsed();
    let rss_synced = status_kib("VmRSS:");
    println!(
        "initial lists to every assignment observed: {:.0} ms",
        ms(synced)
    );

    let mut latencies = Vec::with_capacity(args.changes);
    let (mut weighed, mut encoded) = (Vec::new(), Vec::new());
    for change in 0..args.changes {
        let service = (change * 7919) % subscribed; // spread over the subscribed ones
        let wanted = cluster(service);
        let address = marker(change);
        let sent = Instant::now();
        kube.apply(slice_of(service, args.endpoints, Some(change)));
        let arrived = loop {
            let (at, assignments) = observer.next(Duration::from_secs(30), Some(&wanted)).await;
            if assignments
                .iter()
                .any(|(name, endpoints)| *name == wanted && endpoints.contains(&address))
            {
                break at;
            }
        };
        latencies.push(arrived.duration_since(sent));
        if let Some((weighted, snapshots)) = stages.as_mut() {
            // The snapshot that carried the change is the last one before
            // it arrived; the weights it was built from, the last before it.
            let snapshot = last_before(snapshots, sent, arrived);
            encoded.push(snapshot.duration_since(sent));
            weighed.push(last_before(weighted, sent, snapshot).duration_since(sent));
        }
    }
    let rss_end = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");

    latencies.sort();
    let mean = latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32;
    println!(
        "slice change -> {} over {} changes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, mean {:.1} ms",
        if args.stage == "source" {
            "contribution published by the source"
        } else {
            "ClusterLoadAssignment at the client"
        },
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
        ms(mean),
    );
    for (stage, mut times) in [
        ("weights published (source, registry, weigh)", weighed),
        ("snapshot published (+ encoding)", encoded),
    ] {
        if times.is_empty() {
            continue;
        }
        times.sort();
        println!(
            "  slice change -> {stage}: p50 {:.1} ms, p99 {:.1} ms",
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0)),
        );
    }
    println!(
        "RSS (VmRSS, whole process): {:.0} MiB after the sync, {:.0} MiB after the changes, peak (VmHWM) {:.0} MiB",
        mib(rss_synced),
        mib(rss_end),
        mib(hwm),
    );
    println!(
        "  of which before the control plane started: {:.0} MiB (runtime {:.0} MiB + fake API server with every object {:.0} MiB)",
        mib(rss_fake),
        mib(rss_start),
        mib(rss_fake.saturating_sub(rss_start)),
    );
    println!(
        "  control plane (or source) and client: {:.0} MiB after the changes",
        mib(rss_end.saturating_sub(rss_fake))
    );
    drop(running);
}
