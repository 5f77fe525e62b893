//! A `paxos serve` process on this machine (a `paxos up` node), found by
//! the pid its status gives: signalled only when the node's address is
//! loopback, the process belongs to the current user and runs a paxos
//! binary as `paxos serve`. What restarts it after a SIGKILL (its command
//! line, working directory, environment and log) is read from /proc before
//! the kill.

use crate::cluster::NodeEntry;
use crate::ops::api::NodeStatus;
use crate::ssh::faults::FAULT_FILE_ENV;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct LocalProcess {
    pub pid: u32,
    argv: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    /// Where its output goes (a `paxos up` node's log), if a file.
    pub log: Option<PathBuf>,
    /// Its peer-fault file (`PAXOS_FAULT_FILE`), if it has one.
    pub fault_file: Option<PathBuf>,
}

/// Whether `host` names this machine's loopback interface.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn split_nul(bytes: Vec<u8>) -> Vec<Vec<u8>> {
    bytes.split(|b| *b == 0).filter(|w| !w.is_empty()).map(<[u8]>::to_vec).collect()
}

impl LocalProcess {
    /// The node's daemon on this machine, or why it may not be signalled from here.
    pub fn inspect(node: &NodeEntry, status: &NodeStatus) -> Result<LocalProcess, String> {
        if !is_loopback(&node.host) {
            return Err(format!("{} is not a loopback address", node.host));
        }
        let pid = status.pid;
        if pid == 0 {
            return Err("its status gives no pid (a node older than this paxos)".into());
        }
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let meta = fs::metadata(&dir).map_err(|e| format!("process {pid}: {e}"))?;
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!("process {pid} belongs to another user (uid {})", meta.uid()));
        }
        let exe = fs::read_link(dir.join("exe")).map_err(|e| format!("process {pid}: its executable: {e}"))?;
        let name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // A binary rebuilt under a running node shows as "paxos (deleted)".
        if name.trim_end_matches(" (deleted)") != "paxos" {
            return Err(format!("process {pid} runs {}, not a paxos binary", exe.display()));
        }
        let cmdline = fs::read(dir.join("cmdline")).map_err(|e| format!("process {pid}: its command line: {e}"))?;
        let argv: Vec<OsString> = split_nul(cmdline).into_iter().map(OsString::from_vec).collect();
        if argv.get(1).and_then(|a| a.to_str()) != Some("serve") {
            return Err(format!("process {pid} is not `paxos serve`"));
        }
        let cwd = fs::read_link(dir.join("cwd")).map_err(|e| format!("process {pid}: its directory: {e}"))?;
        let environ = fs::read(dir.join("environ")).map_err(|e| format!("process {pid}: its environment: {e}"))?;
        let env: Vec<(OsString, OsString)> = split_nul(environ)
            .into_iter()
            .filter_map(|pair| {
                let at = pair.iter().position(|b| *b == b'=')?;
                Some((OsString::from_vec(pair[..at].to_vec()), OsString::from_vec(pair[at + 1..].to_vec())))
            })
            .collect();
        let log = fs::read_link(dir.join("fd/1")).ok().filter(|p| p.is_file());
        let fault_file = env.iter().find(|(k, _)| k == FAULT_FILE_ENV).map(|(_, v)| PathBuf::from(v));
        Ok(LocalProcess { pid, argv, cwd, env, log, fault_file })
    }

    pub fn signal(&self, signal: i32) -> Result<(), String> {
        let pid = i32::try_from(self.pid).map_err(|_| format!("pid {} out of range", self.pid))?;
        // SAFETY: kill(2) on a pid checked by `inspect` to be this user's `paxos serve`.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(format!("signal {signal} to pid {pid}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Whether the process has ended (gone, or a zombie waiting for its parent).
    fn ended(&self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(_) => true,
            // The state follows the parenthesized command name.
            Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    /// Starts the same command again (after a SIGKILL), detached in its own
    /// session, its output appended to the old log; returns the new pid.
    pub async fn respawn(&self) -> Result<u32, String> {
        // Bounded: a SIGKILLed process ends at once; its port is free once it has.
        for _ in 0..100 {
            if self.ended() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !self.ended() {
            return Err(format!("process {} did not end after SIGKILL", self.pid));
        }
        let (program, args) = self.argv.split_first().ok_or("an empty command line")?;
        let output = |what: &str| -> Result<Stdio, String> {
            match &self.log {
                Some(log) => fs::OpenOptions::new()
                    .append(true)
                    .open(log)
                    .map(Stdio::from)
                    .map_err(|e| format!("opening {} for the {what}: {e}", log.display())),
                None => Ok(Stdio::null()),
            }
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(output("output")?)
            .stderr(output("errors")?);
        // SAFETY: setsid(2) is async-signal-safe; the node then outlives the
        // drill and a Ctrl-C in the drill's terminal.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::setsid();
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| format!("starting {program:?} again: {e}"))?;
        Ok(child.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for host in ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "node1.example", "", "::2"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn this_test_process_is_not_a_node_to_signal() {
        let node = NodeEntry {
            id: 1,
            name: "node1".into(),
            host: "127.0.0.1".into(),
            port: 7101,
            roles: vec![],
            host_key: None,
            join: false,
        };
        let mut status: NodeStatus = serde_json::from_value(serde_json::json!({
            "cluster": "c", "id": 1, "name": "node1", "address": "127.0.0.1:7101", "roles": [],
            "role": "leader", "leader": 1, "ballot": {"round": 1, "node": 1}, "promised": {"round": 1, "node": 1},
            "commit_index": 0, "applied_index": 0, "last_heartbeat_age_ms": null, "pending_requests": 0,
            "uptime_ms": 0, "pid": std::process::id(),
        }))
        .unwrap();
        let why = LocalProcess::inspect(&node, &status).unwrap_err();
        assert!(why.contains("not a paxos binary"), "{why}");
        status.pid = 0;
        assert!(LocalProcess::inspect(&node, &status).unwrap_err().contains("no pid"));
        let remote = NodeEntry { host: "10.1.2.3".into(), ..node };
        assert!(LocalProcess::inspect(&remote, &status).unwrap_err().contains("not a loopback"));
    }
}
