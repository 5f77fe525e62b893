//! Clock probes over real SSH on loopback: a server probing the peers that
//! dial it, links answering with a deliberately skewed clock, and peers
//! sending clock frames they should not.

mod ssh_support;

use paxos::ssh::clock::{ClockFilter, Sample};
use paxos::ssh::clock_probe::{ClockExchange, ClockFrame, ClockSink};
use paxos::ssh::frame;
use paxos::ssh::wall_clock::WallClock;
use paxos::ssh::{AccessList, PEER_SUBSYSTEM, PeerLink, PeerLinkSettings, ServerSettings, SshClient, SshServer};
use russh::ChannelMsg;
use ssh_support::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const MAX_FRAME: usize = 64 * 1024;

/// Every sample and restart the server reports.
#[derive(Default)]
struct Recorder {
    samples: Mutex<Vec<(u64, Sample)>>,
    restarts: Mutex<Vec<u64>>,
}

impl ClockSink for Recorder {
    fn restart(&self, peer: u64) {
        self.restarts.lock().unwrap().push(peer);
    }
    fn sample(&self, peer: u64, sample: Sample) {
        self.samples.lock().unwrap().push((peer, sample));
    }
}

impl Recorder {
    fn of(&self, peer: u64) -> Vec<Sample> {
        self.samples.lock().unwrap().iter().filter(|(p, _)| *p == peer).map(|(_, s)| *s).collect()
    }
}

struct ProbingServer {
    addr: String,
    inbox: mpsc::Receiver<(u64, TestMsg)>,
    recorder: Arc<Recorder>,
    shutdown: CancellationToken,
}

impl Drop for ProbingServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A server on 127.0.0.1 port 0 that probes every 20 ms.
async fn probing_server(node: u64, key: &TestKey, access: AccessList) -> ProbingServer {
    let settings = ServerSettings {
        node,
        listen: "127.0.0.1:0".into(),
        host_key: key.private.clone(),
        access,
        max_frame: MAX_FRAME,
    };
    let recorder = Arc::new(Recorder::default());
    let exchange =
        ClockExchange { clock: WallClock::system(), sink: recorder.clone(), interval: Duration::from_millis(20) };
    let (addr, inbox, shutdown) = spawn_server(SshServer::bind(settings).await.unwrap().with_clock(exchange));
    ProbingServer { addr: addr.to_string(), inbox, recorder, shutdown }
}

fn link_settings(local: u64, key: &TestKey, addr: String, pinned: &TestKey, clock: WallClock) -> PeerLinkSettings {
    PeerLinkSettings {
        local_node: local,
        peer_node: 1,
        peer_addr: addr,
        peer_host_key: pinned.public.clone(),
        identity: Arc::new(key.private.clone()),
        max_frame: MAX_FRAME,
        queue_capacity: 1024,
        queue_bytes: 1 << 20,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        clock,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_peers_are_measured_within_the_error_bound() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_key(&dir, "node1");
    let ahead = make_key(&dir, "node2");
    let behind = make_key(&dir, "node3");
    let mut server = probing_server(1, &k1, peers(&[(2, &ahead), (3, &behind)])).await;
    let shutdown = CancellationToken::new();
    let skews = [(2, &ahead, 750_000), (3, &behind, -750_000)];
    let mut links = Vec::new();
    for (id, key, skew_us) in skews {
        let clock = WallClock::skewed(skew_us / 1000).unwrap();
        links.push(PeerLink::<TestMsg>::spawn(
            link_settings(id, key, server.addr.clone(), &k1, clock),
            shutdown.clone(),
        ));
    }
    let recorder = server.recorder.clone();
    eventually("eight samples from each peer", || recorder.of(2).len() >= 8 && recorder.of(3).len() >= 8).await;
    for (id, _, skew_us) in skews {
        let mut filter = ClockFilter::default();
        for sample in recorder.of(id) {
            // Both ends read one machine's clock: each sample holds the true
            // skew within half its round trip, and so does the filter.
            assert!((sample.offset_us - skew_us).abs() <= sample.delay_us / 2 + 1, "node {id}: {sample:?}");
            filter.add(sample);
            let e = filter.estimate().unwrap();
            assert!((e.offset_us - skew_us).abs() <= e.error_us, "node {id}: {e:?}");
        }
        println!("node {id}: {:?}", filter.estimate().unwrap());
    }
    let mut restarts = recorder.restarts.lock().unwrap().clone();
    restarts.sort();
    assert_eq!(restarts, [2, 3], "each new channel starts its peer's estimate afresh");
    // Consensus traffic flows as before on the probed channels.
    links[0].send(TestMsg::Ping { n: 1 });
    assert_eq!(recv(&mut server.inbox).await, (2, TestMsg::Ping { n: 1 }));
    assert_eq!(links[0].stats().sent, 1, "clock echoes are not counted as messages");
    shutdown.cancel();
}

/// The next clock probe the server writes on `channel` (its origin).
async fn next_probe(channel: &mut russh::Channel<russh::client::Msg>, pending: &mut Vec<u8>) -> i64 {
    let wait = async {
        loop {
            if pending.len() >= 4 {
                let len = u32::from_be_bytes(pending[..4].try_into().unwrap()) as usize;
                if pending.len() >= 4 + len {
                    let body: Vec<u8> = pending.drain(..4 + len).skip(4).collect();
                    match ClockFrame::decode(&body) {
                        Ok(ClockFrame::ClockProbe { origin }) => return origin,
                        other => panic!("the server wrote {other:?}: {}", String::from_utf8_lossy(&body)),
                    }
                }
            }
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) => pending.extend_from_slice(&data),
                Some(_) => {}
                None => panic!("channel ended"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("no probe\nlogs:\n{}", logs().text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_frames_a_peer_should_not_send_are_ignored_or_close_only_their_channel() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_key(&dir, "node1");
    let raw = make_key(&dir, "node7");
    let good = make_key(&dir, "node8");
    let mut server = probing_server(1, &k1, peers(&[(7, &raw), (8, &good)])).await;
    let shutdown = CancellationToken::new();
    let good_link = PeerLink::<TestMsg>::spawn(
        link_settings(8, &good, server.addr.clone(), &k1, WallClock::system()),
        shutdown.clone(),
    );
    good_link.send(TestMsg::Ping { n: 0 });
    assert_eq!(recv(&mut server.inbox).await, (8, TestMsg::Ping { n: 0 }));

    // Node 7 speaks raw frames: it reads the server's probes and answers
    // them as it likes.
    let client = SshClient::connect(&server.addr, &k1.public, &raw.private).await.unwrap();
    let mut channel = client.open_subsystem(PEER_SUBSYSTEM).await.unwrap();
    channel.data_bytes(raw_frame(&frame::encode_hello(7).unwrap())).await.unwrap();
    let mut pending = Vec::new();
    let origin = next_probe(&mut channel, &mut pending).await;
    // Impossible times, and an echo of a probe never sent: left out, and
    // the channel stays open.
    let impossible = ClockFrame::ClockEcho { origin, received: -1, sent: i64::MAX }.encode();
    let unsent = ClockFrame::ClockEcho { origin: origin + 1, received: origin, sent: origin }.encode();
    let ping = frame::encode_message(&TestMsg::Ping { n: 70 }, MAX_FRAME).unwrap();
    let mut stream = raw_frame(&impossible);
    stream.extend(raw_frame(&unsent));
    stream.extend(raw_frame(&ping));
    channel.data_bytes(stream).await.unwrap();
    assert_eq!(recv(&mut server.inbox).await, (7, TestMsg::Ping { n: 70 }));
    assert!(server.recorder.of(7).is_empty(), "{:?}", server.recorder.of(7));
    // A proper echo counts.
    let origin = next_probe(&mut channel, &mut pending).await;
    let fine = ClockFrame::ClockEcho { origin, received: origin + 40, sent: origin + 50 }.encode();
    channel.data_bytes(raw_frame(&fine)).await.unwrap();
    let recorder = server.recorder.clone();
    eventually("the proper echo's sample", || !recorder.of(7).is_empty()).await;

    let cases: [(&[u8], &str); 3] = [
        (br#"{"type":"clock_echo","origin":"soon"}"#, "malformed JSON in frame: clock frame"),
        (br#"{"type":"clock_echo","origin":1,"received":2,"sent":3.5}"#, "malformed JSON in frame: clock frame"),
        (br#"{"type":"clock_probe","origin":1}"#, "unknown message type \"clock_probe\""),
    ];
    for (round, (bad, complaint)) in cases.into_iter().enumerate() {
        let mut channel = client.open_subsystem(PEER_SUBSYSTEM).await.unwrap();
        let mut stream = raw_frame(&frame::encode_hello(7).unwrap());
        stream.extend(raw_frame(bad));
        channel.data_bytes(stream).await.unwrap();
        closed_by_server(&mut channel).await;
        assert!(
            logs().has_line(&["ERROR", "closing paxos-peer channel from node 7", complaint]),
            "{}: no error logged\n{}",
            String::from_utf8_lossy(bad),
            logs().text()
        );
        // The well-behaved peer is unaffected.
        let n = 1 + round as u64;
        good_link.send(TestMsg::Ping { n });
        assert_eq!(recv(&mut server.inbox).await, (8, TestMsg::Ping { n }));
    }
    assert!(!server.recorder.of(8).is_empty(), "the good link answers probes");
    assert!(good_link.stats().connected);
    shutdown.cancel();
}
