//! Kubernetes discovery: every opted-in Service, from its EndpointSlices,
//! named by its own ports.
//!
//! Opt-in is per Service, by the label `lookaside.io/enabled=true` on the
//! Service (`DEFAULT_LABEL_SELECTOR`; `--kube-label-selector` changes it).
//! The EndpointSlice controller copies a Service's labels onto every slice it
//! manages, so two watches filtered by that label selector (on the API
//! server, not here), one of Services and one of EndpointSlices, see exactly
//! the opted-in Services and their slices, with no cluster-wide cache of
//! unrelated objects. Slices not managed by that controller must carry the
//! label themselves.
//!
//! Naming. For each Service `S` in namespace `N` and each TCP port of the
//! Service with number `P` (the port clients dial, e.g. 80), two clusters
//! with identical endpoints are served: `S.N:P` and its alias
//! `S.N.svc.cluster.local:P`, so clients may dial either
//! `xds:///greeter.default:80` or the fully qualified name. The endpoints of
//! that cluster are the slice endpoints with the slice port of the same port
//! name (the pods' target port, e.g. 8080), as kube-proxy matches them; an
//! unnamed single port is named `""` on both sides. During a rollout that
//! changes the target port, old and new pods serve under the one cluster,
//! each on its own port. Every Service port yields its clusters, even with
//! no endpoints yet.
//!
//! Fallback. A slice port whose name matches no port of its Service (the
//! Service not yet seen by the Service watch, an edit of the Service's ports
//! not yet seen, or a hand-made slice whose Service is not opted in) names
//! its clusters by the slice port number itself, `S.N:TARGET`, as if Service
//! and target port were equal. Its endpoints are not dropped (unless that
//! number is a Service port another slice port feeds by name: they would
//! join that cluster on the wrong port, so they are left out until the
//! names match);
//! once the
//! matching Service port is seen, the cluster moves to the Service port's
//! name. Nothing is published before the initial lists of both watches are
//! complete, so this only happens for changes that race between the two
//! watches, or for slices without a labelled Service.
//!
//! Every slice of a Service is merged (a Service has many slices: over 100
//! endpoints, dual stack, per port) and an address listed by two slices
//! counts once. Endpoint conditions map to health: ready -> healthy; serving
//! and terminating -> draining (no new calls, in-flight calls finish);
//! anything else (not ready and not serving) is omitted, as kube-proxy does.
//! A port whose endpoints are all omitted still yields its clusters, with no
//! endpoints. The slice endpoint's `zone` becomes the locality's zone. Every
//! weight is 1; the weigh stage sets the real ones. The weight policy and
//! ORCA port come from the Service's labels (`lookaside.io/policy`,
//! `lookaside.io/orca-port`), or its slices' copies until the Service is
//! seen.
//!
//! The source reads `list` and `watch` on `endpointslices`
//! (`discovery.k8s.io`) and `services` (core), nothing else (`API_ACCESS`);
//! the manifests in `deploy/kubernetes/` grant exactly that.
//!
//! Owns: the Kubernetes watches, the mapping from Services and
//! EndpointSlices to clusters, and this source's entry in `SourceStatus`.
//! Must never: write to Kubernetes, publish a partial list (only complete
//! lists of both kinds, or the last complete state plus watch events), or
//! drop the last good clusters because a watch failed.

mod access;
mod convert;
mod labels;
mod options;
mod service;
mod slice;
mod store;
mod watch;

pub use access::{API_ACCESS, ApiAccess};
pub use labels::{ORCA_PORT_LABEL, POLICY_LABEL};
pub use options::{DEFAULT_LABEL_SELECTOR, KubeOptions, source_id};
pub use slice::SERVICE_NAME_LABEL;
pub use watch::KubeSource;
