//! The recorded history, one event per line in Jepsen's shape: every
//! client operation is an `invoke` followed by exactly one of `ok`
//! (applied, with its result), `fail` (definitely not applied) or `info`
//! (outcome unknown), and the nemesis logs each fault as `info` events.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// A client process (Jepsen: a process that gets an `info` never runs
/// again; its client continues as a new process) or the nemesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Nemesis(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum F {
    Read,
    Write,
    Cas,
    Delete,
    /// Nemesis operations.
    Kill,
    Restart,
    Pause,
    Resume,
    Transfer,
    Wipe,
    /// Peer traffic cut (the `value` is the isolated node).
    Partition,
    OneWay,
    Flap,
    /// Peer traffic restored.
    Heal,
    /// A node's disk filled up, and freed again.
    DiskFull,
    DiskFreed,
}

impl F {
    pub fn is_mutation(self) -> bool {
        matches!(self, F::Write | F::Cas | F::Delete)
    }
}

/// One history event. `value` is what was asked (a write's value, a cas's
/// `[expected, new]`, a read's answer on `ok`); `result` is what a mutation
/// answered (`{"previous": …}`, `{"swapped": …}`, `{"existed": …}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    /// Nanoseconds since the run began.
    pub time: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub f: F,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The node the client or the fault was talking to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// Why an operation failed or is indeterminate (the node's error kind, or "timeout", "connection").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a caller fills in; the recorder adds index and time.
#[derive(Clone, Debug)]
pub struct Note {
    pub process: Process,
    pub kind: EventType,
    pub f: F,
    pub key: Option<String>,
    pub value: Value,
    pub result: Option<Value>,
    pub node: Option<u64>,
    pub error: Option<String>,
}

/// The shared history of a run; events get their index in the order they
/// are recorded, which is real-time order.
pub struct History {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl History {
    pub fn new(start: Instant) -> History {
        History { start, events: Mutex::new(Vec::new()) }
    }

    pub fn nanos_since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    pub fn record(&self, note: Note) -> u64 {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        // Taking the time under the lock keeps times in index order.
        let time = self.nanos_since_start(Instant::now());
        let index = events.len() as u64;
        events.push(Event {
            index,
            time,
            process: note.process,
            kind: note.kind,
            f: note.f,
            key: note.key,
            value: note.value,
            result: note.result,
            node: note.node,
            error: note.error,
        });
        time
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Writes the events as JSON lines.
pub fn write_jsonl(path: &Path, events: &[Event]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Reads a JSONL history back; the error names the line.
pub fn read_jsonl(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("history line {}: {e}", n + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_jsonl_in_jepsen_shape() {
        let history = History::new(Instant::now());
        history.record(Note {
            process: Process::Client(3),
            kind: EventType::Invoke,
            f: F::Cas,
            key: Some("k1".into()),
            value: serde_json::json!([null, "v"]),
            result: None,
            node: Some(2),
            error: None,
        });
        let events = history.snapshot();
        let line = serde_json::to_string(&events[0]).unwrap();
        assert!(line.contains(r#""type":"invoke""#) && line.contains(r#""f":"cas""#), "{line}");
        assert!(line.contains(r#""process":3"#), "{line}");
        assert_eq!(read_jsonl(&format!("{line}\n\n")).unwrap(), events);
        assert!(read_jsonl("{\"index\": 1}\n").unwrap_err().contains("line 1"));
    }
}
