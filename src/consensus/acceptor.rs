//! The acceptor: phase 1b (promise) and phase 2b (vote), Paxos Made Simple §2.2.
//!
//! Both answers leave through `send_after_persist`: the promise or vote is on
//! disk before anyone can count on it.

use super::ballot::NodeId;
use super::messages::{Accept, Accepted, Message, NackReason, Prepare, Promise, Vote};
use super::records::Record;
use super::{Replica, SlotState};

impl Replica {
    pub(super) fn on_prepare(&mut self, from: NodeId, p: Prepare) {
        if !self.roles().acceptor {
            // Counted as an acceptor by the sender: this node's view of the
            // membership lags; fetch the log from it.
            self.request_catch_up(from);
            return;
        }
        self.note_ballot(p.ballot);
        if !self.is_voter() || !self.knows_proposer(from) {
            // Not admitted yet, or a proposer that has not introduced itself:
            // say nothing (it retries).
            return;
        }
        if p.ballot < self.promised {
            self.nack(from, p.ballot, NackReason::Preempted);
            return;
        }
        if p.ballot > self.promised {
            // Stickiness: while a leader is alive, refuse to help depose it,
            // unless the leader itself asked for the transfer.
            if !p.transfer && !p.rejoin && self.leader_alive_besides(from) {
                self.nack(from, p.ballot, NackReason::LeaderAlive);
                return;
            }
            self.promised = p.ballot;
            self.persist(Record::Promised { ballot: p.ballot });
            self.yield_to(p.ballot);
            // Give the candidate time to finish before campaigning ourselves.
            self.reset_election_timer();
        }
        // A prepare at the ballot already promised is a retransmission: answer again.
        let promise = self.build_promise(&p);
        self.send_vote(from, Message::Promise(promise));
    }

    fn build_promise(&self, p: &Prepare) -> Promise {
        let from_slot = p.first_slot.max(self.commit_index);
        let mut votes = Vec::new();
        let mut decided = Vec::new();
        for (slot, state) in self.log.range(from_slot..) {
            if state.decided {
                decided.push((*slot, state.entry.clone()));
            } else if let Some(ballot) = state.vote {
                votes.push(Vote { slot: *slot, ballot, entry: state.entry.clone() });
            }
        }
        Promise {
            ballot: p.ballot,
            votes,
            decided,
            commit_index: self.commit_index,
            incarnation: self.incarnation,
            known: self.known_incarnations(),
        }
    }

    pub(super) fn on_accept(&mut self, from: NodeId, a: Accept) {
        if !self.roles().acceptor {
            return;
        }
        self.note_ballot(a.ballot);
        if !self.is_voter() || !self.knows_proposer(from) {
            // Follow and learn, but cast no vote.
            if a.ballot >= self.promised {
                self.hear_from_leader(from, a.ballot);
                self.learn_commit(from, a.ballot, a.commit_index);
            }
            return;
        }
        if a.ballot < self.promised {
            self.nack(from, a.ballot, NackReason::Preempted);
            return;
        }
        // Accepting implies promising. The promise gets its own record: the
        // vote that implies it may be compacted away with its slot.
        if a.ballot > self.promised {
            self.promised = a.ballot;
            self.persist(Record::Promised { ballot: a.ballot });
        }
        self.hear_from_leader(from, a.ballot);
        let reply = Message::Accepted(Accepted { ballot: a.ballot, slot: a.slot });
        if a.slot < self.log_start {
            // Decided and folded into a snapshot already: the value proposed
            // is necessarily the chosen one, and the snapshot is durable. The
            // reply still waits for the promise it may have raised.
            self.send_vote(from, reply);
        } else {
            match self.log.get_mut(&a.slot) {
                Some(state) if state.decided => {
                    debug_assert_eq!(state.entry, a.entry, "a decided slot was proposed another value");
                    state.vote = Some(a.ballot);
                }
                _ => {
                    let state = SlotState { vote: Some(a.ballot), entry: a.entry.clone(), decided: false };
                    self.log.insert(a.slot, state);
                }
            }
            self.persist(Record::Accepted { slot: a.slot, ballot: a.ballot, entry: a.entry });
            self.send_vote(from, reply);
        }
        self.learn_commit(from, a.ballot, a.commit_index);
    }
}
