//! The SSH transport: an embedded russh server that authenticates every
//! connection by public key and dispatches channels by role
//! (`server`), outbound links to peers with pinned host keys (`peer`), an
//! operator client (`client`), the peer wire format (`frame`), clock
//! probes between peers (`clock_probe`, estimated by `clock`, read from
//! `wall_clock`), and fault injection for tests (`faults`).
//!
//! The transport is generic over the message type, so it does not depend on
//! the consensus core: anything `Serialize + DeserializeOwned` travels.

pub mod algorithms;
pub mod client;
pub mod clock;
pub mod clock_probe;
pub mod faults;
pub mod frame;
pub mod limits;
pub mod peer;
pub mod server;
mod stdin;
pub mod wall_clock;

pub use client::{CommandOutput, Console, SshClient, StreamEvent};
pub use frame::{Hello, PEER_SUBSYSTEM, PROTOCOL_VERSION, peer_codec};
pub use limits::ConnectionLimits;
pub use peer::{PeerLink, PeerLinkSettings, PeerLinkStats};
pub use server::{
    AccessList, OperatorService, OperatorSession, PeerEvent, PeerKeys, Principal, ServerSettings, SshServer,
};

/// The user name clients send. The server ignores it: identity is the key.
pub const SSH_USER: &str = "paxos";

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("invalid SSH connection limits: {0}")]
    InvalidLimits(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The server offered a host key other than the pinned one.
    #[error("{0}")]
    HostKeyMismatch(String),
    #[error(
        "{addr} rejected our key {fingerprint}: add its public key to that node's access list (as a peer, operator or reader)"
    )]
    AuthRejected { addr: String, fingerprint: String },
    #[error("{addr} refused {what}: the key may lack the role for it, or the name is not served")]
    Refused { addr: String, what: String },
    #[error("{addr}: timed out after {secs} s while {during}")]
    Timeout { addr: String, secs: u64, during: String },
    #[error("ssh session with {addr} failed: {source}")]
    Session { addr: String, source: russh::Error },
}

pub(crate) use algorithms::preferred;
