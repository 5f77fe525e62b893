//! The cluster as operators write it down: an inventory (`hosts/*.json`,
//! shared with the Ansible playbook) and one small node config per daemon.
//!
//! Both are plain JSON. Loading checks everything a human can get wrong and
//! names the file and the fix; `Cluster::load` then gives `paxos serve` a
//! validated whole: this node, its pinned peers and its consensus `Config`.

use crate::consensus::ballot::NodeId;
use crate::consensus::config::{Config, ConfigError, Roles, Timing, Tuning};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

mod ansible;
mod live;
mod node_config;
pub use ansible::{CLUSTER_VARS, NODE_VARS, PLAYBOOK_VARS};
pub use node_config::{DefaultPaths, LogFormat, NodeConfig, default_paths};

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: malformed JSON: {message}", path.display())]
    Json { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{}: the inventory lists no hosts; add at least one under all.hosts", path.display())]
    NoNodes { path: PathBuf },
    #[error("{}: invalid {field}: {reason}", path.display())]
    Invalid { path: PathBuf, field: String, reason: String },
    #[error("{}: hosts {first:?} and {second:?} both have paxos_id {id}; give every node its own id", path.display())]
    DuplicateId { path: PathBuf, id: NodeId, first: String, second: String },
    #[error("{}: node name {name:?} appears more than once; give every node its own name", path.display())]
    DuplicateName { path: PathBuf, name: String },
    #[error("{}: hosts {first:?} and {second:?} both listen on {address}; change the address or paxos_port of one", path.display())]
    DuplicateAddress { path: PathBuf, address: String, first: String, second: String },
    #[error("{}: host {node:?} paxos_roles: unknown role {role:?}; roles are proposer, acceptor and learner", path.display())]
    UnknownRole { path: PathBuf, node: String, role: String },
    #[error("{}: host {node:?} paxos_host_key: unusable key: {reason}", path.display())]
    BadHostKey { path: PathBuf, node: String, reason: String },
    #[error(
        "{}: host {node:?} has no paxos_host_key; peers pin each other's keys, so add the node's \
         \"ssh-ed25519 AAAA...\" public key (the playbook pins it; `paxos keygen` prints one)", path.display()
    )]
    MissingHostKey { path: PathBuf, node: String },
    #[error("{}: all.vars paxos_{list}[{index}]: unusable public key: {reason}", path.display())]
    BadUserKey { path: PathBuf, list: &'static str, index: usize, reason: String },
    #[error("{}: the key {key:?} is listed twice ({first} and {second}); each key gets exactly one role", path.display())]
    DuplicateKey { path: PathBuf, key: String, first: String, second: String },
    #[error(
        "{}: node id {id} is not in the inventory {}; use one of the ids listed there ({known})",
        path.display(), inventory.display()
    )]
    NotInInventory { path: PathBuf, id: NodeId, inventory: PathBuf, known: String },
    #[error("{}: {field} is not set and there is no default location (no home directory); set it", path.display())]
    MissingPath { path: PathBuf, field: &'static str },
    #[error("{}: consensus settings: {source}", path.display())]
    Consensus {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
}

/// One machine of the cluster, as listed in the inventory (a host of
/// `all.hosts` with its `paxos_*` variables).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub id: NodeId,
    pub name: String,
    pub host: String,
    pub port: u16,
    #[serde(default = "all_roles")]
    pub roles: Vec<String>,
    /// The node's SSH host key in OpenSSH form ("ssh-ed25519 AAAA... comment").
    /// Optional only while provisioning, before the keys exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// `paxos_join`: this host is not part of the seed configuration the
    /// cluster started with; it joins the running cluster once a
    /// `paxos members add` for it is decided, and learns until then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub join: bool,
}

fn all_roles() -> Vec<String> {
    Roles::default().names().into_iter().map(String::from).collect()
}

impl NodeEntry {
    /// "host:port", as peers dial it.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port) // a bare IPv6 address
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether this host's pinned key is `key` (compared by key material).
    pub fn holds_key(&self, key: &PublicKey) -> bool {
        let pinned = self.host_key.as_deref().and_then(|line| parse_public_key(line).ok());
        pinned.is_some_and(|pinned| pinned.key_data() == key.key_data())
    }

    /// Roles parsed from their names; `validate` has already refused unknown ones.
    pub fn roles(&self) -> Roles {
        Roles::from_names(&self.roles).unwrap_or(Roles::LEARNER)
    }
}

/// Protocol settings shared by every node; all optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSettings {
    #[serde(default)]
    pub phase1_quorum: Option<usize>,
    #[serde(default)]
    pub phase2_quorum: Option<usize>,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub tuning: Tuning,
    /// α: a membership change decided in slot s governs slots from
    /// s + alpha (default 128; at least `tuning.pipeline_depth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<u64>,
}

fn default_tick_ms() -> u64 {
    10
}

/// The cluster inventory (`hosts/*.json`, in Ansible's JSON inventory
/// shape: see `ansible.rs`), sorted by node id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    pub cluster: String,
    /// Wall-clock length of one protocol tick.
    pub tick_ms: u64,
    pub nodes: Vec<NodeEntry>,
    /// Public keys allowed every operator command.
    pub operators: Vec<String>,
    /// Public keys allowed read-only commands.
    pub readers: Vec<String>,
    pub consensus: ConsensusSettings,
    /// The file this was read from, for error messages.
    pub path: PathBuf,
}

/// A peer as the SSH layer dials it, with its pinned host key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub host_key: Option<String>,
}

/// Parse an OpenSSH public key line ("ssh-ed25519 AAAA... comment").
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim()).map_err(|e| format!("{e} (expected \"ssh-ed25519 AAAA... comment\")"))
}

/// The smallest RSA operator or reader key accepted, in bits.
pub const MIN_RSA_BITS: u32 = 2048;

/// Whether an operator or reader key is strong enough: an RSA key needs at
/// least `MIN_RSA_BITS` bits (it signs with rsa-sha2-256/512; node keys
/// stay ed25519).
pub fn check_user_key(key: &PublicKey) -> Result<(), String> {
    match key.key_data().rsa() {
        Some(rsa) if rsa.key_size() < MIN_RSA_BITS => Err(format!(
            "this RSA key has {} bits, fewer than the {MIN_RSA_BITS} required; make a new one with \
             `ssh-keygen -t rsa -b 3072` (or `ssh-keygen -t ed25519`)",
            rsa.key_size()
        )),
        _ => Ok(()),
    }
}

fn read(path: &Path) -> Result<String, ClusterError> {
    std::fs::read_to_string(path).map_err(|source| ClusterError::Read { path: path.to_owned(), source })
}

fn json_error(path: &Path, e: serde_json::Error) -> ClusterError {
    ClusterError::Json { path: path.to_owned(), line: e.line(), column: e.column(), message: e.to_string() }
}

impl Inventory {
    /// Read and validate an inventory. Host keys may still be missing
    /// (provisioning); `require_host_keys` is the stricter check for serving.
    pub fn load(path: impl AsRef<Path>) -> Result<Inventory, ClusterError> {
        let path = path.as_ref();
        Inventory::from_json(&read(path)?, path)
    }

    /// Parse and validate inventory text; `path` only names it in errors.
    pub fn from_json(text: &str, path: impl AsRef<Path>) -> Result<Inventory, ClusterError> {
        let path = path.as_ref();
        let inventory = ansible::parse(text, path)?;
        inventory.validate()?;
        Ok(inventory)
    }

    /// Each node's `paxos_drill_*` command templates (name -> template),
    /// read again from the inventory file, merged as Ansible merges vars.
    pub fn drill_settings(&self) -> Result<BTreeMap<NodeId, BTreeMap<String, String>>, ClusterError> {
        let by_name = ansible::drill_vars(&read(&self.path)?, &self.path)?;
        Ok(self.nodes.iter().map(|n| (n.id, by_name.get(&n.name).cloned().unwrap_or_default())).collect())
    }

    /// The inventory as a document in Ansible's JSON shape.
    pub fn to_value(&self) -> serde_json::Value {
        ansible::to_value(self)
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&ansible::to_value(self)).expect("an inventory always serializes") + "\n"
    }

    fn invalid(&self, field: impl Into<String>, reason: impl Into<String>) -> ClusterError {
        ClusterError::Invalid { path: self.path.clone(), field: field.into(), reason: reason.into() }
    }

    /// Everything checkable without requiring host keys.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let path = || self.path.clone();
        if self.cluster.trim().is_empty() {
            return Err(self.invalid("all.vars paxos_cluster", "the cluster name is empty; name it, e.g. \"lab\""));
        }
        if self.tick_ms == 0 {
            return Err(self.invalid("all.vars paxos_tick_ms", "must be at least 1 (milliseconds per protocol tick)"));
        }
        if self.nodes.is_empty() {
            return Err(ClusterError::NoNodes { path: path() });
        }
        let mut ids: BTreeMap<NodeId, &str> = BTreeMap::new();
        let mut names = BTreeSet::new();
        let mut addresses: BTreeMap<String, &str> = BTreeMap::new();
        // Keys compare by fingerprint: the comment is not part of a key's identity.
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        let mut note_key = |key: &PublicKey, line: &str, owner: String| -> Result<(), ClusterError> {
            match keys.insert(key.fingerprint(HashAlg::Sha256).to_string(), owner.clone()) {
                Some(first) => {
                    Err(ClusterError::DuplicateKey { path: path(), key: line.trim().to_owned(), first, second: owner })
                }
                None => Ok(()),
            }
        };
        for node in &self.nodes {
            if node.id == 0 {
                return Err(
                    self.invalid(format!("host {:?} paxos_id", node.name), "id 0 is reserved; number nodes from 1")
                );
            }
            if let Some(first) = ids.insert(node.id, &node.name) {
                return Err(ClusterError::DuplicateId {
                    path: path(),
                    id: node.id,
                    first: first.to_owned(),
                    second: node.name.clone(),
                });
            }
            if node.name.trim().is_empty() {
                return Err(self.invalid(format!("host with paxos_id {}", node.id), "the host name is empty"));
            }
            if !names.insert(node.name.as_str()) {
                return Err(ClusterError::DuplicateName { path: path(), name: node.name.clone() });
            }
            if node.host.trim().is_empty() || node.host.contains(char::is_whitespace) {
                let reason = "give a hostname or an IP address (paxos_host, else ansible_host, else the host's name)";
                return Err(self.invalid(format!("host {:?} address", node.name), reason));
            }
            if node.port == 0 {
                return Err(self.invalid(format!("host {:?} paxos_port", node.name), "port 0 cannot be dialed"));
            }
            if let Some(first) = addresses.insert(node.address(), &node.name) {
                return Err(ClusterError::DuplicateAddress {
                    path: path(),
                    address: node.address(),
                    first: first.to_owned(),
                    second: node.name.clone(),
                });
            }
            if let Err(reason) = Roles::from_names(&node.roles) {
                let role = node.roles.iter().find(|r| Roles::from_names(&[r.as_str()]).is_err());
                let role = role.cloned().unwrap_or(reason);
                return Err(ClusterError::UnknownRole { path: path(), node: node.name.clone(), role });
            }
            if let Some(line) = &node.host_key {
                let key = self.host_key_of(node)?;
                note_key(&key, line, format!("host key of {}", node.name))?;
            }
        }
        for (list, lines) in [("operators", &self.operators), ("readers", &self.readers)] {
            for (index, line) in lines.iter().enumerate() {
                let key = parse_public_key(line)
                    .and_then(|key| check_user_key(&key).map(|()| key))
                    .map_err(|reason| ClusterError::BadUserKey { path: path(), list, index, reason })?;
                note_key(&key, line, format!("{list}[{index}]"))?;
            }
        }
        // The seed configuration is the same for every node, so any seed
        // member checks it; a joining host only adds `joining`.
        let Some(seed) = self.nodes.iter().find(|n| !n.join) else {
            let reason = "every host has paxos_join; the hosts the cluster starts with must not have it";
            return Err(self.invalid("paxos_join", reason));
        };
        self.consensus_config(seed.id).map(|_| ())
    }

    /// The stricter check for `paxos serve` and the CLI: every node has a host key.
    pub fn require_host_keys(&self) -> Result<(), ClusterError> {
        match self.nodes.iter().find(|n| n.host_key.is_none()) {
            Some(node) => Err(ClusterError::MissingHostKey { path: self.path.clone(), node: node.name.clone() }),
            None => Ok(()),
        }
    }

    fn host_key_of(&self, node: &NodeEntry) -> Result<PublicKey, ClusterError> {
        let bad =
            |reason: String| ClusterError::BadHostKey { path: self.path.clone(), node: node.name.clone(), reason };
        let line = node
            .host_key
            .as_deref()
            .ok_or_else(|| ClusterError::MissingHostKey { path: self.path.clone(), node: node.name.clone() })?;
        let key = parse_public_key(line).map_err(bad)?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(bad(format!("{} keys are not used between nodes; give its ssh-ed25519 key", key.algorithm())));
        }
        Ok(key)
    }

    /// The parsed, pinned host key of node `id`.
    pub fn host_key(&self, id: NodeId) -> Result<PublicKey, ClusterError> {
        self.host_key_of(self.node(id).ok_or_else(|| self.not_a_node(&self.path, id))?)
    }

    fn not_a_node(&self, path: &Path, id: NodeId) -> ClusterError {
        let known: Vec<String> = self.nodes.iter().map(|n| n.id.to_string()).collect();
        ClusterError::NotInInventory {
            path: path.to_owned(),
            id,
            inventory: self.path.clone(),
            known: known.join(", "),
        }
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn node_by_name(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every node but `me`, sorted by id.
    pub fn peers(&self, me: NodeId) -> Vec<Peer> {
        let mut peers: Vec<Peer> = self
            .nodes
            .iter()
            .filter(|n| n.id != me)
            .map(|n| Peer { id: n.id, name: n.name.clone(), address: n.address(), host_key: n.host_key.clone() })
            .collect();
        peers.sort_by_key(|p| p.id);
        peers
    }

    pub fn operator_keys(&self) -> &[String] {
        &self.operators
    }

    pub fn reader_keys(&self) -> &[String] {
        &self.readers
    }

    /// The consensus configuration of node `id`, validated. Its members are
    /// the seed configuration: every host but those with `paxos_join`, which
    /// come in through membership changes.
    pub fn consensus_config(&self, id: NodeId) -> Result<Config, ClusterError> {
        let Some(me) = self.node(id) else {
            return Err(self.not_a_node(&self.path, id));
        };
        let members = self.nodes.iter().filter(|n| !n.join).map(|n| (n.id, n.roles())).collect();
        let c = &self.consensus;
        let config = Config {
            id,
            members,
            phase1_quorum: c.phase1_quorum,
            phase2_quorum: c.phase2_quorum,
            timing: c.timing,
            tuning: c.tuning.clone(),
            joining: me.join,
            alpha: c.alpha.unwrap_or(crate::consensus::configuration::DEFAULT_ALPHA),
        };
        config.validate().map_err(|source| ClusterError::Consensus { path: self.path.clone(), source })?;
        Ok(config)
    }
}

/// A node config with its inventory, checked against each other: what
/// `paxos serve` runs from.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub node: NodeConfig,
    pub inventory: Inventory,
    pub consensus: Config,
}

impl Cluster {
    /// Load the node config, then the inventory it names.
    pub fn load(node_config: impl AsRef<Path>) -> Result<Cluster, ClusterError> {
        let node = NodeConfig::load(node_config)?;
        let inventory = Inventory::load(&node.cluster_file)?;
        Cluster::from_parts(node, inventory)
    }

    pub fn from_parts(node: NodeConfig, inventory: Inventory) -> Result<Cluster, ClusterError> {
        if inventory.node(node.id).is_none() {
            return Err(inventory.not_a_node(&node.path, node.id));
        }
        inventory.require_host_keys()?;
        let consensus = inventory.consensus_config(node.id)?;
        Ok(Cluster { node, inventory, consensus })
    }

    /// This node's inventory entry.
    pub fn me(&self) -> &NodeEntry {
        self.inventory.node(self.node.id).expect("from_parts checked membership")
    }

    pub fn listen(&self) -> SocketAddr {
        self.node.listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], self.me().port)))
    }

    /// Every other node with its parsed, pinned host key, sorted by id.
    pub fn peers(&self) -> Result<Vec<(Peer, PublicKey)>, ClusterError> {
        let peers = self.inventory.peers(self.node.id).into_iter();
        peers.map(|p| self.inventory.host_key(p.id).map(|key| (p, key))).collect()
    }

    pub fn tick(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.inventory.tick_ms)
    }
}

#[cfg(test)]
mod tests;
