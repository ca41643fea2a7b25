//! What the source asks of the API server, stated once so the RBAC rules in
//! `deploy/kubernetes/` can be checked against it.
//!
//! Owns: the list of (API group, resource, verbs) the watches use.
//! Must never: fall out of step with `watch.rs`: kube-runtime's `watcher`
//! lists and watches, it never gets single objects.

use k8s_openapi::Resource;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// One kind of object the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiAccess {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Resource, as named in RBAC rules and URLs.
    pub resource: &'static str,
    /// Verbs used on it.
    pub verbs: &'static [&'static str],
}

/// The verbs of kube-runtime's `watcher`: a list, then watches.
const WATCHER_VERBS: &[&str] = &["list", "watch"];

/// Everything the Kubernetes source reads, in every watched namespace.
pub const API_ACCESS: [ApiAccess; 2] = [
    ApiAccess {
        group: EndpointSlice::GROUP,
        resource: EndpointSlice::URL_PATH_SEGMENT,
        verbs: WATCHER_VERBS,
    },
    ApiAccess {
        group: Service::GROUP,
        resource: Service::URL_PATH_SEGMENT,
        verbs: WATCHER_VERBS,
    },
];
