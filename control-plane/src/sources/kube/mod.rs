//! Kubernetes discovery: every opted-in Service, from its EndpointSlices.
//!
//! Opt-in is per Service, by the label `lookaside.io/enabled=true` on the
//! Service (`DEFAULT_LABEL_SELECTOR`; `--kube-label-selector` changes it).
//! The EndpointSlice controller copies a Service's labels onto every slice it
//! manages, so one watch of EndpointSlices filtered by that label selector
//! (on the API server, not here) sees exactly the opted-in Services, with no
//! second watch of Services and no cluster-wide cache of unrelated slices.
//! Slices not managed by that controller must carry the label themselves.
//!
//! For each Service `S` in namespace `N` and each TCP port `P` in its slices
//! (the port the pods listen on), two clusters with identical endpoints are
//! served: `S.N:P` and its alias `S.N.svc.cluster.local:P`, so clients may
//! dial either `xds:///greeter.default:50051` or the fully qualified name.
//!
//! Every slice of a Service is merged (a Service has many slices) and an
//! address listed by two slices counts once. Endpoint conditions map to
//! health: ready -> healthy; serving and terminating -> draining (no new
//! calls, in-flight calls finish); anything else (not ready and not serving)
//! is omitted, as kube-proxy does. A port whose endpoints are all omitted
//! still yields its clusters, with no endpoints. The slice endpoint's `zone`
//! becomes the locality's zone. Every weight is 1; the weigh stage sets the
//! real ones.
//!
//! Owns: the Kubernetes watch, the mapping from EndpointSlices to clusters,
//! and this source's entry in `SourceStatus`.
//! Must never: write to Kubernetes, publish a partial list (only a complete
//! list, or the last complete state plus watch events), or drop the last good
//! clusters because the watch failed.

mod convert;
mod options;
mod watch;

pub use convert::{ORCA_PORT_LABEL, POLICY_LABEL, SERVICE_NAME_LABEL, clusters_from_slices};
pub use options::{DEFAULT_LABEL_SELECTOR, KubeOptions, source_id};
pub use watch::KubeSource;
