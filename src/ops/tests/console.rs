//! The console's hostile input (over-long lines, bytes that are not UTF-8),
//! contained panics, escaped terminal output and bounded arguments.

use super::FakeNode;
use crate::ops::console::{RawLine, read_line_bounded};
use crate::ops::{
    Context, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, MAX_LINE_BYTES, Role, escape_controls, parse, run_console, run_line,
};
use serde_json::Value;

async fn console_bytes(node: &FakeNode, json: bool, input: &[u8]) -> String {
    let ctx = Context { api: node, role: Role::Operator, fingerprint: "SHA256:alice", audit: None };
    let mut out = Vec::new();
    run_console(&ctx, json, input, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

async fn line(node: &FakeNode, line: &str) -> (i32, String, String) {
    let ctx = Context { api: node, role: Role::Operator, fingerprint: "SHA256:alice", audit: None };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_line(&ctx, line, &mut out, &mut err).await;
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

#[tokio::test]
async fn lines_are_read_up_to_the_limit_and_longer_ones_are_skipped_whole() {
    let mut input: &[u8] = b"short\n0123456789abc\nok\nlast-without-newline";
    let mut reader = tokio::io::BufReader::with_capacity(4, &mut input);
    let mut read = Vec::new();
    while let Some(l) = read_line_bounded(&mut reader, 10).await.unwrap() {
        read.push(l);
    }
    assert_eq!(
        read,
        vec![
            RawLine::Line(b"short".to_vec()),
            RawLine::TooLong { bytes: 13 },
            RawLine::Line(b"ok".to_vec()),
            RawLine::TooLong { bytes: 20 },
        ]
    );
    // Exactly the limit is fine; an empty line is a line.
    let mut input: &[u8] = b"0123456789\n\n";
    let mut reader = tokio::io::BufReader::with_capacity(3, &mut input);
    assert_eq!(read_line_bounded(&mut reader, 10).await.unwrap(), Some(RawLine::Line(b"0123456789".to_vec())));
    assert_eq!(read_line_bounded(&mut reader, 10).await.unwrap(), Some(RawLine::Line(Vec::new())));
    assert_eq!(read_line_bounded(&mut reader, 10).await.unwrap(), None);
}

#[tokio::test]
async fn an_over_long_line_is_answered_with_an_error_and_the_console_goes_on() {
    let node = FakeNode::new();
    let mut input = b"put a 1\nput b ".to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 1));
    input.extend_from_slice(b"\nget a\n");
    let out = console_bytes(&node, true, &input).await;
    let answers: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 3, "{out}");
    assert_eq!(answers[0]["key"], "a");
    assert_eq!(answers[1]["error"]["kind"], "input");
    let message = answers[1]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2 is") && message.contains(&format!("limit of {MAX_LINE_BYTES} bytes")),
        "{message}"
    );
    assert_eq!(answers[2]["value"], "1");
    // The long put never reached the node.
    assert_eq!(node.with(|s| s.submitted.len()), 1);
}

#[tokio::test]
async fn a_line_that_is_not_utf8_is_answered_with_an_error_and_the_console_goes_on() {
    let node = FakeNode::new();
    let out = console_bytes(&node, false, b"put a 1\nput b \xff\xfe\nget a\n").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["a set (it was absent); slot 0", "error: line 2 is not valid UTF-8; it was skipped", "1"]);
    let out = console_bytes(&node, true, b"\xc3\x28\nget a\n").await;
    let answers: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers[0]["error"]["kind"], "input", "{out}");
    assert_eq!(answers[1]["value"], "1");
}

#[tokio::test]
async fn a_panicking_command_is_an_internal_error_of_that_command_alone() {
    let node = FakeNode::new();
    node.with(|s| s.log_panics = true);
    let (code, out, err) = line(&node, "log --from 0").await;
    assert_eq!(code, EXIT_INTERNAL, "{out}{err}");
    assert!(err.starts_with("paxos: internal error: `log` failed inside the node (log asked to panic)"), "{err}");
    let (code, out, _) = line(&node, "log --json").await;
    assert_eq!(code, EXIT_INTERNAL);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["error"]["kind"], "internal");

    // In a console the next lines still run.
    let out = console_bytes(&node, true, b"put a 1\nlog\nget a\n").await;
    let answers: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 3, "{out}");
    assert_eq!(answers[1]["error"]["kind"], "internal");
    assert_eq!(answers[2]["value"], "1");
}

#[tokio::test]
async fn stored_control_bytes_are_escaped_in_text_and_exact_in_json() {
    let node = FakeNode::new();
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2Jgone\u{9b}31m\u{202e}txt";
    let out = console_bytes(&node, false, format!("put k\u{1b}[1m {hostile}\nget k\u{1b}[1m\nlog\n").as_bytes()).await;
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{9b}'), "{out:?}");
    assert!(!out.contains('\u{202e}'), "{out:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "'k\\x1b[1m' set (it was absent); slot 0");
    assert_eq!(lines[1], "\\x1b]0;owned\\x07\\x1b[2Jgone\\u{9b}31m\\u{202e}txt");
    assert!(lines[2].starts_with("0 put 'k\\x1b[1m' "), "{out:?}");
    let (code, out, _) = line(&node, "get k\u{1b}[1m --json").await;
    assert_eq!(code, EXIT_OK);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["value"], hostile);
    // Error messages quoting the input never carry the raw bytes either.
    let (code, _, err) = line(&node, "frob\u{7}\u{1b}[2Jnicate").await;
    assert_eq!(code, EXIT_USAGE);
    assert!(!err.contains('\u{7}') && !err.contains('\u{1b}') && err.contains("frob"), "{err:?}");
    assert_eq!(escape_controls("plain text, ünïcode ✓"), "plain text, ünïcode ✓");
}

#[tokio::test]
async fn slots_limits_and_node_ids_are_checked_before_they_reach_the_node() {
    let node = FakeNode::new();
    for bad in [
        "log --from 18446744073709551615",
        "log --from 9007199254740992",
        "log --from -1",
        "log --limit 0",
        "log --limit 10001",
        "log --limit 99999999999999999999",
        "watch --from 18446744073709551615",
        "step-down --to 0",
        "step-down --to 18446744073709551615",
    ] {
        let e = parse(bad).expect_err(bad);
        assert!(!e.message.is_empty(), "{bad}");
    }
    assert!(parse("log --from 9007199254740991").is_ok());
    // A node id in range but not in the cluster: a usage error, and the node is not asked.
    let (code, _, err) = line(&node, "step-down --to 7").await;
    assert_eq!(code, EXIT_USAGE, "{err}");
    assert!(err.contains("node 7 is not a member of this cluster (members: 1, 2, 3)"), "{err}");
    assert_eq!(node.with(|s| s.leader), Some(1));
    // Far past the end of the log: an empty answer, not a failure.
    let (code, out, err) = line(&node, "log --from 9007199254740991 --json").await;
    assert_eq!(code, EXIT_OK, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["entries"], serde_json::json!([]));
}

/// A `FakeNode` whose commands on some keys are held until released, and
/// which records when each command starts and ends (`start put k 1`,
/// `end put k 1`) and how many run at once.
struct GatedNode {
    inner: FakeNode,
    /// Held keys: a command on the key waits for a permit.
    gates: std::collections::HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>,
    /// Starting a command on the first key opens the gate of the second.
    opens: Vec<(String, String)>,
    events: std::sync::Mutex<Vec<String>>,
    running: std::sync::atomic::AtomicUsize,
    most_running: std::sync::atomic::AtomicUsize,
    started: tokio::sync::Notify,
}

impl GatedNode {
    fn new(held: &[&str], opens: &[(&str, &str)]) -> GatedNode {
        GatedNode {
            inner: FakeNode::new(),
            gates: held.iter().map(|k| (k.to_string(), std::sync::Arc::new(tokio::sync::Semaphore::new(0)))).collect(),
            opens: opens.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            events: std::sync::Mutex::new(Vec::new()),
            running: Default::default(),
            most_running: Default::default(),
            started: tokio::sync::Notify::new(),
        }
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn open(&self, key: &str) {
        self.gates[key].add_permits(1_000);
    }

    async fn around<T>(&self, key: &str, what: String, run: impl std::future::Future<Output = T>) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        self.events.lock().unwrap().push(format!("start {what}"));
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most_running.fetch_max(now, SeqCst);
        for (trigger, gate) in &self.opens {
            if trigger == key {
                self.open(gate);
            }
        }
        self.started.notify_waiters();
        if let Some(gate) = self.gates.get(key) {
            gate.acquire().await.unwrap().forget();
        }
        let result = run.await;
        self.running.fetch_sub(1, SeqCst);
        self.events.lock().unwrap().push(format!("end {what}"));
        result
    }
}

impl crate::ops::NodeApi for GatedNode {
    fn status(&self) -> futures::future::BoxFuture<'_, crate::ops::NodeStatus> {
        Box::pin(self.around("", "status".into(), self.inner.status()))
    }
    fn members(&self) -> futures::future::BoxFuture<'_, Vec<crate::ops::MemberInfo>> {
        self.inner.members()
    }
    fn membership(&self) -> futures::future::BoxFuture<'_, Result<crate::ops::MembershipView, crate::ops::NodeError>> {
        self.inner.membership()
    }
    fn submit(
        &self,
        op: crate::state_machine::Op,
        request: Option<crate::ops::RequestId>,
    ) -> futures::future::BoxFuture<'_, Result<crate::ops::Submitted, crate::ops::NodeError>> {
        use crate::state_machine::Op;
        let (key, what) = match &op {
            Op::Put { key, value } => (key.clone(), format!("put {key} {value}")),
            Op::Delete { key } => (key.clone(), format!("delete {key}")),
            Op::Cas { key, .. } => (key.clone(), format!("cas {key}")),
            Op::Propose { value } => (String::new(), format!("propose {value}")),
            Op::Reconfigure { change } => (String::new(), format!("reconfigure {change}")),
        };
        // The fake applies when `submit` is called: call it only once through the gate.
        Box::pin(async move { self.around(&key, what, async { self.inner.submit(op, request).await }).await })
    }
    fn read(
        &self,
        key: String,
        linearizable: bool,
    ) -> futures::future::BoxFuture<'_, Result<crate::ops::ReadValue, crate::ops::NodeError>> {
        Box::pin(async move {
            let what = format!("get {key}");
            self.around(&key.clone(), what, async { self.inner.read(key, linearizable).await }).await
        })
    }
    fn log(
        &self,
        from: u64,
        limit: u64,
    ) -> futures::future::BoxFuture<'_, Result<Vec<crate::ops::LogEntry>, crate::ops::NodeError>> {
        self.inner.log(from, limit)
    }
    fn watch(
        &self,
        from: u64,
    ) -> futures::future::BoxFuture<'_, Result<crate::ops::WatchReceiver, crate::ops::NodeError>> {
        self.inner.watch(from)
    }
    fn step_down(
        &self,
        to: Option<crate::consensus::ballot::NodeId>,
    ) -> futures::future::BoxFuture<'_, Result<crate::consensus::ballot::NodeId, crate::ops::NodeError>> {
        self.inner.step_down(to)
    }
    fn metrics(&self) -> futures::future::BoxFuture<'_, String> {
        self.inner.metrics()
    }
    fn quorum(&self) -> usize {
        self.inner.quorum()
    }
    fn seed_inventory(&self) -> &crate::cluster::Inventory {
        self.inner.seed_inventory()
    }
}

/// Run a console over `node` with at most `limit` lines in flight; a
/// console that never ends (commands waiting for each other) fails the test.
async fn gated_console(node: &GatedNode, limit: usize, input: &str) -> Vec<Value> {
    let ctx = Context { api: node, role: Role::Operator, fingerprint: "SHA256:alice", audit: None };
    let mut out = Vec::new();
    let run = crate::ops::console::run_console_with(&ctx, true, input.as_bytes(), &mut out, limit);
    tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("the console never finished: {:?}", node.events()))
        .unwrap();
    String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn commands_on_different_keys_overlap_and_are_answered_in_order() {
    // `put a` cannot finish until `put b`, a later line, has started: only
    // overlapping commands get through.
    let node = GatedNode::new(&["a"], &[("b", "a")]);
    let answers = gated_console(&node, 64, "put a 1\nput b 2\nget b\n").await;
    assert_eq!(answers.len(), 3);
    assert_eq!((&answers[0]["key"], &answers[1]["key"], &answers[2]["value"]), (&"a".into(), &"b".into(), &"2".into()));
    let events = node.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap_or_else(|| panic!("{e} in {events:?}"));
    assert!(at("start put b 2") < at("end put a 1"), "{events:?}");
    // A read of b waits for the write of b before it.
    assert!(at("end put b 2") < at("start get b"), "{events:?}");
}

#[tokio::test]
async fn commands_on_one_key_run_one_after_the_other_in_the_order_of_the_lines() {
    // `put k 1` is held until `put z`, after the reads and writes of k, starts.
    let node = GatedNode::new(&["k"], &[("z", "k")]);
    let answers = gated_console(&node, 64, "put k 1\nput k 2\nget k\ndelete k\nput z 0\n").await;
    let events = node.events();
    let on_k: Vec<&String> = events.iter().filter(|e| e.contains(" k")).collect();
    assert_eq!(
        on_k,
        [
            "start put k 1",
            "end put k 1",
            "start put k 2",
            "end put k 2",
            "start get k",
            "end get k",
            "start delete k",
            "end delete k"
        ],
        "{events:?}"
    );
    assert_eq!(answers[0]["previous"], Value::Null);
    assert_eq!(answers[1]["previous"], "1");
    assert_eq!(answers[2]["value"], "2");
    assert_eq!(answers[3]["existed"], true);
    assert_eq!(answers[4]["key"], "z");
}

#[tokio::test(flavor = "current_thread")]
async fn a_command_without_a_key_waits_for_everything_before_it_and_holds_back_everything_after() {
    let node = GatedNode::new(&["a"], &[]);
    let console = gated_console(&node, 64, "put a 1\nstatus\nput b 2\n");
    let driver = async {
        while !node.events().contains(&"start put a 1".to_owned()) {
            node.started.notified().await;
        }
        // Give the console every chance to run what it should not.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(node.events(), ["start put a 1"], "status and put b waited for put a");
        node.open("a");
    };
    let (answers, ()) = tokio::join!(console, driver);
    assert_eq!(answers.len(), 3);
    assert_eq!(
        node.events(),
        ["start put a 1", "end put a 1", "start status", "end status", "start put b 2", "end put b 2"]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_console_reads_no_more_than_its_limit_ahead_and_loses_no_line() {
    let puts = (0..40).map(|i| format!("put k{i} v{i}\n"));
    let lines: String = puts.chain((0..40).map(|i| format!("get k{i}\n"))).collect();
    let held: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let held: Vec<&str> = held.iter().map(String::as_str).collect();
    let node = GatedNode::new(&held, &[]);
    let console = gated_console(&node, 5, &lines);
    let driver = async {
        let started = || node.events().iter().filter(|e| e.starts_with("start")).count();
        while started() < 5 {
            node.started.notified().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        // Five puts on five keys hold the five places; nothing else was read.
        assert_eq!(started(), 5, "{:?}", node.events());
        for key in &held {
            node.open(key);
        }
    };
    let (answers, ()) = tokio::join!(console, driver);
    assert_eq!(answers.len(), 80);
    for i in 0..40 {
        assert_eq!(answers[i]["key"], format!("k{i}"), "{:?}", answers[i]);
        assert_eq!(answers[40 + i]["value"], format!("v{i}"), "{:?}", answers[40 + i]);
    }
    assert_eq!(node.most_running.load(std::sync::atomic::Ordering::SeqCst), 5);
}

#[tokio::test]
async fn an_error_is_answered_in_its_place_while_other_commands_overlap() {
    let node = GatedNode::new(&["a"], &[("c", "a")]);
    let input = "put a 1\nput b\nget b --bogus\n\u{0}\nput c 3 --json\nget a\n";
    let answers = gated_console(&node, 64, input).await;
    assert_eq!(answers.len(), 6, "{answers:?}");
    assert_eq!(answers[0]["key"], "a");
    assert_eq!(answers[1]["error"]["kind"], "usage");
    assert_eq!(answers[2]["error"]["kind"], "usage");
    assert_eq!(answers[3]["error"]["kind"], "usage");
    assert_eq!(answers[4]["key"], "c");
    assert_eq!(answers[5]["value"], "1");
}
