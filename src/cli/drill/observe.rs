//! Watching the leadership during a drill: each node's status, asked over
//! its own long-lived console every [`POLL`], recorded with the time since
//! the drill began. A node that does not answer in time (killed, stopped)
//! is recorded as silent, and its console opened again.

use crate::consensus::ballot::Ballot;
use crate::nemesis::client::{ask_within, open_link};
use crate::nemesis::cluster::Access;
use crate::nemesis::history::History;
use crate::ops::api::{NodeStatus, ReplicaRole};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(50);
/// A node silent this long counts as not answering.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// What one node said of the leadership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub role: ReplicaRole,
    pub leader: Option<u64>,
    pub ballot: Ballot,
}

/// One poll of one node; `seen` is `None` when it did not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Nanoseconds since the drill began.
    pub time: u64,
    pub node: u64,
    pub seen: Option<Seen>,
}

pub struct Observer {
    pub samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Observer {
    pub fn start(access: &Access, history: Arc<History>) -> Observer {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let tasks = access
            .node_ids()
            .into_iter()
            .map(|id| tokio::spawn(watch(access.clone(), id, history.clone(), samples.clone(), stop.clone())))
            .collect();
        Observer { samples, stop, tasks }
    }

    pub fn snapshot(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops polling; the samples in time order.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
        samples.sort_by_key(|s| (s.time, s.node));
        samples
    }
}

async fn watch(
    access: Access,
    id: u64,
    history: Arc<History>,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
) {
    let mut link = None;
    while !stop.is_cancelled() {
        if link.is_none() {
            link = open_link(&access, id, ANSWER_TIMEOUT).await;
        }
        let seen = match link.as_mut() {
            Some(l) => match ask_within(l, "status --json", ANSWER_TIMEOUT).await {
                Ok(line) => serde_json::from_str::<NodeStatus>(&line).ok(),
                Err(_) => None,
            },
            None => None,
        };
        if seen.is_none() {
            link = None; // a wedged or broken console is never reused
        }
        let seen = seen.map(|s| Seen { role: s.role, leader: s.leader, ballot: s.ballot });
        let time = history.nanos_since_start(std::time::Instant::now());
        samples.lock().unwrap_or_else(|e| e.into_inner()).push(Sample { time, node: id, seen });
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    if let Some(link) = link {
        link.close().await;
    }
}
