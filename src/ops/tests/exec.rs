use super::{FakeNode, SharedBuf};
use crate::ops::api::{NodeError, RequestId};
use crate::ops::{
    AuditLog, Context, EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, Role, authorize, parse,
    run_console, run_line,
};
use crate::state_machine::Op;
use serde_json::{Value, json};

struct Run {
    code: i32,
    out: String,
    err: String,
}

async fn run(node: &FakeNode, role: Role, audit: Option<&AuditLog>, line: &str) -> Run {
    let ctx = Context { api: node, role, fingerprint: "SHA256:alice", audit };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_line(&ctx, line, &mut out, &mut err).await;
    Run { code, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
}

async fn operator(node: &FakeNode, line: &str) -> Run {
    run(node, Role::Operator, None, line).await
}

#[test]
fn readers_may_only_read() {
    let lines = |lines: &[&str]| lines.iter().map(|l| parse(l).unwrap().command).collect::<Vec<_>>();
    for command in lines(&["propose v", "put k v", "delete k", "cas k a b", "cas k --absent b", "step-down --to 2"]) {
        let denied = authorize(Role::Reader, &command).unwrap_err();
        assert_eq!(denied.command, command.name());
        assert!(denied.to_string().contains("needs an operator key; this key is a reader"), "{denied}");
        assert_eq!(authorize(Role::Operator, &command), Ok(()));
    }
    let reads = lines(&["status", "leader", "members", "get k", "get k --stale", "log", "watch", "metrics", "help"]);
    for command in reads {
        assert_eq!(authorize(Role::Reader, &command), Ok(()), "{command}");
        assert_eq!(authorize(Role::Operator, &command), Ok(()), "{command}");
    }
}

#[tokio::test]
async fn mutations_and_reads_go_to_the_node_and_answer_in_text() {
    let node = FakeNode::new();
    let r = operator(&node, "paxos put greeting hello   world").await;
    assert_eq!((r.code, r.out.as_str(), r.err.as_str()), (EXIT_OK, "greeting set (it was absent); slot 0\n", ""));
    assert_eq!(operator(&node, "get greeting").await.out, "hello world\n");
    assert_eq!(operator(&node, "get greeting --stale").await.out, "hello world\n");
    assert_eq!(node.with(|s| s.reads.clone()), vec![("greeting".into(), true), ("greeting".into(), false)]);
    assert_eq!(
        operator(&node, "cas greeting hello bye").await.out,
        "greeting not swapped: it is 'hello world'; slot 1\n"
    );
    assert_eq!(
        operator(&node, "cas greeting --absent x").await.out,
        "greeting not swapped: it is 'hello world'; slot 2\n"
    );
    assert_eq!(operator(&node, "propose ship it").await.out, "proposed in slot 3\n");
    assert_eq!(operator(&node, "delete greeting").await.out, "greeting deleted; slot 4\n");
    let absent = operator(&node, "get greeting").await;
    assert_eq!((absent.code, absent.out.as_str()), (EXIT_OK, ""), "an absent key prints nothing");
    assert_eq!(operator(&node, "log --from 3 --limit 1").await.out, "3 propose 'ship it' [1004:1]\n");
    assert_eq!(operator(&node, "leader").await.out, "1 node1 at 127.0.0.1:7101\n");
    assert_eq!(operator(&node, "step-down --to 3").await.out, "leadership handed to node 3\n");
    assert_eq!(operator(&node, "leader").await.out, "3 node3 at 127.0.0.1:7103\n");
    assert!(operator(&node, "metrics").await.out.contains("paxos_commit_index 0\n"));
    assert!(operator(&node, "status").await.out.contains("commit     5 (applied 5)"));
}

#[tokio::test]
async fn json_answers_are_one_document() {
    let node = FakeNode::new();
    let r = operator(&node, "put k v --json --request 9:1").await;
    assert_eq!(r.code, EXIT_OK);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v, json!({"slot": 0, "result": "put", "previous": null, "key": "k"}));
    assert_eq!(node.with(|s| s.submitted[0].1), Some(RequestId { client: 9, seq: 1 }));
    let v: Value = serde_json::from_str(&operator(&node, "get k --json").await.out).unwrap();
    assert_eq!(v, json!({"key": "k", "value": "v", "index": 1}));
    let v: Value = serde_json::from_str(&operator(&node, "members --json").await.out).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_retried_request_is_answered_not_reapplied_and_a_stale_one_fails() {
    let node = FakeNode::new();
    operator(&node, "put k first --request 5:2").await;
    operator(&node, "put k second --request 6:1").await;
    let retry = operator(&node, "put k first --request 5:2").await;
    assert_eq!(retry.out, "k set (it was absent); slot 2\n", "the first answer, again");
    assert_eq!(operator(&node, "get k").await.out, "second\n");
    let stale = operator(&node, "put k zero --request 5:1").await;
    assert_eq!(stale.code, EXIT_FAILED);
    assert_eq!(stale.out, "");
    assert!(
        stale.err.starts_with("paxos: request 5:1 is older than this client's last request (seq 2)"),
        "{}",
        stale.err
    );
    // Sequence 0 marks a one-off command; an operator's requests start at 1.
    let zero = operator(&node, "put k v --request 5:0").await;
    assert_eq!(zero.code, EXIT_USAGE);
    assert!(zero.err.contains("SEQ starts at 1"), "{}", zero.err);
}

#[tokio::test]
async fn failures_exit_non_zero_with_one_line_on_stderr() {
    let node = FakeNode::new();
    let table: Vec<(&str, Option<NodeError>, i32, &str)> = vec![
        ("frobnicate", None, EXIT_USAGE, "paxos: unrecognized subcommand 'frobnicate' (usage: paxos COMMAND"),
        ("put k", None, EXIT_USAGE, "(usage: paxos put KEY VALUE... [--json])"),
        (
            "put k v",
            Some(NodeError::NoLeader { waited_ms: 2000 }),
            EXIT_UNAVAILABLE,
            "no leader was elected within 2000 ms",
        ),
        (
            "put k v",
            Some(NodeError::Timeout { waited_ms: 5000 }),
            EXIT_UNAVAILABLE,
            "retry it with the same request id",
        ),
        ("delete k", Some(NodeError::NotLeader { leader: Some(2) }), EXIT_UNAVAILABLE, "the leader is node 2"),
        (
            "propose x",
            Some(NodeError::Storage { reason: "disk full".into() }),
            EXIT_FAILED,
            "storage failure: disk full",
        ),
        ("step-down --to 9", None, EXIT_USAGE, "node 9 is not a member of this cluster (members: 1, 2, 3)"),
        ("step-down --to 1", None, EXIT_FAILED, "cannot hand over leadership: node 1 is already the leader"),
        ("console", None, EXIT_USAGE, "a console is a whole session"),
    ];
    for (line, error, code, message) in table {
        node.with(|s| s.submit_error = error);
        let r = operator(&node, line).await;
        assert_eq!(r.code, code, "{line}: {}", r.err);
        assert!(r.err.contains(message), "{line}: {:?} should contain {message:?}", r.err);
        assert!(r.err.starts_with("paxos: ") && r.err.ends_with('\n') && r.err.lines().count() == 1, "{:?}", r.err);
        assert_eq!(r.out, "", "{line}: nothing on stdout without --json");
    }
    node.with(|s| s.read_error = Some(NodeError::ShuttingDown));
    assert_eq!(operator(&node, "get k").await.code, EXIT_UNAVAILABLE);
}

#[tokio::test]
async fn json_failures_also_put_an_error_document_on_stdout() {
    let node = FakeNode::new();
    node.with(|s| s.submit_error = Some(NodeError::NotLeader { leader: Some(2) }));
    let r = operator(&node, "put k v --json").await;
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["error"]["kind"], "not_leader");
    assert_eq!(v["error"]["leader"], 2);
    assert!(v["error"]["message"].as_str().unwrap().contains("send the command to the leader"));
    assert_eq!(r.err.lines().count(), 1);
    let v: Value = serde_json::from_str(&operator(&node, "get --json").await.out).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
    assert_eq!(v["error"]["usage"], "paxos get KEY [--stale] [--json]");
}

#[tokio::test]
async fn a_reader_is_refused_mutations_and_the_attempt_is_audited() {
    let node = FakeNode::new();
    let buf = SharedBuf::default();
    let audit = AuditLog::to_writer(Box::new(buf.clone()));
    for line in ["put k v", "delete k", "cas k a b", "propose x", "step-down"] {
        let r = run(&node, Role::Reader, Some(&audit), line).await;
        assert_eq!(r.code, EXIT_DENIED, "{line}");
        assert!(r.err.contains("permission denied"), "{}", r.err);
    }
    assert!(node.with(|s| s.submitted.is_empty()), "nothing reached the node");
    assert_eq!(node.with(|s| s.leader), Some(1));
    for line in ["get k", "status", "watch", "log", "members", "leader", "metrics", "help"] {
        assert_eq!(run(&node, Role::Reader, Some(&audit), line).await.code, EXIT_OK, "{line}");
    }
    let lines = buf.lines();
    assert_eq!(lines.len(), 5, "denied mutations only: {lines:?}");
    assert!(lines.iter().all(|l| l["outcome"] == "denied" && l["role"] == "reader"));
}

#[tokio::test]
async fn mutations_are_audited_with_time_fingerprint_line_and_outcome() {
    let node = FakeNode::new();
    let buf = SharedBuf::default();
    let audit = AuditLog::to_writer(Box::new(buf.clone()));
    let lines = ["paxos put k  v", "get k", "status", "log", "cas k v w", "delete k", "propose p", "step-down --to 2"];
    for line in lines {
        run(&node, Role::Operator, Some(&audit), line).await;
    }
    node.with(|s| s.submit_error = Some(NodeError::NoLeader { waited_ms: 10 }));
    run(&node, Role::Operator, Some(&audit), "put k x").await;
    run(&node, Role::Operator, Some(&audit), "put k").await; // not a command: nothing to audit

    let records = buf.lines();
    let commands: Vec<&str> = records.iter().map(|r| r["command"].as_str().unwrap()).collect();
    assert_eq!(commands, ["put k v", "cas k v w", "delete k", "propose p", "step-down --to 2", "put k x"]);
    let outcomes: Vec<&str> = records.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(&outcomes[..5], ["ok slot=0", "ok slot=1", "ok slot=2", "ok slot=3", "ok leader=2"]);
    assert!(outcomes[5].starts_with("failed: no leader was elected"), "{}", outcomes[5]);
    for record in &records {
        assert_eq!(record["fingerprint"], "SHA256:alice");
        let time = record["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T", "{time}");
    }
}

#[tokio::test]
async fn watch_streams_entries_one_per_line_until_the_node_ends_it() {
    let node = FakeNode::new();
    for line in ["put a 1", "put b 2", "delete a"] {
        operator(&node, line).await;
    }
    let r = operator(&node, "watch --from 1").await;
    assert_eq!(r.out, "1 put b 2 [1002:1]\n2 delete a [1003:1]\n");
    assert_eq!(r.code, EXIT_OK);
    let r = operator(&node, "watch --from 0 --json").await;
    let lines: Vec<Value> = r.out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[2],
        json!({"slot": 2, "kind": "batch", "commands": [{"client": 1003, "seq": 1, "op": "delete", "key": "a"}]})
    );
    assert_eq!(operator(&node, "watch").await.out, "", "by default only entries decided from now on");
    node.with(|s| s.watch_end = Some(NodeError::Lagged { next: 3 }));
    let r = operator(&node, "watch --from 2").await;
    assert_eq!(r.out, "2 delete a [1003:1]\n");
    assert_eq!(r.code, EXIT_FAILED);
    assert!(r.err.contains("run it again with --from 3"), "{}", r.err);
}

#[tokio::test]
async fn log_defaults_to_the_last_entries() {
    let node = FakeNode::new();
    for i in 0..30 {
        operator(&node, &format!("put k{i} v")).await;
    }
    let r = operator(&node, "log --json").await;
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 20);
    assert_eq!(v["entries"][0]["slot"], 10);
    assert_eq!(v["next"], 30);
    assert_eq!(node.with(|s| s.log_requests.clone()), vec![(10, 20)]);
}

#[tokio::test]
async fn op_words_reach_the_node_joined_by_single_spaces() {
    let node = FakeNode::new();
    operator(&node, "paxos cas k --absent a  new   value").await;
    let (op, request) = node.with(|s| s.submitted[0].clone());
    assert_eq!(op, Op::Cas { key: "k".into(), expected: None, new: "a new value".into() });
    assert_eq!(request, None);
}

async fn console(node: &FakeNode, role: Role, json: bool, input: &str) -> String {
    let ctx = Context { api: node, role, fingerprint: "SHA256:bench", audit: None };
    let mut out = Vec::new();
    run_console(&ctx, json, input.as_bytes(), &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_json_console_answers_every_command_line_with_exactly_one_line() {
    let node = FakeNode::new();
    let input =
        "put k v\n\n# a comment\nget k\nget\nput k w --request 1:1\nlaunch\nwatch\nconsole\nput x y\nget nothing\n";
    let out = console(&node, Role::Reader, true, input).await;
    let answers: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 9, "nine commands, nine lines:\n{out}");
    assert_eq!(answers[0]["error"]["kind"], "denied");
    assert_eq!(answers[1], json!({"key": "k", "value": null, "index": 0}));
    assert_eq!(answers[2]["error"]["kind"], "usage");
    assert_eq!(answers[3]["error"]["kind"], "denied");
    assert_eq!(answers[4]["error"]["kind"], "usage");
    assert_eq!(answers[5]["error"]["kind"], "not_here");
    assert_eq!(answers[6]["error"]["kind"], "not_here");
    assert_eq!(answers[8]["value"], json!(null));

    let out = console(&FakeNode::new(), Role::Operator, false, "put a 1 --json\nput b 2\nget a --json\nget a\n").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(serde_json::from_str::<Value>(lines[0]).unwrap()["slot"], 0);
    assert_eq!(lines[1], "b set (it was absent); slot 1");
    assert_eq!(serde_json::from_str::<Value>(lines[2]).unwrap()["value"], "1");
    assert_eq!(lines[3], "1");
}

#[tokio::test]
async fn a_text_console_reports_errors_inline_and_keeps_going() {
    let node = FakeNode::new();
    let out = console(&node, Role::Operator, false, "put k v\nget nope\nfrobnicate\nlog\nstatus now\n").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "k set (it was absent); slot 0");
    assert_eq!(lines[1], "(absent)");
    assert!(lines[2].starts_with("error: unrecognized subcommand 'frobnicate'"), "{out}");
    assert_eq!(lines[3], "0 put k v [1001:1]");
    assert!(lines[4].starts_with("error: unexpected argument 'now'"), "{out}");
    assert_eq!(lines.len(), 5);
}

/// A caller that has gone away: every write fails.
struct Closed;

impl tokio::io::AsyncWrite for Closed {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_watch_ends_when_the_caller_is_gone() {
    let node = FakeNode::new();
    operator(&node, "put a 1").await;
    let ctx = Context { api: &node, role: Role::Operator, fingerprint: "SHA256:alice", audit: None };
    let mut err = Vec::new();
    assert_eq!(run_line(&ctx, "watch --from 0", &mut Closed, &mut err).await, EXIT_FAILED);
    assert!(String::from_utf8(err).unwrap().starts_with("paxos: cannot write the answer"));
    let result = run_console(&ctx, true, "status\n".as_bytes(), &mut Closed).await;
    assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
}

fn assert_send<T: Send>(_: T) {}

#[test]
fn command_futures_can_be_spawned_on_a_multi_threaded_runtime() {
    let node = FakeNode::new();
    let ctx = Context { api: &node, role: Role::Operator, fingerprint: "SHA256:alice", audit: None };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_send(run_line(&ctx, "status", &mut out, &mut err));
    assert_send(run_console(&ctx, false, "status\n".as_bytes(), &mut out));
}

#[tokio::test]
async fn every_json_answer_has_the_keys_its_registry_entry_declares() {
    let node = FakeNode::new();
    let lines = [
        "status",
        "leader",
        "members",
        "propose 'a b'",
        "put k 'old value'",
        "get k",
        "cas k 'old value' new",
        "cas k --absent x",
        "delete k",
        "log",
        "watch --from 0",
        "step-down --to 2",
        "health",
        "metrics",
        "help",
        "help put",
    ];
    let mut covered = std::collections::BTreeSet::new();
    for line in lines {
        let r = operator(&node, &format!("{line} --json")).await;
        assert_eq!(r.code, EXIT_OK, "{line}: {}", r.err);
        let spec = parse(line).unwrap().command.spec();
        covered.insert(spec.name);
        let declared: Vec<&str> = spec.json.iter().map(|(key, _)| *key).collect();
        for answer in r.out.lines() {
            let answer: Value = serde_json::from_str(answer).unwrap();
            let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
            assert!(!keys.is_empty(), "{line}");
            for key in keys {
                assert!(declared.contains(&key.as_str()), "{line}: {key} is not declared in {declared:?}");
            }
        }
    }
    let all: std::collections::BTreeSet<&str> = crate::ops::COMMANDS.iter().map(|c| c.name).collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    // A console answers with the JSON of each of its lines.
    assert_eq!(missing, [&"console"]);
}

#[tokio::test]
async fn quoted_values_keep_their_spaces_and_are_quoted_back() {
    let node = FakeNode::new();
    assert_eq!(operator(&node, "put k 'old value'").await.code, EXIT_OK);
    assert_eq!(operator(&node, "get k").await.out, "old value\n");
    let r = operator(&node, r#"paxos cas k "old value" 'it'\''s new'"#).await;
    assert_eq!(r.out, "k swapped to 'it'\\''s new'; slot 1\n");
    assert_eq!(operator(&node, "get k").await.out, "it's new\n");
    let r = operator(&node, "cas k 'it s new").await;
    assert_eq!(r.code, EXIT_USAGE);
    assert!(r.err.contains("unterminated single quote: the single quote at character 7 is never closed"), "{}", r.err);
    let r = operator(&node, "put k \"v --json").await;
    assert_eq!(r.code, EXIT_USAGE);
    assert_eq!(serde_json::from_str::<Value>(&r.out).unwrap()["error"]["kind"], "usage");
}
