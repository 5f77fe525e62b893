//! Quorum sizes. Majorities by default; flexible quorums (Howard, Malkhi,
//! Spiegelman, "Flexible Paxos", 2016) allowed when every phase-1 quorum
//! meets every phase-2 quorum: |Q1| + |Q2| > number of acceptors.

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorums {
    pub phase1: usize,
    pub phase2: usize,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuorumError {
    #[error("the cluster has no acceptors; at least one node must have the acceptor role")]
    NoAcceptors,
    #[error("quorum sizes must be at least 1 (phase 1 = {phase1}, phase 2 = {phase2})")]
    Empty { phase1: usize, phase2: usize },
    #[error("a quorum of {size} is larger than the {acceptors} acceptors")]
    TooLarge { size: usize, acceptors: usize },
    #[error(
        "phase-1 quorum {phase1} + phase-2 quorum {phase2} must exceed the {acceptors} acceptors, \
         or two leaders could both think they chose different values; raise one of them"
    )]
    NoIntersection { phase1: usize, phase2: usize, acceptors: usize },
}

impl Quorums {
    pub fn majority(acceptors: usize) -> Self {
        let q = acceptors / 2 + 1;
        Quorums { phase1: q, phase2: q }
    }

    /// Sizes from configuration (either may be omitted for a majority),
    /// validated against the number of acceptors.
    pub fn resolve(acceptors: usize, phase1: Option<usize>, phase2: Option<usize>) -> Result<Self, QuorumError> {
        if acceptors == 0 {
            return Err(QuorumError::NoAcceptors);
        }
        let majority = Self::majority(acceptors);
        let q = Quorums { phase1: phase1.unwrap_or(majority.phase1), phase2: phase2.unwrap_or(majority.phase2) };
        if q.phase1 == 0 || q.phase2 == 0 {
            return Err(QuorumError::Empty { phase1: q.phase1, phase2: q.phase2 });
        }
        for size in [q.phase1, q.phase2] {
            if size > acceptors {
                return Err(QuorumError::TooLarge { size, acceptors });
            }
        }
        if q.phase1 + q.phase2 <= acceptors {
            return Err(QuorumError::NoIntersection { phase1: q.phase1, phase2: q.phase2, acceptors });
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities_by_cluster_size() {
        for (n, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)] {
            assert_eq!(Quorums::resolve(n, None, None), Ok(Quorums { phase1: q, phase2: q }), "n = {n}");
        }
    }

    #[test]
    fn flexible_quorums_that_intersect_are_accepted() {
        for (n, q1, q2) in [(5, 4, 2), (5, 2, 4), (4, 3, 2), (3, 3, 1), (6, 5, 2)] {
            assert_eq!(Quorums::resolve(n, Some(q1), Some(q2)), Ok(Quorums { phase1: q1, phase2: q2 }));
        }
    }

    #[test]
    fn quorums_that_do_not_intersect_are_refused() {
        for (n, q1, q2) in [(5, 2, 3), (4, 2, 2), (3, 1, 2), (6, 3, 3)] {
            assert_eq!(
                Quorums::resolve(n, Some(q1), Some(q2)),
                Err(QuorumError::NoIntersection { phase1: q1, phase2: q2, acceptors: n })
            );
        }
        let msg = Quorums::resolve(4, Some(2), Some(2)).unwrap_err().to_string();
        assert!(msg.contains("must exceed the 4 acceptors"), "{msg}");
    }

    #[test]
    fn impossible_sizes_are_refused() {
        assert_eq!(Quorums::resolve(0, None, None), Err(QuorumError::NoAcceptors));
        assert_eq!(Quorums::resolve(3, Some(0), Some(3)), Err(QuorumError::Empty { phase1: 0, phase2: 3 }));
        assert_eq!(Quorums::resolve(3, Some(4), Some(2)), Err(QuorumError::TooLarge { size: 4, acceptors: 3 }));
    }
}
