//! What a replica persists, and what it gets back after a restart.
//!
//! The core only describes records; `crate::storage` writes them. The rule
//! that makes Paxos survive crashes (Paxos Made Simple, §2.3: "an acceptor
//! must remember this information even if it fails and then restarts") is
//! enforced by the output type: a message that depends on a record leaves in
//! `Outputs::send_after_persist`, never before the record is durable.

use super::ballot::{Ballot, NodeId};
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
    /// This node heard `node` introduce itself as `incarnation` (a data
    /// directory's random identity). `others` is sticky: this node has
    /// also seen a different incarnation of `node`, so `node` once lost its
    /// data directory or was copied (see `membership`).
    Seen { node: NodeId, incarnation: u64, others: bool },
    /// This incarnation may promise and vote: it was there when the cluster
    /// began (genesis), or it was re-admitted after losing its data.
    Joined { how: JoinedHow },
}

/// How an incarnation became a voter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinedHow {
    /// Every other member answered that it had never seen another
    /// incarnation of this node: nothing this node could have forgotten.
    Genesis,
    /// It ran phase 1 with a quorum of the other acceptors and took their
    /// votes as its own (`membership::rejoin`).
    Rejoined { ballot: Ballot },
    /// The data directory predates incarnations: it kept its history.
    Adopted,
}

impl Record {
    /// Whether the batch holding this record must be fsynced before its
    /// messages leave. Everything but a commit marker: a lost marker is
    /// relearned from the leader after a restart, and nothing sent depends
    /// on it, so a batch of markers alone is appended and rides on the next
    /// sync (raft-rs's `must_sync`), saving one fsync per write on followers.
    pub fn must_sync(&self) -> bool {
        !matches!(self, Record::Committed { .. })
    }

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
    /// The data directory's incarnation: random, drawn when the directory
    /// was created, so a node that lost its data comes back as another
    /// incarnation that its peers can tell from the one they knew.
    pub incarnation: u64,
}
