use crate::ops::api::RequestId;
use crate::ops::command::*;
use crate::state_machine::Op;

const GENERAL_USAGE: &str = "paxos COMMAND [ARGS...] [--json]; `paxos help` lists commands";

fn ok(line: &str) -> OpsCommand {
    parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}")).command
}

fn req(client: u64, seq: u64) -> Option<RequestId> {
    Some(RequestId { client, seq })
}

#[test]
fn good_lines_parse_with_value_words_joined() {
    let s = |x: &str| x.to_owned();
    let table = [
        ("paxos status", OpsCommand::Status),
        ("status", OpsCommand::Status),
        ("  paxos   leader  ", OpsCommand::Leader),
        ("members", OpsCommand::Members { change: None, inventory: false }),
        ("members --inventory", OpsCommand::Members { change: None, inventory: true }),
        ("paxos propose hello world", OpsCommand::Propose { value: s("hello world"), request: None }),
        ("propose -5", OpsCommand::Propose { value: s("-5"), request: None }),
        (
            "put greeting hello   big world",
            OpsCommand::Put { key: s("greeting"), value: s("hello big world"), request: None },
        ),
        ("put k v --request 7:42", OpsCommand::Put { key: s("k"), value: s("v"), request: req(7, 42) }),
        ("put k -- --not-a-flag", OpsCommand::Put { key: s("k"), value: s("--not-a-flag"), request: None }),
        ("get k", OpsCommand::Get { key: s("k"), stale: false }),
        ("get k --stale", OpsCommand::Get { key: s("k"), stale: true }),
        ("delete k", OpsCommand::Delete { key: s("k"), request: None }),
        (
            "cas k old new value",
            OpsCommand::Cas { key: s("k"), expected: Some(s("old")), new: s("new value"), request: None },
        ),
        ("cas k --absent first", OpsCommand::Cas { key: s("k"), expected: None, new: s("first"), request: None }),
        (
            "cas --request 1:2 k a b",
            OpsCommand::Cas { key: s("k"), expected: Some(s("a")), new: s("b"), request: req(1, 2) },
        ),
        ("log", OpsCommand::Log { from: None, limit: 20 }),
        ("log --from 5 --limit 3", OpsCommand::Log { from: Some(5), limit: 3 }),
        ("watch", OpsCommand::Watch { from: None }),
        ("watch --from 9", OpsCommand::Watch { from: Some(9) }),
        ("step-down", OpsCommand::StepDown { to: None }),
        ("step-down --to 3", OpsCommand::StepDown { to: Some(3) }),
        ("metrics", OpsCommand::Metrics),
        ("help", OpsCommand::Help { topic: None }),
        ("help put", OpsCommand::Help { topic: Some(s("put")) }),
        ("put --help", OpsCommand::Help { topic: Some(s("put")) }),
        ("console", OpsCommand::Console),
    ];
    for (line, expected) in table {
        assert_eq!(ok(line), expected, "{line:?}");
    }
}

#[test]
fn json_is_accepted_anywhere_and_the_line_is_normalized() {
    for line in ["paxos status --json", "--json status", "paxos  put k  v --json"] {
        assert!(parse(line).unwrap().json, "{line}");
    }
    let inv = parse("paxos  put k  hello   world --json").unwrap();
    assert_eq!(inv.command, OpsCommand::Put { key: "k".into(), value: "hello world".into(), request: None });
    assert_eq!(inv.line, "put k hello world --json");
    assert!(!parse("status").unwrap().json);
}

#[test]
fn bad_lines_give_a_one_line_error_with_usage() {
    let table = [
        ("", "empty command", GENERAL_USAGE),
        ("paxos", "empty command", GENERAL_USAGE),
        ("launch missiles", "unrecognized subcommand 'launch'", GENERAL_USAGE),
        ("put k", "required arguments were not provided: <VALUE>...", "paxos put KEY VALUE... [--json]"),
        ("stauts", "unrecognized subcommand 'stauts'; tip: a similar subcommand exists: 'status'", GENERAL_USAGE),
        (
            "log --frm 3",
            "unexpected argument '--frm' found; tip: a similar argument exists: '--from'",
            "paxos log [--from SLOT] [--limit N] [--json]",
        ),
        ("put", "required arguments were not provided", "paxos put KEY VALUE... [--json]"),
        ("get", "required arguments were not provided", "paxos get KEY [--stale] [--json]"),
        ("get a b", "unexpected argument 'b'", "paxos get KEY [--stale] [--json]"),
        ("status now", "unexpected argument 'now'", "paxos status [--json]"),
        ("cas k only", "cas needs the EXPECTED value", "paxos cas KEY (EXPECTED | --absent) NEW... [--json]"),
        ("log --limit 0", "invalid value '0'", "paxos log [--from SLOT] [--limit N] [--json]"),
        ("log --from x", "invalid value 'x'", "paxos log [--from SLOT] [--limit N] [--json]"),
        ("step-down --to", "a value is required", "paxos step-down [--to NODE] [--json]"),
        ("put k v --request 7", "expected CLIENT:SEQ", "paxos put KEY VALUE... [--json]"),
        ("get k --request 1:2", "unexpected argument '--request'", "paxos get KEY [--stale] [--json]"),
        ("help frobnicate", "no command named \"frobnicate\"", "paxos help [COMMAND] [--json]"),
        ("status --version", "unexpected argument '--version'", "paxos status [--json]"),
    ];
    for (line, message, usage) in table {
        let err = parse(line).expect_err(line);
        assert!(err.message.contains(message), "{line:?}: {:?} should contain {message:?}", err.message);
        assert_eq!(err.usage, usage, "{line:?}");
        let text = err.to_string();
        assert!(!text.contains('\n'), "{line:?}: the error must be one line: {text:?}");
        assert!(!text.contains('\u{1b}'), "{line:?}: no terminal colours: {text:?}");
    }
}

#[test]
fn mutations_are_exactly_the_commands_that_are_not_read_only() {
    let mutating = ["propose v", "put k v", "delete k", "cas k a b", "step-down"];
    for line in mutating {
        assert!(!ok(line).is_read_only(), "{line}");
    }
    let reading = ["status", "leader", "members", "get k", "log", "watch", "metrics", "help", "console"];
    for line in reading {
        assert!(ok(line).is_read_only(), "{line}");
        assert_eq!(ok(line).to_op(), None);
    }
    assert_eq!(
        ok("cas k --absent v --request 3:4").to_op(),
        Some((Op::Cas { key: "k".into(), expected: None, new: "v".into() }, req(3, 4)))
    );
}

#[test]
fn a_value_with_a_line_break_is_recorded_on_one_line_and_parses_back() {
    // Found by fuzzing: a quoted newline reached the audit line as is.
    let inv = parse("paxos cas k 4:1 -- 'a\nb' 'it''s\r'").unwrap();
    assert_eq!(inv.line, r"cas k 4:1 -- $'a\nb' $'its\r'");
    assert!(!inv.line.contains(['\n', '\r']));
    assert_eq!(parse(&inv.line).unwrap().command, inv.command);
    let inv = parse("put k $'tab\\there\\x1b'").unwrap();
    assert_eq!(inv.command, OpsCommand::Put { key: "k".into(), value: "tab\there\u{1b}".into(), request: None });
    assert_eq!(inv.line, r"put k $'tab\there\u001b'");
}

#[test]
fn quoted_words_are_single_values_and_the_line_is_quoted_back() {
    let inv = parse("paxos cas k 'old value' new value").unwrap();
    let expected =
        OpsCommand::Cas { key: "k".into(), expected: Some("old value".into()), new: "new value".into(), request: None };
    assert_eq!(inv.command, expected);
    assert_eq!(inv.line, "cas k 'old value' new value");
    assert_eq!(parse(&inv.line).unwrap().command, inv.command);
    assert_eq!(ok("put 'my key' ''"), OpsCommand::Put { key: "my key".into(), value: "".into(), request: None });
    assert_eq!(ok(r#"put k "a  b" c"#), OpsCommand::Put { key: "k".into(), value: "a  b c".into(), request: None });
    // Quotes do not make a flag a value (nor do they in a shell); `--` does.
    assert!(parse("put k '--json'").is_err());
    assert_eq!(ok("put k -- '--json'"), OpsCommand::Put { key: "k".into(), value: "--json".into(), request: None });
    let err = parse("cas k 'old value new").unwrap_err();
    assert_eq!(err.message, "unterminated single quote: the single quote at character 7 is never closed");
    assert_eq!(err.usage, GENERAL_USAGE);
    assert!(parse("put k v\\").unwrap_err().message.contains("backslash"));
}

#[test]
fn authorization_follows_the_registry() {
    for spec in COMMANDS {
        assert!(spec.usage.starts_with(&format!("paxos {} ", spec.name)), "{}", spec.usage);
        assert!(!spec.summary.is_empty() && !spec.json.is_empty(), "{}", spec.name);
    }
    let put = ok("put k v");
    assert!(!put.spec().read_only && put.spec().name == "put");
    assert!(crate::ops::authorize(crate::ops::Role::Reader, &put).is_err());
    assert!(crate::ops::authorize(crate::ops::Role::Reader, &ok("get k")).is_ok());
}
