//! A console over real SSH runs pipelined commands concurrently: commands
//! on different keys overlap, commands on one key keep the order of the
//! lines, answers come back in the order of the lines, and no more than
//! `MAX_IN_FLIGHT` lines are read ahead (the rest wait in the SSH window,
//! none lost).

mod support_cluster;

use paxos::ops::console::MAX_IN_FLIGHT;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use support_cluster::{Cluster, WAIT, eventually};

/// `ssh NODE -s paxos console --json`, fed and read line by line; killed by
/// its PID when dropped.
struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: mpsc::Receiver<String>,
}

impl Console {
    fn open(cluster: &Cluster, id: u64) -> Console {
        let mut child = cluster
            .ssh_command(id, &cluster.operator, &["-s", "paxos", "console", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh");
        let stdout = child.stdout.take().expect("piped");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Console { child, stdin, answers }
    }

    /// Write lines from another thread: a writer blocked by a full SSH
    /// window must not stop the test from reading.
    fn send(&mut self, lines: Vec<String>) -> std::thread::JoinHandle<()> {
        let mut stdin = self.stdin.take().expect("send once");
        std::thread::spawn(move || {
            for line in lines {
                stdin.write_all(format!("{line}\n").as_bytes()).expect("write a line");
            }
            // Dropping stdin ends the input: the console answers everything, then ends.
        })
    }

    fn answers(&self, n: usize, cluster: &Cluster) -> Vec<Value> {
        (0..n)
            .map(|i| {
                let line = self
                    .answers
                    .recv_timeout(WAIT)
                    .unwrap_or_else(|_| panic!("no answer {i} of {n} within {WAIT:?}\n{}", cluster.logs()));
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {i} is not JSON ({e}): {line}"))
            })
            .collect()
    }

    fn wait_exit(mut self) -> Option<i32> {
        let status = eventually("the console to end", || self.child.try_wait().ok().flatten(), String::new);
        assert!(self.answers.recv_timeout(WAIT).is_err(), "no answer after the last line's");
        status.code()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill(); // by this child's PID
        let _ = self.child.wait();
    }
}

fn pending_requests(cluster: &Cluster, id: u64) -> u64 {
    let out = cluster.paxos_on(id, &["status", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    out.json()["pending_requests"].as_u64().expect("pending_requests")
}

#[test]
fn pipelined_commands_keep_the_order_of_each_key_and_are_answered_in_the_order_of_the_lines() {
    let cluster = Cluster::start(1);
    let mut lines = Vec::new();
    for round in 1..=20 {
        lines.push(format!("put k {round}"));
        lines.push(format!("put other{round} x"));
        lines.push("get k".to_owned());
        if round % 7 == 0 {
            lines.extend(["status".to_owned(), "put k".to_owned(), "log --limit 1".to_owned()]);
        }
    }
    lines.extend(["delete k".to_owned(), "cas k --absent new".to_owned(), "get k".to_owned()]);
    let n = lines.len();
    let mut console = Console::open(&cluster, 1);
    let writer = console.send(lines.clone());
    let answers = console.answers(n, &cluster);
    writer.join().unwrap();
    let mut previous = Value::Null;
    for (line, answer) in lines.iter().zip(&answers) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["put", "k", value] => {
                // Each put of k replaced the one before it, line after line.
                assert_eq!((&answer["key"], &answer["previous"]), (&json!("k"), &previous), "{line}: {answer}");
                previous = json!(value);
            }
            ["put", key, "x"] => assert_eq!(answer["key"], *key, "{line}: {answer}"),
            ["get", "k"] => assert_eq!(answer["value"], previous, "{line}: {answer}"),
            ["status"] => assert_eq!(answer["id"], 1, "{line}: {answer}"),
            ["put", "k"] => assert_eq!(answer["error"]["kind"], "usage", "{line}: {answer}"),
            ["log", ..] => assert!(answer["entries"].is_array(), "{line}: {answer}"),
            ["delete", "k"] => {
                assert_eq!(answer["existed"], true, "{line}: {answer}");
                previous = Value::Null;
            }
            ["cas", "k", "--absent", new] => {
                assert_eq!(answer["swapped"], true, "{line}: {answer}");
                previous = json!(new);
            }
            _ => unreachable!("{line}"),
        }
    }
    assert_eq!(answers.last().unwrap()["value"], "new");
    assert_eq!(console.wait_exit(), Some(0));
}

#[test]
fn commands_on_different_keys_overlap_up_to_the_limit_and_no_line_is_lost() {
    // Check-quorum only after 6 s (600 ticks of 10 ms) without a quorum: the
    // leader keeps the commands pending while its followers are frozen.
    let mut cluster = Cluster::prepare(3);
    cluster.set_consensus(json!({"timing": {"election_min": 600, "election_max": 700}}));
    cluster.start_all();
    let (leader, _) = cluster.wait_for_leader();
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    assert_eq!(pending_requests(&cluster, leader), 0);

    // With no quorum, no put can finish: the leader holds every put the
    // console has started. One at a time, that would be one.
    for id in &followers {
        cluster.signal(*id, libc::SIGSTOP);
    }
    let n = 2 * MAX_IN_FLIGHT + 20;
    let lines: Vec<String> = (0..n).map(|i| format!("put key{i} value{i}")).collect();
    let mut console = Console::open(&cluster, leader);
    let writer = console.send(lines);
    let resume = |cluster: &Cluster| {
        for id in &followers {
            cluster.signal(*id, libc::SIGCONT);
        }
    };
    let mut seen = Vec::new();
    let reached = (0..200).find_map(|_| {
        let pending = pending_requests(&cluster, leader);
        seen.push(pending);
        (pending >= MAX_IN_FLIGHT as u64).then_some(pending)
    });
    // The limit holds while nothing can finish: later samples see no more.
    for _ in 0..5 {
        seen.push(pending_requests(&cluster, leader));
    }
    resume(&cluster);
    assert_eq!(reached, Some(MAX_IN_FLIGHT as u64), "pending requests on the leader, sample by sample: {seen:?}");
    assert!(seen.iter().all(|p| *p <= MAX_IN_FLIGHT as u64), "more than the limit in flight: {seen:?}");

    // Every line is answered, in order, once the followers are back.
    let answers = console.answers(n, &cluster);
    writer.join().unwrap();
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!((&answer["result"], &answer["key"]), (&json!("put"), &json!(format!("key{i}"))), "{answer}");
    }
    assert_eq!(console.wait_exit(), Some(0));
    assert_eq!(cluster.get(&format!("key{}", n - 1)).as_deref(), Some(format!("value{}", n - 1).as_str()));
}
