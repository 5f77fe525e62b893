//! The inventory on disk is Ansible's own JSON inventory shape, so that
//! `ansible-inventory -i hosts/lab.json` (stock YAML plugin) and `paxos`
//! read the same file:
//!
//! ```json
//! {"all": {"hosts": {"node1": {"ansible_host": "10.0.0.11", "paxos_id": 1, "paxos_port": 7100}},
//!          "vars": {"paxos_cluster": "lab", "paxos_operators": ["ssh-ed25519 AAAA... alice"]}}}
//! ```
//!
//! A host's settings are merged the way Ansible merges them: `all.vars`,
//! then the vars of the groups it is in (deeper groups win, siblings in name
//! order), then the host's own. Variables not named `paxos_*` belong to the
//! Ansible user and are ignored; an unknown `paxos_*` name is refused with
//! the host (or group) and field named, so a typo never passes silently.

use super::{ClusterError, ConsensusSettings, Inventory, NodeEntry, all_roles, default_tick_ms};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Cluster-wide settings; only in `all.vars`.
pub const CLUSTER_VARS: &[&str] =
    &["paxos_cluster", "paxos_tick_ms", "paxos_operators", "paxos_readers", "paxos_consensus"];
/// Per-node settings: on a host, or as a default in a group's vars.
pub const NODE_VARS: &[&str] = &["paxos_id", "paxos_host", "paxos_port", "paxos_roles", "paxos_host_key", "paxos_join"];
/// Settings read only by the Ansible role (its `defaults/main.yml`): valid
/// anywhere, ignored by `paxos`.
pub const PLAYBOOK_VARS: &[&str] = &[
    "paxos_binary_src",
    "paxos_binary_path",
    "paxos_user",
    "paxos_config_dir",
    "paxos_data_dir",
    "paxos_log_dir",
    "paxos_log_format",
    "paxos_pin_keys",
    "paxos_controller_identity",
    "paxos_catch_up_timeout",
    "paxos_metrics_listen",
    "paxos_clock_skew_warn_ms",
    "paxos_state",
];

/// Settings read only by `paxos drill`: shell command templates that apply
/// a fault to a host (see `paxos drill --help`); on a host or in any group's vars.
pub const DRILL_VARS: &[&str] = &[
    "paxos_drill_kill_cmd",
    "paxos_drill_restore_cmd",
    "paxos_drill_stop_cmd",
    "paxos_drill_cont_cmd",
    "paxos_drill_partition_cmd",
    "paxos_drill_heal_cmd",
];

/// Where a variable was set, for error messages.
#[derive(Clone, Debug)]
enum Scope {
    Group(String),
    Host(String),
}

impl Scope {
    fn describe(&self) -> String {
        match self {
            Scope::Group(g) => format!("group {g:?} vars"),
            Scope::Host(h) => format!("host {h:?}"),
        }
    }
}

fn invalid(path: &Path, field: String, reason: impl Into<String>) -> ClusterError {
    ClusterError::Invalid { path: path.to_owned(), field, reason: reason.into() }
}

/// An object, or `null` standing for an empty one (`node1:` in YAML).
fn object<'a>(path: &Path, value: &'a Value, what: &str) -> Result<Option<&'a Map<String, Value>>, ClusterError> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        other => Err(invalid(path, what.to_owned(), format!("must be an object, not {other}"))),
    }
}

/// Refuse unknown `paxos_*` names and cluster settings outside `all.vars`.
fn check_names(
    path: &Path,
    scope: &Scope,
    vars: &Map<String, Value>,
    cluster_allowed: bool,
) -> Result<(), ClusterError> {
    for name in vars.keys().filter(|k| k.starts_with("paxos_")) {
        let known = |list: &[&str]| list.contains(&name.as_str());
        if known(NODE_VARS) || known(PLAYBOOK_VARS) || known(DRILL_VARS) || (cluster_allowed && known(CLUSTER_VARS)) {
            continue;
        }
        let reason = if known(CLUSTER_VARS) {
            "is a cluster-wide setting; set it once under all.vars".to_owned()
        } else {
            let mut all: Vec<&str> = [NODE_VARS, PLAYBOOK_VARS, DRILL_VARS].concat();
            if cluster_allowed {
                all.extend(CLUSTER_VARS);
            }
            match all.iter().min_by_key(|k| edit_distance(k, name)).filter(|k| edit_distance(k, name) <= 3) {
                Some(near) => format!("unknown paxos setting; did you mean {near}?"),
                None => format!("unknown paxos setting; known ones are {}", all.join(", ")),
            }
        };
        return Err(invalid(path, format!("{} {name}", scope.describe()), reason));
    }
    Ok(())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// What a group contributes: its vars, and the hosts below it.
struct Walk<'a> {
    /// (depth, group name, vars) in the order Ansible applies them.
    group_vars: Vec<(usize, String, &'a Map<String, Value>)>,
    /// Host name -> (its own vars, the groups it is in).
    hosts: BTreeMap<String, (Map<String, Value>, Vec<String>)>,
}

fn walk<'a>(path: &Path, name: &str, group: &'a Value, depth: usize, out: &mut Walk<'a>) -> Result<(), ClusterError> {
    if depth > 16 {
        return Err(invalid(path, format!("group {name:?}"), "groups nest more than 16 deep"));
    }
    let Some(group) = object(path, group, &format!("group {name:?}"))? else { return Ok(()) };
    for key in group.keys() {
        if !["hosts", "vars", "children"].contains(&key.as_str()) {
            let reason = "an inventory group holds only hosts, vars and children";
            return Err(invalid(path, format!("group {name:?} {key}"), reason));
        }
    }
    if let Some(vars) = group.get("vars")
        && let Some(vars) = object(path, vars, &format!("group {name:?} vars"))?
    {
        check_names(path, &Scope::Group(name.to_owned()), vars, name == "all")?;
        out.group_vars.push((depth, name.to_owned(), vars));
    }
    if let Some(hosts) = group.get("hosts") {
        for (host, vars) in object(path, hosts, &format!("group {name:?} hosts"))?.into_iter().flatten() {
            let entry = out.hosts.entry(host.clone()).or_default();
            if let Some(vars) = object(path, vars, &format!("host {host:?}"))? {
                check_names(path, &Scope::Host(host.clone()), vars, false)?;
                // A host listed in several groups: later definitions add to earlier ones, as in Ansible.
                entry.0.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            entry.1.push(name.to_owned());
        }
    }
    if let Some(children) = group.get("children") {
        for (child, body) in object(path, children, &format!("group {name:?} children"))?.into_iter().flatten() {
            walk(path, child, body, depth + 1, out)?;
        }
    }
    Ok(())
}

fn field<T: DeserializeOwned>(path: &Path, owner: &str, name: &str, value: &Value) -> Result<T, ClusterError> {
    serde_json::from_value(value.clone())
        .map_err(|e| invalid(path, format!("{owner} {name}"), format!("{e} (the value given is {value})")))
}

/// Every group and host of an inventory document, with their vars.
fn tree<'a>(doc: &'a Value, path: &Path) -> Result<Walk<'a>, ClusterError> {
    let Value::Object(top) = doc else {
        return Err(invalid(
            path,
            "the document".into(),
            "an inventory is an object: {\"all\": {\"hosts\": ..., \"vars\": ...}}",
        ));
    };
    let Some(all) = top.get("all") else {
        let reason = "missing; write {\"all\": {\"hosts\": {...}, \"vars\": {...}}} (Ansible's JSON inventory shape)";
        return Err(invalid(path, "all".into(), reason));
    };
    let mut tree = Walk { group_vars: Vec::new(), hosts: BTreeMap::new() };
    walk(path, "all", all, 0, &mut tree)?;
    // Other top-level groups are children of `all`, as Ansible reads them.
    for (name, group) in top.iter().filter(|(k, _)| *k != "all") {
        walk(path, name, group, 1, &mut tree)?;
    }
    Ok(tree)
}

/// A host's vars merged as Ansible merges them: `all`, then its groups
/// (shallower first, then by name), then its own; group vars only when `keep` says so.
fn host_vars(
    tree: &Walk<'_>,
    own: &Map<String, Value>,
    groups: &[String],
    keep: impl Fn(&str) -> bool,
) -> Map<String, Value> {
    let mut ordered = tree.group_vars.clone();
    ordered.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut vars = Map::new();
    for (_, group, group_vars) in &ordered {
        if group == "all" || groups.contains(group) {
            vars.extend(group_vars.iter().filter(|(k, _)| keep(k)).map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    vars.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

/// Each host's `paxos_drill_*` settings (host name -> name -> command template).
pub(super) fn drill_vars(text: &str, path: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>, ClusterError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| super::json_error(path, e))?;
    let tree = tree(&doc, path)?;
    let mut out = BTreeMap::new();
    for (name, (own, groups)) in &tree.hosts {
        let owner = format!("host {name:?}");
        let mut settings = BTreeMap::new();
        for (key, value) in host_vars(&tree, own, groups, |k| DRILL_VARS.contains(&k)) {
            if DRILL_VARS.contains(&key.as_str()) && !value.is_null() {
                settings.insert(key.clone(), field::<String>(path, &owner, &key, &value)?);
            }
        }
        out.insert(name.clone(), settings);
    }
    Ok(out)
}

/// Parse inventory text in Ansible's shape into an (unvalidated) `Inventory`.
pub(super) fn parse(text: &str, path: &Path) -> Result<Inventory, ClusterError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| super::json_error(path, e))?;
    let tree = tree(&doc, path)?;
    let all_vars = tree.group_vars.iter().find(|(d, n, _)| *d == 0 && n == "all").map(|(_, _, v)| *v);
    let empty = Map::new();
    let all_vars = all_vars.unwrap_or(&empty);
    let cluster_var = |name: &str| all_vars.get(name).filter(|v| !v.is_null());

    let Some(cluster) = cluster_var("paxos_cluster") else {
        return Err(invalid(path, "all.vars paxos_cluster".into(), "missing; name the cluster, e.g. \"lab\""));
    };
    let owner = "all.vars";
    let mut inventory = Inventory {
        cluster: field(path, owner, "paxos_cluster", cluster)?,
        tick_ms: cluster_var("paxos_tick_ms")
            .map(|v| field(path, owner, "paxos_tick_ms", v))
            .transpose()?
            .unwrap_or_else(default_tick_ms),
        nodes: Vec::new(),
        operators: cluster_var("paxos_operators")
            .map(|v| field(path, owner, "paxos_operators", v))
            .transpose()?
            .unwrap_or_default(),
        readers: cluster_var("paxos_readers")
            .map(|v| field(path, owner, "paxos_readers", v))
            .transpose()?
            .unwrap_or_default(),
        consensus: cluster_var("paxos_consensus")
            .map(|v| field::<ConsensusSettings>(path, owner, "paxos_consensus", v))
            .transpose()?
            .unwrap_or_default(),
        path: path.to_owned(),
    };
    for (name, (own, groups)) in &tree.hosts {
        let vars = host_vars(&tree, own, groups, |k| NODE_VARS.contains(&k));
        inventory.nodes.push(node(path, name, &vars)?);
    }
    inventory.nodes.sort_by_key(|n| n.id);
    Ok(inventory)
}

fn node(path: &Path, name: &str, vars: &Map<String, Value>) -> Result<NodeEntry, ClusterError> {
    let owner = format!("host {name:?}");
    let get = |key: &str| vars.get(key).filter(|v| !v.is_null());
    let required = |key: &str, hint: &str| {
        get(key).ok_or_else(|| invalid(path, format!("{owner} {key}"), format!("missing; {hint}")))
    };
    let id = field(path, &owner, "paxos_id", required("paxos_id", "give every node a unique number from 1")?)?;
    let port =
        field(path, &owner, "paxos_port", required("paxos_port", "set the node's SSH port (e.g. 7100 in all.vars)")?)?;
    // The address peers dial: paxos_host, else Ansible's own ansible_host, else the host's name.
    let host =
        match get("paxos_host").map(|v| (v, "paxos_host")).or_else(|| get("ansible_host").map(|v| (v, "ansible_host")))
        {
            Some((value, key)) => field(path, &owner, key, value)?,
            None => name.to_owned(),
        };
    let roles =
        get("paxos_roles").map(|v| field(path, &owner, "paxos_roles", v)).transpose()?.unwrap_or_else(all_roles);
    let host_key = get("paxos_host_key").map(|v| field(path, &owner, "paxos_host_key", v)).transpose()?;
    let join = get("paxos_join").map(|v| field(path, &owner, "paxos_join", v)).transpose()?.unwrap_or(false);
    Ok(NodeEntry { id, name: name.to_owned(), host, port, roles, host_key, join })
}

/// The inventory in Ansible's shape; nodes keep `ansible_host` so that the
/// same file drives the playbook.
pub(super) fn to_value(inventory: &Inventory) -> Value {
    let mut hosts = Map::new();
    for node in &inventory.nodes {
        let mut vars = Map::new();
        vars.insert("ansible_host".into(), json!(node.host));
        vars.insert("paxos_id".into(), json!(node.id));
        vars.insert("paxos_port".into(), json!(node.port));
        vars.insert("paxos_roles".into(), json!(node.roles));
        if let Some(key) = &node.host_key {
            vars.insert("paxos_host_key".into(), json!(key));
        }
        if node.join {
            vars.insert("paxos_join".into(), json!(true));
        }
        hosts.insert(node.name.clone(), Value::Object(vars));
    }
    json!({"all": {"hosts": hosts, "vars": {
        "paxos_cluster": inventory.cluster,
        "paxos_tick_ms": inventory.tick_ms,
        "paxos_operators": inventory.operators,
        "paxos_readers": inventory.readers,
        "paxos_consensus": inventory.consensus,
    }}})
}

#[cfg(test)]
#[path = "ansible_tests.rs"]
mod tests;
