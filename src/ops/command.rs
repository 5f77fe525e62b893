//! The operator command grammar. A command arrives as one line: OpenSSH
//! joins the words after `ssh host -s` with single spaces into the subsystem
//! name, so `ssh node1 -s paxos put greeting hello world` delivers
//! "paxos put greeting hello world". The line is split into words the way a
//! shell splits them (`super::quote`, so `'old value'` is one word) and
//! parsed with clap; value words are joined back with single spaces.
//!
//! Every command is declared once, in the registry below.

use super::api::RequestId;
use super::members::{MemberCommand, MembersWords};
use super::quote::{self, split};
use crate::consensus::ballot::NodeId;
use crate::state_machine::{Op, Slot};
use clap::error::ErrorKind;
use clap::{ColorChoice, Parser, Subcommand};
use std::fmt;

/// One command of the grammar, with its values joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpsCommand {
    Status,
    Leader,
    /// `change: None` lists the members; `inventory` prints them as an
    /// inventory instead.
    Members {
        change: Option<MemberCommand>,
        inventory: bool,
    },
    Propose {
        value: String,
        request: Option<RequestId>,
    },
    Put {
        key: String,
        value: String,
        request: Option<RequestId>,
    },
    Get {
        key: String,
        stale: bool,
    },
    Delete {
        key: String,
        request: Option<RequestId>,
    },
    /// `expected: None` means "only if the key is absent" (`--absent`).
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
        request: Option<RequestId>,
    },
    Log {
        from: Option<Slot>,
        limit: u64,
    },
    Watch {
        from: Option<Slot>,
    },
    StepDown {
        to: Option<NodeId>,
    },
    Metrics,
    /// This node's health; unhealthy exits `health::EXIT_UNHEALTHY`.
    Health {
        max_lag: u64,
    },
    Help {
        topic: Option<String>,
    },
    /// A session of many command lines over one channel (see `run_console`).
    Console,
}

/// A parsed line: the command, whether to answer in JSON, and the line
/// itself (normalized to single spaces) for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub command: OpsCommand,
    pub json: bool,
    pub line: String,
}

/// A line that is not a command, with the one-line usage of what was meant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (usage: {usage})")]
pub struct UsageError {
    pub message: String,
    pub usage: String,
}

/// A command as the registry declares it: how it reads, what it is for,
/// who may run it, and what its `--json` answer holds.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandHelp {
    pub name: &'static str,
    pub usage: &'static str,
    pub summary: &'static str,
    /// Whether the command leaves the log and the leadership as they are:
    /// a reader key may run exactly these.
    pub read_only: bool,
    /// The top-level keys of the `--json` answer, each with what it holds.
    pub json: &'static [(&'static str, &'static str)],
}

/// The registry: each operator command is declared once, as the variant of
/// the parsed command (`OpsCommand`) it becomes, its grammar (clap fields),
/// name, access, usage, summary and JSON shape. From it come the grammar the
/// subsystem and the CLI parse with, `COMMANDS` (what `help` lists and
/// `authorize` checks), `OpsCommand::name` and the CLI's list of remote
/// commands. A command declared here without its `OpsCommand` variant, or
/// the other way round, does not compile.
macro_rules! registry {
    (@read_only read_only) => { true };
    (@read_only operator) => { false };
    ($(
        $variant:ident $fields:tt
        name: $name:literal,
        access: $access:ident,
        usage: $usage:literal,
        summary: $summary:literal,
        json: { $($key:literal : $shape:expr),* $(,)? }
        ;
    )*) => {
        /// The grammar clap parses a line with; see `parse`.
        #[derive(Subcommand, Debug)]
        enum Words {
            $(
                #[command(name = $name, about = $summary)]
                $variant $fields,
            )*
        }

        /// Every command, in the order `help` lists them.
        pub const COMMANDS: &[CommandHelp] = &[$(
            CommandHelp {
                name: $name,
                usage: $usage,
                summary: $summary,
                read_only: registry!(@read_only $access),
                json: &[$(($key, $shape)),*],
            },
        )*];

        impl OpsCommand {
            pub fn name(&self) -> &'static str {
                match self {
                    $(OpsCommand::$variant { .. } => $name,)*
                }
            }
        }
    };
}

const SUBMITTED: &str = "the slot the command was decided in";

registry! {
    Status {}
        name: "status", access: read_only,
        usage: "paxos status [--json]",
        summary: "this node's role, leader, ballot, commit and applied index",
        json: {
            "cluster": "the cluster's name", "id": "this node's id", "name": "this node's name",
            "address": "host:port", "roles": "protocol roles from the inventory",
            "role": "leader, follower or candidate", "leader": "the leader's id, or null",
            "ballot": "{round, node}: the highest ballot seen in use", "promised": "{round, node}",
            "commit_index": "every slot below is chosen", "applied_index": "every slot below is applied",
            "last_heartbeat_age_ms": "since the leader was last heard, or null",
            "pending_requests": "commands submitted here and not answered yet", "uptime_ms": "since the node started",
            "voting": "voter, or introducing / rejoining while this node may not vote yet",
            "incarnation": "the data directory's random incarnation",
            "pid": "the daemon's process id on its machine",
            "clock": "[{peer, offset_ms, error_ms, round_trip_ms}]: each peer's clock minus this node's, \
                      within ± error_ms, from probe round trips; peers not heard from lately are left out",
        };
    Leader {}
        name: "leader", access: read_only,
        usage: "paxos leader [--json]",
        summary: "the current leader",
        json: {
            "leader": "the leader's id, or null (then the other keys are left out)",
            "name": "the leader's name, or null", "address": "the leader's host:port, or null",
        };
    Members {
        /// Print the live cluster as an inventory (Ansible's JSON shape).
        #[arg(long)]
        inventory: bool,
        #[command(subcommand)]
        change: Option<MembersWords>,
    }
        name: "members", access: read_only,
        usage: "paxos members [--json] | members --inventory | members add NAME --addr HOST:PORT --key PUBKEY [--roles R,..] [--id N] [--force] \
                | members promote NAME [--roles R,..] [--force] | members demote NAME [--roles R,..] [--force] \
                | members remove NAME [--force]",
        summary: "every node with its roles and connection; add, promote, demote or remove one (operators)",
        json: {
            "members": "[{id, name, address, roles, is_self, is_leader, connected, last_heard_ms, match_index, \
                        clock_offset_ms, clock_error_ms, round_trip_ms}]; the clock fields are null for this node \
                        and for members without a recent probe; a change answers {slot, result: reconfigured, \
                        epoch, effective}",
        };
    Propose {
        #[arg(required = true, allow_negative_numbers = true)]
        value: Vec<String>,
        #[arg(long, hide = true, value_parser = parse_request)]
        request: Option<RequestId>,
    }
        name: "propose", access: operator,
        usage: "paxos propose VALUE... [--json]",
        summary: "agree on a value in the log",
        json: { "slot": SUBMITTED, "result": "\"proposed\"" };
    Put {
        key: String,
        #[arg(required = true, allow_negative_numbers = true)]
        value: Vec<String>,
        #[arg(long, hide = true, value_parser = parse_request)]
        request: Option<RequestId>,
    }
        name: "put", access: operator,
        usage: "paxos put KEY VALUE... [--json]",
        summary: "set KEY to the value words joined by spaces",
        json: { "slot": SUBMITTED, "result": "\"put\"", "key": "KEY", "previous": "the value replaced, or null" };
    Get {
        key: String,
        #[arg(long)]
        stale: bool,
    }
        name: "get", access: read_only,
        usage: "paxos get KEY [--stale] [--json]",
        summary: "read KEY (linearizable; --stale answers from this node)",
        json: { "key": "KEY", "value": "the value, or null when absent", "index": "the log position read at" };
    Delete {
        key: String,
        #[arg(long, hide = true, value_parser = parse_request)]
        request: Option<RequestId>,
    }
        name: "delete", access: operator,
        usage: "paxos delete KEY [--json]",
        summary: "remove KEY",
        json: { "slot": SUBMITTED, "result": "\"delete\"", "key": "KEY", "existed": "whether KEY was there" };
    Cas {
        key: String,
        /// Swap only if the key is absent; then every word is the new value.
        #[arg(long)]
        absent: bool,
        #[arg(required = true, allow_negative_numbers = true)]
        values: Vec<String>,
        #[arg(long, hide = true, value_parser = parse_request)]
        request: Option<RequestId>,
    }
        name: "cas", access: operator,
        usage: "paxos cas KEY (EXPECTED | --absent) NEW... [--json]",
        summary: "set KEY to NEW only if it holds EXPECTED (or is absent)",
        json: {
            "slot": SUBMITTED, "result": "\"cas\"", "key": "KEY", "swapped": "whether KEY now holds NEW",
            "current": "KEY's value after the command, or null",
        };
    Log {
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_SLOT))]
        from: Option<Slot>,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
    }
        name: "log", access: read_only,
        usage: "paxos log [--from SLOT] [--limit N] [--json]",
        summary: "decided entries (default: the last 20)",
        json: { "entries": "[{slot, kind: noop|batch, commands}]", "next": "the slot to ask for next (--from)" };
    Watch {
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_SLOT))]
        from: Option<Slot>,
    }
        name: "watch", access: read_only,
        usage: "paxos watch [--from SLOT] [--json]",
        summary: "follow entries as they are decided",
        json: {
            "slot": "one line per decided entry: its slot", "kind": "noop or batch",
            "commands": "[{client, seq, op, ...}] (batches only)",
        };
    StepDown {
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_NODE_ID))]
        to: Option<NodeId>,
    }
        name: "step-down", access: operator,
        usage: "paxos step-down [--to NODE] [--json]",
        summary: "hand leadership to another node",
        json: { "leader": "the new leader's id" };
    Health {
        /// The most committed slots this node may have left to apply.
        #[arg(long, value_name = "SLOTS", default_value_t = super::health::DEFAULT_MAX_LAG)]
        max_lag: u64,
    }
        name: "health", access: read_only,
        usage: "paxos health [--max-lag SLOTS] [--json]",
        summary: "whether this node sees a leader, reaches a quorum and keeps up (exit 5 when not)",
        json: {
            "healthy": "true when problems is empty", "id": "this node's id", "name": "", "address": "",
            "roles": "", "role": "leader, follower or candidate", "leader": "the leader's id, or null",
            "acceptors_connected": "acceptors reached, this node included", "acceptors": "acceptors in the cluster",
            "quorum": "acceptors needed to elect and to commit", "commit_index": "", "applied_index": "",
            "apply_lag": "committed slots not applied yet", "max_lag": "--max-lag",
            "last_heartbeat_age_ms": "since the leader was last heard, or null", "problems": "one line each",
        };
    Metrics {}
        name: "metrics", access: read_only,
        usage: "paxos metrics [--json]",
        summary: "Prometheus metrics of this node",
        json: { "metrics": "the Prometheus text exposition" };
    Console {}
        name: "console", access: read_only,
        usage: "paxos console [--json]",
        summary: "run one command per input line until end of input, answered in line order; commands on \
                  different keys may overlap (to keep an order across keys, wait for the answer)",
        json: { "*": "each line's answer is that command's JSON, or {error}" };
    Help {
        topic: Option<String>,
    }
        name: "help", access: read_only,
        usage: "paxos help [COMMAND] [--json]",
        summary: "this list",
        json: {
            "commands": "[{name, usage, summary, read_only, json}] (help COMMAND answers that one object)",
            "name": "help COMMAND: the command", "usage": "help COMMAND", "summary": "help COMMAND",
            "read_only": "help COMMAND", "json": "help COMMAND",
        };
}

/// The largest slot an operator may name: 2^53 - 1, the largest integer
/// every JSON reader keeps exact. A log this long is millennia away, so a
/// larger number is a typo or an attack, refused before it reaches the node.
pub const MAX_SLOT: Slot = (1 << 53) - 1;

/// The largest node id an operator may name (inventories use small ids).
pub const MAX_NODE_ID: NodeId = (1 << 53) - 1;

const GENERAL_USAGE: &str = "paxos COMMAND [ARGS...] [--json]; `paxos help` lists commands";

pub fn command_help(name: &str) -> Option<&'static CommandHelp> {
    COMMANDS.iter().find(|c| c.name == name)
}

impl OpsCommand {
    /// The command's entry in the registry.
    pub fn spec(&self) -> &'static CommandHelp {
        command_help(self.name()).expect("every command is declared in the registry")
    }

    /// Whether the command leaves the log and the leadership as they are.
    /// A console is read-only itself: each of its lines is authorized on its own.
    pub fn is_read_only(&self) -> bool {
        self.spec().read_only && !matches!(self, OpsCommand::Members { change: Some(_), .. })
    }

    /// The state-machine operation of a log mutation, with its request id.
    pub fn to_op(&self) -> Option<(Op, Option<RequestId>)> {
        let (op, request) = match self.clone() {
            OpsCommand::Propose { value, request } => (Op::Propose { value }, request),
            OpsCommand::Put { key, value, request } => (Op::Put { key, value }, request),
            OpsCommand::Delete { key, request } => (Op::Delete { key }, request),
            OpsCommand::Cas { key, expected, new, request } => (Op::Cas { key, expected, new }, request),
            _ => return None,
        };
        Some((op, request))
    }
}

impl fmt::Display for OpsCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn parse_request(s: &str) -> Result<RequestId, String> {
    let (client, seq) = s.split_once(':').ok_or("expected CLIENT:SEQ")?;
    let number = |x: &str| x.parse::<u64>().map_err(|_| format!("{x:?} is not a number (expected CLIENT:SEQ)"));
    let seq = number(seq)?;
    if seq == crate::state_machine::ONE_OFF_SEQ {
        return Err("SEQ starts at 1 (0 marks a one-off command whose result is not kept)".into());
    }
    Ok(RequestId { client: number(client)?, seq })
}

#[derive(Parser, Debug)]
#[command(name = "paxos", no_binary_name = true, disable_help_subcommand = true, disable_version_flag = true)]
#[command(color = ColorChoice::Never)]
struct Grammar {
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Words,
}

fn usage_of(name: Option<&str>) -> String {
    name.and_then(command_help).map_or(GENERAL_USAGE, |c| c.usage).to_owned()
}

pub(super) fn usage_error(name: Option<&str>, message: impl Into<String>) -> UsageError {
    UsageError { message: message.into(), usage: usage_of(name) }
}

/// Clap's error without its usage block, on one line: the error, the
/// arguments it lists and any tip ("a similar subcommand exists: 'status'").
fn one_line(rendered: &str) -> String {
    let mut message = String::new();
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        let separator = if line.starts_with("tip:") { "; " } else { " " };
        if !line.is_empty() {
            if !message.is_empty() {
                message.push_str(separator);
            }
            message.push_str(line.trim_start_matches("error: "));
        }
    }
    if message.is_empty() { "invalid command".to_owned() } else { message }
}

/// Parse one command line; a leading "paxos" is optional. Words are split
/// the way a shell splits them (`super::quote`): `cas k 'old value' new`.
///
/// The hot lines of a console (`put K V...` and `get K`, with or without
/// `--json`, nothing starting with `-` otherwise) are recognized directly;
/// every other line goes to clap (`parse_with_clap`), whose answer for the
/// hot lines is the same (see `the_fast_path_answers_what_clap_answers`).
pub fn parse(line: &str) -> Result<Invocation, UsageError> {
    parse_words(line, true)
}

/// `parse` through clap alone, without the fast path (for tests and the
/// parse benchmark).
pub fn parse_with_clap(line: &str) -> Result<Invocation, UsageError> {
    parse_words(line, false)
}

fn parse_words(line: &str, fast: bool) -> Result<Invocation, UsageError> {
    let mut words = split(line).map_err(|e| usage_error(None, e.to_string()))?;
    if words.first().map(String::as_str) == Some("paxos") {
        words.remove(0);
    }
    // The audit log's form of the line: quoted again where a word needs it.
    let normalized = quote::join(&words);
    if fast && let Some((command, json)) = parse_hot(&words) {
        return Ok(Invocation { command, json, line: normalized });
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let name = words.iter().find(|w| !w.starts_with('-')).copied().filter(|w| command_help(w).is_some());
    if words.is_empty() {
        return Err(usage_error(None, "empty command"));
    }
    let grammar = match Grammar::try_parse_from(&words) {
        Ok(grammar) => grammar,
        Err(e) if e.kind() == ErrorKind::DisplayHelp => {
            let json = words.contains(&"--json");
            let command = OpsCommand::Help { topic: name.map(String::from) };
            return Ok(Invocation { command, json, line: normalized });
        }
        Err(e) => return Err(usage_error(name, one_line(&e.render().to_string()))),
    };
    let join = |words: Vec<String>| words.join(" ");
    let command = match grammar.command {
        Words::Status {} => OpsCommand::Status,
        Words::Leader {} => OpsCommand::Leader,
        Words::Members { change: None, inventory } => OpsCommand::Members { change: None, inventory },
        Words::Members { change: Some(_), inventory: true } => {
            return Err(usage_error(name, "--inventory lists the cluster; it takes no change"));
        }
        Words::Members { change: Some(words), inventory: false } => {
            let change = words.command().map_err(|e| usage_error(name, e))?;
            OpsCommand::Members { change: Some(change), inventory: false }
        }
        Words::Propose { value, request } => OpsCommand::Propose { value: join(value), request },
        Words::Put { key, value, request } => OpsCommand::Put { key, value: join(value), request },
        Words::Get { key, stale } => OpsCommand::Get { key, stale },
        Words::Delete { key, request } => OpsCommand::Delete { key, request },
        Words::Cas { key, absent: true, values, request } => {
            OpsCommand::Cas { key, expected: None, new: join(values), request }
        }
        Words::Cas { key, absent: false, mut values, request } => {
            if values.len() < 2 {
                return Err(usage_error(name, "cas needs the EXPECTED value and the NEW one (or --absent NEW)"));
            }
            let expected = values.remove(0);
            OpsCommand::Cas { key, expected: Some(expected), new: join(values), request }
        }
        Words::Log { from, limit } => OpsCommand::Log { from, limit },
        Words::Watch { from } => OpsCommand::Watch { from },
        Words::StepDown { to } => OpsCommand::StepDown { to },
        Words::Metrics {} => OpsCommand::Metrics,
        Words::Health { max_lag } => OpsCommand::Health { max_lag },
        Words::Help { topic } => {
            if let Some(topic) = topic.as_deref().filter(|t| command_help(t).is_none()) {
                return Err(usage_error(Some("help"), format!("no command named {topic:?}")));
            }
            OpsCommand::Help { topic }
        }
        Words::Console {} => OpsCommand::Console,
    };
    Ok(Invocation { command, json: grammar.json, line: normalized })
}

/// The hot lines, as clap would parse them: `put KEY VALUE...` and
/// `get KEY`, each with at most one `--json` anywhere, and no other word
/// that starts with `-` or is empty (those go to clap: `--`, `--stale`,
/// `--request`, negative numbers, repeated flags). `None` for anything else.
fn parse_hot(words: &[String]) -> Option<(OpsCommand, bool)> {
    let mut json = false;
    let mut rest: Vec<&str> = Vec::with_capacity(words.len());
    for word in words {
        if word == "--json" && !json {
            json = true;
        } else if word.is_empty() || word.starts_with('-') {
            return None;
        } else {
            rest.push(word);
        }
    }
    let command = match rest.as_slice() {
        ["put", key, value @ ..] if !value.is_empty() => {
            OpsCommand::Put { key: (*key).to_owned(), value: value.join(" "), request: None }
        }
        ["get", key] => OpsCommand::Get { key: (*key).to_owned(), stale: false },
        _ => return None,
    };
    Some((command, json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn ok(line: &str) -> OpsCommand {
        parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}")).command
    }

    /// Lines around the hot ones: every prefix, flag, quoting and odd value
    /// the fast path must either parse as clap does or leave to clap.
    fn lines_near_the_hot_ones() -> Vec<String> {
        let heads =
            ["put", "get", "paxos put", "paxos get", "--json put", "--json get", "PUT", "gets", "paxos paxos put"];
        let words = [
            "k",
            "v",
            "--json",
            "--",
            "-5",
            "-",
            "--stale",
            "--request 1:2",
            "--request",
            "''",
            "'a b'",
            "\"x \\\" y\"",
            "$'tab\\tnl\\n'",
            "é✓",
            "help",
            "--help",
            "-h",
            "put",
            "get",
            "--json=true",
            "a=b",
            "'--json'",
            "\\-x",
            "-1e3",
            "--absent",
            "paxos",
            "'#'",
            "\\'",
        ];
        let mut lines = Vec::new();
        // Every head with up to three words.
        for head in heads {
            lines.push(head.to_owned());
            for a in words {
                lines.push(format!("{head} {a}"));
                for b in words {
                    lines.push(format!("{head} {a} {b}"));
                    for c in ["v", "--json", "--", "-5", "''", "'a b'", "w x"] {
                        lines.push(format!("{head} {a} {b} {c}"));
                    }
                }
            }
        }
        // And longer lines drawn from the words with a fixed generator.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..5_000 {
            let mut line = heads[next(heads.len())].to_owned();
            for _ in 0..next(7) {
                line.push(' ');
                line.push_str(words[next(words.len())]);
            }
            lines.push(line);
        }
        lines
    }

    #[test]
    fn the_fast_path_answers_what_clap_answers() {
        let lines = lines_near_the_hot_ones();
        let mut fast = 0;
        for line in &lines {
            assert_eq!(parse(line), parse_with_clap(line), "{line:?}");
            let words = split(line).unwrap_or_default();
            let words = if words.first().map(String::as_str) == Some("paxos") { &words[1..] } else { &words[..] };
            fast += usize::from(parse_hot(words).is_some());
        }
        // The comparison means something only if both paths are exercised.
        assert!(fast > 1_000 && lines.len() - fast > 1_000, "{fast} of {} lines took the fast path", lines.len());
        for (line, expected) in [
            ("put k v", Some(OpsCommand::Put { key: "k".into(), value: "v".into(), request: None })),
            ("--json put 'a b' x  y", Some(OpsCommand::Put { key: "a b".into(), value: "x y".into(), request: None })),
            ("get k --json", Some(OpsCommand::Get { key: "k".into(), stale: false })),
            ("get k --json --json", None),
            ("put k -- v", None),
            ("put k -5", None),
            ("put '' v", None),
            ("get k v", None),
        ] {
            let words = split(line).unwrap();
            assert_eq!(parse_hot(&words).map(|(c, _)| c), expected, "{line:?}");
        }
    }

    /// Nanoseconds per line, `parse` (fast path, else clap) against clap
    /// alone (as every line was parsed before the fast path). `cargo test --release --lib parse_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn parse_cost() {
        fn per_line(lines: &[&str], rounds: u32, parse: impl Fn(&str) -> bool) -> f64 {
            let started = std::time::Instant::now();
            let mut ok = 0u64;
            for _ in 0..rounds {
                for line in lines {
                    ok += u64::from(parse(std::hint::black_box(line)));
                }
            }
            assert!(ok > 0);
            started.elapsed().as_nanos() as f64 / (f64::from(rounds) * lines.len() as f64)
        }
        let rounds = 20_000;
        for (what, lines) in [
            ("put K V", vec!["put key-17 a-value-of-some-length"]),
            ("get K --json", vec!["get key-17 --json"]),
            ("status --json", vec!["status --json"]),
            ("cas K A B", vec!["cas key-17 old new"]),
        ] {
            let fast = per_line(&lines, rounds, |l| parse(l).is_ok());
            let clap = per_line(&lines, rounds, |l| parse_with_clap(l).is_ok());
            println!("{what:14} parse {fast:8.0} ns/line   clap alone {clap:8.0} ns/line");
        }
    }

    #[test]
    fn the_help_table_and_the_grammar_name_the_same_commands() {
        let grammar: Vec<String> = Grammar::command().get_subcommands().map(|c| c.get_name().to_owned()).collect();
        let table: Vec<String> = COMMANDS.iter().map(|c| c.name.to_owned()).collect();
        assert_eq!(grammar, table);
        let samples = [
            "status",
            "leader",
            "members",
            "propose v",
            "put k v",
            "get k",
            "delete k",
            "cas k a b",
            "log",
            "watch",
            "step-down",
            "health",
            "metrics",
            "console",
            "help",
        ];
        let covered: Vec<&str> = samples.iter().map(|line| ok(line).name()).collect();
        assert_eq!(covered, COMMANDS.iter().map(|c| c.name).collect::<Vec<_>>());
        for line in samples {
            let command = ok(line);
            let help = command_help(command.name()).unwrap();
            assert_eq!(command.is_read_only(), help.read_only, "{line}");
            assert!(help.usage.starts_with(&format!("paxos {} ", help.name)), "{}", help.usage);
        }
    }
}
