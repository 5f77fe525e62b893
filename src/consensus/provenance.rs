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

/// A message dropped because its sender could not have sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub from: NodeId,
    pub kind: &'static str,
    pub reason: String,
}

impl Replica {
    /// `Ok` when `from`, in its configured roles, could have sent `msg`.
    pub(super) fn check_provenance(&self, from: NodeId, msg: &Message) -> Result<(), String> {
        for ballot in ballots(msg) {
            if ballot.round > MAX_ROUND {
                return Err(format!("ballot {ballot} has a round above the limit {MAX_ROUND}"));
            }
        }
        let none = super::config::Roles { proposer: false, acceptor: false, learner: false };
        let roles = self.cfg.members.get(&from).copied().unwrap_or(none);
        let me = self.id();
        // (a ballot that must be the sender's own, one that must be ours,
        // the role the sender needs and whether it has it)
        let (own, ours, role): (Option<Ballot>, Option<Ballot>, Option<(&str, bool)>) = match msg {
            Message::Probe(m) => (Some(m.ballot), None, Some(("a proposer", roles.proposer))),
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
            | Message::ReadIndexReply(_) => (None, None, None),
        };
        if let Some(b) = own.filter(|b| b.node != from) {
            return Err(format!("node {from} sent ballot {b}, which belongs to node {}", b.node));
        }
        if let Some(b) = ours.filter(|b| b.node != me) {
            return Err(format!("node {from} answered ballot {b}, which is not one of this node's"));
        }
        if let Some((name, false)) = role {
            return Err(format!("node {from} is not {name} of this cluster"));
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
        | Message::ReadIndexReply(_) => Vec::new(),
    }
}
