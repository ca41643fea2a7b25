//! Limits the control plane and lookaside-client agree on.
//!
//! Owns: the numbers. Must never: hold logic.

/// The most serving endpoints (healthy or of unknown health, all
/// priorities) a lookaside-client accepts in one cluster's assignment: it
/// connects to every one, and beyond this would exhaust a process's
/// sockets (a cluster this large wants subsetting). The client NACKs a
/// larger assignment; the control plane warns when a cluster passes it.
pub const MAX_SERVING_ENDPOINTS: usize = 10_000;
