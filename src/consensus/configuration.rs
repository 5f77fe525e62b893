//! The cluster configuration as replicated data: who is a member, in which
//! roles, with which quorums; changed by `Op::Reconfigure` commands decided
//! in the log like any other command.
//!
//! **The rule that keeps changes safe** (Lamport's α window, "Paxos Made
//! Simple" §3): a change decided in slot `s` governs slots from `s + α`
//! on. Every slot therefore has exactly one configuration, `config(t)`, a
//! function of the decided prefix below `t - α + 1` that every replica
//! computes alike, and each slot runs plain Paxos among the acceptors of
//! its own configuration:
//!
//! - a leader proposes slot `t` only once it has applied every slot up to
//!   `t - α`, so it knows `config(t)` (`t < applied + α`);
//! - phase 2 for `t` goes to `config(t)`'s acceptors and counts its quorum;
//! - before it proposes `t`, the leader holds promises for its ballot from a
//!   phase-1 quorum of `config(t)`, asking the new acceptors of a new
//!   configuration with the same ballot, and it re-proposes the highest
//!   vote any promiser reported;
//! - one change is pending at a time: a change decided while another has
//!   not yet taken effect is refused, identically on every replica.
//!
//! Two quorums of different configurations never decide the same slot, so
//! they need not intersect: any change, even one that replaces every
//! acceptor, is safe. What a change can cost is liveness (a configuration
//! whose acceptors cannot be reached decides nothing); the operator
//! commands refuse those.

use super::ballot::NodeId;
use super::config::{Config, Roles};
use super::quorum::Quorums;
use crate::state_machine::Slot;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Slots between a change's decision and its effect (α), unless the seed
/// configuration sets another. A leader keeps at most α slots beyond its
/// applied index in flight, so it also bounds the pipeline
/// (`Tuning::pipeline_depth` may not exceed it).
pub const DEFAULT_ALPHA: u64 = 128;

/// The largest α a configuration may set.
pub const MAX_ALPHA: u64 = 1 << 20;

fn default_alpha() -> u64 {
    DEFAULT_ALPHA
}

/// One member of a configuration. Name, address and key are what an
/// operator gave when adding it; members of the seed inventory have none
/// here (the inventory holds them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub roles: Roles,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// The node's pinned SSH host key (OpenSSH public key line).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

impl Member {
    pub fn with_roles(roles: Roles) -> Self {
        Member { roles, name: String::new(), address: String::new(), key: String::new() }
    }
}

/// The members and quorums that govern a range of slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    /// How many changes led here; the seed inventory is epoch 0.
    pub epoch: u64,
    pub members: BTreeMap<NodeId, Member>,
    /// Phase-1 and phase-2 quorum sizes; `None` means a majority of acceptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase1_quorum: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase2_quorum: Option<usize>,
    /// Ids of removed members: never given to another node, so that no
    /// vote or promise of the removed one can be mistaken for a newcomer's.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub retired: BTreeSet<NodeId>,
    /// α: a change decided in slot `s` governs slots from `s + alpha`.
    /// Set by the seed configuration; no change alters it.
    #[serde(default = "default_alpha")]
    pub alpha: u64,
}

/// A change an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum MemberChange {
    /// A new member, usually a learner that is then promoted.
    Add {
        id: NodeId,
        member: Member,
    },
    /// Promote or demote: the member's roles become `roles`.
    SetRoles {
        id: NodeId,
        roles: Roles,
    },
    Remove {
        id: NodeId,
    },
    /// Remove a (dead) member and add its successor in one change.
    Replace {
        remove: NodeId,
        id: NodeId,
        member: Member,
    },
}

impl std::fmt::Display for MemberChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roles = |r: &Roles| r.names().join(",");
        let who = |id: &NodeId, m: &Member| match m.name.is_empty() {
            true => format!("node {id}"),
            false => format!("node {id} ({})", m.name),
        };
        match self {
            MemberChange::Add { id, member } => write!(f, "add {} as {}", who(id, member), roles(&member.roles)),
            MemberChange::SetRoles { id, roles: r } => write!(f, "node {id} becomes {}", roles(r)),
            MemberChange::Remove { id } => write!(f, "remove node {id}"),
            MemberChange::Replace { remove, id, member } => {
                write!(f, "replace node {remove} by {} as {}", who(id, member), roles(&member.roles))
            }
        }
    }
}

impl MemberChange {
    /// About how many bytes the change holds in memory (its strings).
    pub fn held_bytes(&self) -> usize {
        match self {
            MemberChange::Add { member, .. } | MemberChange::Replace { member, .. } => {
                member.name.len() + member.address.len() + member.key.len()
            }
            MemberChange::SetRoles { .. } | MemberChange::Remove { .. } => 0,
        }
    }
}

impl Configuration {
    /// Epoch 0: the members and quorums a node was started with.
    pub fn genesis(cfg: &Config) -> Self {
        Configuration {
            epoch: 0,
            members: cfg.members.iter().map(|(id, roles)| (*id, Member::with_roles(*roles))).collect(),
            phase1_quorum: cfg.phase1_quorum,
            phase2_quorum: cfg.phase2_quorum,
            retired: BTreeSet::new(),
            alpha: cfg.alpha,
        }
    }

    pub fn roles(&self, id: NodeId) -> Option<Roles> {
        self.members.get(&id).map(|m| m.roles)
    }

    pub fn is_acceptor(&self, id: NodeId) -> bool {
        self.roles(id).is_some_and(|r| r.acceptor)
    }

    pub fn is_proposer(&self, id: NodeId) -> bool {
        self.roles(id).is_some_and(|r| r.proposer)
    }

    pub fn acceptors(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|(_, m)| m.roles.acceptor).map(|(id, _)| *id)
    }

    pub fn proposers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|(_, m)| m.roles.proposer).map(|(id, _)| *id)
    }

    /// The quorum sizes, or why this configuration cannot have any.
    pub fn quorums(&self) -> Result<Quorums, String> {
        if self.members.contains_key(&0) {
            return Err("node id 0 is reserved".into());
        }
        if self.proposers().next().is_none() {
            return Err("the configuration would have no proposer".into());
        }
        Quorums::resolve(self.acceptors().count(), self.phase1_quorum, self.phase2_quorum).map_err(|e| e.to_string())
    }

    /// How many of `voters` are acceptors here.
    fn count(&self, voters: &BTreeSet<NodeId>) -> usize {
        voters.iter().filter(|id| self.is_acceptor(**id)).count()
    }

    /// Whether `voters` hold a phase-1 quorum of this configuration. A
    /// configuration without valid quorums has none (it was refused).
    pub fn phase1_quorum_in(&self, voters: &BTreeSet<NodeId>) -> bool {
        self.quorums().is_ok_and(|q| self.count(voters) >= q.phase1)
    }

    pub fn phase2_quorum_in(&self, voters: &BTreeSet<NodeId>) -> bool {
        self.quorums().is_ok_and(|q| self.count(voters) >= q.phase2)
    }

    /// Whether `refused` leaves too few acceptors for a phase-1 quorum.
    pub fn phase1_out_of_reach(&self, refused: &BTreeSet<NodeId>) -> bool {
        let n = self.acceptors().count();
        self.quorums().is_ok_and(|q| self.count(refused) > n - q.phase1)
    }

    /// The configuration after `change`, or why it is refused.
    pub fn changed(&self, change: &MemberChange) -> Result<Configuration, String> {
        let mut next = self.clone();
        next.epoch += 1;
        let add = |id: NodeId, member: &Member, next: &mut Configuration| {
            if id == 0 {
                return Err("node id 0 is reserved; number nodes from 1".to_string());
            }
            if self.members.contains_key(&id) {
                return Err(format!("node {id} is already a member"));
            }
            if self.retired.contains(&id) {
                return Err(format!("node id {id} belonged to a removed member; ids are never reused"));
            }
            if let Some((other, _)) = self.members.iter().find(|(_, m)| !m.name.is_empty() && m.name == member.name) {
                return Err(format!("node {other} already has the name {}", member.name));
            }
            next.members.insert(id, member.clone());
            Ok(())
        };
        let remove = |id: NodeId, next: &mut Configuration| {
            if next.members.remove(&id).is_none() {
                return Err(format!("node {id} is not a member"));
            }
            next.retired.insert(id);
            Ok(())
        };
        match change {
            MemberChange::Add { id, member } => add(*id, member, &mut next)?,
            MemberChange::SetRoles { id, roles } => {
                let Some(member) = next.members.get_mut(id) else {
                    return Err(format!("node {id} is not a member"));
                };
                if member.roles == *roles {
                    return Err(format!("node {id} already has the roles {}", roles.names().join(",")));
                }
                member.roles = *roles;
            }
            MemberChange::Remove { id } => remove(*id, &mut next)?,
            MemberChange::Replace { remove: old, id, member } => {
                remove(*old, &mut next)?;
                add(*id, member, &mut next)?;
            }
        }
        next.quorums()?;
        Ok(next)
    }
}

/// A decided change that has not taken effect yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The first slot the new configuration governs.
    pub effective: Slot,
    pub config: Configuration,
}

/// The configuration in force and the one decided to follow it: together
/// they give `config(t)` for every slot from the applied index on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub current: Configuration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

impl Membership {
    pub fn new(current: Configuration) -> Self {
        Membership { current, pending: None }
    }

    /// The configuration that governs `slot` (for slots at or above the
    /// applied index; lower ones are decided already).
    pub fn at(&self, slot: Slot) -> &Configuration {
        match &self.pending {
            Some(p) if slot >= p.effective => &p.config,
            _ => &self.current,
        }
    }

    /// The configurations that govern slots from the applied index on.
    pub fn configs(&self) -> impl Iterator<Item = &Configuration> {
        std::iter::once(&self.current).chain(self.pending.as_ref().map(|p| &p.config))
    }

    /// Roles `id` has in any configuration in force or pending.
    pub fn roles(&self, id: NodeId) -> Option<Roles> {
        self.configs().filter_map(|c| c.roles(id)).reduce(|a, b| Roles {
            proposer: a.proposer || b.proposer,
            acceptor: a.acceptor || b.acceptor,
            learner: a.learner || b.learner,
        })
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.configs().any(|c| c.members.contains_key(&id))
    }

    pub fn is_acceptor(&self, id: NodeId) -> bool {
        self.configs().any(|c| c.is_acceptor(id))
    }

    /// Every member of either configuration, sorted.
    pub fn member_ids(&self) -> Vec<NodeId> {
        let ids: BTreeSet<NodeId> = self.configs().flat_map(|c| c.members.keys().copied()).collect();
        ids.into_iter().collect()
    }

    pub fn acceptor_ids(&self) -> Vec<NodeId> {
        let ids: BTreeSet<NodeId> = self.configs().flat_map(|c| c.acceptors()).collect();
        ids.into_iter().collect()
    }

    /// How many distinct node ids this cluster has ever had (members and
    /// retired ones): the most incarnations a promise can name.
    pub fn ids_ever(&self) -> usize {
        let ids: BTreeSet<NodeId> =
            self.configs().flat_map(|c| c.members.keys().chain(c.retired.iter()).copied()).collect();
        ids.len()
    }

    /// A phase-1 quorum in every configuration from the applied index on:
    /// what a campaign needs, and what a leader's read or check-quorum
    /// must intersect.
    pub fn phase1_quorum_in(&self, voters: &BTreeSet<NodeId>) -> bool {
        self.configs().all(|c| c.phase1_quorum_in(voters))
    }

    pub fn phase2_quorum_in(&self, voters: &BTreeSet<NodeId>) -> bool {
        self.configs().all(|c| c.phase2_quorum_in(voters))
    }

    pub fn phase1_out_of_reach(&self, refused: &BTreeSet<NodeId>) -> bool {
        self.configs().any(|c| c.phase1_out_of_reach(refused))
    }

    /// Once `applied` reaches the pending change's first slot, it is the
    /// configuration in force. Called after every applied slot, so every
    /// replica's membership is the same function of its applied index.
    pub fn settle(&mut self, applied: Slot) {
        if self.pending.as_ref().is_some_and(|p| applied >= p.effective)
            && let Some(p) = self.pending.take()
        {
            self.current = p.config;
        }
    }

    /// Apply a change decided in `slot`: it governs slots from
    /// `slot + alpha`. Refused while another change is pending.
    pub fn decide(&mut self, slot: Slot, change: &MemberChange) -> Result<(u64, Slot), String> {
        self.settle(slot);
        if let Some(p) = &self.pending {
            return Err(format!(
                "the change to epoch {} takes effect at slot {}; one change at a time",
                p.config.epoch, p.effective
            ));
        }
        let config = self.current.changed(change)?;
        let effective = slot.saturating_add(self.current.alpha);
        let epoch = config.epoch;
        self.pending = Some(Pending { effective, config });
        Ok((epoch, effective))
    }
}

#[cfg(test)]
mod tests;
