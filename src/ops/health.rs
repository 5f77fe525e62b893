//! Health: whether a node (`ssh NODE -s paxos health`) and a cluster
//! (`paxos health` over the inventory, in `crate::cli`) can serve. A node
//! is healthy when it knows a leader, reaches a quorum of acceptors (itself
//! included) and has applied what it knows is committed, up to a lag.

use super::api::{MemberInfo, NodeStatus, ReplicaRole};
use crate::consensus::ballot::NodeId;
use crate::state_machine::Slot;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Exit status of a health check that found a problem.
pub const EXIT_UNHEALTHY: i32 = 5;

/// The lag allowed by default, in slots.
pub const DEFAULT_MAX_LAG: u64 = 100;

/// One node's view of its own health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub healthy: bool,
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    pub role: ReplicaRole,
    pub leader: Option<NodeId>,
    /// Acceptors this node reaches, itself included.
    pub acceptors_connected: usize,
    pub acceptors: usize,
    /// Acceptors needed both to elect a leader and to commit.
    pub quorum: usize,
    pub commit_index: Slot,
    pub applied_index: Slot,
    /// Committed slots not applied yet.
    pub apply_lag: u64,
    pub max_lag: u64,
    pub last_heartbeat_age_ms: Option<u64>,
    /// One line each; empty when healthy.
    pub problems: Vec<String>,
}

/// A node's health from its status and members.
pub fn node_health(status: &NodeStatus, members: &[MemberInfo], quorum: usize, max_lag: u64) -> NodeHealth {
    let acceptor = |m: &&MemberInfo| m.roles.iter().any(|r| r == "acceptor");
    let acceptors = members.iter().filter(acceptor).count();
    let acceptors_connected = members.iter().filter(acceptor).filter(|m| m.connected).count();
    let apply_lag = status.commit_index.saturating_sub(status.applied_index);
    let who = format!("node {} ({})", status.id, status.name);
    let mut problems = Vec::new();
    if status.leader.is_none() {
        problems.push(format!("{who} sees no leader"));
    }
    if acceptors_connected < quorum {
        problems.push(format!(
            "{who} reaches {acceptors_connected} of {acceptors} acceptors (itself included); a quorum needs {quorum}"
        ));
    }
    if apply_lag > max_lag {
        problems.push(format!(
            "{who} has applied up to slot {}, {apply_lag} slots behind its commit index {} (limit {max_lag})",
            status.applied_index, status.commit_index
        ));
    }
    NodeHealth {
        healthy: problems.is_empty(),
        id: status.id,
        name: status.name.clone(),
        address: status.address.clone(),
        roles: status.roles.clone(),
        role: status.role,
        leader: status.leader,
        acceptors_connected,
        acceptors,
        quorum,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        apply_lag,
        max_lag,
        last_heartbeat_age_ms: status.last_heartbeat_age_ms,
        problems,
    }
}

pub fn node_health_text(h: &NodeHealth) -> String {
    if !h.healthy {
        return h.problems.iter().map(|p| format!("{p}\n")).collect();
    }
    let leader = h.leader.map_or_else(|| "none".to_owned(), |l| l.to_string());
    format!(
        "healthy: node {} ({}) is {}, leader {leader}, reaches {} of {} acceptors (quorum {}), commit {}, applied {}\n",
        h.id, h.name, h.role, h.acceptors_connected, h.acceptors, h.quorum, h.commit_index, h.applied_index
    )
}

/// A node of the inventory as the cluster check found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCheck {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    /// Whether the node is one of those checked (`--node`), not only asked.
    pub checked: bool,
    /// The node's answer, or why there is none.
    pub health: Result<NodeHealth, String>,
}

/// The whole check: problems one line each, and figures for `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHealth {
    pub healthy: bool,
    pub leader: Option<NodeId>,
    /// The highest commit index any node reported: lag is measured from it.
    pub commit_index: Slot,
    pub max_lag: u64,
    pub nodes: Vec<NodeCheck>,
    pub problems: Vec<String>,
}

/// Judge the cluster from every node's answer. `quorum` is the number of
/// acceptors needed, from the inventory.
pub fn cluster_health(nodes: Vec<NodeCheck>, quorum: usize, max_lag: u64) -> ClusterHealth {
    let up = |n: &&NodeCheck| n.health.is_ok();
    let commit_index = nodes.iter().filter_map(|n| n.health.as_ref().ok()).map(|h| h.commit_index).max().unwrap_or(0);
    let mut problems = Vec::new();
    for node in nodes.iter().filter(|n| n.checked) {
        match &node.health {
            Err(e) => problems.push(format!("node {} ({} at {}) is down: {e}", node.id, node.name, node.address)),
            Ok(h) => {
                problems.extend(h.problems.iter().cloned());
                let lag = commit_index - h.commit_index.min(commit_index);
                if lag > max_lag {
                    problems.push(format!(
                        "node {} ({}) is {lag} slots behind: commit index {} of {commit_index} (limit {max_lag})",
                        node.id, node.name, h.commit_index
                    ));
                }
            }
        }
    }
    // Which leader each checked node that is up believes in.
    let mut views: Vec<(Option<NodeId>, Vec<NodeId>)> = Vec::new();
    for node in nodes.iter().filter(|n| n.checked) {
        let Ok(h) = &node.health else { continue };
        match views.iter_mut().find(|(leader, _)| *leader == h.leader) {
            Some((_, ids)) => ids.push(node.id),
            None => views.push((h.leader, vec![node.id])),
        }
    }
    let leaders: Vec<NodeId> = views.iter().filter_map(|(l, _)| *l).collect();
    if leaders.len() > 1 {
        let mut line = String::from("the nodes disagree on the leader:");
        for (i, (leader, ids)) in views.iter().filter(|(l, _)| l.is_some()).enumerate() {
            let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
            let leader = leader.map_or_else(String::new, |l| l.to_string());
            let _ = write!(line, "{} node(s) {} say {leader}", if i == 0 { "" } else { ";" }, ids.join(", "));
        }
        problems.push(line);
    }
    let leader = if leaders.len() == 1 { Some(leaders[0]) } else { None };
    if let Some(leader) = leader
        && let Some(node) = nodes.iter().find(|n| n.id == leader)
        && node.health.is_err()
    {
        problems.push(format!("the leader the nodes name, node {leader} ({}), does not answer", node.name));
    }
    let acceptor = |n: &&NodeCheck| n.roles.iter().any(|r| r == "acceptor");
    let acceptors = nodes.iter().filter(acceptor).count();
    let acceptors_up = nodes.iter().filter(acceptor).filter(up).count();
    if acceptors_up < quorum {
        problems.push(format!("only {acceptors_up} of {acceptors} acceptors answer; a quorum needs {quorum}"));
    }
    ClusterHealth { healthy: problems.is_empty(), leader, commit_index, max_lag, nodes, problems }
}

pub fn cluster_health_text(h: &ClusterHealth) -> String {
    if !h.healthy {
        return h.problems.iter().map(|p| format!("{p}\n")).collect();
    }
    let checked: Vec<&NodeCheck> = h.nodes.iter().filter(|n| n.checked).collect();
    let leader = h.leader.map_or_else(|| "none".to_owned(), |l| l.to_string());
    let lag = checked
        .iter()
        .filter_map(|n| n.health.as_ref().ok())
        .map(|n| h.commit_index - n.commit_index.min(h.commit_index))
        .max()
        .unwrap_or(0);
    format!(
        "healthy: {} node(s) checked, all up; leader {leader}; commit index {}; largest lag {lag} slots (limit {})\n",
        checked.len(),
        h.commit_index,
        h.max_lag
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests::{member, status};

    fn check(id: NodeId, leader: Option<NodeId>, commit: Slot) -> NodeCheck {
        let mut s = status(leader, commit);
        s.id = id;
        s.name = format!("node{id}");
        s.applied_index = commit;
        let members: Vec<MemberInfo> = (1..=3).map(|m| member(m, leader)).collect();
        NodeCheck {
            id,
            name: s.name.clone(),
            address: format!("127.0.0.1:710{id}"),
            roles: vec!["acceptor".into()],
            checked: true,
            health: Ok(node_health(&s, &members, 2, 10)),
        }
    }

    #[test]
    fn disagreement_lag_and_a_missing_leader_are_each_one_line() {
        let healthy = cluster_health(vec![check(1, Some(1), 50), check(2, Some(1), 50), check(3, Some(1), 45)], 2, 10);
        assert!(healthy.healthy, "{:?}", healthy.problems);
        assert_eq!(healthy.leader, Some(1));
        assert!(cluster_health_text(&healthy).contains("largest lag 5 slots (limit 10)"));

        let split = cluster_health(vec![check(1, Some(1), 50), check(2, Some(2), 50), check(3, Some(1), 50)], 2, 10);
        assert_eq!(split.problems, ["the nodes disagree on the leader: node(s) 1, 3 say 1; node(s) 2 say 2"]);
        assert_eq!(split.leader, None);

        let lagging =
            cluster_health(vec![check(1, Some(1), 500), check(2, Some(1), 500), check(3, Some(1), 20)], 2, 10);
        assert_eq!(lagging.problems, ["node 3 (node3) is 480 slots behind: commit index 20 of 500 (limit 10)"]);
        let only_two = cluster_health(
            vec![check(1, Some(1), 500), check(2, Some(1), 500), NodeCheck { checked: false, ..check(3, Some(1), 20) }],
            2,
            10,
        );
        assert!(only_two.healthy, "an unchecked node's lag is not a problem: {:?}", only_two.problems);

        let mut leaderless = check(2, None, 50);
        if let Ok(h) = &mut leaderless.health {
            let mut s = status(None, 50);
            s.id = 2;
            s.name = "node2".into();
            s.applied_index = 30;
            *h = node_health(&s, &[member(1, None), member(2, None)], 2, 10);
        }
        let h = cluster_health(vec![check(1, Some(1), 50), leaderless], 2, 10);
        assert_eq!(
            h.problems,
            [
                "node 2 (node2) sees no leader",
                "node 2 (node2) has applied up to slot 30, 20 slots behind its commit index 50 (limit 10)"
            ]
        );
    }
}
