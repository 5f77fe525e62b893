//! A local cluster for the nemesis: keys, an inventory and node configs in
//! a run directory, and one `paxos serve` child process per node on
//! 127.0.0.1. Every signal goes to the PID of a child spawned here; the
//! guard kills (SIGCONT, then SIGKILL) whatever still runs when dropped,
//! and unmounts the small disk it may have mounted for one node.
//!
//! Layout: node N's data directory is `nodeN/data` (so `nodeN` can be a
//! mount point), its peer-fault rules `nodeN.faults` (read by the daemon
//! through `PAXOS_FAULT_FILE`), its output `nodeN.log`.

use super::NemesisError;
use crate::cluster::Inventory;
use crate::keys;
use crate::ops::api::NodeStatus;
use crate::ssh::client::SshClient;
use crate::ssh::faults::FAULT_FILE_ENV;
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
    /// The peer-fault rules this node's daemon polls.
    pub fault_file: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// A small tmpfs mounted on one node's directory, for the full-disk fault.
pub struct SmallDisk {
    pub node: u64,
    pub mount_point: PathBuf,
    /// The file that fills the disk while the fault lasts.
    pub filler: PathBuf,
    pub bytes: u64,
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

    /// The status of each of `ids`, asked in parallel; `None` for a node that did not answer within `within`.
    pub async fn statuses(&self, ids: &[u64], within: Duration) -> Vec<(u64, Option<NodeStatus>)> {
        let asks = ids.iter().map(|&id| async move {
            let answer = self.run(id, "status --json", within).await;
            (id, answer.ok().and_then(|(_, out)| serde_json::from_str::<NodeStatus>(&out).ok()))
        });
        futures::future::join_all(asks).await
    }
}

pub struct LocalCluster {
    pub dir: PathBuf,
    pub exe: PathBuf,
    pub nodes: Vec<NodeProcess>,
    pub access: Access,
    /// Mounted by `mount_small_disk`; unmounted on drop.
    pub disk: Option<SmallDisk>,
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
            let data_dir = dir.join(format!("node{id}")).join("data");
            let node_config = serde_json::json!({
                "id": id, "listen": format!("127.0.0.1:{port}"), "data_dir": data_dir,
                "key_file": key_path, "cluster_file": inventory_path,
            });
            write(&config, &node_config.to_string())?;
            let log = dir.join(format!("node{id}.log"));
            let fault_file = dir.join(format!("node{id}.faults"));
            nodes.push(NodeProcess { id, config, log, data_dir, fault_file, child: None, paused: false });
        }
        let (operator, operator_public) = key("operator")?;
        let doc = serde_json::json!({"all": {"hosts": entries, "vars": {
            "paxos_cluster": "nemesis", "paxos_tick_ms": 10,
            "paxos_operators": [keys::public_line(&operator_public)],
        }}});
        write(&inventory_path, &serde_json::to_string_pretty(&doc).unwrap_or_default())?;
        let inventory = Inventory::load(&inventory_path).map_err(|e| NemesisError::Setup(e.to_string()))?;
        let identity = keys::load_private(&operator).map_err(|e| NemesisError::Setup(e.to_string()))?;
        Ok(LocalCluster {
            dir: dir.to_owned(),
            exe: exe.to_owned(),
            nodes,
            access: Access { inventory, identity },
            disk: None,
        })
    }

    /// Mounts a tmpfs of `bytes` on node `id`'s directory (which holds its
    /// data directory) before the node first starts. Needs the right to
    /// mount (root); the error says why not.
    pub fn mount_small_disk(&mut self, id: u64, bytes: u64) -> Result<(), String> {
        if self.disk.is_some() {
            return Err("a small disk is mounted already".into());
        }
        let node = self.nodes.iter().find(|n| n.id == id).ok_or_else(|| format!("no node {id}"))?;
        if node.child.is_some() {
            return Err(format!("node {id} is running"));
        }
        let mount_point = node.data_dir.parent().ok_or("a data directory without a parent")?.to_owned();
        fs::create_dir_all(&mount_point).map_err(|e| format!("creating {}: {e}", mount_point.display()))?;
        let c = |s: &[u8]| std::ffi::CString::new(s).map_err(|e| e.to_string());
        let target = c(mount_point.as_os_str().as_encoded_bytes())?;
        let (source, fstype, options) = (c(b"tmpfs")?, c(b"tmpfs")?, c(format!("size={bytes},mode=0700").as_bytes())?);
        // SAFETY: mount(2) with valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, options.as_ptr().cast::<libc::c_void>())
        };
        if rc != 0 {
            return Err(format!("mount -t tmpfs on {}: {}", mount_point.display(), std::io::Error::last_os_error()));
        }
        self.disk = Some(SmallDisk { node: id, filler: mount_point.join("filler"), mount_point, bytes });
        Ok(())
    }

    /// Fills the small disk until a write fails; returns the bytes written.
    pub fn fill_disk(&self) -> Result<u64, String> {
        use std::io::Write;
        let disk = self.disk.as_ref().ok_or("no small disk is mounted")?;
        let mut file = fs::File::create(&disk.filler).map_err(|e| format!("{}: {e}", disk.filler.display()))?;
        let mut written = 0u64;
        // Large blocks first, then pages, so the disk ends up full to the page.
        for block in [1 << 20, 4096] {
            let zeros = vec![0u8; block];
            // Bounded: the disk holds `bytes`, and each write adds a block.
            for _ in 0..=disk.bytes / block as u64 {
                match file.write_all(&zeros) {
                    Ok(()) => written += block as u64,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => return Err(format!("filling {}: {e}", disk.filler.display())),
                }
            }
        }
        Ok(written)
    }

    /// Deletes the filler (when there is one).
    pub fn free_disk(&self) -> Result<(), String> {
        let Some(disk) = &self.disk else { return Ok(()) };
        match fs::remove_file(&disk.filler) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{}: {e}", disk.filler.display())),
            _ => Ok(()),
        }
    }

    fn unmount(&mut self) {
        let Some(disk) = self.disk.take() else { return };
        let Ok(target) = std::ffi::CString::new(disk.mount_point.as_os_str().as_encoded_bytes()) else { return };
        // SAFETY: umount2(2) on the tmpfs mounted above; a lazy detach if it is busy.
        unsafe {
            if libc::umount2(target.as_ptr(), 0) != 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }

    /// Replaces node `id`'s peer-fault rules (the daemon picks them up
    /// within its poll interval); an empty text clears them. Written to a
    /// temp file and renamed, so the daemon never reads half a file.
    pub fn set_peer_faults(&self, id: u64, rules: &str) -> Result<(), NemesisError> {
        let node =
            self.nodes.iter().find(|n| n.id == id).ok_or_else(|| NemesisError::Setup(format!("no node {id}")))?;
        crate::ssh::faults::write_rules(&node.fault_file, rules)
            .map_err(|e| NemesisError::Setup(format!("writing {}: {e}", node.fault_file.display())))
    }

    /// As `set_peer_faults`, then waits (polling, up to `within`) until a
    /// running node's log says it applied them, so a fault's time is when it
    /// took effect. Returns whether it did.
    pub async fn set_peer_faults_confirmed(
        &self,
        id: u64,
        rules: &str,
        within: Duration,
    ) -> Result<bool, NemesisError> {
        use std::io::{Read, Seek, SeekFrom};
        let node =
            self.nodes.iter().find(|n| n.id == id).ok_or_else(|| NemesisError::Setup(format!("no node {id}")))?;
        let from = fs::metadata(&node.log).map_or(0, |m| m.len());
        self.set_peer_faults(id, rules)?;
        if node.child.is_none() || node.paused {
            return Ok(false);
        }
        let until = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        while tokio::time::Instant::now() < until {
            if let Ok(mut log) = fs::File::open(&node.log)
                && log.seek(SeekFrom::Start(from)).is_ok()
            {
                seen.clear();
                let _ = log.read_to_end(&mut seen);
                if String::from_utf8_lossy(&seen).contains(crate::ssh::faults::APPLIED) {
                    return Ok(true);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(false)
    }

    /// Node `id`'s exit status if it has exited (reaped here), else `None`.
    pub fn try_exit_status(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let node = self.nodes.iter_mut().find(|n| n.id == id)?;
        let status = node.child.as_mut()?.try_wait().ok()??;
        node.child = None;
        node.paused = false;
        Some(status)
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
            .env(FAULT_FILE_ENV, &node.fault_file)
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

    /// Every node running, not paused, with no peer faults and a free disk:
    /// what the final checks need.
    pub fn heal(&mut self) -> Result<(), NemesisError> {
        self.free_disk().map_err(NemesisError::Setup)?;
        for id in self.access.node_ids() {
            self.set_peer_faults(id, "")?;
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
        self.unmount();
    }
}
