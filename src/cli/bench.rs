//! `paxos bench`: drive a running cluster with concurrent clients, each
//! on its own SSH connection and console channel, spread over the nodes;
//! after a warm-up, measure for a duration or a number of commands, then
//! print throughput and latency percentiles for writes and reads, the
//! errors, and how the nodes batched meanwhile. Bounded in count and time:
//! it always stops by itself.

mod client;
mod report;
mod stats;

use super::remote::{Target, collect_status};
use crate::cluster::{Inventory, NodeEntry};
use crate::ops::EXIT_USAGE;
use crate::ops::api::ReplicaRole;
use crate::ops::audit::rfc3339;
use anyhow::{Context, bail};
use clap::Args;
use client::{ClientResult, DRAIN, Schedule, Workload};
use futures::{StreamExt, TryStreamExt};
use report::{ClusterInfo, Figures, Machine, NodeBatching, NodeCounters, NodeInfo, Report};
use serde::Serialize;
use stats::{Errors, Samples, per_second, write_acks};
use std::fs::File;
use std::io::BufWriter;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// A slot carries up to 256 commands and a peer frame is at most 16 MiB:
/// bigger values could make a full batch unsendable.
pub const MAX_VALUE_SIZE: usize = 32 * 1024;
const MAX_CLIENTS: usize = 1024;
const MAX_PIPELINE: usize = 1024;
const MAX_SECS: u64 = 3600;
/// Each measured command keeps an 8-byte latency sample.
const MAX_COUNT: u64 = 50_000_000;
/// SSH handshakes in progress at once while the clients connect.
const CONNECTING_AT_ONCE: usize = 16;

#[derive(Args, Clone, Debug, Default)]
#[command(after_help = "Give exactly one of --duration and --count. Exit status: 0 when every measured command \
    succeeded, 1 when some failed (the figures are printed either way), 2 for bad arguments.")]
pub struct BenchArgs {
    /// Concurrent clients, each with its own SSH connection and console, spread round-robin over the nodes.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub clients: usize,
    /// Measure for this many seconds, after the warm-up.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Measure this many commands in all, after the warm-up.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Bytes in each value written.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub value_size: usize,
    /// Share of commands that are linearizable `get`s; the others are `put`s.
    #[arg(long, value_name = "PERCENT", default_value_t = 0)]
    pub reads: u32,
    /// Keys to pick from, uniformly at random (bench0, bench1, ...).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub keys: u64,
    /// Commands each client keeps in flight on its console.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub pipeline: usize,
    /// Seconds of the same load before measuring; not counted.
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub warmup: u64,
    /// With --count: stop after this many measured seconds even if the count is not reached.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub time_limit: u64,
    /// Connect clients only to this node (repeat for several); default: every node.
    #[arg(long = "node", value_name = "ID")]
    pub nodes: Vec<u64>,
    /// Seed of the key and command choices (default: random; the report shows it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write every answered command to FILE, warm-up included, in the order of the answers, one line
    /// each: `SENT_US ANSWERED_US put|get ok|ERROR_KIND`, the times in microseconds since the Unix epoch
    /// (CLOCK_REALTIME, so they compare with another process's clock readings, e.g. when a node was killed).
    #[arg(long, value_name = "FILE")]
    pub ack_log: Option<PathBuf>,
}

/// Validated parameters of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub clients: usize,
    pub pipeline: usize,
    pub duration_secs: Option<u64>,
    pub count: Option<u64>,
    pub warmup_secs: u64,
    pub time_limit_secs: u64,
    pub value_size: usize,
    pub read_percent: u32,
    pub keys: u64,
    /// Empty: every node of the inventory.
    pub nodes: Vec<u64>,
    pub seed: u64,
}

impl BenchArgs {
    /// Checks the arguments; the error says what to change.
    pub fn plan(&self) -> Result<Plan, String> {
        match (self.duration, self.count) {
            (None, None) => return Err("say how long to measure: --duration SECS or --count N".into()),
            (Some(_), Some(_)) => return Err("give --duration or --count, not both".into()),
            (Some(secs), None) if secs == 0 || secs > MAX_SECS => {
                return Err(format!("--duration must be 1 to {MAX_SECS} seconds"));
            }
            (None, Some(count)) if count == 0 || count > MAX_COUNT => {
                return Err(format!("--count must be 1 to {MAX_COUNT}"));
            }
            _ => {}
        }
        let checks = [
            (self.clients == 0 || self.clients > MAX_CLIENTS, format!("--clients must be 1 to {MAX_CLIENTS}")),
            (self.pipeline == 0 || self.pipeline > MAX_PIPELINE, format!("--pipeline must be 1 to {MAX_PIPELINE}")),
            (
                self.value_size == 0 || self.value_size > MAX_VALUE_SIZE,
                format!("--value-size must be 1 to {MAX_VALUE_SIZE} bytes (a batch of values must fit a peer frame)"),
            ),
            (self.reads > 100, "--reads is a percentage, 0 to 100".to_owned()),
            (self.keys == 0, "--keys must be at least 1".to_owned()),
            (self.warmup > MAX_SECS, format!("--warmup must be at most {MAX_SECS} seconds")),
            (
                self.time_limit == 0 || self.time_limit > MAX_SECS,
                format!("--time-limit must be 1 to {MAX_SECS} seconds"),
            ),
        ];
        if let Some((_, message)) = checks.into_iter().find(|(bad, _)| *bad) {
            return Err(message);
        }
        let mut nodes = self.nodes.clone();
        nodes.sort_unstable();
        nodes.dedup();
        Ok(Plan {
            clients: self.clients,
            pipeline: self.pipeline,
            duration_secs: self.duration,
            count: self.count,
            warmup_secs: self.warmup,
            time_limit_secs: self.time_limit,
            value_size: self.value_size,
            read_percent: self.reads,
            keys: self.keys,
            nodes,
            seed: self.seed.unwrap_or_else(rand::random),
        })
    }
}

/// The nodes clients connect to, in inventory order.
fn chosen_nodes(inventory: &Inventory, ids: &[u64]) -> anyhow::Result<Vec<NodeEntry>> {
    if let Some(id) = ids.iter().find(|id| inventory.node(**id).is_none()) {
        let known: Vec<String> = inventory.nodes.iter().map(|n| n.id.to_string()).collect();
        bail!("--node {id}: {} lists nodes {}", inventory.path.display(), known.join(", "));
    }
    let nodes: Vec<NodeEntry> =
        inventory.nodes.iter().filter(|n| ids.is_empty() || ids.contains(&n.id)).cloned().collect();
    if nodes.is_empty() {
        bail!("{} lists no nodes", inventory.path.display());
    }
    Ok(nodes)
}

/// Each node's counters, read over a connection of their own; `None` for a node that did not answer.
async fn read_counters(target: &Target) -> Vec<Option<NodeCounters>> {
    let reads = target.inventory.nodes.iter().map(|node| async move {
        let client = target.connect(node).await.ok()?;
        let output = client.run("paxos metrics").await.ok()?;
        client.disconnect().await;
        (output.exit_status == Some(0)).then(|| NodeCounters::parse(&String::from_utf8_lossy(&output.stdout)))
    });
    futures::future::join_all(reads).await
}

/// Successful commands only: failures are counted in `errors`.
fn figures(samples: &Samples, secs: f64) -> Figures {
    let ops = samples.len() as u64;
    Figures { ops, ops_per_sec: per_second(ops, Duration::from_secs_f64(secs)), latency: samples.clone().summary() }
}

pub async fn run(cluster: &Path, identity: &Path, args: BenchArgs) -> anyhow::Result<u8> {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("paxos bench: {e}");
            return Ok(EXIT_USAGE as u8);
        }
    };
    let target = Target::load(cluster, identity)?;
    let nodes = chosen_nodes(&target.inventory, &plan.nodes)?;
    // Created before any load, so that a bad path fails fast.
    let ack_log = match &args.ack_log {
        Some(path) => Some((File::create(path).with_context(|| format!("--ack-log {}", path.display()))?, path)),
        None => None,
    };
    let leader = collect_status(&target)
        .await
        .into_iter()
        .filter_map(|(_, s)| s.ok())
        .find(|s| s.role == ReplicaRole::Leader)
        .map(|s| s.id);
    let Some(leader) = leader else {
        bail!("no node of {} is leader; check the cluster with `paxos status`", target.inventory.path.display());
    };

    let connecting = futures::stream::iter(0..plan.clients).map(|i| {
        let node = &nodes[i % nodes.len()];
        let target = &target;
        async move {
            let what = || format!("client {i}: node {} at {}", node.id, node.address());
            let client = target.connect(node).await.with_context(what)?;
            let console = client.console().await.with_context(what)?;
            anyhow::Ok((client, console))
        }
    });
    let connected: Vec<_> = connecting.buffered(CONNECTING_AT_ONCE).try_collect().await?;

    let date = rfc3339(SystemTime::now());
    let machine = Machine::probe();
    let cluster_info = ClusterInfo {
        name: target.inventory.cluster.clone(),
        inventory: target.inventory.path.display().to_string(),
        leader: Some(leader),
        nodes: nodes
            .iter()
            .enumerate()
            .map(|(k, n)| NodeInfo {
                id: n.id,
                name: n.name.clone(),
                address: n.address(),
                clients: (k..plan.clients).step_by(nodes.len()).count(),
            })
            .collect(),
    };
    if !args.json {
        print!("{}", report::header(&date, &machine, &cluster_info, &plan));
        std::io::stdout().flush()?;
    }

    let workload = Arc::new(Workload {
        keys: plan.keys,
        read_percent: plan.read_percent,
        value_size: plan.value_size,
        pipeline: plan.pipeline,
        record_acks: ack_log.is_some(),
    });
    let cpu_before = report::cpu_seconds();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(plan.warmup_secs);
    let stop_at = measure_from + Duration::from_secs(plan.duration_secs.unwrap_or(plan.time_limit_secs));
    let schedule = Arc::new(Schedule::new(measure_from, stop_at, plan.count));
    let mut ssh_clients = Vec::new();
    let mut running = Vec::new();
    for (i, (ssh, console)) in connected.into_iter().enumerate() {
        let seed = plan.seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let task = client::run(console, workload.clone(), schedule.clone(), seed, stop_at + DRAIN);
        running.push(tokio::spawn(task));
        ssh_clients.push(ssh);
    }

    tokio::time::sleep_until(measure_from).await;
    let counters_before = read_counters(&target).await;
    let counters_from = Instant::now();
    let mut writes = Samples::default();
    let mut reads = Samples::default();
    let mut errors = Errors::default();
    let mut warmup_errors = 0;
    let mut last_answer = None;
    let mut acks = Vec::new();
    for task in running {
        let r: ClientResult = task.await.context("a benchmark client panicked")?;
        acks.extend(r.acks);
        writes.merge(r.writes);
        reads.merge(r.reads);
        errors.merge(r.errors);
        warmup_errors += r.warmup_errors;
        last_answer = last_answer.max(r.last_answer);
    }
    let client_cpu_secs = report::cpu_seconds() - cpu_before;
    if let Some((file, path)) = ack_log {
        write_acks(&mut BufWriter::new(file), &mut acks).with_context(|| format!("--ack-log {}", path.display()))?;
    }
    let counters_after = read_counters(&target).await;
    let counters_secs = counters_from.elapsed().as_secs_f64();
    futures::future::join_all(ssh_clients.iter().map(|c| c.disconnect())).await;

    let roles: Vec<(u64, String)> = collect_status(&target)
        .await
        .into_iter()
        .map(|(n, s)| (n.id, s.map_or_else(|_| "down".to_owned(), |s| s.role.to_string())))
        .collect();
    let mut node_batching = Vec::new();
    for ((id, role), (before, after)) in roles.into_iter().zip(counters_before.iter().zip(&counters_after)) {
        if let (Some(before), Some(after)) = (before, after) {
            node_batching.push(NodeBatching::between(id, role, *before, *after, counters_secs));
        }
    }
    let measured_secs = last_answer.map_or(0.0, |at| at.saturating_duration_since(measure_from).as_secs_f64());
    let leader_slots =
        node_batching.iter().find(|n| n.role == "leader").map(|n| n.slots_applied_per_sec * counters_secs);
    let mut all = writes.clone();
    all.merge(reads.clone());
    let report = Report {
        date,
        machine,
        cluster: cluster_info,
        measured_secs,
        writes: figures(&writes, measured_secs),
        reads: figures(&reads, measured_secs),
        total: figures(&all, measured_secs),
        writes_per_slot: leader_slots.filter(|s| *s > 0.0).map(|s| writes.len() as f64 / s),
        errors,
        warmup_errors,
        nodes: node_batching,
        client_cpu_secs,
        parameters: plan,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::results(&report));
    }
    Ok(if report.errors.count == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> BenchArgs {
        BenchArgs {
            clients: 4,
            duration: Some(10),
            value_size: 100,
            keys: 1000,
            pipeline: 1,
            warmup: 2,
            time_limit: 300,
            ..Default::default()
        }
    }

    fn refused(args: BenchArgs, expected: &str) {
        match args.plan() {
            Ok(plan) => panic!("accepted {plan:?}"),
            Err(e) => assert!(e.contains(expected), "{e:?} does not mention {expected:?}"),
        }
    }

    #[test]
    fn exactly_one_of_duration_and_count() {
        refused(BenchArgs { duration: None, ..args() }, "--duration SECS or --count N");
        refused(BenchArgs { count: Some(10), ..args() }, "not both");
        let by_count = BenchArgs { duration: None, count: Some(1000), ..args() }.plan().unwrap();
        assert_eq!((by_count.duration_secs, by_count.count), (None, Some(1000)));
        refused(BenchArgs { duration: Some(0), ..args() }, "--duration");
        refused(BenchArgs { duration: None, count: Some(0), ..args() }, "--count");
    }

    #[test]
    fn sizes_and_shares_are_bounded() {
        refused(BenchArgs { value_size: 0, ..args() }, "--value-size");
        refused(BenchArgs { value_size: MAX_VALUE_SIZE + 1, ..args() }, "--value-size");
        assert!(BenchArgs { value_size: MAX_VALUE_SIZE, ..args() }.plan().is_ok());
        refused(BenchArgs { reads: 101, ..args() }, "--reads");
        assert_eq!(BenchArgs { reads: 100, ..args() }.plan().unwrap().read_percent, 100);
        refused(BenchArgs { clients: 0, ..args() }, "--clients");
        refused(BenchArgs { pipeline: 0, ..args() }, "--pipeline");
        refused(BenchArgs { keys: 0, ..args() }, "--keys");
        refused(BenchArgs { time_limit: 0, duration: None, count: Some(5), ..args() }, "--time-limit");
        assert!(BenchArgs { warmup: 0, ..args() }.plan().is_ok());
    }

    #[test]
    fn a_plan_keeps_the_seed_it_was_given_and_sorts_nodes() {
        let plan = BenchArgs { seed: Some(7), nodes: vec![3, 1, 3], ..args() }.plan().unwrap();
        assert_eq!(plan.seed, 7);
        assert_eq!(plan.nodes, vec![1, 3]);
    }

    #[test]
    fn clap_accepts_the_documented_flags() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cli = Cli::try_parse_from([
            "bench",
            "--clients",
            "16",
            "--duration",
            "10",
            "--value-size",
            "256",
            "--reads",
            "50",
            "--keys",
            "100",
            "--pipeline",
            "8",
            "--warmup",
            "1",
            "--node",
            "2",
            "--seed",
            "5",
            "--json",
            "--ack-log",
            "acks.txt",
        ])
        .unwrap();
        let plan = cli.bench.plan().unwrap();
        assert_eq!(
            (plan.clients, plan.duration_secs, plan.value_size, plan.read_percent, plan.keys, plan.pipeline),
            (16, Some(10), 256, 50, 100, 8)
        );
        assert_eq!((plan.warmup_secs, plan.nodes, plan.seed), (1, vec![2], 5));
        assert!(cli.bench.json);
        assert_eq!(cli.bench.ack_log, Some(PathBuf::from("acks.txt")));
    }
}
