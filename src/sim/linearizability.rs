//! Linearizability of the recorded client history, checked per key (a
//! key-value store is linearizable iff each key is) with todc-utils'
//! Wing-Gong-Lowe checker.

use std::collections::BTreeMap;
use todc_utils::linearizability::WGLChecker;
use todc_utils::linearizability::history::{Action, History};
use todc_utils::specifications::Specification;

/// One operation on one key, as called and as answered. `None` in a result
/// field means the answer is unknown (the client gave up or the run ended),
/// so the operation may or may not have taken effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOp {
    Put { value: String, previous: Option<Option<String>> },
    Delete { existed: Option<bool> },
    Cas { expected: Option<String>, new: String, swapped: Option<bool> },
    Get { value: Option<String> },
}

struct KeySpec;

impl Specification for KeySpec {
    type State = Option<String>;
    type Operation = KeyOp;

    fn init() -> Self::State {
        None
    }

    fn apply(op: &KeyOp, state: &Option<String>) -> (bool, Option<String>) {
        match op {
            KeyOp::Put { value, previous } => (previous.as_ref().is_none_or(|p| p == state), Some(value.clone())),
            KeyOp::Delete { existed } => (existed.is_none_or(|e| e == state.is_some()), None),
            KeyOp::Get { value } => (value == state, state.clone()),
            KeyOp::Cas { expected, new, swapped } => {
                let matches = state == expected;
                let valid = swapped.is_none_or(|s| s == matches);
                (valid, if matches { Some(new.clone()) } else { state.clone() })
            }
        }
    }
}

/// A client history: each client runs one operation at a time.
#[derive(Default)]
pub struct Recorder {
    /// Per key: (client, call or response) in real-time order.
    events: BTreeMap<String, Vec<(usize, Action<KeyOp>)>>,
    open: BTreeMap<usize, (String, KeyOp)>,
}

impl Recorder {
    pub fn call(&mut self, client: usize, key: &str, op: KeyOp) {
        self.events.entry(key.to_string()).or_default().push((client, Action::Call(op.clone())));
        self.open.insert(client, (key.to_string(), op));
    }

    pub fn respond(&mut self, client: usize, op: KeyOp) {
        if let Some((key, _)) = self.open.remove(&client) {
            self.events.entry(key).or_default().push((client, Action::Response(op)));
        }
    }

    pub fn completed(&self) -> usize {
        self.events.values().flatten().filter(|(_, a)| matches!(a, Action::Response(_))).count()
    }

    /// Check every key. Operations still open at the end get an "unknown"
    /// response after everything else, so the checker may place them
    /// anywhere after their call; open reads are dropped (they change nothing).
    pub fn check(mut self) -> Result<(), String> {
        for (client, (key, op)) in std::mem::take(&mut self.open) {
            let events = self.events.entry(key).or_default();
            let unknown = match op {
                KeyOp::Get { .. } => {
                    let at = events.iter().rposition(|(c, _)| *c == client);
                    if let Some(at) = at {
                        events.remove(at);
                    }
                    continue;
                }
                KeyOp::Put { value, .. } => KeyOp::Put { value, previous: None },
                KeyOp::Delete { .. } => KeyOp::Delete { existed: None },
                KeyOp::Cas { expected, new, .. } => KeyOp::Cas { expected, new, swapped: None },
            };
            events.push((client, Action::Response(unknown)));
        }
        for (key, events) in self.events {
            if events.is_empty() {
                continue;
            }
            let full = std::env::var_os("PAXOS_SIM_TRACE").is_some();
            let summary =
                if events.len() <= 40 || full { format!("{events:?}") } else { format!("{} events", events.len()) };
            if !WGLChecker::<KeySpec>::is_linearizable(History::from_actions(events)) {
                return Err(format!("history of key {key:?} is not linearizable: {summary}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str) -> KeyOp {
        KeyOp::Put { value: v.into(), previous: None }
    }

    fn get(v: Option<&str>) -> KeyOp {
        KeyOp::Get { value: v.map(Into::into) }
    }

    #[test]
    fn a_read_of_a_value_overwritten_before_it_began_is_caught() {
        let mut r = Recorder::default();
        r.call(0, "k", put("a"));
        r.respond(0, put("a"));
        r.call(1, "k", put("b"));
        r.respond(1, put("b"));
        r.call(2, "k", get(None));
        r.respond(2, get(Some("a")));
        assert!(r.check().unwrap_err().contains("not linearizable"));
    }

    #[test]
    fn concurrent_writes_may_be_read_in_either_order() {
        let mut r = Recorder::default();
        r.call(0, "k", put("a"));
        r.call(1, "k", put("b"));
        r.call(2, "k", get(None));
        r.respond(2, get(Some("b")));
        r.respond(0, put("a"));
        r.respond(1, put("b"));
        assert_eq!(r.check(), Ok(()));
    }

    #[test]
    fn an_unanswered_write_may_or_may_not_have_happened() {
        let mut r = Recorder::default();
        r.call(0, "k", put("a"));
        r.call(1, "k", get(None));
        r.respond(1, get(Some("a")));
        assert_eq!(r.check(), Ok(()));
        let mut r = Recorder::default();
        r.call(0, "k", put("a"));
        r.call(1, "k", get(None));
        r.respond(1, get(None));
        assert_eq!(r.check(), Ok(()));
    }

    #[test]
    fn a_failed_compare_and_set_must_see_another_value() {
        let mut r = Recorder::default();
        r.call(0, "k", KeyOp::Cas { expected: None, new: "x".into(), swapped: None });
        r.respond(0, KeyOp::Cas { expected: None, new: "x".into(), swapped: Some(false) });
        assert!(r.check().is_err(), "the key was absent, so the swap had to succeed");
    }
}
