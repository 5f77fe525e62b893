//! The monitor's SSH side: one long-lived session per node with a console
//! channel (`paxos console`), asked `status --json` and `metrics --json` on
//! each refresh. A node that does not answer in time is reported down and
//! its session dropped; it is reconnected in the background with backoff,
//! so a dead or frozen node never holds up the others' rows.

use super::histogram::{FSYNC_FAMILY, Histogram};
use super::model::{NodeReport, Snapshot, StatusView};
use crate::cli::remote::Target;
use crate::cluster::NodeEntry;
use crate::ssh::client::{Console, SshClient};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;

/// The first wait before reconnecting; doubled on each failure up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

type Connecting = JoinHandle<Result<(SshClient, Console), String>>;

enum State {
    /// Not connected; the next attempt starts at `retry_at`.
    Idle {
        retry_at: Instant,
    },
    Connecting(Connecting),
    /// Boxed: a console is large next to the other states.
    Connected {
        _client: SshClient,
        console: Box<Console>,
    },
}

/// One node's session.
struct NodeSession {
    node: NodeEntry,
    state: State,
    backoff: Duration,
    last_error: String,
}

impl NodeSession {
    fn start_connecting(&mut self, target: &Arc<Target>) {
        let target = target.clone();
        let node = self.node.clone();
        self.state = State::Connecting(tokio::spawn(async move {
            let client = target.connect(&node).await.map_err(|e| format!("{e:#}"))?;
            let console = client.console().await.map_err(|e| e.to_string())?;
            Ok((client, console))
        }));
    }

    fn failed(&mut self, error: String) {
        self.last_error = error;
        self.state = State::Idle { retry_at: Instant::now() + self.backoff };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// This refresh's report: connects if need be, then asks; never takes
    /// much longer than `wait`.
    async fn poll(&mut self, target: &Arc<Target>, wait: Duration) -> NodeReport {
        let deadline = tokio::time::Instant::now() + wait;
        if let State::Idle { retry_at } = self.state
            && Instant::now() >= retry_at
        {
            self.start_connecting(target);
        }
        if let State::Connecting(handle) = &mut self.state {
            let connected = tokio::time::timeout_at(deadline, handle).await;
            match connected {
                Err(_) => self.last_error = format!("still connecting to {}", self.node.address()),
                Ok(Ok(Ok((client, console)))) => {
                    self.state = State::Connected { _client: client, console: Box::new(console) };
                    self.backoff = MIN_BACKOFF;
                }
                Ok(Ok(Err(e))) => self.failed(e),
                Ok(Err(e)) => self.failed(format!("connecting: {e}")),
            }
        }
        let id = self.node.id;
        let State::Connected { console, .. } = &mut self.state else {
            return NodeReport { id, status: Err(self.last_error.clone()), fsync: None };
        };
        let answer = tokio::time::timeout_at(deadline, ask(console)).await;
        match answer {
            Ok(Ok((status, fsync))) => NodeReport { id, status: Ok(status), fsync },
            Ok(Err(e)) => {
                // The session is unusable (or out of step): start afresh.
                self.failed(e.clone());
                NodeReport { id, status: Err(e), fsync: None }
            }
            Err(_) => {
                let e = format!("no answer within {} ms", wait.as_millis());
                self.failed(e.clone());
                NodeReport { id, status: Err(e), fsync: None }
            }
        }
    }
}

/// Both questions go out before either answer is read: one round trip.
async fn ask(console: &mut Console) -> Result<(StatusView, Option<Histogram>), String> {
    console.send_line("status --json").await.map_err(|e| e.to_string())?;
    console.send_line("metrics --json").await.map_err(|e| e.to_string())?;
    let closed = || "the node closed the connection".to_string();
    let status = console.read_line().await.ok_or_else(closed)?;
    let metrics = console.read_line().await.ok_or_else(closed)?;
    let status = parse_status(&status)?;
    // Metrics are a bonus: a node whose metrics cannot be read still has a row.
    let fsync = parse_metrics(&metrics).ok().flatten();
    Ok((status, fsync))
}

/// A `status --json` answer, or the node's error as text.
pub fn parse_status(line: &str) -> Result<StatusView, String> {
    serde_json::from_str::<StatusView>(line).map_err(|e| match error_of(line) {
        Some(error) => format!("status: {error}"),
        None => format!("unreadable status ({e})"),
    })
}

/// The fsync histogram from a `metrics --json` answer.
pub fn parse_metrics(line: &str) -> Result<Option<Histogram>, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("unreadable metrics ({e})"))?;
    let text = value.get("metrics").and_then(|m| m.as_str()).ok_or_else(|| match error_of(line) {
        Some(error) => format!("metrics: {error}"),
        None => "metrics: no \"metrics\" field".to_string(),
    })?;
    Histogram::from_exposition(text, FSYNC_FAMILY)
}

/// The message of a JSON error answer (`{"error": {...}}` or `{"error": "..."}`).
fn error_of(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let error = value.get("error")?;
    Some(match error.get("message").and_then(|m| m.as_str()) {
        Some(message) => message.to_string(),
        None => error.as_str().map_or_else(|| error.to_string(), str::to_string),
    })
}

/// Every node's session.
pub struct Collector {
    target: Arc<Target>,
    sessions: Vec<NodeSession>,
    started: Instant,
    /// How long a refresh waits for a node.
    wait: Duration,
}

impl Collector {
    pub fn new(target: Arc<Target>, wait: Duration) -> Collector {
        let sessions = target
            .inventory
            .nodes
            .iter()
            .map(|node| NodeSession {
                node: node.clone(),
                state: State::Idle { retry_at: Instant::now() },
                backoff: MIN_BACKOFF,
                last_error: "not connected yet".to_string(),
            })
            .collect();
        Collector { target, sessions, started: Instant::now(), wait }
    }

    /// Asks every node at once; returns when all answered or the wait ended.
    pub async fn refresh(&mut self) -> Snapshot {
        let target = &self.target;
        let wait = self.wait;
        let nodes = futures::future::join_all(self.sessions.iter_mut().map(|s| s.poll(target, wait))).await;
        Snapshot { at: self.started.elapsed(), wall: SystemTime::now(), nodes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_become_messages() {
        let line = r#"{"error":{"kind":"unavailable","message":"no leader"}}"#;
        assert_eq!(parse_status(line).unwrap_err(), "status: no leader");
        assert!(parse_status("not json").unwrap_err().starts_with("unreadable status"));
        assert_eq!(parse_metrics(line).unwrap_err(), "metrics: no leader");
        let other = r##"{"metrics":"# TYPE paxos_commit_index gauge\npaxos_commit_index 3\n# EOF\n"}"##;
        assert_eq!(parse_metrics(other).unwrap(), None);
        assert!(parse_metrics(r#"{"metrics":"garbage{{ 1 2"}"#).is_err());
    }
}
