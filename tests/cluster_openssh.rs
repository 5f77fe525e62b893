//! The stock OpenSSH client (`/usr/bin/ssh`) against real daemons: the
//! `paxos` subsystem runs operator commands with their exit statuses, a
//! watch follows the log, and a console answers one command per line.

mod support_cluster;

use serde_json::Value;
use std::process::Command;
use support_cluster::*;

#[test]
fn the_openssh_client_runs_status_propose_get_and_watch() {
    let cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader();
    // Ask a follower: commands reach the leader from any node.
    let node = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).expect("a follower");

    let out = cluster.paxos_on(node, &["status"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(out.stdout.contains("role       follower"), "{}", out.show());
    assert!(out.stdout.contains(&format!("leader     {leader}\n")), "{}", out.show());

    let out = cluster.paxos_on(node, &["propose", "hello", "world"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    let slot: u64 = out
        .stdout
        .strip_prefix("proposed in slot ")
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no slot named: {}", out.show()));

    let out = cluster.paxos_on(node, &["put", "greeting", "hi", "there"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    let out = cluster.paxos_on(node, &["get", "greeting"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "hi there\n"), "{}", out.show());

    // watch: history from slot 0 first, then entries as they are decided.
    let mut watch =
        Streaming::spawn(cluster.ssh_command(node, &cluster.operator, &["-s", "paxos", "watch", "--from", "0"]));
    let seen = watch
        .read_until(|line| line.starts_with(&format!("{slot} propose 'hello world'")))
        .unwrap_or_else(|seen| panic!("watch never showed slot {slot}: {seen:?}\n{}", cluster.logs()));
    assert!(seen.iter().all(|l| !l.is_empty()), "{seen:?}");
    let out = cluster.paxos_on(leader, &["propose", "seen", "by", "the", "watch"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    let seen = watch
        .read_until(|line| line.contains("propose 'seen by the watch'"))
        .unwrap_or_else(|seen| panic!("watch never showed the new value: {seen:?}\n{}", cluster.logs()));
    let watched_slot = seen.last().and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok());
    assert!(watched_slot.is_some_and(|s| s > slot), "{seen:?}");
    let pid = watch.pid();
    drop(watch); // kills that ssh client by its pid
    // The node shrugs off the vanished client.
    let out = cluster.paxos_on(node, &["get", "greeting", "--stale"]);
    assert_eq!(out.stdout, "hi there\n", "after killing ssh pid {pid}: {}", out.show());

    // Exit statuses.
    let out = cluster.paxos_on(node, &["frobnicate"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stdout.is_empty(), "{}", out.show());
    assert!(out.stderr.contains("unrecognized subcommand 'frobnicate'"), "{}", out.show());
    assert!(out.stderr.contains("(usage: paxos COMMAND"), "{}", out.show());
    let out = cluster.ssh(node, &cluster.reader, &["-s", "paxos", "put", "greeting", "bye"]);
    assert_eq!(out.code, Some(3), "{}", out.show());
    assert!(out.stderr.contains("permission denied: `put`"), "{}", out.show());
    let out = cluster.ssh(node, &cluster.reader, &["-s", "paxos", "get", "greeting"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "hi there\n"), "reader get: {}", out.show());

    // A console: one answer per line of stdin, errors included, until EOF.
    let input = "status\nput console-key one\nget console-key\n# a comment\n\nbogus\nput console-key\nget absent-key\n";
    let out = run_with_input(cluster.ssh_command(node, &cluster.operator, &["-s", "paxos"]), Some(input));
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(out.stdout.contains("role       follower\n"), "{}", out.show());
    assert!(out.stdout.contains("console-key set (it was absent); slot "), "{}", out.show());
    assert!(out.stdout.contains("\none\n"), "{}", out.show());
    assert!(out.stdout.contains("error: unrecognized subcommand 'bogus'"), "{}", out.show());
    assert!(out.stdout.contains("error: the following required arguments were not provided"), "{}", out.show());
    assert!(out.stdout.ends_with("(absent)\n"), "{}", out.show());

    // A JSON console answers every line, errors too, with exactly one JSON line.
    let input = "get console-key\nfrobnicate\nput console-key two\n";
    let out = run_with_input(cluster.ssh_command(node, &cluster.operator, &["-s", "paxos", "--json"]), Some(input));
    assert_eq!(out.code, Some(0), "{}", out.show());
    let answers: Vec<Value> =
        out.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect();
    assert_eq!(answers.len(), 3, "{}", out.show());
    assert_eq!(answers[0]["value"], "one");
    assert_eq!(answers[1]["error"]["kind"], "usage");
    assert_eq!(answers[2]["result"], "put");
    assert_eq!(answers[2]["previous"], "one");
}

/// The node processes `paxos up` started, killed by PID if the test fails
/// before `up` stops them itself. A PID is only signalled while it is still
/// a `paxos serve` of this test's data dir, so a reused PID is left alone.
#[test]
fn paxos_up_starts_a_cluster_that_openssh_reaches_and_sigterm_stops() {
    let Up { dir: _dir, keys, hosts, data, base_port: base, mut up, nodes } = Up::start();

    // The printed OpenSSH command line works as printed (known_hosts included).
    let known_hosts = keys.join("known_hosts");
    for port in base..base + 3 {
        let mut ssh = Command::new("/usr/bin/ssh");
        ssh.args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
            .arg(keys.join("operator"))
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .args(["-o", "IdentitiesOnly=yes", "127.0.0.1", "-s", "paxos", "status", "--json"]);
        let out = run(ssh);
        assert_eq!(out.code, Some(0), "port {port}: {}", out.show());
        assert_eq!(out.json()["address"], format!("127.0.0.1:{port}"), "{}", out.show());
    }
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(PAXOS);
        cmd.arg("--cluster").arg(&hosts).arg("-i").arg(keys.join("operator")).args(args);
        run(cmd)
    };
    let out = cli(&["put", "greeting", "hello"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    let out = cli(&["get", "greeting"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "hello\n"), "{}", out.show());

    // A node that dies is reported with the command that restarts it.
    let victim = nodes.pids[2];
    assert!(nodes.alive(victim));
    // SAFETY: kill(2) on a PID just checked to be one of this test's nodes.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let seen = up
        .read_until(|line| line.starts_with("node3 exited"))
        .unwrap_or_else(|seen| panic!("no exit report: {seen:?}"));
    let report = seen.last().unwrap();
    assert!(report.contains(&format!("serve --config {}", data.join("node3.json").display())), "{report}");

    // SIGTERM stops every node it started and exits 0.
    up.signal(libc::SIGTERM);
    let out = up.wait_exit();
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(out.stdout.contains("node1 stopped"), "{}", out.show());
    assert!(out.stdout.contains("node2 stopped"), "{}", out.show());
    for &pid in &nodes.pids {
        assert!(!nodes.alive(pid), "node pid {pid} outlived paxos up");
    }
}
