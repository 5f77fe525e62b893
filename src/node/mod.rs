//! The node daemon: one task owns the consensus core (`runtime`); SSH
//! carries peer messages (`transport`) and operator commands to it;
//! `handle` is what operator commands see; `peers` keeps the SSH peer set
//! in step with the membership; `serve` wires a node together.

pub mod clock;
pub mod handle;
pub mod join;
pub mod memory;
pub mod metrics;
pub mod metrics_http;
pub mod peers;
pub mod runtime;
pub mod serve;
pub mod transport;
