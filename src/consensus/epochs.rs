//! A leader across configurations (`configuration`): the α window, phase 1
//! among the acceptors of a configuration that comes into force while it
//! leads, no-ops that bring a decided change into force on an idle cluster,
//! and handing leadership over when the next configuration has no place
//! for this node as a proposer.

use super::Replica;
use super::ballot::NodeId;
use super::election::Role;
use super::messages::{Message, Prepare, Promise, TimeoutNow};
use crate::state_machine::Slot;
use std::collections::BTreeSet;

impl Replica {
    /// Whether this leader may propose `slot` now. It must know the
    /// configuration that governs the slot (every slot up to `slot - α`
    /// applied) and hold promises for its ballot from a phase-1 quorum of
    /// it; otherwise it asks for them. A leader that is no proposer there
    /// proposes nothing new in it and hands over once its own slots are
    /// decided (`hand_over_if_out`). Safety needs only the quorum: a leader
    /// of the next configuration may finish the slots of the one before.
    pub(super) fn may_propose(&mut self, slot: Slot) -> bool {
        if slot >= self.applied.saturating_add(self.membership().current.alpha) {
            return false;
        }
        let config = self.membership().at(slot);
        let Role::Leader(ls) = &self.role else { return false };
        if !config.is_proposer(self.id()) && slot >= ls.recover_through {
            self.hand_over_if_out(slot);
            return false;
        }
        let promised: BTreeSet<NodeId> = ls.promised_by.keys().copied().collect();
        if config.phase1_quorum_in(&promised) {
            return true;
        }
        self.extend_phase1(slot);
        false
    }

    /// Whether this leader may confirm reads now, and from which slot on:
    /// it knows every configuration that governs the slots from its log's
    /// end to α past it (no change waits in its log) and holds a phase-1
    /// quorum of each, so no value can be chosen there at a lower ballot
    /// unseen; the heartbeat round then rules out higher ones. A read
    /// confirmed before the leader held the quorum of a configuration that
    /// came into view could miss what an older leader chose under it.
    pub(super) fn read_index(&mut self) -> Option<Slot> {
        let Role::Leader(ls) = &self.role else { return None };
        // Slots decided that this leader has not learned yet may hold a
        // change; so may the ones it proposes or recovered.
        let changing = self.commit_index < self.known_commit
            || ls.in_flight.values().any(|p| p.entry.changes_membership())
            || ls.recovered.values().any(|(_, e)| e.changes_membership())
            || self.log.range(self.applied..).any(|(_, s)| s.entry.changes_membership());
        if changing {
            return None;
        }
        // Recovered slots wait for the α window: the read must come after
        // them, as after every slot this leader proposed.
        let next = ls.next_slot.max(ls.recover_through);
        let promised: BTreeSet<NodeId> = ls.promised_by.keys().copied().collect();
        let membership = self.membership();
        let lacking = membership.configs().any(|c| !c.phase1_quorum_in(&promised));
        if lacking {
            // From the first slot not proposed yet: the promises count for
            // every later slot (`may_propose`), so none may go unreported,
            // recovered ones included.
            let first = ls.next_slot;
            let from = membership.pending.as_ref().map_or(first, |p| p.effective.max(first));
            self.extend_phase1(from);
            return None;
        }
        Some(next)
    }

    /// A change is decided but not in force, and `slot` is below its first
    /// slot: an idle leader proposes no-ops to bring it into force.
    pub(super) fn change_waits_for(&self, slot: Slot) -> bool {
        self.membership().pending.as_ref().is_some_and(|p| slot < p.effective)
    }

    /// Phase 1 for this leader's ballot among the acceptors of the
    /// configuration of `slot` that have not promised it yet, from `slot`
    /// on (every lower slot is governed by configurations it holds already).
    /// Asked again every `retransmit` ticks until a quorum has promised.
    fn extend_phase1(&mut self, slot: Slot) {
        let (now, retransmit) = (self.now, self.cfg.timing.retransmit);
        let acceptors: Vec<NodeId> = self.membership().at(slot).acceptors().collect();
        let Role::Leader(ls) = &mut self.role else { return };
        if ls.extension_sent.is_some_and(|at| now < at + retransmit) {
            return;
        }
        ls.extension_sent = Some(now);
        let prepare = Prepare { ballot: ls.ballot, first_slot: slot, transfer: false, rejoin: false };
        let missing: Vec<NodeId> = acceptors.into_iter().filter(|a| !ls.promised_by.contains_key(a)).collect();
        for acceptor in missing {
            self.send(acceptor, Message::Prepare(prepare.clone()));
        }
    }

    /// A promise for the ballot this node already leads with, from an
    /// acceptor asked by `extend_phase1`. Its votes for slots not proposed
    /// yet join what phase 1 recovered, the highest ballot winning per
    /// slot: a value chosen there was voted by one of a phase-1 quorum of
    /// that slot's configuration, and every vote at or above the ballot it
    /// was chosen at carries it.
    pub(super) fn on_extension_promise(&mut self, from: NodeId, p: Promise) {
        let Role::Leader(ls) = &self.role else { return };
        if p.ballot != ls.ballot || ls.promised_by.contains_key(&from) {
            return;
        }
        let mut promises = ls.promised_by.clone();
        promises.insert(from, p.without_values());
        let valid = self.valid_promisers(&promises);
        if !valid.contains(&from) {
            return;
        }
        for (slot, entry) in &p.decided {
            self.learn_decided(*slot, entry.clone());
        }
        let Role::Leader(ls) = &mut self.role else { return };
        promises.retain(|id, _| valid.contains(id));
        ls.promised_by = promises;
        // Every slot below the promiser's commit index is decided, and its
        // promise leaves those slots out: proposing one would overwrite a
        // chosen value the promise did not report. Skip them and learn
        // them from the promiser, as `become_leader` does.
        if p.commit_index > ls.next_slot {
            ls.next_slot = p.commit_index;
            ls.recovered = ls.recovered.split_off(&p.commit_index);
            self.known_commit = self.known_commit.max(p.commit_index);
            if self.commit_index < p.commit_index {
                self.request_catch_up(from);
            }
        }
        let Role::Leader(ls) = &mut self.role else { return };
        let next = ls.next_slot;
        for (slot, entry) in p.decided.into_iter().filter(|(s, _)| *s >= next) {
            ls.recovered.insert(slot, (None, entry));
            ls.recover_through = ls.recover_through.max(slot + 1);
        }
        for v in p.votes.into_iter().filter(|v| v.slot >= next) {
            let value = ls.recovered.entry(v.slot).or_insert((Some(v.ballot), v.entry.clone()));
            if value.0.is_some_and(|b| v.ballot > b) {
                *value = (Some(v.ballot), v.entry);
            }
            ls.recover_through = ls.recover_through.max(v.slot + 1);
        }
        self.advance_commit();
    }

    /// The configuration of `slot`, the next slot this leader would fill,
    /// has it as no proposer (it was removed or demoted). Once every slot
    /// it proposed is decided, ask the proposer of that configuration that
    /// answered most recently to campaign at once, and step down.
    pub(super) fn hand_over_if_out(&mut self, slot: Slot) {
        let me = self.id();
        if self.membership().at(slot).is_proposer(me) || self.commit_index < slot {
            return;
        }
        let proposers: Vec<NodeId> = self.membership().at(slot).proposers().filter(|p| *p != me).collect();
        let Role::Leader(ls) = &self.role else { return };
        let ballot = ls.ballot;
        let target =
            proposers.into_iter().max_by_key(|p| (ls.last_ack.get(p).copied().unwrap_or(0), std::cmp::Reverse(*p)));
        if let Some(target) = target {
            self.send(target, Message::TimeoutNow(TimeoutNow { ballot }));
        }
        self.step_down();
        self.no_campaign_before = self.now + self.cfg.timing.election_max;
    }
}
