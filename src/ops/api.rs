//! What operator commands need from a running node: the `NodeApi` trait the
//! node runtime implements, and the data it answers with.

use crate::consensus::ballot::{Ballot, NodeId};
use crate::consensus::configuration::Membership;
use crate::state_machine::{Entry, Op, OpResult, Slot};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;
use tokio::sync::mpsc;

/// A client session id and sequence number (`--request CLIENT:SEQ`). A
/// command retried with the same pair is answered from the state machine's
/// session table instead of being applied twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestId {
    pub client: u64,
    pub seq: u64,
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.client, self.seq)
    }
}

/// Where this node stands in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaRole {
    Leader,
    Follower,
    /// Running phase 1 (or its pre-vote probe) and not yet leader.
    Candidate,
}

impl fmt::Display for ReplicaRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicaRole::Leader => "leader",
            ReplicaRole::Follower => "follower",
            ReplicaRole::Candidate => "candidate",
        })
    }
}

/// One node's own view of itself and the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub cluster: String,
    pub id: NodeId,
    pub name: String,
    pub address: String,
    /// Protocol roles from the inventory ("proposer", "acceptor", "learner").
    pub roles: Vec<String>,
    pub role: ReplicaRole,
    /// The leader this node believes in, if any.
    pub leader: Option<NodeId>,
    /// The highest ballot this node has seen in use by a leader.
    pub ballot: Ballot,
    /// The ballot this node's acceptor promised (`Ballot::ZERO` if it is not an acceptor).
    pub promised: Ballot,
    /// Every slot below this one is known to be chosen.
    pub commit_index: Slot,
    /// Every slot below this one is applied to the key-value store.
    pub applied_index: Slot,
    /// Since the last message from the leader; `None` on the leader itself or with no leader.
    pub last_heartbeat_age_ms: Option<u64>,
    /// Client commands submitted here and not answered yet.
    pub pending_requests: u64,
    pub uptime_ms: u64,
    /// `voter`, or why this node does not vote yet: `introducing` (a new
    /// data directory asking its peers) or `rejoining` (it lost its data).
    #[serde(default)]
    pub voting: String,
    /// The data directory's incarnation (random, drawn when it was created).
    #[serde(default)]
    pub incarnation: u64,
    /// The daemon's process id on its machine (0 from a node that predates it).
    #[serde(default)]
    pub pid: u32,
    /// Each peer's clock as estimated from probe round trips; a peer not
    /// heard from lately is left out.
    #[serde(default)]
    pub clock: Vec<PeerClock>,
}

/// A peer's clock relative to this node's, from NTP-style probe round trips.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerClock {
    pub peer: NodeId,
    /// The peer's clock minus this node's.
    pub offset_ms: f64,
    /// The true offset lies within `offset_ms ± error_ms`.
    pub error_ms: f64,
    /// The probe round trip the estimate rests on.
    pub round_trip_ms: f64,
}

/// A cluster member as one node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    pub is_self: bool,
    pub is_leader: bool,
    /// Whether an SSH channel to the member is up (true for this node itself).
    pub connected: bool,
    /// Since this node last heard from the member.
    pub last_heard_ms: Option<u64>,
    /// The leader's knowledge of the member's log: every slot below is chosen
    /// there. Only the leader knows this.
    pub match_index: Option<Slot>,
    /// The member's clock minus this node's (`None` for this node, or unknown).
    #[serde(default)]
    pub clock_offset_ms: Option<f64>,
    /// The offset's error bound.
    #[serde(default)]
    pub clock_error_ms: Option<f64>,
    /// The clock probe round trip to the member.
    #[serde(default)]
    pub round_trip_ms: Option<f64>,
}

/// The replicated configuration as one node knows it, with the leader's
/// view of how far each peer has come.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembershipView {
    pub membership: Membership,
    pub leader: Option<NodeId>,
    pub is_leader: bool,
    pub commit_index: Slot,
    /// On the leader only: each peer's commit index as it last reported it.
    pub progress: BTreeMap<NodeId, PeerProgress>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProgress {
    pub commit_index: Slot,
    /// Since the peer last answered the leader.
    pub since_ms: u64,
}

/// A mutation decided in the log, with the state machine's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub slot: Slot,
    #[serde(flatten)]
    pub result: OpResult,
}

/// A read answered at log position `index` (the read index for a
/// linearizable read; the applied index for a stale one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadValue {
    pub value: Option<String>,
    pub index: Slot,
}

/// One decided slot of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub slot: Slot,
    #[serde(flatten)]
    pub entry: Entry,
}

/// Why the node could not do what was asked. Each message says what to do next.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeError {
    /// No leader within the wait. A command answered so was withdrawn
    /// first: it was not applied and never will be.
    #[error(
        "no leader was elected within {waited_ms} ms, so nothing was applied; a quorum of acceptors may be \
         down or cut off (check `paxos members` on each node)"
    )]
    NoLeader { waited_ms: u64 },
    /// A leader was known but the command was still on this node when the
    /// wait ended; it was withdrawn and will not be applied.
    #[error(
        "not decided within {waited_ms} ms; the command was withdrawn and will not be applied, so it is safe to retry"
    )]
    NotApplied { waited_ms: u64 },
    /// The command reached a leader and may yet be applied.
    #[error(
        "not decided within {waited_ms} ms, and a leader has the command: it may still be applied; \
         retry with --request {request} to learn its outcome without applying it twice"
    )]
    OutcomeUnknown { waited_ms: u64, request: RequestId },
    #[error(
        "not decided within {waited_ms} ms; the command may still be applied, so retry it with the \
         same request id to learn its outcome"
    )]
    Timeout { waited_ms: u64 },
    #[error("this node is not the leader ({}); send the command to the leader", match leader {
        Some(id) => format!("the leader is node {id}"),
        None => "no leader is known".to_owned(),
    })]
    NotLeader { leader: Option<NodeId> },
    #[error("cannot hand over leadership: {reason}")]
    BadTarget { reason: String },
    #[error("the node is shutting down; use another node")]
    ShuttingDown,
    #[error(
        "this node was removed from the cluster; send commands to a member (`paxos members` on one lists them){}",
        if *maybe_applied { "; the command had reached a leader first and may have been applied" } else { "" }
    )]
    Removed { maybe_applied: bool },
    #[error("the command is {bytes} bytes encoded, over the cluster's limit of {max} bytes; nothing was applied")]
    TooLarge { bytes: u64, max: u64 },
    #[error("slots below {first_available} were compacted into a snapshot; ask again with --from {first_available}")]
    Compacted { first_available: Slot },
    #[error("the watch fell too far behind the log and was dropped; run it again with --from {next}")]
    Lagged { next: Slot },
    #[error("storage failure: {reason}; the node cannot make progress until the disk is fixed")]
    Storage { reason: String },
}

impl NodeError {
    /// Whether the same command may succeed if retried (here later, or on another node).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NodeError::NoLeader { .. }
                | NodeError::NotApplied { .. }
                | NodeError::OutcomeUnknown { .. }
                | NodeError::Timeout { .. }
                | NodeError::NotLeader { .. }
                | NodeError::ShuttingDown
                | NodeError::Removed { .. }
        )
    }
}

/// Decided entries from a watch, in slot order; an `Err` is the last item.
pub type WatchReceiver = mpsc::Receiver<Result<LogEntry, NodeError>>;

/// The node runtime, as operator commands see it. Object-safe, so the SSH
/// layer can hold an `Arc<dyn NodeApi>`.
pub trait NodeApi: Send + Sync {
    fn status(&self) -> BoxFuture<'_, NodeStatus>;
    /// Every member of the cluster, sorted by id.
    fn members(&self) -> BoxFuture<'_, Vec<MemberInfo>>;
    /// The replicated configuration and, on the leader, each peer's progress.
    fn membership(&self) -> BoxFuture<'_, Result<MembershipView, NodeError>>;
    /// Put `op` in the log (forwarded to the leader if need be) and wait for
    /// its result. Without a request id the node picks a fresh one.
    fn submit(&self, op: Op, request: Option<RequestId>) -> BoxFuture<'_, Result<Submitted, NodeError>>;
    /// A linearizable read confirms leadership with a quorum first (read
    /// index); otherwise the node answers from what it has applied.
    fn read(&self, key: String, linearizable: bool) -> BoxFuture<'_, Result<ReadValue, NodeError>>;
    /// Up to `limit` decided entries from slot `from` on.
    fn log(&self, from: Slot, limit: u64) -> BoxFuture<'_, Result<Vec<LogEntry>, NodeError>>;
    /// Decided entries from slot `from` on, as they are decided, until the
    /// receiver is dropped or the node stops.
    fn watch(&self, from: Slot) -> BoxFuture<'_, Result<WatchReceiver, NodeError>>;
    /// Hand leadership to `to` (or the most up-to-date other proposer);
    /// answers the new leader's id.
    fn step_down(&self, to: Option<NodeId>) -> BoxFuture<'_, Result<NodeId, NodeError>>;
    /// Prometheus text exposition format.
    fn metrics(&self) -> BoxFuture<'_, String>;
    /// Acceptors needed both to elect a leader and to commit (the larger
    /// of the phase-1 and phase-2 quorums).
    fn quorum(&self) -> usize;
    /// The inventory this node started from (the cluster's seed inventory).
    fn seed_inventory(&self) -> &crate::cluster::Inventory;
}
