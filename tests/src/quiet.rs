//! `tracing` for the benchmark and test binaries that log nothing
//! themselves (`classic-experiment`, `test-backend`).
//!
//! Owns: telling `tracing` that no one listens.
//! Must never: replace a subscriber a binary set up on purpose.

/// Says that no one listens to `tracing`. Without a subscriber, every span a
/// library opens (h2, hyper, tonic) is also offered to the `log` crate,
/// since a dependency (kube-client, through the control plane) turns on
/// tracing's `log` feature: a few percent of each call's CPU in a profile
/// of the classic experiment, which an application with a subscriber does
/// not pay.
pub fn install() {
    // Fails only if one is set already: then that one decides.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::new());
}
