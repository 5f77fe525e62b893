//! The node daemon: one task owns the consensus core (`runtime`); SSH
//! carries peer messages and operator commands to it (`serve` wires it up).

pub mod metrics;
pub mod runtime;
