//! Ballot numbers: (round, node id), compared round first.
//!
//! Paxos needs ballots that are totally ordered and unique per proposer
//! (Lamport, "Paxos Made Simple", §2.2). Pairing a round with the node id
//! gives both without the "counter × 100 + id" trick and its 100-node limit.

use serde::{Deserialize, Serialize};
use std::fmt;

pub type NodeId = u64;

/// A ballot. Field order matters: the derived `Ord` compares `round` first,
/// then `node`, so two proposers in the same round are still ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    /// Lower than every ballot a proposer can use (node ids start at 1).
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };

    pub fn new(round: u64, node: NodeId) -> Self {
        Ballot { round, node }
    }

    /// The smallest ballot of `node` that is above every round seen so far.
    /// Rounds above `provenance::MAX_ROUND` are refused on the way in, so the
    /// saturation is never reached in practice; it only keeps a bug from
    /// wrapping a ballot to round 0.
    pub fn next_after(max_round_seen: u64, node: NodeId) -> Self {
        Ballot { round: max_round_seen.saturating_add(1), node }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_compare_round_first_then_node() {
        let table = [
            (Ballot::new(1, 9), Ballot::new(2, 1)),
            (Ballot::new(3, 1), Ballot::new(3, 2)),
            (Ballot::ZERO, Ballot::new(0, 1)),
            (Ballot::new(7, 250), Ballot::new(8, 1)),
        ];
        for (low, high) in table {
            assert!(low < high, "{low} should be below {high}");
        }
    }

    #[test]
    fn more_than_a_hundred_nodes_keep_distinct_ordered_ballots() {
        let a = Ballot::next_after(4, 101);
        let b = Ballot::next_after(4, 199);
        assert_ne!(a, b);
        assert!(a < b);
        assert!(Ballot::next_after(5, 1) > b);
    }
}
