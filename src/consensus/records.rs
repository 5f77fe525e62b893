//! What a replica persists, and what it gets back after a restart.
//!
//! The core only describes records; `crate::storage` writes them. The rule
//! that makes Paxos survive crashes (Paxos Made Simple, §2.3: "an acceptor
//! must remember this information even if it fails and then restarts") is
//! enforced by the output type: a message that depends on a record leaves in
//! `Outputs::send_after_persist`, never before the record is durable.

use super::ballot::Ballot;
use crate::state_machine::{Entry, KvStore, Slot};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The acceptor promised not to accept anything below this ballot.
    Promised { ballot: Ballot },
    /// The proposer is about to use this ballot; after a restart it must
    /// never campaign with it again (a pure proposer has no promise to tell it).
    Campaigned { ballot: Ballot },
    /// The acceptor voted for `entry` in `slot` at `ballot`.
    Accepted { slot: Slot, ballot: Ballot, entry: Entry },
    /// The learner learned `entry` was chosen in `slot` (from a peer).
    Decided { slot: Slot, entry: Entry },
    /// Every slot below `through` is chosen; where no `Decided` record says
    /// otherwise, the chosen value is this node's last `Accepted` vote.
    Committed { through: Slot },
}

impl Record {
    /// The slot a record is about, if it is about one.
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Record::Accepted { slot, .. } | Record::Decided { slot, .. } => Some(*slot),
            _ => None,
        }
    }
}

/// The state machine after applying every slot below `through`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub through: Slot,
    pub state: KvStore,
}

/// What storage hands back to a restarting replica: the newest snapshot and
/// every durable record after it, in the order they were written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovered {
    pub snapshot: Option<Snapshot>,
    pub records: Vec<Record>,
}
