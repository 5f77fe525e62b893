//! The operator command grammar. A command arrives as one line: OpenSSH
//! joins the words after `ssh host -s` with single spaces into the subsystem
//! name, so `ssh node1 -s paxos put greeting hello world` delivers
//! "paxos put greeting hello world". The line is split on whitespace and
//! parsed with clap; value words are joined back with single spaces.

use super::api::RequestId;
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
    Members,
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

#[derive(Debug, PartialEq, Eq)]
pub struct CommandHelp {
    pub name: &'static str,
    pub usage: &'static str,
    pub summary: &'static str,
    pub read_only: bool,
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "status",
        usage: "paxos status [--json]",
        summary: "this node's role, leader, ballot, commit and applied index",
        read_only: true,
    },
    CommandHelp { name: "leader", usage: "paxos leader [--json]", summary: "the current leader", read_only: true },
    CommandHelp {
        name: "members",
        usage: "paxos members [--json]",
        summary: "every node with its roles and connection",
        read_only: true,
    },
    CommandHelp {
        name: "propose",
        usage: "paxos propose VALUE... [--json]",
        summary: "agree on a value in the log",
        read_only: false,
    },
    CommandHelp {
        name: "put",
        usage: "paxos put KEY VALUE... [--json]",
        summary: "set KEY to the value words joined by spaces",
        read_only: false,
    },
    CommandHelp {
        name: "get",
        usage: "paxos get KEY [--stale] [--json]",
        summary: "read KEY (linearizable; --stale answers from this node)",
        read_only: true,
    },
    CommandHelp { name: "delete", usage: "paxos delete KEY [--json]", summary: "remove KEY", read_only: false },
    CommandHelp {
        name: "cas",
        usage: "paxos cas KEY (EXPECTED | --absent) NEW... [--json]",
        summary: "set KEY to NEW only if it holds EXPECTED (or is absent)",
        read_only: false,
    },
    CommandHelp {
        name: "log",
        usage: "paxos log [--from SLOT] [--limit N] [--json]",
        summary: "decided entries (default: the last 20)",
        read_only: true,
    },
    CommandHelp {
        name: "watch",
        usage: "paxos watch [--from SLOT] [--json]",
        summary: "follow entries as they are decided",
        read_only: true,
    },
    CommandHelp {
        name: "step-down",
        usage: "paxos step-down [--to NODE] [--json]",
        summary: "hand leadership to another node",
        read_only: false,
    },
    CommandHelp {
        name: "metrics",
        usage: "paxos metrics [--json]",
        summary: "Prometheus metrics of this node",
        read_only: true,
    },
    CommandHelp {
        name: "console",
        usage: "paxos console [--json]",
        summary: "run one command per input line until end of input",
        read_only: true,
    },
    CommandHelp { name: "help", usage: "paxos help [COMMAND] [--json]", summary: "this list", read_only: true },
];

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
    pub fn name(&self) -> &'static str {
        match self {
            OpsCommand::Status => "status",
            OpsCommand::Leader => "leader",
            OpsCommand::Members => "members",
            OpsCommand::Propose { .. } => "propose",
            OpsCommand::Put { .. } => "put",
            OpsCommand::Get { .. } => "get",
            OpsCommand::Delete { .. } => "delete",
            OpsCommand::Cas { .. } => "cas",
            OpsCommand::Log { .. } => "log",
            OpsCommand::Watch { .. } => "watch",
            OpsCommand::StepDown { .. } => "step-down",
            OpsCommand::Metrics => "metrics",
            OpsCommand::Help { .. } => "help",
            OpsCommand::Console => "console",
        }
    }

    /// Whether the command leaves the log and the leadership as they are.
    /// A console is read-only itself: each of its lines is authorized on its own.
    pub fn is_read_only(&self) -> bool {
        !matches!(
            self,
            OpsCommand::Propose { .. }
                | OpsCommand::Put { .. }
                | OpsCommand::Delete { .. }
                | OpsCommand::Cas { .. }
                | OpsCommand::StepDown { .. }
        )
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
    Ok(RequestId { client: number(client)?, seq: number(seq)? })
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

#[derive(Subcommand, Debug)]
enum Words {
    Status,
    Leader,
    Members,
    Propose {
        #[arg(required = true, allow_negative_numbers = true)]
        value: Vec<String>,
        #[arg(long, hide = true, value_parser = parse_request)]
        request: Option<RequestId>,
    },
    Put {
        key: String,
        #[arg(required = true, allow_negative_numbers = true)]
        value: Vec<String>,
        #[arg(long, hide = true, value_parser = parse_request)]
        request: Option<RequestId>,
    },
    Get {
        key: String,
        #[arg(long)]
        stale: bool,
    },
    Delete {
        key: String,
        #[arg(long, hide = true, value_parser = parse_request)]
        request: Option<RequestId>,
    },
    Cas {
        key: String,
        /// Swap only if the key is absent; then every word is the new value.
        #[arg(long)]
        absent: bool,
        #[arg(required = true, allow_negative_numbers = true)]
        values: Vec<String>,
        #[arg(long, hide = true, value_parser = parse_request)]
        request: Option<RequestId>,
    },
    Log {
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_SLOT))]
        from: Option<Slot>,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
    },
    Watch {
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_SLOT))]
        from: Option<Slot>,
    },
    StepDown {
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_NODE_ID))]
        to: Option<NodeId>,
    },
    Metrics,
    Console,
    Help {
        topic: Option<String>,
    },
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

/// Parse one command line; a leading "paxos" is optional.
pub fn parse(line: &str) -> Result<Invocation, UsageError> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if words.first() == Some(&"paxos") {
        words.remove(0);
    }
    let normalized = words.join(" ");
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
        Words::Status => OpsCommand::Status,
        Words::Leader => OpsCommand::Leader,
        Words::Members => OpsCommand::Members,
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
        Words::Metrics => OpsCommand::Metrics,
        Words::Help { topic } => {
            if let Some(topic) = topic.as_deref().filter(|t| command_help(t).is_none()) {
                return Err(usage_error(Some("help"), format!("no command named {topic:?}")));
            }
            OpsCommand::Help { topic }
        }
        Words::Console => OpsCommand::Console,
    };
    Ok(Invocation { command, json: grammar.json, line: normalized })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn ok(line: &str) -> OpsCommand {
        parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}")).command
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
