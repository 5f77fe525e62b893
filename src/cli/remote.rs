//! Operator commands from a workstation: `paxos --cluster hosts/x.json CMD`.
//! `status` asks every node and prints one row each; other commands go to
//! the first node that answers, and move on to the next node when one is
//! down or has no leader. Mutations carry a request id, so a retry on
//! another node is answered, not applied twice. A node's answer, usage
//! errors included, is final; a read whose node died under it is not
//! carried to the next node (it could be what killed the first).

use crate::cluster::{Inventory, NodeEntry};
use crate::keys;
use crate::ops::api::NodeStatus;
use crate::ops::command::{OpsCommand, parse};
use crate::ops::quote;
use crate::ops::render::duration_text;
use crate::ops::{EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::ssh::client::{SshClient, StreamEvent};
use anyhow::Context;
use futures::StreamExt;
use russh::keys::{PrivateKey, PublicKey};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the CLI needs to reach the cluster.
pub struct Target {
    pub inventory: Inventory,
    pub identity: PrivateKey,
}

impl Target {
    pub fn load(cluster: &Path, identity: &Path) -> anyhow::Result<Target> {
        let inventory = Inventory::load(cluster).with_context(|| {
            format!("reading the inventory {} (run `paxos up` for a local cluster)", cluster.display())
        })?;
        inventory.require_host_keys()?;
        let identity = keys::load_private(identity)
            .with_context(|| format!("loading the operator key {} (pass -i KEY)", identity.display()))?;
        Ok(Target { inventory, identity })
    }

    pub async fn connect(&self, node: &NodeEntry) -> anyhow::Result<SshClient> {
        let pinned: PublicKey = self.inventory.host_key(node.id)?;
        let address = node.address();
        let connect = SshClient::connect(&address, &pinned, &self.identity);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(client) => Ok(client?),
            Err(_) => anyhow::bail!("{address}: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        }
    }
}

pub async fn run(cluster: &Path, identity: &Path, words: Vec<String>) -> anyhow::Result<u8> {
    // The shell already split the words: quote each again so that a value
    // with a space stays one word on the node (OpenSSH joins with spaces).
    let line = quote::join(&words);
    let invocation = match parse(&line) {
        Ok(invocation) => invocation,
        Err(e) => {
            eprintln!("paxos: {e}");
            return Ok(EXIT_USAGE as u8);
        }
    };
    let target = Target::load(cluster, identity)?;
    match invocation.command {
        OpsCommand::Status => status(&target, invocation.json).await,
        OpsCommand::Watch { .. } => watch(&target, &invocation.line).await,
        ref command => {
            let line = with_request_id(command, &invocation.line);
            run_anywhere(&target, &line, command.is_read_only()).await
        }
    }
}

/// Give a mutation without `--request` one, so that retrying it on another
/// node cannot apply it twice.
fn with_request_id(command: &OpsCommand, line: &str) -> String {
    if command.to_op().is_none_or(|(_, request)| request.is_some()) {
        return line.to_string();
    }
    let client = rand::random::<u64>() >> 1 | 1;
    // `line` is a normalized invocation line, so it splits.
    let mut words = quote::split(line).unwrap_or_default();
    words.insert(words.len().min(1), format!("--request={client}:1"));
    quote::join(&words)
}

/// Run on the first node that can answer; print its output; exit with its status.
async fn run_anywhere(target: &Target, line: &str, read_only: bool) -> anyhow::Result<u8> {
    let mut last_error = String::from("the inventory lists no nodes");
    let mut unavailable = None;
    for node in &target.inventory.nodes {
        let client = match target.connect(node).await {
            Ok(client) => client,
            Err(e) => {
                last_error = format!("node {} ({}): {e:#}", node.id, node.address());
                continue;
            }
        };
        let output = match client.run(&format!("paxos {line}")).await {
            Ok(output) => output,
            Err(e) => {
                last_error = format!("node {}: {e}", node.id);
                continue;
            }
        };
        let Some(code) = output.exit_status else {
            // The node died or the connection broke before the command
            // finished. A mutation carries a request id, so the next node
            // answers it rather than applying it twice (a step-down is asked
            // again of whoever leads now): that is what failover needs. A
            // read is not carried on: if the read itself is what stopped
            // the node, the next node would die of it too.
            let cut_off = format!("node {} closed the connection before answering", node.id);
            if read_only {
                std::io::stdout().write_all(&output.stdout)?;
                eprintln!(
                    "paxos: {cut_off}; a read is not carried to another node in case the command itself stopped \
                     this one: check the node (`paxos status`), then run the command again"
                );
                return Ok(EXIT_UNAVAILABLE as u8);
            }
            last_error = cut_off;
            continue;
        };
        // Only "unavailable" moves on; every other status (usage, denied,
        // failed, internal error) is the answer, whichever node gives it.
        if code == EXIT_UNAVAILABLE as u32 {
            // No leader from there (or it is stepping down): try the next node.
            unavailable = Some(output);
            continue;
        }
        std::io::stdout().write_all(&output.stdout)?;
        std::io::stderr().write_all(&output.stderr)?;
        return Ok(code.min(255) as u8);
    }
    if let Some(output) = unavailable {
        std::io::stdout().write_all(&output.stdout)?;
        std::io::stderr().write_all(&output.stderr)?;
        return Ok(EXIT_UNAVAILABLE as u8);
    }
    anyhow::bail!("no node could run the command; last error: {last_error}")
}

async fn watch(target: &Target, line: &str) -> anyhow::Result<u8> {
    for node in &target.inventory.nodes {
        let Ok(client) = target.connect(node).await else { continue };
        let Ok(stream) = client.stream(&format!("paxos {line}")).await else { continue };
        let mut stream = std::pin::pin!(stream);
        let mut stdout = std::io::stdout();
        while let Some(event) = stream.next().await {
            match event {
                StreamEvent::Stdout(text) => {
                    writeln!(stdout, "{text}")?;
                    stdout.flush()?;
                }
                StreamEvent::Stderr(text) => eprintln!("{text}"),
                StreamEvent::Exit(code) => return Ok(code.min(255) as u8),
            }
        }
        eprintln!("paxos: node {} closed the connection; run the watch again (with --from) to go on", node.id);
        return Ok(EXIT_UNAVAILABLE as u8);
    }
    anyhow::bail!("no node of {} could be reached", target.inventory.path.display())
}

/// One row per node, asked in parallel.
pub async fn collect_status(target: &Target) -> Vec<(NodeEntry, Result<NodeStatus, String>)> {
    let asks = target.inventory.nodes.iter().map(|node| async move {
        let answer = async {
            let client = target.connect(node).await.map_err(|e| format!("{e:#}"))?;
            let output = client.run("paxos status --json").await.map_err(|e| e.to_string())?;
            serde_json::from_slice::<NodeStatus>(&output.stdout)
                .map_err(|e| format!("unreadable status ({e}): {}", String::from_utf8_lossy(&output.stderr).trim()))
        };
        (node.clone(), answer.await)
    });
    futures::future::join_all(asks).await
}

async fn status(target: &Target, json: bool) -> anyhow::Result<u8> {
    let rows = collect_status(target).await;
    let newest = rows.iter().filter_map(|(_, s)| s.as_ref().ok().map(|s| s.commit_index)).max().unwrap_or(0);
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(node, s)| match s {
                Ok(s) => serde_json::json!({"id": node.id, "up": true, "lag": newest - s.commit_index, "status": s}),
                Err(e) => serde_json::json!({"id": node.id, "name": node.name, "address": node.address(), "up": false, "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<4} {:<10} {:<22} {:<26} {:<5} {:<10} {:<7} {:<8} {:>7} {:>8} {:>5} {:>9}",
            "ID", "NAME", "ADDRESS", "ROLES", "UP", "ROLE", "LEADER", "BALLOT", "COMMIT", "APPLIED", "LAG", "HEARTBEAT"
        );
        for (node, s) in &rows {
            match s {
                Ok(s) => println!(
                    "{:<4} {:<10} {:<22} {:<26} {:<5} {:<10} {:<7} {:<8} {:>7} {:>8} {:>5} {:>9}",
                    node.id,
                    node.name,
                    node.address(),
                    s.roles.join(","),
                    "up",
                    s.role.to_string(),
                    s.leader.map_or("-".into(), |l| l.to_string()),
                    s.ballot.to_string(),
                    s.commit_index,
                    s.applied_index,
                    newest - s.commit_index,
                    s.last_heartbeat_age_ms.map_or("-".into(), duration_text),
                ),
                Err(e) => println!(
                    "{:<4} {:<10} {:<22} {:<26} {:<5} {e}",
                    node.id,
                    node.name,
                    node.address(),
                    node.roles().names().join(","),
                    "down"
                ),
            }
        }
    }
    Ok(if rows.iter().any(|(_, s)| s.is_ok()) { 0 } else { 1 })
}
