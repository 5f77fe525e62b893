//! The nemesis: faults on a seeded schedule, one at a time. Each fault is
//! injected, held for a seeded while, healed, and then the nemesis waits
//! (bounded) for the clients' next acknowledged write before the next one.

use super::NemesisError;
use super::check::recovery_after;
use super::cluster::LocalCluster;
use super::history::{EventType, F, History, Note, Process};
use crate::consensus::rng::Rng;
use crate::ops::api::{NodeStatus, ReplicaRole};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio::time::Instant;

/// Longest wait for an acknowledged write after a fault before moving on.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 a node, restart it after a while.
    Kill,
    /// SIGSTOP the leader, SIGCONT it after a while.
    Pause,
    /// `step-down` on the leader: a leadership transfer.
    Transfer,
    /// kill -9 a node, delete its data directory, restart it empty. Opt-in:
    /// a known open defect (an acceptor that forgot its votes may lose
    /// acknowledged writes), never in the default set.
    Wipe,
}

impl FaultKind {
    /// The default set: faults the cluster must survive today.
    pub const ALL: [FaultKind; 3] = [FaultKind::Kill, FaultKind::Pause, FaultKind::Transfer];
    const KNOWN: [FaultKind; 4] = [FaultKind::Kill, FaultKind::Pause, FaultKind::Transfer, FaultKind::Wipe];
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Transfer => "transfer",
            FaultKind::Wipe => "wipe",
        })
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultKind, String> {
        FaultKind::KNOWN
            .into_iter()
            .find(|k| k.to_string() == s)
            .ok_or_else(|| format!("unknown fault {s:?}; the faults are kill, pause and transfer, and wipe (opt-in)"))
    }
}

/// One injected fault: when (ns since the run began) and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub node: u64,
    pub time: u64,
}

/// Each running, unpaused node's status; `None` for one that did not answer.
pub async fn statuses(cluster: &LocalCluster) -> Vec<(u64, Option<NodeStatus>)> {
    let ids: Vec<u64> =
        cluster.access.node_ids().into_iter().filter(|id| cluster.is_running(*id) && !cluster.is_paused(*id)).collect();
    let asks = ids.into_iter().map(|id| async move {
        let answer = cluster.access.run(id, "status --json", ASK_TIMEOUT).await;
        (id, answer.ok().and_then(|(_, out)| serde_json::from_str::<NodeStatus>(&out).ok()))
    });
    futures::future::join_all(asks).await
}

pub async fn find_leader(cluster: &LocalCluster) -> Option<u64> {
    statuses(cluster).await.into_iter().filter_map(|(_, s)| s).find(|s| s.role == ReplicaRole::Leader).map(|s| s.id)
}

/// Polls for a leader until `within` has passed.
pub async fn wait_for_leader(cluster: &LocalCluster, within: Duration) -> Option<u64> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(leader) = find_leader(cluster).await {
            return Some(leader);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn nemesis_note(f: F, node: u64, error: Option<String>) -> Note {
    let kind = EventType::Info;
    Note {
        process: Process::Nemesis("nemesis".into()),
        kind,
        f,
        key: None,
        value: node.into(),
        result: None,
        node: Some(node),
        error,
    }
}

/// Sleeps up to `d`, never past `until`.
async fn hold(d: Duration, until: Instant) {
    tokio::time::sleep_until((Instant::now() + d).min(until)).await;
}

pub struct Schedule {
    pub kinds: Vec<FaultKind>,
    /// Mean time between one fault's recovery and the next fault.
    pub interval: Duration,
    pub seed: u64,
    /// No fault starts after this.
    pub stop_at: Instant,
}

/// Runs the schedule; returns the faults injected. Every node runs unpaused when it returns.
pub async fn run(
    cluster: &mut LocalCluster,
    history: &History,
    schedule: &Schedule,
) -> Result<Vec<Fault>, NemesisError> {
    let mut rng = Rng::new(schedule.seed);
    let mut faults = Vec::new();
    let ms = schedule.interval.as_millis() as u64;
    let mut round = 0;
    while !schedule.kinds.is_empty() {
        let wait = Duration::from_millis(rng.between(ms / 2, ms + ms / 2));
        if Instant::now() + wait >= schedule.stop_at {
            break;
        }
        tokio::time::sleep(wait).await;
        // Each kind once first, then at random.
        let kind = match schedule.kinds.get(round) {
            Some(kind) => *kind,
            None => schedule.kinds[rng.between(0, schedule.kinds.len() as u64 - 1) as usize],
        };
        let held = Duration::from_millis(rng.between(500, 3000));
        let nodes = cluster.access.node_ids();
        let leader = find_leader(cluster).await;
        let fault = match (kind, leader) {
            (FaultKind::Kill, _) => {
                let node = nodes[rng.between(0, nodes.len() as u64 - 1) as usize];
                let time = history.record(nemesis_note(F::Kill, node, None));
                cluster.kill(node)?;
                hold(held, schedule.stop_at).await;
                cluster.spawn(node)?;
                history.record(nemesis_note(F::Restart, node, None));
                Some(Fault { kind, node, time })
            }
            (FaultKind::Wipe, _) => {
                let node = nodes[rng.between(0, nodes.len() as u64 - 1) as usize];
                let time = history.record(nemesis_note(F::Wipe, node, None));
                cluster.kill(node)?;
                cluster.wipe(node)?;
                hold(held, schedule.stop_at).await;
                cluster.spawn(node)?;
                history.record(nemesis_note(F::Restart, node, None));
                Some(Fault { kind, node, time })
            }
            (FaultKind::Pause, Some(node)) => {
                let time = history.record(nemesis_note(F::Pause, node, None));
                cluster.pause(node)?;
                hold(held, schedule.stop_at).await;
                cluster.resume(node)?;
                history.record(nemesis_note(F::Resume, node, None));
                Some(Fault { kind, node, time })
            }
            (FaultKind::Transfer, Some(node)) => {
                let time = history.nanos_since_start(Instant::now().into_std());
                match cluster.access.run(node, "step-down --json", Duration::from_secs(10)).await {
                    Ok((0, out)) => {
                        history.record(Note {
                            result: serde_json::from_str(&out).ok(),
                            ..nemesis_note(F::Transfer, node, None)
                        });
                        Some(Fault { kind, node, time })
                    }
                    Ok((code, out)) => {
                        history.record(nemesis_note(F::Transfer, node, Some(format!("exit {code}: {}", out.trim()))));
                        None
                    }
                    Err(e) => {
                        history.record(nemesis_note(F::Transfer, node, Some(e)));
                        None
                    }
                }
            }
            // No leader to pause or move right now: try again next round.
            (_, None) => None,
        };
        let Some(fault) = fault else { continue };
        round += 1;
        let time = fault.time;
        faults.push(fault);
        let until = (Instant::now() + RECOVERY_LIMIT).min(schedule.stop_at);
        while Instant::now() < until && recovery_after(&history.snapshot(), time).is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    cluster.heal()?;
    Ok(faults)
}
