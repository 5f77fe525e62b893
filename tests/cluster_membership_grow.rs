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
    members_from(cluster.cli(&["members", "--json"]))
}

/// As node `id` lists them (a removed node that no member talks to any
/// more keeps the view it had).
fn members_on(cluster: &Cluster, id: u64) -> Vec<Value> {
    members_from(cluster.paxos_on(id, &["members", "--json"]))
}

fn members_from(out: Out) -> Vec<Value> {
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

/// Three seed nodes serving, and `joining` more prepared (not started).
fn seed_started(joining: u64) -> Cluster {
    let mut cluster = Cluster::prepare_joining(3, joining);
    for id in 1..=3 {
        cluster.spawn(id);
    }
    for id in 1..=3 {
        cluster.wait_serving(id);
    }
    cluster
}

#[test]
fn the_cluster_grows_from_three_to_five_under_writes_and_shrinks_back() {
    let mut cluster = seed_started(2);
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
            let listed = members_on(&cluster, stay[0]);
            let names: Vec<String> = stay.iter().map(|id| format!("node{id}")).collect();
            (listed.len() == 3 && names.iter().all(|n| roles_of(&listed, n).is_some())).then_some(())
        },
        || cluster.logs(),
    );
    // A removed node that knows it answers a command at once with the
    // reason (exit 4: the CLI moves on to the next node), rather than let it
    // time out. The removed nodes are then stopped; the three left serve
    // every write.
    for id in &removed {
        let out = eventually(
            &format!("node {id} to refuse commands as removed"),
            || {
                let out = cluster.paxos_on(*id, &["put", "to-removed", "x"]);
                out.stderr.contains("removed from the cluster").then_some(out)
            },
            || cluster.logs(),
        );
        assert_eq!(out.code, Some(4), "{}", out.show());
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
    let mut cluster = seed_started(1);
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

/// `--join 127.0.0.1:PORT --seed-key "ssh-ed25519 ..."` towards node `seed`.
fn join_args(cluster: &Cluster, seed: u64, key_of: u64) -> (String, String) {
    let key = paxos::keys::load_private(&cluster.node(key_of).key).expect("a node key");
    (format!("127.0.0.1:{}", cluster.node(seed).port), paxos::keys::public_line(key.public_key()))
}

#[test]
fn a_new_machine_joins_with_one_members_address_and_comes_back_after_losing_its_data() {
    let mut cluster = Cluster::start(3);
    cluster.put("before", "joining");
    cluster.new_machine(4);
    let (seed, seed_key) = join_args(&cluster, 1, 1);

    // A member's host key other than the pinned one stops it, with the reason.
    let (_, wrong_key) = join_args(&cluster, 1, 2);
    let mut serve = Command::new(PAXOS);
    serve.arg("serve").arg("--config").arg(&cluster.node(4).config);
    serve.args(["--join", &seed, "--seed-key", &wrong_key]);
    let out = run(serve);
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(out.stderr.contains("the member given to --join") && out.stderr.contains("pins"), "{}", out.show());
    // An unusable --seed-key is refused before anything is dialed.
    let mut serve = Command::new(PAXOS);
    serve.arg("serve").arg("--config").arg(&cluster.node(4).config);
    serve.args(["--join", &seed, "--seed-key", "ssh-ed25519 not-a-key"]);
    let out = run(serve);
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(out.stderr.contains("--seed-key") && out.stderr.contains("neither"), "{}", out.show());

    // Started before its addition: it waits, then joins once it is added.
    cluster.spawn_with_args(4, &["--join", &seed, "--seed-key", &seed_key]);
    eventually(
        "the joiner to wait for its addition",
        || cluster.log(4).contains("waiting: run `paxos members add`").then_some(()),
        || cluster.logs(),
    );
    add(&cluster, 4);
    cluster.wait_serving(4);
    let written = std::fs::read_to_string(cluster.dir.path().join("node4-cluster.json")).expect("the cluster file");
    let inventory: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(inventory["all"]["hosts"]["node4"]["paxos_join"], true, "{written}");
    assert_eq!(inventory["all"]["hosts"].as_object().unwrap().len(), 4, "{written}");
    wait_learned(&cluster, 4, "before", "joining");
    change(&cluster, &["members", "promote", "node4"]);

    // Restarted, it starts from the cluster file it wrote.
    cluster.kill(4);
    cluster.spawn_with_args(4, &["--join", &seed, "--seed-key", &seed_key]);
    cluster.wait_serving(4);
    assert_eq!(cluster.log(4).matches("joined: wrote the live inventory").count(), 1, "{}", cluster.log(4));

    // It loses its data directory: it comes back under the same id and
    // learns everything again, and the cluster never stopped deciding.
    cluster.kill(4);
    std::fs::remove_dir_all(&cluster.node(4).data_dir).unwrap();
    cluster.put("while", "wiped");
    cluster.spawn_with_args(4, &["--join", &seed, "--seed-key", &seed_key]);
    cluster.wait_serving(4);
    wait_learned(&cluster, 4, "while", "wiped");
    wait_learned(&cluster, 4, "before", "joining");
    let listed = members(&cluster);
    assert_eq!(roles_of(&listed, "node4").as_deref(), Some("proposer,acceptor,learner"), "{listed:?}");
    // It votes again only after the rejoin: phase 1 with a quorum of the
    // other acceptors of the configuration it learned.
    eventually(
        "node 4 to have rejoined",
        || {
            let out = cluster.paxos_on(4, &["status", "--json"]);
            (out.code == Some(0) && out.json()["voting"] == "voter").then_some(())
        },
        || cluster.logs(),
    );
    // And it votes: of four acceptors three must vote, so with a seed
    // node stopped nothing is decided without node 4. (The CLI's
    // inventory is the seed one: it lists nodes 1-3, and the leader may be 4.)
    let leader = eventually(
        "a leader the seed nodes know",
        || cluster.statuses().iter().find_map(|(_, s)| s.as_ref()?["leader"].as_u64()),
        || cluster.logs(),
    );
    let other = (1..=3).find(|id| *id != leader).unwrap();
    cluster.stop(other);
    cluster.put("after", "rejoin");
    wait_learned(&cluster, 4, "after", "rejoin");
}
