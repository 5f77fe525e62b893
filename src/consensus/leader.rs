//! The proposer as leader: becoming leader from a phase-1 quorum, then
//! phase 2 pipelined (many slots in flight) and batched (many commands per
//! slot), with retransmission, heartbeats and check-quorum.

use super::ballot::{Ballot, NodeId};
use super::election::Role;
use super::messages::{Accept, Accepted, CatchUp, Heartbeat, HeartbeatReply, Message, Promise};
use super::records::Record;
use super::{Replica, SlotState};
use crate::state_machine::{ClientId, Command, Entry, Slot};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug)]
pub(crate) struct Proposal {
    pub(super) entry: Entry,
    votes: BTreeSet<NodeId>,
    sent_at: u64,
    /// `entry.wire_len()`, for the in-flight byte budget.
    bytes: usize,
}

#[derive(Debug)]
pub(crate) struct LeaderState {
    pub ballot: Ballot,
    pub next_slot: Slot,
    pub in_flight: BTreeMap<Slot, Proposal>,
    /// Commands waiting for a slot, and the ids of every command queued or
    /// in flight, so a retried command is not proposed twice. Each queued
    /// command carries its `wire_len`, measured once when it is queued.
    pub queue: VecDeque<(Command, usize)>,
    pub queued: BTreeSet<(ClientId, u64)>,
    /// Tick of the last reply from each member in this ballot.
    pub last_ack: BTreeMap<NodeId, u64>,
    pub since: u64,
    pub last_heartbeat: u64,
    pub announced_commit: Slot,
    /// Slots below this are re-proposed before any new command: with the
    /// value phase 1 found in `recovered`, a no-op where it found none.
    pub recover_through: Slot,
    /// The highest-ballot value phase 1 found per slot not re-proposed yet
    /// (`None` for a value known decided, which outranks every vote).
    pub recovered: BTreeMap<Slot, (Option<Ballot>, Entry)>,
    /// Valid promises for this ballot, without their votes: whose phase 1
    /// this leadership stands on, per configuration (`epochs`).
    pub promised_by: BTreeMap<NodeId, Promise>,
    /// When the acceptors of a configuration without a phase-1 quorum here
    /// were last asked to promise this ballot.
    pub extension_sent: Option<u64>,
    /// Each peer's commit index as its last heartbeat reply gave it: how
    /// far behind a learner is before an operator promotes it.
    pub peer_commit: BTreeMap<NodeId, Slot>,
}

impl Replica {
    pub(super) fn on_promise(&mut self, from: NodeId, p: Promise) {
        if !self.is_acceptor(from) || self.on_rejoin_promise(from, &p) {
            return;
        }
        if self.is_leader() {
            self.on_extension_promise(from, p);
            return;
        }
        let Role::Preparing(c) = &self.role else { return };
        if c.ballot != p.ballot {
            return;
        }
        let mut promises = c.promises.clone();
        promises.insert(from, p);
        let valid = self.valid_promisers(&promises);
        // The configuration in force; a pending one's acceptors are asked
        // before the leader proposes a slot it governs (`epochs`).
        let ready = self.membership().current.phase1_quorum_in(&valid);
        let Role::Preparing(c) = &mut self.role else { return };
        promises.retain(|id, _| valid.contains(id));
        c.promises = promises;
        if ready {
            self.become_leader();
        }
    }

    /// Phase 1 succeeded: re-propose, for every slot from the first one not
    /// known decided, the value of the highest-ballot vote in the promises,
    /// and fill holes with no-ops (Paxos Made Simple §3). Slots beyond the
    /// α window wait in `recovered` until the window reaches them.
    fn become_leader(&mut self) {
        let Role::Preparing(c) = std::mem::replace(&mut self.role, Role::Follower) else { return };
        let ballot = c.ballot;
        // Slots below every promiser's commit index are decided; learn them
        // from the most advanced promiser instead of proposing there.
        let (ahead, ahead_commit) =
            c.promises.iter().map(|(id, p)| (*id, p.commit_index)).max_by_key(|(_, ci)| *ci).unwrap_or((self.id(), 0));
        let start = self.commit_index.max(ahead_commit);
        let promised_by = c.promises.iter().map(|(id, p)| (*id, p.without_values())).collect();
        let mut values: BTreeMap<Slot, (Option<Ballot>, Entry)> = BTreeMap::new();
        for (slot, state) in self.log.range(start..) {
            if state.decided {
                values.insert(*slot, (None, state.entry.clone()));
            }
        }
        for p in c.promises.into_values() {
            for (slot, entry) in p.decided.into_iter().filter(|(s, _)| *s >= start) {
                self.learn_decided(slot, entry.clone());
                values.insert(slot, (None, entry));
            }
            for v in p.votes.into_iter().filter(|v| v.slot >= start) {
                let slot_value = values.entry(v.slot).or_insert((Some(v.ballot), v.entry.clone()));
                // `None` marks a decided value, which outranks every vote.
                if slot_value.0.is_some_and(|b| v.ballot > b) {
                    *slot_value = (Some(v.ballot), v.entry);
                }
            }
        }
        let next_slot = values.keys().next_back().map_or(start, |s| s + 1);
        self.role = Role::Leader(Box::new(LeaderState {
            ballot,
            next_slot: start,
            in_flight: BTreeMap::new(),
            queue: VecDeque::new(),
            queued: BTreeSet::new(),
            last_ack: BTreeMap::new(),
            since: self.now,
            last_heartbeat: self.now,
            announced_commit: self.commit_index,
            recover_through: next_slot,
            recovered: values,
            promised_by,
            extension_sent: None,
            peer_commit: BTreeMap::new(),
        }));
        self.leader = Some(self.id());
        self.leader_ballot = ballot;
        self.last_leader_contact = Some(self.now);
        self.backoff_attempts = 0;
        self.reads_on_become_leader();
        self.propose_queued();
        self.known_commit = self.known_commit.max(ahead_commit);
        if ahead_commit > self.commit_index && ahead != self.id() {
            self.send(ahead, Message::CatchUp(CatchUp { from_slot: self.commit_index, snapshot: None }));
            self.last_catch_up = Some(self.now);
        }
        self.broadcast_heartbeat(0);
        self.on_leader_change();
        self.advance_commit();
    }

    fn leader_state(&mut self) -> Option<&mut LeaderState> {
        match &mut self.role {
            Role::Leader(ls) => Some(ls),
            _ => None,
        }
    }

    /// Phase 2a for one slot, to every acceptor (this node included, through
    /// the runtime's loopback, so its own vote is durable before it counts).
    /// `bytes` is `entry.wire_len()`, which the caller has at hand.
    fn propose(&mut self, slot: Slot, entry: Entry, bytes: usize) {
        let now = self.now;
        let commit_index = self.commit_index;
        let Some(ls) = self.leader_state() else { return };
        let ballot = ls.ballot;
        ls.in_flight.insert(slot, Proposal { entry: entry.clone(), votes: BTreeSet::new(), sent_at: now, bytes });
        ls.next_slot = ls.next_slot.max(slot + 1);
        let accept = Accept { ballot, slot, entry, commit_index };
        let acceptors: Vec<NodeId> = self.membership().at(slot).acceptors().collect();
        for acceptor in acceptors {
            self.send(acceptor, Message::Accept(accept.clone()));
        }
    }

    /// Queue a client command for a slot unless it is already applied or queued.
    pub(super) fn leader_enqueue(&mut self, command: Command) {
        // Refused at submission; a forwarded one can only come from a node
        // configured with a larger limit, and must not wedge the pipeline.
        if self.kv.cached(command.client, command.seq).is_some() {
            return;
        }
        let bytes = command.wire_len();
        if bytes > self.cfg.tuning.max_command_bytes {
            return;
        }
        let Some(ls) = self.leader_state() else { return };
        if ls.queued.insert((command.client, command.seq)) {
            ls.queue.push_back((command, bytes));
        }
    }

    /// Fill the pipeline: first the slots phase 1 recovered, then up to
    /// `pipeline_depth` slots in flight, each carrying up to `max_batch`
    /// commands, and no-ops while an idle cluster has a change to bring
    /// into force. Under load the window is full and the queue grows, so
    /// batches grow by themselves. Every slot waits for the α window and a
    /// phase-1 quorum of its configuration (`may_propose`).
    /// Slots are also bounded in bytes (`max_batch_bytes`, at least one
    /// command each) and so is the whole window (`max_in_flight_bytes`), so
    /// every Accept, Promise and catch-up message fits a peer frame.
    pub(super) fn propose_queued(&mut self) {
        let tuning = &self.cfg.tuning;
        let (depth, max_batch) = (tuning.pipeline_depth, tuning.max_batch);
        let (batch_bytes, window_bytes) = (tuning.max_batch_bytes, tuning.max_in_flight_bytes);
        loop {
            let Some(ls) = self.leader_state() else { return };
            let slot = ls.next_slot;
            let recovering = slot < ls.recover_through;
            let queued = !ls.queue.is_empty();
            if !recovering && (ls.in_flight.len() >= depth || (!queued && !self.change_waits_for(slot))) {
                return;
            }
            if !self.may_propose(slot) {
                return;
            }
            let Some(ls) = self.leader_state() else { return };
            if recovering || !queued {
                let entry = ls.recovered.remove(&slot).map_or(Entry::Noop, |(_, e)| e);
                let bytes = entry.wire_len();
                self.propose(slot, entry, bytes);
                continue;
            }
            let in_flight: usize = ls.in_flight.values().map(|p| p.bytes).sum();
            let budget = batch_bytes.min(window_bytes.saturating_sub(in_flight));
            let (mut take, mut bytes) = (0, 0);
            for (_, len) in ls.queue.iter().take(max_batch) {
                let len = *len;
                if take > 0 && bytes + len > budget {
                    break;
                }
                take += 1;
                bytes += len;
            }
            if bytes > budget && !ls.in_flight.is_empty() {
                return; // the window is full in bytes: wait for a slot to be chosen
            }
            let commands: Vec<Command> = ls.queue.drain(..take).map(|(command, _)| command).collect();
            self.propose(slot, Entry::Batch { commands }, bytes);
        }
    }

    pub(super) fn on_accepted(&mut self, from: NodeId, a: Accepted) {
        let now = self.now;
        let membership = self.kv.membership().unwrap_or(&self.genesis);
        let Role::Leader(ls) = &mut self.role else { return };
        if a.ballot != ls.ballot || !membership.is_acceptor(from) {
            return;
        }
        ls.last_ack.insert(from, now);
        let Some(proposal) = ls.in_flight.get_mut(&a.slot) else { return };
        proposal.votes.insert(from);
        if membership.at(a.slot).phase2_quorum_in(&proposal.votes) {
            let Some(proposal) = ls.in_flight.remove(&a.slot) else { return };
            let ballot = ls.ballot;
            self.chosen(a.slot, ballot, proposal.entry);
        }
    }

    /// A phase-2 quorum voted: the value is chosen.
    fn chosen(&mut self, slot: Slot, ballot: Ballot, entry: Entry) {
        match self.log.get_mut(&slot) {
            // Our own vote for this very value is already in the log ahead of
            // the commit marker that will cover it.
            Some(state) if state.vote == Some(ballot) => state.decided = true,
            _ => self.learn_decided(slot, entry),
        }
        self.advance_commit();
    }

    /// Record a decision learned from someone else's votes.
    pub(super) fn learn_decided(&mut self, slot: Slot, entry: Entry) {
        if slot < self.log_start || self.log.get(&slot).is_some_and(|s| s.decided) {
            return;
        }
        let vote = self.log.get(&slot).and_then(|s| s.vote);
        self.persist(Record::Decided { slot, entry: entry.clone() });
        self.log.insert(slot, SlotState { vote, entry, decided: true });
    }

    pub(super) fn broadcast_heartbeat(&mut self, read_round: u64) {
        let now = self.now;
        let commit_index = self.commit_index;
        let Some(ls) = self.leader_state() else { return };
        ls.last_heartbeat = now;
        ls.announced_commit = commit_index;
        let heartbeat = Heartbeat { ballot: ls.ballot, commit_index, read_round };
        for peer in self.others() {
            self.send(peer, Message::Heartbeat(heartbeat.clone()));
        }
    }

    pub(super) fn tick_leader(&mut self) {
        let (now, timing) = (self.now, self.cfg.timing);
        let id = self.id();
        let Some(ls) = self.leader_state() else { return };
        ls.last_ack.insert(id, now);
        let due_heartbeat = now >= ls.last_heartbeat + timing.heartbeat;
        let mut resend = Vec::new();
        for (slot, p) in ls.in_flight.iter_mut() {
            if now >= p.sent_at + timing.retransmit {
                p.sent_at = now;
                resend.push((*slot, p.entry.clone(), p.votes.clone()));
            }
        }
        let (ballot, next_slot) = (ls.ballot, ls.next_slot);
        let checked = now >= ls.since + timing.election_min;
        let recent = ls.last_ack.iter().filter(|(_, t)| now - **t < timing.election_min).map(|(n, _)| *n).collect();
        // Against the configuration in force: acceptors a pending change
        // adds may still be catching up.
        if checked && !self.membership().current.phase2_quorum_in(&recent) {
            // Check-quorum: a leader that cannot reach a quorum steps down,
            // so clients stop waiting on it and a reachable node can lead.
            self.step_down();
            return;
        }
        // Removed or demoted by a change: an idle leader would otherwise
        // keep leading a cluster it is no proposer of.
        self.hand_over_if_out(next_slot);
        if !self.is_leader() {
            return;
        }
        let commit_index = self.commit_index;
        for (slot, entry, votes) in resend {
            let accept = Accept { ballot, slot, entry, commit_index };
            let acceptors: Vec<NodeId> = self.membership().at(slot).acceptors().collect();
            for acceptor in acceptors.into_iter().filter(|a| !votes.contains(a)) {
                self.send(acceptor, Message::Accept(accept.clone()));
            }
        }
        if due_heartbeat {
            let round = self.reads.round_sent;
            self.broadcast_heartbeat(round);
        }
    }

    /// After a step in which the commit index moved: tell followers at once
    /// (so they can apply and answer their clients), and push decided entries
    /// to learners that vote on nothing.
    pub(super) fn announce_commit(&mut self) {
        let commit_index = self.commit_index;
        let Some(ls) = self.leader_state() else { return };
        if ls.announced_commit >= commit_index {
            return;
        }
        let from = ls.announced_commit;
        let round = self.reads.round_sent;
        self.broadcast_heartbeat(round);
        let learners: Vec<NodeId> = self.others().into_iter().filter(|n| !self.is_acceptor(*n)).collect();
        // `Decided` numbers its entries from its first slot, so the run must
        // start where the log does: after installing a snapshot past the last
        // announced commit the log starts later. Learners missing the
        // compacted slots see the commit index, ask, and get the snapshot.
        let run = self.decided_run(from.max(self.log_start), self.cfg.tuning.catch_up_batch);
        if let Some(decided) = run.filter(|_| !learners.is_empty()) {
            for learner in learners {
                self.send(learner, Message::Decided(decided.clone()));
            }
        }
    }

    pub(super) fn on_heartbeat_reply(&mut self, from: NodeId, r: HeartbeatReply) {
        self.note_ballot(r.promised);
        let now = self.now;
        let Some(ls) = self.leader_state() else { return };
        if r.ballot != ls.ballot {
            return;
        }
        if !r.ok && r.promised > ls.ballot {
            self.step_down();
            return;
        }
        ls.last_ack.insert(from, now);
        ls.peer_commit.insert(from, r.commit_index);
        self.known_commit = self.known_commit.max(r.commit_index);
        if self.is_acceptor(from) {
            self.reads_ack(from, r.read_round);
        }
    }

    pub(super) fn on_heartbeat(&mut self, from: NodeId, hb: Heartbeat) {
        self.note_ballot(hb.ballot);
        let ok = hb.ballot >= self.promised;
        if ok {
            self.hear_from_leader(from, hb.ballot);
            self.learn_commit(from, hb.ballot, hb.commit_index);
        }
        if !self.is_voter() {
            // A node that may not vote must not count toward a leader's
            // check-quorum or confirm a linearizable read.
            return;
        }
        let reply = HeartbeatReply {
            ballot: hb.ballot,
            ok,
            read_round: hb.read_round,
            promised: self.promised,
            commit_index: self.commit_index,
        };
        self.send(from, Message::HeartbeatReply(reply));
    }
}
