//! Operator tools against real `paxos serve` daemons: `paxos health` (the
//! CLI over the inventory, and `ssh NODE -s paxos health`) in each case it
//! can fail, and shell-style quoting of values over OpenSSH and the CLI.

mod support_cluster;

use support_cluster::*;

const UNHEALTHY: Option<i32> = Some(5);

#[test]
fn health_exits_zero_when_well_and_five_with_one_line_per_problem() {
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader();
    let followers: Vec<u64> = cluster.nodes.iter().map(|n| n.id).filter(|id| *id != leader).collect();

    // Healthy: every node up, one leader, quorum, no lag.
    let out = eventually(
        "the cluster to report healthy",
        || Some(cluster.cli(&["health"])).filter(|o| o.code == Some(0)),
        || cluster.cli(&["health"]).show(),
    );
    assert!(out.stdout.starts_with("healthy: 3 node(s) checked, all up; leader "), "{}", out.show());
    let out = cluster.cli(&["health", "--json"]);
    let doc = out.json();
    assert_eq!((doc["healthy"].as_bool(), doc["leader"].as_u64()), (Some(true), Some(leader)), "{}", out.show());
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 3);
    let out = cluster.paxos_on(followers[0], &["health"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(out.stdout.contains("reaches 3 of 3 acceptors (quorum 2)"), "{}", out.show());
    let out = cluster.paxos_on(leader, &["health", "--json"]);
    assert_eq!(out.json()["problems"], serde_json::json!([]), "{}", out.show());

    // A node that is not in the inventory is a usage error.
    let out = cluster.cli(&["health", "--node", "9"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("node 9 is not in"), "{}", out.show());

    // One follower down: the whole check fails on it alone, a check of
    // another node passes.
    let down = followers[0];
    cluster.kill(down);
    let out = cluster.cli(&["health"]);
    assert_eq!(out.code, UNHEALTHY, "{}", out.show());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.show());
    assert!(lines[0].starts_with(&format!("node {down} (node{down} at 127.0.0.1:")), "{}", out.show());
    assert!(lines[0].contains(") is down: "), "{}", out.show());
    let out = cluster.cli(&["health", "--node", &leader.to_string()]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    let out = cluster.cli(&["health", "--json"]);
    assert_eq!(out.code, UNHEALTHY);
    assert_eq!(out.json()["healthy"], false);

    // Two of three down: the survivor has no quorum, and says so itself.
    let survivor = followers[1];
    cluster.kill(leader);
    let out = eventually(
        "the survivor to see its quorum gone",
        || {
            let out = cluster.cli(&["health", "--node", &survivor.to_string()]);
            Some(out).filter(|o| o.stdout.contains("reaches 1 of 3 acceptors"))
        },
        || cluster.cli(&["health"]).show(),
    );
    assert_eq!(out.code, UNHEALTHY, "{}", out.show());
    assert!(
        out.stdout.contains(&format!(
            "node {survivor} (node{survivor}) reaches 1 of 3 acceptors (itself included); a quorum needs 2"
        )),
        "{}",
        out.show()
    );
    assert!(out.stdout.contains("only 1 of 3 acceptors answer; a quorum needs 2"), "{}", out.show());
    let out = cluster.paxos_on(survivor, &["health"]);
    assert_eq!(out.code, UNHEALTHY, "{}", out.show());
    assert!(out.stdout.contains("reaches 1 of 3 acceptors"), "{}", out.show());
    assert!(out.stderr.contains("unhealthy:"), "{}", out.show());
    // Without a quorum the survivor soon knows no leader either.
    let out = eventually(
        "the survivor to lose its leader",
        || Some(cluster.paxos_on(survivor, &["health"])).filter(|o| o.stdout.contains("sees no leader")),
        || cluster.paxos_on(survivor, &["health"]).show(),
    );
    assert_eq!(out.code, UNHEALTHY, "{}", out.show());
}

#[test]
fn quoted_values_over_openssh_and_the_cli() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader();
    // The CLI quotes each word again, so a value with spaces stays one.
    cluster.cli_ok(&["put", "greeting", "old  value"]);
    assert_eq!(cluster.cli_ok(&["get", "greeting"]).stdout, "old  value\n");
    // OpenSSH joins words with spaces; the quotes inside the line survive.
    let out = cluster.paxos_on(1, &["cas greeting 'old  value' \"it's new\""]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(out.stdout.starts_with("greeting swapped to 'it'\\''s new'; slot "), "{}", out.show());
    let out = cluster.cli_ok(&["cas", "greeting", "it's new", "back again"]);
    assert!(out.stdout.starts_with("greeting swapped to 'back again'; slot "), "{}", out.show());
    let out = cluster.paxos_on(1, &["get", "greeting"]);
    assert_eq!(out.stdout, "back again\n", "{}", out.show());
    // An unterminated quote is a usage error that says where.
    let out = cluster.paxos_on(1, &["cas greeting 'back again new"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(
        out.stderr.contains("unterminated single quote: the single quote at character 20 is never closed"),
        "{}",
        out.show()
    );
}
