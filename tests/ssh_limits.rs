//! The SSH server's admission limits, each exercised for real over
//! loopback: the authentication deadline, the per-source and node-wide
//! caps on unauthenticated connections, the total cap, and the per-source
//! rate limit; and after each, a real operator (OpenSSH) still gets in.

mod limits_support;
mod ssh_support;

use limits_support::*;
use paxos::ssh::algorithms;
use paxos::ssh::{ConnectionLimits, SshClient};
use russh::client;
use russh::keys::PublicKeyOrCertificate;
use ssh_support::{WAIT, eventually, logs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Roomy limits, so each test trips only the one it is about.
fn roomy() -> ConnectionLimits {
    ConnectionLimits {
        auth_timeout: Duration::from_secs(60),
        max_connections: 3000,
        max_client_connections: 1000,
        max_unauthenticated: 1000,
        max_unauthenticated_per_source: 1000,
        source_burst: 1000,
        source_per_sec: 1000,
    }
}

/// Completes the key exchange and then never authenticates.
struct KexOnly;

impl client::Handler for KexOnly {
    type Error = russh::Error;
    async fn check_server_key(&mut self, _key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_closed_at_the_deadline() {
    let s = start_limited(ConnectionLimits { auth_timeout: Duration::from_secs(1), ..roomy() }).await;

    // An authenticated operator, connected first, must outlive the deadline.
    let operator = connect_eventually(&s, &s.operator).await;

    // One that finishes the key exchange (with the node's own algorithm
    // policy) and stops there, and one that never even sends a banner.
    let config = Arc::new(client::Config { preferred: algorithms::preferred(), ..Default::default() });
    let kex_only = client::connect(config, s.addr, KexOnly).await.expect("key exchange");
    let mut silent = tcp_from("127.0.0.2", s.addr).await;
    assert_eq!(greeting(&mut silent).await, Greeting::Banner);

    wait_closed(&mut silent, "a connection that never sent a banner").await;
    eventually("the kex-only connection to be closed", || kex_only.is_closed()).await;
    eventually("the closes to be logged with their source", || {
        logs().has_line(&["closing connection from 127.0.0.2:", "not authenticated within 1 s"])
            && logs().has_line(&["closing connection from 127.0.0.1:", "not authenticated within 1 s"])
    })
    .await;

    // The operator's connection is untouched.
    let out = operator.run("paxos status").await.expect("run on the old connection");
    assert_eq!(out.exit_status, Some(0), "{out:?}");
    if have_ssh() {
        operator_gets_in(&s, "127.0.0.1").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_cap_refuses_the_excess_and_admits_an_operator() {
    let s = start_limited(ConnectionLimits { max_unauthenticated_per_source: 3, ..roomy() }).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = tcp_from("127.0.0.3", s.addr).await;
        assert_eq!(greeting(&mut stream).await, Greeting::Banner);
        held.push(stream);
    }
    let mut excess = tcp_from("127.0.0.3", s.addr).await;
    match greeting(&mut excess).await {
        Greeting::Refused(line) => assert!(line.is_empty() || line.contains("too many connections"), "{line:?}"),
        Greeting::Banner => panic!("a fourth unauthenticated connection from one source was admitted"),
    }
    eventually("the refusal to be logged with its source", || {
        logs().has_line(&["refusing connection from 127.0.0.3:", "per-source cap"])
    })
    .await;
    if !have_ssh() {
        return;
    }
    // Another address is not affected, at once.
    let out = openssh_from(&s, "127.0.0.1", &["-s", "paxos", "status"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // The flooded address is refused while its slots are taken...
    let out = openssh_from(&s, "127.0.0.3", &["-s", "paxos", "status"]).await;
    assert_eq!(out.status.code(), Some(255), "{}", String::from_utf8_lossy(&out.stderr));
    // ...and an operator there gets in once they are given up.
    drop(held);
    operator_gets_in(&s, "127.0.0.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_wide_caps_refuse_the_excess_and_keep_a_slot_for_peers() {
    let limits = ConnectionLimits { max_connections: 5, max_client_connections: 2, max_unauthenticated: 2, ..roomy() };
    let s = start_limited(limits).await;

    // Two unauthenticated connections from two sources fill the node-wide
    // unauthenticated cap: a third source is refused.
    let mut a = tcp_from("127.0.0.4", s.addr).await;
    let mut b = tcp_from("127.0.0.5", s.addr).await;
    assert_eq!(greeting(&mut a).await, Greeting::Banner);
    assert_eq!(greeting(&mut b).await, Greeting::Banner);
    let mut c = tcp_from("127.0.0.6", s.addr).await;
    assert!(matches!(greeting(&mut c).await, Greeting::Refused(_)), "a third unauthenticated connection got in");
    eventually("the refusal to be logged", || {
        logs().has_line(&["refusing connection from 127.0.0.6:", "2 unauthenticated connections (the cap)"])
    })
    .await;

    // Two operators take both operator and reader slots; a third operator
    // key is refused at authentication.
    drop(b);
    let first = connect_eventually(&s, &s.operator).await;
    let second = connect_eventually(&s, &s.operator).await;
    let third = SshClient::connect(&s.addr.to_string(), &s.host.public, &s.operator.private).await;
    assert!(third.is_err(), "a third operator connection was accepted");
    eventually("the client-cap refusal to be logged", || {
        logs().has_line(&["refusing operator key", "2 operator and reader connections are open (the cap)"])
    })
    .await;

    // A peer still finds a slot: operators can never fill the node.
    let peer = connect_eventually(&s, &s.peer).await;
    // Four connections now (a, two operators, the peer): one more fits
    // under the total cap, and the next is refused.
    let mut d = tcp_from("127.0.0.7", s.addr).await;
    assert_eq!(greeting(&mut d).await, Greeting::Banner, "the fifth connection fits under the total cap");
    let mut e = tcp_from("127.0.0.8", s.addr).await;
    assert!(matches!(greeting(&mut e).await, Greeting::Refused(_)), "a sixth connection got in");
    eventually("the total-cap refusal to be logged", || {
        logs().has_line(&["refusing connection from 127.0.0.8:", "5 connections (the cap)"])
    })
    .await;

    // Authenticated connections are never touched by the caps.
    for client in [&first, &second] {
        let out = client.run("paxos status").await.expect("run");
        assert_eq!(out.exit_status, Some(0), "{out:?}");
    }
    // Once connections go, a new operator gets in.
    drop((a, d, first));
    let fourth = connect_eventually(&s, &s.operator).await;
    assert_eq!(fourth.run("paxos status").await.expect("run").exit_status, Some(0));
    drop(peer);
}

/// Connects with `key` and the paxos client, retrying while the server
/// notices freed slots.
async fn connect_eventually(s: &LimitedServer, key: &ssh_support::TestKey) -> SshClient {
    let deadline = Instant::now() + WAIT;
    loop {
        match SshClient::connect(&s.addr.to_string(), &s.host.public, &key.private).await {
            Ok(client) => return client,
            Err(e) => {
                assert!(Instant::now() < deadline, "operator never connected: {e}\nlogs:\n{}", logs().text());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_a_flood_and_admits_an_operator() {
    let s = start_limited(ConnectionLimits { source_burst: 5, source_per_sec: 1, ..roomy() }).await;
    let started = Instant::now();
    let (mut admitted, mut refused) = (0u32, 0u32);
    for _ in 0..30 {
        let mut stream = tcp_from("127.0.0.9", s.addr).await;
        match greeting(&mut stream).await {
            Greeting::Banner => admitted += 1,
            Greeting::Refused(_) => refused += 1,
        }
    }
    // At most the burst plus one per second of the flood (and one for the
    // second that was under way).
    let bound = 5 + started.elapsed().as_secs() as u32 + 1;
    assert!(admitted >= 5 && admitted <= bound, "admitted {admitted} (bound {bound}), refused {refused}");
    assert_eq!(admitted + refused, 30);
    eventually("the refusal to be logged", || logs().has_line(&["refusing connection from 127.0.0.9:", "too fast"]))
        .await;
    if !have_ssh() {
        return;
    }
    // Another address is unaffected; the flooded one gets in as its
    // bucket refills.
    operator_gets_in(&s, "127.0.0.1").await;
    operator_gets_in(&s, "127.0.0.9").await;
    // Connections that authenticate give their token back: many more
    // sequential operator commands than the burst all get in.
    for i in 0..12 {
        let out = openssh_from(&s, "127.0.0.9", &["-s", "paxos", "status"]).await;
        assert_eq!(out.status.code(), Some(0), "command {i}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
