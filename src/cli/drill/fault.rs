//! How a drill's fault reaches the leader: `step-down` for a transfer; a
//! signal (or the peer-fault file) for a `paxos up` node on this machine;
//! otherwise a shell command template from the flags or the inventory
//! (`paxos_drill_kill_cmd`, ...), with `{host}`, `{name}`, `{id}` and
//! `{addr}` replaced by the node's values, shell-quoted, run by `sh -c`
//! and bounded by a timeout.

use super::Kind;
use super::process::{LocalProcess, is_loopback};
use crate::cluster::NodeEntry;
use crate::nemesis::cluster::Access;
use crate::ops::api::NodeStatus;
use crate::ops::quote;
use crate::ssh::faults::{isolation_rules, write_rules};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

const PLACEHOLDERS: [&str; 4] = ["host", "name", "id", "addr"];
const STEP_DOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The template names of a kind's fault and of what undoes it.
pub fn template_names(kind: Kind) -> Option<(&'static str, &'static str)> {
    match kind {
        Kind::Transfer => None,
        Kind::KillLeader => Some(("kill", "restore")),
        Kind::StopLeader => Some(("stop", "cont")),
        Kind::PartitionLeader => Some(("partition", "heal")),
    }
}

/// Every placeholder in `template` is a known one, and its braces are balanced.
pub fn check_template(template: &str) -> Result<(), String> {
    expand(template, &|_| Some(String::new())).map(|_| ())
}

/// `template` with each `{placeholder}` replaced by `value(placeholder)`, in one pass.
fn expand(template: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("{template:?}: a `{{` without its `}}`"))?;
        let name = &after[..close];
        let known = PLACEHOLDERS.contains(&name).then(|| value(name)).flatten();
        let text = known.ok_or_else(|| {
            format!(
                "{template:?}: unknown placeholder {{{name}}}; the placeholders are {{host}} {{name}} {{id}} {{addr}}"
            )
        })?;
        out.push_str(&text);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A template with the node's values in place, each quoted for the shell.
pub fn expand_for(template: &str, node: &NodeEntry) -> Result<String, String> {
    expand(template, &|name| {
        let raw = match name {
            "host" => node.host.clone(),
            "name" => node.name.clone(),
            "id" => node.id.to_string(),
            _ => node.address(),
        };
        // `quote` writes a control character as `$'...'`, which POSIX sh
        // does not know; plain single quotes carry any byte to `sh -c`.
        Some(if raw.chars().any(char::is_control) {
            format!("'{}'", raw.replace('\'', r"'\''"))
        } else {
            quote::quote(&raw)
        })
    })
}

/// Command templates from the flags (which win) and from the inventory.
#[derive(Clone, Debug, Default)]
pub struct Templates {
    /// "kill" -> template, from `--kill-cmd` and its kind.
    pub flags: BTreeMap<&'static str, String>,
    /// Node id -> `paxos_drill_*_cmd` -> template.
    pub inventory: BTreeMap<u64, BTreeMap<String, String>>,
}

impl Templates {
    fn get(&self, node: u64, name: &str) -> Option<&String> {
        self.flags.get(name).or_else(|| self.inventory.get(&node)?.get(&format!("paxos_drill_{name}_cmd")))
    }

    /// The fault's and the restore's commands for `node`, when templates are given.
    pub fn commands(&self, kind: Kind, node: &NodeEntry) -> Result<Option<Commands>, String> {
        let Some((fault, restore)) = template_names(kind) else { return Ok(None) };
        match (self.get(node.id, fault), self.get(node.id, restore)) {
            (None, None) => Ok(None),
            (Some(f), Some(r)) => Ok(Some(Commands { fault: expand_for(f, node)?, restore: expand_for(r, node)? })),
            (Some(_), None) => Err(format!(
                "--{fault}-cmd is given for {} but not --{restore}-cmd (or paxos_drill_{restore}_cmd): the drill \
                 must be able to undo its fault",
                node.name
            )),
            (None, Some(_)) => Err(format!(
                "--{restore}-cmd is given for {} but not --{fault}-cmd (or paxos_drill_{fault}_cmd)",
                node.name
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commands {
    pub fault: String,
    pub restore: String,
}

/// How the fault is applied to one node.
#[derive(Clone, Debug)]
pub enum Method {
    StepDown,
    Local(LocalProcess),
    Template(Commands),
}

impl Method {
    /// How a kind's fault reaches `node`, or why it cannot (then the
    /// message says which flag or inventory variable to give).
    pub fn resolve(
        kind: Kind,
        node: &NodeEntry,
        status: Option<&NodeStatus>,
        templates: &Templates,
    ) -> Result<Method, String> {
        if kind == Kind::Transfer {
            return Ok(Method::StepDown);
        }
        if let Some(commands) = templates.commands(kind, node)? {
            return Ok(Method::Template(commands));
        }
        let (fault, restore) = template_names(kind).unwrap_or(("kill", "restore"));
        let hint = format!(
            "give --{fault}-cmd and --{restore}-cmd (placeholders {{host}} {{name}} {{id}} {{addr}}), or set \
             paxos_drill_{fault}_cmd and paxos_drill_{restore}_cmd in the inventory"
        );
        if !is_loopback(&node.host) {
            return Err(format!(
                "{} ({}) is not on this machine, so the drill cannot signal it; {hint}",
                node.name,
                node.address()
            ));
        }
        let status = status.ok_or_else(|| format!("{} did not answer its status; {hint}", node.name))?;
        let process = LocalProcess::inspect(node, status).map_err(|why| {
            format!("{} ({}) is not a local node this drill may signal: {why}; {hint}", node.name, node.address())
        })?;
        if kind == Kind::PartitionLeader && process.fault_file.is_none() {
            return Err(format!(
                "{} (pid {}) was started without a peer-fault file (PAXOS_FAULT_FILE; `paxos up` sets one): \
                 restart it with `paxos up`, or {hint}",
                node.name, process.pid
            ));
        }
        Ok(Method::Local(process))
    }

    pub fn describe(&self) -> String {
        match self {
            Method::StepDown => "step-down".into(),
            Method::Local(p) => format!("local process {}", p.pid),
            Method::Template(c) => format!("command `{}`", c.fault),
        }
    }

    /// Applies the fault to `node` (the leader); `peers` are the others.
    pub async fn apply(
        &self,
        kind: Kind,
        access: &Access,
        node: u64,
        peers: &[u64],
        timeout: Duration,
    ) -> Result<(), String> {
        match (self, kind) {
            (Method::StepDown, _) => match access.run(node, "step-down --json", STEP_DOWN_TIMEOUT).await? {
                (0, _) => Ok(()),
                (code, out) => Err(format!("step-down on node {node}: exit {code}: {}", out.trim())),
            },
            (Method::Local(p), Kind::KillLeader) => p.signal(libc::SIGKILL),
            (Method::Local(p), Kind::StopLeader) => p.signal(libc::SIGSTOP),
            (Method::Local(p), _) => set_rules(p, &isolation_rules(peers.iter().copied(), true)),
            (Method::Template(c), _) => run_shell(&c.fault, timeout).await,
        }
    }

    /// Undoes the fault; a restarted process's new pid.
    pub async fn restore(&self, kind: Kind, timeout: Duration) -> Result<Option<u32>, String> {
        match (self, kind) {
            (Method::StepDown, _) => Ok(None),
            (Method::Local(p), Kind::KillLeader) => p.respawn().await.map(Some),
            (Method::Local(p), Kind::StopLeader) => p.signal(libc::SIGCONT).map(|()| None),
            (Method::Local(p), _) => set_rules(p, "").map(|()| None),
            (Method::Template(c), _) => run_shell(&c.restore, timeout).await.map(|()| None),
        }
    }
}

fn set_rules(process: &LocalProcess, rules: &str) -> Result<(), String> {
    let path = process.fault_file.as_ref().ok_or("no peer-fault file")?;
    write_rules(path, rules).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Runs `command` with `sh -c`; an error names its exit status and the end of its stderr.
pub async fn run_shell(command: &str, timeout: Duration) -> Result<(), String> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting `sh -c {command}`: {e}"))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output.map_err(|e| format!("`{command}`: {e}"))?,
        Err(_) => return Err(format!("`{command}` did not finish within {} s; stopped it", timeout.as_secs())),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr.trim().chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!("`{command}` failed ({}): {tail}", output.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeEntry {
        NodeEntry {
            id: 2,
            name: "db 2".into(),
            host: "10.0.0.12".into(),
            port: 7100,
            roles: vec![],
            host_key: None,
            join: false,
        }
    }

    #[test]
    fn templates_expand_quoted_in_one_pass() {
        let cmd = expand_for("ssh {host} sudo systemctl kill -s KILL paxos # {name} {id} {addr}", &node()).unwrap();
        assert_eq!(cmd, "ssh 10.0.0.12 sudo systemctl kill -s KILL paxos # 'db 2' 2 10.0.0.12:7100");
        let named = NodeEntry { name: "{host}".into(), ..node() };
        assert_eq!(expand_for("x {name}", &named).unwrap(), "x '{host}'");
        // A control character stays inside POSIX single quotes (sh has no $'...').
        let odd = NodeEntry { name: "a\nb'c".into(), ..node() };
        assert_eq!(expand_for("x {name}", &odd).unwrap(), "x 'a\nb'\\''c'");
        let out =
            std::process::Command::new("sh").args(["-c", &expand_for("printf %s {name}", &odd).unwrap()]).output();
        assert_eq!(out.unwrap().stdout, b"a\nb'c");
        assert!(check_template("ssh {hots}").unwrap_err().contains("unknown placeholder {hots}"));
        assert!(check_template("ssh {host").unwrap_err().contains("without"));
        assert!(check_template("true").is_ok());
    }

    #[test]
    fn a_fault_template_needs_its_restore_and_flags_win_over_the_inventory() {
        let mut templates = Templates::default();
        templates.inventory.insert(2, BTreeMap::from([("paxos_drill_stop_cmd".into(), "inv-stop {id}".into())]));
        let e = templates.commands(Kind::StopLeader, &node()).unwrap_err();
        assert!(e.contains("--cont-cmd"), "{e}");
        templates.flags.insert("cont", "cont {id}".into());
        let c = templates.commands(Kind::StopLeader, &node()).unwrap().unwrap();
        assert_eq!(c, Commands { fault: "inv-stop 2".into(), restore: "cont 2".into() });
        templates.flags.insert("stop", "flag-stop".into());
        assert_eq!(templates.commands(Kind::StopLeader, &node()).unwrap().unwrap().fault, "flag-stop");
        assert_eq!(templates.commands(Kind::KillLeader, &node()).unwrap(), None);
        assert_eq!(templates.commands(Kind::Transfer, &node()).unwrap(), None);
    }

    #[test]
    fn a_remote_node_without_templates_is_refused_with_the_flags_to_give() {
        let e = Method::resolve(Kind::KillLeader, &node(), None, &Templates::default()).unwrap_err();
        assert!(e.contains("not on this machine") && e.contains("--kill-cmd"), "{e}");
        assert!(e.contains("paxos_drill_restore_cmd"), "{e}");
        assert!(matches!(Method::resolve(Kind::Transfer, &node(), None, &Templates::default()), Ok(Method::StepDown)));
    }

    #[tokio::test]
    async fn shell_commands_report_failure_and_are_bounded() {
        assert_eq!(run_shell("true", Duration::from_secs(5)).await, Ok(()));
        let e = run_shell("echo nope >&2; exit 3", Duration::from_secs(5)).await.unwrap_err();
        assert!(e.contains("nope") && e.contains('3'), "{e}");
        let e = run_shell("sleep 5", Duration::from_millis(100)).await.unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
    }
}
