//! Commands that run here: the daemon, key generation, the simulation.

use crate::cluster::{Cluster, LogFormat, NodeConfig};
use crate::keys;
use crate::sim::{Plan, run_caught, run_seeds};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Node config (JSON); see hosts/README.md.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Override the data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Override the node's private key file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Override the inventory file.
    #[arg(long)]
    pub cluster_file: Option<PathBuf>,
    /// Override the audit log path.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub json_logs: bool,
    /// Join a running cluster through the member at HOST:PORT: once
    /// `paxos members add` for this node is applied there, fetch the live
    /// inventory into the cluster file and start from it. Skipped when the
    /// cluster file already lists this node with its key.
    #[arg(long, value_name = "HOST:PORT", requires = "seed_key")]
    pub join: Option<String>,
    /// The host key of the member given to --join: "ssh-ed25519 AAAA..." or
    /// a file holding it.
    #[arg(long, value_name = "KEY", requires = "join")]
    pub seed_key: Option<String>,
}

/// `--seed-key`: a public key line, or a file that holds one.
fn seed_key(given: &str) -> anyhow::Result<russh::keys::PublicKey> {
    if let Ok(key) = crate::cluster::parse_public_key(given) {
        return Ok(key);
    }
    let path = std::path::Path::new(given);
    if path.is_file() {
        return keys::load_public_file(path).with_context(|| format!("--seed-key {given}"));
    }
    anyhow::bail!("--seed-key {given:?} is neither an \"ssh-ed25519 AAAA...\" key nor a file holding one")
}

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    crate::node::memory::limit_retention();
    let mut node = NodeConfig::load(&args.config)?;
    if let Some(dir) = args.data_dir {
        node.data_dir = dir;
    }
    if let Some(key) = args.key_file {
        node.key_file = key;
    }
    if let Some(file) = args.cluster_file {
        node.cluster_file = file;
    }
    if let Some(audit) = args.audit_log {
        node.audit_log = audit;
    }
    init_logging(args.json_logs || node.log_format == LogFormat::Json);
    let id = node.id;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let joining = match (&args.join, &args.seed_key) {
            (Some(seed), Some(key)) if !crate::node::join::already_joined(&node)? => {
                Some((seed.clone(), seed_key(key)?))
            }
            _ => None,
        };
        let inventory = match joining {
            Some((seed, key)) => tokio::select! {
                joined = crate::node::join::join(&node, &seed, &key) => joined?,
                () = wait_for_signal() => {
                    info!(node = id, "signal received while waiting to join; stopping");
                    return Ok(0);
                }
            },
            None => crate::cluster::Inventory::load(&node.cluster_file)?,
        };
        let cluster = Cluster::from_parts(node, inventory)?;
        let shutdown = CancellationToken::new();
        let running = crate::node::serve::start(cluster, shutdown.clone()).await?;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            info!(node = id, "signal received; shutting down");
            stop.cancel();
        });
        match running.task.await {
            Ok(Ok(())) => Ok(0),
            Ok(Err(e)) => {
                error!(node = id, "stopped: {e:#}");
                Err(e)
            }
            Err(e) => Err(anyhow::anyhow!("node task failed: {e}")),
        }
    })
}

/// SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the node runs until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the private key; the public key goes to PATH.pub.
    pub path: PathBuf,
    /// Comment in the public key line.
    #[arg(long, default_value = "paxos")]
    pub comment: String,
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<u8> {
    let key = keys::generate_ed25519(&args.path, &args.comment)
        .with_context(|| format!("writing a key to {}", args.path.display()))?;
    println!("{}", keys::public_line(&key));
    println!("{}", keys::fingerprint(&key));
    Ok(0)
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    pub seeds: u64,
    /// Run only this seed (replays a failure). With PAXOS_SIM_TRACE=1 in
    /// the environment, every message, application, reply and crash is
    /// printed to stderr.
    #[arg(long)]
    pub seed: Option<u64>,
    /// First seed of the range.
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Ticks of faults before the network heals.
    #[arg(long, default_value_t = Plan::default().fault_ticks)]
    pub fault_ticks: u64,
    /// Run the membership shape: three members and two joining nodes,
    /// with membership changes decided among the faults.
    #[arg(long)]
    pub membership: bool,
    /// Print one JSON object per seed.
    #[arg(long)]
    pub json: bool,
}

pub fn simulate(args: SimulateArgs) -> anyhow::Result<u8> {
    let plan = Plan { fault_ticks: args.fault_ticks, membership_changes: args.membership, ..Plan::default() };
    if let Some(seed) = args.seed {
        return Ok(match run_caught(seed, &plan) {
            Ok(report) => {
                if args.json {
                    println!("{}", serde_json::json!({"seed": seed, "ok": true, "report": report}));
                } else {
                    println!("seed {seed}: ok: {report:?}");
                }
                0
            }
            Err(failure) => {
                eprintln!("{failure}");
                1
            }
        });
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = std::time::Instant::now();
    let (reports, failures) = run_seeds(args.first, args.seeds, threads, &plan);
    for f in &failures {
        eprintln!("{f}");
    }
    let slots: u64 = reports.iter().map(|r| r.slots).sum();
    let worst_liveness = reports.iter().map(|r| r.liveness_ticks).max().unwrap_or(0);
    let crashes: u32 = reports.iter().map(|r| r.crashes).sum();
    let installed: u32 = reports.iter().map(|r| r.snapshots_installed).sum();
    let summary = format!(
        "{} seeds from {}: {} passed, {} failed; {} slots decided; {} crashes; {} snapshot catch-ups; \
         slowest recovery after healing {} ticks; {:.1} s",
        args.seeds,
        args.first,
        reports.len(),
        failures.len(),
        slots,
        crashes,
        installed,
        worst_liveness,
        started.elapsed().as_secs_f64()
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"seeds": args.seeds, "passed": reports.len(), "failed": failures.iter().map(|f| f.seed).collect::<Vec<_>>(), "slots": slots})
        );
    } else {
        println!("{summary}");
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}
