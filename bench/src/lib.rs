//! Measures the signaling relay side by side with reference relays under one workload.
//!
//! The `bench` binary starts each relay in turn (ours, the two seed relays the project replaces,
//! and a bare forwarder that marks the practical limit), drives it with the generator in
//! [`load`], and prints a table with each figure's ratio to our relay ([`report`]).
//! `bench/run.sh` builds everything and pins the relays and the generator to different cores;
//! `docs/benchmarks.md` explains the columns and records a full run.

pub mod chaos;
pub mod dialect;
pub mod load;
pub mod procfs;
pub mod relay;
pub mod report;
pub mod soak;
pub mod tls;
pub mod workload;
