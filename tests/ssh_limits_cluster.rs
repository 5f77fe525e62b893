//! The admission limits with real daemons and their default figures: a
//! flood from one address fills its share at node 1 and is refused beyond
//! it, while a restarted peer redials node 1 through the same door, the
//! cluster commits, and an operator (OpenSSH) is served.

mod limits_support;
mod ssh_support;
mod support_cluster;

use limits_support::{Greeting, greeting, tcp_from};
use paxos::ssh::ConnectionLimits;
use std::net::SocketAddr;
use support_cluster::{Cluster, eventually};

#[test]
fn peers_and_operators_get_through_a_flood_from_another_address() {
    let mut cluster = Cluster::start(3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let node1: SocketAddr = format!("127.0.0.1:{}", cluster.node(1).port).parse().unwrap();

    // The flood: 60 connections from 127.0.0.50 that never authenticate,
    // each kept open once admitted.
    let per_source = ConnectionLimits::DEFAULT.max_unauthenticated_per_source;
    let (held, refused) = rt.block_on(async {
        let (mut held, mut refused) = (Vec::new(), 0);
        for _ in 0..60 {
            let mut stream = tcp_from("127.0.0.50", node1).await;
            match greeting(&mut stream).await {
                Greeting::Banner => held.push(stream),
                Greeting::Refused(_) => refused += 1,
            }
        }
        (held, refused)
    });
    assert_eq!(held.len(), per_source, "admitted from the flooding address");
    assert_eq!(refused, 60 - per_source);

    // A peer restarted during the flood redials node 1 and gets in.
    let opened = |log: &str| log.lines().filter(|l| l.contains("node 2 at") && l.contains("opened paxos-peer")).count();
    let before = opened(&cluster.log(1));
    cluster.kill(2);
    cluster.restart(2);
    eventually(
        "node 2's peer link into node 1 to come up again",
        || (opened(&cluster.log(1)) > before).then_some(()),
        || cluster.logs(),
    );
    cluster.wait_for_leader();
    let slot = cluster.put("during-flood", "committed");
    cluster.wait_applied(&[1, 2, 3], slot);

    // An operator from the usual address is served by the flooded node.
    let out = cluster.paxos_on(1, &["status"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.show(), cluster.logs());

    assert!(
        cluster
            .log(1)
            .lines()
            .any(|l| l.contains("refusing connection from 127.0.0.50:") && l.contains("per-source cap")),
        "the refusals are logged with the source\n{}",
        cluster.logs()
    );
    rt.block_on(async move { drop(held) });
}
