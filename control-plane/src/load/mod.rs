//! Load collection: what each endpoint's latest load is.
//!
//! Owns: validating load reports (ORCA today; LRS later) before anything
//! downstream sees them. The per-endpoint ORCA streams land here next.
//! Must never: pass a non-finite, negative, absurd or frozen report on to a
//! weight policy; a bad report is counted and dropped, and the endpoint's
//! weight falls back to the mean once its last good report expires.

mod orca_stream;
mod table;
mod validate;

pub use orca_stream::{OrcaStreamConfig, follow_endpoint};
pub use table::{EndpointLoad, LoadTable};
pub use validate::{FROZEN_AFTER, MAX_UTILIZATION, Rejection, ReportValidator, Verdict};
