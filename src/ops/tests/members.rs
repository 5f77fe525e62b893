//! `paxos members add|promote|demote|remove` over the fake node: the
//! grammar, the checks against the live cluster, and the state machine's
//! refusals, each with the exit status and message an operator sees.

use super::FakeNode;
use crate::consensus::configuration::MemberChange;
use crate::ops::api::PeerProgress;
use crate::ops::{Context, EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, Role, run_line};
use crate::state_machine::Op;
use serde_json::Value;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILPICwg1vxTAzdIDDMzfqfpzGI+UHYoLzCQCHNY6H8+A node4";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBF/jIbYilzvq6x5bSnmXEJVr8tYJe8wxNhR3A2M353VMGqs2Z7JMD2YplrQkvEeiZvrz83i8bcNWwUktXuc/MyI= e";

async fn run(node: &FakeNode, role: Role, line: &str) -> (i32, String, String) {
    let ctx = Context { api: node, role, fingerprint: "SHA256:alice", audit: None };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_line(&ctx, line, &mut out, &mut err).await;
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

fn last_change(node: &FakeNode) -> Option<MemberChange> {
    node.with(|s| match s.submitted.last() {
        Some((Op::Reconfigure { change }, _)) => Some(change.clone()),
        _ => None,
    })
}

/// Decide `n` no-ops: the fake decides the next command in the next slot,
/// so a change decided before comes into force.
fn advance(node: &FakeNode, n: u64) {
    node.with(|s| {
        let from = s.log.len() as u64;
        s.log.extend(
            (from..from + n).map(|slot| crate::ops::LogEntry { slot, entry: crate::state_machine::Entry::Noop }),
        )
    });
}

fn fresh(node: &FakeNode, ids: &[u64], commit_index: u64) {
    node.with(|s| {
        for id in ids {
            s.progress.insert(*id, PeerProgress { commit_index, since_ms: 20 });
        }
    });
}

#[tokio::test]
async fn an_operator_adds_a_learner_with_its_address_and_key() {
    let node = FakeNode::new();
    let (code, out, err) =
        run(&node, Role::Operator, &format!("members add node4 --addr 10.0.0.4:7000 --key {KEY}")).await;
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.contains("epoch 1"), "{out}");
    let Some(MemberChange::Add { id, member }) = last_change(&node) else { panic!("no add was submitted") };
    assert_eq!(id, 4, "one above every id the cluster had");
    assert_eq!((member.name.as_str(), member.address.as_str(), member.key.as_str()), ("node4", "10.0.0.4:7000", KEY));
    assert!(member.roles.learner && !member.roles.acceptor && !member.roles.proposer);
    // The same name again: refused before the log, with the reason.
    let (code, _, err) =
        run(&node, Role::Operator, &format!("members add node4 --addr 10.0.0.5:7000 --key {KEY}")).await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("already named \"node4\""), "{err}");
}

#[tokio::test]
async fn a_change_answers_its_epoch_and_first_slot_in_json() {
    let node = FakeNode::new();
    let line = format!("members add n5 --addr [::1]:7005 --key {KEY} --id 9 --roles learner --json");
    let (code, out, err) = run(&node, Role::Operator, &line).await;
    assert_eq!(code, EXIT_OK, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"], "reconfigured");
    assert_eq!(v["epoch"], 1);
    assert_eq!(v["effective"], v["slot"].as_u64().unwrap() + crate::consensus::configuration::DEFAULT_ALPHA);
    assert!(matches!(last_change(&node), Some(MemberChange::Add { id: 9, .. })));
}

#[tokio::test]
async fn malformed_changes_are_usage_errors_and_reach_nothing() {
    let node = FakeNode::new();
    let cases = [
        (format!("members add node4 --addr nowhere --key {KEY}"), "give HOST:PORT"),
        (format!("members add node4 --addr host:0 --key {KEY}"), "give HOST:PORT"),
        (format!("members add node4 --addr ::1:7000 --key {KEY}"), "in brackets"),
        ("members add node4 --addr h:7000 --key ssh-ed25519 AAAAnotbase64".to_owned(), "--key"),
        (format!("members add node4 --addr h:7000 --key {ECDSA}"), "ssh-ed25519"),
        (format!("members add 'no spaces' --addr h:7000 --key {KEY}"), "is no node name"),
        (format!("members add 12 --addr h:7000 --key {KEY}"), "not only digits"),
        (format!("members add n --addr '[::1]x:7000' --key {KEY}"), "give HOST:PORT"),
        (format!("members add n --addr 'h ost:7000' --key {KEY}"), "give HOST:PORT"),
        (format!("members add n --addr h:7000 --key {KEY} --id 9007199254740992"), "node ids go from 1"),
        (format!("members add n --addr h:7000 --key {KEY} --id 0"), "node ids go from 1"),
        (format!("members add n --addr h:7000 --key {KEY} --roles leader"), "unknown role"),
        ("members add n --addr h:7000".to_owned(), "--key"),
        ("members promote".to_owned(), "NAME"),
        ("members frobnicate x".to_owned(), "frobnicate"),
    ];
    for (line, message) in cases {
        let (code, out, err) = run(&node, Role::Operator, &line).await;
        assert_eq!(code, EXIT_USAGE, "{line}: {err}");
        assert!(err.contains(message), "{line}: {err:?} should say {message:?}");
        assert_eq!(out, "");
    }
    assert!(node.with(|s| s.submitted.is_empty()), "nothing reached the log");
}

#[tokio::test]
async fn readers_list_members_but_may_not_change_them() {
    let node = FakeNode::new();
    assert_eq!(run(&node, Role::Reader, "members").await.0, EXIT_OK);
    for line in [format!("members add n4 --addr h:7000 --key {KEY}"), "members remove node3".to_owned()] {
        let (code, _, err) = run(&node, Role::Reader, &line).await;
        assert_eq!(code, EXIT_DENIED, "{line}: {err}");
    }
    assert!(node.with(|s| s.submitted.is_empty()));
}

#[tokio::test]
async fn promotion_waits_for_the_learner_to_catch_up_unless_forced() {
    let node = FakeNode::new();
    run(&node, Role::Operator, &format!("members add node4 --addr h:7004 --key {KEY}")).await;
    let (code, _, err) = run(&node, Role::Operator, "members promote node4").await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("has not answered the leader yet"), "{err}");
    // Far behind the leader (whose commit index is the fake's log length, 1).
    advance(&node, 2000);
    fresh(&node, &[4], 5);
    let (code, _, err) = run(&node, Role::Operator, "members promote node4").await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("slots behind the leader"), "{err}");
    fresh(&node, &[4], 1990);
    // Caught up, but a fourth acceptor with 2 and 3 silent leaves {1, 4} of 4 up.
    let (code, _, err) = run(&node, Role::Operator, "members promote node4 --roles acceptor,learner").await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("would not make a quorum"), "{err}");
    fresh(&node, &[2, 3, 4], 1990);
    let (code, _, err) = run(&node, Role::Operator, "members promote node4 --roles acceptor,learner").await;
    assert_eq!(code, EXIT_OK, "{err}");
    let Some(MemberChange::SetRoles { id: 4, roles }) = last_change(&node) else { panic!("no promotion") };
    assert!(roles.acceptor && !roles.proposer);
}

#[tokio::test]
async fn a_forced_promotion_skips_the_lag_check() {
    let node = FakeNode::new();
    run(&node, Role::Operator, &format!("members add node4 --addr h:7004 --key {KEY}")).await;
    advance(&node, 200);
    let (code, _, err) = run(&node, Role::Operator, "members promote node4 --force").await;
    assert_eq!(code, EXIT_OK, "{err}");
}

#[tokio::test]
async fn checks_that_need_the_leader_send_the_operator_to_it() {
    let node = FakeNode::new();
    node.with(|s| s.leader = Some(2));
    let (code, _, err) = run(&node, Role::Operator, "members remove node3").await;
    assert_eq!(code, EXIT_UNAVAILABLE, "the CLI moves on to the next node");
    assert!(err.contains("the leader is node 2"), "{err}");
}

#[tokio::test]
async fn removal_is_refused_when_the_acceptors_left_that_are_up_make_no_quorum() {
    let node = FakeNode::new();
    // Nobody answered the leader lately: {1, 2} left, only 1 up.
    let (code, _, err) = run(&node, Role::Operator, "members remove node3").await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("would not make a quorum") && err.contains("down: 2"), "{err}");
    let (code, _, err) = run(&node, Role::Operator, "members demote node2").await;
    assert_eq!(code, EXIT_FAILED, "{err}");
    fresh(&node, &[2], 0);
    let (code, _, err) = run(&node, Role::Operator, "members remove node3").await;
    assert_eq!(code, EXIT_OK, "{err}");
    assert_eq!(last_change(&node), Some(MemberChange::Remove { id: 3 }));
    // The state machine refuses a second change while the first is pending.
    let (code, _, err) = run(&node, Role::Operator, "members remove node3 --force").await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("one change at a time"), "{err}");
    let (code, _, err) = run(&node, Role::Operator, "members remove ghost").await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("no member is named \"ghost\""), "{err}");
}

#[tokio::test]
async fn the_checks_follow_the_roles_that_change_not_the_words() {
    let node = FakeNode::new();
    // An added acceptor has answered nobody: with 2 and 3 silent too, 1 of 4 is up.
    let line = format!("members add node4 --addr h:7004 --key {KEY} --roles acceptor,learner");
    let (code, _, err) = run(&node, Role::Operator, &line).await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("would not make a quorum"), "{err}");
    // "promote" to learner takes a vote away: the live-quorum check runs.
    let (code, _, err) = run(&node, Role::Operator, "members promote node3 --roles learner").await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("would not make a quorum"), "{err}");
    // A learner added with a key another member has is refused.
    let (code, _, err) = run(&node, Role::Operator, &format!("members add node4 --addr h:7004 --key {KEY}")).await;
    assert_eq!(code, EXIT_OK, "{err}");
    advance(&node, 200);
    let (code, _, err) = run(&node, Role::Operator, &format!("members add node5 --addr h:7005 --key {KEY}")).await;
    assert_eq!(code, EXIT_FAILED);
    assert!(err.contains("another member has that key"), "{err}");
    // By id when no name matches.
    let (code, _, err) = run(&node, Role::Operator, "members remove 4").await;
    assert_eq!(code, EXIT_OK, "{err}");
    assert_eq!(last_change(&node), Some(MemberChange::Remove { id: 4 }));
}

#[tokio::test]
async fn members_inventory_lists_the_seed_hosts_and_the_joined_members() {
    let node = FakeNode::new();
    let (code, out, err) = run(&node, Role::Reader, "members --inventory").await;
    assert_eq!(code, EXIT_OK, "{err}");
    let before: Value = serde_json::from_str(&out).expect("an inventory document");
    assert_eq!(before["all"]["hosts"].as_object().map(|h| h.len()), Some(3), "{out}");
    let added = format!("members add db4 --addr 10.0.0.4:7000 --key {KEY} --id 9");
    assert_eq!(run(&node, Role::Operator, &added).await.0, EXIT_OK);
    let (code, out, err) = run(&node, Role::Reader, "members --inventory --json").await;
    assert_eq!(code, EXIT_OK, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("JSON");
    let db4 = &doc["all"]["hosts"]["db4"];
    assert_eq!(db4["paxos_id"], 9, "{out}");
    assert_eq!((db4["ansible_host"].as_str(), db4["paxos_port"].as_u64()), (Some("10.0.0.4"), Some(7000)));
    assert_eq!((db4["paxos_join"].as_bool(), db4["paxos_host_key"].as_str()), (Some(true), Some(KEY)));
    assert_eq!(doc["all"]["hosts"]["node1"], before["all"]["hosts"]["node1"], "seed hosts stay as they were");
    // The document is an inventory paxos loads: the seed configuration is
    // the one the cluster started with and db4 joins it.
    let live = crate::cluster::Inventory::from_json(&out, "live.json").expect("a valid inventory");
    let seed = live.consensus_config(9).expect("db4's config");
    assert!(seed.joining && seed.members.keys().eq([1, 2, 3].iter()));
    // It lists; it takes no change.
    let (code, _, err) = run(&node, Role::Operator, "members --inventory remove db4").await;
    assert_eq!(code, EXIT_USAGE, "{err}");
    assert!(err.contains("takes no change"), "{err}");
}

#[tokio::test]
async fn a_new_node_may_not_take_a_seed_hosts_name_address_or_key_even_once_it_is_removed() {
    let node = FakeNode::new();
    for (line, what) in [
        (format!("members add node2 --addr 10.0.0.9:7000 --key {KEY}"), "the name is seed host \"node2\"'s"),
        (format!("members add db9 --addr 127.0.0.1:7102 --key {KEY}"), "the address is seed host \"node2\"'s"),
    ] {
        let (code, _, err) = run(&node, Role::Operator, &line).await;
        assert_eq!(code, EXIT_FAILED, "{line}: {err}");
        assert!(err.contains(what), "{line}: {err}");
    }
    assert!(last_change(&node).is_none(), "nothing reached the log");
}
