//! `paxos health`: check every node of the inventory (or one) and exit 0
//! when all is well, `EXIT_UNHEALTHY` with one line per problem otherwise.
//! Every node is asked (`paxos health --json` over SSH, in parallel), even
//! with `--node`, so that lag is measured from the highest commit index.

use super::remote::Target;
use crate::ops::health::{DEFAULT_MAX_LAG, EXIT_UNHEALTHY, NodeCheck, NodeHealth, cluster_health, cluster_health_text};
use crate::ops::{EXIT_OK, EXIT_USAGE};
use clap::Args;
use std::path::Path;

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Check only this node (by id); the others are still asked, to measure lag.
    #[arg(long, value_name = "ID")]
    pub node: Option<u64>,
    /// The most slots a node's commit index may be behind the highest one.
    #[arg(long, value_name = "SLOTS", default_value_t = DEFAULT_MAX_LAG)]
    pub max_lag: u64,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cluster: &Path, identity: &Path, args: HealthArgs) -> anyhow::Result<u8> {
    let target = Target::load(cluster, identity)?;
    let inventory = &target.inventory;
    if let Some(id) = args.node
        && inventory.node(id).is_none()
    {
        let ids: Vec<String> = inventory.nodes.iter().map(|n| n.id.to_string()).collect();
        eprintln!("paxos: health: node {id} is not in {} (nodes: {})", inventory.path.display(), ids.join(", "));
        return Ok(EXIT_USAGE as u8);
    }
    let quorum = {
        let config = inventory.consensus_config(inventory.nodes[0].id)?;
        let quorums = config.validate()?;
        quorums.phase1.max(quorums.phase2)
    };
    let line = format!("paxos health --json --max-lag {}", args.max_lag);
    let asks = inventory.nodes.iter().map(|node| {
        let line = line.clone();
        let target = &target;
        async move {
            let health = async {
                let client = target.connect(node).await.map_err(|e| format!("{e:#}"))?;
                let output = client.run(&line).await.map_err(|e| e.to_string())?;
                serde_json::from_slice::<NodeHealth>(&output.stdout)
                    .map_err(|e| format!("unreadable answer ({e}): {}", String::from_utf8_lossy(&output.stderr).trim()))
            };
            NodeCheck {
                id: node.id,
                name: node.name.clone(),
                address: node.address(),
                roles: node.roles().names().into_iter().map(String::from).collect(),
                checked: args.node.is_none_or(|id| id == node.id),
                health: health.await,
            }
        }
    });
    let nodes = futures::future::join_all(asks).await;
    let health = cluster_health(nodes, quorum, args.max_lag);
    if args.json {
        println!("{}", serde_json::to_string(&health)?);
    } else {
        print!("{}", cluster_health_text(&health));
    }
    Ok(if health.healthy { EXIT_OK as u8 } else { EXIT_UNHEALTHY as u8 })
}
