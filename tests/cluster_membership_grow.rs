//! Membership changes on real daemons over loopback SSH, each node a
//! `paxos serve` process and every change asked through the `paxos` CLI:
//! the cluster grows from 3 to 5 while a client writes, shrinks back to 3
//! (the leader among the removed), and a SIGKILLed member is replaced by a
//! fresh machine. No acknowledged write is lost in any of them.

mod support_cluster;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use support_cluster::*;

/// A client writing `w0`, `w1`, ... through the CLI until stopped (at most
/// `MAX_WRITES`), keeping the writes that were acknowledged.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(String, String)>>,
}

const MAX_WRITES: usize = 2000;

impl Writer {
    fn start(cluster: &Cluster) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (inventory, operator): (PathBuf, PathBuf) = (cluster.inventory.clone(), cluster.operator.clone());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0..MAX_WRITES {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let (key, value) = (format!("w{i}"), format!("v{i}"));
                let mut cmd = Command::new(PAXOS);
                cmd.arg("--cluster").arg(&inventory).arg("-i").arg(&operator).args(["put", &key, &value]);
                if run(cmd).code == Some(0) {
                    acked.push((key, value));
                }
            }
            acked
        });
        Writer { stop, thread }
    }

    fn finish(self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the writer thread")
    }
}

fn members(cluster: &Cluster) -> Vec<Value> {
    let out = cluster.cli(&["members", "--json"]);
    if out.code != Some(0) {
        return Vec::new();
    }
    out.json()["members"].as_array().cloned().unwrap_or_default()
}

fn roles_of(members: &[Value], name: &str) -> Option<String> {
    let m = members.iter().find(|m| m["name"] == name)?;
    let roles: Vec<&str> = m["roles"].as_array()?.iter().filter_map(Value::as_str).collect();
    Some(roles.join(","))
}

/// Runs a membership command through the CLI until it is accepted: a
/// change waits while another is pending, a promotion until the learner has
/// caught up. Returns the last output.
fn change(cluster: &Cluster, args: &[&str]) -> Out {
    eventually(
        &format!("paxos {args:?} to be accepted"),
        || {
            let out = cluster.cli(args);
            (out.code == Some(0)).then_some(out)
        },
        || cluster.logs(),
    )
}

fn add(cluster: &Cluster, id: u64) {
    let key = paxos::keys::load_private(&cluster.node(id).key).expect("the node's key");
    let line = paxos::keys::public_line(key.public_key());
    let addr = format!("127.0.0.1:{}", cluster.node(id).port);
    let (name, id) = (format!("node{id}"), id.to_string());
    let mut args = vec!["members", "add", &name, "--addr", &addr, "--id", &id, "--key"];
    args.extend(line.split(' '));
    change(cluster, &args);
}

/// Every acknowledged write reads back, linearizably, through the CLI.
fn assert_all_readable(cluster: &Cluster, acked: &[(String, String)]) {
    for (key, value) in acked {
        assert_eq!(cluster.get(key).as_deref(), Some(value.as_str()), "acknowledged {key}={value} lost");
    }
}

/// Waits until `id` has applied the write of `key` (a stale read there).
fn wait_learned(cluster: &Cluster, id: u64, key: &str, value: &str) {
    eventually(
        &format!("node {id} to have applied {key}"),
        || (cluster.get_stale_on(id, key).as_deref() == Some(value)).then_some(()),
        || cluster.logs(),
    );
}

#[test]
fn the_cluster_grows_from_three_to_five_under_writes_and_shrinks_back() {
    let mut cluster = Cluster::prepare_joining(3, 2);
    for id in 1..=3 {
        cluster.spawn(id);
    }
    for id in 1..=3 {
        cluster.wait_serving(id);
    }
    cluster.wait_for_leader();
    cluster.put("before", "growth");
    let writer = Writer::start(&cluster);

    // The new machines start from the same inventory and wait, learning,
    // until their addition is decided.
    for id in [4, 5] {
        cluster.spawn(id);
        cluster.wait_serving(id);
    }
    for id in [4, 5] {
        add(&cluster, id);
    }
    for name in ["node4", "node5"] {
        change(&cluster, &["members", "promote", name]);
    }
    let full = "proposer,acceptor,learner";
    eventually(
        "five members, all full",
        || {
            let listed = members(&cluster);
            let all = (1..=5).all(|id| roles_of(&listed, &format!("node{id}")).as_deref() == Some(full));
            (listed.len() == 5 && all).then_some(())
        },
        || cluster.logs(),
    );
    for id in [4, 5] {
        wait_learned(&cluster, id, "before", "growth");
    }

    // Shrink back to three, the leader among those removed.
    let (leader, _) = cluster.wait_for_leader();
    let mut removed = vec![leader];
    removed.extend((1..=5).filter(|id| *id != leader).take(1));
    for id in &removed {
        change(&cluster, &["members", "remove", &format!("node{id}")]);
    }
    let acked = writer.finish();
    eprintln!("{} writes acknowledged while the cluster grew and shrank", acked.len());
    assert!(acked.len() >= 10, "the writer made progress: {} writes acknowledged", acked.len());
    let stay: Vec<u64> = (1..=5).filter(|id| !removed.contains(id)).collect();
    eventually(
        "three members left",
        || {
            let listed = members(&cluster);
            let names: Vec<String> = stay.iter().map(|id| format!("node{id}")).collect();
            (listed.len() == 3 && names.iter().all(|n| roles_of(&listed, n).is_some())).then_some(())
        },
        || cluster.logs(),
    );
    // The removed nodes are stopped; the three left serve every write.
    for id in &removed {
        cluster.stop(*id);
    }
    cluster.put("after", "shrink");
    assert_all_readable(&cluster, &acked);
    assert_eq!(cluster.get("before").as_deref(), Some("growth"));
    for id in &stay {
        wait_learned(&cluster, *id, "after", "shrink");
    }
}

#[test]
fn a_sigkilled_member_is_replaced_by_a_fresh_machine() {
    let mut cluster = Cluster::prepare_joining(3, 1);
    for id in 1..=3 {
        cluster.spawn(id);
    }
    for id in 1..=3 {
        cluster.wait_serving(id);
    }
    let (leader, _) = cluster.wait_for_leader();
    let writer = Writer::start(&cluster);
    let dead = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(dead);

    // Removing it leaves two acceptors, both up: accepted once the leader
    // has seen it silent (a removal never counts on a node it cannot hear).
    change(&cluster, &["members", "remove", &format!("node{dead}")]);
    cluster.spawn(4);
    cluster.wait_serving(4);
    add(&cluster, 4);
    change(&cluster, &["members", "promote", "node4"]);
    let acked = writer.finish();
    eprintln!("{} writes acknowledged while a member was replaced", acked.len());
    assert!(!acked.is_empty(), "the writer made progress");
    let expected: Vec<u64> = (1..=4).filter(|id| *id != dead).collect();
    eventually(
        "the successor a full member in the dead node's place",
        || {
            let listed = members(&cluster);
            let ids: Vec<u64> = listed.iter().filter_map(|m| m["id"].as_u64()).collect();
            (ids == expected && roles_of(&listed, "node4").as_deref() == Some("proposer,acceptor,learner"))
                .then_some(())
        },
        || cluster.logs(),
    );

    // The successor votes: with the leader stopped, the two left elect one
    // of them and decide.
    let (leader, _) = cluster.wait_for_leader();
    cluster.stop(leader);
    cluster.put("replaced", "yes");
    assert_all_readable(&cluster, &acked);
    let survivors: Vec<u64> = expected.iter().copied().filter(|id| *id != leader).collect();
    for id in survivors {
        wait_learned(&cluster, id, "replaced", "yes");
    }
}
