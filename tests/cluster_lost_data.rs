//! A node whose data directory is lost or copied, on real daemons over SSH.
//!
//! The defect this guards against: with one node down, two writes were
//! acknowledged by the other two; one of those lost its data directory and
//! restarted empty; with the first node back, the two elected a leader, one
//! of them having forgotten its votes, and reused the slots of the
//! acknowledged writes.

mod support_cluster;

use serde_json::Value;
use std::time::{Duration, Instant};
use support_cluster::{Cluster, eventually};

fn status_of(cluster: &Cluster, id: u64) -> Option<Value> {
    cluster.statuses().into_iter().find(|(i, _)| *i == id).and_then(|(_, s)| s)
}

#[test]
fn a_node_that_lost_its_data_directory_rejoins_without_losing_a_write() {
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader();
    let others: Vec<u64> = cluster.nodes.iter().map(|n| n.id).filter(|id| *id != leader).collect();
    let (down, wiped) = (others[0], others[1]);

    cluster.kill(down);
    cluster.put("a", "1");
    let last = cluster.put("b", "2");

    cluster.kill(wiped);
    std::fs::remove_dir_all(&cluster.node(wiped).data_dir).expect("remove the data directory");
    cluster.kill(leader);
    cluster.restart(down);
    cluster.restart(wiped);
    assert!(cluster.log(wiped).contains("new data directory"), "{}", cluster.log(wiped));

    // The node that lost its data learns from its peer that it had another
    // incarnation, and does not vote: the two cannot elect a leader (which
    // would reuse the slots of the acknowledged writes), however long we wait.
    eventually(
        "the wiped node to know it must rejoin",
        || status_of(&cluster, wiped).filter(|s| s["voting"].as_str().is_some_and(|v| v.starts_with("rejoining"))),
        || format!("{:?}", cluster.statuses()),
    );
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(4) {
        for (id, status) in cluster.statuses() {
            if let Some(s) = status {
                assert_ne!(
                    s["role"],
                    "leader",
                    "node {id} leads without the node that has the writes\n{}",
                    cluster.logs()
                );
                if id == wiped {
                    assert_ne!(s["voting"], "voter", "{}", cluster.logs());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // The node with the writes returns: the wiped node rejoins through it,
    // and every acknowledged write is there, on every node.
    cluster.restart(leader);
    eventually(
        "the wiped node to vote again",
        || status_of(&cluster, wiped).filter(|s| s["voting"] == "voter"),
        || cluster.logs(),
    );
    cluster.wait_for_leader();
    assert_eq!(cluster.get("a").as_deref(), Some("1"));
    assert_eq!(cluster.get("b").as_deref(), Some("2"));
    let after = cluster.put("c", "3");
    assert!(after > last, "slot {after} was used before ({last})");
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    cluster.wait_applied(&ids, after + 1);
    for id in ids {
        for (key, value) in [("a", "1"), ("b", "2"), ("c", "3")] {
            assert_eq!(cluster.get_stale_on(id, key).as_deref(), Some(value), "{key} on node {id}");
        }
    }
}

#[test]
fn a_data_directory_copied_from_another_node_is_refused() {
    let mut cluster = Cluster::start(3);
    cluster.put("k", "v");
    cluster.stop(1);
    cluster.stop(2);
    let (from, to) = (cluster.node(1).data_dir.clone(), cluster.node(2).data_dir.clone());
    std::fs::remove_dir_all(&to).unwrap();
    std::fs::create_dir(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    let copied_wal = std::fs::read(to.join("wal.log")).unwrap();

    cluster.spawn(2);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = cluster.exited(2) {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "node 2 did not refuse\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let log = cluster.log(2);
    assert!(log.contains("belongs to node 1 of cluster \"itest\", not to node 2"), "{log}");
    assert_eq!(std::fs::read(to.join("wal.log")).unwrap(), copied_wal, "the refused directory was changed");

    // With its own, empty, directory it starts, rejoins and catches up.
    std::fs::remove_dir_all(&to).unwrap();
    cluster.restart(1);
    cluster.spawn(2);
    eventually("node 2 to vote", || status_of(&cluster, 2).filter(|s| s["voting"] == "voter"), || cluster.logs());
    cluster.wait_for_leader();
    let slot = cluster.put("k2", "v2");
    cluster.wait_applied(&[1, 2, 3], slot + 1);
    assert_eq!(cluster.get_stale_on(2, "k").as_deref(), Some("v"));
}
