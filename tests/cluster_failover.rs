//! Three real `paxos serve` daemons on 127.0.0.1 talking over SSH: the first
//! election, commits applied everywhere, a SIGKILLed leader replaced, a
//! restarted node catching up, and a planned leadership transfer.

mod support_cluster;

use serde_json::Value;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support_cluster::*;

#[test]
fn first_leader_is_elected_from_a_cold_start_over_ssh() {
    let cluster = Cluster::start(3);
    let (leader, ballot) = cluster.wait_for_leader();
    // A leader's ballot is its own, from a round it campaigned in.
    assert_eq!(ballot.node, leader, "{ballot:?}");
    assert!(ballot.round >= 1, "{ballot:?}");

    // Every node names the same leader when asked on its own.
    for node in &cluster.nodes {
        let out = cluster.paxos_on(node.id, &["leader", "--json"]);
        assert_eq!(out.code, Some(0), "{}", out.show());
        assert_eq!(out.json()["leader"].as_u64(), Some(leader), "node {}: {}", node.id, out.show());
    }
    // The leader reaches both peers over its paxos-peer links.
    eventually(
        "the leader to see every peer connected",
        || {
            let out = cluster.paxos_on(leader, &["members", "--json"]);
            let members = out.json()["members"].as_array().cloned().unwrap_or_default();
            (members.len() == 3 && members.iter().all(|m| m["connected"] == Value::Bool(true))).then_some(())
        },
        || cluster.logs(),
    );
    let followers: Vec<u64> = cluster.nodes.iter().map(|n| n.id).filter(|id| *id != leader).collect();
    for id in followers {
        assert!(
            cluster.log(id).contains(&format!("node {leader} at 127.0.0.1:")),
            "node {id} never accepted a paxos-peer channel from the leader\n{}",
            cluster.logs()
        );
    }
}

#[test]
fn commands_commit_and_every_node_applies_them() {
    let cluster = Cluster::start(3);

    let out = cluster.cli_ok(&["put", "greeting", "hello", "world"]);
    assert!(out.stdout.starts_with("greeting set (it was absent); slot "), "{}", out.show());
    let first = cluster.put("colour", "blue");
    let second = cluster.put("colour", "green");
    assert!(second > first, "slots {first} then {second}");
    let out = cluster.cli_ok(&["cas", "colour", "green", "red", "--json"]);
    assert_eq!(out.json()["swapped"], Value::Bool(true), "{}", out.show());
    let out = cluster.cli_ok(&["cas", "colour", "green", "violet", "--json"]);
    assert_eq!(out.json()["swapped"], Value::Bool(false), "{}", out.show());
    cluster.put("doomed", "x");
    let out = cluster.cli_ok(&["delete", "doomed", "--json"]);
    assert_eq!(out.json()["existed"], Value::Bool(true), "{}", out.show());
    let out = cluster.cli_ok(&["propose", "a", "plain", "value", "--json"]);
    let last = out.json()["slot"].as_u64().expect("slot");

    // Every node applies every slot, and answers from what it applied.
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    cluster.wait_applied(&ids, last + 1);
    for &id in &ids {
        assert_eq!(cluster.get_stale_on(id, "greeting").as_deref(), Some("hello world"), "node {id}");
        assert_eq!(cluster.get_stale_on(id, "colour").as_deref(), Some("red"), "node {id}");
        assert_eq!(cluster.get_stale_on(id, "doomed"), None, "node {id}");
        // A linearizable read asked of any node, leader or not.
        let out = cluster.paxos_on(id, &["get", "colour"]);
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "red\n"), "node {id}: {}", out.show());
    }
    assert_eq!(cluster.get("colour").as_deref(), Some("red"));

    // The log holds the commands in the order they were decided.
    let out = cluster.cli_ok(&["log", "--from", "0", "--json"]);
    let entries = out.json()["entries"].as_array().cloned().expect("entries");
    let commands: Vec<String> = entries
        .iter()
        .flat_map(|e| e["commands"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            let text = |f: &str| c[f].as_str().unwrap_or("").to_owned();
            format!("{} {} {} {}", text("op"), text("key"), text("value"), text("new"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        commands,
        [
            "put greeting hello world",
            "put colour blue",
            "put colour green",
            "cas colour red",
            "cas colour violet",
            "put doomed x",
            "delete doomed",
            "propose a plain value",
        ],
        "{}",
        out.show()
    );
    let slots: Vec<u64> = entries.iter().filter_map(|e| e["slot"].as_u64()).collect();
    assert!(slots.windows(2).all(|w| w[0] < w[1]), "{slots:?}");
    let out = cluster.cli_ok(&["log", "--from", &first.to_string(), "--limit", "1"]);
    assert!(out.stdout.starts_with(&format!("{first} put colour blue ")), "{}", out.show());
}

#[test]
fn a_sigkilled_leader_is_replaced_and_nothing_committed_is_lost() {
    let mut cluster = Cluster::start(3);
    let (old_leader, old_ballot) = cluster.wait_for_leader();
    for n in 0..5 {
        cluster.put(&format!("before{n}"), &format!("value{n}"));
    }

    // A client keeps writing through the CLI while the leader dies.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (inventory, operator, stop) = (cluster.inventory.clone(), cluster.operator.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::SeqCst) && n >= 3 {
                    break;
                }
                let mut put = Command::new(PAXOS);
                put.arg("--cluster").arg(&inventory).arg("-i").arg(&operator);
                put.args(["put", &format!("during{n}"), &format!("v{n}")]);
                outcomes.push((n, run(put)));
            }
            outcomes
        })
    };
    let pid = cluster.node(old_leader).pid().expect("running");
    cluster.kill(old_leader);
    let (new_leader, new_ballot) = cluster.wait_for_leader();
    assert_ne!(new_leader, old_leader, "node {old_leader} (pid {pid}) was killed");
    assert!(new_ballot > old_ballot, "new ballot {new_ballot:?} is not above {old_ballot:?}");
    // The survivors heard its connections close (which starts their
    // campaign early, without waiting out an election timeout).
    for id in cluster.nodes.iter().map(|n| n.id).filter(|id| *id != old_leader) {
        let line = format!("the connection from node {old_leader} closed");
        eventually(
            &format!("node {id} to notice"),
            || cluster.log(id).contains(&line).then_some(()),
            || cluster.logs(),
        );
    }
    stop.store(true, Ordering::SeqCst);
    let outcomes = writer.join().expect("writer");

    for n in 0..5 {
        assert_eq!(cluster.get(&format!("before{n}")), Some(format!("value{n}")), "before{n} lost");
    }
    // Every write the CLI acknowledged survived; any other one failed with
    // a message, never silently.
    for (n, out) in &outcomes {
        match out.code {
            Some(0) => assert_eq!(cluster.get(&format!("during{n}")), Some(format!("v{n}")), "during{n} lost"),
            _ => assert!(!out.stderr.trim().is_empty(), "during{n} failed without a word: {}", out.show()),
        }
    }
    let acknowledged = outcomes.iter().filter(|(_, out)| out.code == Some(0)).count();
    assert!(acknowledged >= 3, "{outcomes:?}");
    let slot = cluster.put("after", "the failover");
    assert_eq!(cluster.get("after").as_deref(), Some("the failover"));
    let survivors: Vec<u64> = cluster.nodes.iter().map(|n| n.id).filter(|id| *id != old_leader).collect();
    cluster.wait_applied(&survivors, slot + 1);
    for id in survivors {
        assert_eq!(cluster.get_stale_on(id, "before4").as_deref(), Some("value4"), "node {id}");
        assert_eq!(cluster.get_stale_on(id, "after").as_deref(), Some("the failover"), "node {id}");
    }
    // The status table shows the dead node as down rather than failing.
    let out = cluster.cli_ok(&["status"]);
    let row = out.stdout.lines().find(|l| l.starts_with(&format!("{old_leader} "))).unwrap_or("");
    assert!(row.contains(" down "), "{}", out.show());
}

#[test]
fn a_command_cut_off_by_its_node_dying_is_retried_on_the_next_node() {
    let mut cluster = Cluster::start(3);
    cluster.put("kept", "safe");
    // The CLI's watch follows node 1, the first in the inventory.
    let mut watch = Streaming::spawn({
        let mut watch = Command::new(PAXOS);
        watch.arg("--cluster").arg(&cluster.inventory).arg("-i").arg(&cluster.operator);
        watch.args(["watch", "--from", "0"]);
        watch
    });
    let seen = watch.read_until(|line| line.contains("put kept safe ")).expect("the watch shows the first write");
    // One entry per line, led by its slot.
    assert!(seen.iter().all(|l| l.split(' ').next().is_some_and(|slot| slot.parse::<u64>().is_ok())), "{seen:?}");
    // Node 1 is also where the CLI sends the next command. Alone, it cannot
    // get it decided.
    cluster.kill(2);
    cluster.kill(3);
    let put = {
        let mut put = Command::new(PAXOS);
        put.arg("--cluster").arg(&cluster.inventory).arg("-i").arg(&cluster.operator);
        put.args(["put", "inflight", "answered", "elsewhere"]);
        std::thread::spawn(move || run(put))
    };
    eventually(
        "node 1 to be working on the put",
        || cluster.log(1).contains("inflight answered elsewhere\" on node 1").then_some(()),
        || cluster.logs(),
    );
    // Frozen, node 1 can neither answer nor decide anything while the
    // others come back; then it dies with the command in flight.
    cluster.signal(1, libc::SIGSTOP);
    cluster.restart(2);
    cluster.restart(3);
    cluster.kill(1);

    let out = put.join().expect("put thread");
    assert_eq!(out.code, Some(0), "{}\n{}", out.show(), cluster.logs());
    assert!(out.stdout.starts_with("inflight set (it was absent); slot "), "{}", out.show());
    assert_eq!(cluster.get("inflight").as_deref(), Some("answered elsewhere"));
    assert_eq!(cluster.get("kept").as_deref(), Some("safe"));
    // A watch cannot move to another node by itself: it says it was cut off.
    let out = watch.wait_exit();
    assert_eq!(out.code, Some(4), "{}", out.show());
    assert!(out.stderr.contains("node 1 closed the connection"), "{}", out.show());
}

#[test]
fn a_restarted_old_leader_catches_up() {
    let mut cluster = Cluster::start(3);
    let (old_leader, _) = cluster.wait_for_leader();
    cluster.put("early", "before the crash");
    cluster.kill(old_leader);
    let (new_leader, new_ballot) = cluster.wait_for_leader();
    assert_ne!(new_leader, old_leader);

    // Written while the old leader is down.
    let mut last = 0;
    for n in 0..10 {
        last = cluster.put(&format!("missed{n}"), &format!("v{n}"));
    }
    cluster.restart(old_leader);

    // It rejoins as a follower of the new leader and applies everything.
    let (leader, ballot) = cluster.wait_for_leader();
    assert_eq!((leader, ballot), (new_leader, new_ballot), "the restarted node disturbed the leader");
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    cluster.wait_applied(&ids, last + 1);
    let rows = cluster.statuses();
    let commits: Vec<u64> =
        rows.iter().map(|(_, s)| s.as_ref().and_then(|s| s["commit_index"].as_u64()).unwrap_or(0)).collect();
    assert!(commits.iter().all(|c| *c == commits[0]), "commit indexes differ: {rows:?}");
    for n in 0..10 {
        assert_eq!(cluster.get_stale_on(old_leader, &format!("missed{n}")), Some(format!("v{n}")), "missed{n}");
    }
    assert_eq!(cluster.get_stale_on(old_leader, "early").as_deref(), Some("before the crash"));
}

#[test]
fn planned_step_down_moves_leadership_to_the_named_node() {
    let cluster = Cluster::start(3);
    let (leader, ballot) = cluster.wait_for_leader();
    let target = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).expect("a follower");

    let out = cluster.cli_ok(&["step-down", "--to", &target.to_string()]);
    assert_eq!(out.stdout, format!("leadership handed to node {target}\n"), "{}", out.show());
    let (now, new_ballot) = cluster.wait_for_leader();
    assert_eq!(now, target);
    assert!(new_ballot > ballot, "{new_ballot:?} after {ballot:?}");
    let slot = cluster.put("after-transfer", "yes");
    assert_eq!(cluster.get("after-transfer").as_deref(), Some("yes"));

    // Back again, with --json, and a node that does not exist is refused.
    let out = cluster.cli_ok(&["step-down", "--to", &leader.to_string(), "--json"]);
    assert_eq!(out.json()["leader"].as_u64(), Some(leader), "{}", out.show());
    assert_eq!(cluster.wait_for_leader().0, leader);
    let out = cluster.cli(&["step-down", "--to", "9"]);
    assert_eq!(out.code, Some(2), "a usage error: {}", out.show());
    assert!(out.stderr.contains("node 9 is not a member of this cluster (members: 1, 2, 3)"), "{}", out.show());
    assert_eq!(cluster.wait_for_leader().0, leader);
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    cluster.wait_applied(&ids, slot + 1);
}
