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
