//! Membership changes on real daemons over loopback, asked with the stock
//! OpenSSH client: a removal that would leave no live quorum is refused, a
//! learner is added and removed, and removing the leader moves leadership
//! to a node that stays, while acknowledged writes stay readable. (The node
//! added here never runs; `cluster_membership_grow` starts the added ones.)

mod support_cluster;

use serde_json::Value;
use support_cluster::*;

fn members(cluster: &Cluster, on: u64) -> Vec<Value> {
    let out = cluster.paxos_on(on, &["members", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    out.json()["members"].as_array().cloned().unwrap_or_default()
}

fn roles_of(members: &[Value], name: &str) -> Option<Vec<String>> {
    let m = members.iter().find(|m| m["name"] == name)?;
    Some(m["roles"].as_array()?.iter().filter_map(|r| r.as_str().map(String::from)).collect())
}

#[test]
fn operators_add_a_learner_and_remove_the_leader_over_openssh() {
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader();
    let followers: Vec<u64> = cluster.nodes.iter().map(|n| n.id).filter(|id| *id != leader).collect();
    let follower = followers[0];
    cluster.put("before", "one");

    // With one follower stopped, removing the other would leave the leader
    // alone among two acceptors: refused, with who is down.
    cluster.stop(followers[1]);
    let stopped = followers[1];
    eventually(
        "the leader to have heard nothing from the stopped follower for 2 s",
        || {
            let listed = members(&cluster, leader);
            let heard = listed.iter().find(|m| m["id"] == stopped)?["last_heard_ms"].as_u64()?;
            (heard > 2000).then_some(())
        },
        || cluster.logs(),
    );
    let out = cluster.paxos_on(leader, &["members", "remove", &format!("node{follower}")]);
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(out.stderr.contains("would not make a quorum"), "{}", out.show());
    assert!(out.stderr.contains(&format!("down: {stopped}")), "{}", out.show());
    cluster.spawn(followers[1]);
    cluster.wait_serving(followers[1]);
    cluster.wait_for_leader();

    // Add a learner, asked of a follower: the change goes through the log.
    let key_path = cluster.dir.path().join("keys").join("node4");
    let key = paxos::keys::generate_ed25519(&key_path, "node4").expect("a key for node4");
    let key_line = paxos::keys::public_line(&key);
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["members", "add", "node4", "--addr", &addr, "--key"];
    args.extend(key_line.split(' '));
    let out = cluster.paxos_on(leader, &args);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(out.stdout.contains("epoch 1"), "{}", out.show());
    let seen = eventually(
        "every node to list node4 as a learner",
        || {
            let all: Vec<Option<Vec<String>>> =
                cluster.nodes.iter().map(|n| roles_of(&members(&cluster, n.id), "node4")).collect();
            all.iter().all(|r| r.as_deref() == Some(&["learner".to_owned()][..])).then_some(all)
        },
        || cluster.logs(),
    );
    assert_eq!(seen.len(), 3);
    let listed = members(&cluster, follower);
    let node4 = listed.iter().find(|m| m["name"] == "node4").unwrap();
    assert_eq!((node4["id"].as_u64(), node4["address"].as_str()), (Some(4), Some(addr.as_str())));

    // A learner that never answered cannot be promoted without --force.
    let out = cluster.paxos_on(leader, &["members", "promote", "node4"]);
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(out.stderr.contains("has not answered the leader yet"), "{}", out.show());
    // A reader may list but not change.
    let out = cluster.ssh(leader, &cluster.reader, &["-s", "paxos", "members", "remove", "node4"]);
    assert_eq!(out.code, Some(3), "{}", out.show());

    // One change at a time: the next waits until the first is in force
    // (the leader fills α slots with no-ops to get there).
    let out = eventually(
        "the removal of node4 to be accepted once the addition is in force",
        || {
            let out = cluster.paxos_on(leader, &["members", "remove", "node4"]);
            (out.code == Some(0)).then_some(out)
        },
        || cluster.logs(),
    );
    assert!(out.stdout.contains("epoch 2"), "{}", out.show());

    // Remove the leader: it hands leadership to a node that stays.
    let leader_name = format!("node{leader}");
    let out = eventually(
        "the removal of the leader to be accepted",
        || {
            let out = cluster.paxos_on(leader, &["members", "remove", &leader_name]);
            (out.code == Some(0)).then_some(out)
        },
        || cluster.logs(),
    );
    assert!(out.stdout.contains("epoch 3"), "{}", out.show());
    let new_leader = eventually(
        "a new leader among the nodes that stay",
        || {
            let rows = cluster.statuses();
            rows.iter()
                .filter(|(id, _)| *id != leader)
                .find_map(|(id, s)| (s.as_ref()?["role"] == "leader").then_some(*id))
        },
        || cluster.logs(),
    );
    assert_ne!(new_leader, leader);
    let out = cluster.paxos_on(new_leader, &["put", "after", "two"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    let out = cluster.paxos_on(new_leader, &["get", "before"]);
    assert_eq!(out.stdout, "one\n", "{}", out.show());
    let listed = members(&cluster, new_leader);
    assert!(roles_of(&listed, &leader_name).is_none(), "the old leader is gone: {listed:?}");
    assert_eq!(listed.len(), 2, "{listed:?}");
}
