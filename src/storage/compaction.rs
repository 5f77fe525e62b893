//! Which records a snapshot makes redundant. One function, used by both the
//! disk and the in-memory storage, so the simulation compacts exactly as a
//! real node does.

use crate::consensus::ballot::NodeId;
use crate::consensus::records::Record;
use crate::state_machine::Slot;
use std::collections::BTreeMap;

/// Whether `record` is about a slot that a snapshot through `through`
/// already covers (every slot below `through` is applied in it).
pub fn is_covered(record: &Record, through: Slot) -> bool {
    record.slot().is_some_and(|slot| slot < through)
}

/// The records that still matter once a snapshot through `through` is
/// durable, in an order that replays to the same state:
///
/// 1. the highest `Promised` and the highest `Campaigned` (a ballot only
///    ever rises, so the highest is all an acceptor or proposer needs);
/// 2. every `Accepted` and `Decided` for a slot at or above `through`, in
///    their original order (a later vote for a slot replaces an earlier
///    one on replay, so their order must not change);
/// 3. the last `Seen` of each node (with `others` set if any had it) and
///    the first `Joined`;
/// 4. the highest `Committed`, last. Moving it after votes that followed it
///    does not change which value it names: any vote a correct acceptor
///    casts for a slot after that slot is chosen carries the chosen value
///    (Paxos Made Simple, §2.2, P2c).
///
/// Compacting twice gives the same records as compacting once.
pub fn compact(records: &[Record], through: Slot) -> Vec<Record> {
    let mut promised = None;
    let mut campaigned = None;
    let mut committed = None;
    let mut votes_and_decisions = Vec::new();
    let mut seen: BTreeMap<NodeId, (u64, bool)> = BTreeMap::new();
    let mut joined = None;
    for record in records {
        match record {
            Record::Seen { node, incarnation, others } => {
                let sticky = seen.get(node).is_some_and(|(_, o)| *o);
                seen.insert(*node, (*incarnation, *others || sticky));
            }
            Record::Joined { how } => joined = joined.or(Some(*how)),
            Record::Promised { ballot } => promised = promised.max(Some(*ballot)),
            Record::Campaigned { ballot } => campaigned = campaigned.max(Some(*ballot)),
            Record::Committed { through } => committed = committed.max(Some(*through)),
            Record::Accepted { .. } | Record::Decided { .. } => {
                if !is_covered(record, through) {
                    votes_and_decisions.push(record.clone());
                }
            }
        }
    }
    let mut compacted = Vec::with_capacity(votes_and_decisions.len() + 3);
    compacted.extend(promised.map(|ballot| Record::Promised { ballot }));
    compacted.extend(campaigned.map(|ballot| Record::Campaigned { ballot }));
    compacted.append(&mut votes_and_decisions);
    compacted.extend(seen.into_iter().map(|(node, (incarnation, others))| Record::Seen { node, incarnation, others }));
    compacted.extend(joined.map(|how| Record::Joined { how }));
    compacted.extend(committed.map(|through| Record::Committed { through }));
    compacted
}

/// What a restarting replica learns from a snapshot point and the records
/// after it. Tests compare this before and after compaction.
#[cfg(test)]
pub(crate) mod meaning {
    use crate::consensus::ballot::Ballot;
    use crate::consensus::records::Record;
    use crate::state_machine::{Entry, Slot};
    use std::collections::BTreeMap;

    #[derive(Debug, Default, PartialEq)]
    pub struct DurableMeaning {
        pub promised: Option<Ballot>,
        pub campaigned: Option<Ballot>,
        /// The last vote per slot at or above the snapshot.
        pub votes: BTreeMap<Slot, (Ballot, Entry)>,
        pub decisions: BTreeMap<Slot, Entry>,
        pub committed: Option<Slot>,
        pub seen: BTreeMap<u64, (u64, bool)>,
        pub joined: Option<crate::consensus::records::JoinedHow>,
    }

    pub fn replay(through: Slot, records: &[Record]) -> DurableMeaning {
        let mut meaning = DurableMeaning::default();
        for record in records {
            match record {
                Record::Promised { ballot } => meaning.promised = meaning.promised.max(Some(*ballot)),
                Record::Campaigned { ballot } => meaning.campaigned = meaning.campaigned.max(Some(*ballot)),
                Record::Committed { through } => meaning.committed = meaning.committed.max(Some(*through)),
                Record::Accepted { slot, ballot, entry } if *slot >= through => {
                    meaning.votes.insert(*slot, (*ballot, entry.clone()));
                }
                Record::Decided { slot, entry } if *slot >= through => {
                    meaning.decisions.insert(*slot, entry.clone());
                }
                Record::Accepted { .. } | Record::Decided { .. } => {}
                Record::Seen { node, incarnation, others } => {
                    let sticky = meaning.seen.get(node).is_some_and(|(_, o)| *o);
                    meaning.seen.insert(*node, (*incarnation, *others || sticky));
                }
                Record::Joined { how } => meaning.joined = meaning.joined.or(Some(*how)),
            }
        }
        meaning
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::meaning::replay;
    use super::*;
    use crate::consensus::ballot::Ballot;
    use crate::state_machine::{Command, Entry, Op};

    pub(crate) fn put(slot: Slot) -> Entry {
        Entry::Batch {
            commands: vec![Command {
                client: 1,
                seq: slot,
                op: Op::Put { key: format!("k{slot}"), value: "v".into() },
            }],
        }
    }

    /// A history with every record kind: promises and campaigns that rise,
    /// re-votes for a slot at a higher ballot, decisions, commit markers.
    pub(crate) fn history() -> Vec<Record> {
        let b = Ballot::new;
        vec![
            Record::Promised { ballot: b(1, 1) },
            Record::Campaigned { ballot: b(1, 2) },
            Record::Accepted { slot: 0, ballot: b(1, 1), entry: put(0) },
            Record::Accepted { slot: 1, ballot: b(1, 1), entry: put(1) },
            Record::Committed { through: 1 },
            Record::Accepted { slot: 2, ballot: b(1, 1), entry: Entry::Noop },
            Record::Promised { ballot: b(3, 2) },
            Record::Accepted { slot: 2, ballot: b(3, 2), entry: put(2) },
            Record::Decided { slot: 3, entry: put(3) },
            Record::Committed { through: 3 },
            Record::Accepted { slot: 4, ballot: b(3, 2), entry: put(4) },
            Record::Campaigned { ballot: b(2, 2) },
            Record::Decided { slot: 5, entry: Entry::Noop },
            Record::Committed { through: 4 },
            Record::Accepted { slot: 6, ballot: b(3, 2), entry: put(6) },
            Record::Seen { node: 3, incarnation: 30, others: false },
            Record::Joined { how: crate::consensus::records::JoinedHow::Genesis },
            Record::Seen { node: 2, incarnation: 20, others: true },
            Record::Seen { node: 3, incarnation: 31, others: true },
            Record::Seen { node: 2, incarnation: 21, others: false },
            Record::Joined { how: crate::consensus::records::JoinedHow::Adopted },
        ]
    }

    #[test]
    fn compaction_keeps_the_highest_ballots_and_the_votes_and_decisions_at_or_above_the_snapshot() {
        let b = Ballot::new;
        assert_eq!(
            compact(&history(), 2),
            vec![
                Record::Promised { ballot: b(3, 2) },
                Record::Campaigned { ballot: b(2, 2) },
                Record::Accepted { slot: 2, ballot: b(1, 1), entry: Entry::Noop },
                Record::Accepted { slot: 2, ballot: b(3, 2), entry: put(2) },
                Record::Decided { slot: 3, entry: put(3) },
                Record::Accepted { slot: 4, ballot: b(3, 2), entry: put(4) },
                Record::Decided { slot: 5, entry: Entry::Noop },
                Record::Accepted { slot: 6, ballot: b(3, 2), entry: put(6) },
                Record::Seen { node: 2, incarnation: 21, others: true },
                Record::Seen { node: 3, incarnation: 31, others: true },
                Record::Joined { how: crate::consensus::records::JoinedHow::Genesis },
                Record::Committed { through: 4 },
            ]
        );
    }

    #[test]
    fn compaction_replays_to_the_same_meaning_at_every_snapshot_point() {
        let records = history();
        for through in 0..=8 {
            assert_eq!(replay(through, &compact(&records, through)), replay(through, &records), "through {through}");
        }
    }

    #[test]
    fn compacting_twice_changes_nothing() {
        for through in 0..=8 {
            let once = compact(&history(), through);
            assert_eq!(compact(&once, through), once, "through {through}");
        }
    }

    #[test]
    fn an_empty_log_compacts_to_nothing() {
        assert_eq!(compact(&[], 10), Vec::<Record>::new());
    }
}
