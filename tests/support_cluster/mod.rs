//! Real `paxos serve` daemons for the cluster tests: keys, an inventory and
//! node configs in a temp dir, one child process per node on 127.0.0.1, and
//! the ways operators reach them (the `paxos` CLI and the OpenSSH client).
//!
//! Every wait is a bounded poll of a condition; every child this module
//! starts is killed by its PID when the guard that owns it is dropped.
#![allow(dead_code)] // each test binary uses a different subset

use paxos::keys;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any condition may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(50);
/// The longest one command (CLI or ssh) may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

pub const PAXOS: &str = env!("CARGO_BIN_EXE_paxos");

/// A command's exit code and output.
#[derive(Debug)]
pub struct Out {
    /// `None` if a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn show(&self) -> String {
        format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.show()))
    }
}

/// Runs `cmd` to completion with piped output, killing it (by PID) if it
/// outlives `COMMAND_LIMIT`.
pub fn run(cmd: Command) -> Out {
    run_with_input(cmd, None)
}

/// `run`, with `input` written to the command's stdin (then closed).
pub fn run_with_input(mut cmd: Command, input: Option<&str>) -> Out {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped");
        let input = input.to_owned();
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, input.as_bytes());
        });
    }
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("piped")));
    let stderr = reader(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {COMMAND_LIMIT:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out { code: status.code(), stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

/// Polls `check` every `POLL` until it returns `Some`, for at most `WAIT`;
/// on timeout panics with `what` and whatever `context` says then.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>, context: impl Fn() -> String) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if started.elapsed() > WAIT {
            panic!("timed out after {WAIT:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(POLL);
    }
}

/// A port on 127.0.0.1 that was free a moment ago. Ports come from below
/// the kernel's ephemeral range, so no outgoing connection (the CLI and the
/// nodes dial a lot) can take one between this check and the node binding
/// it, nor while a killed node is down before its restart.
pub fn free_port() -> u16 {
    free_ports_in_a_row(1)
}

/// The first of `n` consecutive free ports (for `paxos up --base-port`).
pub fn free_ports_in_a_row(n: u16) -> u16 {
    const LOW: u16 = 20_000;
    const HIGH: u16 = 32_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if NEXT.load(Ordering::Relaxed) == 0 {
        // Spread concurrent test processes over the range.
        let seed = std::process::id() as u64 * 7919
            + std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
        NEXT.store(LOW + (seed % (HIGH - LOW) as u64) as u16, Ordering::Relaxed);
    }
    for _ in 0..(HIGH - LOW) {
        let mut first = NEXT.load(Ordering::Relaxed);
        if first < LOW || first + n > HIGH {
            first = LOW;
        }
        // Move on either way, so a port handed out is not offered again soon.
        NEXT.store(first + 1, Ordering::Relaxed);
        if (first..first + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            NEXT.store(first + n, Ordering::Relaxed);
            return first;
        }
    }
    panic!("no {n} consecutive free ports on 127.0.0.1 in {LOW}..{HIGH}");
}

/// One node: its files and, while it runs, its process.
pub struct Node {
    pub id: u64,
    pub port: u16,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub key: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// How many times its process was started (each logs "node serving" once).
    starts: usize,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// A cluster of real daemons in a temp dir. Dropping it kills every node
/// still running, by PID.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub inventory: PathBuf,
    pub operator: PathBuf,
    pub reader: PathBuf,
    pub known_hosts: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill(); // SIGKILL to this child's PID
                let _ = child.wait();
            }
        }
    }
}

impl Cluster {
    /// Keys, inventory, known_hosts and node configs for `n` nodes; nothing runs yet.
    pub fn prepare(n: u64) -> Cluster {
        Cluster::prepare_joining(n, 0)
    }

    /// `prepare(seed + joining)`, where the last `joining` nodes are marked
    /// `paxos_join`: outside the seed configuration, waiting to be added.
    pub fn prepare_joining(seed: u64, joining: u64) -> Cluster {
        let n = seed + joining;
        let dir = tempfile::Builder::new().prefix("paxos-itest-").tempdir().expect("temp dir");
        let keys_dir = dir.path().join("keys");
        fs::create_dir(&keys_dir).unwrap();
        let key = |name: &str| {
            let path = keys_dir.join(name);
            let public = keys::generate_ed25519(&path, name).expect("generate key");
            (path, public)
        };
        let mut entries = serde_json::Map::new();
        let mut known_hosts = String::new();
        let mut nodes = Vec::new();
        let inventory = dir.path().join("cluster.json");
        for id in 1..=n {
            let (key_path, public) = key(&format!("node{id}"));
            let port = free_port();
            known_hosts.push_str(&keys::known_hosts_line("127.0.0.1", port, &public));
            known_hosts.push('\n');
            let mut host = json!({"ansible_host": "127.0.0.1", "paxos_id": id, "paxos_port": port,
                                  "paxos_host_key": keys::public_line(&public)});
            if id > seed {
                host["paxos_join"] = json!(true);
            }
            entries.insert(format!("node{id}"), host);
            let data_dir = dir.path().join(format!("node{id}"));
            let config = dir.path().join(format!("node{id}.json"));
            let node_config = json!({
                "id": id, "listen": format!("127.0.0.1:{port}"), "data_dir": data_dir,
                "key_file": key_path, "cluster_file": inventory,
            });
            fs::write(&config, serde_json::to_string_pretty(&node_config).unwrap()).unwrap();
            let log = dir.path().join(format!("node{id}.log"));
            nodes.push(Node { id, port, config, data_dir, key: key_path, log, child: None, starts: 0 });
        }
        let (operator, operator_public) = key("operator");
        let (reader, reader_public) = key("reader");
        let doc = json!({"all": {"hosts": entries, "vars": {
            "paxos_cluster": "itest", "paxos_tick_ms": 10,
            "paxos_operators": [keys::public_line(&operator_public)],
            "paxos_readers": [keys::public_line(&reader_public)],
        }}});
        fs::write(&inventory, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let known = dir.path().join("known_hosts");
        fs::write(&known, known_hosts).unwrap();
        Cluster { dir, nodes, inventory, operator, reader, known_hosts: known }
    }

    /// Sets the inventory's consensus settings (before the nodes start).
    pub fn set_consensus(&self, consensus: Value) {
        let mut doc: Value = serde_json::from_str(&fs::read_to_string(&self.inventory).unwrap()).unwrap();
        doc["all"]["vars"]["paxos_consensus"] = consensus;
        fs::write(&self.inventory, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }

    /// `prepare(n)`, every node started and serving, and one leader elected.
    pub fn start(n: u64) -> Cluster {
        let mut cluster = Cluster::prepare(n);
        cluster.start_all();
        cluster.wait_for_leader();
        cluster
    }

    pub fn start_all(&mut self) {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for &id in &ids {
            self.spawn(id);
        }
        for id in self.nodes.iter().map(|n| n.id).collect::<Vec<_>>() {
            self.wait_serving(id);
        }
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// A machine outside the inventory: its key, a free port and a node
    /// config whose cluster file (`nodeN-cluster.json`) does not exist yet.
    /// Nothing runs; `spawn_with_args` starts it, e.g. with `--join`.
    pub fn new_machine(&mut self, id: u64) -> &Node {
        let key = self.dir.path().join("keys").join(format!("node{id}"));
        let public = keys::generate_ed25519(&key, &format!("node{id}")).expect("generate key");
        let port = free_port();
        // Operators reach it over OpenSSH like the others.
        let mut known = fs::read_to_string(&self.known_hosts).unwrap();
        known.push_str(&keys::known_hosts_line("127.0.0.1", port, &public));
        known.push('\n');
        fs::write(&self.known_hosts, known).unwrap();
        let data_dir = self.dir.path().join(format!("node{id}"));
        let config = self.dir.path().join(format!("node{id}.json"));
        let node_config = json!({
            "id": id, "listen": format!("127.0.0.1:{port}"), "data_dir": data_dir,
            "key_file": key, "cluster_file": self.dir.path().join(format!("node{id}-cluster.json")),
        });
        fs::write(&config, serde_json::to_string_pretty(&node_config).unwrap()).unwrap();
        let log = self.dir.path().join(format!("node{id}.log"));
        self.nodes.push(Node { id, port, config, data_dir, key, log, child: None, starts: 0 });
        self.node(id)
    }

    /// `paxos serve --config nodeN.json`, its output appended to nodeN.log.
    pub fn spawn(&mut self, id: u64) {
        self.spawn_with_env(id, &[]);
    }

    /// `spawn`, with extra environment variables for the daemon (test hooks
    /// such as `PAXOS_CLOCK_SKEW_MS`).
    pub fn spawn_with_env(&mut self, id: u64, env: &[(&str, &str)]) {
        self.spawn_with(id, env, &[]);
    }

    /// `spawn`, with extra arguments to `paxos serve`.
    pub fn spawn_with_args(&mut self, id: u64, args: &[&str]) {
        self.spawn_with(id, &[], args);
    }

    fn spawn_with(&mut self, id: u64, env: &[(&str, &str)], args: &[&str]) {
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&node.log).unwrap();
        let child = Command::new(PAXOS)
            .arg("serve")
            .arg("--config")
            .arg(&node.config)
            .args(args)
            .env("RUST_LOG", "info,russh=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {id}: {e}"));
        node.child = Some(child);
        node.starts += 1;
    }

    /// Waits until node `id` logs that it serves; panics if it exits instead.
    pub fn wait_serving(&mut self, id: u64) {
        let started = Instant::now();
        loop {
            if self.log(id).matches("node serving").count() >= self.node(id).starts {
                return;
            }
            if let Some(status) = self.exited(id) {
                panic!("node {id} exited ({status}) instead of serving\n{}", self.logs());
            }
            if started.elapsed() > WAIT {
                panic!("node {id} not serving after {WAIT:?}\n{}", self.logs());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Restarts a node that was killed or stopped, with the same config.
    pub fn restart(&mut self, id: u64) {
        self.spawn(id);
        self.wait_serving(id);
    }

    /// SIGKILL node `id` by its PID, and reap it.
    pub fn kill(&mut self, id: u64) {
        let mut child = self.node_mut(id).child.take().unwrap_or_else(|| panic!("node {id} is not running"));
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    /// SIGTERM node `id` by its PID and wait (bounded) for it to exit cleanly.
    pub fn stop(&mut self, id: u64) {
        let mut child = self.node_mut(id).child.take().unwrap_or_else(|| panic!("node {id} is not running"));
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM node {id}");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if started.elapsed() > WAIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {id} still running {WAIT:?} after SIGTERM; killed it\n{}", self.logs());
            }
            std::thread::sleep(POLL);
        };
        assert!(status.success(), "node {id} stopped with {status}\n{}", self.logs());
    }

    /// Sends `signal` (e.g. SIGSTOP to freeze it) to node `id`'s process, by its PID.
    pub fn signal(&self, id: u64, signal: i32) {
        let pid = i32::try_from(self.node(id).pid().unwrap_or_else(|| panic!("node {id} is not running"))).unwrap();
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal {signal} to node {id}");
    }

    /// Whether node `id`'s process has exited by itself; reaps it if so.
    pub fn exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let node = self.node_mut(id);
        let status = node.child.as_mut()?.try_wait().ok().flatten()?;
        node.child = None;
        Some(status)
    }

    pub fn log(&self, id: u64) -> String {
        fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            let log = self.log(node.id);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            text.push_str(&format!("--- node {} log (last {} lines) ---\n{}\n", node.id, tail.len(), tail.join("\n")));
        }
        text
    }

    /// `paxos --cluster INVENTORY -i KEY ARGS`.
    pub fn cli_as(&self, key: &Path, args: &[&str]) -> Out {
        let mut cmd = Command::new(PAXOS);
        cmd.arg("--cluster").arg(&self.inventory).arg("-i").arg(key).args(args);
        run(cmd)
    }

    /// The CLI with the operator key.
    pub fn cli(&self, args: &[&str]) -> Out {
        self.cli_as(&self.operator, args)
    }

    /// The CLI with the operator key; panics unless it exits 0.
    pub fn cli_ok(&self, args: &[&str]) -> Out {
        let out = self.cli(args);
        assert_eq!(out.code, Some(0), "paxos {args:?}\n{}\n{}", out.show(), self.logs());
        out
    }

    /// The real OpenSSH client against node `id`, pinned by our known_hosts.
    pub fn ssh_command(&self, id: u64, key: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/ssh");
        cmd.arg("-F")
            .arg("/dev/null")
            .arg("-p")
            .arg(self.node(id).port.to_string())
            .arg("-i")
            .arg(key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "127.0.0.1",
            ])
            .args(args);
        cmd
    }

    pub fn ssh(&self, id: u64, key: &Path, args: &[&str]) -> Out {
        run(self.ssh_command(id, key, args))
    }

    /// `ssh -s paxos ARGS` on node `id` with the operator key.
    pub fn paxos_on(&self, id: u64, args: &[&str]) -> Out {
        let mut words = vec!["-s", "paxos"];
        words.extend_from_slice(args);
        self.ssh(id, &self.operator.clone(), &words)
    }

    /// `status --json` of every node, through the CLI: `None` for a node that did not answer.
    pub fn statuses(&self) -> Vec<(u64, Option<Value>)> {
        let out = self.cli(&["status", "--json"]);
        if out.code != Some(0) {
            return self.nodes.iter().map(|n| (n.id, None)).collect();
        }
        let rows = out.json();
        rows.as_array()
            .expect("status --json is an array")
            .iter()
            .map(|row| {
                let id = row["id"].as_u64().expect("id");
                let status = (row["up"] == json!(true)).then(|| row["status"].clone());
                (id, status)
            })
            .collect()
    }

    /// Waits until the running nodes agree: exactly one leader, every other
    /// running node a follower of it at the same ballot. Returns the leader
    /// and its ballot.
    pub fn wait_for_leader(&self) -> (u64, Ballot) {
        let running: BTreeSet<u64> = self.nodes.iter().filter(|n| n.running()).map(|n| n.id).collect();
        let last = std::cell::RefCell::new(String::new());
        eventually(
            "one leader that every running node follows",
            || {
                let rows = self.statuses();
                *last.borrow_mut() = format!("{rows:?}");
                let up: Vec<&Value> =
                    rows.iter().filter(|(id, _)| running.contains(id)).filter_map(|(_, s)| s.as_ref()).collect();
                if up.len() != running.len() {
                    return None;
                }
                let leaders: Vec<&&Value> = up.iter().filter(|s| s["role"] == "leader").collect();
                let [leader] = leaders.as_slice() else { return None };
                let id = leader["id"].as_u64()?;
                let ballot = Ballot::of(&leader["ballot"]);
                let all_follow = up.iter().all(|s| {
                    s["leader"].as_u64() == Some(id)
                        && Ballot::of(&s["ballot"]) == ballot
                        && (s["id"].as_u64() == Some(id) || s["role"] == "follower")
                });
                all_follow.then_some((id, ballot))
            },
            || format!("last statuses: {}\n{}", last.borrow(), self.logs()),
        )
    }

    /// Waits until every running node has applied at least `index` slots.
    pub fn wait_applied(&self, ids: &[u64], index: u64) {
        let last = std::cell::RefCell::new(String::new());
        eventually(
            &format!("nodes {ids:?} to apply {index} slots"),
            || {
                let rows = self.statuses();
                *last.borrow_mut() = format!("{rows:?}");
                ids.iter()
                    .all(|id| {
                        rows.iter().any(|(i, s)| {
                            i == id && s.as_ref().and_then(|s| s["applied_index"].as_u64()).is_some_and(|a| a >= index)
                        })
                    })
                    .then_some(())
            },
            || format!("last statuses: {}\n{}", last.borrow(), self.logs()),
        );
    }

    /// `put KEY VALUE` through the CLI; returns the slot it was decided in.
    pub fn put(&self, key: &str, value: &str) -> u64 {
        let out = self.cli_ok(&["put", key, value, "--json"]);
        out.json()["slot"].as_u64().unwrap_or_else(|| panic!("no slot in {}", out.show()))
    }

    /// A linearizable `get KEY` through the CLI.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.cli_ok(&["get", key, "--json"]);
        out.json()["value"].as_str().map(String::from)
    }

    /// `get KEY --stale` on node `id` over OpenSSH: what that node has applied.
    pub fn get_stale_on(&self, id: u64, key: &str) -> Option<String> {
        let out = self.paxos_on(id, &["get", key, "--stale", "--json"]);
        assert_eq!(out.code, Some(0), "get --stale on node {id}\n{}", out.show());
        out.json()["value"].as_str().map(String::from)
    }
}

/// A ballot from `status --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ballot {
    pub round: u64,
    pub node: u64,
}

impl Ballot {
    pub fn of(v: &Value) -> Ballot {
        Ballot { round: v["round"].as_u64().unwrap_or(0), node: v["node"].as_u64().unwrap_or(0) }
    }
}

/// A child process that outlives one command (`ssh … watch`): its stdout
/// arrives line by line, and dropping it kills it by its PID.
pub struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Streaming {
    pub fn spawn(mut cmd: Command) -> Streaming {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines, stderr: Some(stderr) }
    }

    /// Waits (bounded) for the process to end by itself: its exit code, the
    /// stdout lines not read yet, and its stderr.
    pub fn wait_exit(mut self) -> Out {
        let status = eventually("the streaming command to exit", || self.child.try_wait().ok().flatten(), String::new);
        // The reader thread sees the end of the pipe soon after the exit.
        let deadline = Instant::now() + WAIT;
        let mut stdout = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            stdout.push(line);
        }
        let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        Out { code: status.code(), stdout: stdout.join("\n"), stderr }
    }

    /// Reads lines until one satisfies `wanted`; every line read is returned.
    pub fn read_until(&mut self, wanted: impl Fn(&str) -> bool) -> Result<Vec<String>, Vec<String>> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = wanted(&line);
                    seen.push(line);
                    if done {
                        return Ok(seen);
                    }
                }
                Err(_) => return Err(seen),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to this process, by its PID.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal {signal} to pid {pid}");
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nodes of a `paxos up` run (and any a test or drill restarted),
/// killed by PID when dropped: only a PID whose command line is `serve`
/// with this run's data directory.
pub struct UpNodes {
    pub pids: Vec<u32>,
    pub data: PathBuf,
}

impl UpNodes {
    pub fn alive(&self, pid: u32) -> bool {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(" serve ") && cmdline.contains(&*self.data.to_string_lossy())
        })
    }
}

impl Drop for UpNodes {
    fn drop(&mut self) {
        for &pid in &self.pids {
            if self.alive(pid) {
                // SAFETY: kill(2) on a PID just checked to be one of this test's nodes.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// A 3-node `paxos up` in a temp dir, on free ports, once it printed its leader.
pub struct Up {
    pub dir: tempfile::TempDir,
    pub keys: PathBuf,
    pub hosts: PathBuf,
    pub data: PathBuf,
    pub base_port: u16,
    /// `paxos up` itself (SIGKILLed when dropped, before the nodes).
    pub up: Streaming,
    pub nodes: UpNodes,
}

impl Up {
    pub fn start() -> Up {
        let dir = tempfile::Builder::new().prefix("paxos-itest-up-").tempdir().unwrap();
        let (keys, hosts, data) =
            (dir.path().join("keys"), dir.path().join("hosts/local.json"), dir.path().join("data"));
        let base_port = free_ports_in_a_row(3);
        let mut cmd = Command::new(PAXOS);
        cmd.args(["up", "--nodes", "3", "--base-port", &base_port.to_string()])
            .arg("--keys")
            .arg(&keys)
            .arg("--hosts")
            .arg(&hosts)
            .arg("--data")
            .arg(&data);
        let mut up = Streaming::spawn(cmd);
        let mut nodes = UpNodes { pids: Vec::new(), data: data.clone() };
        let seen = up
            .read_until(|line| line.starts_with("cluster \"local\" is up: 3 nodes, leader node"))
            .unwrap_or_else(|seen| panic!("paxos up did not come up: {seen:?}"));
        for line in &seen {
            if let Some(pid) = line.split("(pid ").nth(1).and_then(|rest| rest.split(')').next()?.parse().ok()) {
                nodes.pids.push(pid);
            }
        }
        assert_eq!(nodes.pids.len(), 3, "{seen:?}");
        Up { dir, keys, hosts, data, base_port, up, nodes }
    }
}
