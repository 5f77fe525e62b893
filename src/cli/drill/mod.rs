//! `paxos drill`: a failover drill against a live cluster from the
//! inventory. Clients write (and read) continuously through real consoles,
//! recording a history; the drill finds the leader, applies the fault to
//! it (a leadership transfer, SIGKILL, SIGSTOP, or cutting its peer
//! traffic), watches every node's view of the leadership, undoes the
//! fault, and reports how long the cluster took to notice and to write
//! again, the longest stretch without a write, the leaders, and two
//! checks: the nodes' logs agree, and every acknowledged write survived
//! (every key read back, the history linearizable). Every drill ends by
//! its deadline.

mod fault;
mod observe;
mod process;
mod report;
mod svg;

use super::remote::Target;
use crate::nemesis::client::{self, Shared};
use crate::nemesis::cluster::Access;
use crate::nemesis::history::History;
use crate::nemesis::{check, finish};
use crate::ops::api::{NodeStatus, ReplicaRole};
use crate::ops::health::EXIT_UNHEALTHY;
use crate::ops::{EXIT_OK, EXIT_USAGE};
use clap::{Args, ValueEnum};
use fault::{Method, Templates, check_template};
use observe::Observer;
use process::is_loopback;
use report::{Drill, acknowledged_writes, ms};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const MAX_REPEAT: u32 = 100;
const MAX_SECS: u64 = 3600;
const MAX_CLIENTS: u64 = 32;
/// Kept at the end of each drill for the read-back and the log comparison.
const FINISH: Duration = Duration::from_secs(20);
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the cluster may take to be healthy before a drill.
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);
/// Keys the drill's clients share: `drill-RUN-k0` ..
const KEYS: u64 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `step-down` on the leader: a planned leadership transfer.
    Transfer,
    /// SIGKILL the leader (or --kill-cmd), restart it after --hold.
    KillLeader,
    /// SIGSTOP the leader (or --stop-cmd), SIGCONT it after --hold.
    StopLeader,
    /// Cut the leader's peer traffic both ways (or --partition-cmd), heal it after --hold.
    PartitionLeader,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
        f.write_str(&value)
    }
}

#[derive(Args, Debug)]
#[command(after_help = "How faults are applied: `transfer` runs `step-down` on the leader. On a node of this machine \
    (a loopback address, a `paxos serve` process of this user, as `paxos up` starts them) the drill signals the \
    process (SIGKILL, then starts the same command again; SIGSTOP/SIGCONT) or writes its peer-fault file. Elsewhere \
    each fault is a command template, from the flags or the inventory vars paxos_drill_kill_cmd, \
    paxos_drill_restore_cmd, paxos_drill_stop_cmd, paxos_drill_cont_cmd, paxos_drill_partition_cmd and \
    paxos_drill_heal_cmd; {host} {name} {id} {addr} are replaced by the leader's values, shell-quoted, and the \
    command runs with `sh -c`, e.g. --kill-cmd 'ssh {host} sudo systemctl kill -s KILL paxos' \
    --restore-cmd 'ssh {host} sudo systemctl start paxos'.\n\n\
    Exit status: 0 when every check of every drill passed; 5 when a check failed (as `paxos health`), the report \
    says which; 2 for bad arguments or a fault the drill cannot apply to some node; 1 when the cluster could not be \
    drilled at all (unreachable, no leader).")]
pub struct DrillArgs {
    /// The fault to apply to the current leader.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Write the drill as an SVG timeline (with --repeat, FILE-1.svg, FILE-2.svg, ...).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Run N drills, waiting for a healthy cluster between them; prints min/median/max of each figure.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u32,
    /// One JSON document: every drill's record and the summary.
    #[arg(long)]
    pub json: bool,
    /// The most one drill may take, load, fault, recovery and checks included.
    #[arg(long, value_name = "SECS", default_value_t = 90)]
    pub deadline: u64,
    /// Seconds of load before the fault.
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub before: u64,
    /// Seconds the fault lasts before it is undone (not for transfer).
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub hold: u64,
    /// Seconds of load after the cluster has recovered.
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub after: u64,
    /// Concurrent clients, each with its own SSH console.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub clients: u64,
    /// The most a fault command may run.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub cmd_timeout: u64,
    /// Command that kills the daemon on a host (kill-leader).
    #[arg(long, value_name = "CMD")]
    pub kill_cmd: Option<String>,
    /// Command that starts it again.
    #[arg(long, value_name = "CMD")]
    pub restore_cmd: Option<String>,
    /// Command that stops (freezes) it (stop-leader).
    #[arg(long, value_name = "CMD")]
    pub stop_cmd: Option<String>,
    /// Command that lets it run again.
    #[arg(long, value_name = "CMD")]
    pub cont_cmd: Option<String>,
    /// Command that cuts the host off from its peers (partition-leader).
    #[arg(long, value_name = "CMD")]
    pub partition_cmd: Option<String>,
    /// Command that heals the partition.
    #[arg(long, value_name = "CMD")]
    pub heal_cmd: Option<String>,
}

/// Validated parameters of the drills.
#[derive(Clone, Debug)]
pub struct Plan {
    pub kind: Kind,
    pub svg: Option<PathBuf>,
    pub repeat: u32,
    pub json: bool,
    pub deadline: Duration,
    pub before: Duration,
    pub hold: Duration,
    pub after: Duration,
    pub clients: u64,
    pub cmd_timeout: Duration,
    /// Templates from the flags, by name ("kill", "restore", ...).
    pub flags: BTreeMap<&'static str, String>,
}

impl DrillArgs {
    pub fn plan(&self) -> Result<Plan, String> {
        if self.repeat == 0 || self.repeat > MAX_REPEAT {
            return Err(format!("--repeat must be 1 to {MAX_REPEAT}"));
        }
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(format!("--clients must be 1 to {MAX_CLIENTS}"));
        }
        for (name, secs) in [("--deadline", self.deadline), ("--cmd-timeout", self.cmd_timeout)] {
            if secs == 0 || secs > MAX_SECS {
                return Err(format!("{name} must be 1 to {MAX_SECS} seconds"));
            }
        }
        let busy = self.before.saturating_add(self.hold).saturating_add(self.after);
        if busy.saturating_add(FINISH.as_secs()) >= self.deadline {
            return Err(format!(
                "--deadline {} s leaves no time to recover and check: it must exceed --before + --hold + --after \
                 ({busy} s) + {} s",
                self.deadline,
                FINISH.as_secs()
            ));
        }
        let given = [
            ("kill", &self.kill_cmd),
            ("restore", &self.restore_cmd),
            ("stop", &self.stop_cmd),
            ("cont", &self.cont_cmd),
            ("partition", &self.partition_cmd),
            ("heal", &self.heal_cmd),
        ];
        let mut flags = BTreeMap::new();
        for (name, value) in given {
            if let Some(template) = value {
                check_template(template).map_err(|e| format!("--{name}-cmd {e}"))?;
                flags.insert(name, template.clone());
            }
        }
        // A fault given without what undoes it (or the other way round) is refused up front.
        for (fault, restore) in [("kill", "restore"), ("stop", "cont"), ("partition", "heal")] {
            match (flags.contains_key(fault), flags.contains_key(restore)) {
                (true, false) => {
                    return Err(format!("--{fault}-cmd needs --{restore}-cmd: the drill must undo its fault"));
                }
                (false, true) => return Err(format!("--{restore}-cmd needs --{fault}-cmd")),
                _ => {}
            }
        }
        if self.kind == Kind::Transfer && !flags.is_empty() {
            return Err("a transfer runs `step-down`; it takes no fault commands".into());
        }
        Ok(Plan {
            kind: self.kind,
            svg: self.svg.clone(),
            repeat: self.repeat,
            json: self.json,
            deadline: Duration::from_secs(self.deadline),
            before: Duration::from_secs(self.before),
            hold: Duration::from_secs(self.hold),
            after: Duration::from_secs(self.after),
            clients: self.clients,
            cmd_timeout: Duration::from_secs(self.cmd_timeout),
            flags,
        })
    }
}

/// 0 when every drill passed, `EXIT_UNHEALTHY` otherwise.
pub fn exit_code(drills: &[Drill]) -> u8 {
    if drills.iter().all(|d| d.passed) { EXIT_OK as u8 } else { EXIT_UNHEALTHY as u8 }
}

/// Where drill `number`'s SVG goes.
fn svg_path(path: &Path, number: u32, repeat: u32) -> PathBuf {
    if repeat == 1 {
        return path.to_owned();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "drill".into());
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    path.with_file_name(format!("{stem}-{number}{ext}"))
}

pub async fn run(cluster: &Path, identity: &Path, args: DrillArgs) -> anyhow::Result<u8> {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("paxos: drill: {e}");
            return Ok(EXIT_USAGE as u8);
        }
    };
    let target = Target::load(cluster, identity)?;
    let inventory = target.inventory.drill_settings()?;
    for (id, settings) in &inventory {
        for (name, template) in settings {
            if let Err(e) = check_template(template) {
                eprintln!("paxos: drill: node {id} {name}: {e}");
                return Ok(EXIT_USAGE as u8);
            }
        }
    }
    let templates = Templates { flags: plan.flags.clone(), inventory };
    let access = Access { inventory: target.inventory.clone(), identity: target.identity.clone() };
    // A node on another machine needs its templates; say so before connecting to anything.
    for node in access.inventory.nodes.iter().filter(|n| !is_loopback(&n.host)) {
        if let Err(e) = Method::resolve(plan.kind, node, None, &templates) {
            eprintln!("paxos: drill: {e}");
            return Ok(EXIT_USAGE as u8);
        }
    }
    // Each node must be drillable, whichever leads when its turn comes.
    let statuses = match wait_healthy(&access).await {
        Ok(statuses) => statuses,
        Err(e) => {
            eprintln!("paxos: drill: the cluster is not healthy, so no drill was run: {e}");
            return Ok(1);
        }
    };
    for node in &access.inventory.nodes {
        let status = statuses.iter().find(|(id, _)| *id == node.id).and_then(|(_, s)| s.as_ref());
        if let Err(e) = Method::resolve(plan.kind, node, status, &templates) {
            eprintln!("paxos: drill: {e}");
            return Ok(EXIT_USAGE as u8);
        }
    }
    let mut drills = Vec::new();
    for number in 1..=plan.repeat {
        if number > 1
            && let Err(e) = wait_healthy(&access).await
        {
            eprintln!("paxos: drill: the cluster did not become healthy again after drill {}: {e}", number - 1);
            break;
        }
        let mut drill = match one(&access, &plan, &templates, number).await {
            Ok(drill) => drill,
            Err(e) => {
                eprintln!("paxos: drill {number}: {e}");
                return Ok(1);
            }
        };
        if let Some(path) = &plan.svg {
            let path = svg_path(path, number, plan.repeat);
            std::fs::write(&path, svg::render(&drill))
                .map_err(|e| anyhow::anyhow!("writing the timeline {}: {e}", path.display()))?;
            drill.svg = Some(path.display().to_string());
        }
        if !plan.json {
            print!("{}", drill.text(plan.repeat));
            if let Some(path) = &drill.svg {
                println!("  timeline          {path}");
            }
        }
        drills.push(drill);
    }
    let summary = report::summary(&drills);
    if plan.json {
        let passed = drills.len() == plan.repeat as usize && drills.iter().all(|d| d.passed);
        let doc = serde_json::json!({"drills": drills, "summary": summary, "passed": passed});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if plan.repeat > 1 {
        print!("{}", summary.text());
    }
    if drills.len() < plan.repeat as usize {
        return Ok(EXIT_UNHEALTHY as u8);
    }
    Ok(exit_code(&drills))
}

/// Waits (bounded) until every node answers and all name the same leader,
/// which says it leads; the statuses then.
async fn wait_healthy(access: &Access) -> Result<Vec<(u64, Option<NodeStatus>)>, String> {
    let until = Instant::now() + HEALTHY_WITHIN;
    loop {
        let statuses = access.statuses(&access.node_ids(), STATUS_TIMEOUT).await;
        let silent: Vec<String> =
            statuses.iter().filter(|(_, s)| s.is_none()).map(|(id, _)| format!("node {id} does not answer")).collect();
        let leaders: std::collections::BTreeSet<Option<u64>> =
            statuses.iter().filter_map(|(_, s)| s.as_ref().map(|s| s.leader)).collect();
        let leading = statuses.iter().filter_map(|(_, s)| s.as_ref()).any(|s| s.role == ReplicaRole::Leader);
        if silent.is_empty() && leaders.len() == 1 && !leaders.contains(&None) && leading {
            return Ok(statuses);
        }
        if Instant::now() >= until {
            let mut why = silent;
            if leaders.len() != 1 || leaders.contains(&None) || !leading {
                why.push(format!("the nodes name leaders {leaders:?}"));
            }
            return Err(format!("after {} s: {}", HEALTHY_WITHIN.as_secs(), why.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sleeps until `at`; `true` when Ctrl-C came first.
async fn sleep_or_interrupt(at: Instant) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(at) => false,
        _ = tokio::signal::ctrl_c() => true,
    }
}

/// One drill, from the leader's status to the checks.
async fn one(access: &Access, plan: &Plan, templates: &Templates, number: u32) -> Result<Drill, String> {
    let began = Instant::now();
    let deadline = began + plan.deadline;
    let load_until = deadline - FINISH;
    let ids = access.node_ids();
    let statuses = access.statuses(&ids, STATUS_TIMEOUT).await;
    let leader = statuses
        .iter()
        .filter_map(|(_, s)| s.as_ref())
        .filter(|s| s.role == ReplicaRole::Leader)
        .max_by_key(|s| s.ballot)
        .ok_or("no node leads")?;
    let old = leader.id;
    // The drill's slots: the logs are compared from the lowest commit index on.
    let from_slot = statuses.iter().filter_map(|(_, s)| s.as_ref().map(|s| s.commit_index)).min().unwrap_or(0);
    let node = access.inventory.node(old).ok_or_else(|| format!("the leader, node {old}, is not in the inventory"))?;
    let method = Method::resolve(plan.kind, node, Some(leader), templates)?;

    let history = Arc::new(History::new(began.into_std()));
    let observer = Observer::start(access, history.clone());
    let stop = CancellationToken::new();
    let prefix = format!("drill-{:08x}-k", rand::random::<u32>());
    let shared = Arc::new(Shared {
        access: access.clone(),
        history: history.clone(),
        keys: KEYS,
        key_prefix: prefix.clone(),
        clients: plan.clients,
        client_base: (rand::random::<u64>() >> 24) << 20,
        stop_at: load_until,
        stop: stop.clone(),
        give_up_at: load_until,
    });
    let seed = rand::random::<u64>();
    let tasks: Vec<_> = (0..plan.clients)
        .map(|slot| tokio::spawn(client::run(shared.clone(), slot, seed.wrapping_add(slot.wrapping_mul(0x9E37_79B9)))))
        .collect();

    // Warm-up: `before`, and at least one acknowledged write.
    let mut interrupted = sleep_or_interrupt((began + plan.before).min(load_until)).await;
    while !interrupted && Instant::now() < load_until && acknowledged_writes(&history.snapshot()).is_empty() {
        interrupted = sleep_or_interrupt(Instant::now() + Duration::from_millis(50)).await;
    }
    let peers: Vec<u64> = ids.iter().copied().filter(|id| *id != old).collect();
    let fault_at = history.nanos_since_start(std::time::Instant::now());
    let fault_error = if interrupted {
        Some("interrupted".to_owned())
    } else {
        method.apply(plan.kind, access, old, &peers, plan.cmd_timeout).await.err()
    };
    let (mut restored_at, mut restarted_pid, mut restore_error) = (None, None, None);
    if fault_error.is_none() && plan.kind != Kind::Transfer {
        interrupted = sleep_or_interrupt((Instant::now() + plan.hold).min(load_until)).await;
        match method.restore(plan.kind, plan.cmd_timeout).await {
            Ok(pid) => {
                restored_at = Some(history.nanos_since_start(std::time::Instant::now()));
                restarted_pid = pid;
            }
            Err(e) => restore_error = Some(e),
        }
    }
    // Recovery: a new leader with a write acknowledged under it, then `after` more of the load.
    // (Nothing to wait for when the fault was never applied.)
    while !interrupted
        && fault_error.is_none()
        && Instant::now() < load_until
        && report::elected(&observer.snapshot(), &acknowledged_writes(&history.snapshot()), fault_at, old).is_none()
    {
        interrupted = sleep_or_interrupt(Instant::now() + Duration::from_millis(100)).await;
    }
    if !interrupted {
        sleep_or_interrupt((Instant::now() + plan.after).min(load_until)).await;
    }
    stop.cancel();
    let load_end = history.nanos_since_start(std::time::Instant::now());
    for task in tasks {
        task.await.map_err(|e| format!("a client task failed: {e}"))?;
    }
    let samples = observer.finish().await;

    // Checks: every key read back, the history linearizable, the logs alike.
    let first_process = finish::next_process(&history.snapshot());
    let unread = finish::final_reads(access, &history, &prefix, KEYS, first_process, deadline).await;
    let mut log_problems = Vec::new();
    if !finish::wait_converged(access, deadline).await {
        log_problems.push("the nodes did not reach the same applied index by the deadline".to_owned());
    }
    let mut logs = BTreeMap::new();
    for id in &ids {
        match finish::read_log(access, *id, from_slot).await {
            Ok(log) => {
                logs.insert(*id, log);
            }
            Err(e) => log_problems.push(format!("cannot compare logs: {e}")),
        }
    }
    let (slots_compared, disagreements) = check::log_disagreements(&logs);
    log_problems.extend(disagreements);
    let events = history.snapshot();
    let mut lost_writes: Vec<String> =
        unread.iter().map(|k| format!("key {k} could not be read back after the drill")).collect();
    if let Err(e) = check::linearizable(&events) {
        lost_writes.push(e);
    }

    let load: Vec<_> = events.iter().filter(|e| e.time <= load_end).cloned().collect();
    let writes = acknowledged_writes(&load);
    let spans = report::leader_spans(&samples, load_end);
    let detected = report::detected(&samples, fault_at, old);
    let elected = report::elected(&samples, &writes, fault_at, old);
    let gap = report::longest_gap(&writes, load_end);
    let mut drill = Drill {
        number,
        kind: plan.kind,
        method: method.describe(),
        old_leader: old,
        new_leader: elected.map(|(n, _, _)| n).or_else(|| spans.iter().filter_map(|s| s.leader).find(|n| *n != old)),
        leader_changes: report::leader_changes(&spans),
        detect_ms: detected.map(|(t, _)| ms(t - fault_at)),
        detected_by: detected.map(|(_, n)| n),
        elect_ms: elected.map(|(_, _, t)| ms(t - fault_at)),
        longest_write_gap_ms: ms(gap.0),
        fault_at_ms: ms(fault_at),
        restored_at_ms: restored_at.map(ms),
        restarted_pid,
        fault_error,
        restore_error,
        counts: report::counts(&load),
        logs_agree: log_problems.is_empty(),
        slots_compared,
        log_problems,
        writes_survived: lost_writes.is_empty(),
        keys_read_back: KEYS - unread.len() as u64,
        lost_writes,
        duration_ms: ms(began.elapsed().as_nanos() as u64),
        problems: Vec::new(),
        passed: false,
        svg: None,
        timeline: report::Timeline {
            end: load_end,
            errors: report::errors(&load),
            writes,
            spans,
            fault: fault_at,
            restored: restored_at,
            detected: detected.map(|(t, _)| t),
            elected: elected.map(|(_, _, t)| t),
            gap,
        },
    };
    drill.settle();
    if interrupted {
        drill.problems.push("interrupted (Ctrl-C); the fault was undone".into());
        drill.passed = false;
    }
    Ok(drill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DrillArgs,
    }

    fn plan(words: &[&str]) -> Result<Plan, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("drill").chain(words.iter().copied())).map_err(|e| e.to_string())?;
        cli.args.plan()
    }

    #[test]
    fn arguments_are_checked_before_anything_runs() {
        let p = plan(&["--kind", "kill-leader"]).unwrap();
        assert_eq!((p.kind, p.repeat, p.deadline.as_secs()), (Kind::KillLeader, 1, 90));
        assert!(plan(&["--kind", "reboot"]).unwrap_err().contains("invalid value 'reboot'"));
        assert!(plan(&["--kind", "transfer", "--repeat", "0"]).unwrap_err().contains("--repeat must be 1 to 100"));
        assert!(plan(&["--kind", "transfer", "--deadline", "10"]).unwrap_err().contains("--deadline 10 s"));
        let e = plan(&["--kind", "kill-leader", "--kill-cmd", "ssh {host} kill"]).unwrap_err();
        assert!(e.contains("--kill-cmd needs --restore-cmd"), "{e}");
        let e = plan(&["--kind", "stop-leader", "--stop-cmd", "ssh {hots}", "--cont-cmd", "x"]).unwrap_err();
        assert!(e.contains("unknown placeholder {hots}"), "{e}");
        assert!(
            plan(&["--kind", "transfer", "--heal-cmd", "x", "--partition-cmd", "y"]).unwrap_err().contains("transfer")
        );
        let p = plan(&["--kind", "partition-leader", "--partition-cmd", "a {id}", "--heal-cmd", "b {addr}"]).unwrap();
        assert_eq!(p.flags.len(), 2);
        assert_eq!(Kind::PartitionLeader.to_string(), "partition-leader");
        assert_eq!(serde_json::to_value(Kind::KillLeader).unwrap(), "kill-leader");
    }

    #[test]
    fn repeated_timelines_get_numbered_files() {
        assert_eq!(svg_path(Path::new("/t/x.svg"), 1, 1), Path::new("/t/x.svg"));
        assert_eq!(svg_path(Path::new("/t/x.svg"), 2, 3), Path::new("/t/x-2.svg"));
    }
}
