//! Every answer to a mutation says exactly one of: applied, not applied
//! (and never will be), or outcome unknown (retry with the same request id).

mod support_cluster;

use support_cluster::{Cluster, eventually};

#[test]
fn a_put_answered_no_leader_is_never_applied_later() {
    let mut cluster = Cluster::start(3);
    cluster.put("kept", "safe");
    cluster.kill(2);
    cluster.kill(3);
    // Node 1 alone: whatever it was, it ends up with no leader.
    eventually(
        "node 1 to know it has no leader",
        || {
            let out = cluster.paxos_on(1, &["status", "--json"]);
            (out.code == Some(0) && out.json()["leader"].is_null()).then_some(())
        },
        || cluster.logs(),
    );
    let out = cluster.paxos_on(1, &["put", "lost", "if", "retried"]);
    assert_eq!(out.code, Some(4), "{}", out.show());
    assert!(out.stderr.contains("nothing was applied"), "{}", out.show());

    cluster.restart(2);
    cluster.restart(3);
    cluster.wait_for_leader();
    // A later command through the same node: had the first one stayed
    // queued there, it would be forwarded, and so decided, before this one.
    let out = cluster.paxos_on(1, &["put", "after", "the outage"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.show(), cluster.logs());
    assert_eq!(cluster.get("after").as_deref(), Some("the outage"));
    assert_eq!(cluster.get("lost"), None, "a command reported as not applied was applied");
    assert_eq!(cluster.get("kept").as_deref(), Some("safe"));
}
