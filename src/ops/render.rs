//! Answers, rendered as text for people or as one JSON document for scripts.
//! Text ends with a newline; JSON is a single line, so a console answer in
//! JSON is exactly one line.

use super::Role;
use super::api::{LogEntry, MemberInfo, NodeStatus, ReadValue, Submitted};
use super::command::{COMMANDS, CommandHelp, command_help};
use super::exec::escape_controls;
use super::health::{NodeHealth, node_health_text};
use super::quote::quote;
use crate::consensus::ballot::NodeId;
use crate::state_machine::{Command, Entry, Op, OpResult, Slot};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// The successful outcome of one command.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Status(NodeStatus),
    /// `None` when this node knows no leader.
    Leader(Option<LeaderInfo>),
    Members(Vec<MemberInfo>),
    /// `members --inventory`: the inventory document, printed as it is
    /// with or without `--json`.
    Inventory(Value),
    /// A mutation decided in the log (propose, put, delete, cas).
    Submitted {
        key: Option<String>,
        submitted: Submitted,
    },
    Value {
        key: String,
        read: ReadValue,
    },
    /// `next` is the slot to ask for to continue after these entries.
    Log {
        entries: Vec<LogEntry>,
        next: Slot,
    },
    SteppedDown {
        leader: NodeId,
    },
    Metrics(String),
    Health(NodeHealth),
    Help {
        topic: Option<&'static CommandHelp>,
        role: Role,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    pub id: NodeId,
    pub name: Option<String>,
    pub address: Option<String>,
}

/// A key or value in text output: control characters escaped, then quoted
/// the way command lines are (`'old value'`) when it needs it, so what is
/// printed can be pasted back into a command.
pub fn word_text(value: &str) -> String {
    quote(&escape_controls(value))
}

/// A value that may be absent; a value that reads "absent" is quoted.
fn shown(value: &Option<String>) -> String {
    match value.as_deref() {
        None => "absent".to_owned(),
        Some("absent") => "'absent'".to_owned(),
        Some(v) => word_text(v),
    }
}

/// "1h02m03s", "4m05s", "12.3s".
pub fn duration_text(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60),
    }
}

fn op_text(command: &Command) -> String {
    let op = match &command.op {
        Op::Put { key, value } => format!("put {} {}", word_text(key), word_text(value)),
        Op::Delete { key } => format!("delete {}", word_text(key)),
        Op::Cas { key, expected, new } => format!("cas {} {} -> {}", word_text(key), shown(expected), word_text(new)),
        Op::Propose { value } => format!("propose {}", word_text(value)),
        Op::Reconfigure { change } => format!("reconfigure: {change}"),
    };
    format!("{op} [{}:{}]", command.client, command.seq)
}

/// One log entry on one line: "12 put k 'a b' [7:1]; delete x [7:2]" or "13 noop".
pub fn entry_text(entry: &LogEntry) -> String {
    match &entry.entry {
        Entry::Noop => format!("{} noop", entry.slot),
        Entry::Batch { commands } => {
            let ops: Vec<String> = commands.iter().map(op_text).collect();
            format!("{} {}", entry.slot, ops.join("; "))
        }
    }
}

pub fn entry_json(entry: &LogEntry) -> Value {
    serde_json::to_value(entry).unwrap_or_default()
}

fn result_text(key: Option<&str>, submitted: &Submitted) -> String {
    let key = key.map_or_else(|| "?".to_owned(), word_text);
    let what = match &submitted.result {
        OpResult::Proposed { slot } => format!("proposed in slot {slot}"),
        OpResult::Put { previous: None } => format!("{key} set (it was absent)"),
        OpResult::Put { previous: Some(old) } => format!("{key} set (it was {})", shown(&Some(old.clone()))),
        OpResult::Delete { existed: true } => format!("{key} deleted"),
        OpResult::Delete { existed: false } => format!("{key} was already absent"),
        OpResult::Cas { swapped: true, current } => format!("{key} swapped to {}", shown(current)),
        OpResult::Cas { swapped: false, current } => format!("{key} not swapped: it is {}", shown(current)),
        OpResult::StaleSequence { last_seq } => format!("stale request (client is at seq {last_seq})"),
        OpResult::NotKept => "applied (its result was not kept)".to_owned(),
        OpResult::Reconfigured { epoch, effective } => {
            format!("membership epoch {epoch} decided; it governs slots from {effective}")
        }
        OpResult::Refused { reason } => format!("membership change refused: {reason}"),
    };
    if matches!(submitted.result, OpResult::Proposed { .. }) {
        what
    } else {
        format!("{what}; slot {}", submitted.slot)
    }
}

fn status_text(s: &NodeStatus) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "node       {} {} at {} ({})", s.id, s.name, s.address, s.roles.join(", "));
    let _ = writeln!(t, "cluster    {}", s.cluster);
    let _ = writeln!(t, "role       {}", s.role);
    if s.voting != "voter" {
        let _ = writeln!(t, "voting     not yet: {}", s.voting);
    }
    let leader = s.leader.map_or_else(|| "none known".to_owned(), |id| id.to_string());
    let _ = writeln!(t, "leader     {leader}");
    let _ = writeln!(t, "ballot     {} (promised {})", s.ballot, s.promised);
    let _ = writeln!(t, "commit     {} (applied {})", s.commit_index, s.applied_index);
    if let Some(age) = s.last_heartbeat_age_ms {
        let _ = writeln!(t, "heartbeat  {age} ms ago");
    }
    let _ = writeln!(t, "pending    {}", s.pending_requests);
    let _ = writeln!(t, "uptime     {}", duration_text(s.uptime_ms));
    for (i, c) in s.clock.iter().enumerate() {
        let label = if i == 0 { "clock" } else { "" };
        let _ = writeln!(
            t,
            "{label:<10} node {}: {} (round trip {:.2} ms)",
            c.peer,
            offset_text(c.offset_ms, c.error_ms),
            c.round_trip_ms
        );
    }
    t
}

/// "+2000.03 ms ±0.05": a peer's clock minus this node's, with its error bound.
pub fn offset_text(offset_ms: f64, error_ms: f64) -> String {
    format!("{offset_ms:+.2} ms ±{error_ms:.2}")
}

fn members_text(members: &[MemberInfo]) -> String {
    let rows: Vec<[String; 7]> = members
        .iter()
        .map(|m| {
            let mut state = vec![if m.connected { "connected" } else { "unreachable" }];
            if m.is_leader {
                state.insert(0, "leader");
            }
            if m.is_self {
                state.push("self");
            }
            let mut state = state.join(", ");
            if let Some(ms) = m.last_heard_ms.filter(|_| !m.is_self) {
                let _ = write!(state, ", heard {ms} ms ago");
            }
            if let Some(index) = m.match_index {
                let _ = write!(state, ", match {index}");
            }
            let clock = match (m.clock_offset_ms, m.clock_error_ms) {
                (Some(offset), Some(error)) => offset_text(offset, error),
                _ => "-".to_owned(),
            };
            let round_trip = m.round_trip_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2} ms"));
            [m.id.to_string(), m.name.clone(), m.address.clone(), m.roles.join(","), state, clock, round_trip]
        })
        .collect();
    let header = ["ID", "NAME", "ADDRESS", "ROLES", "STATE", "CLOCK", "RTT"].map(String::from);
    // In characters, as `format!` pads: "±" is two bytes.
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut t = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:w$}")).collect();
        let _ = writeln!(t, "{}", cells.join("  ").trim_end());
    }
    t
}

fn help_text(topic: Option<&CommandHelp>, role: Role) -> String {
    if let Some(c) = topic {
        let mut t = format!("usage: {}\n{}\n", c.usage, c.summary);
        if !c.read_only {
            t.push_str("needs an operator key\n");
        }
        if !c.json.is_empty() {
            t.push_str("--json answers with:\n");
            let width = c.json.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
            for (key, shape) in c.json {
                let _ = writeln!(t, "  {key:width$}  {shape}");
            }
        }
        return t;
    }
    let mut t = String::from("commands (add --json for a JSON answer):\n");
    let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
    for c in COMMANDS {
        let note = if !c.read_only && role == Role::Reader { " (operators only)" } else { "" };
        let _ = writeln!(t, "  {:width$}  {}{note}", c.usage, c.summary);
    }
    t
}

fn help_json(c: &CommandHelp) -> Value {
    let shape: serde_json::Map<String, Value> = c.json.iter().map(|(k, v)| ((*k).to_owned(), (*v).into())).collect();
    json!({"name": c.name, "usage": c.usage, "summary": c.summary, "read_only": c.read_only, "json": shape})
}

impl Answer {
    pub fn help(topic: Option<&str>, role: Role) -> Answer {
        Answer::Help { topic: topic.and_then(command_help), role }
    }

    pub fn text(&self) -> String {
        match self {
            Answer::Status(s) => status_text(s),
            Answer::Leader(None) => "no leader known\n".to_owned(),
            Answer::Leader(Some(l)) => {
                let name = l.name.as_deref().unwrap_or("?");
                let address = l.address.as_deref().map(|a| format!(" at {a}")).unwrap_or_default();
                format!("{} {name}{address}\n", l.id)
            }
            Answer::Members(members) => members_text(members),
            Answer::Inventory(doc) => format!("{doc:#}\n"),
            Answer::Submitted { key, submitted } => format!("{}\n", result_text(key.as_deref(), submitted)),
            // The bare value, so `$(paxos get k)` is the value; absent prints
            // nothing. Control bytes are escaped for the terminal's sake.
            Answer::Value { read: ReadValue { value: Some(v), .. }, .. } => format!("{}\n", escape_controls(v)),
            Answer::Value { read: ReadValue { value: None, .. }, .. } => String::new(),
            Answer::Log { entries, .. } => entries.iter().map(|e| entry_text(e) + "\n").collect(),
            Answer::SteppedDown { leader } => format!("leadership handed to node {leader}\n"),
            Answer::Metrics(text) if text.ends_with('\n') || text.is_empty() => text.clone(),
            Answer::Metrics(text) => format!("{text}\n"),
            Answer::Health(h) => node_health_text(h),
            Answer::Help { topic, role } => help_text(*topic, *role),
        }
    }

    pub fn json(&self) -> Value {
        match self {
            Answer::Status(s) => serde_json::to_value(s).unwrap_or_default(),
            Answer::Leader(None) => json!({"leader": null}),
            Answer::Leader(Some(l)) => json!({"leader": l.id, "name": l.name, "address": l.address}),
            Answer::Members(m) => json!({ "members": m }),
            Answer::Inventory(doc) => doc.clone(),
            Answer::Submitted { key, submitted } => {
                let mut v = serde_json::to_value(submitted).unwrap_or_default();
                if let Some(key) = key {
                    v["key"] = key.clone().into();
                }
                v
            }
            Answer::Value { key, read } => json!({"key": key, "value": read.value, "index": read.index}),
            Answer::Log { entries, next } => {
                json!({"entries": entries.iter().map(entry_json).collect::<Vec<_>>(), "next": next})
            }
            Answer::SteppedDown { leader } => json!({ "leader": leader }),
            Answer::Metrics(text) => json!({ "metrics": text }),
            Answer::Health(h) => serde_json::to_value(h).unwrap_or_default(),
            Answer::Help { topic: Some(c), .. } => help_json(c),
            Answer::Help { topic: None, .. } => json!({"commands": COMMANDS.iter().map(help_json).collect::<Vec<_>>()}),
        }
    }

    /// The answer as written: text, or one line of JSON and a newline.
    pub fn render(&self, json: bool) -> String {
        if json { format!("{}\n", self.json()) } else { self.text() }
    }
}
