//! The backend side: an ORCA load reporter a tonic server links in.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use lookaside_client::orca::OrcaReporter;
//! let orca = OrcaReporter::builder().build();
//! tonic::transport::Server::builder()
//!     .layer(orca.layer())              // counts calls, errors, in-flight
//!     .add_service(orca.service())      // xds.service.orca.v3.OpenRcaService
//!     // .add_service(GreeterServer::new(...))
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Owns: measuring this server's load (CPU utilization of the process,
//! requests and errors per second, calls in flight, application metrics) and
//! serving it on the standard out-of-band ORCA stream at the interval the
//! client asks for (never faster than a floor).
//! Must never: slow the calls it measures (atomics only on the call path).

mod cpu;
mod layer;
mod recorder;
mod reporter;
mod service;

pub use cpu::{CpuSource, ProcessCpu};
pub use layer::{OrcaLayer, OrcaService};
pub use recorder::LoadRecorder;
pub use reporter::{OrcaReporter, OrcaReporterBuilder};
pub use service::OrcaStreamService;
