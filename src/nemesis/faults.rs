//! The nemesis: faults on a seeded schedule. Each fault is injected, held
//! for a seeded while (a flap toggles its partition a few times), healed,
//! and, one at a time, the nemesis waits (bounded) for the clients' next
//! acknowledged write before the next one. With `overlap` a new fault may
//! start while another is active: at most [`MAX_ACTIVE`] at once, each on
//! its own node, never two wipes, so once they heal a quorum with every
//! acknowledged write is back.

use super::NemesisError;
use super::check::recovery_after;
use super::cluster::LocalCluster;
use super::history::{EventType, F, History, Note, Process};
use crate::consensus::rng::Rng;
use crate::ops::api::{NodeStatus, ReplicaRole};
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio::time::Instant;

/// Longest wait for an acknowledged write after a fault before moving on.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// Most faults active at once with `overlap`: on three nodes two may be
/// down or cut off together; healing both brings the quorum back.
pub const MAX_ACTIVE: usize = 2;
/// The tmpfs a `disk-full` victim's data lives on.
pub const SMALL_DISK_BYTES: u64 = 128 << 20;
/// How long a full disk waits for its node to stop before freeing it.
const DISK_WAIT: Duration = Duration::from_secs(15);
/// How often the schedule looks at the history and the clock.
const TICK: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 a node, restart it after a while.
    Kill,
    /// SIGSTOP the leader, SIGCONT it after a while.
    Pause,
    /// `step-down` on the leader: a leadership transfer.
    Transfer,
    /// The leader's peer traffic dropped both ways, then restored.
    Partition,
    /// The leader's outgoing peer traffic dropped (it still hears the others).
    OneWay,
    /// A partition of the leader cut and restored a few times quickly.
    Flap,
    /// The disk under one node's data fills up: the node must stop rather
    /// than answer; it is restarted once the disk is freed. Needs the right
    /// to mount a tmpfs (root); skipped, and reported so, without it.
    DiskFull,
    /// kill -9 a node, delete its data directory, restart it empty. Opt-in:
    /// a known open defect (an acceptor that forgot its votes may lose
    /// acknowledged writes), never in the default set.
    Wipe,
}

impl FaultKind {
    /// The default set: faults the cluster must survive today.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Transfer,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Flap,
        FaultKind::DiskFull,
    ];
    const KNOWN: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Transfer,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Flap,
        FaultKind::DiskFull,
        FaultKind::Wipe,
    ];

    /// Faults aimed at the current leader.
    fn at_leader(self) -> bool {
        matches!(
            self,
            FaultKind::Pause | FaultKind::Transfer | FaultKind::Partition | FaultKind::OneWay | FaultKind::Flap
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Transfer => "transfer",
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::Flap => "flap",
            FaultKind::DiskFull => "disk-full",
            FaultKind::Wipe => "wipe",
        })
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultKind, String> {
        FaultKind::KNOWN.into_iter().find(|k| k.to_string() == s).ok_or_else(|| {
            format!(
                "unknown fault {s:?}; the faults are kill, pause, transfer, partition, one-way, flap and disk-full, \
                 and wipe (opt-in)"
            )
        })
    }
}

/// One injected fault: when (ns since the run began) and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub node: u64,
    pub time: u64,
    /// Whether another fault was active when this one began.
    pub overlapped: bool,
}

/// Each running, unpaused node's status; `None` for one that did not answer.
pub async fn statuses(cluster: &LocalCluster) -> Vec<(u64, Option<NodeStatus>)> {
    let ids: Vec<u64> =
        cluster.access.node_ids().into_iter().filter(|id| cluster.is_running(*id) && !cluster.is_paused(*id)).collect();
    cluster.access.statuses(&ids, ASK_TIMEOUT).await
}

pub async fn find_leader(cluster: &LocalCluster) -> Option<u64> {
    find_leader_except(cluster, &[]).await
}

/// A node that says it leads, among those not in `except` (a node cut off
/// by a fault may still believe it leads).
async fn find_leader_except(cluster: &LocalCluster, except: &[u64]) -> Option<u64> {
    statuses(cluster)
        .await
        .into_iter()
        .filter(|(id, _)| !except.contains(id))
        .filter_map(|(_, s)| s)
        .find(|s| s.role == ReplicaRole::Leader)
        .map(|s| s.id)
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

pub struct Schedule {
    pub kinds: Vec<FaultKind>,
    /// Mean time between one fault's recovery and the next fault; with
    /// `overlap`, between one fault's start and the next one's.
    pub interval: Duration,
    pub seed: u64,
    /// No fault starts after this, so the last ones heal and writes follow.
    pub quiet_from: Instant,
    /// Active faults are healed by then.
    pub stop_at: Instant,
    /// Whether a fault may start while others are active.
    pub overlap: bool,
}

/// What the nemesis did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub faults: Vec<Fault>,
    /// Observations worth reading (what a full disk did to its node).
    pub notes: Vec<String>,
    /// The most faults active at once.
    pub most_at_once: usize,
}

/// What is left to do for an active fault.
enum Step {
    /// Start the killed or wiped node again.
    Restart,
    /// SIGCONT the paused node.
    Resume,
    /// Cut the node's peer traffic again (a flap).
    Cut,
    /// Clear the node's peer-fault rules.
    Heal,
    /// The disk is full: see whether the node stopped; free the disk.
    DiskWatch { filled: Instant, give_up: Instant },
}

struct Active {
    kind: FaultKind,
    node: u64,
    steps: VecDeque<(Instant, Step)>,
}

/// The rules that cut `node` off from its peers, both ways or outgoing only.
fn cut_rules(cluster: &LocalCluster, node: u64, both: bool) -> String {
    crate::ssh::faults::isolation_rules(cluster.access.node_ids().into_iter().filter(|p| *p != node), both)
}

/// The last line of node `id`'s log that says why storage stopped it.
fn storage_failure_line(cluster: &LocalCluster, id: u64) -> Option<String> {
    let node = cluster.nodes.iter().find(|n| n.id == id)?;
    let log = std::fs::read(&node.log).ok()?;
    let text = String::from_utf8_lossy(&log);
    let line = text.lines().rev().find(|l| l.contains("storage failed"))?;
    // Without the terminal colours tracing may have added.
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    Some(plain.chars().take(400).collect())
}

struct Nemesis<'a> {
    cluster: &'a mut LocalCluster,
    history: &'a History,
    rng: Rng,
    outcome: Outcome,
}

impl Nemesis<'_> {
    fn note(&self, f: F, node: u64, error: Option<String>) -> u64 {
        self.history.record(nemesis_note(f, node, error))
    }

    /// Cuts `node`'s peer traffic; noted when the node did not confirm it
    /// within a second (the fault then counts from the note on).
    async fn cut(&mut self, node: u64, rules: &str) -> Result<Option<String>, NemesisError> {
        let confirmed = self.cluster.set_peer_faults_confirmed(node, rules, Duration::from_secs(1)).await?;
        Ok((!confirmed).then(|| "the node did not log the rules within 1 s".to_owned()))
    }

    /// Starts a fault of `kind` on a node outside `busy`; `None` when none
    /// fits right now (no leader, the disk's node busy, a step-down refused).
    async fn inject(
        &mut self,
        kind: FaultKind,
        busy: &[u64],
        stop_at: Instant,
    ) -> Result<Option<Active>, NemesisError> {
        let free: Vec<u64> = self.cluster.access.node_ids().into_iter().filter(|n| !busy.contains(n)).collect();
        if free.is_empty() {
            return Ok(None);
        }
        let held = Duration::from_millis(self.rng.between(500, 3000));
        let node = if kind.at_leader() {
            match find_leader_except(self.cluster, busy).await {
                Some(leader) => leader,
                None => return Ok(None),
            }
        } else if kind == FaultKind::DiskFull {
            match self.cluster.disk.as_ref().map(|d| d.node) {
                Some(node) if free.contains(&node) && self.cluster.is_running(node) => node,
                _ => return Ok(None),
            }
        } else {
            free[self.rng.between(0, free.len() as u64 - 1) as usize]
        };
        let now = Instant::now();
        let mut steps = VecDeque::new();
        let time;
        match kind {
            FaultKind::Kill => {
                time = self.note(F::Kill, node, None);
                self.cluster.kill(node)?;
                steps.push_back((now + held, Step::Restart));
            }
            FaultKind::Wipe => {
                time = self.note(F::Wipe, node, None);
                self.cluster.kill(node)?;
                self.cluster.wipe(node)?;
                steps.push_back((now + held, Step::Restart));
            }
            FaultKind::Pause => {
                time = self.note(F::Pause, node, None);
                self.cluster.pause(node)?;
                steps.push_back((now + held, Step::Resume));
            }
            FaultKind::Partition | FaultKind::OneWay => {
                let both = kind == FaultKind::Partition;
                let rules = cut_rules(self.cluster, node, both);
                let error = self.cut(node, &rules).await?;
                time = self.note(if both { F::Partition } else { F::OneWay }, node, error);
                steps.push_back((now + held, Step::Heal));
            }
            FaultKind::Flap => {
                let error = self.cut(node, &cut_rules(self.cluster, node, true)).await?;
                time = self.note(F::Flap, node, error);
                let mut at = now;
                for cycle in 0..self.rng.between(3, 5) {
                    if cycle > 0 {
                        steps.push_back((at, Step::Cut));
                    }
                    at += Duration::from_millis(self.rng.between(200, 800));
                    steps.push_back((at, Step::Heal));
                    at += Duration::from_millis(self.rng.between(100, 500));
                }
            }
            FaultKind::DiskFull => {
                time = self.note(F::DiskFull, node, None);
                if let Err(e) = self.cluster.fill_disk() {
                    self.cluster.free_disk().map_err(NemesisError::Setup)?;
                    return Err(NemesisError::Setup(format!("disk-full on node {node}: {e}")));
                }
                let filled = Instant::now();
                steps.push_back((filled, Step::DiskWatch { filled, give_up: filled + DISK_WAIT }));
            }
            FaultKind::Transfer => {
                time = self.history.nanos_since_start(now.into_std());
                let answer = self.cluster.access.run(node, "step-down --json", Duration::from_secs(10)).await;
                let note = nemesis_note(F::Transfer, node, None);
                match answer {
                    Ok((0, out)) => {
                        self.history.record(Note { result: serde_json::from_str(&out).ok(), ..note });
                    }
                    Ok((code, out)) => {
                        self.history.record(Note { error: Some(format!("exit {code}: {}", out.trim())), ..note });
                        return Ok(None);
                    }
                    Err(e) => {
                        self.history.record(Note { error: Some(e), ..note });
                        return Ok(None);
                    }
                }
                self.outcome.faults.push(Fault { kind, node, time, overlapped: !busy.is_empty() });
                return Ok(Some(Active { kind, node, steps }));
            }
        }
        for (at, _) in &mut steps {
            *at = (*at).min(stop_at);
        }
        self.outcome.faults.push(Fault { kind, node, time, overlapped: !busy.is_empty() });
        Ok(Some(Active { kind, node, steps }))
    }

    /// Runs one step; `Some` puts a step back to run again.
    fn step(&mut self, node: u64, step: Step, stopping: bool) -> Result<Option<(Instant, Step)>, NemesisError> {
        match step {
            Step::Restart => {
                self.cluster.spawn(node)?;
                self.note(F::Restart, node, None);
            }
            Step::Resume => {
                self.cluster.resume(node)?;
                self.note(F::Resume, node, None);
            }
            Step::Cut => {
                self.cluster.set_peer_faults(node, &cut_rules(self.cluster, node, true))?;
                self.note(F::Partition, node, None);
            }
            Step::Heal => {
                self.cluster.set_peer_faults(node, "")?;
                self.note(F::Heal, node, None);
            }
            Step::DiskWatch { filled, give_up } => {
                let status = self.cluster.try_exit_status(node);
                if status.is_none() && !stopping && Instant::now() < give_up {
                    return Ok(Some((Instant::now() + Duration::from_millis(50), Step::DiskWatch { filled, give_up })));
                }
                self.cluster.free_disk().map_err(NemesisError::Setup)?;
                self.note(F::DiskFreed, node, None);
                let after = filled.elapsed().as_secs_f64();
                let observed = match status {
                    Some(status) => {
                        let why = storage_failure_line(self.cluster, node)
                            .map_or_else(|| "no storage error in its log".to_owned(), |l| format!("log: {l}"));
                        self.cluster.spawn(node)?;
                        self.note(F::Restart, node, None);
                        format!("node {node} stopped {after:.2} s after its disk filled ({status}), restarted; {why}")
                    }
                    None => format!("node {node} kept running for {after:.2} s with a full disk, until it was freed"),
                };
                self.outcome.notes.push(format!("disk-full: {observed}"));
            }
        }
        Ok(None)
    }
}

/// Runs the schedule; returns what was injected and observed. Every node
/// runs unpaused, with no peer faults and a free disk, when it returns.
pub async fn run(cluster: &mut LocalCluster, history: &History, schedule: &Schedule) -> Result<Outcome, NemesisError> {
    let mut nemesis = Nemesis { cluster, history, rng: Rng::new(schedule.seed), outcome: Outcome::default() };
    let result = drive(&mut nemesis, schedule).await;
    nemesis.cluster.heal()?;
    result.map(|()| nemesis.outcome)
}

async fn drive(nemesis: &mut Nemesis<'_>, schedule: &Schedule) -> Result<(), NemesisError> {
    let ms = schedule.interval.as_millis() as u64;
    let wait = |rng: &mut Rng| Duration::from_millis(rng.between(ms / 2, ms + ms / 2));
    let limit = if schedule.overlap { MAX_ACTIVE } else { 1 };
    let mut active: Vec<Active> = Vec::new();
    let mut next_start = Instant::now() + wait(&mut nemesis.rng);
    // One at a time: the fault to see a write acknowledged after, and until when.
    let mut gate: Option<(u64, Instant)> = None;
    let mut round = 0;
    loop {
        let now = Instant::now();
        let stopping = now >= schedule.stop_at;
        // Steps that are due (all of them once the run is over).
        for fault in &mut active {
            while let Some((at, _)) = fault.steps.front() {
                if *at > now && !stopping {
                    break;
                }
                let Some((_, step)) = fault.steps.pop_front() else { break };
                if let Some(again) = nemesis.step(fault.node, step, stopping)? {
                    fault.steps.push_front(again);
                    break;
                }
            }
        }
        active.retain(|a| {
            if a.steps.is_empty() && !schedule.overlap {
                let time = nemesis.outcome.faults.last().map_or(0, |f| f.time);
                gate = Some((time, (now + RECOVERY_LIMIT).min(schedule.stop_at)));
            }
            !a.steps.is_empty()
        });
        if stopping && active.is_empty() {
            return Ok(());
        }
        if let Some((time, until)) = gate
            && (now >= until || recovery_after(&nemesis.history.snapshot(), time).is_some())
        {
            gate = None;
            next_start = now + wait(&mut nemesis.rng);
        }
        let may_start = now < schedule.quiet_from
            && gate.is_none()
            && now >= next_start
            && active.len() < limit
            && !schedule.kinds.is_empty();
        if may_start {
            // Each kind once first, then at random.
            let kind = match schedule.kinds.get(round) {
                Some(kind) => *kind,
                None => schedule.kinds[nemesis.rng.between(0, schedule.kinds.len() as u64 - 1) as usize],
            };
            let busy: Vec<u64> = active.iter().map(|a| a.node).collect();
            let two_wipes = kind == FaultKind::Wipe && active.iter().any(|a| a.kind == FaultKind::Wipe);
            let started = if two_wipes { None } else { nemesis.inject(kind, &busy, schedule.stop_at).await? };
            match started {
                Some(fault) => {
                    round += 1;
                    if fault.steps.is_empty() {
                        // Instant (a step-down): nothing to heal.
                        if !schedule.overlap {
                            let time = nemesis.outcome.faults.last().map_or(0, |f| f.time);
                            gate = Some((time, (Instant::now() + RECOVERY_LIMIT).min(schedule.stop_at)));
                        }
                    } else {
                        active.push(fault);
                    }
                    nemesis.outcome.most_at_once = nemesis.outcome.most_at_once.max(active.len().max(1));
                    next_start =
                        if schedule.overlap { Instant::now() + wait(&mut nemesis.rng) } else { schedule.stop_at };
                }
                // Nothing fits right now: try again shortly.
                None => next_start = Instant::now() + Duration::from_millis(200),
            }
        }
        let next_step = active.iter().filter_map(|a| a.steps.front().map(|(at, _)| *at)).min();
        let mut wake = (Instant::now() + TICK).min(schedule.stop_at.max(Instant::now()));
        if let Some(at) = next_step {
            wake = wake.min(at);
        }
        if gate.is_none() && active.len() < limit {
            wake = wake.min(next_start.max(Instant::now()));
        }
        tokio::time::sleep_until(wake).await;
    }
}
