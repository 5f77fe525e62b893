//! The inventory (`hosts/*.json`) and a node config from arbitrary text,
//! through `Inventory::from_json`, `NodeConfig::from_json` and
//! `Cluster::from_parts`, then a replica started from each node's config as
//! `paxos serve` would. Input: the inventory, optionally followed by a NUL
//! byte and the node config (invalid UTF-8 is replaced).
//!
//! Properties: no panic; an inventory that validates gives every node a
//! valid consensus config (validation checks only the first), serializes
//! and parses back equal, and starts a replica for each of its nodes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paxos::cluster::{Cluster, DefaultPaths, Inventory, NodeConfig};
use paxos::consensus::records::Recovered;
use paxos::consensus::{Input, Replica};
use std::path::Path;

/// Ticks each replica runs: enough for its timers to be armed and read.
const TICKS: usize = 3;
/// Nodes started per inventory, so a huge inventory stays cheap.
const MAX_REPLICAS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let (inventory_bytes, node_bytes) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let inventory_text = String::from_utf8_lossy(inventory_bytes);
    let inventory_path = Path::new("/etc/paxos/cluster.json");
    let inventory = Inventory::from_json(&inventory_text, inventory_path).ok();
    if let Some(inventory) = &inventory {
        check_inventory(inventory);
    }

    let Some(node_bytes) = node_bytes else { return };
    let node_text = String::from_utf8_lossy(node_bytes);
    let node_path = Path::new("/etc/paxos/node.json");
    let defaults = DefaultPaths { data_dir: "/var/lib/paxos".into(), config_dir: "/etc/paxos".into() };
    let with_defaults = NodeConfig::from_json(&node_text, node_path, Some(&defaults));
    let without = NodeConfig::from_json(&node_text, node_path, None);
    if let Ok(node) = &without {
        assert_eq!(with_defaults.as_ref().ok(), Some(node), "a default changed a config that set every path");
    }
    let (Ok(node), Some(inventory)) = (with_defaults, inventory) else { return };
    let Ok(cluster) = Cluster::from_parts(node, inventory) else { return };
    assert_eq!(cluster.me().id, cluster.node.id);
    let _ = cluster.listen();
    let _ = cluster.tick();
    let peers = cluster.peers().unwrap_or_else(|e| panic!("a cluster that loaded has an unusable peer: {e}"));
    assert_eq!(peers.len(), cluster.inventory.nodes.len() - 1);
});

fn check_inventory(inventory: &Inventory) {
    let text = inventory.to_json_pretty();
    match Inventory::from_json(&text, &inventory.path) {
        Ok(back) => assert_eq!(&back, inventory, "the inventory changed on a write and read"),
        Err(e) => panic!("a valid inventory, written out, does not read back: {e}\n{text}"),
    }
    for node in inventory.nodes.iter().take(MAX_REPLICAS) {
        let config = match inventory.consensus_config(node.id) {
            Ok(config) => config,
            Err(e) => panic!("the inventory validated but node {} has no valid config: {e}", node.id),
        };
        assert_eq!(inventory.peers(node.id).len(), inventory.nodes.len() - 1);
        let mut replica = match Replica::new(config, 0, Recovered::default()) {
            Ok(replica) => replica,
            Err(e) => panic!("a validated config was refused by the replica: {e}"),
        };
        for _ in 0..TICKS {
            let _ = replica.step(Input::Tick);
        }
        let _ = replica.status();
    }
}
