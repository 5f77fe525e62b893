//! Operator input as a careless or hostile operator sends it, through the
//! stock OpenSSH client and the `paxos` CLI against real daemons: slots and
//! ids far out of range, a console fed tens of thousands of pipelined
//! lines, a line that never ends, bytes that are not UTF-8, and stored
//! terminal escapes. The node answers each with a clear message and keeps
//! serving.

mod support_cluster;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support_cluster::*;

/// The longest a console test may take before it is declared hung.
const CONSOLE_LIMIT: Duration = Duration::from_secs(240);

/// What a console session gave back.
struct ConsoleOut {
    code: Option<i32>,
    lines: Vec<String>,
    stderr: String,
}

impl ConsoleOut {
    fn show(&self) -> String {
        let shown = self.lines.len().min(10);
        format!(
            "exit {:?}, {} answer lines, first {shown}: {:?}\nstderr: {}",
            self.code,
            self.lines.len(),
            &self.lines[..shown],
            self.stderr
        )
    }
}

/// Kills (by PID) and reaps the child when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` with `input` streamed into its stdin by one thread (written in
/// pieces, then closed) while another reads its answers line by line, so
/// neither pipe can fill up on our side. Bounded by `CONSOLE_LIMIT`.
fn console_session(cmd: Command, input: impl Iterator<Item = Vec<u8>> + Send + 'static) -> ConsoleOut {
    console_session_paced(cmd, input, false)
}

/// Bytes written into a pipe that its reader has not taken yet.
fn unread_in_pipe(fd: std::os::fd::RawFd) -> Option<i32> {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD on a pipe we own writes one int.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) };
    (rc == 0).then_some(unread)
}

/// `console_session`; with `paced`, each piece is written only once ssh has
/// read the previous one from the pipe, so ssh sends one small packet per
/// piece (the shape of input that stalled the console: many small packets).
fn console_session_paced(
    mut cmd: Command,
    input: impl Iterator<Item = Vec<u8>> + Send + 'static,
    paced: bool,
) -> ConsoleOut {
    let mut child = Reaped(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
    );
    let mut stdin = child.0.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let started = Instant::now();
        for piece in input {
            if stdin.write_all(&piece).is_err() {
                return;
            }
            while paced && unread_in_pipe(stdin.as_raw_fd()).is_some_and(|n| n > 0) {
                if started.elapsed() > CONSOLE_LIMIT {
                    return;
                }
                std::thread::yield_now();
            }
        }
    });
    let stdout = child.0.stdout.take().expect("piped");
    let reader =
        std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>());
    let mut stderr = child.0.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > CONSOLE_LIMIT {
            drop(child);
            panic!("the console did not finish within {CONSOLE_LIMIT:?}: it hung");
        }
        std::thread::sleep(POLL);
    };
    let _ = writer.join();
    ConsoleOut {
        code: status.code(),
        lines: reader.join().unwrap_or_default(),
        stderr: errors.join().unwrap_or_default(),
    }
}

fn console_command(cluster: &Cluster, node: u64, json: bool) -> Command {
    let mut args = vec!["-s", "paxos", "console"];
    if json {
        args.push("--json");
    }
    cluster.ssh_command(node, &cluster.operator, &args)
}

fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON document ({e}): {line}"))
}

/// A fresh value commits and an old one reads back, through the CLI.
fn still_serving(cluster: &Cluster, round: &str) {
    let key = format!("after-{round}");
    cluster.put(&key, round);
    assert_eq!(cluster.get(&key).as_deref(), Some(round));
    assert_eq!(cluster.get("kept").as_deref(), Some("safe"), "a committed value was lost after {round}");
}

/// Peak resident memory of node `id` in KiB (VmHWM).
fn peak_rss_kib(cluster: &Cluster, id: u64) -> u64 {
    let pid = cluster.node(id).pid().expect("node running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn slots_and_node_ids_out_of_range_get_usage_errors_and_never_crash_a_node() {
    let mut cluster = Cluster::start(3);
    cluster.put("kept", "safe");
    let (leader, _) = cluster.wait_for_leader();

    // Past the commit index: an empty answer from every node (this used to
    // panic the daemon), and the node keeps serving.
    for node in [1, 2, 3] {
        let out = cluster.paxos_on(node, &["log", "--from", "1000000", "--json"]);
        assert_eq!(out.code, Some(0), "node {node}: {}\n{}", out.show(), cluster.logs());
        assert_eq!(out.json()["entries"], serde_json::json!([]), "{}", out.show());
        let out = cluster.paxos_on(node, &["log", "--from", "1000000"]);
        assert_eq!(out.code, Some(0), "node {node}: {}", out.show());
    }
    for node in [1, 2, 3] {
        assert!(cluster.exited(node).is_none(), "node {node} died\n{}", cluster.logs());
    }
    still_serving(&cluster, "log-past-the-end");

    // Absurd values are usage errors (exit 2) that name the limit.
    let absurd: &[&[&str]] = &[
        &["log", "--from", "18446744073709551615"],
        &["log", "--from", "9007199254740992"],
        &["log", "--from", "99999999999999999999999"],
        &["log", "--limit", "0"],
        &["log", "--limit", "4294967296"],
        &["watch", "--from", "18446744073709551615"],
        &["step-down", "--to", "0"],
        &["step-down", "--to", "18446744073709551615"],
    ];
    for args in absurd {
        let out = cluster.paxos_on(leader, args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.show());
        assert!(
            out.stderr.contains("invalid value") && out.stderr.contains("usage: paxos "),
            "{args:?}: {}",
            out.show()
        );
        let out = cluster.cli(args);
        assert_eq!(out.code, Some(2), "CLI {args:?}: {}", out.show());
    }
    // A node id in range that is not a member: a usage error from the node.
    let out = cluster.paxos_on(leader, &["step-down", "--to", "99"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("node 99 is not a member of this cluster (members: 1, 2, 3)"), "{}", out.show());
    // The CLI passes a node's usage error on and asks no other node.
    let out = cluster.cli(&["step-down", "--to", "98"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("node 98 is not a member"), "{}", out.show());
    let asked: Vec<u64> =
        [1, 2, 3].into_iter().filter(|id| cluster.log(*id).contains("runs \"paxos step-down --to 98\"")).collect();
    assert_eq!(asked.len(), 1, "nodes asked: {asked:?}\n{}", cluster.logs());
    // The CLI's log past the end answers too, from the first node.
    let out = cluster.cli(&["log", "--from", "5000000", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert_eq!(cluster.wait_for_leader().0, leader, "the leadership did not move");
    for node in [1, 2, 3] {
        assert!(cluster.exited(node).is_none(), "node {node} died\n{}", cluster.logs());
    }
    still_serving(&cluster, "absurd-arguments");
}

#[test]
fn a_console_answers_twenty_thousand_pipelined_lines_in_order() {
    let cluster = Cluster::start(1);
    const PUTS: usize = 12_000;
    const LINES: usize = 20_000;
    // Every line a write that waits for its slot to commit, as in the
    // reported hang (9,000 puts: one answer, then nothing). About 270 KB of
    // input arrives long before the answers.
    // One line per write, each read by ssh before the next: ssh sends one
    // small packet per line, as when a script feeds the console line by line.
    let lines: Vec<Vec<u8>> = (0..PUTS).map(|i| format!("put key{i} value-{i}\n").into_bytes()).collect();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    assert!(bytes > 250_000, "{bytes} bytes");
    let out = console_session_paced(console_command(&cluster, 1, true), lines.into_iter(), true);
    assert_eq!(out.code, Some(0), "{}\n{}", out.show(), cluster.logs());
    assert_eq!(out.lines.len(), PUTS, "one answer per line: {}\n{}", out.show(), cluster.logs());
    let mut last_slot = None;
    for (i, answer) in out.lines.iter().enumerate() {
        let v = json_line(answer);
        assert_eq!(
            (v["key"].as_str(), v["result"].as_str()),
            (Some(format!("key{i}").as_str()), Some("put")),
            "answer {i}"
        );
        // Lines in flight together may share a slot; a later line never
        // lands in an earlier one.
        let slot = v["slot"].as_u64();
        assert!(slot.is_some() && slot >= last_slot, "answer {i} in slot {slot:?} after {last_slot:?}");
        last_slot = slot;
    }
    // Text mode, 20,000 reads this time: every line answered, in order.
    let input: Vec<u8> =
        (0..LINES).flat_map(|i| format!("get key{} --stale\n", (LINES - 1 - i) % PUTS).into_bytes()).collect();
    let out = console_session(console_command(&cluster, 1, false), std::iter::once(input));
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert_eq!(out.lines.len(), LINES, "{}", out.show());
    for (i, answer) in out.lines.iter().enumerate() {
        assert_eq!(answer, &format!("value-{}", (LINES - 1 - i) % PUTS), "answer {i}");
    }
}

#[test]
fn a_line_that_never_ends_is_refused_without_being_buffered() {
    let cluster = Cluster::start(1);
    let before = peak_rss_kib(&cluster, 1);
    const HUGE: usize = 96 * 1024 * 1024;
    // put a 1, then a 96 MiB line, then a line without newline at the end.
    let pieces = std::iter::once(b"put a 1\nput b ".to_vec())
        .chain((0..HUGE / (1024 * 1024)).map(|_| vec![b'x'; 1024 * 1024]))
        .chain(std::iter::once(b"\nget a\nput c ".to_vec()))
        .chain((0..8).map(|_| vec![b'y'; 1024 * 1024]));
    let out = console_session(console_command(&cluster, 1, true), pieces);
    assert_eq!(out.code, Some(0), "{}\n{}", out.show(), cluster.logs());
    assert_eq!(out.lines.len(), 4, "{}", out.show());
    assert_eq!(json_line(&out.lines[0])["key"], "a");
    let too_long = json_line(&out.lines[1]);
    assert_eq!(too_long["error"]["kind"], "input", "{}", out.lines[1]);
    let message = too_long["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("line 2 is {} bytes", HUGE + 6)), "{message}");
    assert!(message.contains("over the console's limit of 2097152 bytes"), "{message}");
    assert_eq!(json_line(&out.lines[2])["value"], "1");
    assert_eq!(json_line(&out.lines[3])["error"]["kind"], "input", "{}", out.lines[3]);
    let grown_mib = (peak_rss_kib(&cluster, 1).saturating_sub(before)) / 1024;
    assert!(grown_mib < 48, "a {} MiB line grew the node by {grown_mib} MiB", HUGE >> 20);
    // Neither long put reached the log.
    let out = cluster.paxos_on(1, &["get", "b", "--json"]);
    assert_eq!(out.json()["value"], Value::Null, "{}", out.show());
    assert_eq!(cluster.paxos_on(1, &["get", "a"]).stdout, "1\n");
}

#[test]
fn bytes_that_are_not_utf8_get_an_error_for_their_line_and_the_console_goes_on() {
    let cluster = Cluster::start(1);
    let input = b"put a 1\nput b \xff\xfe\x80\nget a\n\xc3\x28\nget b\n".to_vec();
    let out = console_session(console_command(&cluster, 1, false), std::iter::once(input.clone()));
    assert_eq!(out.code, Some(0), "{}\n{}", out.show(), cluster.logs());
    assert!(out.lines.first().is_some_and(|l| l.starts_with("a set (it was absent); slot ")), "{}", out.show());
    assert_eq!(
        out.lines[1..],
        [
            "error: line 2 is not valid UTF-8; it was skipped",
            "1",
            "error: line 4 is not valid UTF-8; it was skipped",
            "(absent)",
        ],
        "{}",
        out.show()
    );
    let out = console_session(console_command(&cluster, 1, true), std::iter::once(input));
    assert_eq!(out.code, Some(0), "{}", out.show());
    let kinds: Vec<Value> = out.lines.iter().map(|l| json_line(l)["error"]["kind"].clone()).collect();
    assert_eq!(kinds, vec![Value::Null, "input".into(), Value::Null, "input".into(), Value::Null], "{}", out.show());
}

#[test]
fn stored_terminal_escapes_are_shown_escaped_and_json_keeps_them_exact() {
    let cluster = Cluster::start(1);
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[31mred\u{9b}0m";
    let input = format!("put esc {hostile}\n").into_bytes();
    let out = console_session(console_command(&cluster, 1, true), std::iter::once(input));
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert_eq!(json_line(&out.lines[0])["result"], "put", "{}", out.show());

    let out = cluster.paxos_on(1, &["get", "esc"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert_eq!(out.stdout, "\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\u{9b}0m\n", "{:?}", out.stdout);
    let out = cluster.paxos_on(1, &["log", "--from", "0"]);
    assert!(!out.stdout.contains('\u{1b}') && !out.stdout.contains('\u{9b}'), "{:?}", out.stdout);
    let out = cluster.cli(&["get", "esc"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(!out.stdout.contains('\u{1b}') && out.stdout.starts_with("\\x1b]0;owned"), "{:?}", out.stdout);
    let out = cluster.paxos_on(1, &["get", "esc", "--json"]);
    assert_eq!(out.json()["value"], hostile, "{}", out.show());
}

#[test]
fn a_read_cut_off_by_its_node_dying_is_not_carried_to_the_next_node() {
    let mut cluster = Cluster::start(3);
    cluster.put("cut-off-read", "value");
    // Node 1 is where the CLI sends the read first. Alone, it cannot
    // confirm a linearizable read, so the read waits there.
    cluster.kill(2);
    cluster.kill(3);
    let get = {
        let mut get = Command::new(PAXOS);
        get.arg("--cluster").arg(&cluster.inventory).arg("-i").arg(&cluster.operator);
        get.args(["get", "cut-off-read"]);
        std::thread::spawn(move || run(get))
    };
    let asked = "runs \"paxos get cut-off-read\"";
    eventually("node 1 to be working on the read", || cluster.log(1).contains(asked).then_some(()), || cluster.logs());
    // Node 1 freezes, the others come back, then node 1 dies under the read.
    cluster.signal(1, libc::SIGSTOP);
    cluster.restart(2);
    cluster.restart(3);
    cluster.kill(1);

    let out = get.join().expect("get thread");
    assert_eq!(out.code, Some(4), "{}\n{}", out.show(), cluster.logs());
    assert!(out.stderr.contains("node 1 closed the connection before answering"), "{}", out.show());
    assert!(out.stderr.contains("a read is not carried to another node"), "{}", out.show());
    for node in [2, 3] {
        assert!(!cluster.log(node).contains(asked), "node {node} was asked too\n{}", cluster.logs());
    }
    // Run again by the operator, it is answered.
    cluster.wait_for_leader();
    assert_eq!(cluster.get("cut-off-read").as_deref(), Some("value"));
}

#[test]
fn a_log_answer_is_bounded_in_bytes_and_next_goes_on_from_where_it_stopped() {
    let mut cluster = Cluster::start(1);
    // Ten values of 900 KB through one console (a line holds up to 2 MiB):
    // 9 MB of log, more than one answer's 4 MiB budget.
    const VALUES: usize = 10;
    const VALUE_BYTES: usize = 900_000;
    let lines: Vec<Vec<u8>> = (0..VALUES)
        .map(|i| format!("put big{i} {}\n", char::from(b'a' + i as u8).to_string().repeat(VALUE_BYTES)).into_bytes())
        .collect();
    let out = console_session(console_command(&cluster, 1, true), lines.into_iter());
    assert_eq!(out.code, Some(0), "{}\n{}", out.show(), cluster.logs());
    assert_eq!(out.lines.len(), VALUES, "{}", out.show());

    // A reader asks for everything; each answer stops within the budget and
    // names the slot to go on from, and following `next` reaches every value.
    let mut from = 0u64;
    let mut seen = Vec::new();
    let mut answers = 0;
    while seen.len() < VALUES {
        answers += 1;
        assert!(answers <= VALUES, "no progress: {seen:?}");
        let from_arg = from.to_string();
        let out =
            cluster.ssh(1, &cluster.reader, &["-s", "paxos", "log", "--from", &from_arg, "--limit", "10000", "--json"]);
        assert_eq!(out.code, Some(0), "{}", out.show());
        let answer = out.json();
        let entries = answer["entries"].as_array().expect("entries").clone();
        assert!(!entries.is_empty(), "from {from}: {}; seen {seen:?}", out.show());
        let value_bytes: usize = entries
            .iter()
            .flat_map(|e| e["commands"].as_array().cloned().unwrap_or_default())
            .map(|c| c["value"].as_str().map_or(0, str::len))
            .sum();
        assert!(value_bytes <= 4 * 1024 * 1024, "one answer carried {value_bytes} bytes of values");
        for e in &entries {
            for c in e["commands"].as_array().cloned().unwrap_or_default() {
                if let Some(key) = c["key"].as_str() {
                    seen.push(key.to_owned());
                }
            }
        }
        from = answer["next"].as_u64().expect("next");
    }
    assert!(answers >= 3, "9 MB came back in {answers} answers");
    let expected: Vec<String> = (0..VALUES).map(|i| format!("big{i}")).collect();
    assert_eq!(seen, expected);
    assert!(cluster.exited(1).is_none(), "the node died\n{}", cluster.logs());
}
