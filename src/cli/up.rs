//! `paxos up`: a complete cluster on 127.0.0.1 in one command. It creates
//! any missing keys under `keys/`, writes `hosts/local.json` and a
//! known_hosts file, starts the nodes as child processes (`paxos serve`),
//! waits for a leader and prints the commands that reach it. Ctrl-C stops
//! every node with SIGTERM; running it again reuses keys and data.
//!
//! Each node polls a peer-fault file, `DATA/nodeN.faults` (through
//! `PAXOS_FAULT_FILE`): a local test and drill hook, absent and so inert
//! unless `paxos drill --kind partition-leader` (or a test) writes rules
//! into it. Real deployments never set it.

use super::remote::{Target, collect_status};
use crate::cluster::{Inventory, default_paths};
use crate::keys;
use crate::ops::api::ReplicaRole;
use crate::ssh::faults::FAULT_FILE_ENV;
use anyhow::{Context, bail};
use clap::Args;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// SSH port of node 1; node N listens on this + N - 1.
    #[arg(long, default_value_t = 7101)]
    pub base_port: u16,
    /// Where keys (and the known_hosts file) live; git-ignored.
    #[arg(long, default_value = "keys")]
    pub keys: PathBuf,
    /// The inventory to write.
    #[arg(long, default_value = "hosts/local.json")]
    pub hosts: PathBuf,
    /// Data directory root (default: the platform data dir, e.g. ~/.local/share/paxos/local).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// How long to wait for the first leader.
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u64,
}

fn key(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    let public = if path.exists() {
        keys::load_public_file(&keys::public_path(&path))?
    } else {
        keys::generate_ed25519(&path, name)?
    };
    Ok(keys::public_line(&public))
}

/// Keys, inventory, known_hosts and node configs; returns the node config paths.
fn prepare(args: &UpArgs, data: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    fs::create_dir_all(&args.keys).with_context(|| format!("creating {}", args.keys.display()))?;
    if let Some(parent) = args.hosts.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut hosts = serde_json::Map::new();
    let mut known_hosts = String::new();
    for id in 1..=args.nodes {
        let name = format!("node{id}");
        let host_key = key(&args.keys, &name)?;
        let port = args.base_port + (id - 1) as u16;
        known_hosts.push_str(&keys::known_hosts_line("127.0.0.1", port, &keys::parse_public(&host_key)?));
        known_hosts.push('\n');
        // Ansible's JSON inventory shape, as every inventory under hosts/.
        hosts.insert(
            name,
            serde_json::json!({
                "ansible_host": "127.0.0.1", "paxos_id": id, "paxos_port": port,
                "paxos_roles": ["proposer", "acceptor", "learner"], "paxos_host_key": host_key,
            }),
        );
    }
    let operator = key(&args.keys, "operator")?;
    let reader = key(&args.keys, "reader")?;
    let inventory = serde_json::json!({"all": {"hosts": hosts, "vars": {
        "paxos_cluster": "local", "paxos_tick_ms": 10, "paxos_operators": [operator], "paxos_readers": [reader],
    }}});
    let text = serde_json::to_string_pretty(&inventory)? + "\n";
    Inventory::from_json(&text, &args.hosts)?; // validate before writing
    fs::write(&args.hosts, text).with_context(|| format!("writing {}", args.hosts.display()))?;
    fs::write(args.keys.join("known_hosts"), known_hosts)?;

    let hosts = super::absolute(&args.hosts)?;
    let keys_dir = super::absolute(&args.keys)?;
    let mut configs = Vec::new();
    for id in 1..=args.nodes {
        let dir = data.join(format!("node{id}"));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = serde_json::json!({
            "id": id,
            "listen": format!("127.0.0.1:{}", args.base_port + (id - 1) as u16),
            "data_dir": dir,
            "key_file": keys_dir.join(format!("node{id}")),
            "cluster_file": hosts,
        });
        let path = data.join(format!("node{id}.json"));
        fs::write(&path, serde_json::to_string_pretty(&config)? + "\n")?;
        configs.push((id, path));
    }
    Ok(configs)
}

/// Node `id`'s peer-fault file (see the module doc): a local test and drill hook.
fn fault_file(data: &Path, id: u64) -> PathBuf {
    data.join(format!("node{id}.faults"))
}

struct Nodes(Vec<(u64, Child)>);

impl Nodes {
    /// SIGTERM to each child we started, by its PID, then wait for it.
    fn stop(&mut self) {
        for (_, child) in &self.0 {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) on the PID of a child this process spawned and has not reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        for (id, child) in &mut self.0 {
            match child.wait() {
                Ok(status) => println!("node{id} stopped ({status})"),
                Err(e) => eprintln!("node{id}: {e}"),
            }
        }
        self.0.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn run(args: UpArgs) -> anyhow::Result<u8> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let data = match &args.data {
        Some(d) => super::absolute(d)?,
        None => default_paths().context("no home directory to keep data in; pass --data DIR")?.data_dir.join("local"),
    };
    let configs = prepare(&args, &data)?;
    let exe = std::env::current_exe()?;
    let mut nodes = Nodes(Vec::new());
    for (id, config) in &configs {
        // Rules a drill left behind (it was interrupted) would cut a fresh node off.
        match fs::remove_file(fault_file(&data, *id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let log = fs::File::create(data.join(format!("node{id}.log")))?;
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env(FAULT_FILE_ENV, fault_file(&data, *id))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node{id}"))?;
        println!("node{id} started (pid {}), log {}", child.id(), data.join(format!("node{id}.log")).display());
        nodes.0.push((*id, child));
    }
    let rt = super::runtime()?;
    let target = Target::load(&args.hosts, &args.keys.join("operator"))?;
    let leader = rt.block_on(wait_for_leader(&target, Duration::from_secs(args.wait_secs)));
    let leader = match leader {
        Ok(leader) => leader,
        Err(e) => {
            nodes.stop();
            return Err(e.context(format!("see the node logs in {}", data.display())));
        }
    };
    let k = args.keys.display();
    println!("\ncluster \"local\" is up: {} nodes, leader node{leader}; data in {}", args.nodes, data.display());
    println!("\nReach it with OpenSSH:");
    for id in 1..=args.nodes {
        let port = args.base_port + (id - 1) as u16;
        println!(
            "  ssh -p {port} -i {k}/operator -o UserKnownHostsFile={k}/known_hosts -o IdentitiesOnly=yes 127.0.0.1 -s paxos status"
        );
    }
    println!(
        "or with the CLI:\n  paxos --cluster {} status\n  paxos --cluster {} put greeting hello",
        args.hosts.display(),
        args.hosts.display()
    );
    println!("\nCtrl-C stops all nodes.");
    rt.block_on(async {
        tokio::select! {
            _ = super::local::wait_for_signal() => println!("stopping"),
            _ = report_exits(&mut nodes, &exe, &configs) => {}
        }
    });
    nodes.stop();
    Ok(0)
}

/// A node that dies (a failover drill, say) is reported with the command
/// that restarts it; the others keep running until Ctrl-C.
async fn report_exits(nodes: &mut Nodes, exe: &Path, configs: &[(u64, PathBuf)]) {
    let mut reported = std::collections::BTreeSet::new();
    loop {
        for (id, child) in &mut nodes.0 {
            if let Ok(Some(status)) = child.try_wait()
                && reported.insert(*id)
            {
                let config = configs.iter().find(|(c, _)| c == id).map(|(_, p)| p.display().to_string());
                println!(
                    "node{id} exited ({status}); restart it with: {} serve --config {}",
                    exe.display(),
                    config.unwrap_or_default()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn wait_for_leader(target: &Target, within: Duration) -> anyhow::Result<u64> {
    let started = Instant::now();
    loop {
        let rows = collect_status(target).await;
        let leader = rows.iter().filter_map(|(_, s)| s.as_ref().ok()).find(|s| s.role == ReplicaRole::Leader);
        if let Some(s) = leader {
            return Ok(s.id);
        }
        if started.elapsed() > within {
            let errors: Vec<String> =
                rows.iter().filter_map(|(n, s)| s.as_ref().err().map(|e| format!("node{}: {e}", n.id))).collect();
            bail!("no leader within {} s ({})", within.as_secs(), errors.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
