//! Pieces of the connection-limit tests: a loopback server with chosen
//! limits, raw TCP clients bound to a chosen loopback source address (Linux
//! routes all of 127.0.0.0/8 to lo, so each address is a distinct source),
//! and the real OpenSSH client from such an address.
#![allow(dead_code)] // each test binary uses a different subset

use crate::ssh_support::{EchoService, TestKey, WAIT, logs, make_key};
use paxos::keys;
use paxos::ssh::{AccessList, ConnectionLimits, ServerSettings, SshServer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct LimitedServer {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub host: TestKey,
    pub operator: TestKey,
    /// Listed as node 2's key.
    pub peer: TestKey,
    pub known_hosts: PathBuf,
    pub shutdown: CancellationToken,
}

impl Drop for LimitedServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A server on 127.0.0.1 (port 0) with `limits`, one operator key, and a
/// known_hosts file pinning its host key for OpenSSH.
pub async fn start_limited(limits: ConnectionLimits) -> LimitedServer {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let host = make_key(&dir, "node1");
    let operator = make_key(&dir, "alice");
    let peer = make_key(&dir, "node2");
    let access = AccessList {
        operators: vec![operator.public.clone()],
        peers: [(2, peer.public.clone())].into(),
        ..AccessList::default()
    };
    let settings = ServerSettings {
        node: 1,
        listen: "127.0.0.1:0".into(),
        host_key: host.private.clone(),
        access,
        max_frame: 64 * 1024,
    };
    let server = SshServer::bind(settings).await.expect("bind").with_limits(limits).expect("valid limits");
    let addr = server.local_addr();
    let (tx, _inbox) = mpsc::channel::<(u64, serde_json::Value)>(16);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = server.run(tx, Arc::new(EchoService), token).await {
            panic!("server stopped: {e}");
        }
    });
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, keys::known_hosts_line("127.0.0.1", addr.port(), &host.public) + "\n").unwrap();
    LimitedServer { dir, addr, host, operator, peer, known_hosts, shutdown }
}

/// A plain TCP connection to `to` from loopback address `from`.
pub async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    match tokio::time::timeout(WAIT, socket.connect(to)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => panic!("connect from {from} to {to}: {e}"),
        Err(_) => panic!("connect from {from} to {to} timed out"),
    }
}

/// What the server sent first on a raw connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Greeting {
    /// "SSH-2.0-...": admitted.
    Banner,
    /// Closed at the door, after this line (it may be lost to a reset).
    Refused(String),
}

/// Reads the server's first line (or everything up to its close).
pub async fn greeting(stream: &mut TcpStream) -> Greeting {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("no greeting within {WAIT:?}; got {:?}", String::from_utf8_lossy(&got)),
            Ok(Ok(0)) | Ok(Err(_)) => return Greeting::Refused(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
        if got.starts_with(b"SSH-") {
            return Greeting::Banner;
        }
        if got.contains(&b'\n') && !got.starts_with(b"SSH-") {
            // A refusal line; the close follows.
            let line = String::from_utf8_lossy(&got).into_owned();
            assert!(
                matches!(tokio::time::timeout(WAIT, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_))),
                "the server kept a refused connection open"
            );
            return Greeting::Refused(line);
        }
    }
}

/// Waits until the server closes `stream` (EOF or reset), reading and
/// discarding whatever it sends; panics after `WAIT`.
pub async fn wait_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("{what}: still open after {WAIT:?}\nlogs:\n{}", logs().text()),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

/// The real OpenSSH client as the operator, from loopback address `from`.
pub async fn openssh_from(s: &LimitedServer, from: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-b", from, "-p"])
        .arg(s.addr.port().to_string())
        .arg("-i")
        .arg(&s.operator.path)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", s.known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            "127.0.0.1",
        ])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(WAIT, cmd.output()).await {
        Ok(out) => out.expect("run ssh"),
        Err(_) => panic!("ssh {args:?} did not finish\nlogs:\n{}", logs().text()),
    }
}

/// Retries the operator's `ssh -s paxos status` from `from` until it
/// succeeds (the server frees slots and tokens as it notices closes and as
/// time passes); panics after `WAIT`.
pub async fn operator_gets_in(s: &LimitedServer, from: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = openssh_from(s, from, &["-s", "paxos", "status"]).await;
        if out.status.code() == Some(0) {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("principal=operator"), "{stdout}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the operator at {from} never got in; last try: {:?}\n{}\nlogs:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            logs().text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub fn have_ssh() -> bool {
    match std::process::Command::new("ssh").arg("-V").output() {
        Ok(_) => true,
        Err(e) => {
            println!("SKIPPED: OpenSSH client not runnable ({e})");
            false
        }
    }
}
