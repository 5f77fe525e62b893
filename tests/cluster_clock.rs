//! Clock offsets between real `paxos serve` daemons over real SSH on
//! loopback, one of them running with a clock skewed by +2000 ms
//! (`PAXOS_CLOCK_SKEW_MS`): every node reports the others' offsets within
//! their error bounds in `status` and `members` (read through the OpenSSH
//! client), warns once about the skewed node, and the cluster commits and
//! applies as usual.

mod support_cluster;

use serde_json::Value;
use support_cluster::*;

const SKEWED: u64 = 3;
const SKEW_MS: f64 = 2000.0;

/// The clock entry for `peer` in a `status --json` answer.
fn clock_entry(status: &Value, peer: u64) -> Option<Value> {
    status["clock"].as_array()?.iter().find(|c| c["peer"] == peer).cloned()
}

/// Whether `true_offset` lies within `offset ± error` (in µs, as measured).
fn within(offset_ms: f64, error_ms: f64, true_offset_ms: f64) -> bool {
    ((offset_ms - true_offset_ms) * 1000.0).round().abs() <= (error_ms * 1000.0).round()
}

/// Lines of node `id`'s log that hold every needle.
fn lines_with(cluster: &Cluster, id: u64, needles: &[&str]) -> usize {
    cluster.log(id).lines().filter(|l| needles.iter().all(|n| l.contains(n))).count()
}

#[test]
fn a_skewed_node_is_seen_by_every_peer_within_the_error_bound() {
    let mut cluster = Cluster::prepare(3);
    // Node 1 warns past 1000 ms; the others keep the default of 500 ms.
    let config = &cluster.node(1).config;
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    doc["clock_skew_warn_ms"] = 1000.into();
    std::fs::write(config, doc.to_string()).unwrap();
    cluster.spawn(1);
    cluster.spawn(2);
    cluster.spawn_with_env(SKEWED, &[("PAXOS_CLOCK_SKEW_MS", "2000")]);
    for id in 1..=3 {
        cluster.wait_serving(id);
    }
    cluster.wait_for_leader();

    // Every node's status, through `ssh -s paxos status --json`, once each
    // names both peers' clocks.
    let mut statuses = Vec::new();
    for id in 1..=3 {
        let status = eventually(
            &format!("node {id} to report both peers' clocks"),
            || {
                let out = cluster.paxos_on(id, &["status", "--json"]);
                let status = (out.code == Some(0)).then(|| out.json())?;
                let others = (1..=3).filter(|p| *p != id);
                others.clone().all(|p| clock_entry(&status, p).is_some()).then_some(status)
            },
            || cluster.logs(),
        );
        statuses.push((id, status));
    }
    for (id, status) in &statuses {
        for peer in (1..=3).filter(|p| p != id) {
            let c = clock_entry(status, peer).unwrap();
            let (offset, error, rtt) = (
                c["offset_ms"].as_f64().unwrap(),
                c["error_ms"].as_f64().unwrap(),
                c["round_trip_ms"].as_f64().unwrap(),
            );
            let truth = match (*id == SKEWED, peer == SKEWED) {
                (false, true) => SKEW_MS,
                (true, false) => -SKEW_MS,
                _ => 0.0,
            };
            assert!(within(offset, error, truth), "node {id} sees node {peer} at {offset} ± {error} ms, truth {truth}");
            assert!(rtt >= 0.0 && error >= rtt / 2.0, "node {id} -> {peer}: {c}");
            println!("node {id} sees node {peer}: offset {offset:+.3} ms ± {error:.3}, round trip {rtt:.3} ms");
        }
    }

    // `members --json` on node 1: the skewed node with its offset, and
    // nothing for node 1 itself.
    let members = cluster.paxos_on(1, &["members", "--json"]).json();
    let members = members["members"].as_array().unwrap();
    let me = members.iter().find(|m| m["id"] == 1).unwrap();
    for key in ["clock_offset_ms", "clock_error_ms", "round_trip_ms"] {
        assert!(me[key].is_null(), "{key} for node 1 itself: {me}");
    }
    let skewed = members.iter().find(|m| m["id"] == SKEWED).unwrap();
    let (offset, error) = (skewed["clock_offset_ms"].as_f64().unwrap(), skewed["clock_error_ms"].as_f64().unwrap());
    assert!(within(offset, error, SKEW_MS), "{skewed}");
    assert!(skewed["round_trip_ms"].as_f64().unwrap() >= 0.0, "{skewed}");

    // The text views.
    let text = cluster.paxos_on(1, &["status"]);
    assert!(
        text.stdout.contains("\nclock      node 2: ") && text.stdout.contains("\n           node 3: +"),
        "{}",
        text.stdout
    );
    println!("{}", text.stdout);
    let table = cluster.paxos_on(1, &["members"]);
    let header = table.stdout.lines().next().unwrap();
    assert!(header.contains("CLOCK") && header.ends_with("RTT"), "{}", table.stdout);
    println!("{}", table.stdout);
    println!("{}", statuses[0].1["clock"]);
    let metrics = cluster.paxos_on(1, &["metrics"]).stdout;
    for line in metrics.lines().filter(|l| l.contains("clock_offset") || l.contains("round_trip_seconds_count")) {
        println!("{line}");
    }

    // Clocks do not matter to consensus: writes commit and apply everywhere.
    let slot = cluster.put("after-skew", "v");
    cluster.wait_applied(&[1, 2, 3], slot + 1);
    assert_eq!(cluster.get_stale_on(SKEWED, "after-skew").as_deref(), Some("v"));

    // Each non-skewed node warned once about node 3 (node 1 at its own
    // threshold), and node 3 once about each of the others; nobody warned
    // about a peer on the same clock.
    eventually(
        "the skew warnings",
        || (lines_with(&cluster, SKEWED, &["WARN", "behind this node's"]) == 2).then_some(()),
        || cluster.logs(),
    );
    assert_eq!(
        lines_with(&cluster, 1, &["WARN", "the clock of node 3 is", "ahead of", "(1000 ms)"]),
        1,
        "{}",
        cluster.log(1)
    );
    assert_eq!(
        lines_with(&cluster, 2, &["WARN", "the clock of node 3 is", "ahead of", "(500 ms)"]),
        1,
        "{}",
        cluster.log(2)
    );
    assert_eq!(lines_with(&cluster, 1, &["WARN", "the clock of node 2"]), 0, "{}", cluster.log(1));
    assert_eq!(lines_with(&cluster, SKEWED, &["WARN", "skewed clock", "PAXOS_CLOCK_SKEW_MS"]), 1);
    for line in cluster.log(1).lines().filter(|l| l.contains("the clock of node")) {
        println!("{line}");
    }
}

#[test]
fn a_bad_clock_skew_setting_stops_the_node_with_a_clear_error() {
    let mut cluster = Cluster::prepare(1);
    cluster.spawn_with_env(1, &[("PAXOS_CLOCK_SKEW_MS", "2s")]);
    let log_file = cluster.node(1).log.clone();
    let status = eventually(
        "the node to refuse to start",
        || cluster.exited(1),
        || std::fs::read_to_string(&log_file).unwrap_or_default(),
    );
    assert!(!status.success());
    let log = cluster.log(1);
    assert!(log.contains("PAXOS_CLOCK_SKEW_MS=\"2s\" is not a whole number of milliseconds"), "{log}");
}
