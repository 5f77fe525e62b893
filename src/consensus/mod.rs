//! The Multi-Paxos protocol as a pure state machine (sans-IO).

pub mod ballot;
pub mod config;
pub mod messages;
pub mod quorum;
pub mod records;
