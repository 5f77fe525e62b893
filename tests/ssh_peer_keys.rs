//! The peer keys a running server accepts change with the membership
//! (`PeerKeys`): over real SSH on loopback, a key added at runtime may open
//! `paxos-peer`, and once taken out it is refused and its open connection
//! closed.

mod ssh_support;

use paxos::ssh::{
    AccessList, PEER_SUBSYSTEM, PeerKeys, PeerLink, PeerLinkSettings, ServerSettings, SshClient, SshError, SshServer,
};
use ssh_support::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const MAX_FRAME: usize = 64 * 1024;

/// Node 1's server, accepting no peer yet, and the handle that changes that.
async fn server(host: &TestKey) -> (RunningServer, PeerKeys) {
    let settings = ServerSettings {
        node: 1,
        listen: "127.0.0.1:0".into(),
        host_key: host.private.clone(),
        access: AccessList::default(),
        max_frame: MAX_FRAME,
    };
    let server = SshServer::bind(settings).await.unwrap();
    let keys = server.peer_keys();
    let (addr, inbox, shutdown) = spawn_server(server);
    (RunningServer { addr, inbox, shutdown }, keys)
}

fn link_to(server: &RunningServer, host: &TestKey, node: u64, key: &TestKey) -> PeerLinkSettings {
    PeerLinkSettings {
        local_node: node,
        peer_node: 1,
        peer_addr: server.addr_string(),
        peer_host_key: host.public.clone(),
        identity: Arc::new(key.private.clone()),
        max_frame: MAX_FRAME,
        queue_capacity: 1024,
        queue_bytes: 1 << 20,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        clock: paxos::ssh::wall_clock::WallClock::system(),
    }
}

async fn rejected(server: &RunningServer, host: &TestKey, key: &TestKey) {
    match SshClient::connect(&server.addr_string(), &host.public, &key.private).await {
        Err(SshError::AuthRejected { fingerprint, .. }) => assert_eq!(fingerprint, key.fingerprint()),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a key not (or no longer) accepted got in"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_key_added_at_runtime_is_accepted_and_a_removed_one_refused() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let host = make_key(&dir, "node1");
    let k2 = make_key(&dir, "node2");
    let (mut s1, keys) = server(&host).await;

    // Not a member yet: refused.
    rejected(&s1, &host, &k2).await;

    // Added: its link gets in and its messages arrive, tagged with its id.
    assert!(keys.replace(BTreeMap::from([(2, k2.public.clone())])));
    assert!(!keys.replace(BTreeMap::from([(2, k2.public.clone())])), "the same set is no change");
    let shutdown = CancellationToken::new();
    let link = PeerLink::spawn(link_to(&s1, &host, 2, &k2), shutdown.clone());
    link.send(TestMsg::Ping { n: 1 });
    assert_eq!(recv(&mut s1.inbox).await, (2, TestMsg::Ping { n: 1 }));
    assert!(link.stats().connected);

    // Removed: the open connection is closed, and every redial refused.
    keys.replace(BTreeMap::new());
    let closing = format!("peer 2 key {} from 127.0.0.1:", k2.fingerprint());
    eventually("the connection to be closed", || {
        logs().has_line(&["WARN", &closing, "is no longer a member's key: closing its connection"])
    })
    .await;
    eventually("the link to be refused", || {
        link.stats().last_error.as_deref().is_some_and(|e| e.contains("rejected our key"))
    })
    .await;
    assert!(!link.stats().connected);
    rejected(&s1, &host, &k2).await;
    // Queued while refused; nothing was delivered meanwhile (see below).
    link.send(TestMsg::Ping { n: 2 });
    assert!(s1.inbox.try_recv().is_err(), "nothing from a removed member gets through");

    // Added back: the link that kept redialling gets in again.
    keys.replace(BTreeMap::from([(2, k2.public.clone())]));
    link.send(TestMsg::Ping { n: 3 });
    let (from, msg) = recv(&mut s1.inbox).await;
    assert_eq!(from, 2);
    assert!(matches!(msg, TestMsg::Ping { n: 2 | 3 }), "{msg:?}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_after_it_authenticated_may_not_open_paxos_peer() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let host = make_key(&dir, "node1");
    let k3 = make_key(&dir, "node3");
    let (s1, keys) = server(&host).await;
    keys.replace(BTreeMap::from([(3, k3.public.clone())]));
    let client = SshClient::connect(&s1.addr_string(), &host.public, &k3.private).await.unwrap();

    keys.replace(BTreeMap::new());
    let err = client.open_subsystem(PEER_SUBSYSTEM).await.unwrap_err();
    assert!(matches!(err, SshError::Refused { .. } | SshError::Session { .. }), "{err}");
    let refusal = format!("peer 3 key {} from 127.0.0.1:", k3.fingerprint());
    eventually("the refusal to be logged", || {
        logs().has_line(&["WARN", &refusal, "is no longer a member's key: refusing paxos-peer"])
    })
    .await;
}
