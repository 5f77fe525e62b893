//! Rebuilding a replica from durable state after a restart.

use super::records::{Record, Recovered};
use super::{Replica, SlotState};
use crate::state_machine::Slot;

impl Replica {
    /// Replay the snapshot and the records after it, in the order written.
    /// Promises and votes come back exactly; decided slots come back from
    /// `Decided` records, or from votes covered by a `Committed` marker
    /// (written only after the vote it covers, so a prefix of the log that
    /// holds the marker holds the vote too).
    pub(super) fn restore(&mut self, recovered: Recovered) {
        if let Some(snapshot) = recovered.snapshot {
            self.adopt_snapshot(snapshot.through, snapshot.state);
        }
        let mut committed_through: Slot = 0;
        for record in recovered.records {
            match record {
                Record::Promised { ballot } => self.promised = self.promised.max(ballot),
                Record::Campaigned { ballot } => self.note_ballot(ballot),
                Record::Accepted { slot, ballot, entry } => {
                    self.promised = self.promised.max(ballot);
                    if slot < self.log_start {
                        continue;
                    }
                    match self.log.get_mut(&slot) {
                        Some(state) if state.decided => state.vote = Some(ballot),
                        _ => {
                            self.log.insert(slot, SlotState { vote: Some(ballot), entry, decided: false });
                        }
                    }
                }
                Record::Decided { slot, entry } => {
                    if slot >= self.log_start {
                        let vote = self.log.get(&slot).and_then(|s| s.vote);
                        self.log.insert(slot, SlotState { vote, entry, decided: true });
                    }
                }
                Record::Committed { through } => committed_through = committed_through.max(through),
                Record::Seen { node, incarnation, others } => {
                    let sticky = self.seen.get(&node).is_some_and(|(_, o)| *o);
                    self.seen.insert(node, (incarnation, others || sticky));
                }
                Record::Joined { .. } => self.voting = super::membership::Voting::Voter,
            }
        }
        self.note_ballot(self.promised);
        let mut slot = self.commit_index;
        while slot < committed_through {
            match self.log.get_mut(&slot) {
                Some(state) if state.decided || state.vote.is_some() => state.decided = true,
                _ => break,
            }
            slot += 1;
        }
        while self.log.get(&self.commit_index).is_some_and(|s| s.decided) {
            self.commit_index += 1;
        }
        self.known_commit = self.commit_index;
        self.apply_decided();
        // Nothing from replay goes out: it was all persisted and sent before.
        self.out = Default::default();
    }
}
