//! What this client saw of each endpoint, reported to the control plane
//! over LRS (`envoy.service.load_stats.v3.LoadReportingService`), as Envoy
//! and gRPC's xDS clients do: calls issued, succeeded, failed and in
//! progress per endpoint. The control plane shows them in its admin API
//! and lowers the weight of an endpoint whose calls fail here though its
//! own load reports look fine (connection failures, deadlines).
//!
//! Flow: the calls count on their endpoint's [`EndpointLoad`] (atomics, no
//! lock), a cluster's [`ClusterLoads`] holds every endpoint's counters
//! (also of endpoints ejected or removed since the last report), and the
//! [`Reporter`] sends what changed since the last report at the interval
//! the control plane asks for.
//! The same counters keep each endpoint's run of calls it failed in a row,
//! reported to the cluster's balancer for failure accrual.
//! Owns: the counts, who holds them until reported, and the LRS stream.
//! Must never: slow a call down (a call adds to two atomics and reads the
//! run, a third for an application's error status, a write of the run for
//! a failure; a trailers-only answer's head is looked up for
//! `grpc-status`) or keep a removed endpoint's counters once they are
//! reported.

mod count;
mod reporter;
mod store;
mod streak;

pub(crate) use count::{EndpointLoad, Outcome, Refusal};
pub(crate) use reporter::Reporter;
pub(crate) use store::{ClusterLoads, LoadStore};
pub(crate) use streak::StreakWatch;
