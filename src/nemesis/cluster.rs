//! A local cluster for the nemesis: keys, an inventory and node configs in
//! a run directory, and one `paxos serve` child process per node on
//! 127.0.0.1. Every signal goes to the PID of a child spawned here; the
//! guard kills (SIGCONT, then SIGKILL) whatever still runs when dropped.

use super::NemesisError;
use crate::cluster::Inventory;
use crate::keys;
use crate::ssh::client::SshClient;
use russh::keys::PrivateKey;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Ports come from below the kernel's ephemeral range, so the many
/// outgoing connections cannot take one while a killed node is down.
const PORTS: std::ops::Range<u16> = 20_000..32_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct NodeProcess {
    pub id: u64,
    pub config: PathBuf,
    pub log: PathBuf,
    pub data_dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// What a client needs to reach the nodes; cheap to share.
#[derive(Clone)]
pub struct Access {
    pub inventory: Inventory,
    pub identity: PrivateKey,
}

impl Access {
    pub fn node_ids(&self) -> Vec<u64> {
        self.inventory.nodes.iter().map(|n| n.id).collect()
    }

    /// An authenticated connection to node `id`, bounded in time.
    pub async fn connect(&self, id: u64) -> Result<SshClient, String> {
        let node = self.inventory.node(id).ok_or_else(|| format!("no node {id}"))?;
        let pinned = self.inventory.host_key(id).map_err(|e| e.to_string())?;
        let address = node.address();
        let connect = SshClient::connect(&address, &pinned, &self.identity);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(client) => client.map_err(|e| e.to_string()),
            Err(_) => Err(format!("node {id}: no connection within {CONNECT_TIMEOUT:?}")),
        }
    }

    /// Runs one command on node `id`: its exit status and stdout, or why not.
    pub async fn run(&self, id: u64, line: &str, within: Duration) -> Result<(u32, String), String> {
        let work = async {
            let client = self.connect(id).await?;
            let out = client.run(&format!("paxos {line}")).await.map_err(|e| e.to_string())?;
            client.disconnect().await;
            let code = out.exit_status.ok_or_else(|| format!("node {id} closed the channel without an exit status"))?;
            Ok((code, String::from_utf8_lossy(&out.stdout).into_owned()))
        };
        tokio::time::timeout(within, work).await.unwrap_or_else(|_| Err(format!("node {id}: no answer in {within:?}")))
    }
}

pub struct LocalCluster {
    pub dir: PathBuf,
    pub exe: PathBuf,
    pub nodes: Vec<NodeProcess>,
    pub access: Access,
}

fn free_port(seed: u64, taken: &[u16]) -> Result<u16, NemesisError> {
    let span = u64::from(PORTS.end - PORTS.start);
    let first = seed % span;
    (0..span)
        .map(|k| PORTS.start + ((first + k * 7) % span) as u16)
        .find(|p| !taken.contains(p) && TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| NemesisError::Setup(format!("no free port on 127.0.0.1 in {PORTS:?}")))
}

fn write(path: &Path, text: &str) -> Result<(), NemesisError> {
    fs::write(path, text).map_err(|e| NemesisError::Setup(format!("writing {}: {e}", path.display())))
}

impl LocalCluster {
    /// Keys, inventory and configs for `n` nodes under `dir`; nothing runs yet.
    pub fn prepare(dir: &Path, exe: &Path, n: u64, seed: u64) -> Result<LocalCluster, NemesisError> {
        let setup = |what: String| move |e: std::io::Error| NemesisError::Setup(format!("{what}: {e}"));
        let keys_dir = dir.join("keys");
        fs::create_dir_all(&keys_dir).map_err(setup(format!("creating {}", keys_dir.display())))?;
        let key = |name: &str| {
            let path = keys_dir.join(name);
            keys::generate_ed25519(&path, name)
                .map(|public| (path, public))
                .map_err(|e| NemesisError::Setup(format!("key {name}: {e}")))
        };
        let inventory_path = dir.join("cluster.json");
        let salt = seed ^ u64::from(std::process::id()).wrapping_mul(7919);
        let (mut entries, mut nodes, mut ports) = (serde_json::Map::new(), Vec::new(), Vec::new());
        for id in 1..=n {
            let (key_path, public) = key(&format!("node{id}"))?;
            let port = free_port(salt.wrapping_add(id * 104_729), &ports)?;
            ports.push(port);
            entries.insert(
                format!("node{id}"),
                serde_json::json!({"ansible_host": "127.0.0.1", "paxos_id": id, "paxos_port": port,
                                   "paxos_host_key": keys::public_line(&public)}),
            );
            let config = dir.join(format!("node{id}.json"));
            let node_config = serde_json::json!({
                "id": id, "listen": format!("127.0.0.1:{port}"), "data_dir": dir.join(format!("node{id}")),
                "key_file": key_path, "cluster_file": inventory_path,
            });
            write(&config, &node_config.to_string())?;
            let log = dir.join(format!("node{id}.log"));
            let data_dir = dir.join(format!("node{id}"));
            nodes.push(NodeProcess { id, config, log, data_dir, child: None, paused: false });
        }
        let (operator, operator_public) = key("operator")?;
        let doc = serde_json::json!({"all": {"hosts": entries, "vars": {
            "paxos_cluster": "nemesis", "paxos_tick_ms": 10,
            "paxos_operators": [keys::public_line(&operator_public)],
        }}});
        write(&inventory_path, &serde_json::to_string_pretty(&doc).unwrap_or_default())?;
        let inventory = Inventory::load(&inventory_path).map_err(|e| NemesisError::Setup(e.to_string()))?;
        let identity = keys::load_private(&operator).map_err(|e| NemesisError::Setup(e.to_string()))?;
        Ok(LocalCluster { dir: dir.to_owned(), exe: exe.to_owned(), nodes, access: Access { inventory, identity } })
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut NodeProcess, NemesisError> {
        self.nodes.iter_mut().find(|n| n.id == id).ok_or_else(|| NemesisError::Setup(format!("no node {id}")))
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.iter().any(|n| n.id == id && n.child.is_some())
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes.iter().any(|n| n.id == id && n.paused)
    }

    /// `paxos serve --config nodeN.json`, its output appended to nodeN.log.
    pub fn spawn(&mut self, id: u64) -> Result<(), NemesisError> {
        let exe = self.exe.clone();
        let node = self.node_mut(id)?;
        if node.child.is_some() {
            return Ok(());
        }
        let failed = |e: std::io::Error| NemesisError::Setup(format!("starting node {id}: {e}"));
        let log = fs::OpenOptions::new().create(true).append(true).open(&node.log).map_err(failed)?;
        let mut command = Command::new(exe);
        // The signal follows the spawning thread: `run` and the nemesis run
        // on the thread that calls `block_on`, never on a spawned task.
        // SAFETY: prctl(2) is async-signal-safe; it only asks the kernel to
        // SIGKILL this node if the harness dies, so an aborted run leaves no
        // daemons behind.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&node.config)
            .env("RUST_LOG", "info,russh=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(failed)?)
            .stderr(log)
            .spawn()
            .map_err(failed)?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Sends `signal` to node `id`'s process, which this cluster spawned.
    fn signal(&mut self, id: u64, signal: i32) -> Result<(), NemesisError> {
        let node = self.node_mut(id)?;
        let child = node.child.as_ref().ok_or_else(|| NemesisError::Setup(format!("node {id} is not running")))?;
        let pid = i32::try_from(child.id()).map_err(|_| NemesisError::Setup("pid out of range".into()))?;
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(NemesisError::Setup(format!(
                "signal {signal} to node {id}: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// SIGKILL (kill -9) and reap.
    pub fn kill(&mut self, id: u64) -> Result<(), NemesisError> {
        self.signal(id, libc::SIGKILL)?;
        let node = self.node_mut(id)?;
        if let Some(mut child) = node.child.take() {
            let _ = child.wait();
        }
        node.paused = false;
        Ok(())
    }

    /// Deletes a stopped node's data directory (the lost-disk fault).
    pub fn wipe(&mut self, id: u64) -> Result<(), NemesisError> {
        let node = self.node_mut(id)?;
        if node.child.is_some() {
            return Err(NemesisError::Setup(format!("node {id} must be stopped before its data is wiped")));
        }
        match fs::remove_dir_all(&node.data_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(NemesisError::Setup(format!("wiping {}: {e}", node.data_dir.display())))
            }
            _ => Ok(()),
        }
    }

    pub fn pause(&mut self, id: u64) -> Result<(), NemesisError> {
        self.signal(id, libc::SIGSTOP)?;
        self.node_mut(id)?.paused = true;
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> Result<(), NemesisError> {
        self.signal(id, libc::SIGCONT)?;
        self.node_mut(id)?.paused = false;
        Ok(())
    }

    /// A node that exited by itself (a crash) is reported with its status.
    pub fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push(format!("node {} exited by itself ({status}); see {}", node.id, node.log.display()));
                node.child = None;
            }
        }
        out
    }

    /// Every node running and not paused: what the final checks need.
    pub fn heal(&mut self) -> Result<(), NemesisError> {
        for id in self.access.node_ids() {
            if self.is_paused(id) {
                self.resume(id)?;
            }
            if !self.is_running(id) {
                self.spawn(id)?;
            }
        }
        Ok(())
    }

    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                if let Ok(pid) = i32::try_from(child.id()) {
                    // SAFETY: as in `signal`: our own unreaped child.
                    unsafe { libc::kill(pid, libc::SIGCONT) };
                }
                let _ = child.kill(); // SIGKILL to this child's PID
                let _ = child.wait();
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
