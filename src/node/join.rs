//! `paxos serve --join HOST:PORT --seed-key KEY`: a new machine starts
//! knowing only one member's address and host key, and its own key.
//!
//! An operator first runs `paxos members add NAME --addr ... --key ...`.
//! Once that change is applied on the member, the member accepts the new
//! node's key as a peer's, and the node fetches the live inventory over the
//! `paxos-join` subsystem: the seed hosts exactly as the cluster started
//! with them, and every joined member (itself included) marked `paxos_join`.
//! It writes that to its `cluster_file` and starts from it like any node:
//! outside the seed configuration, it learns the log (a snapshot and the
//! suffix, from slot 0 if nothing was compacted) and applies it, so the
//! membership it ends up with is the one every replica computes. It stays
//! a learner until promoted.
//!
//! Until the addition is applied the member refuses the key; the node
//! waits and asks again. A member that shows another host key than the
//! pinned one, or an inventory that gives this node's id to another key,
//! stops it with the reason.

use crate::cluster::{Inventory, NodeConfig};
use crate::keys;
use crate::ssh::SshError;
use crate::ssh::client::SshClient;
use crate::ssh::server::JOIN_SUBSYSTEM;
use anyhow::{Context as _, bail};
use russh::keys::{PrivateKey, PublicKey};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Between two attempts while the member does not accept this node yet.
const RETRY: Duration = Duration::from_secs(1);
/// One attempt (connect, authenticate, fetch) at most; a member that
/// stalls is asked again.
const FETCH_LIMIT: Duration = Duration::from_secs(30);
/// How often the wait is logged.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Whether `node` already joined: its cluster file lists its id with its key.
pub fn already_joined(node: &NodeConfig) -> anyhow::Result<bool> {
    if !node.cluster_file.exists() {
        return Ok(false);
    }
    let inventory = Inventory::load(&node.cluster_file)?;
    let me = load_key(node)?;
    Ok(inventory.node(node.id).is_some_and(|n| n.holds_key(me.public_key())))
}

fn load_key(node: &NodeConfig) -> anyhow::Result<PrivateKey> {
    keys::load_private(&node.key_file).with_context(|| format!("node {}: loading its key", node.id))
}

/// Fetch the live inventory from the member at `seed` (pinned to
/// `seed_key`), check it names this node with this node's key, and write
/// it to the node's cluster file. Waits while the member does not accept
/// this node's key yet.
pub async fn join(node: &NodeConfig, seed: &str, seed_key: &PublicKey) -> anyhow::Result<Inventory> {
    let identity = load_key(node)?;
    let me = keys::fingerprint(identity.public_key());
    let started = Instant::now();
    let mut logged: Option<Instant> = None;
    let text = loop {
        let mut wait = |why: String| {
            if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                warn!(
                    node = node.id,
                    seed,
                    waited_s = started.elapsed().as_secs(),
                    "{why}; waiting: run `paxos members add` for this node (key {me}) if nobody has"
                );
                logged = Some(Instant::now());
            }
        };
        match tokio::time::timeout(FETCH_LIMIT, fetch(seed, seed_key, &identity)).await {
            Ok(Ok(text)) => break text,
            Ok(Err(Fetch::NotYet(why))) => wait(why),
            Ok(Err(Fetch::Fatal(e))) => return Err(e),
            Err(_) => wait(format!("{seed} did not answer the join within {} s", FETCH_LIMIT.as_secs())),
        }
        tokio::time::sleep(RETRY).await;
    };
    let inventory = Inventory::from_json(&text, &node.cluster_file)
        .with_context(|| format!("the inventory {seed} sent for joining"))?;
    inventory.require_host_keys()?;
    match inventory.node(node.id) {
        Some(entry) if entry.holds_key(identity.public_key()) => {}
        Some(entry) => bail!(
            "the cluster lists node {} ({}) with another key than {}; the id in {} may be wrong",
            node.id,
            entry.name,
            me,
            node.path.display()
        ),
        None => match inventory.nodes.iter().find(|n| n.holds_key(identity.public_key())) {
            Some(n) => bail!(
                "the cluster added this node's key as node {} ({}), but {} says id {}; set \"id\": {}",
                n.id,
                n.name,
                node.path.display(),
                node.id,
                n.id
            ),
            None => bail!("the inventory {seed} sent does not list node {}", node.id),
        },
    }
    write_atomically(&node.cluster_file, &inventory.to_json_pretty())?;
    info!(
        node = node.id,
        seed,
        cluster = %inventory.cluster,
        file = %node.cluster_file.display(),
        "joined: wrote the live inventory; learning the log as a learner until promoted"
    );
    Ok(inventory)
}

enum Fetch {
    /// The member does not accept this node (yet), or cannot be reached.
    NotYet(String),
    Fatal(anyhow::Error),
}

async fn fetch(seed: &str, seed_key: &PublicKey, identity: &PrivateKey) -> Result<String, Fetch> {
    let client = match SshClient::connect(seed, seed_key, identity).await {
        Ok(client) => client,
        Err(e @ SshError::HostKeyMismatch(_)) => {
            return Err(Fetch::Fatal(anyhow::Error::new(e).context("the member given to --join")));
        }
        Err(SshError::AuthRejected { .. }) => return Err(Fetch::NotYet(format!("{seed} does not accept this node"))),
        Err(e) => return Err(Fetch::NotYet(e.to_string())),
    };
    let out = client.run(JOIN_SUBSYSTEM).await;
    client.disconnect().await;
    match out {
        Ok(out) if out.exit_status == Some(0) => String::from_utf8(out.stdout)
            .map_err(|_| Fetch::Fatal(anyhow::anyhow!("{seed} sent an inventory that is not UTF-8"))),
        Ok(out) => Err(Fetch::NotYet(format!(
            "{seed} answered the join with exit {:?}: {}",
            out.exit_status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        // Authenticated but not as a member (another role's key), or the
        // addition was undone since.
        Err(e) => Err(Fetch::NotYet(e.to_string())),
    }
}

/// `text` to `path` through a temporary file, synced and renamed, so a
/// crash leaves the old file or the new one (`storage::write_atomically`).
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name =
        path.file_name().and_then(|n| n.to_str()).with_context(|| format!("{} names no file", path.display()))?;
    crate::storage::write_atomically(dir, &format!(".{name}.joining"), name, text.as_bytes())?;
    Ok(())
}
