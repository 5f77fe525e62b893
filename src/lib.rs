//! Multi-Paxos over SSH: a replicated log with a key-value state machine.
//!
//! `consensus` is the protocol, free of I/O; `storage` makes it durable;
//! `driver` steps it in batches and does each batch's I/O in a safe order;
//! `node` runs it as a daemon; `ssh` carries its messages and the operator
//! commands of `ops`; `cluster` reads inventories and node configs; `sim`
//! tests the protocol under a seeded faulty network.

pub mod cli;
pub mod cluster;
pub mod consensus;
pub mod driver;
pub mod keys;
pub mod nemesis;
pub mod node;
pub mod ops;
pub mod sim;
pub mod ssh;
pub mod state_machine;
pub mod storage;
