//! Leader election: election timers in ticks, pre-vote probes, jittered
//! exponential backoff, leader stickiness, check-quorum and planned transfer.
//!
//! Cold start needs no leader: any proposer whose timer fires probes the
//! acceptors and, with a phase-1 quorum of grants, runs phase 1 itself.

use super::ballot::{Ballot, NodeId};
use super::leader::LeaderState;
use super::messages::{Message, Nack, NackReason, Prepare, Probe, ProbeReply, TimeoutNow};
use super::records::Record;
use super::{ClientError, Replica, RequestId, Response};
use std::collections::{BTreeMap, BTreeSet};

/// A campaign in progress: probing (pre-vote) or preparing (phase 1).
#[derive(Debug)]
pub(crate) struct Campaign {
    pub ballot: Ballot,
    pub started: u64,
    pub granted: BTreeSet<NodeId>,
    pub refused: BTreeSet<NodeId>,
    pub promises: BTreeMap<NodeId, super::messages::Promise>,
}

impl Campaign {
    fn new(ballot: Ballot, started: u64) -> Self {
        Campaign { ballot, started, granted: BTreeSet::new(), refused: BTreeSet::new(), promises: BTreeMap::new() }
    }
}

#[derive(Debug)]
pub(crate) enum Role {
    Follower,
    Probing(Campaign),
    Preparing(Campaign),
    Leader(Box<LeaderState>),
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Probing(_) | Role::Preparing(_) => "candidate",
            Role::Leader(_) => "leader",
        }
    }

    pub fn in_flight(&self) -> usize {
        match self {
            Role::Leader(ls) => ls.in_flight.len(),
            _ => 0,
        }
    }

    /// The ballot this node is campaigning or leading with.
    fn own_ballot(&self) -> Option<Ballot> {
        match self {
            Role::Follower => None,
            Role::Probing(c) | Role::Preparing(c) => Some(c.ballot),
            Role::Leader(ls) => Some(ls.ballot),
        }
    }
}

/// A pending planned transfer: answer `request` once `target` leads.
#[derive(Debug)]
pub(crate) struct TransferWaiter {
    request: RequestId,
    target: NodeId,
    deadline: u64,
}

impl Replica {
    pub(super) fn reset_election_timer(&mut self) {
        let t = self.cfg.timing;
        self.election_deadline = self.now + self.rng.between(t.election_min, t.election_max);
    }

    /// Ticks within which hearing from a leader makes an acceptor refuse to
    /// promise anyone else. Slightly shorter than the election timeout, so a
    /// follower whose timer fired after a real leader failure still finds
    /// acceptors that will grant it.
    fn stickiness(&self) -> u64 {
        let t = self.cfg.timing;
        t.election_min.saturating_sub(2 * t.heartbeat).max(1)
    }

    /// True if a leader other than `candidate` was heard from recently.
    pub(super) fn leader_alive_besides(&self, candidate: NodeId) -> bool {
        match (self.leader, self.last_leader_contact) {
            (Some(leader), Some(at)) => leader != candidate && self.now - at < self.stickiness(),
            _ => false,
        }
    }

    /// The leader's connection closed. A follower stops counting on it
    /// (acceptors refuse probes only while they believe in a live leader)
    /// and campaigns within `link_lost_min..=link_lost_max` ticks instead
    /// of a whole election timeout. If only this link broke and the leader
    /// lives, the others still hear it and refuse the probe: nothing
    /// changes but a backoff here.
    pub(super) fn on_link_lost(&mut self, peer: NodeId) {
        if peer == self.id() || self.leader != Some(peer) || !matches!(self.role, Role::Follower) {
            return;
        }
        let t = self.cfg.timing;
        self.last_leader_contact = None;
        let soon = self.now + self.rng.between(t.link_lost_min, t.link_lost_max);
        self.election_deadline = self.election_deadline.min(soon);
    }

    pub(super) fn tick_election(&mut self) {
        let timing = self.cfg.timing;
        match &self.role {
            Role::Leader(_) => self.last_leader_contact = Some(self.now),
            Role::Follower => {
                self.expire_transfers();
                if self.roles().proposer
                    && self.is_voter()
                    && self.now >= self.election_deadline
                    && self.now >= self.no_campaign_before
                {
                    self.start_probe();
                } else if !self.roles().proposer && self.now >= self.election_deadline {
                    self.poll_while_leaderless();
                }
            }
            Role::Probing(c) | Role::Preparing(c) => {
                if self.now >= c.started + timing.retransmit {
                    self.campaign_failed();
                }
            }
        }
    }

    fn start_probe(&mut self) {
        self.elections_started += 1;
        self.leader = None;
        let ballot = Ballot::next_after(self.max_round, self.id());
        self.role = Role::Probing(Campaign::new(ballot, self.now));
        for acceptor in self.acceptors() {
            self.send(acceptor, Message::Probe(Probe { ballot }));
        }
    }

    /// Phase 1a. The ballot is made durable first, so a restarted proposer
    /// never reuses it (it might otherwise propose a second value in a slot
    /// under the same ballot).
    pub(super) fn start_prepare(&mut self, transfer: bool) {
        let ballot = Ballot::next_after(self.max_round, self.id());
        self.note_ballot(ballot);
        self.role = Role::Preparing(Campaign::new(ballot, self.now));
        self.persist(Record::Campaigned { ballot });
        let prepare = Prepare { ballot, first_slot: self.commit_index, transfer, rejoin: false };
        for acceptor in self.acceptors() {
            self.send_after_persist(acceptor, Message::Prepare(prepare.clone()));
        }
    }

    pub(super) fn on_probe(&mut self, from: NodeId, probe: Probe) {
        if !self.roles().acceptor {
            // One of the two views of the membership lags. If this node was
            // removed or demoted, the candidate may need its vote for the
            // slots before the change: it learns here that they are decided
            // and catches up. If this node lags, it fetches the log.
            self.request_catch_up(from);
            self.refuse_probe(from, probe);
            return;
        }
        self.note_ballot(probe.ballot);
        let granted = probe.ballot > self.promised && !self.leader_alive_besides(from) && self.is_voter();
        let reply =
            ProbeReply { ballot: probe.ballot, granted, promised: self.promised, commit_index: self.commit_index };
        self.send(from, Message::ProbeReply(reply));
    }

    /// Grant nothing, but say how far the log goes.
    pub(super) fn refuse_probe(&mut self, from: NodeId, probe: Probe) {
        self.note_ballot(probe.ballot);
        let reply = ProbeReply {
            ballot: probe.ballot,
            granted: false,
            promised: self.promised,
            commit_index: self.commit_index,
        };
        self.send(from, Message::ProbeReply(reply));
    }

    pub(super) fn on_probe_reply(&mut self, from: NodeId, reply: ProbeReply) {
        self.note_ballot(reply.promised);
        if reply.commit_index > self.commit_index {
            // Cut off from the leader but not from this peer: learn from it.
            self.known_commit = self.known_commit.max(reply.commit_index);
            self.request_catch_up(from);
        }
        if !self.is_acceptor(from) {
            return;
        }
        let Role::Probing(c) = &mut self.role else { return };
        if c.ballot != reply.ballot {
            return;
        }
        if reply.granted {
            c.granted.insert(from);
        } else {
            c.refused.insert(from);
        }
        let (granted, refused) = (c.granted.clone(), c.refused.clone());
        // A campaign needs the configuration in force only: a leader asks
        // a pending one's acceptors before it proposes there (`epochs`).
        if self.membership().current.phase1_quorum_in(&granted) {
            self.start_prepare(false);
        } else if self.membership().current.phase1_out_of_reach(&refused) {
            self.campaign_failed();
        }
    }

    pub(super) fn on_nack(&mut self, from: NodeId, nack: Nack) {
        self.note_ballot(nack.promised);
        self.on_rejoin_nack(nack.ballot);
        match &mut self.role {
            Role::Leader(ls) if nack.ballot == ls.ballot && nack.promised > ls.ballot => self.step_down(),
            Role::Preparing(c) if nack.ballot == c.ballot => {
                c.refused.insert(from);
                let refused = c.refused.clone();
                if nack.reason == NackReason::Preempted || self.membership().current.phase1_out_of_reach(&refused) {
                    self.campaign_failed();
                }
            }
            _ => {}
        }
    }

    /// Back off exponentially with jitter, capped, before campaigning again,
    /// so that duelling proposers stop colliding.
    fn campaign_failed(&mut self) {
        let t = self.cfg.timing;
        self.role = Role::Follower;
        self.backoff_attempts = self.backoff_attempts.saturating_add(1);
        let delay = t.backoff_base.saturating_mul(1 << self.backoff_attempts.min(20)).min(t.backoff_cap);
        self.election_deadline = self.now + delay + self.rng.between(0, delay);
    }

    /// Give up leading or campaigning because a higher ballot exists.
    pub(super) fn yield_to(&mut self, ballot: Ballot) {
        if self.role.own_ballot().is_some_and(|own| own < ballot) {
            if self.is_leader() {
                self.step_down();
            } else {
                self.role = Role::Follower;
            }
        }
    }

    pub(super) fn step_down(&mut self) {
        if self.is_leader() {
            self.reads_on_step_down();
        }
        self.role = Role::Follower;
        if self.leader == Some(self.id()) {
            self.leader = None;
            self.last_leader_contact = None;
        }
        self.reset_election_timer();
    }

    /// A leader with `ballot` spoke to us: follow it.
    pub(super) fn hear_from_leader(&mut self, from: NodeId, ballot: Ballot) {
        self.note_ballot(ballot);
        self.yield_to(ballot);
        if matches!(self.role, Role::Probing(_)) {
            // A probe changed nothing anywhere; a live leader ends it.
            self.role = Role::Follower;
        }
        if self.is_leader() || matches!(self.role, Role::Preparing(_) | Role::Probing(_)) {
            // Our own campaign or leadership has a ballot at least as high.
            return;
        }
        let changed = self.leader != Some(from);
        self.leader = Some(from);
        self.leader_ballot = ballot;
        self.last_leader_contact = Some(self.now);
        self.backoff_attempts = 0;
        self.reset_election_timer();
        if changed {
            self.on_leader_change();
            self.finish_transfers(from);
        }
    }

    /// Planned transfer (for failover drills): ask `to` to campaign at once,
    /// with acceptors waiving stickiness, and stay out of its way.
    pub(super) fn on_transfer(&mut self, request: RequestId, to: Option<NodeId>) {
        let Role::Leader(ls) = &self.role else {
            self.reply(request, Err(ClientError::NotLeader { leader: self.leader }));
            return;
        };
        let ballot = ls.ballot;
        let target = match to {
            Some(t) => t,
            None => {
                // The other proposer that answered most recently.
                let best = self
                    .membership()
                    .current
                    .proposers()
                    .filter(|p| *p != self.id())
                    .max_by_key(|p| (ls.last_ack.get(p).copied().unwrap_or(0), std::cmp::Reverse(*p)));
                match best {
                    Some(p) => p,
                    None => {
                        self.reply(request, Err(ClientError::BadTarget("no other proposer in the cluster".into())));
                        return;
                    }
                }
            }
        };
        if target == self.id() {
            self.reply(request, Ok(Response::Transferred { to: target }));
            return;
        }
        if !self.membership().current.is_proposer(target) {
            let why = format!("node {target} is not a proposer of this cluster");
            self.reply(request, Err(ClientError::BadTarget(why)));
            return;
        }
        self.send(target, Message::TimeoutNow(TimeoutNow { ballot }));
        self.step_down();
        let election_max = self.cfg.timing.election_max;
        self.no_campaign_before = self.now + election_max;
        self.transfers.push(TransferWaiter { request, target, deadline: self.now + election_max });
    }

    pub(super) fn on_timeout_now(&mut self, from: NodeId, m: TimeoutNow) {
        if !self.roles().proposer || self.is_leader() || !self.is_voter() {
            return;
        }
        self.note_ballot(m.ballot);
        if self.leader.is_some_and(|l| l != from) && m.ballot < self.leader_ballot {
            return; // an old leader's late request
        }
        self.elections_started += 1;
        self.leader = None;
        self.start_prepare(true);
    }

    fn finish_transfers(&mut self, new_leader: NodeId) {
        let (done, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.transfers).into_iter().partition(|w| w.target == new_leader);
        self.transfers = rest;
        for w in done {
            self.reply(w.request, Ok(Response::Transferred { to: w.target }));
        }
    }

    fn expire_transfers(&mut self) {
        let now = self.now;
        let (late, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.transfers).into_iter().partition(|w| now >= w.deadline);
        self.transfers = rest;
        for w in late {
            self.reply(w.request, Err(ClientError::TransferTimedOut(w.target)));
        }
    }

    /// Reply to a prepare or accept we will not honour.
    pub(super) fn nack(&mut self, to: NodeId, ballot: Ballot, reason: NackReason) {
        let promised = self.promised;
        self.send(to, Message::Nack(Nack { ballot, promised, reason }));
    }
}
