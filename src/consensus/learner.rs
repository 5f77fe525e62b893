//! The learner: which slots are decided, applying them in slot order exactly
//! once, catching up from peers by entries or by snapshot, and taking
//! snapshots so the log can be compacted.

use super::ballot::{Ballot, NodeId};
use super::messages::{CatchUp, Decided, Message};
use super::records::{Record, Snapshot};
use super::{AppliedEntry, Replica, Response};
use crate::state_machine::{Entry, Slot};

impl Replica {
    /// A leader at `ballot` says every slot below `commit` is decided. Our
    /// vote in such a slot is the chosen value exactly when it was cast at
    /// that same ballot (a leader proposes one value per slot per ballot);
    /// any other slot must be fetched.
    pub(super) fn learn_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        self.known_commit = self.known_commit.max(commit);
        let mut slot = self.commit_index;
        while slot < commit {
            match self.log.get_mut(&slot) {
                Some(state) if state.decided => {}
                Some(state) if state.vote == Some(ballot) => state.decided = true,
                _ => break,
            }
            slot += 1;
        }
        self.advance_commit();
        if self.commit_index < self.known_commit {
            self.request_catch_up(from);
        }
    }

    /// Move the commit index over every contiguous decided slot, and record
    /// the new index (after the records of the decisions it covers).
    pub(super) fn advance_commit(&mut self) {
        let before = self.commit_index;
        while self.log.get(&self.commit_index).is_some_and(|s| s.decided) {
            self.commit_index += 1;
        }
        if self.commit_index > before {
            self.known_commit = self.known_commit.max(self.commit_index);
            self.persist(Record::Committed { through: self.commit_index });
        }
    }

    pub(super) fn request_catch_up(&mut self, target: NodeId) {
        let due = self.last_catch_up.is_none_or(|t| self.now >= t + self.cfg.timing.retransmit);
        if due && target != self.id() {
            self.last_catch_up = Some(self.now);
            let snapshot = self.snapshot_cursor(target);
            self.send(target, Message::CatchUp(CatchUp { from_slot: self.commit_index, snapshot }));
        }
    }

    pub(super) fn tick_learner(&mut self) {
        if self.commit_index >= self.known_commit {
            self.poll_while_joining();
            return;
        }
        // The hint names a node outside this node's view that spoke for the
        // cluster: it serves a node that is no member in its own view yet
        // (a member asks members).
        if self.membership().is_member(self.id()) {
            self.catch_up_hint = None;
        }
        // A snapshot download goes on with the node that serves it.
        let downloading = self.snapshot_download_source();
        let leader = self.leader.filter(|l| *l != self.id());
        let target = match downloading.or(leader).or(self.catch_up_hint) {
            Some(source) => source,
            None => {
                let others = self.others();
                if others.is_empty() {
                    return;
                }
                others[self.rng.between(0, others.len() as u64 - 1) as usize]
            }
        };
        self.request_catch_up(target);
    }

    /// A node outside its own view of the configuration, never removed
    /// from it, waits to be added or lags behind its own addition: nothing
    /// may tell it how far the log goes (the leader that would is not in
    /// its view, or it lost a download in a crash), so it asks the last
    /// node outside its view that spoke for the cluster, or else a member.
    fn poll_while_joining(&mut self) {
        let me = self.id();
        let membership = self.membership();
        if membership.is_member(me) || membership.configs().any(|c| c.retired.contains(&me)) {
            self.catch_up_hint = None;
            return;
        }
        let members = membership.member_ids();
        let pick = self.rng.between(0, members.len().max(1) as u64 - 1) as usize;
        if let Some(target) = self.catch_up_hint.or(members.get(pick).copied()) {
            self.request_catch_up(target);
        }
    }

    /// No leader was heard for an election timeout and this node cannot
    /// campaign: ask a random member for the log once per timeout. The
    /// configuration may have moved on without it, so that it is the
    /// proposer everyone waits for and does not know it (it lost a
    /// download in a crash, and no leader is left to say how far the log
    /// goes).
    pub(super) fn poll_while_leaderless(&mut self) {
        self.reset_election_timer();
        let others = self.others();
        if !others.is_empty() {
            let target = others[self.rng.between(0, others.len() as u64 - 1) as usize];
            self.request_catch_up(target);
        }
    }

    pub(super) fn on_catch_up(&mut self, from: NodeId, m: CatchUp) {
        if m.from_slot >= self.commit_index {
            return;
        }
        if m.from_slot < self.log_start || m.snapshot.is_some() {
            // What the peer needs was compacted away here: send the state instead.
            self.send_snapshot_chunk(from, m.snapshot);
            return;
        }
        if let Some(decided) = self.decided_run(m.from_slot, self.cfg.tuning.catch_up_batch) {
            self.send(from, Message::Decided(decided));
        }
    }

    /// Up to `limit` decided entries (and `catch_up_bytes`) from `first_slot` on, contiguous (a
    /// `Decided` message names only its first slot, so a gap must end it);
    /// `None` if `first_slot` was compacted away here.
    pub(super) fn decided_run(&self, first_slot: Slot, limit: usize) -> Option<Decided> {
        if first_slot < self.log_start {
            return None;
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut bytes = 0;
        for (slot, state) in self.log.range(first_slot..self.commit_index).take(limit) {
            if *slot != first_slot + entries.len() as u64 || !state.decided {
                break;
            }
            // Bounded in bytes too, so the message fits a frame; the first
            // entry always goes (one slot is within `max_batch_bytes`).
            bytes += state.entry.wire_len();
            if !entries.is_empty() && bytes > self.cfg.tuning.catch_up_bytes {
                break;
            }
            entries.push(state.entry.clone());
        }
        Some(Decided { first_slot, entries, commit_index: self.commit_index })
    }

    pub(super) fn on_decided(&mut self, from: NodeId, m: Decided) {
        self.known_commit = self.known_commit.max(m.commit_index);
        let before = self.commit_index;
        for (slot, entry) in (m.first_slot..).zip(m.entries) {
            if slot >= self.commit_index {
                self.learn_decided(slot, entry);
            }
        }
        self.advance_commit();
        if self.commit_index > before && self.commit_index < self.known_commit {
            // Progress: ask for the next batch at once.
            self.last_catch_up = None;
            self.request_catch_up(from);
        }
    }

    /// Take `state` as the state machine after every slot below `through`,
    /// dropping the log it covers (undecided votes above it stay).
    pub(super) fn adopt_snapshot(&mut self, through: Slot, state: crate::state_machine::KvStore) {
        self.kv = state;
        self.applied = through;
        self.applied_bytes = 0;
        self.store_bytes_at_snapshot = self.kv.held_bytes();
        self.snapshot_through = through;
        self.log_start = through;
        self.log = self.log.split_off(&through);
        self.commit_index = self.commit_index.max(through);
        self.known_commit = self.known_commit.max(through);
    }

    /// Apply every decided slot not applied yet, in slot order.
    pub(super) fn apply_decided(&mut self) {
        self.announce_commit();
        while self.applied < self.commit_index {
            let slot = self.applied;
            let Some(state) = self.log.get(&slot) else { break };
            let entry = state.entry.clone();
            for command in entry.commands() {
                let genesis = &self.genesis;
                let applied = self.kv.apply_decided(slot, command, || genesis.clone());
                let response = Response::Applied { slot, result: applied.result };
                self.on_command_applied(command, response);
            }
            self.applied_bytes = self.applied_bytes.saturating_add(entry.held_bytes());
            self.out.applied.push(AppliedEntry { slot, entry });
            self.applied += 1;
            self.kv.settle_membership(self.applied);
        }
        self.maybe_snapshot();
    }

    /// Whether a snapshot is due: once per `snapshot_interval` slots, at a
    /// phase of its own per member (member i of n at slots congruent to
    /// i * interval / n), so the members of a cluster never all stall on
    /// writing a snapshot at the same slot; or sooner, once the entries
    /// applied since the last one hold `snapshot_bytes` times (n + i) / n,
    /// and at least as much as the store did then: a snapshot writes the
    /// whole store, so its cost stays in proportion to the writes.
    fn snapshot_due(&self) -> bool {
        let interval = u128::from(self.cfg.tuning.snapshot_interval.max(1));
        let members = &self.membership().current.members;
        let position = members.keys().position(|id| *id == self.id()).unwrap_or(0) as u128;
        let n = members.len().max(1) as u128;
        let phase = interval * position / n;
        let period = |slot: Slot| (u128::from(slot) + interval - phase) / interval;
        let bytes =
            (self.cfg.tuning.snapshot_bytes as u128 * (n + position) / n).max(self.store_bytes_at_snapshot as u128);
        period(self.applied) > period(self.snapshot_through) || self.applied_bytes as u128 >= bytes
    }

    fn maybe_snapshot(&mut self) {
        if !self.snapshot_due() {
            return;
        }
        let tuning = &self.cfg.tuning;
        self.snapshot_through = self.applied;
        self.applied_bytes = 0;
        self.store_bytes_at_snapshot = self.kv.held_bytes();
        self.out.snapshot = Some(Snapshot { through: self.applied, state: self.kv.clone() });
        let keep_from = self.applied.saturating_sub(tuning.log_retain);
        if keep_from > self.log_start {
            self.log = self.log.split_off(&keep_from);
            self.log_start = keep_from;
        }
        self.expire_snapshot_image();
    }
}
