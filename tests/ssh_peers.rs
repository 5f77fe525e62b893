//! Peer links over real SSH on loopback: delivery, host-key pinning, and
//! bad input on `paxos-peer` channels.

mod ssh_support;

use paxos::ssh::frame::{self, PEER_SUBSYSTEM};
use paxos::ssh::{PeerEvent, PeerLink, PeerLinkSettings, SshClient};
use ssh_support::*;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const MAX_FRAME: usize = 64 * 1024;

fn link_settings(local: u64, local_key: &TestKey, peer: u64, addr: String, pinned: &TestKey) -> PeerLinkSettings {
    PeerLinkSettings {
        local_node: local,
        peer_node: peer,
        peer_addr: addr,
        peer_host_key: pinned.public.clone(),
        identity: Arc::new(local_key.private.clone()),
        max_frame: MAX_FRAME,
        queue_capacity: 1024,
        queue_bytes: 1 << 20,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        clock: paxos::ssh::wall_clock::WallClock::system(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_exchange_messages_in_order() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_key(&dir, "node1");
    let k2 = make_key(&dir, "node2");
    let mut s1 = start_server(1, &k1, peers(&[(2, &k2)]), MAX_FRAME).await;
    let mut s2 = start_server(2, &k2, peers(&[(1, &k1)]), MAX_FRAME).await;
    let shutdown = CancellationToken::new();
    let to2 = PeerLink::spawn(link_settings(1, &k1, 2, s2.addr_string(), &k2), shutdown.clone());
    let to1 = PeerLink::spawn(link_settings(2, &k2, 1, s1.addr_string(), &k1), shutdown.clone());

    // Sent before the links are up: queued, then flushed as one batch.
    for n in 0..100 {
        to2.send(TestMsg::Ping { n });
        to1.send(TestMsg::Ping { n: 1000 + n });
    }
    for n in 0..100 {
        assert_eq!(recv(&mut s2.inbox).await, (1, TestMsg::Ping { n }));
        assert_eq!(recv(&mut s1.inbox).await, (2, TestMsg::Ping { n: 1000 + n }));
    }
    // And after they are up.
    to2.send(TestMsg::Note { text: "after".into() });
    assert_eq!(recv(&mut s2.inbox).await, (1, TestMsg::Note { text: "after".into() }));
    let stats = to2.stats();
    assert!(stats.connected, "{stats:?}");
    assert_eq!(stats.sent, 101);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.last_error, None);
    shutdown.cancel();
}

/// A link from node 1 to node 2 (with `settings` changed by `tweak`) that
/// carried a message, then lost its peer: node 2's server is gone.
struct LostPeer {
    _dir: tempfile::TempDir,
    k1: TestKey,
    k2: TestKey,
    addr: String,
    link: PeerLink<TestMsg>,
    shutdown: CancellationToken,
    /// Dials made while it was connected.
    dials_connected: u64,
}

async fn lost_peer(tweak: impl FnOnce(&mut PeerLinkSettings)) -> LostPeer {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_key(&dir, "node1");
    let k2 = make_key(&dir, "node2");
    let mut s2 = start_server(2, &k2, peers(&[(1, &k1)]), MAX_FRAME).await;
    let addr = s2.addr_string();
    let shutdown = CancellationToken::new();
    let mut settings = link_settings(1, &k1, 2, addr.clone(), &k2);
    tweak(&mut settings);
    let link = PeerLink::spawn(settings, shutdown.clone());
    link.send(TestMsg::Ping { n: 1 });
    assert_eq!(recv(&mut s2.inbox).await, (1, TestMsg::Ping { n: 1 }));
    let dials_connected = link.stats().dials;
    drop(s2); // cancels the server: every connection is dropped
    eventually("the link to notice", || !link.stats().connected).await;
    LostPeer { _dir: dir, k1, k2, addr, link, shutdown, dials_connected }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_redials_after_the_peer_restarts() {
    let LostPeer { k1, k2, addr, link, shutdown, dials_connected, .. } = lost_peer(|_| {}).await;
    assert!(link.stats().last_error.is_some());

    let mut s2 = start_server_at(&addr, 2, &k2, peers(&[(1, &k1)]), MAX_FRAME).await;
    eventually("the link to come back", || link.stats().connected).await;
    assert!(link.stats().dials > dials_connected);
    link.send(TestMsg::Ping { n: 2 });
    assert_eq!(recv(&mut s2.inbox).await, (1, TestMsg::Ping { n: 2 }));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_backing_off_dials_at_once_when_told_its_peer_is_up() {
    // Once lost, it would wait an hour before dialling again.
    let LostPeer { k1, k2, addr, link, shutdown, .. } = lost_peer(|settings| {
        settings.backoff_base = Duration::from_secs(3600);
        settings.backoff_cap = Duration::from_secs(3600);
    })
    .await;
    let dials = link.stats().dials;

    let mut s2 = start_server_at(&addr, 2, &k2, peers(&[(1, &k1)]), MAX_FRAME).await;
    // (Told again until it listens: a wake-up before it starts waiting is lost.)
    eventually("the link to come back well within its backoff", || {
        link.redial_now();
        link.stats().connected
    })
    .await;
    assert_eq!(link.stats().dials, dials + 1, "one dial, at once");
    link.send(TestMsg::Ping { n: 2 });
    assert_eq!(recv(&mut s2.inbox).await, (1, TestMsg::Ping { n: 2 }));
    // A connected link ignores it.
    link.redial_now();
    link.send(TestMsg::Ping { n: 3 });
    assert_eq!(recv(&mut s2.inbox).await, (1, TestMsg::Ping { n: 3 }));
    assert_eq!(link.stats().dials, dials + 1);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_oldest_and_counts() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_key(&dir, "node1");
    let k2 = make_key(&dir, "node2");
    let shutdown = CancellationToken::new();
    // Nothing listens on port 9 of loopback: the link never connects.
    let mut settings = link_settings(1, &k1, 2, "127.0.0.1:9".into(), &k2);
    settings.queue_capacity = 3;
    let link = PeerLink::spawn(settings, shutdown.clone());
    for n in 0..10 {
        link.send(TestMsg::Ping { n });
    }
    assert_eq!(link.stats().dropped, 7);
    eventually("a failed dial", || link.stats().last_error.is_some()).await;
    assert!(!link.stats().connected);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded_in_bytes_and_refuses_what_no_frame_can_carry() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_key(&dir, "node1");
    let k2 = make_key(&dir, "node2");
    let shutdown = CancellationToken::new();
    let mut settings = link_settings(1, &k1, 2, "127.0.0.1:9".into(), &k2);
    settings.max_frame = 100;
    settings.queue_bytes = 100;
    let link = PeerLink::spawn(settings, shutdown.clone());
    let one = serde_json::to_vec(&TestMsg::Ping { n: 1000 }).unwrap().len();
    for n in 1000..1010 {
        link.send(TestMsg::Ping { n });
    }
    let kept = 100 / one;
    assert_eq!(link.queued_bytes(), kept * one, "only whole messages within 100 bytes stay queued");
    assert_eq!(link.stats().dropped, (10 - kept) as u64);
    // Larger than a frame: dropped at once, the queue untouched.
    link.send(TestMsg::Note { text: "x".repeat(200) });
    assert_eq!(link.stats().dropped, (10 - kept) as u64 + 1);
    assert_eq!(link.queued_bytes(), kept * one);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_is_refused_and_named() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_key(&dir, "node1");
    let k2 = make_key(&dir, "node2");
    let impostor = make_key(&dir, "impostor");
    // The server at "node 2's" address presents the impostor key.
    let s2 = start_server(2, &impostor, peers(&[(1, &k1)]), MAX_FRAME).await;
    let shutdown = CancellationToken::new();
    let link = PeerLink::spawn(link_settings(1, &k1, 2, s2.addr_string(), &k2), shutdown.clone());
    link.send(TestMsg::Ping { n: 1 });
    let expected = format!(
        "peer 2 at {} presented host key {} but the cluster pins {}; refusing",
        s2.addr,
        impostor.fingerprint(),
        k2.fingerprint()
    );
    eventually("the mismatch to be reported", || link.stats().last_error.as_deref() == Some(expected.as_str())).await;
    // It keeps retrying rather than trusting the new key.
    eventually("a redial", || link.stats().dials >= 3).await;
    let stats = link.stats();
    assert!(!stats.connected);
    assert_eq!(stats.sent, 0);
    assert!(logs().contains(&expected), "{}", logs().text());
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_channel() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_key(&dir, "node1");
    let bad = make_key(&dir, "node7");
    let good = make_key(&dir, "node8");
    let max = 1024;
    let mut s1 = start_server(1, &k1, peers(&[(7, &bad), (8, &good)]), max).await;
    let shutdown = CancellationToken::new();
    let mut good_settings = link_settings(8, &good, 1, s1.addr_string(), &k1);
    good_settings.max_frame = max;
    let good_link = PeerLink::spawn(good_settings, shutdown.clone());
    good_link.send(TestMsg::Ping { n: 0 });
    assert_eq!(recv(&mut s1.inbox).await, (8, TestMsg::Ping { n: 0 }));

    // Node 7 speaks raw frames over a raw russh channel.
    let client = SshClient::connect(&s1.addr_string(), &k1.public, &bad.private).await.unwrap();
    let hello = frame::encode_hello(7).unwrap();
    let valid = frame::encode_message(&TestMsg::Ping { n: 70 }, max).unwrap();
    let mut oversized = ((max as u32) + 1).to_be_bytes().to_vec();
    oversized.extend(std::iter::repeat_n(b'x', max + 1));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed", raw_frame(b"{\"type\": \"ping\", "), "malformed JSON"),
        ("oversized", oversized, "exceeds the limit of 1024 bytes"),
        ("unknown type", raw_frame(br#"{"type":"launch_missiles","n":1}"#), "unknown message type \"launch_missiles\""),
    ];
    for (round, (case, bytes, complaint)) in cases.into_iter().enumerate() {
        let mut channel = client.open_subsystem(PEER_SUBSYSTEM).await.unwrap();
        let mut stream = raw_frame(&hello);
        stream.extend(raw_frame(&valid));
        stream.extend(bytes);
        channel.data_bytes(stream).await.unwrap();
        // The valid frame before the bad one is delivered.
        assert_eq!(recv(&mut s1.inbox).await, (7, TestMsg::Ping { n: 70 }));
        closed_by_server(&mut channel).await;
        assert!(
            logs().has_line(&["ERROR", "closing paxos-peer channel from node 7", complaint]),
            "{case}: no error logged\n{}",
            logs().text()
        );
        // The well-behaved peer is unaffected.
        let n = 1 + round as u64;
        good_link.send(TestMsg::Ping { n });
        assert_eq!(recv(&mut s1.inbox).await, (8, TestMsg::Ping { n }), "{case}");
    }

    // A hello that claims another node's id is refused too.
    let mut channel = client.open_subsystem(PEER_SUBSYSTEM).await.unwrap();
    channel.data_bytes(raw_frame(&frame::encode_hello(8).unwrap())).await.unwrap();
    closed_by_server(&mut channel).await;
    assert!(logs().has_line(&["ERROR", "node 7", "claims to be node 8"]), "{}", logs().text());
    good_link.send(TestMsg::Ping { n: 99 });
    assert_eq!(recv(&mut s1.inbox).await, (8, TestMsg::Ping { n: 99 }));
    assert!(good_link.stats().connected);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_channel_is_reported_greeted_at_its_hello_and_lost_at_its_end() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_key(&dir, "node1");
    let k7 = make_key(&dir, "node7");
    let settings = paxos::ssh::ServerSettings {
        node: 1,
        listen: "127.0.0.1:0".into(),
        host_key: k1.private.clone(),
        access: peers(&[(7, &k7)]),
        max_frame: MAX_FRAME,
    };
    let (lost_tx, mut lost) = tokio::sync::mpsc::channel(8);
    let server = paxos::ssh::SshServer::bind(settings).await.unwrap().with_peer_events(lost_tx);
    let (addr, mut inbox, stop) = spawn_server(server);
    let client = SshClient::connect(&addr.to_string(), &k1.public, &k7.private).await.unwrap();

    // A channel that closes before saying hello was never a link.
    let silent = client.open_subsystem(PEER_SUBSYSTEM).await.unwrap();
    silent.close().await.unwrap();

    // One that said hello and carried a message is a link: its end is news.
    let channel = hello_and_ping(&client, 7, 1).await;
    assert_eq!(recv(&mut inbox).await, (7, TestMsg::Ping { n: 1 }));
    assert_eq!(lost.recv().await, Some(PeerEvent::Greeted(7)));
    channel.close().await.unwrap();
    let reported = tokio::time::timeout(WAIT, lost.recv()).await.expect("no link loss reported");
    assert_eq!(reported, Some(PeerEvent::Lost(7)));
    assert!(lost.try_recv().is_err(), "the channel without a hello was reported too");

    // A server that is shutting down reports nothing.
    let _channel = hello_and_ping(&client, 7, 2).await;
    assert_eq!(recv(&mut inbox).await, (7, TestMsg::Ping { n: 2 }));
    assert_eq!(lost.recv().await, Some(PeerEvent::Greeted(7)));
    stop.cancel();
    let after = tokio::time::timeout(WAIT, lost.recv()).await.expect("the server kept its sender after stopping");
    assert_eq!(after, None, "a shutdown was reported as a lost link");
}

/// A raw peer channel from node `id` that says hello and sends one ping.
async fn hello_and_ping(client: &SshClient, id: u64, n: u64) -> russh::Channel<russh::client::Msg> {
    let channel = client.open_subsystem(PEER_SUBSYSTEM).await.unwrap();
    let mut stream = raw_frame(&frame::encode_hello(id).unwrap());
    stream.extend(raw_frame(&frame::encode_message(&TestMsg::Ping { n }, MAX_FRAME).unwrap()));
    channel.data_bytes(stream).await.unwrap();
    channel
}
