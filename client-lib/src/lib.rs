//! Lookaside client: follows the weighted endpoint assignments a Lookaside
//! control plane streams over xDS, keeps a long-lived HTTP/2 connection to
//! every endpoint, and splits calls by weight.
//!
//! Built in stages (see the project's issues); today it holds the weighted
//! picker every call goes through.

pub mod balance;
