//! What a message may say given who sent it. The SSH layer authenticates
//! the sender, but the ballot inside a message is data: without this check
//! one node's key could cast a leader's ballot (an `Accept` at the current
//! leader's ballot commits a value the leader never proposed), and a round
//! at the top of the integer range would wrap the next campaign's ballot.
//!
//! A message that fails is dropped before any handler sees it, and reported
//! in `Outputs::refused` so the runtime can log it.

use super::Replica;
use super::ballot::{Ballot, NodeId};
use super::messages::Message;

/// The highest round a ballot may carry. Far beyond any real cluster (one
/// election every millisecond for 285,000 years), and low enough that
/// `round + 1` never overflows and JSON readers that use doubles keep it exact.
pub const MAX_ROUND: u64 = (1 << 53) - 1;

/// The highest slot (or slot count) a message may name, for the same
/// reasons: 2^53 slots is far beyond any log, and `slot + n` stays exact.
pub const MAX_SLOT: u64 = (1 << 53) - 1;

/// How many more node ids than this node knows of a promise may name.
const KNOWN_IDS_MARGIN: usize = 64;

/// A message dropped because its sender could not have sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub from: NodeId,
    pub kind: &'static str,
    pub reason: String,
    /// Refused only because the sender lacks a role in this node's view of
    /// the membership. That view can lag a change another node applied
    /// already, so an honest peer can cause this one; never the others.
    pub role_only: bool,
}

/// Why `check_provenance` refused a message.
pub(super) struct Refusal {
    pub reason: String,
    pub role_only: bool,
}

impl Refusal {
    fn role(reason: String) -> Self {
        Refusal { reason, role_only: true }
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal { reason, role_only: false }
    }
}

impl Replica {
    /// `Ok` when `from`, in its configured roles, could have sent `msg`.
    pub(super) fn check_provenance(&self, from: NodeId, msg: &Message) -> Result<(), Refusal> {
        for ballot in ballots(msg) {
            if ballot.round > MAX_ROUND {
                return Err(format!("ballot {ballot} has a round above the limit {MAX_ROUND}").into());
            }
        }
        if let Some(slot) = slots(msg).into_iter().find(|s| *s > MAX_SLOT) {
            return Err(format!("slot {slot} is above the limit {MAX_SLOT}").into());
        }
        let none = super::config::Roles { proposer: false, acceptor: false, learner: false };
        let roles = self.membership().roles(from).unwrap_or(none);
        let me = self.id();
        // (a ballot that must be the sender's own, one that must be ours,
        // the role the sender needs and whether it has it)
        let (own, ours, role): (Option<Ballot>, Option<Ballot>, Option<(&str, bool)>) = match msg {
            Message::Probe(m) => (Some(m.ballot), None, Some(("a proposer", roles.proposer))),
            Message::Prepare(m) if m.rejoin => (Some(m.ballot), None, Some(("an acceptor", roles.acceptor))),
            Message::Prepare(m) => (Some(m.ballot), None, Some(("a proposer", roles.proposer))),
            Message::Accept(m) => (Some(m.ballot), None, Some(("a proposer", roles.proposer))),
            Message::Heartbeat(m) => (Some(m.ballot), None, Some(("a proposer", roles.proposer))),
            Message::TimeoutNow(m) => (Some(m.ballot), None, Some(("a proposer", roles.proposer))),
            Message::Promise(m) => (None, Some(m.ballot), Some(("an acceptor", roles.acceptor))),
            Message::Accepted(m) => (None, Some(m.ballot), Some(("an acceptor", roles.acceptor))),
            Message::Nack(m) => (None, Some(m.ballot), Some(("an acceptor", roles.acceptor))),
            Message::ProbeReply(m) => (None, Some(m.ballot), Some(("an acceptor", roles.acceptor))),
            Message::HeartbeatReply(m) => (None, Some(m.ballot), None),
            Message::CatchUp(_)
            | Message::Decided(_)
            | Message::InstallSnapshot(_)
            | Message::Forward(_)
            | Message::ReadIndex(_)
            | Message::ReadIndexReply(_)
            | Message::Hello(_)
            | Message::HelloReply(_) => (None, None, None),
        };
        // Members added by changes this node has not applied yet may be in
        // the sender's list: a margin for those, still a small bound.
        let ids_ever = self.membership().ids_ever() + KNOWN_IDS_MARGIN;
        if let Message::Promise(m) = msg
            && m.known.len() > ids_ever
        {
            return Err(format!("a promise names {} incarnations for {ids_ever} node ids", m.known.len()).into());
        }
        if let Some(b) = own.filter(|b| b.node != from) {
            return Err(format!("node {from} sent ballot {b}, which belongs to node {}", b.node).into());
        }
        if let Some(b) = ours.filter(|b| b.node != me) {
            return Err(format!("node {from} answered ballot {b}, which is not one of this node's").into());
        }
        if let Some((name, false)) = role {
            return Err(Refusal::role(format!("node {from} is not {name} of this cluster")));
        }
        Ok(())
    }
}

/// Every ballot a message carries.
fn ballots(msg: &Message) -> Vec<Ballot> {
    match msg {
        Message::Probe(m) => vec![m.ballot],
        Message::ProbeReply(m) => vec![m.ballot, m.promised],
        Message::Prepare(m) => vec![m.ballot],
        Message::Promise(m) => std::iter::once(m.ballot).chain(m.votes.iter().map(|v| v.ballot)).collect(),
        Message::Accept(m) => vec![m.ballot],
        Message::Accepted(m) => vec![m.ballot],
        Message::Nack(m) => vec![m.ballot, m.promised],
        Message::Heartbeat(m) => vec![m.ballot],
        Message::HeartbeatReply(m) => vec![m.ballot, m.promised],
        Message::TimeoutNow(m) => vec![m.ballot],
        Message::CatchUp(_)
        | Message::Decided(_)
        | Message::InstallSnapshot(_)
        | Message::Forward(_)
        | Message::ReadIndex(_)
        | Message::ReadIndexReply(_)
        | Message::Hello(_)
        | Message::HelloReply(_) => Vec::new(),
    }
}

/// Every slot, index or byte offset a message carries.
fn slots(msg: &Message) -> Vec<u64> {
    match msg {
        Message::ProbeReply(m) => vec![m.commit_index],
        Message::Prepare(m) => vec![m.first_slot],
        Message::Promise(m) => std::iter::once(m.commit_index)
            .chain(m.votes.iter().map(|v| v.slot))
            .chain(m.decided.iter().map(|(s, _)| *s))
            .collect(),
        Message::Accept(m) => vec![m.slot, m.commit_index],
        Message::Accepted(m) => vec![m.slot],
        Message::Heartbeat(m) => vec![m.commit_index],
        Message::HeartbeatReply(m) => vec![m.commit_index],
        Message::CatchUp(m) => {
            std::iter::once(m.from_slot).chain(m.snapshot.iter().flat_map(|c| [c.through, c.offset])).collect()
        }
        Message::Decided(m) => vec![m.first_slot.saturating_add(m.entries.len() as u64), m.commit_index],
        Message::InstallSnapshot(m) => vec![m.through, m.offset, m.total],
        Message::ReadIndexReply(m) => vec![m.index],
        Message::Probe(_)
        | Message::Nack(_)
        | Message::TimeoutNow(_)
        | Message::Forward(_)
        | Message::ReadIndex(_)
        | Message::Hello(_)
        | Message::HelloReply(_) => Vec::new(),
    }
}
