//! `paxos members add|promote|demote|remove`: membership changes an
//! operator asks for, checked against the live cluster before they go into
//! the log (`Op::Reconfigure`). The state machine refuses what would break
//! the configuration (a taken name or id, no proposer left, quorums that
//! do not resolve) identically on every replica; these checks refuse what
//! is legal but unwise now: promoting a learner that has not caught up,
//! and removing or demoting members when the acceptors left that are up
//! would not make a quorum. `--force` skips them.

use super::api::{MembershipView, NodeApi, NodeError};
use crate::consensus::ballot::NodeId;
use crate::consensus::config::Roles;
use crate::consensus::configuration::{Configuration, Member, MemberChange};
use crate::keys;
use clap::Subcommand;
use std::collections::BTreeSet;

/// A promotion waits until the learner's commit index is within this many
/// slots of the leader's.
pub const MAX_PROMOTION_LAG: u64 = 1000;

/// A peer that has not answered the leader for this long counts as down.
pub const LIVE_WITHIN_MS: u64 = 2000;

/// The words after `members`.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum MembersWords {
    /// Add a node (a learner unless --roles says otherwise).
    Add {
        name: String,
        /// HOST:PORT where its daemon listens.
        #[arg(long)]
        addr: String,
        /// Its SSH host key, "ssh-ed25519 AAAA...".
        #[arg(long, num_args = 1.., required = true)]
        key: Vec<String>,
        #[arg(long, default_value = "learner")]
        roles: String,
        /// The node id (default: one above every id the cluster ever had).
        #[arg(long)]
        id: Option<NodeId>,
        /// Add an acceptor even if the acceptors that are up would then
        /// make no quorum (a new one counts as down until it answers).
        #[arg(long)]
        force: bool,
    },
    /// Give a member more roles (default: proposer,acceptor,learner).
    Promote {
        name: String,
        #[arg(long, default_value = "proposer,acceptor,learner")]
        roles: String,
        /// Promote a learner that has not caught up yet.
        #[arg(long)]
        force: bool,
    },
    /// Take roles away (default: leave it a learner).
    Demote {
        name: String,
        #[arg(long, default_value = "learner")]
        roles: String,
        /// Demote even if the acceptors left that are up make no quorum.
        #[arg(long)]
        force: bool,
    },
    /// Remove a member; its id is never given to another node.
    Remove {
        name: String,
        /// Remove even if the acceptors left that are up make no quorum.
        #[arg(long)]
        force: bool,
    },
}

/// A membership command, parsed and checked for form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberCommand {
    Add {
        name: String,
        address: String,
        key: String,
        roles: Roles,
        id: Option<NodeId>,
        force: bool,
    },
    /// Promote and demote alike: the checks follow the roles that change.
    SetRoles {
        name: String,
        roles: Roles,
        force: bool,
    },
    Remove {
        name: String,
        force: bool,
    },
}

impl MembersWords {
    pub fn command(self) -> Result<MemberCommand, String> {
        let roles = |names: &str| {
            let names: Vec<String> = names.split(',').map(|s| s.trim().to_owned()).collect();
            Roles::from_names(&names)
        };
        Ok(match self {
            MembersWords::Add { name, addr, key, roles: r, id, force } => {
                check_name(&name)?;
                let address = check_address(&addr)?;
                let key = key.join(" ");
                let parsed = keys::parse_public(&key).map_err(|e| format!("--key: {e}"))?;
                if parsed.algorithm() != russh::keys::Algorithm::Ed25519 {
                    return Err(format!("--key: nodes use ssh-ed25519 keys, not {}", parsed.algorithm()));
                }
                if id == Some(0) || id.is_some_and(|id| id > MAX_NODE_ID) {
                    return Err(format!("--id: node ids go from 1 to {MAX_NODE_ID}"));
                }
                MemberCommand::Add { name, address, key, roles: roles(&r)?, id, force }
            }
            MembersWords::Promote { name, roles: r, force } => {
                MemberCommand::SetRoles { name, roles: roles(&r)?, force }
            }
            MembersWords::Demote { name, roles: r, force } => {
                MemberCommand::SetRoles { name, roles: roles(&r)?, force }
            }
            MembersWords::Remove { name, force } => MemberCommand::Remove { name, force },
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is no node name: use 1-64 letters, digits, '-', '_' or '.', not only digits (ids are)"))
    }
}

/// The largest id `--id` takes: ids stay exact in JSON numbers.
pub const MAX_NODE_ID: NodeId = (1 << 53) - 1;

fn check_address(addr: &str) -> Result<String, String> {
    let bad = || format!("--addr {addr:?}: give HOST:PORT (an IPv6 host in brackets, [::1]:7000)");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host_ok = match bracketed {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        }
    };
    if !host_ok || port == 0 {
        return Err(bad());
    }
    Ok(addr.to_owned())
}

/// The id of the member called `name`: as the change that added it named
/// it, or as `seed_name` names the members of the seed inventory.
fn resolve(
    view: &MembershipView,
    name: &str,
    seed_name: &(dyn Fn(NodeId) -> Option<String> + Sync),
) -> Result<NodeId, String> {
    let named = |id: NodeId, m: &Member| if m.name.is_empty() { seed_name(id) } else { Some(m.name.clone()) };
    view.membership
        .configs()
        .flat_map(|c| c.members.iter())
        .find(|(id, m)| named(**id, m).as_deref() == Some(name) || id.to_string() == name)
        .map(|(id, _)| *id)
        .ok_or_else(|| format!("no member is named {name:?} (see `paxos members`)"))
}

/// Why a node added as `name` at `address` with `key` would clash with a
/// host of the seed inventory, removed ones included (they stay in every
/// inventory the cluster hands out): names, addresses and keys are each
/// one host's. A `paxos_join` host is the one being added, not a clash.
pub fn seed_host_clash(seed: &crate::cluster::Inventory, name: &str, address: &str, key: &str) -> Option<String> {
    let key = crate::cluster::parse_public_key(key).ok();
    seed.nodes.iter().filter(|n| !n.join).find_map(|n| {
        let what = if n.name == name {
            "name"
        } else if n.address() == address {
            "address"
        } else if key.as_ref().is_some_and(|k| n.holds_key(k)) {
            "key"
        } else {
            return None;
        };
        Some(format!(
            "the {what} is seed host {:?}'s (id {}); a seed host keeps its name, address and key even once removed",
            n.name, n.id
        ))
    })
}

/// The change to put in the log, after the checks that need the live
/// cluster. `Err` is a refusal to show the operator.
pub fn plan(
    view: &MembershipView,
    command: &MemberCommand,
    seed_name: &(dyn Fn(NodeId) -> Option<String> + Sync),
) -> Result<MemberChange, Refusal> {
    let newest = view.membership.configs().last().unwrap_or(&view.membership.current);
    match command {
        MemberCommand::Add { name, address, key, roles, id, force } => {
            if resolve(view, name, seed_name).is_ok() {
                return Err(Refusal::Refused(format!("a member is already named {name:?}")));
            }
            if view.membership.configs().any(|c| c.members.values().any(|m| m.key == *key)) {
                return Err(Refusal::Refused("another member has that key; every node has its own".into()));
            }
            let id = id.unwrap_or_else(|| next_id(view));
            let member = Member { roles: *roles, name: name.clone(), address: address.clone(), key: key.clone() };
            let change = MemberChange::Add { id, member };
            // A new acceptor has answered nobody yet: it counts as down.
            if roles.acceptor && !force {
                live_quorum_check(view, newest, &change)?;
            }
            Ok(change)
        }
        MemberCommand::SetRoles { name, roles, force } => {
            let id = resolve(view, name, seed_name).map_err(Refusal::Refused)?;
            let before = newest.roles(id).unwrap_or(Roles::LEARNER);
            let change = MemberChange::SetRoles { id, roles: *roles };
            // Whatever the command is called: a new vote needs a caught-up
            // log, and fewer or more acceptors need a live quorum.
            if roles.acceptor && !before.acceptor && !force {
                lag_check(view, id)?;
            }
            if roles.acceptor != before.acceptor && !force {
                live_quorum_check(view, newest, &change)?;
            }
            Ok(change)
        }
        MemberCommand::Remove { name, force } => {
            let id = resolve(view, name, seed_name).map_err(Refusal::Refused)?;
            let change = MemberChange::Remove { id };
            if newest.is_acceptor(id) && !force {
                live_quorum_check(view, newest, &change)?;
            }
            Ok(change)
        }
    }
}

/// Why a change was not sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The check needs the leader's view of the cluster.
    NotLeader(Option<NodeId>),
    Refused(String),
}

fn next_id(view: &MembershipView) -> NodeId {
    let highest = view.membership.configs().flat_map(|c| c.members.keys().chain(c.retired.iter())).copied().max();
    highest.unwrap_or(0).saturating_add(1).min(MAX_NODE_ID)
}

fn lag_check(view: &MembershipView, id: NodeId) -> Result<(), Refusal> {
    if !view.is_leader {
        return Err(Refusal::NotLeader(view.leader));
    }
    let Some(progress) = view.progress.get(&id) else {
        return Err(Refusal::Refused(format!(
            "node {id} has not answered the leader yet, so how far it has caught up is unknown; \
             wait for it, or promote it anyway with --force"
        )));
    };
    let lag = view.commit_index.saturating_sub(progress.commit_index);
    if lag > MAX_PROMOTION_LAG || progress.since_ms > LIVE_WITHIN_MS {
        return Err(Refusal::Refused(format!(
            "node {id} is {lag} slots behind the leader (at most {MAX_PROMOTION_LAG}) and last answered {} ms ago; \
             wait until it has caught up, or promote it anyway with --force",
            progress.since_ms
        )));
    }
    Ok(())
}

/// The acceptors of the configuration after `change` that are up (this
/// node, and peers that answered the leader lately) must make both quorums
/// of it, or the cluster would stop once the change is in force.
fn live_quorum_check(view: &MembershipView, newest: &Configuration, change: &MemberChange) -> Result<(), Refusal> {
    if !view.is_leader {
        return Err(Refusal::NotLeader(view.leader));
    }
    let next = newest.changed(change).map_err(Refusal::Refused)?;
    let me = view.leader.unwrap_or(0);
    let up: BTreeSet<NodeId> = next
        .acceptors()
        .filter(|id| *id == me || view.progress.get(id).is_some_and(|p| p.since_ms <= LIVE_WITHIN_MS))
        .collect();
    if next.phase1_quorum_in(&up) && next.phase2_quorum_in(&up) {
        return Ok(());
    }
    let down: Vec<String> = next.acceptors().filter(|id| !up.contains(id)).map(|id| id.to_string()).collect();
    Err(Refusal::Refused(format!(
        "after it, the acceptors that are up ({}) would not make a quorum of the {} acceptors left (down: {}); \
         bring a node back first, or do it anyway with --force",
        up.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", "),
        next.acceptors().count(),
        if down.is_empty() { "none".to_owned() } else { down.join(", ") },
    )))
}

/// Ask the node for the view, plan the change, and say why not.
pub async fn checked_change(
    api: &dyn NodeApi,
    command: &MemberCommand,
    seed_name: &(dyn Fn(NodeId) -> Option<String> + Sync),
) -> Result<Result<MemberChange, String>, NodeError> {
    let view = api.membership().await?;
    match plan(&view, command, seed_name) {
        Ok(change) => Ok(Ok(change)),
        Err(Refusal::NotLeader(leader)) => Err(NodeError::NotLeader { leader }),
        Err(Refusal::Refused(reason)) => Ok(Err(reason)),
    }
}
