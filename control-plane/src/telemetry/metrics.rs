//! The metrics the control plane exports.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-type xDS metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    /// `LDS`, `RDS`, `CDS`, `EDS`.
    pub r#type: &'static str,
}

/// Labels of per-protocol metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    /// `sotw` or `delta`.
    pub protocol: &'static str,
}

/// Labels of per-source metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Source id.
    pub source: String,
}

/// Labels of load report outcomes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportLabels {
    /// `accepted`, `clamped`, or the rejection reason.
    pub outcome: &'static str,
}

/// Labels of limit metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// Which limit: `streams`, `names_per_request`,
    /// `subscriptions_per_stream`, `request_bytes`, `requests_per_second`,
    /// `unknown_types`.
    pub limit: &'static str,
}

/// Labels of TLS reload outcomes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsReloadLabels {
    /// Which file set: `listener` or `orca`.
    pub files: &'static str,
    /// `loaded` or `rejected` (the previous configuration kept serving).
    pub outcome: &'static str,
}

/// Every exported metric. Cheap to share: handles are atomics.
#[derive(Debug)]
pub struct Metrics {
    /// Open ADS streams.
    pub streams: Family<ProtocolLabels, Gauge>,
    /// Streams refused by a limit.
    pub streams_refused: Counter,
    /// Responses sent.
    pub pushes: Family<TypeLabels, Counter>,
    /// ACKs received.
    pub acks: Family<TypeLabels, Counter>,
    /// NACKs received.
    pub nacks: Family<TypeLabels, Counter>,
    /// Seconds from the change that required a response to its send.
    pub push_latency: Family<TypeLabels, Histogram>,
    /// Snapshots built.
    pub snapshots: Counter,
    /// Config inputs rejected.
    pub config_rejections: Family<SourceLabels, Counter>,
    /// ORCA streams the control plane keeps open (or is opening).
    pub orca_streams: Gauge,
    /// Endpoints whose load is wanted but not watched: over the cap.
    pub orca_streams_over_cap: Gauge,
    /// The cap on ORCA streams of this replica.
    pub orca_streams_limit: Gauge,
    /// Load reports received, by outcome.
    pub load_reports: Family<ReportLabels, Counter>,
    /// Requests or streams refused by a limit, by limit.
    pub limit_hits: Family<LimitLabels, Counter>,
    /// Load-driven weight pushes (all clusters: a per-cluster label would
    /// grow with every Service ever seen).
    pub weight_pushes: Counter,
    /// TLS file sets re-read after a change, by outcome.
    pub tls_reloads: Family<TlsReloadLabels, Counter>,
    /// TLS handshakes that failed, timed out or were refused (too many at
    /// once from one address) on the gRPC listeners.
    pub tls_handshake_failures: Counter,
    registry: Mutex<Registry>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lookaside");
        let streams = Family::<ProtocolLabels, Gauge>::default();
        registry.register("xds_streams", "Open ADS streams", streams.clone());
        let streams_refused = Counter::default();
        registry.register(
            "xds_streams_refused",
            "ADS streams refused by a limit",
            streams_refused.clone(),
        );
        let pushes = Family::<TypeLabels, Counter>::default();
        registry.register("xds_pushes", "xDS responses sent", pushes.clone());
        let acks = Family::<TypeLabels, Counter>::default();
        registry.register("xds_acks", "xDS ACKs received", acks.clone());
        let nacks = Family::<TypeLabels, Counter>::default();
        registry.register("xds_nacks", "xDS NACKs received", nacks.clone());
        let push_latency = Family::<TypeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        registry.register(
            "xds_push_latency_seconds",
            "Seconds from the change that required a response to its send",
            push_latency.clone(),
        );
        let snapshots = Counter::default();
        registry.register("snapshots", "Snapshots built", snapshots.clone());
        let config_rejections = Family::<SourceLabels, Counter>::default();
        registry.register(
            "config_rejections",
            "Config inputs rejected (the last good one keeps serving)",
            config_rejections.clone(),
        );
        let orca_streams = Gauge::default();
        registry.register(
            "orca_streams",
            "ORCA load report streams open or being opened",
            orca_streams.clone(),
        );
        let orca_streams_over_cap = Gauge::default();
        registry.register(
            "orca_streams_over_cap",
            "Endpoints whose load is wanted but not watched because of the stream cap",
            orca_streams_over_cap.clone(),
        );
        let orca_streams_limit = Gauge::default();
        registry.register(
            "orca_streams_limit",
            "The cap on ORCA streams of this replica",
            orca_streams_limit.clone(),
        );
        let load_reports = Family::<ReportLabels, Counter>::default();
        registry.register(
            "load_reports",
            "Load reports received, by outcome (accepted, clamped, or why dropped)",
            load_reports.clone(),
        );
        let weight_pushes = Counter::default();
        registry.register(
            "weight_pushes",
            "Load-driven weight changes published (clusters pushed)",
            weight_pushes.clone(),
        );
        let limit_hits = Family::<LimitLabels, Counter>::default();
        registry.register(
            "xds_limit_hits",
            "ADS streams refused or closed by a limit, by limit",
            limit_hits.clone(),
        );
        let tls_reloads = Family::<TlsReloadLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "TLS file sets re-read after a change, by outcome (rejected: the previous one keeps serving)",
            tls_reloads.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, timed out or were refused (too many from one address) on the gRPC listeners",
            tls_handshake_failures.clone(),
        );
        Self {
            tls_reloads,
            tls_handshake_failures,
            limit_hits,
            orca_streams,
            orca_streams_over_cap,
            orca_streams_limit,
            load_reports,
            weight_pushes,
            streams,
            streams_refused,
            pushes,
            acks,
            nacks,
            push_latency,
            snapshots,
            config_rejections,
            registry: Mutex::new(registry),
        }
    }

    /// Labels for `protocol` and resource `type` (static: building them on
    /// every push allocates nothing).
    pub fn labels(protocol: &'static str, kind: &'static str) -> TypeLabels {
        TypeLabels {
            protocol,
            r#type: kind,
        }
    }

    /// Labels for `protocol`.
    pub fn protocol(protocol: &'static str) -> ProtocolLabels {
        ProtocolLabels { protocol }
    }

    /// Labels for a source.
    pub fn source(source: &str) -> SourceLabels {
        SourceLabels {
            source: source.to_string(),
        }
    }

    /// Labels for a load report outcome.
    pub fn report(outcome: &'static str) -> ReportLabels {
        ReportLabels { outcome }
    }

    /// Labels for a limit.
    pub fn limit(limit: &'static str) -> LimitLabels {
        LimitLabels { limit }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
