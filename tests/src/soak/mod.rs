//! The soak driver's parts (the `soak` binary runs them): many simulated
//! xDS clients against one real `lookaside serve`, with clients coming and
//! going and the config file's weights changing, measured for push latency
//! while the control plane's memory and CPU are sampled.
//!
//! - [`config_file`]: the config file, rewritten once per generation, whose
//!   weights tell which generation an assignment comes from;
//! - `wire`: the few response fields a client decodes;
//! - [`stream`]: one simulated client (SotW or Delta ADS stream) and the
//!   [`stream::Run`] every stream reports into;
//! - [`histogram`]: fixed-size latency histograms;
//! - [`proc_stats`]: RSS and CPU time from `/proc`;
//! - [`report`]: the summary's arithmetic.
//!
//! Nothing here grows with the length of the run: histograms are fixed
//! arrays, each stream keeps two atomics, and distinct errors are capped.

pub mod config_file;
pub mod histogram;
pub mod proc_stats;
pub mod report;
pub mod stream;
mod wire;
