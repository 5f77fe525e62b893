//! `paxos nemesis`: a local 3-node cluster of real daemons, concurrent
//! clients through real SSH consoles recording a Jepsen-style history,
//! and faults on a seeded schedule (kill -9 and restart, SIGSTOP/SIGCONT of
//! the leader, leadership transfer, partitions of the leader through the
//! peer transport's fault rules, a full disk under one node, and a wiped
//! data directory), one at a time or overlapping. At the end: linearizability per key,
//! a final read of every key, and the nodes' decided logs compared. Bounded
//! in time; every process it signals is a child it spawned.

pub mod check;
pub mod client;
pub mod cluster;
pub mod faults;
pub mod finish;
pub mod history;
mod report;

pub use faults::FaultKind;
pub use report::Summary;

use clap::Args;
use cluster::LocalCluster;
use history::History;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

#[derive(Debug, Error)]
pub enum NemesisError {
    #[error("nemesis: {0}")]
    Setup(String),
    #[error("nemesis: bad arguments: {0}")]
    Usage(String),
}

/// The nemesis's keys: k0, k1, ...
const KEY_PREFIX: &str = "k";
const MAX_SECS: u64 = 24 * 3600;
const MAX_CLIENTS: u64 = 64;
const MAX_KEYS: u64 = 1000;
/// At most this much at the end of a run has no fault starting.
const QUIET: Duration = Duration::from_secs(10);
/// After the run: to heal, elect, read back and compare the logs.
const SETTLE: Duration = Duration::from_secs(60);

#[derive(Args, Clone, Debug)]
#[command(after_help = "Exit status: 0 with no anomaly, 1 with any anomaly or failure, 2 for bad arguments.")]
pub struct NemesisArgs {
    /// Seconds of client load and faults.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Concurrent clients, each with its own SSH console.
    #[arg(long, default_value_t = 6)]
    pub clients: u64,
    /// Keys k0..kN-1 the clients share.
    #[arg(long, default_value_t = 5)]
    pub keys: u64,
    /// Faults to inject, comma-separated: kill, pause, transfer, partition, one-way, flap, disk-full;
    /// and wipe (opt-in: deletes a node's data).
    #[arg(long, value_delimiter = ',', default_value = "kill,pause,transfer,partition,one-way,flap,disk-full")]
    pub faults: Vec<FaultKind>,
    /// Let a fault start while another is active (at most two at once, on different nodes).
    #[arg(long)]
    pub overlap: bool,
    /// Mean seconds between one fault's recovery and the next fault.
    #[arg(long, default_value_t = 4)]
    pub interval: u64,
    /// Seed of the clients' choices and the fault schedule (default: random; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run directory (keys, configs, node data and logs, history.jsonl); default: a new temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the run directory even when no anomaly was found.
    #[arg(long)]
    pub keep: bool,
    /// Run nothing: check a recorded history.jsonl for linearizability.
    #[arg(long, value_name = "HISTORY")]
    pub check: Option<PathBuf>,
}

/// Validated parameters of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub duration: Duration,
    pub clients: u64,
    pub keys: u64,
    pub faults: Vec<FaultKind>,
    pub overlap: bool,
    pub interval: Duration,
    pub seed: u64,
    pub dir: PathBuf,
    pub keep: bool,
    /// The `paxos` binary that runs the nodes.
    pub exe: PathBuf,
}

impl NemesisArgs {
    pub fn plan(&self, exe: PathBuf) -> Result<Plan, NemesisError> {
        let bad = |m: String| Err(NemesisError::Usage(m));
        if self.duration == 0 || self.duration > MAX_SECS {
            return bad(format!("--duration must be 1 to {MAX_SECS} seconds"));
        }
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return bad(format!("--clients must be 1 to {MAX_CLIENTS}"));
        }
        if self.keys == 0 || self.keys > MAX_KEYS {
            return bad(format!("--keys must be 1 to {MAX_KEYS}"));
        }
        if self.interval == 0 || self.interval > MAX_SECS {
            return bad(format!("--interval must be 1 to {MAX_SECS} seconds"));
        }
        let mut faults = self.faults.clone();
        faults.sort_unstable();
        faults.dedup();
        let seed = self.seed.unwrap_or_else(rand::random);
        let dir = self.dir.clone().unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            std::env::temp_dir().join(format!("paxos-nemesis-{}-{nanos}", std::process::id()))
        });
        Ok(Plan {
            duration: Duration::from_secs(self.duration),
            clients: self.clients,
            keys: self.keys,
            faults,
            overlap: self.overlap,
            interval: Duration::from_secs(self.interval),
            seed,
            dir,
            keep: self.keep,
            exe,
        })
    }
}

/// Runs the whole thing: cluster, clients, nemesis, checks.
pub async fn run(plan: &Plan) -> Result<Summary, NemesisError> {
    let setup = |e: std::io::Error| NemesisError::Setup(format!("run directory {}: {e}", plan.dir.display()));
    std::fs::create_dir_all(&plan.dir).map_err(setup)?;
    let mut cluster = LocalCluster::prepare(&plan.dir, &plan.exe, 3, plan.seed)?;
    let mut kinds = plan.faults.clone();
    let mut notes = Vec::new();
    if kinds.contains(&FaultKind::DiskFull) {
        // One node's data on a small tmpfs, unmounted when `cluster` drops.
        let victim = cluster.access.node_ids()[(plan.seed % 3) as usize];
        if let Err(e) = cluster.mount_small_disk(victim, faults::SMALL_DISK_BYTES) {
            notes.push(format!("disk-full skipped: {e}"));
            kinds.retain(|k| *k != FaultKind::DiskFull);
        }
    }
    for id in cluster.access.node_ids() {
        cluster.spawn(id)?;
    }
    if faults::wait_for_leader(&cluster, Duration::from_secs(30)).await.is_none() {
        return Err(NemesisError::Setup(format!("no leader within 30 s; see the node logs in {}", plan.dir.display())));
    }
    let start = Instant::now();
    let history = Arc::new(History::new(start.into_std()));
    let stop_at = start + plan.duration;
    let shared = Arc::new(client::Shared {
        access: cluster.access.clone(),
        history: history.clone(),
        keys: plan.keys,
        key_prefix: KEY_PREFIX.into(),
        clients: plan.clients,
        client_base: (plan.seed >> 24) << 20,
        stop_at,
        stop: Default::default(),
        give_up_at: stop_at + Duration::from_secs(20),
    });
    let tasks: Vec<_> = (0..plan.clients)
        .map(|slot| {
            let seed = plan.seed.wrapping_add((slot + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            tokio::spawn(client::run(shared.clone(), slot, seed))
        })
        .collect();
    // The last stretch of the run is left to the clients: every fault heals and is followed by writes.
    let quiet_from = stop_at - (plan.duration / 4).min(QUIET);
    let schedule = faults::Schedule {
        kinds,
        interval: plan.interval,
        seed: plan.seed,
        quiet_from,
        stop_at,
        overlap: plan.overlap,
    };
    let outcome = faults::run(&mut cluster, &history, &schedule).await;
    for task in tasks {
        task.await.map_err(|e| NemesisError::Setup(format!("a client task failed: {e}")))?;
    }
    let mut outcome = outcome?;
    notes.append(&mut outcome.notes);
    outcome.notes = notes;
    let mut anomalies = cluster.exited();
    cluster.heal()?;

    let settle_until = Instant::now() + SETTLE;
    // The checker indexes processes densely: continue right after the clients' last one.
    let final_process = finish::next_process(&history.snapshot());
    let unread =
        finish::final_reads(&cluster.access, &history, KEY_PREFIX, plan.keys, final_process, settle_until).await;
    anomalies.extend(unread.iter().map(|k| format!("key {k} could not be read back after the faults healed")));
    if !finish::wait_converged(&cluster.access, settle_until).await {
        anomalies.push("the nodes did not reach the same applied index within the settle time".into());
    }
    let mut logs = std::collections::BTreeMap::new();
    for id in cluster.access.node_ids() {
        match finish::read_log(&cluster.access, id, 0).await {
            Ok(log) => {
                logs.insert(id, log);
            }
            Err(e) => anomalies.push(format!("cannot compare logs: {e}")),
        }
    }
    let (slots_compared, disagreements) = check::log_disagreements(&logs);
    anomalies.extend(disagreements);
    anomalies.extend(cluster.exited());
    cluster.stop_all();
    // Written before the check, which can take long on a long history.
    let events = history.snapshot();
    let history_path = plan.dir.join("history.jsonl");
    history::write_jsonl(&history_path, &events).map_err(setup)?;
    if let Err(e) = check::linearizable(&events) {
        anomalies.push(e);
    }
    Ok(Summary::new(plan, &events, &outcome, slots_compared, anomalies, history_path))
}

/// The `paxos nemesis` entry: run, print, exit 0 only without anomalies.
pub async fn cli(args: NemesisArgs) -> anyhow::Result<u8> {
    if let Some(path) = &args.check {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let events = history::read_jsonl(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(match check::linearizable(&events) {
            Ok(()) => {
                println!("{}: {} events, linearizable", path.display(), events.len());
                0
            }
            Err(e) => {
                println!("{}: anomaly: {e}", path.display());
                1
            }
        });
    }
    let plan =
        match std::env::current_exe().map_err(|e| NemesisError::Setup(e.to_string())).and_then(|exe| args.plan(exe)) {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("paxos {e}");
                return Ok(crate::ops::EXIT_USAGE as u8);
            }
        };
    println!(
        "nemesis: seed {}, {} s, {} clients, {} keys, faults {}{}, dir {}",
        plan.seed,
        plan.duration.as_secs(),
        plan.clients,
        plan.keys,
        plan.faults.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        if plan.overlap { " (overlapping)" } else { "" },
        plan.dir.display()
    );
    let summary = run(&plan).await?;
    print!("{summary}");
    if summary.anomalies.is_empty() && !plan.keep {
        let _ = std::fs::remove_dir_all(&plan.dir);
    } else {
        println!("run directory kept: {}", plan.dir.display());
    }
    Ok(if summary.anomalies.is_empty() { 0 } else { 1 })
}
