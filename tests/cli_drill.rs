//! `paxos drill` against a `paxos up` cluster of real daemons over real
//! SSH on loopback: a transfer, a kill of the leader (restarted by the
//! drill) and a partition of the leader pass their checks; a fault that
//! cannot be applied fails the verdict with exit 5; bad arguments exit 2.

mod support_cluster;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support_cluster::*;

fn drill(hosts: &Path, operator: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(PAXOS);
    cmd.arg("--cluster").arg(hosts).arg("-i").arg(operator).arg("drill").args(args);
    run(cmd)
}

/// The one drill of a `--json` report, with the checks every passing drill meets.
fn passed(out: &Out) -> Value {
    assert_eq!(out.code, Some(0), "{}", out.show());
    let doc = out.json();
    assert_eq!(doc["passed"], true, "{}", out.show());
    let d = doc["drills"][0].clone();
    assert_ne!(d["old_leader"], d["new_leader"], "{d}");
    assert!(d["new_leader"].is_u64(), "{d}");
    assert_eq!(d["logs_agree"], true, "{d}");
    assert_eq!(d["writes_survived"], true, "{d}");
    assert_eq!(d["keys_read_back"], 4, "{d}");
    assert_eq!(d["problems"], serde_json::json!([]), "{d}");
    assert!(d["leader_changes"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["writes_ok"].as_u64().unwrap() > 0 && d["slots_compared"].as_u64().unwrap() > 0, "{d}");
    for figure in ["detect_ms", "elect_ms", "longest_write_gap_ms", "fault_at_ms", "duration_ms"] {
        assert!(d[figure].as_f64().is_some_and(|v| v >= 0.0), "{figure}: {d}");
    }
    for figure in ["detect_ms", "elect_ms", "longest_write_gap_ms"] {
        let s = &doc["summary"][figure];
        assert_eq!(s["count"], 1, "{doc}");
        assert!(s["min"] == d[figure] && s["max"] == d[figure], "{doc}");
    }
    d
}

const SHORT: [&str; 8] = ["--before", "1", "--hold", "2", "--after", "1", "--deadline", "40"];

#[test]
fn transfer_kill_and_partition_drills_pass_and_an_unappliable_fault_fails() {
    let mut up = Up::start();
    let (hosts, operator) = (up.hosts.clone(), up.keys.join("operator"));

    let out = drill(&hosts, &operator, &[&["--kind", "transfer", "--json"][..], &SHORT].concat());
    let d = passed(&out);
    assert_eq!((d["kind"].as_str(), d["method"].as_str()), (Some("transfer"), Some("step-down")), "{d}");

    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("kill.svg");
    let svg_arg = svg.to_string_lossy().into_owned();
    let out = drill(&hosts, &operator, &[&["--kind", "kill-leader", "--json", "--svg", &svg_arg][..], &SHORT].concat());
    if let Ok(doc) = serde_json::from_str::<Value>(&out.stdout)
        && let Some(pid) = doc["drills"][0]["restarted_pid"].as_u64()
    {
        up.nodes.pids.push(pid as u32);
    }
    let d = passed(&out);
    let old = d["old_leader"].as_u64().unwrap();
    assert!(d["method"].as_str().unwrap().starts_with("local process "), "{d}");
    assert!(d["restarted_pid"].is_u64() && d["restored_at_ms"].as_f64().unwrap() >= 0.0, "{d}");
    let timeline = std::fs::read_to_string(&svg).unwrap();
    assert!(timeline.starts_with("<svg ") && timeline.trim_end().ends_with("</svg>"), "{timeline}");
    assert!(timeline.contains(&format!("kill-leader node{old}")), "{timeline}");
    assert_eq!(d["svg"], svg_arg);

    // The restarted node is back: the next drill waits for every node and one leader.
    let out = drill(&hosts, &operator, &[&["--kind", "partition-leader", "--json"][..], &SHORT].concat());
    let d = passed(&out);
    assert!(d["restored_at_ms"].as_f64().unwrap() >= 0.0, "{d}");

    // A fault that cannot be applied is a failed check: exit 5, and why.
    let failing =
        ["--kind", "stop-leader", "--json", "--stop-cmd", "echo no such host {host} >&2; false", "--cont-cmd", "true"];
    let out = drill(&hosts, &operator, &[&failing[..], &SHORT].concat());
    assert_eq!(out.code, Some(5), "{}", out.show());
    let doc = out.json();
    assert_eq!(doc["passed"], false, "{doc}");
    let d = &doc["drills"][0];
    assert!(d["fault_error"].as_str().unwrap().contains("no such host 127.0.0.1"), "{d}");
    assert!(d["problems"][0].as_str().unwrap().starts_with("the fault could not be applied"), "{d}");
    // Nothing was broken, so the writes still survived and the logs agree.
    assert_eq!((d["writes_survived"].as_bool(), d["logs_agree"].as_bool()), (Some(true), Some(true)), "{d}");

    // The same failure in text.
    let out = drill(&hosts, &operator, &[&failing[..1], &failing[1..2], &failing[3..], &SHORT].concat());
    assert_eq!(out.code, Some(5), "{}", out.show());
    assert!(out.stdout.contains("verdict           FAIL"), "{}", out.show());
}

#[test]
fn bad_arguments_are_refused_with_exit_2_before_any_fault() {
    let up = Up::start();
    let (hosts, operator) = (up.hosts.clone(), up.keys.join("operator"));
    let cases: [(&[&str], &str); 4] = [
        (&["--kind", "reboot"], "invalid value 'reboot'"),
        (&["--kind", "transfer", "--repeat", "0"], "--repeat must be 1 to 100"),
        (&["--kind", "kill-leader", "--kill-cmd", "ssh {host} pkill paxos"], "--kill-cmd needs --restore-cmd"),
        (&["--kind", "stop-leader", "--stop-cmd", "x {hots}", "--cont-cmd", "y"], "unknown placeholder {hots}"),
    ];
    for (args, wanted) in cases {
        let out = drill(&hosts, &operator, args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.show());
        assert!(out.stderr.contains(wanted), "{args:?}: {}", out.show());
    }

    // A host on another machine with no template for the fault: refused by name, nothing run.
    let mut inventory: Value = serde_json::from_str(&std::fs::read_to_string(&hosts).unwrap()).unwrap();
    inventory["all"]["hosts"]["node2"]["ansible_host"] = "10.255.0.2".into();
    let remote = up.dir.path().join("remote.json");
    std::fs::write(&remote, inventory.to_string()).unwrap();
    let out = drill(&remote, &operator, &["--kind", "kill-leader"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("node2 (10.255.0.2:") && out.stderr.contains("--kill-cmd"), "{}", out.show());
    // With the inventory's templates the same check passes (a transfer needs none at all).
    inventory["all"]["vars"]["paxos_drill_kill_cmd"] = "ssh {host} sudo systemctl kill -s KILL paxos".into();
    std::fs::write(&remote, inventory.to_string()).unwrap();
    let out = drill(&remote, &operator, &["--kind", "kill-leader", "--deadline", "30"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("paxos_drill_restore_cmd"), "{}", out.show());
}
