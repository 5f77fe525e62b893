//! Shared pieces of the loopback SSH tests: real keys in temp dirs, real
//! servers on 127.0.0.1 port 0, a tiny operator service, log capture, and
//! bounded waits (poll every 10 ms, give up after 10 s).
#![allow(dead_code)] // each test binary uses a different subset

use paxos::keys;
use paxos::ssh::{AccessList, OperatorService, OperatorSession, ServerSettings, SshServer};
use russh::keys::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(10);

/// The message type the transport tests carry, tagged like the real one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TestMsg {
    Ping { n: u64 },
    Note { text: String },
}

/// A key written to disk the way `paxos keygen` would.
pub struct TestKey {
    pub path: PathBuf,
    pub private: PrivateKey,
    pub public: PublicKey,
}

impl TestKey {
    pub fn fingerprint(&self) -> String {
        keys::fingerprint(&self.public)
    }
}

pub fn make_key(dir: &tempfile::TempDir, name: &str) -> TestKey {
    let path = dir.path().join(name);
    let public = keys::generate_ed25519(&path, name).expect("generate key");
    let private = keys::load_private(&path).expect("load key");
    TestKey { path, private, public }
}

/// Echoes who asked for what. "paxos" alone is a console answering each
/// stdin line; "paxos fail" exits 3; "paxos watch" prints five lines;
/// "paxos panic" panics.
pub struct EchoService;

impl OperatorService for EchoService {
    fn run(&self, s: OperatorSession) -> Pin<Box<dyn Future<Output = u32> + Send + 'static>> {
        Box::pin(async move {
            let OperatorSession { principal, fingerprint, command_line, stdin, mut stdout, mut stderr } = s;
            let header = format!("principal={principal} key={fingerprint} command={command_line}\n");
            match command_line.as_str() {
                "paxos" => {
                    let mut lines = BufReader::new(stdin).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let answer = format!("{principal} ran: {line}\n");
                        if stdout.write_all(answer.as_bytes()).await.is_err() {
                            return 1;
                        }
                    }
                    0
                }
                "paxos fail" => {
                    let _ = stdout.write_all(header.as_bytes()).await;
                    let _ = stderr.write_all(b"error: asked to fail\n").await;
                    3
                }
                "paxos panic" => panic!("the operator service panicked on purpose"),
                "paxos watch" => {
                    for i in 0..5 {
                        let _ = stdout.write_all(format!("tick {i}\n").as_bytes()).await;
                    }
                    0
                }
                _ => {
                    let _ = stdout.write_all(header.as_bytes()).await;
                    0
                }
            }
        })
    }
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub inbox: mpsc::Receiver<(u64, TestMsg)>,
    pub shutdown: CancellationToken,
}

impl RunningServer {
    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start_server(node: u64, host_key: &TestKey, access: AccessList, max_frame: usize) -> RunningServer {
    start_server_at("127.0.0.1:0", node, host_key, access, max_frame).await
}

/// Starts a server on `listen`, retrying the bind for a while in case a
/// previous server on that port is still letting go of it.
pub async fn start_server_at(
    listen: &str,
    node: u64,
    host_key: &TestKey,
    access: AccessList,
    max_frame: usize,
) -> RunningServer {
    let deadline = Instant::now() + WAIT;
    let server = loop {
        let settings = ServerSettings {
            node,
            listen: listen.into(),
            host_key: host_key.private.clone(),
            access: access.clone(),
            max_frame,
        };
        match SshServer::bind(settings).await {
            Ok(server) => break server,
            Err(e) if Instant::now() < deadline => {
                println!("bind {listen}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("bind {listen}: {e}"),
        }
    };
    let (addr, inbox, shutdown) = spawn_server(server);
    RunningServer { addr, inbox, shutdown }
}

/// Runs a bound server with the echo service: its address, the peer
/// messages it receives, and the token that stops it.
pub fn spawn_server(server: SshServer) -> (SocketAddr, mpsc::Receiver<(u64, TestMsg)>, CancellationToken) {
    let addr = server.local_addr();
    let (tx, inbox) = mpsc::channel(1024);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = server.run(tx, Arc::new(EchoService), token).await {
            panic!("server stopped: {e}");
        }
    });
    (addr, inbox, shutdown)
}

/// Polls `cond` every 10 ms for up to 10 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\nlogs:\n{}", logs().text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn recv(inbox: &mut mpsc::Receiver<(u64, TestMsg)>) -> (u64, TestMsg) {
    match tokio::time::timeout(WAIT, inbox.recv()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("inbox closed"),
        Err(_) => panic!("no message within {WAIT:?}\nlogs:\n{}", logs().text()),
    }
}

/// Everything logged through `tracing` in this test binary.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }

    /// Whether one line holds every needle.
    pub fn has_line(&self, needles: &[&str]) -> bool {
        self.text().lines().any(|line| needles.iter().all(|n| line.contains(n)))
    }
}

pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}

/// Installs (once per test binary) a global subscriber capturing logs.
pub fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let _ = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            // russh's own debug logs are a flood; ours are what tests read.
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,paxos=debug"))
            .try_init();
        buffer
    })
}

/// An access list that knows these peers (and no operator).
pub fn peers(list: &[(u64, &TestKey)]) -> AccessList {
    AccessList { peers: list.iter().map(|(id, k)| (*id, k.public.clone())).collect(), ..AccessList::default() }
}

/// `body` as one peer frame: a 4-byte big-endian length, then the bytes.
pub fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Waits until the server closes `channel`.
pub async fn closed_by_server(channel: &mut russh::Channel<russh::client::Msg>) {
    let wait = async {
        while let Some(msg) = channel.wait().await {
            if matches!(msg, russh::ChannelMsg::Close) {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("channel not closed\nlogs:\n{}", logs().text()));
}
