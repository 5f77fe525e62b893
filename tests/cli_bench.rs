//! `paxos bench` against a real 3-node cluster over SSH: its `--ack-log`
//! records every answered command, and a path it cannot write is refused
//! before any load.

mod support_cluster;

use serde_json::Value;
use support_cluster::Cluster;

#[test]
fn the_ack_log_holds_one_line_per_answered_command_in_answer_order() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("acks.txt");
    let args = ["bench", "--json", "--clients", "2", "--count", "60", "--warmup", "0", "--reads", "50"];
    let out = cluster.cli_ok(&[&args[..], &["--ack-log", log.to_str().unwrap()]].concat());
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let answered = report["writes"]["ops"].as_u64().unwrap() + report["reads"]["ops"].as_u64().unwrap();
    assert!(answered >= 60, "{}", out.stdout);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len() as u64, answered, "{text}");
    let mut last_answer = 0;
    for fields in &lines {
        let [sent, answered_at, op, outcome] = fields[..] else { panic!("not four fields: {fields:?}") };
        let (sent, answered_at): (u64, u64) = (sent.parse().unwrap(), answered_at.parse().unwrap());
        assert!(sent <= answered_at && answered_at >= last_answer, "{fields:?}");
        last_answer = answered_at;
        assert!(op == "put" || op == "get", "{fields:?}");
        assert_eq!(outcome, "ok", "{fields:?}");
    }
    assert!(lines.iter().any(|f| f[2] == "put") && lines.iter().any(|f| f[2] == "get"), "{text}");
}

#[test]
fn an_ack_log_that_cannot_be_written_is_refused_before_any_load() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader();
    let before = highest_commit(&cluster);
    let log = "/nonexistent-dir/acks.txt";
    let out = cluster.cli(&["bench", "--clients", "1", "--count", "10", "--ack-log", log]);
    assert_ne!(out.code, Some(0), "{}", out.show());
    assert!(out.stderr.contains("--ack-log /nonexistent-dir/acks.txt"), "{}", out.show());
    assert_eq!(highest_commit(&cluster), before, "the bench wrote before refusing its --ack-log");
}

fn highest_commit(cluster: &Cluster) -> u64 {
    let rows: Value = serde_json::from_str(&cluster.cli_ok(&["status", "--json"]).stdout).unwrap();
    rows.as_array().unwrap().iter().filter_map(|r| r["status"]["commit_index"].as_u64()).max().unwrap()
}
