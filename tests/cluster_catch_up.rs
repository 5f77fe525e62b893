//! A node far behind a compacted log catches up by snapshot over real SSH,
//! and the cluster stays available when it must then serve.

mod support_cluster;

use serde_json::json;
use support_cluster::Cluster;

#[test]
fn a_node_behind_a_compacted_log_catches_up_by_snapshot_and_can_lead() {
    let mut cluster = Cluster::prepare(3);
    // Snapshot every 20 slots and keep only 5 behind it, so a node that
    // misses 120 writes can only come back through a snapshot on the wire.
    cluster.set_consensus(json!({"tuning": {"snapshot_interval": 20, "log_retain": 5, "max_batch": 1}}));
    cluster.start_all();
    let (leader, _) = cluster.wait_for_leader();
    let behind = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();
    cluster.put("before", "the gap");
    cluster.kill(behind);

    let mut last = 0;
    for n in 0..120 {
        last = cluster.put(&format!("k{n}"), &format!("v{n}"));
    }
    assert!(
        cluster.logs().contains("snapshot saved"),
        "the live nodes should have compacted their logs\n{}",
        cluster.logs()
    );
    // Peers queue messages for a node that is down and deliver them when it
    // returns; restart them so that nothing but a snapshot can bring it back.
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    for id in ids.iter().copied().filter(|id| *id != behind) {
        cluster.kill(id);
        cluster.restart(id);
    }
    cluster.wait_for_leader();
    cluster.restart(behind);
    cluster.wait_applied(&ids, last + 1);
    for n in [0, 57, 119] {
        assert_eq!(cluster.get_stale_on(behind, &format!("k{n}")), Some(format!("v{n}")), "k{n} on node {behind}");
    }
    assert_eq!(cluster.get_stale_on(behind, "before").as_deref(), Some("the gap"));
    assert!(!cluster.log(behind).contains("malformed"), "{}", cluster.log(behind));

    // Now the node that caught up must carry the cluster with one other:
    // kill the leader; a leader is elected among the two left and commits.
    let (leader, _) = cluster.wait_for_leader();
    cluster.kill(leader);
    let (new_leader, _) = cluster.wait_for_leader();
    assert_ne!(new_leader, leader);
    let slot = cluster.put("after", "the failover");
    let alive: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    cluster.wait_applied(&alive, slot + 1);
    assert_eq!(cluster.get_stale_on(behind, "after").as_deref(), Some("the failover"));
}
