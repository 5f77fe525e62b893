//! The checks a run must pass: the client history is linearizable per key
//! (todc-utils' WGL checker, through `sim::linearizability`), the decided
//! logs of the nodes agree on every slot they share, and each fault was
//! followed by an acknowledged write (its unavailability window).

use super::history::{Event, EventType, F, Process};
use crate::sim::linearizability::{KeyOp, Recorder};
use serde_json::Value;
use std::collections::BTreeMap;

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// The checker's view of one operation; `answer` is `None` while the
/// outcome is unknown.
fn key_op(invoke: &Event, answer: Option<&Event>) -> Result<KeyOp, String> {
    let bad = || format!("event {}: malformed {:?} operation", invoke.index, invoke.f);
    let result = answer.and_then(|a| a.result.as_ref());
    let field = |name: &str| result.and_then(|r| r.get(name));
    Ok(match invoke.f {
        F::Read => KeyOp::Get { value: answer.and_then(|a| text(&a.value)) },
        F::Write => KeyOp::Put {
            value: text(&invoke.value).ok_or_else(bad)?,
            previous: answer.map(|_| field("previous").and_then(text)),
        },
        F::Delete => KeyOp::Delete { existed: answer.and_then(|_| field("existed").and_then(Value::as_bool)) },
        F::Cas => {
            let pair = invoke.value.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
            KeyOp::Cas {
                expected: text(&pair[0]),
                new: text(&pair[1]).ok_or_else(bad)?,
                swapped: answer.and_then(|_| field("swapped").and_then(Value::as_bool)),
            }
        }
        _ => return Err(bad()),
    })
}

/// Pairs each client invoke with its completion (the next event of the
/// same process), in history order.
fn operations(events: &[Event]) -> Result<Vec<(&Event, Option<&Event>)>, String> {
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut ops: Vec<(&Event, Option<&Event>)> = Vec::new();
    for event in events {
        let Process::Client(p) = event.process else { continue };
        match event.kind {
            EventType::Invoke => {
                if open.insert(p, ops.len()).is_some() {
                    return Err(format!("event {}: process {p} invoked twice without an answer", event.index));
                }
                ops.push((event, None));
            }
            _ => {
                let at = open
                    .remove(&p)
                    .ok_or_else(|| format!("event {}: process {p} answered nothing it invoked", event.index))?;
                if ops[at].0.f != event.f || ops[at].0.key != event.key {
                    return Err(format!("event {}: answer does not match invoke {}", event.index, ops[at].0.index));
                }
                ops[at].1 = Some(event);
            }
        }
    }
    Ok(ops)
}

/// Linearizability per key. Failed operations are left out (they were
/// definitely not applied); `info` ones may have happened at any point
/// after their invoke; reads that were not answered change nothing.
pub fn linearizable(events: &[Event]) -> Result<(), String> {
    let ops = operations(events)?;
    let mut recorder = Recorder::default();
    // Calls and answers go to the recorder in real-time order.
    let mut timeline: Vec<(u64, bool, usize)> = Vec::new();
    for (i, (invoke, answer)) in ops.iter().enumerate() {
        match answer.map(|a| a.kind) {
            Some(EventType::Fail) => {}
            Some(EventType::Ok) => {
                timeline.push((invoke.index, true, i));
                timeline.push((answer.map_or(0, |a| a.index), false, i));
            }
            _ => timeline.push((invoke.index, true, i)),
        }
    }
    timeline.sort_unstable();
    for (_, is_call, i) in timeline {
        let (invoke, answer) = ops[i];
        let Process::Client(process) = invoke.process else { continue };
        let key = invoke.key.as_deref().ok_or_else(|| format!("event {}: no key", invoke.index))?;
        let known = answer.filter(|a| a.kind == EventType::Ok);
        if is_call {
            recorder.call(process as usize, key, key_op(invoke, known)?);
        } else {
            recorder.respond(process as usize, key_op(invoke, known)?);
        }
    }
    recorder.check()
}

/// Disagreements between nodes' decided logs (slot -> entry as JSON, per
/// node): every slot two nodes both hold must carry the same entry.
pub fn log_disagreements(logs: &BTreeMap<u64, BTreeMap<u64, Value>>) -> (u64, Vec<String>) {
    let mut compared = 0;
    let mut problems = Vec::new();
    let mut slots: BTreeMap<u64, Vec<(u64, &Value)>> = BTreeMap::new();
    for (node, log) in logs {
        for (slot, entry) in log {
            slots.entry(*slot).or_default().push((*node, entry));
        }
    }
    for (slot, held) in slots {
        if held.len() < 2 {
            continue;
        }
        compared += 1;
        if let Some((node, entry)) = held.iter().find(|(_, e)| *e != held[0].1) {
            problems
                .push(format!("slot {slot}: node {} decided {} but node {node} decided {entry}", held[0].0, held[0].1));
        }
    }
    (compared, problems)
}

/// One fault's unavailability: from its injection to the first
/// acknowledged write invoked after it, or `None` if none came.
pub fn recovery_after(events: &[Event], fault_time: u64) -> Option<u64> {
    let mut invoked_after: BTreeMap<u64, bool> = BTreeMap::new();
    for event in events {
        let Process::Client(p) = event.process else { continue };
        match event.kind {
            EventType::Invoke => {
                invoked_after.insert(p, event.time >= fault_time && event.f.is_mutation());
            }
            EventType::Ok if invoked_after.get(&p) == Some(&true) => return Some(event.time - fault_time),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::history::read_jsonl;

    fn history(lines: &[&str]) -> Vec<Event> {
        let text: Vec<String> =
            lines.iter().enumerate().map(|(i, l)| format!(r#"{{"index": {i}, "time": {}, {l}}}"#, i * 1000)).collect();
        read_jsonl(&text.join("\n")).unwrap()
    }

    const WRITE_A: [&str; 2] = [
        r#""process": 0, "type": "invoke", "f": "write", "key": "k", "value": "a""#,
        r#""process": 0, "type": "ok", "f": "write", "key": "k", "value": "a", "result": {"previous": null}"#,
    ];

    #[test]
    fn a_stale_read_is_an_anomaly() {
        let events = history(&[
            WRITE_A[0],
            WRITE_A[1],
            r#""process": 1, "type": "invoke", "f": "write", "key": "k", "value": "b""#,
            r#""process": 1, "type": "ok", "f": "write", "key": "k", "value": "b", "result": {"previous": "a"}"#,
            r#""process": 2, "type": "invoke", "f": "read", "key": "k", "value": null"#,
            r#""process": 2, "type": "ok", "f": "read", "key": "k", "value": "a""#,
        ]);
        assert!(linearizable(&events).unwrap_err().contains("not linearizable"));
    }

    #[test]
    fn a_read_of_a_failed_write_is_an_anomaly_but_of_an_indeterminate_one_is_not() {
        let read = [
            r#""process": 2, "type": "invoke", "f": "read", "key": "k", "value": null"#,
            r#""process": 2, "type": "ok", "f": "read", "key": "k", "value": "b""#,
        ];
        let write_b = r#""process": 1, "type": "invoke", "f": "write", "key": "k", "value": "b""#;
        let failed = r#""process": 1, "type": "fail", "f": "write", "key": "k", "value": "b", "error": "no_leader""#;
        let unknown = r#""process": 1, "type": "info", "f": "write", "key": "k", "value": "b", "error": "timeout""#;
        let events = history(&[WRITE_A[0], WRITE_A[1], write_b, failed, read[0], read[1]]);
        assert!(linearizable(&events).is_err(), "a definitely failed write was read");
        let events = history(&[WRITE_A[0], WRITE_A[1], write_b, unknown, read[0], read[1]]);
        assert_eq!(linearizable(&events), Ok(()));
    }

    #[test]
    fn a_lost_acknowledged_write_is_an_anomaly() {
        let events = history(&[
            WRITE_A[0],
            WRITE_A[1],
            r#""process": 9, "type": "invoke", "f": "read", "key": "k", "value": null"#,
            r#""process": 9, "type": "ok", "f": "read", "key": "k", "value": null"#,
        ]);
        assert!(linearizable(&events).is_err());
    }

    #[test]
    fn cas_and_delete_results_are_checked() {
        let events = history(&[
            WRITE_A[0],
            WRITE_A[1],
            r#""process": 1, "type": "invoke", "f": "cas", "key": "k", "value": ["a", "c"]"#,
            r#""process": 1, "type": "ok", "f": "cas", "key": "k", "value": ["a", "c"], "result": {"swapped": true}"#,
            r#""process": 1, "type": "invoke", "f": "delete", "key": "k", "value": null"#,
            r#""process": 1, "type": "ok", "f": "delete", "key": "k", "value": null, "result": {"existed": true}"#,
        ]);
        assert_eq!(linearizable(&events), Ok(()));
        let mut wrong = events.clone();
        wrong[5].result = Some(serde_json::json!({"existed": false}));
        assert!(linearizable(&wrong).is_err());
    }

    #[test]
    fn malformed_histories_are_refused() {
        let twice = history(&[WRITE_A[0], WRITE_A[0]]);
        assert!(linearizable(&twice).unwrap_err().contains("invoked twice"));
        let orphan = history(&[WRITE_A[1]]);
        assert!(linearizable(&orphan).unwrap_err().contains("answered nothing"));
    }

    #[test]
    fn logs_that_differ_in_a_shared_slot_disagree() {
        let entry = |v: &str| serde_json::json!({ "kind": v });
        let mut logs = BTreeMap::new();
        logs.insert(1, BTreeMap::from([(0, entry("noop")), (1, entry("a"))]));
        logs.insert(2, BTreeMap::from([(0, entry("noop")), (1, entry("a")), (2, entry("b"))]));
        assert_eq!(log_disagreements(&logs), (2, vec![]));
        logs.insert(3, BTreeMap::from([(1, entry("x"))]));
        let (compared, problems) = log_disagreements(&logs);
        assert_eq!(compared, 2);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("slot 1:"));
    }

    #[test]
    fn recovery_counts_from_the_fault_to_the_next_write_invoked_after_it() {
        let events = history(&[
            WRITE_A[0],
            r#""process": 2, "type": "invoke", "f": "read", "key": "k", "value": null"#,
            r#""process": 2, "type": "ok", "f": "read", "key": "k", "value": null"#,
            WRITE_A[1],
            r#""process": 1, "type": "invoke", "f": "write", "key": "k", "value": "b""#,
            r#""process": 1, "type": "ok", "f": "write", "key": "k", "value": "b", "result": {"previous": "a"}"#,
        ]);
        assert_eq!(recovery_after(&events, 500), Some(5000 - 500));
        assert_eq!(recovery_after(&events, 4500), None);
    }
}
