use super::{member, status};
use crate::ops::Role;
use crate::ops::api::*;
use crate::ops::render::{Answer, LeaderInfo, duration_text, entry_text};
use crate::state_machine::{Command, Entry, Op, OpResult};
use serde_json::json;

fn submitted(key: Option<&str>, slot: u64, result: OpResult) -> Answer {
    Answer::Submitted { key: key.map(String::from), submitted: Submitted { slot, result } }
}

fn batch(slot: u64) -> LogEntry {
    let commands = vec![
        Command { client: 7, seq: 1, op: Op::Put { key: "k".into(), value: "hello world".into() } },
        Command { client: 7, seq: 2, op: Op::Delete { key: "x".into() } },
    ];
    LogEntry { slot, entry: Entry::Batch { commands } }
}

#[test]
fn each_answer_renders_as_text_for_people() {
    let table: Vec<(Answer, &str)> = vec![
        (Answer::Leader(None), "no leader known\n"),
        (
            Answer::Leader(Some(LeaderInfo {
                id: 2,
                name: Some("node2".into()),
                address: Some("10.0.0.12:7100".into()),
            })),
            "2 node2 at 10.0.0.12:7100\n",
        ),
        (submitted(None, 4, OpResult::Proposed { slot: 4 }), "proposed in slot 4\n"),
        (submitted(Some("k"), 5, OpResult::Put { previous: None }), "k set (it was absent); slot 5\n"),
        (submitted(Some("k"), 5, OpResult::Put { previous: Some("old".into()) }), "k set (it was old); slot 5\n"),
        (submitted(Some("k"), 6, OpResult::Delete { existed: true }), "k deleted; slot 6\n"),
        (submitted(Some("k"), 6, OpResult::Delete { existed: false }), "k was already absent; slot 6\n"),
        (
            submitted(Some("k"), 7, OpResult::Cas { swapped: true, current: Some("b".into()) }),
            "k swapped to b; slot 7\n",
        ),
        (
            submitted(Some("k"), 7, OpResult::Cas { swapped: false, current: None }),
            "k not swapped: it is absent; slot 7\n",
        ),
        (Answer::Value { key: "k".into(), read: ReadValue { value: Some("a b".into()), index: 9 } }, "a b\n"),
        (Answer::Value { key: "k".into(), read: ReadValue { value: None, index: 9 } }, ""),
        (
            Answer::Log { entries: vec![LogEntry { slot: 3, entry: Entry::Noop }, batch(4)], next: 5 },
            "3 noop\n4 put k 'hello world' [7:1]; delete x [7:2]\n",
        ),
        (Answer::Log { entries: vec![], next: 0 }, ""),
        (Answer::SteppedDown { leader: 3 }, "leadership handed to node 3\n"),
        (Answer::Metrics("paxos_up 1".into()), "paxos_up 1\n"),
        (
            Answer::help(Some("get"), Role::Reader),
            concat!(
                "usage: paxos get KEY [--stale] [--json]\nread KEY (linearizable; --stale answers from this node)\n",
                "--json answers with:\n  key    KEY\n  value  the value, or null when absent\n",
                "  index  the log position read at\n"
            ),
        ),
    ];
    for (answer, text) in table {
        assert_eq!(answer.text(), text, "{answer:?}");
        assert_eq!(answer.render(false), text);
    }
}

#[test]
fn status_text_shows_the_protocol_view() {
    let text = Answer::Status(status(Some(1), 42)).text();
    for expected in [
        "node       1 node1 at 127.0.0.1:7101 (proposer, acceptor, learner)\n",
        "role       leader\n",
        "leader     1\n",
        "ballot     3.1 (promised 3.1)\n",
        "commit     42 (applied 42)\n",
        "uptime     1h02m03s\n",
        "clock      node 2: +2000.03 ms ±0.05 (round trip 0.10 ms)\n",
        "           node 3: -0.01 ms ±0.05 (round trip 0.09 ms)\n",
    ] {
        assert!(text.contains(expected), "{text}\nmissing {expected:?}");
    }
    assert!(!text.contains("heartbeat"), "the leader has no heartbeat age");
    assert!(Answer::Status(status(None, 0)).text().contains("leader     none known\n"));
}

#[test]
fn members_text_is_an_aligned_table() {
    let members: Vec<MemberInfo> = (1..=3).map(|id| member(id, Some(1))).collect();
    let text = Answer::Members(members).text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("ID  NAME   ADDRESS         ROLES"), "{text}");
    assert!(lines[1].contains("leader, connected, self, match 7"), "{text}");
    assert!(lines[3].contains("unreachable, heard 40 ms ago"), "{text}");
    let clock = lines[0].find("CLOCK").unwrap();
    assert_eq!(&lines[2][clock..], "+2000.03 ms ±0.05  0.10 ms", "{text}");
    assert!(lines[1][clock..].starts_with("-  "), "no clock for this node itself: {text}");
    let column = lines[0].find("STATE").unwrap();
    assert!(lines.iter().skip(1).all(|l| l.len() > column), "{text}");
}

#[test]
fn help_lists_every_command_and_marks_operator_ones_for_readers() {
    let text = Answer::help(None, Role::Reader).text();
    for name in ["status", "leader", "members", "propose", "put", "get", "delete", "cas", "log", "watch", "step-down"] {
        assert!(text.contains(&format!("paxos {name}")), "{name} missing from\n{text}");
    }
    assert!(text.contains("paxos put KEY VALUE... [--json]") && text.contains("(operators only)"));
    assert!(!Answer::help(None, Role::Operator).text().contains("(operators only)"));
}

#[test]
fn each_answer_renders_as_one_json_document() {
    let table: Vec<(Answer, serde_json::Value)> = vec![
        (Answer::Leader(None), json!({"leader": null})),
        (
            Answer::Leader(Some(LeaderInfo { id: 2, name: Some("node2".into()), address: None })),
            json!({"leader": 2, "name": "node2", "address": null}),
        ),
        (
            submitted(Some("k"), 5, OpResult::Put { previous: Some("old".into()) }),
            json!({"slot": 5, "result": "put", "previous": "old", "key": "k"}),
        ),
        (submitted(None, 4, OpResult::Proposed { slot: 4 }), json!({"slot": 4, "result": "proposed"})),
        (
            submitted(Some("k"), 7, OpResult::Cas { swapped: false, current: None }),
            json!({"slot": 7, "result": "cas", "swapped": false, "current": null, "key": "k"}),
        ),
        (
            submitted(Some("k"), 6, OpResult::Delete { existed: true }),
            json!({"slot": 6, "result": "delete", "existed": true, "key": "k"}),
        ),
        (
            Answer::Value { key: "k".into(), read: ReadValue { value: None, index: 9 } },
            json!({"key": "k", "value": null, "index": 9}),
        ),
        (
            Answer::Log { entries: vec![LogEntry { slot: 3, entry: Entry::Noop }, batch(4)], next: 5 },
            json!({"entries": [
                {"slot": 3, "kind": "noop"},
                {"slot": 4, "kind": "batch", "commands": [
                    {"client": 7, "seq": 1, "op": "put", "key": "k", "value": "hello world"},
                    {"client": 7, "seq": 2, "op": "delete", "key": "x"}
                ]}
            ], "next": 5}),
        ),
        (Answer::SteppedDown { leader: 3 }, json!({"leader": 3})),
        (Answer::Metrics("paxos_up 1\n".into()), json!({"metrics": "paxos_up 1\n"})),
        (
            Answer::help(Some("watch"), Role::Operator),
            json!({"name": "watch", "usage": "paxos watch [--from SLOT] [--json]",
                   "summary": "follow entries as they are decided", "read_only": true,
                   "json": {"slot": "one line per decided entry: its slot", "kind": "noop or batch",
                            "commands": "[{client, seq, op, ...}] (batches only)"}}),
        ),
    ];
    for (answer, expected) in table {
        assert_eq!(answer.json(), expected, "{answer:?}");
        let line = answer.render(true);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "one line: {line:?}");
    }
}

#[test]
fn status_and_members_json_carry_every_field() {
    let v = Answer::Status(status(Some(2), 42)).json();
    assert_eq!(v["role"], "follower");
    assert_eq!(v["leader"], 2);
    assert_eq!(v["ballot"], json!({"round": 3, "node": 1}));
    assert_eq!(v["commit_index"], 42);
    assert_eq!(v["last_heartbeat_age_ms"], json!(null));
    assert_eq!(v["uptime_ms"], 3_723_000);
    assert_eq!(v["pid"], 4321);
    assert_eq!(v["clock"][0], json!({"peer": 2, "offset_ms": 2000.031, "error_ms": 0.052, "round_trip_ms": 0.104}));
    let back: NodeStatus = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, status(Some(2), 42));
    // A status from a node without clock probes still reads.
    let mut old = v;
    old.as_object_mut().unwrap().remove("clock");
    assert!(serde_json::from_value::<NodeStatus>(old).unwrap().clock.is_empty());

    let v = Answer::Members(vec![member(2, Some(2))]).json();
    assert_eq!(v["members"][0]["is_leader"], true);
    assert_eq!(v["members"][0]["address"], "127.0.0.1:7102");
    assert_eq!(v["members"][0]["clock_offset_ms"], 2000.031);
    assert_eq!(v["members"][0]["clock_error_ms"], 0.052);
    assert_eq!(v["members"][0]["round_trip_ms"], 0.104);
    let v = Answer::Members(vec![member(1, Some(2))]).json();
    for key in ["clock_offset_ms", "clock_error_ms", "round_trip_ms"] {
        assert_eq!(v["members"][0][key], json!(null), "{key}");
    }
    let help = Answer::help(None, Role::Reader).json();
    assert_eq!(help["commands"].as_array().unwrap().len(), crate::ops::COMMANDS.len());
}

#[test]
fn watch_lines_and_durations() {
    assert_eq!(entry_text(&LogEntry { slot: 0, entry: Entry::Noop }), "0 noop");
    let cas = Command { client: 1, seq: 9, op: Op::Cas { key: "k".into(), expected: None, new: "v".into() } };
    let propose = Command { client: 1, seq: 10, op: Op::Propose { value: "x y".into() } };
    let entry = LogEntry { slot: 8, entry: Entry::Batch { commands: vec![cas, propose] } };
    assert_eq!(entry_text(&entry), "8 cas k absent -> v [1:9]; propose 'x y' [1:10]");
    assert_eq!(duration_text(12_345), "12.3s");
    assert_eq!(duration_text(245_000), "4m05s");
    assert_eq!(duration_text(3_723_000), "1h02m03s");
}
