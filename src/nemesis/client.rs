//! One nemesis client: a console on one node, one operation at a time on a
//! small key set, every call and answer recorded. A mutation carries
//! `--request CLIENT:SEQ`; when its outcome is unknown it is retried with
//! the same id (answered, never applied twice) on the next node, and
//! recorded `info` if no retry settles it. After an `info` the client goes
//! on as a new process on a new connection, as Jepsen's clients do.

use super::cluster::Access;
use super::history::{EventType, F, History, Note, Process};
use crate::consensus::rng::Rng;
use crate::ssh::client::{Console, SshClient};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longer than a node's own wait for a decision, so a node that answers answers first.
const OP_TIMEOUT: Duration = Duration::from_secs(12);
/// Attempts of one mutation whose outcome stays unknown.
const ATTEMPTS: usize = 3;

/// Error kinds that say the command was definitely not applied.
const DEFINITE: &[&str] = &["no_leader", "not_applied", "too_large", "usage", "denied", "bad_target"];

pub struct Shared {
    pub access: Access,
    pub history: Arc<History>,
    pub keys: u64,
    /// Keys are `{key_prefix}0` .. `{key_prefix}{keys - 1}`.
    pub key_prefix: String,
    pub clients: u64,
    /// Request ids are `client_base + process`, so runs never share ids.
    pub client_base: u64,
    /// No operation starts after this,
    pub stop_at: Instant,
    /// nor once this is cancelled.
    pub stop: CancellationToken,
    /// Retries of an unsettled mutation end by this.
    pub give_up_at: Instant,
}

/// What to send, and how it is recorded.
#[derive(Clone, Debug)]
pub struct Op {
    pub f: F,
    pub key: String,
    pub value: Value,
}

impl Op {
    fn line(&self, request: &str) -> String {
        let k = &self.key;
        match (self.f, &self.value) {
            (F::Read, _) => format!("get {k} --json"),
            (F::Write, v) => format!("put {k} {} --request {request} --json", v.as_str().unwrap_or_default()),
            (F::Delete, _) => format!("delete {k} --request {request} --json"),
            (_, v) => {
                let expected = v[0].as_str().map_or("--absent".to_owned(), str::to_owned);
                format!("cas {k} {expected} {} --request {request} --json", v[1].as_str().unwrap_or_default())
            }
        }
    }
}

/// How one answer is recorded: its type, the read value or the mutation's result, and the error kind.
pub type Settled = (EventType, Value, Option<Value>, Option<String>);

/// Maps one console answer (or its absence) to ok, fail or info.
pub fn classify(op: &Op, answer: Result<String, &str>) -> Settled {
    let info = |why: &str| (EventType::Info, op.value.clone(), None, Some(why.to_owned()));
    let line = match answer {
        Ok(line) => line,
        Err(why) => return info(why),
    };
    let Ok(doc) = serde_json::from_str::<Value>(&line) else { return info("unreadable") };
    if let Some(error) = doc.get("error") {
        let kind = error.get("kind").and_then(Value::as_str).unwrap_or("error").to_owned();
        // A read changes nothing, so any refusal of one is a plain failure.
        let definite = op.f == F::Read || DEFINITE.contains(&kind.as_str());
        return (if definite { EventType::Fail } else { EventType::Info }, op.value.clone(), None, Some(kind));
    }
    let field = |name: &str| doc.get(name).cloned().unwrap_or(Value::Null);
    match (op.f, doc.get("result").and_then(Value::as_str)) {
        (F::Read, _) if matches!(doc.get("value"), Some(Value::String(_) | Value::Null)) => {
            (EventType::Ok, field("value"), None, None)
        }
        (F::Write, Some("put")) => ok(op, "previous", field("previous")),
        (F::Delete, Some("delete")) if doc["existed"].is_boolean() => ok(op, "existed", field("existed")),
        (F::Cas, Some("cas")) if doc["swapped"].is_boolean() => ok(op, "swapped", field("swapped")),
        _ => info("unexpected"),
    }
}

fn ok(op: &Op, name: &str, value: Value) -> Settled {
    (EventType::Ok, op.value.clone(), Some(serde_json::json!({ name: value })), None)
}

/// A console on one node, kept open for many commands.
pub struct Link {
    pub node: u64,
    _client: SshClient,
    console: Console,
}

impl Link {
    /// Ends the console politely (bounded).
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.console.finish()).await;
    }
}

/// Opens a console on `node`; `None` when it cannot be reached within `within`.
pub async fn open_link(access: &Access, node: u64, within: Duration) -> Option<Link> {
    let client = tokio::time::timeout(within, access.connect(node)).await.ok()?.ok()?;
    let console = tokio::time::timeout(within, client.console()).await.ok()?.ok()?;
    Some(Link { node, _client: client, console })
}

async fn open(shared: &Shared, node: u64) -> Option<Link> {
    open_link(&shared.access, node, OP_TIMEOUT).await
}

async fn ask(link: &mut Link, line: &str) -> Result<String, &'static str> {
    ask_within(link, line, OP_TIMEOUT).await
}

/// Sends one command line and reads its one-line answer (`--json`), or says why not.
pub async fn ask_within(link: &mut Link, line: &str, within: Duration) -> Result<String, &'static str> {
    if link.console.send_line(line).await.is_err() {
        return Err("connection");
    }
    match tokio::time::timeout(within, link.console.read_line()).await {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err("connection"),
        Err(_) => Err("timeout"),
    }
}

fn next_op(rng: &mut Rng, shared: &Shared, process: u64, seq: u64, seen: &BTreeMap<String, Option<String>>) -> Op {
    let key = format!("{}{}", shared.key_prefix, rng.between(0, shared.keys - 1));
    let fresh = Value::String(format!("v{process}n{seq}"));
    let roll = rng.between(1, 100);
    let (f, value) = if roll <= 40 {
        (F::Read, Value::Null)
    } else if roll <= 70 {
        (F::Write, fresh)
    } else if roll <= 90 {
        let expected = seen.get(&key).cloned().flatten().map_or(Value::Null, Value::String);
        (F::Cas, Value::Array(vec![expected, fresh]))
    } else {
        (F::Delete, Value::Null)
    };
    Op { f, key, value }
}

/// Runs client `slot` until `stop_at`; every operation it invoked is answered in the history.
pub async fn run(shared: Arc<Shared>, slot: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let nodes = shared.access.node_ids();
    let mut node_at = slot as usize % nodes.len();
    let mut process = slot;
    let mut seq = 0;
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut link: Option<Link> = None;
    while Instant::now() < shared.stop_at && !shared.stop.is_cancelled() {
        let Some(current) = link.as_mut() else {
            link = open(&shared, nodes[node_at]).await;
            if link.is_none() {
                node_at = (node_at + 1) % nodes.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        seq += 1;
        let op = next_op(&mut rng, &shared, process, seq, &seen);
        let request = format!("{}:{seq}", shared.client_base + process);
        let line = op.line(&request);
        let note = |kind, value, result, error, node| Note {
            process: Process::Client(process),
            kind,
            f: op.f,
            key: Some(op.key.clone()),
            value,
            result,
            node: Some(node),
            error,
        };
        shared.history.record(note(EventType::Invoke, op.value.clone(), None, None, current.node));
        let mut node = current.node;
        let mut settled = classify(&op, ask(current, &line).await);
        let mut attempts = 1;
        while settled.0 == EventType::Info && op.f.is_mutation() {
            link = None; // this connection may be wedged; never reuse it
            if attempts >= ATTEMPTS || Instant::now() >= shared.give_up_at {
                break;
            }
            attempts += 1;
            node_at = (node_at + 1) % nodes.len();
            if let Some(mut retry) = open(&shared, nodes[node_at]).await {
                node = retry.node;
                let again = classify(&op, ask(&mut retry, &line).await);
                // A refusal of the retry says nothing of the first attempt: still unknown.
                if again.0 != EventType::Fail {
                    settled = again;
                }
                link = Some(retry);
            }
        }
        let (kind, value, result, error) = settled;
        match kind {
            EventType::Ok if op.f == F::Read => {
                seen.insert(op.key.clone(), value.as_str().map(str::to_owned));
            }
            EventType::Ok if op.f == F::Write => {
                seen.insert(op.key.clone(), op.value.as_str().map(str::to_owned));
            }
            EventType::Ok if op.f == F::Delete => {
                seen.insert(op.key.clone(), None);
            }
            _ => {}
        }
        shared.history.record(note(kind, value, result, error, node));
        if kind == EventType::Info {
            process += shared.clients;
            seq = 0;
            link = None;
            node_at = (node_at + 1) % nodes.len();
        }
    }
    if let Some(link) = link {
        link.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(f: F) -> Op {
        let value = match f {
            F::Cas => serde_json::json!([null, "v1n1"]),
            F::Write => "v1n1".into(),
            _ => Value::Null,
        };
        Op { f, key: "k0".into(), value }
    }

    #[test]
    fn answers_map_to_ok_fail_or_info() {
        let put = op(F::Write);
        let ok = classify(&put, Ok(r#"{"slot":4,"result":"put","previous":"a","key":"k0"}"#.into()));
        assert_eq!((ok.0, ok.2), (EventType::Ok, Some(serde_json::json!({"previous": "a"}))));
        for kind in ["no_leader", "not_applied", "too_large", "usage"] {
            let line = format!(r#"{{"error":{{"kind":"{kind}","message":"m"}}}}"#);
            assert_eq!(classify(&put, Ok(line)).0, EventType::Fail, "{kind}");
        }
        for kind in ["outcome_unknown", "timeout", "shutting_down", "storage", "stale_request"] {
            let line = format!(r#"{{"error":{{"kind":"{kind}","message":"m"}}}}"#);
            assert_eq!(classify(&put, Ok(line)).0, EventType::Info, "{kind}");
        }
        assert_eq!(classify(&put, Err("timeout")).0, EventType::Info);
        assert_eq!(classify(&put, Ok("not json".into())).0, EventType::Info);
        // An answer of the wrong shape is not taken for success.
        assert_eq!(classify(&put, Ok(r#"{"slot":4,"result":"cas","swapped":true}"#.into())).0, EventType::Info);
        let stale = classify(&put, Ok(r#"{"slot":4,"result":"stale_sequence","last_seq":9}"#.into()));
        assert_eq!(stale.0, EventType::Info);
        let read = classify(&op(F::Read), Ok(r#"{"key":"k0","value":null,"index":3}"#.into()));
        assert_eq!((read.0, read.1), (EventType::Ok, Value::Null));
        let refused = classify(&op(F::Read), Ok(r#"{"error":{"kind":"timeout"}}"#.into()));
        assert_eq!(refused.0, EventType::Fail);
        let cas = classify(&op(F::Cas), Ok(r#"{"slot":1,"result":"cas","swapped":false,"current":"x"}"#.into()));
        assert_eq!(cas.2, Some(serde_json::json!({"swapped": false})));
    }

    #[test]
    fn command_lines_carry_the_request_id() {
        assert_eq!(op(F::Write).line("7:3"), "put k0 v1n1 --request 7:3 --json");
        assert_eq!(op(F::Cas).line("7:3"), "cas k0 --absent v1n1 --request 7:3 --json");
        let swap = Op { f: F::Cas, key: "k0".into(), value: serde_json::json!(["a", "b"]) };
        assert_eq!(swap.line("1:1"), "cas k0 a b --request 1:1 --json");
        assert_eq!(op(F::Read).line("1:1"), "get k0 --json");
        assert_eq!(op(F::Delete).line("1:2"), "delete k0 --request 1:2 --json");
    }
}
