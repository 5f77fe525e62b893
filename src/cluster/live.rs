//! The inventory of a running cluster: the seed inventory it started from,
//! and every member that joined since, as the replicated membership holds
//! them (`paxos members --inventory`, and what a joining node fetches).
//!
//! The seed hosts are kept exactly as they are, removed ones included: a
//! replica replaying the log from its start reads them as the membership
//! before the first change, so they must never change. Members added
//! through the log are listed with `paxos_join` and their roles now; an
//! added member that was removed again is left out.

use super::{Inventory, NodeEntry};
use crate::consensus::configuration::Membership;

impl Inventory {
    /// This (seed) inventory with the joined members of `membership` added.
    pub fn with_membership(&self, membership: &Membership) -> Result<Inventory, String> {
        let newest = membership.configs().last().unwrap_or(&membership.current);
        let mut live = self.clone();
        // A joined host this inventory lists (a joined node's own cluster
        // file) that is no member any more is left out, like any other.
        live.nodes.retain(|n| !n.join || newest.members.contains_key(&n.id));
        for (id, member) in &newest.members {
            if let Some(seed) = self.node(*id) {
                if !seed.join {
                    continue;
                }
                // Listed as joining already: its address and key are the
                // change's from now on.
                live.nodes.retain(|n| n.id != *id);
            }
            let (host, port) = split_address(&member.address)
                .ok_or_else(|| format!("node {id} has no usable address ({:?}) in the membership", member.address))?;
            let name = if member.name.is_empty() { format!("node{id}") } else { member.name.clone() };
            if let Some(other) = live.nodes.iter().find(|n| n.name == name) {
                return Err(format!(
                    "node {id} joined as {name:?}, the name of inventory host {} too; rename one of them",
                    other.id
                ));
            }
            let roles = member.roles.names().into_iter().map(String::from).collect();
            let host_key = (!member.key.is_empty()).then(|| member.key.clone());
            live.nodes.push(NodeEntry { id: *id, name, host, port, roles, host_key, join: true });
        }
        live.nodes.sort_by_key(|n| n.id);
        Ok(live)
    }
}

/// "host:port" or "[v6]:port" into the host (brackets dropped) and port.
fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::config::Roles;
    use crate::consensus::configuration::{Configuration, Member, MemberChange};

    const KEY_D: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwLQX/RMWc6MHKB8+aO9j37934HL8pKCCo/A/ko9kFH node4";
    const KEY_F: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIMrcIL0wnN5AzSpYXVkUj8dFU+K8JBZdMfWczfjAFSD node6";

    fn seed() -> Inventory {
        let hosts: serde_json::Map<String, serde_json::Value> = (1..=3)
            .map(|id| {
                (
                    format!("node{id}"),
                    serde_json::json!({"ansible_host": "10.0.0.1", "paxos_id": id, "paxos_port": 7100 + id}),
                )
            })
            .collect();
        let doc = serde_json::json!({"all": {"hosts": hosts, "vars": {"paxos_cluster": "lab"}}});
        Inventory::from_json(&doc.to_string(), "hosts/seed.json").unwrap()
    }

    fn changed(changes: &[MemberChange]) -> Membership {
        let inventory = seed();
        let mut config = Configuration::genesis(&inventory.consensus_config(1).unwrap());
        for change in changes {
            config = config.changed(change).unwrap();
        }
        Membership::new(config)
    }

    fn joiner(name: &str, address: &str) -> Member {
        Member { roles: Roles::LEARNER, name: name.into(), address: address.into(), key: KEY_D.into() }
    }

    #[test]
    fn joined_members_are_listed_with_paxos_join_and_seed_hosts_stay() {
        let membership = changed(&[
            MemberChange::Add { id: 4, member: joiner("db4", "10.0.0.4:7100") },
            MemberChange::Add { id: 6, member: Member { key: KEY_F.into(), ..joiner("db6", "[fe80::1]:7106") } },
            MemberChange::Remove { id: 2 },
            MemberChange::SetRoles { id: 4, roles: Roles::default() },
        ]);
        let live = seed().with_membership(&membership).unwrap();
        let ids: Vec<u64> = live.nodes.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 6], "the removed seed host stays");
        assert_eq!(live.nodes[..3], seed().nodes[..]);
        let db4 = live.node(4).unwrap();
        assert_eq!((db4.name.as_str(), db4.host.as_str(), db4.port, db4.join), ("db4", "10.0.0.4", 7100, true));
        assert_eq!(db4.roles, ["proposer", "acceptor", "learner"]);
        assert_eq!(db4.host_key.as_deref(), Some(KEY_D));
        let db6 = live.node(6).unwrap();
        assert_eq!((db6.host.as_str(), db6.address()), ("fe80::1", "[fe80::1]:7106".to_owned()));
        // It reads back as the same inventory, and the seed configuration
        // it gives is the one the cluster started with.
        let again = Inventory::from_json(&live.to_json_pretty(), "hosts/live.json").unwrap();
        assert_eq!(again.nodes, live.nodes);
        assert_eq!(again.consensus_config(4).unwrap().members, seed().consensus_config(1).unwrap().members);
        assert!(again.consensus_config(4).unwrap().joining);
    }

    #[test]
    fn a_joined_host_of_this_inventory_that_was_removed_is_left_out() {
        let joined = changed(&[MemberChange::Add { id: 4, member: joiner("db4", "10.0.0.4:7100") }]);
        // A joined node's own cluster file lists it.
        let own = seed().with_membership(&joined).unwrap();
        let removed = changed(&[
            MemberChange::Add { id: 4, member: joiner("db4", "10.0.0.4:7100") },
            MemberChange::Remove { id: 4 },
        ]);
        assert_eq!(own.with_membership(&removed).unwrap().nodes, seed().nodes);
        assert_eq!(own.with_membership(&joined).unwrap().nodes, own.nodes, "still a member: kept");
    }

    #[test]
    fn a_member_added_and_removed_again_is_left_out_and_a_clashing_name_is_refused() {
        let gone = changed(&[
            MemberChange::Add { id: 4, member: joiner("db4", "10.0.0.4:7100") },
            MemberChange::Remove { id: 4 },
        ]);
        assert_eq!(seed().with_membership(&gone).unwrap().nodes, seed().nodes);
        let clash = changed(&[MemberChange::Add { id: 4, member: joiner("node2", "10.0.0.4:7100") }]);
        let err = seed().with_membership(&clash).unwrap_err();
        assert!(err.contains("\"node2\"") && err.contains("host 2"), "{err}");
        for bad in ["", "10.0.0.4", "10.0.0.4:0", ":7100", "10.0.0.4:x"] {
            let odd = changed(&[MemberChange::Add { id: 4, member: joiner("db4", bad) }]);
            let err = seed().with_membership(&odd).unwrap_err();
            assert!(err.contains("no usable address"), "{bad}: {err}");
        }
    }
}
