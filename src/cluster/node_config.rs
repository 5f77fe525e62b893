//! The node config: one daemon's id, listen address and file locations.

use super::{ClusterError, json_error, read};
use crate::consensus::ballot::NodeId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where files go when neither the node config nor a flag says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultPaths {
    pub data_dir: PathBuf,
    pub config_dir: PathBuf,
}

/// The platform's directories for `paxos` (on Linux `~/.local/share/paxos`
/// and `~/.config/paxos`), or `None` without a home directory.
pub fn default_paths() -> Option<DefaultPaths> {
    let dirs = directories::ProjectDirs::from("", "", "paxos")?;
    Some(DefaultPaths { data_dir: dirs.data_dir().to_owned(), config_dir: dirs.config_dir().to_owned() })
}

impl DefaultPaths {
    /// Per-node defaults, so that several nodes on one machine never share a log.
    pub fn data_dir_of(&self, id: NodeId) -> PathBuf {
        self.data_dir.join(format!("node-{id}"))
    }
    pub fn key_file_of(&self, id: NodeId) -> PathBuf {
        self.config_dir.join(format!("node-{id}.key"))
    }
    pub fn cluster_file(&self) -> PathBuf {
        self.config_dir.join("cluster.json")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeConfigFile {
    id: NodeId,
    #[serde(default)]
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    cluster_file: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default)]
    metrics_listen: Option<SocketAddr>,
    #[serde(default = "default_clock_skew_warn_ms")]
    clock_skew_warn_ms: u64,
}

/// Warn when a peer's clock is off by more than this, unless configured.
pub const DEFAULT_CLOCK_SKEW_WARN_MS: u64 = 500;
/// The largest `clock_skew_warn_ms` accepted: an hour.
pub const MAX_CLOCK_SKEW_WARN_MS: u64 = 3_600_000;

fn default_clock_skew_warn_ms() -> u64 {
    DEFAULT_CLOCK_SKEW_WARN_MS
}

/// One daemon's settings (`paxos serve --config node.json`), with every
/// path resolved: relative paths are taken from the config file's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Where the SSH server listens; `None` means 0.0.0.0 on the inventory's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub cluster_file: PathBuf,
    pub audit_log: PathBuf,
    pub log_format: LogFormat,
    /// Where to serve `GET /metrics` over HTTP for Prometheus; off when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log a warning when a peer's clock offset passes this many ms.
    pub clock_skew_warn_ms: u64,
    #[serde(skip)]
    pub path: PathBuf,
}

impl NodeConfig {
    pub fn load(path: impl AsRef<Path>) -> Result<NodeConfig, ClusterError> {
        let path = path.as_ref();
        NodeConfig::from_json(&read(path)?, path, default_paths().as_ref())
    }

    /// Parse node config text; `path` names it in errors and anchors relative paths.
    pub fn from_json(text: &str, path: &Path, defaults: Option<&DefaultPaths>) -> Result<NodeConfig, ClusterError> {
        let raw: NodeConfigFile = serde_json::from_str(text).map_err(|e| json_error(path, e))?;
        if raw.id == 0 {
            let reason = "node id 0 is reserved; use the node's id from the inventory";
            return Err(ClusterError::Invalid { path: path.to_owned(), field: "id".into(), reason: reason.into() });
        }
        if !(1..=MAX_CLOCK_SKEW_WARN_MS).contains(&raw.clock_skew_warn_ms) {
            let reason = format!(
                "{} ms is out of range; give a threshold from 1 to {MAX_CLOCK_SKEW_WARN_MS} ms (the default is \
                 {DEFAULT_CLOCK_SKEW_WARN_MS})",
                raw.clock_skew_warn_ms
            );
            return Err(ClusterError::Invalid { path: path.to_owned(), field: "clock_skew_warn_ms".into(), reason });
        }
        let base = path.parent().unwrap_or(Path::new(""));
        let resolve = |given: Option<PathBuf>, field: &'static str, default: &dyn Fn(&DefaultPaths) -> PathBuf| match (
            given, defaults,
        ) {
            (Some(p), _) => Ok(base.join(p)),
            (None, Some(d)) => Ok(default(d)),
            (None, None) => Err(ClusterError::MissingPath { path: path.to_owned(), field }),
        };
        let id = raw.id;
        let data_dir = resolve(raw.data_dir, "data_dir", &|d| d.data_dir_of(id))?;
        let key_file = resolve(raw.key_file, "key_file", &|d| d.key_file_of(id))?;
        let cluster_file = resolve(raw.cluster_file, "cluster_file", &|d| d.cluster_file())?;
        let audit_log = match raw.audit_log {
            Some(p) => base.join(p),
            None => data_dir.join("audit.log"),
        };
        Ok(NodeConfig {
            id,
            listen: raw.listen,
            data_dir,
            key_file,
            cluster_file,
            audit_log,
            log_format: raw.log_format,
            metrics_listen: raw.metrics_listen,
            clock_skew_warn_ms: raw.clock_skew_warn_ms,
            path: path.to_owned(),
        })
    }
}
