//! Three real nodes in this process, over real SSH on loopback: once the
//! removal of a member takes effect, the others shut their links to it and
//! refuse its key.

mod ssh_support;
mod support_cluster;

use paxos::consensus::configuration::MemberChange;
use paxos::keys;
use paxos::node::serve::{Running, start};
use paxos::ops::api::{NodeApi, NodeError};
use paxos::ssh::{SshClient, SshError};
use paxos::state_machine::Op;
use serde_json::json;
use ssh_support::logs;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// Submits `op` through whichever node leads, retrying until one applies it.
async fn submit(nodes: &[(u64, Running)], op: Op) {
    let deadline = Instant::now() + WAIT;
    loop {
        for (_, node) in nodes {
            match node.handle.submit(op.clone(), None).await {
                Ok(_) => return,
                Err(
                    NodeError::NotLeader { .. }
                    | NodeError::NoLeader { .. }
                    | NodeError::NotApplied { .. }
                    | NodeError::Timeout { .. }
                    | NodeError::OutcomeUnknown { .. },
                ) => {}
                Err(e) => panic!("submitting {op:?}: {e}"),
            }
        }
        assert!(Instant::now() < deadline, "{op:?} not applied\nlogs:\n{}", logs().text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\nlogs:\n{}", logs().text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_loses_its_links_and_its_key_is_refused() {
    logs();
    let files = support_cluster::Cluster::prepare(3);
    // A small α, so the removal takes effect a few slots after it is decided.
    files.set_consensus(json!({"alpha": 4, "tuning": {"pipeline_depth": 4}}));
    let shutdown = CancellationToken::new();
    let mut nodes = Vec::new();
    for node in &files.nodes {
        let cluster = paxos::cluster::Cluster::load(&node.config).unwrap();
        nodes.push((node.id, start(cluster, shutdown.clone()).await.unwrap()));
    }
    let fp3 = keys::fingerprint(&keys::load_public_file(&keys::public_path(&files.node(3).key)).unwrap());
    submit(&nodes, Op::Put { key: "before".into(), value: "1".into() }).await;
    eventually("node 3's links to be up", || logs().has_line(&["node 3 linked to peer 1"])).await;

    submit(&nodes, Op::Reconfigure { change: MemberChange::Remove { id: 3 } }).await;
    // Slots past α make it take effect.
    for i in 0..8 {
        submit(&nodes, Op::Put { key: format!("after{i}"), value: "x".into() }).await;
    }
    let node3 = keys::load_private(&files.node(3).key).unwrap();
    for id in [1, 2] {
        let node = format!("node={id}");
        eventually("the link to node 3 to be shut down", || logs().has_line(&[&node, "link to node 3 shut down"]))
            .await;
        // Whichever side closed node 3's connections first (node 3 may have
        // learnt of its removal before the others), its key is refused now.
        let host_key = keys::load_public_file(&keys::public_path(&files.node(id).key)).unwrap();
        let addr = format!("127.0.0.1:{}", files.node(id).port);
        match SshClient::connect(&addr, &host_key, &node3).await {
            Err(SshError::AuthRejected { fingerprint, .. }) => assert_eq!(fingerprint, fp3),
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("node {id} still accepts the key of removed node 3"),
        }
    }
    // The two left keep serving.
    submit(&nodes[..2], Op::Put { key: "last".into(), value: "y".into() }).await;
    shutdown.cancel();
    for (_, node) in nodes {
        let _ = node.task.await;
    }
}
