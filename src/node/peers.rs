//! The SSH peer set follows the replicated membership. The runtime
//! publishes the membership whenever a change is decided (or takes
//! effect); the reconciler turns it into the peers this node links to and
//! the peer keys its server accepts: every node any configuration in force
//! or pending has, but this one.
//!
//! Where a member is reached: a member added through the log carries its
//! address and key; a member of the seed inventory carries neither, and the
//! inventory has them. A member whose key is unusable is reported and left
//! out (no link, no accepted key); it never stops the node.

use super::transport::PeerLinks;
use crate::cluster::{Inventory, parse_public_key};
use crate::consensus::ballot::NodeId;
use crate::consensus::configuration::Membership;
use crate::consensus::messages::Message;
use crate::ssh::PeerKeys;
use crate::ssh::peer::PeerLink;
use russh::keys::{Algorithm, PublicKey};
use std::collections::BTreeMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Where and as whom one peer is dialled.
#[derive(Clone, Debug)]
pub struct PeerSpec {
    /// "host:port".
    pub address: String,
    /// Its pinned host key, which is also the key it dials us with.
    pub key: PublicKey,
}

impl PartialEq for PeerSpec {
    /// Keys compare by key material: a comment is not a different key.
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address && self.key.key_data() == other.key.key_data()
    }
}

impl Eq for PeerSpec {}

/// A member left out of the peer set, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadMember {
    pub id: NodeId,
    pub reason: String,
}

/// The peers one membership gives this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSet {
    /// Peers to link to.
    pub links: BTreeMap<NodeId, PeerSpec>,
    /// Peer keys to accept: those of `links`, and of members with a good
    /// key but no address to dial.
    pub keys: BTreeMap<NodeId, PublicKey>,
    pub bad: Vec<BadMember>,
    /// `me` was removed from the cluster: it has no peers any more.
    pub removed: bool,
}

impl PeerSet {
    /// The peers of every configuration in `membership` but `me`. A member
    /// listed in both the configuration in force and the pending one is
    /// taken as the pending one has it.
    ///
    /// A node whose removal has taken effect (its id is retired, and no
    /// configuration has it) has none: its peers would refuse it anyway.
    /// A node outside its view that was never a member (one joining) still
    /// links to the members, which is how it learns.
    pub fn of(me: NodeId, membership: &Membership, inventory: &Inventory) -> PeerSet {
        if membership.current.retired.contains(&me) && membership.configs().all(|c| !c.members.contains_key(&me)) {
            return PeerSet { removed: true, ..PeerSet::default() };
        }
        let mut members = BTreeMap::new();
        for config in membership.configs() {
            members.extend(config.members.iter().filter(|(id, _)| **id != me));
        }
        // Keys that hold another role: an operator's, a reader's, this
        // node's own. A member given one is refused, so that no key is two
        // principals (a peer match comes first and would shadow the other).
        let reserved: Vec<PublicKey> = inventory
            .operator_keys()
            .iter()
            .chain(inventory.reader_keys())
            .filter_map(|line| crate::keys::parse_public(line).ok())
            .chain(inventory.host_key(me).ok())
            .collect();
        let mut set = PeerSet::default();
        for (id, member) in members {
            let seed = inventory.node(*id);
            let key = if member.key.is_empty() {
                match inventory.host_key(*id) {
                    Ok(key) => key,
                    Err(e) => {
                        let reason = format!("a seed member (no key in the configuration), but {e}");
                        set.bad.push(BadMember { id: *id, reason });
                        continue;
                    }
                }
            } else {
                match parse_node_key(&member.key) {
                    Ok(key) => key,
                    Err(reason) => {
                        set.bad.push(BadMember { id: *id, reason: format!("its key in the configuration {reason}") });
                        continue;
                    }
                }
            };
            let data = key.key_data();
            if reserved.iter().chain(set.keys.values()).any(|k| k.key_data() == data) {
                let reason = "its key is also an operator's, a reader's or another node's: a key is one \
                              principal, so it is refused"
                    .to_string();
                set.bad.push(BadMember { id: *id, reason });
                continue;
            }
            set.keys.insert(*id, key.clone());
            let address = match (member.address.as_str(), seed) {
                ("", Some(node)) => node.address(),
                ("", None) => {
                    let reason = "it has no address in the configuration nor the inventory: \
                                  its connections are accepted, but this node cannot dial it"
                        .to_string();
                    set.bad.push(BadMember { id: *id, reason });
                    continue;
                }
                (address, _) => address.to_string(),
            };
            set.links.insert(*id, PeerSpec { address, key });
        }
        set
    }
}

/// A node key from a configuration: an OpenSSH ssh-ed25519 public key line.
fn parse_node_key(line: &str) -> Result<PublicKey, String> {
    let key = parse_public_key(line).map_err(|e| format!("does not parse: {e}"))?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!("is {}, but nodes use ssh-ed25519 keys", key.algorithm()));
    }
    Ok(key)
}

/// What to change to go from the links running to a new peer set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Links to start.
    pub add: BTreeMap<NodeId, PeerSpec>,
    /// Links to shut down: the peer left, or its address or key changed
    /// (then it is in `add` too).
    pub drop: Vec<NodeId>,
    /// The peer keys to accept from now on.
    pub accept: BTreeMap<NodeId, PublicKey>,
    pub bad: Vec<BadMember>,
    /// This node was removed from the cluster (`PeerSet::removed`).
    pub removed: bool,
}

impl Plan {
    pub fn new(running: &BTreeMap<NodeId, PeerSpec>, wanted: PeerSet) -> Plan {
        let drop = running.iter().filter(|(id, spec)| wanted.links.get(id) != Some(spec)).map(|(id, _)| *id).collect();
        let add = wanted.links.into_iter().filter(|(id, spec)| running.get(id) != Some(spec)).collect();
        Plan { add, drop, accept: wanted.keys, bad: wanted.bad, removed: wanted.removed }
    }

    /// From the links `old` gave to those `new` gives.
    pub fn between(me: NodeId, old: &Membership, new: &Membership, inventory: &Inventory) -> Plan {
        Plan::new(&PeerSet::of(me, old, inventory).links, PeerSet::of(me, new, inventory))
    }
}

/// Starts the link to one peer; its task ends when the token is cancelled.
pub type SpawnLink = Box<dyn Fn(NodeId, &PeerSpec, CancellationToken) -> PeerLink<Message> + Send + Sync>;

/// Keeps the links and the server's peer keys in step with the membership.
pub struct Reconciler {
    me: NodeId,
    inventory: std::sync::Arc<Inventory>,
    links: PeerLinks,
    keys: PeerKeys,
    spawn: SpawnLink,
    /// Cancels every link with the node.
    shutdown: CancellationToken,
    running: BTreeMap<NodeId, (PeerSpec, CancellationToken)>,
}

impl Reconciler {
    pub fn new(
        me: NodeId,
        inventory: std::sync::Arc<Inventory>,
        links: PeerLinks,
        keys: PeerKeys,
        spawn: SpawnLink,
        shutdown: CancellationToken,
    ) -> Reconciler {
        Reconciler { me, inventory, links, keys, spawn, shutdown, running: BTreeMap::new() }
    }

    /// Brings links and accepted keys to what `membership` gives. Keys go
    /// first, so a new peer that dials us at once is let in.
    pub fn apply(&mut self, membership: &Membership) -> Plan {
        let specs: BTreeMap<NodeId, PeerSpec> =
            self.running.iter().map(|(id, (spec, _))| (*id, spec.clone())).collect();
        let plan = Plan::new(&specs, PeerSet::of(self.me, membership, &self.inventory));
        for bad in &plan.bad {
            error!(
                node = self.me,
                "member {} left out of the peer set: {}; fix it with a membership change", bad.id, bad.reason
            );
        }
        if plan.removed && !self.running.is_empty() {
            warn!(
                node = self.me,
                "this node was removed from the cluster: its peer links are shut down; stop it and retire its host"
            );
        }
        if self.keys.replace(plan.accept.clone()) {
            let ids: Vec<NodeId> = plan.accept.keys().copied().collect();
            info!(node = self.me, ?ids, "peer keys accepted now");
        }
        for id in &plan.drop {
            self.links.remove(*id);
            if let Some((spec, token)) = self.running.remove(id) {
                token.cancel();
                info!(node = self.me, peer = id, addr = %spec.address, "link to node {id} shut down");
            }
        }
        for (id, spec) in &plan.add {
            let token = self.shutdown.child_token();
            let link = (self.spawn)(*id, spec, token.clone());
            self.links.insert(*id, link);
            self.running.insert(*id, (spec.clone(), token));
            info!(node = self.me, peer = id, addr = %spec.address, "link to node {id} started");
        }
        plan
    }

    /// Applies every membership published until the node shuts down.
    pub async fn follow(mut self, mut membership: watch::Receiver<Membership>) {
        loop {
            let current = membership.borrow_and_update().clone();
            self.apply(&current);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                changed = membership.changed() => if changed.is_err() {
                    return; // the runtime stopped
                },
            }
        }
    }
}

#[cfg(test)]
mod tests;
