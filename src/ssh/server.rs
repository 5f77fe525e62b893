//! The embedded SSH server: public-key authentication mapped to a role, and
//! channel dispatch by subsystem.
//!
//! - `paxos-peer` (peers only): length-delimited JSON frames, read on their
//!   own task and handed to the node's inbox tagged with the authenticated
//!   peer id. With a `ClockExchange` set, the server also writes clock
//!   probes on each such channel and takes the echoes (`clock_probe`).
//! - `paxos` / `paxos <command line>` subsystems and `paxos ...` exec
//!   requests (operators and readers): handed to the `OperatorService`.
//!
//! Handler methods never wait on channel traffic; everything long-lived runs
//! on spawned tasks, so one slow or hostile channel cannot stall the others.
//!
//! Connections are accepted by our own loop, not russh's, so that each one
//! passes the admission limits (`limits`) first and is closed if it has not
//! authenticated within the deadline.

use super::clock_probe::{self, ClockExchange, ClockFrame, Echoed, Prober};
use super::frame::{self, FrameError, PEER_SUBSYSTEM};
use super::limits::{Admission, ConnectionLimits, Ticket};
use super::{SshError, stdin};
use crate::keys::fingerprint;
use futures::{FutureExt, SinkExt, StreamExt};
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::{debug, error, info, warn};

mod accept;
mod access;
mod hint;

use access::Access;
pub use access::{AccessList, PeerKeys};
pub use hint::usage_hint;

/// What an authenticated key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Another node of the cluster: only the `paxos-peer` subsystem.
    Peer(u64),
    /// Every operator command.
    Operator,
    /// Read-only operator commands.
    Reader,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Peer(id) => write!(f, "peer {id}"),
            Principal::Operator => f.write_str("operator"),
            Principal::Reader => f.write_str("reader"),
        }
    }
}

/// One operator command (or an interactive console) on one channel.
pub struct OperatorSession {
    pub principal: Principal,
    /// "SHA256:..." of the key that authenticated; for the audit log.
    pub fingerprint: String,
    /// The subsystem name or exec command, e.g. "paxos status --json".
    /// Exactly "paxos" asks for an interactive console on stdin/stdout.
    pub command_line: String,
    pub stdin: Box<dyn AsyncRead + Send + Unpin>,
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
}

/// Runs operator commands; implemented by `ops`. The returned future's
/// output is the exit status sent to the client.
pub trait OperatorService: Send + Sync + 'static {
    fn run(&self, session: OperatorSession) -> Pin<Box<dyn Future<Output = u32> + Send + 'static>>;
}

pub struct ServerSettings {
    pub node: u64,
    /// "host:port"; port 0 picks a free port (see `SshServer::local_addr`).
    pub listen: String,
    pub host_key: PrivateKey,
    pub access: AccessList,
    pub max_frame: usize,
}

/// What `SshServer::with_peer_events` reports, with the peer's node id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    Greeted(u64),
    Lost(u64),
}

pub struct SshServer {
    node: u64,
    listener: TcpListener,
    local_addr: SocketAddr,
    access: Arc<Access>,
    max_frame: usize,
    config: Arc<russh::server::Config>,
    limits: ConnectionLimits,
    clock: Option<ClockExchange>,
    peer_events: Option<mpsc::Sender<PeerEvent>>,
}

/// The subsystem a joining node fetches the live inventory on
/// (`paxos serve --join`); only members' keys may open it.
pub const JOIN_SUBSYSTEM: &str = "paxos-join";
/// What `JOIN_SUBSYSTEM` runs, with the reader's rights.
pub const JOIN_COMMAND: &str = "paxos members --inventory --json";

/// Whether a subsystem name or exec command is an operator command line.
/// OpenSSH joins the words after `-s` with single spaces, so
/// `ssh node -s paxos status` requests the subsystem "paxos status".
pub fn is_operator_command(line: &str) -> bool {
    line == "paxos" || line.starts_with("paxos ")
}

/// Exit status for a command that panicked (sysexits' EX_SOFTWARE).
const EXIT_SOFTWARE: u32 = 70;

/// Bound on channels opened but not yet given a subsystem or command.
const MAX_IDLE_CHANNELS: usize = 16;

impl SshServer {
    pub async fn bind(settings: ServerSettings) -> Result<SshServer, SshError> {
        let bind_err = |source| SshError::Bind { addr: settings.listen.clone(), source };
        let listener = TcpListener::bind(&settings.listen).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let config = russh::server::Config {
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            // OpenSSH probes with "none" first; answer that at once and keep
            // the constant-time delay for real rejections.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![settings.host_key],
            preferred: super::algorithms::preferred(),
            inactivity_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        };
        Ok(SshServer {
            node: settings.node,
            listener,
            local_addr,
            access: Arc::new(Access {
                peers: PeerKeys::new(settings.access.peers),
                operators: settings.access.operators,
                readers: settings.access.readers,
            }),
            max_frame: settings.max_frame,
            config: Arc::new(config),
            limits: ConnectionLimits::DEFAULT,
            clock: None,
            peer_events: None,
        })
    }

    /// Replaces the admission limits (`ConnectionLimits::DEFAULT` unless
    /// set); refuses figures that would lock every client out.
    pub fn with_limits(mut self, limits: ConnectionLimits) -> Result<SshServer, SshError> {
        limits.validate().map_err(SshError::InvalidLimits)?;
        self.limits = limits;
        Ok(self)
    }

    /// Probes the clock of every peer whose channel this server accepts
    /// (off unless set).
    pub fn with_clock(mut self, exchange: ClockExchange) -> SshServer {
        self.clock = Some(exchange);
        self
    }

    /// Tells `tx` when a peer's channel says hello (`Greeted`: the peer is
    /// up, so a link to it that is backing off may dial now) and when such a
    /// channel ends while the server runs (`Lost`: the peer died, or its
    /// link broke). When `tx` is full a notice is dropped.
    pub fn with_peer_events(mut self, tx: mpsc::Sender<PeerEvent>) -> SshServer {
        self.peer_events = Some(tx);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The peer keys this server accepts, to change while it runs.
    pub fn peer_keys(&self) -> PeerKeys {
        self.access.peers.clone()
    }

    /// Serves until `shutdown` is cancelled (then disconnects every client)
    /// or the listener fails.
    pub async fn run<M>(
        self,
        inbox: mpsc::Sender<(u64, M)>,
        ops: Arc<dyn OperatorService>,
        shutdown: CancellationToken,
    ) -> Result<(), SshError>
    where
        M: DeserializeOwned + Send + 'static,
    {
        let shared = Arc::new(Shared {
            node: self.node,
            access: self.access,
            inbox,
            ops,
            max_frame: self.max_frame,
            shutdown: shutdown.clone(),
            clock: self.clock,
            peer_events: self.peer_events,
        });
        info!(node = self.node, addr = %self.local_addr, limits = ?self.limits, "ssh server listening");
        accept::serve(self.listener, self.config, Admission::new(self.limits), shared, shutdown).await;
        Ok(())
    }
}

struct Shared<M> {
    node: u64,
    access: Arc<Access>,
    inbox: mpsc::Sender<(u64, M)>,
    ops: Arc<dyn OperatorService>,
    max_frame: usize,
    shutdown: CancellationToken,
    clock: Option<ClockExchange>,
    peer_events: Option<mpsc::Sender<PeerEvent>>,
}

/// One client connection.
struct Connection<M> {
    shared: Arc<Shared<M>>,
    addr: String,
    principal: Option<Principal>,
    key_fingerprint: String,
    /// The key that authenticated.
    key: Option<PublicKey>,
    /// Session channels waiting for their subsystem or exec request. They
    /// stay here after a refused request, as RFC 4254 lets the client try
    /// another one on the same channel.
    idle: HashMap<ChannelId, Channel<Msg>>,
    /// This connection's hold on the admission slots; released on drop.
    ticket: Ticket,
    /// Told when the connection authenticates, which stops the deadline.
    authenticated: Option<oneshot::Sender<()>>,
}

impl<M: DeserializeOwned + Send + 'static> Connection<M> {
    fn who(&self) -> String {
        match self.principal {
            Some(p) => format!("{p} key {} from {}", self.key_fingerprint, self.addr),
            None => format!("unauthenticated client at {}", self.addr),
        }
    }

    fn open_peer_channel(&mut self, id: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        let (peer, key) = match (self.principal, &self.key) {
            (Some(Principal::Peer(peer)), Some(key)) => (peer, key.clone()),
            _ => {
                warn!("{} may not open {PEER_SUBSYSTEM}", self.who());
                return session.channel_failure(id);
            }
        };
        if !self.shared.access.peers.accepts(peer, &key) {
            // Removed from the membership since it authenticated.
            warn!("{} is no longer a member's key: refusing {PEER_SUBSYSTEM} and closing", self.who());
            session.channel_failure(id)?;
            return session.disconnect(russh::Disconnect::ByApplication, "key no longer accepted", "");
        }
        let Some(channel) = self.idle.remove(&id) else {
            return session.channel_failure(id);
        };
        session.channel_success(id)?;
        let span = tracing::info_span!("node", id = self.shared.node);
        let revoked = self.shared.access.peers.revoked(peer, key);
        let reading = read_peer_channel(channel, peer, self.addr.clone(), self.shared.clone());
        let handle = session.handle();
        let (node, who) = (self.shared.node, self.who());
        tokio::spawn(
            async move {
                tokio::select! {
                    () = reading => {}
                    () = revoked => {
                        warn!("node {node}: {who} is no longer a member's key: closing its connection");
                        let _ = handle
                            .disconnect(russh::Disconnect::ByApplication, "key no longer accepted".into(), String::new())
                            .await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    fn start_operator(&mut self, id: ChannelId, command_line: &str, session: &mut Session) -> Result<(), russh::Error> {
        let principal = match self.principal {
            Some(p @ (Principal::Operator | Principal::Reader)) => p,
            _ => {
                warn!("{} may not run operator commands ({command_line:?})", self.who());
                return session.channel_failure(id);
            }
        };
        self.start_session(id, principal, command_line, session)
    }

    /// `paxos-join`: a member's key (one just added, typically) fetches the
    /// live inventory, and nothing else.
    fn start_join(&mut self, id: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        match (self.principal, &self.key) {
            (Some(principal @ Principal::Peer(peer)), Some(key)) if self.shared.access.peers.accepts(peer, key) => {
                self.start_session(id, principal, JOIN_COMMAND, session)
            }
            _ => {
                warn!("{} may not open {JOIN_SUBSYSTEM}: only members' keys may", self.who());
                session.channel_failure(id)
            }
        }
    }

    fn start_session(
        &mut self,
        id: ChannelId,
        principal: Principal,
        command_line: &str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(channel) = self.idle.remove(&id) else {
            return session.channel_failure(id);
        };
        session.channel_success(id)?;
        info!("{} runs {command_line:?} on node {}", self.who(), self.shared.node);
        let (read, write) = channel.split();
        // The pump must know when the output waits (see `stdin`).
        let (input, gauge) = stdin::spawn_pump(read);
        let op = OperatorSession {
            principal,
            fingerprint: self.key_fingerprint.clone(),
            command_line: command_line.to_string(),
            stdin: Box::new(input),
            stdout: Box::new(gauge.wrap(write.make_writer())),
            stderr: Box::new(gauge.wrap(write.make_writer_ext(Some(1)))),
        };
        let mut panic_report = write.make_writer_ext(Some(1));
        let running = self.shared.ops.run(op);
        let what = format!("{command_line:?} for {}", self.who());
        tokio::spawn(async move {
            // A panicking command must still end its channel, or the client
            // would wait forever.
            let status = match AssertUnwindSafe(running).catch_unwind().await {
                Ok(status) => status,
                Err(_) => {
                    error!("operator command {what} panicked; the node keeps serving");
                    let note = b"paxos: internal error: the command failed inside the node and was stopped; \
                                 the node keeps serving and its log has the details\n";
                    let _ = panic_report.write_all(note).await;
                    EXIT_SOFTWARE
                }
            };
            // Same queue as the output, so these follow the last byte written.
            let _ = write.exit_status(status).await;
            let _ = write.eof().await;
            let _ = write.close().await;
        });
        Ok(())
    }

    /// A shell or a plain exec command: an operator most likely typed
    /// `ssh HOST status`. Answer with one line on stderr saying how to ask,
    /// and a usage exit status, rather than a bare "request failed".
    fn answer_with_hint(
        &mut self,
        id: ChannelId,
        what: &str,
        hint: &str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if !matches!(self.principal, Some(Principal::Operator | Principal::Reader)) || !self.idle.contains_key(&id) {
            return self.refuse(id, what, session);
        }
        info!("{} asked for {what}; answered with a usage hint", self.who());
        session.channel_success(id)?;
        session.extended_data(id, 1, bytes::Bytes::from(hint.to_string()))?;
        session.exit_status_request(id, hint::EXIT_USAGE)?;
        session.eof(id)?;
        // The channel stays in `idle` until the client's close arrives.
        session.close(id)
    }

    fn refuse(&mut self, id: ChannelId, what: &str, session: &mut Session) -> Result<(), russh::Error> {
        info!("{} asked for {what}; refused", self.who());
        session.channel_failure(id)
    }
}

impl<M: DeserializeOwned + Send + 'static> russh::server::Handler for Connection<M> {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, _user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        if let Some(refusal) = super::algorithms::refused_signature(offer.algorithm) {
            warn!("refusing key {} from {}: {refusal}", fingerprint(offer.public_key), self.addr);
            return Ok(Auth::reject());
        }
        if self.shared.access.principal(offer.public_key).is_some() {
            return Ok(Auth::Accept);
        }
        warn!("rejecting unknown key {} from {}", fingerprint(offer.public_key), self.addr);
        Ok(Auth::reject())
    }

    async fn auth_publickey(&mut self, _user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let fp = fingerprint(key.public_key);
        if let Some(refusal) = super::algorithms::refused_signature(key.algorithm) {
            warn!("refusing key {fp} from {}: {refusal}", self.addr);
            return Ok(Auth::reject());
        }
        match self.shared.access.principal(key.public_key) {
            // The guard claims a slot when one is free; peers need none.
            Some(principal @ (Principal::Operator | Principal::Reader)) if self.ticket.claim_client_slot().is_err() => {
                let max = self.ticket.max_client_connections();
                warn!(
                    "refusing {principal} key {fp} from {}: {max} operator and reader connections are open (the cap)",
                    self.addr
                );
                Ok(Auth::reject())
            }
            Some(principal) => {
                self.principal = Some(principal);
                self.key_fingerprint = fp;
                self.key = Some(key.public_key.clone());
                info!("authenticated {}", self.who());
                Ok(Auth::Accept)
            }
            None => {
                warn!("rejecting unknown key {fp} from {}", self.addr);
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.ticket.authenticated(Instant::now());
        if let Some(tx) = self.authenticated.take() {
            let _ = tx.send(());
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.principal.is_none() || self.idle.len() >= MAX_IDLE_CHANNELS {
            warn!("{}: refusing another idle session channel", self.who());
            // Dropping `reply` rejects the channel.
            return Ok(());
        }
        self.idle.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.idle.remove(&channel);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == PEER_SUBSYSTEM {
            self.open_peer_channel(channel, session)
        } else if name == JOIN_SUBSYSTEM {
            self.start_join(channel, session)
        } else if is_operator_command(name) {
            self.start_operator(channel, name, session)
        } else {
            self.refuse(channel, &format!("unknown subsystem {name:?}"), session)
        }
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match std::str::from_utf8(data) {
            Ok(command) if is_operator_command(command) => self.start_operator(channel, command, session),
            _ => {
                let hint = usage_hint(Some(data));
                self.answer_with_hint(channel, &format!("exec {}", hint::quoted(data)), &hint, session)
            }
        }
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.answer_with_hint(channel, "a shell", &usage_hint(None), session)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // No terminals; OpenSSH carries on without one.
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Only answered if the client asked for a reply (OpenSSH does not).
        session.channel_failure(channel)
    }
}

/// Reads one peer channel until it ends, the node shuts down, or the peer
/// sends something it should not; then the channel is closed (dropping the
/// stream does that) and only this channel is affected. Clock probes go out
/// on their own task, so a write waiting on the channel never holds up
/// reading.
async fn read_peer_channel<M: DeserializeOwned + Send + 'static>(
    channel: Channel<Msg>,
    peer: u64,
    addr: String,
    shared: Arc<Shared<M>>,
) {
    let max = shared.max_frame;
    let (reader, writer) = tokio::io::split(channel.into_stream());
    let mut frames = FramedRead::new(reader, frame::peer_codec(max));
    let mut next = async || -> Result<Option<bytes::BytesMut>, FrameError> {
        tokio::select! {
            _ = shared.shutdown.cancelled() => Ok(None),
            item = frames.next() => item.transpose().map_err(|e| FrameError::from_read(e, max)),
        }
    };
    let prober = Arc::new(Mutex::new(Prober::default()));
    let mut probing = None;
    let mut greeted = false;
    let result: Result<(), FrameError> = async {
        let Some(first) = next().await? else {
            return Ok(());
        };
        frame::decode_hello(&first, peer)?;
        greeted = true;
        if let Some(tx) = &shared.peer_events {
            let _ = tx.try_send(PeerEvent::Greeted(peer));
        }
        info!("node {peer} at {addr} opened {PEER_SUBSYSTEM} to node {}", shared.node);
        if let Some(exchange) = &shared.clock {
            exchange.sink.restart(peer);
            let task = send_probes(writer, shared.node, peer, exchange.clone(), prober.clone());
            probing = Some(AbortOnDrop(tokio::spawn(task.in_current_span())));
        }
        while let Some(body) = next().await? {
            let arrived = shared.clock.as_ref().map(|c| c.clock.now_us());
            if super::faults::drops_from(shared.node, peer) {
                continue; // an injected fault (testing only)
            }
            let msg = match frame::decode_message::<M>(&body) {
                Ok(msg) => msg,
                Err(FrameError::UnknownType { kind, .. }) if kind == clock_probe::ECHO_TYPE => {
                    take_echo(&body, arrived, peer, &shared, &prober)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if shared.inbox.send((peer, msg)).await.is_err() {
                break; // the node stopped
            }
        }
        Ok(())
    }
    .await;
    drop(probing);
    if let Some(tx) = shared.peer_events.as_ref().filter(|_| greeted && !shared.shutdown.is_cancelled()) {
        let _ = tx.try_send(PeerEvent::Lost(peer)); // full: enough is known already
    }
    match result {
        Ok(()) => debug!("{PEER_SUBSYSTEM} channel from node {peer} at {addr} ended"),
        Err(e) => error!("closing {PEER_SUBSYSTEM} channel from node {peer} at {addr}: {e}"),
    }
}

/// Hands the sample an echo frame makes to the sink. A malformed echo
/// closes the channel like any bad frame; an echo that answers no probe
/// in flight, or whose times cannot be real, is only left out.
fn take_echo<M>(
    body: &[u8],
    arrived: Option<i64>,
    peer: u64,
    shared: &Shared<M>,
    prober: &Mutex<Prober>,
) -> Result<(), FrameError> {
    let ClockFrame::ClockEcho { origin, received, sent } = ClockFrame::decode(body)? else {
        return Err(FrameError::Malformed("a clock probe is not a message for this node".into()));
    };
    let (Some(exchange), Some(now)) = (&shared.clock, arrived) else {
        return Ok(()); // this node sends no probes; nothing to match
    };
    let echoed = prober.lock().unwrap_or_else(|e| e.into_inner()).echo(origin, received, sent, now);
    match echoed {
        Echoed::Sample(sample) => exchange.sink.sample(peer, sample),
        Echoed::Unmatched => debug!("clock echo from node {peer} answers no probe in flight; ignored"),
        Echoed::Rejected(reason) => debug!("clock echo from node {peer} ignored: {reason}"),
    }
    Ok(())
}

/// Writes a clock probe on the channel every `interval` until the write
/// fails or the task is aborted (the channel's reader ended).
async fn send_probes<W: AsyncWrite + Send + Unpin>(
    writer: W,
    node: u64,
    peer: u64,
    exchange: ClockExchange,
    prober: Arc<Mutex<Prober>>,
) {
    let mut frames = FramedWrite::new(writer, frame::peer_codec(clock_probe::CLOCK_FRAME_MAX));
    let mut ticks = tokio::time::interval(exchange.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if super::faults::drops_to(node, peer) {
            continue; // an injected fault (testing only)
        }
        let body = prober.lock().unwrap_or_else(|e| e.into_inner()).probe(exchange.clock.now_us());
        if let Err(e) = frames.send(body).await {
            debug!("clock probes to node {peer} stopped: {e}");
            return;
        }
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
