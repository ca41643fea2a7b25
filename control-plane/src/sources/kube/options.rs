//! What the Kubernetes source watches: the namespace and the opt-in label
//! selector, and the source id they give.
//!
//! Owns: these settings and their defaults.
//! Must never: talk to the API server.

/// The label selector that marks a Service as served (copied by Kubernetes
/// onto its EndpointSlices; both watches use it).
pub const DEFAULT_LABEL_SELECTOR: &str = "lookaside.io/enabled=true";

/// What the Kubernetes source watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeOptions {
    /// Only this namespace; `None` for every namespace.
    pub namespace: Option<String>,
    /// Label selector a Service and its EndpointSlices must match.
    pub label_selector: String,
}

impl Default for KubeOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            label_selector: DEFAULT_LABEL_SELECTOR.to_string(),
        }
    }
}

/// The source id: `kube:NAMESPACE`, or `kube:all` for every namespace.
pub fn source_id(options: &KubeOptions) -> String {
    match &options.namespace {
        Some(namespace) => format!("kube:{namespace}"),
        None => "kube:all".to_string(),
    }
}
