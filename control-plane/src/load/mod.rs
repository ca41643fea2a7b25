//! Load collection: what each endpoint's latest load is.
//!
//! Owns: the ORCA streams to endpoints (`collector` decides which run,
//! `orca_stream` runs one), validating each report (`validate`) and the
//! latest load per endpoint (`table`), which the weigh stage and the admin
//! API read; and the LRS service (`lrs`) where clients report what they saw
//! of each endpoint (`client_load`), a secondary signal.
//! Must never: pass a non-finite, negative, absurd or frozen report on to a
//! weight policy; a bad report is counted and dropped, and the endpoint's
//! weight falls back to the mean once its last good report expires. Must
//! never decide weights.

mod client_load;
mod collector;
mod error;
mod lrs;
mod orca_stream;
mod table;
mod validate;

pub use client_load::{ClientLoad, ClientLoads, ClientSample};
pub use collector::{CollectorConfig, run, wanted};
pub use error::StreamError;
pub use lrs::LrsService;
pub use orca_stream::{OrcaStreamConfig, follow_endpoint};
pub use table::{EndpointLoad, LoadTable};
pub use validate::{FROZEN_AFTER, MAX_UTILIZATION, Rejection, ReportValidator, Verdict};
