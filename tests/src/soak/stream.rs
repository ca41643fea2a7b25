//! One simulated xDS client: an ADS stream (state of the world or Delta)
//! subscribed to one cluster's ClusterLoadAssignment, and for some streams
//! to every Cluster (CDS wildcard), ACKing every response as a real client
//! does and NACKing one it cannot use. What each stream sees goes straight
//! into the shared [`Run`]: push latency per generation, counters, and the
//! first distinct errors.
//!
//! A stream task runs until the server ends its stream (a failure, counted)
//! or the driver aborts it (churn: dropping the task resets the HTTP/2
//! stream, as a client that goes away does). It never queues more than a
//! few requests (a bounded channel of [`REQUEST_QUEUE`]) and keeps no
//! history: its state is two atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use lookaside_proto::envoy::config::core::v3::Node;
use lookaside_proto::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use lookaside_proto::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_prost::{ProstDecoder, ProstEncoder};

use super::config_file::{Plan, cluster_name, generation_of};
use super::histogram::Histogram;
use super::wire::{Assignment, DeltaResponse, SotwResponse};
use crate::control_plane::{CLUSTER_TYPE, ENDPOINT_TYPE};

/// Requests a stream may have waiting to be sent.
pub const REQUEST_QUEUE: usize = 4;

/// Distinct error messages kept; further distinct ones count as "other".
const MAX_ERROR_KINDS: usize = 20;

/// `google.rpc.Code.INVALID_ARGUMENT`, the code of the driver's NACKs.
const INVALID_ARGUMENT: i32 = 3;

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// No generation seen yet.
const NONE: u32 = u32::MAX;

/// Initial encode and decode buffer of each stream: tonic's default is
/// 8 KiB each, 160 MiB for 10,000 streams, while requests and responses
/// here are a few hundred bytes (a larger one grows the buffer).
const BUFFER_SIZE: usize = 1024;

/// tonic's default yield threshold.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost encoding and decoding with [`BUFFER_SIZE`] buffers.
struct SmallCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> SmallCodec<T, U> {
    fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T, U> Codec for SmallCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}

/// Windows not started yet.
const NO_EPOCH: u64 = u64::MAX;

/// Which ADS variant a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// State of the world (`StreamAggregatedResources`).
    Sotw,
    /// Incremental (`DeltaAggregatedResources`).
    Delta,
}

/// What one stream subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Unique over the run; the node id is `soak-SERIAL`.
    pub serial: u64,
    /// The cluster whose assignment it watches.
    pub cluster: u32,
    /// SotW or Delta.
    pub protocol: Protocol,
    /// Whether it also watches every Cluster (CDS wildcard).
    pub cds: bool,
}

/// What the driver can see of a running stream.
#[derive(Debug)]
pub struct StreamState {
    spec: StreamSpec,
    opened: Instant,
    /// The latest generation received, or [`NONE`].
    generation: AtomicU32,
    /// When the first assignment arrived, in nanoseconds since the run
    /// started, plus one (0: not yet).
    subscribed: AtomicU64,
}

impl StreamState {
    /// What it subscribes to.
    pub fn spec(&self) -> StreamSpec {
        self.spec
    }

    /// The latest generation of its cluster it received.
    pub fn generation(&self) -> Option<u32> {
        match self.generation.load(Ordering::Relaxed) {
            NONE => None,
            generation => Some(generation),
        }
    }

    /// When its first assignment arrived, since the run started.
    pub fn subscribed_at(&self) -> Option<Duration> {
        match self.subscribed.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos - 1)),
        }
    }

    /// When it was opened.
    pub fn opened(&self) -> Instant {
        self.opened
    }
}

/// Counters over the whole run (cumulative; read them with
/// [`Counters::snapshot`]).
#[derive(Debug, Default)]
pub struct Counters {
    /// Streams opened.
    pub opened: AtomicU64,
    /// Streams the driver closed (churn).
    pub closed: AtomicU64,
    /// Streams that ended by themselves or could not be opened.
    pub failed: AtomicU64,
    /// New generations received by a stream subscribed before their write
    /// (each is one push latency sample).
    pub pushes: AtomicU64,
    /// New generations received by a stream that subscribed after their
    /// write (not a push; no latency sample).
    pub late: AtomicU64,
    /// Assignments that repeated the generation the stream already had.
    pub repeated: AtomicU64,
    /// Assignments older than one the stream already had.
    pub regressions: AtomicU64,
    /// Generations that changed a stream's cluster but that the stream
    /// never received (it got a later one instead).
    pub skipped: AtomicU64,
    /// Responses the driver NACKed (it could not use them).
    pub nacks: AtomicU64,
    /// CDS responses received.
    pub cds_responses: AtomicU64,
    /// CDS responses after a stream's first one (the weights-only edits
    /// should change no Cluster, so this stays 0 unless the server resends).
    pub cds_repeats: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// See [`Counters::opened`].
    pub opened: u64,
    /// See [`Counters::closed`].
    pub closed: u64,
    /// See [`Counters::failed`].
    pub failed: u64,
    /// See [`Counters::pushes`].
    pub pushes: u64,
    /// See [`Counters::late`].
    pub late: u64,
    /// See [`Counters::repeated`].
    pub repeated: u64,
    /// See [`Counters::regressions`].
    pub regressions: u64,
    /// See [`Counters::skipped`].
    pub skipped: u64,
    /// See [`Counters::nacks`].
    pub nacks: u64,
    /// See [`Counters::cds_responses`].
    pub cds_responses: u64,
    /// See [`Counters::cds_repeats`].
    pub cds_repeats: u64,
}

impl Counters {
    /// The current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CounterSnapshot {
            opened: get(&self.opened),
            closed: get(&self.closed),
            failed: get(&self.failed),
            pushes: get(&self.pushes),
            late: get(&self.late),
            repeated: get(&self.repeated),
            regressions: get(&self.regressions),
            skipped: get(&self.skipped),
            nacks: get(&self.nacks),
            cds_responses: get(&self.cds_responses),
            cds_repeats: get(&self.cds_repeats),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What every stream of one soak run shares: when each generation was
/// written, latency histograms per time window, counters and errors. All
/// of it is allocated up front.
#[derive(Debug)]
pub struct Run {
    start: Instant,
    plan: Plan,
    /// Per generation: nanoseconds since `start` at which its file write
    /// began, plus one (0: not written yet).
    written: Box<[AtomicU64]>,
    window: Duration,
    /// Nanoseconds since `start` at which window 1 begins ([`NO_EPOCH`]
    /// until [`Run::begin_windows`]); everything before goes to window 0.
    epoch: AtomicU64,
    /// Push latencies, by the window in which they were received.
    push: Box<[Histogram]>,
    /// Time from opening a stream to its first assignment, by window.
    subscribe: Box<[Histogram]>,
    counters: Counters,
    /// Distinct error messages and how often each happened.
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Run {
    /// A run starting now, for `generations` generations after the first
    /// file, with histograms per `window` covering `span` after
    /// [`Run::begin_windows`] (later samples go to the last window).
    pub fn new(plan: Plan, generations: u32, window: Duration, span: Duration) -> Self {
        let windows = (span.as_nanos() / window.as_nanos().max(1)) as usize + 3;
        Self {
            start: Instant::now(),
            plan,
            written: (0..=generations).map(|_| AtomicU64::new(0)).collect(),
            window,
            epoch: AtomicU64::new(NO_EPOCH),
            push: (0..windows).map(|_| Histogram::new()).collect(),
            subscribe: (0..windows).map(|_| Histogram::new()).collect(),
            counters: Counters::default(),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The config plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The histogram window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How many windows there are.
    pub fn windows(&self) -> usize {
        self.push.len()
    }

    /// Push latencies received during window `index`.
    pub fn push_window(&self, index: usize) -> Option<&Histogram> {
        self.push.get(index)
    }

    /// Subscribe latencies (open to first assignment) during window `index`.
    pub fn subscribe_window(&self, index: usize) -> Option<&Histogram> {
        self.subscribe.get(index)
    }

    /// Starts window 1 now: window `k` is then the `k`th `window` from
    /// now; window 0 holds everything before (the ramp).
    pub fn begin_windows(&self) {
        self.epoch
            .store(self.nanos(Instant::now()), Ordering::Relaxed);
    }

    /// The window `at` falls in.
    pub fn window_of(&self, at: Instant) -> usize {
        let nanos = self.nanos(at);
        let epoch = self.epoch.load(Ordering::Relaxed);
        if nanos < epoch {
            return 0;
        }
        let index =
            1 + (nanos - epoch) / u64::try_from(self.window.as_nanos().max(1)).unwrap_or(u64::MAX);
        usize::try_from(index).map_or(self.push.len() - 1, |i| i.min(self.push.len() - 1))
    }

    /// Records that the file of `generation` is being written now (call
    /// just before writing it, so no stream can receive it earlier).
    pub fn mark_written(&self, generation: u32) {
        if let Some(slot) = self.written.get(generation as usize) {
            slot.store(self.nanos(Instant::now()) + 1, Ordering::Relaxed);
        }
    }

    /// When the file of `generation` was written, since the start.
    pub fn written_at(&self, generation: u32) -> Option<Duration> {
        match self
            .written
            .get(generation as usize)?
            .load(Ordering::Relaxed)
        {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos - 1)),
        }
    }

    /// Counts an error under its message.
    pub fn error(&self, message: String) {
        let mut errors = self.lock_errors();
        if errors.len() < MAX_ERROR_KINDS || errors.contains_key(&message) {
            *errors.entry(message).or_default() += 1;
        } else {
            *errors.entry("(other errors)".to_owned()).or_default() += 1;
        }
    }

    /// Every distinct error message with its count.
    pub fn errors(&self) -> Vec<(String, u64)> {
        self.lock_errors()
            .iter()
            .map(|(message, count)| (message.clone(), *count))
            .collect()
    }

    fn lock_errors(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// `state`'s stream received its cluster at `generation` at `at`.
    fn received(&self, state: &StreamState, generation: u32, at: Instant) {
        let previous = state.generation.swap(generation, Ordering::Relaxed);
        if previous == NONE {
            state
                .subscribed
                .store(self.nanos(at) + 1, Ordering::Relaxed);
            self.subscribe[self.window_of(at)].record(at.saturating_duration_since(state.opened));
            return;
        }
        if generation == previous {
            bump(&self.counters.repeated);
            return;
        }
        if generation < previous {
            bump(&self.counters.regressions);
            return;
        }
        let cluster = state.spec.cluster;
        let skipped = (previous + 1..generation)
            .filter(|&g| self.plan.changes(cluster, g))
            .count();
        self.counters
            .skipped
            .fetch_add(skipped as u64, Ordering::Relaxed);
        let (Some(written), Some(subscribed)) =
            (self.written_at(generation), state.subscribed_at())
        else {
            self.error(format!(
                "received generation {generation} before it was written"
            ));
            return;
        };
        if subscribed <= written {
            bump(&self.counters.pushes);
            let latency = at.saturating_duration_since(self.start + written);
            self.push[self.window_of(at)].record(latency);
        } else {
            bump(&self.counters.late);
        }
    }
}

/// Starts the stream `spec` on `channel`; abort the handle to close it.
pub fn spawn(
    spec: StreamSpec,
    channel: Channel,
    run: Arc<Run>,
) -> (JoinHandle<()>, Arc<StreamState>) {
    let state = Arc::new(StreamState {
        spec,
        opened: Instant::now(),
        generation: AtomicU32::new(NONE),
        subscribed: AtomicU64::new(0),
    });
    bump(&run.counters.opened);
    let task_state = state.clone();
    let handle = tokio::spawn(async move {
        let result = match spec.protocol {
            Protocol::Sotw => sotw(&task_state, channel, &run).await,
            Protocol::Delta => delta(&task_state, channel, &run).await,
        };
        // Only a stream the driver did not abort gets here.
        bump(&run.counters.failed);
        let why = match result {
            Ok(()) => "stream ended by the server without a status".to_owned(),
            Err(error) => format!("{error:#}"),
        };
        run.error(why);
    });
    (handle, state)
}

fn node(spec: &StreamSpec) -> Option<Node> {
    Some(Node {
        id: format!("soak-{}", spec.serial),
        cluster: "soak".into(),
        user_agent_name: "lookaside-soak".into(),
        ..Default::default()
    })
}

fn nack_detail(message: String) -> Option<RpcStatus> {
    Some(RpcStatus {
        code: INVALID_ARGUMENT,
        message,
        details: Vec::new(),
    })
}

/// One SotW stream, until the server ends it.
async fn sotw(state: &StreamState, channel: Channel, run: &Run) -> Result<()> {
    let spec = state.spec;
    let cluster = cluster_name(spec.cluster);
    let (requests, rx) = mpsc::channel(REQUEST_QUEUE);
    let eds = DiscoveryRequest {
        node: node(&spec),
        type_url: ENDPOINT_TYPE.into(),
        resource_names: vec![cluster.clone()],
        ..Default::default()
    };
    let send = |request| {
        let requests = requests.clone();
        async move {
            requests
                .send(request)
                .await
                .map_err(|_| anyhow!("request stream closed"))
        }
    };
    send(eds).await?;
    if spec.cds {
        // An empty list on the first CDS request: the (legacy) wildcard.
        send(DiscoveryRequest {
            type_url: CLUSTER_TYPE.into(),
            ..Default::default()
        })
        .await?;
    }
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| anyhow!("connection not ready: {error}"))?;
    let codec = SmallCodec::<DiscoveryRequest, SotwResponse>::new();
    let mut responses = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            PathAndQuery::from_static(SOTW_PATH),
            codec,
        )
        .await
        .map_err(|status| anyhow!("opening the stream: {status}"))?
        .into_inner();
    let mut cds_seen = false;
    let mut eds_version = String::new();
    let mut cds_version = String::new();
    while let Some(response) = responses
        .message()
        .await
        .map_err(|status| anyhow!("stream failed: {status}"))?
    {
        let at = Instant::now();
        let (names, used, version) = if response.type_url == ENDPOINT_TYPE {
            let used = sotw_assignment(&response, &cluster).map(|g| run.received(state, g, at));
            (vec![cluster.clone()], used, &mut eds_version)
        } else if response.type_url == CLUSTER_TYPE && spec.cds {
            bump(&run.counters.cds_responses);
            if std::mem::replace(&mut cds_seen, true) {
                bump(&run.counters.cds_repeats);
            }
            let expected = run.plan.clusters as usize;
            let used = if response.resources.len() == expected {
                Ok(())
            } else {
                Err(anyhow!(
                    "CDS: {} clusters, want {expected}",
                    response.resources.len()
                ))
            };
            (Vec::new(), used, &mut cds_version)
        } else {
            bail!("response of a type never asked for: {}", response.type_url);
        };
        let error_detail = match used {
            Ok(()) => {
                version.clone_from(&response.version_info);
                None
            }
            Err(error) => {
                bump(&run.counters.nacks);
                run.error(format!("NACKed: {error:#}"));
                nack_detail(format!("{error:#}"))
            }
        };
        send(DiscoveryRequest {
            version_info: version.clone(),
            resource_names: names,
            type_url: response.type_url,
            response_nonce: response.nonce,
            error_detail,
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// The generation of `cluster`'s assignment in a SotW EDS response.
fn sotw_assignment(response: &SotwResponse, cluster: &str) -> Result<u32> {
    let [resource] = response.resources.as_slice() else {
        bail!(
            "EDS: {} resources, want exactly {cluster}",
            response.resources.len()
        );
    };
    generation(&resource.value, cluster)
}

/// The generation an encoded ClusterLoadAssignment carries, checking it is
/// `cluster`'s.
fn generation(encoded: &[u8], cluster: &str) -> Result<u32> {
    let assignment = Assignment::decode(encoded).context("EDS: assignment does not decode")?;
    if assignment.cluster_name != cluster {
        bail!(
            "EDS: got {:?}, subscribed to {cluster:?}",
            assignment.cluster_name
        );
    }
    generation_of(assignment.max_weight())
        .with_context(|| format!("EDS: {cluster}: no marker weight in the assignment"))
}

/// One Delta stream, until the server ends it.
async fn delta(state: &StreamState, channel: Channel, run: &Run) -> Result<()> {
    let spec = state.spec;
    let cluster = cluster_name(spec.cluster);
    let (requests, rx) = mpsc::channel(REQUEST_QUEUE);
    let send = |request| {
        let requests = requests.clone();
        async move {
            requests
                .send(request)
                .await
                .map_err(|_| anyhow!("request stream closed"))
        }
    };
    send(DeltaDiscoveryRequest {
        node: node(&spec),
        type_url: ENDPOINT_TYPE.into(),
        resource_names_subscribe: vec![cluster.clone()],
        ..Default::default()
    })
    .await?;
    if spec.cds {
        send(DeltaDiscoveryRequest {
            type_url: CLUSTER_TYPE.into(),
            resource_names_subscribe: vec!["*".into()],
            ..Default::default()
        })
        .await?;
    }
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| anyhow!("connection not ready: {error}"))?;
    let codec = SmallCodec::<DeltaDiscoveryRequest, DeltaResponse>::new();
    let mut responses = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            PathAndQuery::from_static(DELTA_PATH),
            codec,
        )
        .await
        .map_err(|status| anyhow!("opening the stream: {status}"))?
        .into_inner();
    let mut cds_seen = false;
    while let Some(response) = responses
        .message()
        .await
        .map_err(|status| anyhow!("stream failed: {status}"))?
    {
        let at = Instant::now();
        let used = if response.type_url == ENDPOINT_TYPE {
            delta_assignment(&response, &cluster).map(|g| run.received(state, g, at))
        } else if response.type_url == CLUSTER_TYPE && spec.cds {
            bump(&run.counters.cds_responses);
            let first = !std::mem::replace(&mut cds_seen, true);
            if !first {
                bump(&run.counters.cds_repeats);
            }
            let expected = run.plan.clusters as usize;
            if first && response.resources.len() != expected {
                Err(anyhow!(
                    "CDS: {} clusters, want {expected}",
                    response.resources.len()
                ))
            } else {
                Ok(())
            }
        } else {
            bail!("response of a type never asked for: {}", response.type_url);
        };
        let error_detail = used.err().map(|error| {
            bump(&run.counters.nacks);
            run.error(format!("NACKed: {error:#}"));
            format!("{error:#}")
        });
        send(DeltaDiscoveryRequest {
            type_url: response.type_url,
            response_nonce: response.nonce,
            error_detail: error_detail.and_then(nack_detail),
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// The generation of `cluster`'s assignment in a Delta EDS response.
fn delta_assignment(response: &DeltaResponse, cluster: &str) -> Result<u32> {
    if response
        .removed_resources
        .iter()
        .any(|name| name == cluster)
    {
        bail!("EDS: {cluster} removed");
    }
    let [resource] = response.resources.as_slice() else {
        bail!(
            "EDS: {} resources, want exactly {cluster}",
            response.resources.len()
        );
    };
    if resource.name != cluster {
        bail!("EDS: got {:?}, subscribed to {cluster:?}", resource.name);
    }
    let any = resource
        .resource
        .as_ref()
        .with_context(|| format!("EDS: {cluster} without a resource"))?;
    generation(&any.value, cluster)
}
