//! Who may do what on the embedded server, through the paxos client:
//! unknown keys, operators, readers and peers, and the client's run,
//! console and stream calls.

mod ssh_support;

use futures::StreamExt;
use paxos::ssh::server::{JOIN_COMMAND, JOIN_SUBSYSTEM};
use paxos::ssh::{AccessList, PEER_SUBSYSTEM, SshClient, SshError, StreamEvent};
use ssh_support::*;

struct Fixture {
    _dir: tempfile::TempDir,
    host: TestKey,
    operator: TestKey,
    reader: TestKey,
    peer: TestKey,
    stranger: TestKey,
    server: RunningServer,
}

async fn fixture() -> Fixture {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let host = make_key(&dir, "node1");
    let operator = make_key(&dir, "alice");
    let reader = make_key(&dir, "bob");
    let peer = make_key(&dir, "node2");
    let stranger = make_key(&dir, "mallory");
    let access = AccessList {
        peers: [(2, peer.public.clone())].into_iter().collect(),
        operators: vec![operator.public.clone()],
        readers: vec![reader.public.clone()],
    };
    let server = start_server(1, &host, access, 64 * 1024).await;
    Fixture { _dir: dir, host, operator, reader, peer, stranger, server }
}

async fn connect(f: &Fixture, who: &TestKey) -> Result<SshClient, SshError> {
    SshClient::connect(&f.server.addr_string(), &f.host.public, &who.private).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_rejected() {
    let f = fixture().await;
    match connect(&f, &f.stranger).await {
        Err(SshError::AuthRejected { fingerprint, .. }) => {
            assert_eq!(fingerprint, f.stranger.fingerprint());
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a stranger got in"),
    }
    let fp = f.stranger.fingerprint();
    eventually("the rejection to be logged", || logs().has_line(&["WARN", "rejecting unknown key", &fp])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_key_may_not_open_peer_subsystem() {
    let f = fixture().await;
    let client = connect(&f, &f.operator).await.unwrap();
    let err = client.open_subsystem(PEER_SUBSYSTEM).await.unwrap_err();
    assert!(matches!(err, SshError::Refused { .. }), "{err}");
    let expected = format!("operator key {} from 127.0.0.1:", f.operator.fingerprint());
    eventually("the refusal to be logged", || logs().has_line(&["WARN", &expected, "may not open paxos-peer"])).await;
    // The connection is still good for what the operator may do.
    let out = client.run("paxos status").await.unwrap();
    assert_eq!(out.exit_status, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_reaches_the_service_as_reader() {
    let f = fixture().await;
    let client = connect(&f, &f.reader).await.unwrap();
    let out = client.run("paxos status --json").await.unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, format!("principal=reader key={} command=paxos status --json\n", f.reader.fingerprint()));
    assert_eq!(out.exit_status, Some(0));
    assert!(out.stderr.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_exit_status_and_stderr() {
    let f = fixture().await;
    let client = connect(&f, &f.operator).await.unwrap();
    let out = client.run("paxos fail").await.unwrap();
    assert_eq!(out.exit_status, Some(3));
    assert_eq!(out.stderr, b"error: asked to fail\n");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("principal=operator "), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_command_still_ends_its_channel() {
    let f = fixture().await;
    let client = connect(&f, &f.operator).await.unwrap();
    let out = tokio::time::timeout(WAIT, client.run("paxos panic")).await.expect("the channel must end").unwrap();
    assert_eq!(out.exit_status, Some(70));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("paxos: internal error:") && stderr.contains("the node keeps serving"), "{stderr}");
    // The connection is still usable.
    let out = client.run("paxos status").await.unwrap();
    assert_eq!(out.exit_status, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_may_not_run_commands_and_unknown_subsystems_fail() {
    let f = fixture().await;
    let peer = connect(&f, &f.peer).await.unwrap();
    let err = peer.run("paxos status").await.unwrap_err();
    assert!(matches!(err, SshError::Refused { .. }), "{err}");

    let operator = connect(&f, &f.operator).await.unwrap();
    for name in ["sftp", "paxosx", "paxos-peer-not"] {
        let err = operator.run(name).await.unwrap_err();
        assert!(matches!(err, SshError::Refused { .. }), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_answers_pipelined_lines() {
    let f = fixture().await;
    let client = connect(&f, &f.operator).await.unwrap();

    let mut console = client.console().await.unwrap();
    console.send_line("get x").await.unwrap();
    assert_eq!(console.read_line().await.as_deref(), Some("operator ran: get x"));

    // Many commands in flight on one channel: write and read concurrently.
    let (mut tx, mut rx) = console.split();
    let writer = tokio::spawn(async move {
        for i in 0..500 {
            tx.send_line(&format!("put k{i} v{i}")).await.unwrap();
        }
        tx.finish().await;
    });
    for i in 0..500 {
        let line = rx.read_line().await;
        assert_eq!(line, Some(format!("operator ran: put k{i} v{i}")));
    }
    writer.await.unwrap();
    assert_eq!(rx.finish().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_yields_lines_then_exit() {
    let f = fixture().await;
    let client = connect(&f, &f.reader).await.unwrap();
    let events: Vec<StreamEvent> = client.stream("paxos watch").await.unwrap().collect().await;
    let mut expected: Vec<StreamEvent> = (0..5).map(|i| StreamEvent::Stdout(format!("tick {i}"))).collect();
    expected.push(StreamEvent::Exit(0));
    assert_eq!(events, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_wrong_host_key() {
    let f = fixture().await;
    let err = SshClient::connect(
        &f.server.addr_string(),
        &f.operator.public, // not the host key
        &f.operator.private,
    )
    .await
    .err()
    .expect("must refuse");
    let text = err.to_string();
    assert!(matches!(err, SshError::HostKeyMismatch(_)), "{text}");
    assert!(text.contains(&f.host.fingerprint()), "{text}");
    assert!(text.contains(&f.operator.fingerprint()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_members_key_may_fetch_the_inventory_for_joining() {
    let f = fixture().await;
    // A member's key (one just added, typically) runs exactly the inventory listing.
    let client = connect(&f, &f.peer).await.unwrap();
    let out = client.run(JOIN_SUBSYSTEM).await.unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, format!("principal=peer 2 key={} command={JOIN_COMMAND}\n", f.peer.fingerprint()));
    // Operators and readers have their own commands; not this one.
    for who in [&f.operator, &f.reader] {
        let client = connect(&f, who).await.unwrap();
        let err = client.run(JOIN_SUBSYSTEM).await.unwrap_err();
        assert!(matches!(err, SshError::Refused { .. }), "{err}");
        let expected = format!("key {} from 127.0.0.1:", who.fingerprint());
        eventually("the refusal to be logged", || logs().has_line(&["WARN", &expected, "may not open paxos-join"]))
            .await;
    }
}
