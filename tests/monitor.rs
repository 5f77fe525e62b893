//! `paxos monitor --once` against real `paxos serve` daemons over SSH on
//! loopback: one row per node, exactly one leader marked, and a dead node
//! shown down (exit 5) without holding up the others.

mod support_cluster;

use support_cluster::*;

const UNHEALTHY: Option<i32> = Some(5);

/// The table rows of a plain frame: the lines naming a node of the cluster.
fn table_rows(frame: &str, ids: &[u64]) -> Vec<String> {
    frame
        .lines()
        .filter(|line| {
            ids.iter().any(|id| line.get(1..).is_some_and(|l| l.trim_start().starts_with(&format!("{id} node{id} "))))
        })
        .map(String::from)
        .collect()
}

#[test]
fn once_prints_a_row_per_node_and_marks_one_leader() {
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader();
    cluster.put("k", "v");

    let out = cluster.cli(&["monitor", "--once", "--interval-ms", "300"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.show(), cluster.logs());
    assert!(!out.stdout.contains('\u{1b}'), "escape codes in --once output:\n{}", out.stdout);
    let rows = table_rows(&out.stdout, &[1, 2, 3]);
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    let marked: Vec<&String> = rows.iter().filter(|r| r.starts_with('*')).collect();
    assert_eq!(marked.len(), 1, "{}", out.stdout);
    assert!(marked[0].contains(&format!("{leader} node{leader} ")), "leader {leader}:\n{}", out.stdout);
    for row in &rows {
        assert!(row.contains(" up "), "{}", out.stdout);
        // Rates need two samples; --once takes two, so every node has one
        // (COMMITS/S is the next to last column).
        let words: Vec<&str> = row.split_whitespace().collect();
        assert!(words[words.len() - 2].parse::<f64>().is_ok(), "{}", out.stdout);
    }
    assert!(out.stdout.contains(&format!("node {leader} leads")), "{}", out.stdout);
    // The leader's row says "ref" in the clock column.
    assert!(marked[0].contains(" ref "), "{}", out.stdout);

    // A dead node: its row says down, the others still answer, exit 5.
    let victim = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();
    cluster.kill(victim);
    let out = cluster.cli(&["monitor", "--once", "--interval-ms", "300"]);
    assert_eq!(out.code, UNHEALTHY, "{}", out.show());
    let rows = table_rows(&out.stdout, &[1, 2, 3]);
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    for row in &rows {
        let down = row.contains(&format!("{victim} node{victim} "));
        assert_eq!(row.contains(" down "), down, "{}", out.stdout);
    }
    assert!(out.stdout.contains(&format!("node {victim} down: ")), "{}", out.stdout);
    assert_eq!(rows.iter().filter(|r| r.starts_with('*')).count(), 1, "{}", out.stdout);
}

#[test]
fn bad_interval_is_a_usage_error() {
    let cluster = Cluster::prepare(1);
    let out = cluster.cli(&["monitor", "--once", "--interval-ms", "0"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("--interval-ms 0 is out of range"), "{}", out.show());
}

#[test]
fn a_frozen_node_is_down_and_does_not_hold_up_the_others() {
    let cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader();
    let frozen = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();
    // SIGSTOP: its port still accepts connections but nothing answers.
    cluster.signal(frozen, libc::SIGSTOP);
    let out = cluster.cli(&["monitor", "--once", "--interval-ms", "300"]);
    cluster.signal(frozen, libc::SIGCONT);
    assert_eq!(out.code, UNHEALTHY, "{}", out.show());
    let rows = table_rows(&out.stdout, &[1, 2, 3]);
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    for row in &rows {
        let is_frozen = row.contains(&format!("{frozen} node{frozen} "));
        assert_eq!(row.contains(" down "), is_frozen, "{}", out.stdout);
    }
    let marked: Vec<&String> = rows.iter().filter(|r| r.starts_with('*')).collect();
    assert_eq!(marked.len(), 1, "{}", out.stdout);
    assert!(marked[0].contains(&format!("{leader} node{leader} ")), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("node {frozen} (node{frozen}) down: ")), "{}", out.stdout);
}

#[test]
fn the_live_view_without_a_terminal_says_to_use_once() {
    let cluster = Cluster::prepare(1);
    // The test's pipes are not a terminal.
    let out = cluster.cli(&["monitor"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("needs a terminal; use --once"), "{}", out.show());
    assert!(out.stdout.is_empty(), "{}", out.show());
}
