//! The operator-side client: connect with a pinned host key and an identity,
//! run one command, keep a line console open, or follow a streaming command.
//! Peer links reuse the connection helpers here.

use super::{SSH_USER, SshError};
use crate::keys::fingerprint;
use futures::Stream;
use russh::client::{self, Msg};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bound on each step of setting up a connection or channel, so a
/// blackholed address fails instead of hanging.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

type MismatchSlot = Arc<Mutex<Option<String>>>;

/// Accepts exactly the pinned host key; no trust on first use. On a
/// mismatch it records a message naming both fingerprints.
pub struct PinnedHostKey {
    pinned: PublicKey,
    what: String,
    mismatch: MismatchSlot,
}

impl PinnedHostKey {
    /// `what` names the server in messages: "peer 2 at 127.0.0.1:7102".
    pub(crate) fn new(pinned: PublicKey, what: String) -> (PinnedHostKey, MismatchSlot) {
        let mismatch = MismatchSlot::default();
        let handler = PinnedHostKey { pinned, what, mismatch: mismatch.clone() };
        (handler, mismatch)
    }
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, offered: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let presented = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                if key.key_data() == self.pinned.key_data() {
                    return Ok(true);
                }
                format!("host key {}", fingerprint(key))
            }
            PublicKeyOrCertificate::Certificate(_) => "a host certificate".to_string(),
        };
        let text =
            format!("{} presented {presented} but the cluster pins {}; refusing", self.what, fingerprint(&self.pinned));
        *self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
        Ok(false)
    }
}

pub(crate) fn client_config() -> client::Config {
    client::Config {
        preferred: super::preferred(),
        nodelay: true,
        // Notice a dead server within about 20 s even when idle.
        keepalive_interval: Some(Duration::from_secs(5)),
        keepalive_max: 3,
        ..Default::default()
    }
}

pub(crate) async fn with_timeout<T>(addr: &str, during: &str, fut: impl Future<Output = T>) -> Result<T, SshError> {
    tokio::time::timeout(STEP_TIMEOUT, fut).await.map_err(|_| SshError::Timeout {
        addr: addr.to_string(),
        secs: STEP_TIMEOUT.as_secs(),
        during: during.to_string(),
    })
}

pub(crate) async fn connect_pinned(
    config: Arc<client::Config>,
    addr: &str,
    handler: PinnedHostKey,
    mismatch: MismatchSlot,
) -> Result<client::Handle<PinnedHostKey>, SshError> {
    match with_timeout(addr, "connecting", client::connect(config, addr, handler)).await? {
        Ok(handle) => Ok(handle),
        Err(e) => match mismatch.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(text) => Err(SshError::HostKeyMismatch(text)),
            None => Err(SshError::Connect { addr: addr.to_string(), reason: e.to_string() }),
        },
    }
}

/// Opens a session channel and requests subsystem `name`, waiting for the
/// server's answer.
pub(crate) async fn open_subsystem<H: client::Handler>(
    handle: &client::Handle<H>,
    addr: &str,
    name: &str,
) -> Result<Channel<Msg>, SshError> {
    let session_err = |source| SshError::Session { addr: addr.to_string(), source };
    let mut channel =
        with_timeout(addr, "opening a channel", handle.channel_open_session()).await?.map_err(session_err)?;
    channel.request_subsystem(true, name).await.map_err(session_err)?;
    loop {
        match with_timeout(addr, "waiting for the subsystem reply", channel.wait()).await? {
            Some(ChannelMsg::Success) => return Ok(channel),
            Some(ChannelMsg::Failure | ChannelMsg::Close) | None => {
                return Err(SshError::Refused { addr: addr.to_string(), what: format!("subsystem {name:?}") });
            }
            Some(_) => {}
        }
    }
}

/// What a command printed and how it exited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// None if the server closed the channel without an exit status.
    pub exit_status: Option<u32>,
}

/// One line of a streaming command's output, or its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    Stdout(String),
    Stderr(String),
    Exit(u32),
}

/// An authenticated connection to one node.
pub struct SshClient {
    // Shared with consoles and streams, which keep the connection alive.
    handle: Arc<client::Handle<PinnedHostKey>>,
    addr: String,
}

impl SshClient {
    pub async fn connect(
        addr: &str,
        pinned_host_key: &PublicKey,
        identity: &PrivateKey,
    ) -> Result<SshClient, SshError> {
        let (handler, mismatch) = PinnedHostKey::new(pinned_host_key.clone(), addr.to_string());
        let config = Arc::new(client_config());
        let mut handle = connect_pinned(config, addr, handler, mismatch).await?;
        // An RSA operator key signs with SHA-512: servers refuse SHA-1 ssh-rsa.
        let hash = identity.algorithm().is_rsa().then_some(russh::keys::HashAlg::Sha512);
        let key = PrivateKeyWithHashAlg::new(Arc::new(identity.clone()), hash);
        let auth = with_timeout(addr, "authenticating", handle.authenticate_publickey(SSH_USER, key))
            .await?
            .map_err(|source| SshError::Session { addr: addr.to_string(), source })?;
        if !auth.success() {
            return Err(SshError::AuthRejected {
                addr: addr.to_string(),
                fingerprint: fingerprint(identity.public_key()),
            });
        }
        Ok(SshClient { handle: Arc::new(handle), addr: addr.to_string() })
    }

    /// A raw channel on subsystem `name`, for callers that speak the
    /// protocol themselves. Keep this client alive while using it.
    pub async fn open_subsystem(&self, name: &str) -> Result<Channel<Msg>, SshError> {
        open_subsystem(&self.handle, &self.addr, name).await
    }

    /// Runs one operator command ("paxos status") and collects its output.
    pub async fn run(&self, command_line: &str) -> Result<CommandOutput, SshError> {
        let mut channel = self.open_subsystem(command_line).await?;
        // We have nothing for its stdin.
        let _ = channel.eof().await;
        let mut out = CommandOutput::default();
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Opens the interactive console (subsystem "paxos"): one command line
    /// in, its answer out, any number of times on one channel.
    pub async fn console(&self) -> Result<Console, SshError> {
        let channel = self.open_subsystem("paxos").await?;
        let (read, write) = channel.split();
        Ok(Console {
            tx: ConsoleTx { write, addr: self.addr.clone(), _client: self.handle.clone() },
            rx: ConsoleRx {
                lines: Lines::new(read),
                exit_status: None,
                stderr: Vec::new(),
                _client: self.handle.clone(),
            },
        })
    }

    /// Runs a command that keeps printing (e.g. "paxos watch") and yields
    /// its output line by line, then its exit status.
    pub async fn stream(
        &self,
        command_line: &str,
    ) -> Result<impl Stream<Item = StreamEvent> + Send + 'static, SshError> {
        let channel = self.open_subsystem(command_line).await?;
        let _ = channel.eof().await;
        let (read, _write) = channel.split();
        let state = (Lines::new(read), self.handle.clone());
        Ok(futures::stream::unfold(state, |(mut lines, client)| async move {
            let event = lines.next_event().await?;
            Some((event, (lines, client)))
        }))
    }

    pub async fn disconnect(&self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

/// A line console; `split` it to write and read from separate tasks (a
/// benchmark pipelining many commands must keep reading while it writes).
pub struct Console {
    tx: ConsoleTx,
    rx: ConsoleRx,
}

impl Console {
    pub async fn send_line(&mut self, line: &str) -> Result<(), SshError> {
        self.tx.send_line(line).await
    }

    pub async fn read_line(&mut self) -> Option<String> {
        self.rx.read_line().await
    }

    pub fn split(self) -> (ConsoleTx, ConsoleRx) {
        (self.tx, self.rx)
    }

    /// Ends the input and waits for the console to exit.
    pub async fn finish(self) -> Option<u32> {
        self.tx.finish().await;
        self.rx.finish().await
    }
}

pub struct ConsoleTx {
    write: ChannelWriteHalf<Msg>,
    addr: String,
    _client: Arc<client::Handle<PinnedHostKey>>,
}

impl ConsoleTx {
    pub async fn send_line(&mut self, line: &str) -> Result<(), SshError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.write.data_bytes(bytes).await.map_err(|source| SshError::Session { addr: self.addr.clone(), source })
    }

    /// Sends EOF: the server's console ends after answering what it has.
    pub async fn finish(self) {
        let _ = self.write.eof().await;
    }
}

pub struct ConsoleRx {
    lines: Lines,
    exit_status: Option<u32>,
    stderr: Vec<String>,
    _client: Arc<client::Handle<PinnedHostKey>>,
}

impl ConsoleRx {
    /// The next stdout line; None once the console has ended.
    pub async fn read_line(&mut self) -> Option<String> {
        loop {
            match self.lines.next_event().await? {
                StreamEvent::Stdout(line) => return Some(line),
                StreamEvent::Stderr(line) => self.stderr.push(line),
                StreamEvent::Exit(code) => self.exit_status = Some(code),
            }
        }
    }

    /// Lines the console wrote to stderr so far.
    pub fn stderr(&self) -> &[String] {
        &self.stderr
    }

    /// Reads to the end and returns the exit status.
    pub async fn finish(mut self) -> Option<u32> {
        while self.read_line().await.is_some() {}
        self.exit_status
    }
}

/// Splits a channel's stdout and stderr into lines.
struct Lines {
    read: ChannelReadHalf,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    ready: VecDeque<StreamEvent>,
    ended: bool,
}

impl Lines {
    fn new(read: ChannelReadHalf) -> Lines {
        Lines { read, stdout: Vec::new(), stderr: Vec::new(), ready: VecDeque::new(), ended: false }
    }

    async fn next_event(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            match self.read.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    self.stdout.extend_from_slice(&data);
                    take_lines(&mut self.stdout, &mut self.ready, StreamEvent::Stdout);
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    self.stderr.extend_from_slice(&data);
                    take_lines(&mut self.stderr, &mut self.ready, StreamEvent::Stderr);
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    self.flush_partial();
                    self.ready.push_back(StreamEvent::Exit(exit_status));
                }
                // The exit status may follow EOF, so only Close ends it.
                Some(ChannelMsg::Eof) => self.flush_partial(),
                Some(ChannelMsg::Close) | None => {
                    self.flush_partial();
                    self.ended = true;
                }
                Some(_) => {}
            }
        }
    }

    /// An unterminated last line still counts.
    fn flush_partial(&mut self) {
        if !self.stdout.is_empty() {
            let line = String::from_utf8_lossy(&self.stdout).into_owned();
            self.stdout.clear();
            self.ready.push_back(StreamEvent::Stdout(line));
        }
        if !self.stderr.is_empty() {
            let line = String::from_utf8_lossy(&self.stderr).into_owned();
            self.stderr.clear();
            self.ready.push_back(StreamEvent::Stderr(line));
        }
    }
}

fn take_lines(buf: &mut Vec<u8>, ready: &mut VecDeque<StreamEvent>, wrap: fn(String) -> StreamEvent) {
    while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
        let mut line: Vec<u8> = buf.drain(..=pos).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        ready.push_back(wrap(String::from_utf8_lossy(&line).into_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks() {
        let mut buf = Vec::new();
        let mut ready = VecDeque::new();
        buf.extend_from_slice(b"one\r\ntw");
        take_lines(&mut buf, &mut ready, StreamEvent::Stdout);
        buf.extend_from_slice(b"o\n\nthree");
        take_lines(&mut buf, &mut ready, StreamEvent::Stdout);
        let got: Vec<_> = ready.into_iter().collect();
        assert_eq!(
            got,
            vec![
                StreamEvent::Stdout("one".into()),
                StreamEvent::Stdout("two".into()),
                StreamEvent::Stdout(String::new()),
            ]
        );
        assert_eq!(buf, b"three");
    }
}
