//! The vote ledger: every phase-2 proposal and vote that left a node, so
//! that a run can check Paxos's own definition of "chosen" instead of only
//! what replicas applied. A value is chosen in slot t once a phase-2 quorum
//! of the configuration governing t voted for it at one ballot; two such
//! quorums must never have chosen different values, whatever configurations
//! they came from.

use crate::consensus::ballot::{Ballot, NodeId};
use crate::consensus::configuration::{Configuration, Membership};
use crate::consensus::messages::{Envelope, Message};
use crate::state_machine::{Entry, KvStore, Slot};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub(super) struct VoteLedger {
    /// The value each ballot proposed in each slot.
    proposed: BTreeMap<(Slot, Ballot), Entry>,
    /// Who voted for it.
    votes: BTreeMap<(Slot, Ballot), BTreeSet<NodeId>>,
}

impl VoteLedger {
    /// Note a message as it leaves its sender. A ballot that proposes two
    /// values in one slot breaks Paxos at once.
    pub fn note(&mut self, env: &Envelope) -> Result<(), String> {
        match &env.msg {
            Message::Accept(a) => match self.proposed.get(&(a.slot, a.ballot)) {
                Some(e) if *e != a.entry => Err(format!(
                    "ballot {:?} proposed two values in slot {}: {:?} and {:?}",
                    a.ballot, a.slot, e, a.entry
                )),
                Some(_) => Ok(()),
                None => {
                    self.proposed.insert((a.slot, a.ballot), a.entry.clone());
                    Ok(())
                }
            },
            Message::Accepted(a) => {
                self.votes.entry((a.slot, a.ballot)).or_default().insert(env.from);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Replay the chosen log from `genesis` to find the configuration that
    /// governs each slot, and check that every value a quorum of that
    /// configuration voted for is the value chosen there.
    pub fn check(
        &self,
        chosen: &BTreeMap<Slot, Entry>,
        genesis: &Membership,
        max_sessions: usize,
    ) -> Result<(), String> {
        let mut store = KvStore::new(max_sessions);
        let mut slot: Slot = 0;
        let mut by_slot = self.votes.iter().peekable();
        while by_slot.peek().is_some() {
            let governing = store.membership().unwrap_or(genesis).at(slot).clone();
            let mut winners: Vec<(Ballot, &Entry, &BTreeSet<NodeId>)> = Vec::new();
            while let Some(((s, ballot), voters)) = by_slot.next_if(|((s, _), _)| *s <= slot) {
                if *s < slot {
                    continue;
                }
                if governing.phase2_quorum_in(voters) {
                    let Some(entry) = self.proposed.get(&(*s, *ballot)) else {
                        return Err(format!("slot {s}: votes at {ballot:?} for a value never proposed"));
                    };
                    winners.push((*ballot, entry, voters));
                }
            }
            let Some(decided) = chosen.get(&slot) else {
                // Past the end of what is known to be chosen: the
                // configurations further on are not known either.
                return disagreeing(slot, &governing, &winners);
            };
            if let Some((ballot, entry, voters)) = winners.iter().find(|(_, e, _)| *e != decided) {
                return Err(format!(
                    "slot {slot}: ballot {ballot:?} was chosen by {voters:?} (a phase-2 quorum of epoch {}) \
                     for {entry:?}, but {decided:?} is the value applied",
                    governing.epoch
                ));
            }
            for command in decided.commands() {
                store.apply_decided(slot, command, || genesis.clone());
            }
            slot += 1;
            store.settle_membership(slot);
        }
        Ok(())
    }
}

fn disagreeing(
    slot: Slot,
    governing: &Configuration,
    winners: &[(Ballot, &Entry, &BTreeSet<NodeId>)],
) -> Result<(), String> {
    match winners.split_first() {
        Some(((b0, e0, _), rest)) => match rest.iter().find(|(_, e, _)| e != e0) {
            Some((b1, e1, _)) => Err(format!(
                "slot {slot}: quorums of epoch {} chose {e0:?} at {b0:?} and {e1:?} at {b1:?}",
                governing.epoch
            )),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::config::Roles;
    use crate::consensus::configuration::{Member, MemberChange};
    use crate::consensus::messages::{Accept, Accepted};
    use crate::state_machine::{Command, Op};

    fn genesis(alpha: u64) -> Membership {
        let members = (1..=3).map(|id| (id, Member::with_roles(Roles::default()))).collect();
        Membership::new(Configuration {
            epoch: 0,
            members,
            phase1_quorum: None,
            phase2_quorum: None,
            retired: BTreeSet::new(),
            alpha,
        })
    }

    fn put(value: &str) -> Entry {
        Entry::Batch { commands: vec![Command { client: 1, seq: 1, op: Op::Propose { value: value.into() } }] }
    }

    fn change(change: MemberChange) -> Entry {
        Entry::Batch { commands: vec![Command { client: 2, seq: 1, op: Op::Reconfigure { change } }] }
    }

    fn vote(ledger: &mut VoteLedger, slot: Slot, ballot: Ballot, entry: &Entry, voters: &[NodeId]) {
        let accept = Accept { ballot, slot, entry: entry.clone(), commit_index: 0 };
        ledger.note(&Envelope { from: ballot.node, to: 1, msg: Message::Accept(accept) }).unwrap();
        for v in voters {
            let msg = Message::Accepted(Accepted { ballot, slot });
            ledger.note(&Envelope { from: *v, to: ballot.node, msg }).unwrap();
        }
    }

    #[test]
    fn a_ballot_proposing_two_values_in_one_slot_is_caught() {
        let mut ledger = VoteLedger::default();
        let b = Ballot::new(1, 1);
        vote(&mut ledger, 0, b, &put("a"), &[]);
        let twice = Accept { ballot: b, slot: 0, entry: put("b"), commit_index: 0 };
        let err = ledger.note(&Envelope { from: 1, to: 2, msg: Message::Accept(twice) }).unwrap_err();
        assert!(err.contains("two values in slot 0"), "{err}");
    }

    #[test]
    fn a_quorum_that_chose_another_value_than_the_one_applied_is_caught() {
        let mut ledger = VoteLedger::default();
        vote(&mut ledger, 0, Ballot::new(1, 1), &put("a"), &[1, 2]);
        vote(&mut ledger, 0, Ballot::new(2, 3), &put("b"), &[3]);
        let chosen: BTreeMap<Slot, Entry> = [(0, put("a"))].into();
        assert_eq!(ledger.check(&chosen, &genesis(4), 10), Ok(()));
        let other: BTreeMap<Slot, Entry> = [(0, put("b"))].into();
        let err = ledger.check(&other, &genesis(4), 10).unwrap_err();
        assert!(err.contains("slot 0") && err.contains("epoch 0"), "{err}");
    }

    /// After a change decided in slot 0 with α = 2, slot 2 belongs to
    /// {2, 3, 4}: {1, 2} is no quorum there, {3, 4} and {2, 4} are.
    #[test]
    fn quorums_are_counted_in_the_configuration_that_governs_the_slot() {
        let replace = MemberChange::Replace { remove: 1, id: 4, member: Member::with_roles(Roles::default()) };
        let mut ledger = VoteLedger::default();
        let first = change(replace);
        let second = change(MemberChange::Replace { remove: 2, id: 5, member: Member::with_roles(Roles::default()) });
        vote(&mut ledger, 0, Ballot::new(1, 1), &first, &[1, 2]);
        vote(&mut ledger, 1, Ballot::new(1, 1), &second, &[1, 2]);
        vote(&mut ledger, 2, Ballot::new(1, 1), &put("old"), &[1, 2]);
        let mut chosen: BTreeMap<Slot, Entry> = [(0, first.clone()), (1, second), (2, put("new"))].into();
        // Slot 1's change is refused (one at a time); slot 2 is governed by
        // {2, 3, 4}: {1, 2} is no quorum of it, so "old" was never chosen.
        assert_eq!(ledger.check(&chosen, &genesis(2), 10), Ok(()));
        vote(&mut ledger, 2, Ballot::new(2, 4), &put("new"), &[3, 4]);
        assert_eq!(ledger.check(&chosen, &genesis(2), 10), Ok(()));
        vote(&mut ledger, 2, Ballot::new(3, 4), &put("newer"), &[2, 4]);
        let err = ledger.check(&chosen, &genesis(2), 10).unwrap_err();
        assert!(err.contains("slot 2") && err.contains("epoch 1"), "{err}");
        chosen.insert(2, put("newer"));
        let err = ledger.check(&chosen, &genesis(2), 10).unwrap_err();
        assert!(err.contains("\"new\""), "the quorum of ballot 2 chose another value: {err}");
    }
}
