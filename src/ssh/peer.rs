//! An outbound link to one peer: dial with the node key, insist on the
//! pinned host key, open `paxos-peer`, say hello, then stream queued
//! messages as frames. The queue is bounded and drops the oldest message
//! when full, because Paxos retransmits and a stale message is the least
//! useful one; `send` never blocks the consensus loop.
//!
//! The peer writes only clock probes on the channel (`clock_probe`); the
//! link answers each at once, ahead of the queue, with its own clock's
//! receive and send times.

use super::client::{PinnedHostKey, client_config, open_subsystem};
use super::clock_probe::{self, CLOCK_FRAME_MAX};
use super::frame::{self, FrameError, PEER_SUBSYSTEM};
use super::wall_clock::WallClock;
use super::{SSH_USER, SshError};
use crate::keys::fingerprint;
use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use rand::RngExt;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, client};
use serde::Serialize;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::codec::{Decoder, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::{debug, error, info, warn};

#[derive(Clone)]
pub struct PeerLinkSettings {
    pub local_node: u64,
    pub peer_node: u64,
    /// "host:port".
    pub peer_addr: String,
    /// The peer's host key as pinned in the cluster config.
    pub peer_host_key: PublicKey,
    /// This node's key: host key and client key at once.
    pub identity: Arc<PrivateKey>,
    pub max_frame: usize,
    pub queue_capacity: usize,
    /// Most encoded bytes queued for the peer; beyond it the oldest go.
    pub queue_bytes: usize,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// The clock that stamps answers to the peer's clock probes.
    pub clock: WallClock,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerLinkStats {
    pub connected: bool,
    /// Messages written to the channel.
    pub sent: u64,
    /// Messages dropped: pushed out of a full queue, or too large to frame.
    pub dropped: u64,
    /// Connection attempts so far.
    pub dials: u64,
    /// Why the latest attempt or connection failed; cleared on connect.
    pub last_error: Option<String>,
}

/// Encoded frames waiting for the peer, bounded in count and in bytes.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

struct Shared<M> {
    queue: Mutex<Queue>,
    capacity: usize,
    capacity_bytes: usize,
    max_frame: usize,
    _msg: PhantomData<fn(M)>,
    wakeup: Notify,
    /// Wakes a link that is waiting to dial again (`PeerLink::redial_now`).
    redial: Notify,
    stats: Mutex<PeerLinkStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handle to the link task; dropping it does not stop the task, cancelling
/// the shutdown token does.
pub struct PeerLink<M> {
    shared: Arc<Shared<M>>,
    peer: u64,
}

impl<M> Clone for PeerLink<M> {
    fn clone(&self) -> Self {
        PeerLink { shared: self.shared.clone(), peer: self.peer }
    }
}

impl<M: Serialize + Send + 'static> PeerLink<M> {
    pub fn spawn(settings: PeerLinkSettings, shutdown: CancellationToken) -> PeerLink<M> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            capacity: settings.queue_capacity.max(1),
            capacity_bytes: settings.queue_bytes.max(settings.max_frame),
            max_frame: settings.max_frame,
            _msg: PhantomData,
            wakeup: Notify::new(),
            redial: Notify::new(),
            stats: Mutex::new(PeerLinkStats::default()),
        });
        let peer = settings.peer_node;
        let task = LinkTask { settings, shared: shared.clone(), shutdown, _msg: PhantomData };
        let span = tracing::info_span!("node", id = task.settings.local_node);
        tokio::spawn(task.run().instrument(span));
        PeerLink { shared, peer }
    }

    /// Encodes `msg` and queues it for the peer (see `send_frame`).
    pub fn send(&self, msg: M) {
        if let Some(body) = self.encode(&msg) {
            self.send_frame(body);
        }
    }

    /// The frame body of `msg`, or `None` (counted as dropped, with an error
    /// naming it) when it is too large for a frame. Lets a caller that sends
    /// one message to several peers encode it once.
    pub fn encode(&self, msg: &M) -> Option<Bytes> {
        match frame::encode_message(msg, self.shared.max_frame) {
            Ok(body) => Some(body),
            Err(e) => {
                lock(&self.shared.stats).dropped += 1;
                error!("dropping a message for peer {}: {e}", self.peer);
                None
            }
        }
    }

    /// Queues an encoded frame body for the peer. Never blocks: when the
    /// queue is full, in count or in bytes, the oldest queued messages are
    /// dropped (and counted).
    pub fn send_frame(&self, body: Bytes) {
        {
            let mut queue = lock(&self.shared.queue);
            let mut dropped = 0;
            while !queue.frames.is_empty()
                && (queue.frames.len() >= self.shared.capacity || queue.bytes + body.len() > self.shared.capacity_bytes)
            {
                if let Some(old) = queue.frames.pop_front() {
                    queue.bytes -= old.len();
                    dropped += 1;
                }
            }
            queue.bytes += body.len();
            queue.frames.push_back(body);
            if dropped > 0 {
                lock(&self.shared.stats).dropped += dropped;
            }
        }
        self.shared.wakeup.notify_one();
    }

    /// The peer is known to be up (it just dialled us): if the link is
    /// waiting out a backoff, dial now. Does nothing to a connected link.
    pub fn redial_now(&self) {
        self.shared.redial.notify_waiters();
    }

    /// Encoded bytes waiting for the peer.
    pub fn queued_bytes(&self) -> usize {
        lock(&self.shared.queue).bytes
    }

    pub fn peer(&self) -> u64 {
        self.peer
    }

    pub fn stats(&self) -> PeerLinkStats {
        lock(&self.shared.stats).clone()
    }
}

struct LinkTask<M> {
    settings: PeerLinkSettings,
    shared: Arc<Shared<M>>,
    shutdown: CancellationToken,
    _msg: PhantomData<fn(M)>,
}

/// How one connection ended.
enum Ended {
    Shutdown,
    /// Failed before the channel was up; keep backing off.
    Failed(String),
    /// Was connected, then lost; the backoff starts over.
    Lost(String),
}

impl<M: Serialize + Send + 'static> LinkTask<M> {
    fn describe(&self) -> String {
        format!("peer {} at {}", self.settings.peer_node, self.settings.peer_addr)
    }

    async fn run(self) {
        let mut attempt: u32 = 0;
        loop {
            lock(&self.shared.stats).dials += 1;
            let ended = tokio::select! {
                _ = self.shutdown.cancelled() => Ended::Shutdown,
                ended = self.connect_and_stream() => ended,
            };
            {
                let mut stats = lock(&self.shared.stats);
                stats.connected = false;
                match &ended {
                    Ended::Failed(e) | Ended::Lost(e) => stats.last_error = Some(e.clone()),
                    Ended::Shutdown => {}
                }
            }
            match ended {
                Ended::Shutdown => return,
                Ended::Lost(e) => {
                    warn!("link to {} lost: {e}", self.describe());
                    attempt = 0;
                }
                Ended::Failed(e) => {
                    // Host key mismatches were logged at error level already.
                    debug!("dialling {} failed: {e}", self.describe());
                }
            }
            let delay = backoff(self.settings.backoff_base, self.settings.backoff_cap, attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
                _ = self.shared.redial.notified() => {
                    debug!("{} is up: dialling it now", self.describe());
                    attempt = 0;
                }
            }
        }
    }

    async fn connect_and_stream(&self) -> Ended {
        let s = &self.settings;
        let mut session = match dial(s).await {
            Ok(session) => session,
            Err(e) => {
                if let SshError::HostKeyMismatch(text) = &e {
                    error!("{text}");
                }
                return Ended::Failed(e.to_string());
            }
        };
        let channel = match open_subsystem(&session, &s.peer_addr, PEER_SUBSYSTEM).await {
            Ok(channel) => channel,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let (mut read, write) = channel.split();
        let mut frames = FramedWrite::new(write.make_writer(), frame::peer_codec(s.max_frame));
        let hello = match frame::encode_hello(s.local_node) {
            Ok(hello) => hello,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        if let Err(e) = frames.send(hello).await {
            return Ended::Failed(format!("sending hello: {e}"));
        }
        {
            let mut stats = lock(&self.shared.stats);
            stats.connected = true;
            stats.last_error = None;
        }
        info!("node {} linked to {}", s.local_node, self.describe());

        // Clock probes from the peer: bytes not yet cut into frames, and the
        // probes (origin, arrival) awaiting an echo.
        let mut inbound = BytesMut::new();
        let mut probe_codec = frame::peer_codec(CLOCK_FRAME_MAX);
        let mut probes: VecDeque<(i64, i64)> = VecDeque::new();
        loop {
            if !probes.is_empty() {
                let drop_echoes = super::faults::drops_to(s.local_node, s.peer_node);
                for (origin, received) in probes.drain(..) {
                    if drop_echoes {
                        continue; // an injected fault (testing only)
                    }
                    if let Err(e) = frames.feed(clock_probe::echo_frame(origin, received, &s.clock)).await {
                        return Ended::Lost(format!("writing to channel: {e}"));
                    }
                }
                if let Err(e) = SinkExt::<Bytes>::flush(&mut frames).await {
                    return Ended::Lost(format!("writing to channel: {e}"));
                }
            }
            // Messages queued while disconnected, or since the last wakeup,
            // go out as one batch behind a single flush.
            let batch: Vec<Bytes> = {
                let mut queue = lock(&self.shared.queue);
                queue.bytes = 0;
                queue.frames.drain(..).collect()
            };
            if !batch.is_empty() && super::faults::drops_to(s.local_node, s.peer_node) {
                continue; // an injected fault (testing only)
            }
            if !batch.is_empty() {
                let written = batch.len() as u64;
                for body in batch {
                    if let Err(e) = frames.feed(body).await {
                        return Ended::Lost(format!("writing to channel: {e}"));
                    }
                }
                if let Err(e) = SinkExt::<Bytes>::flush(&mut frames).await {
                    return Ended::Lost(format!("writing to channel: {e}"));
                }
                lock(&self.shared.stats).sent += written;
                continue;
            }
            tokio::select! {
                _ = self.shared.wakeup.notified() => {}
                // The server writes only clock probes; reading also notices
                // the close, and leaves nothing piled up unread.
                msg = read.wait() => match msg {
                    None | Some(ChannelMsg::Close) | Some(ChannelMsg::Eof) => {
                        return Ended::Lost("peer closed the channel".into());
                    }
                    Some(ChannelMsg::Data { data }) => {
                        let received = s.clock.now_us();
                        inbound.extend_from_slice(&data);
                        if let Err(e) = take_probes(&mut probe_codec, &mut inbound, received, &mut probes) {
                            return Ended::Lost(format!("peer wrote a bad clock probe: {e}"));
                        }
                        if super::faults::drops_from(s.local_node, s.peer_node) {
                            probes.clear(); // an injected fault (testing only)
                        }
                    }
                    Some(_) => {}
                },
                _ = &mut session => {
                    return Ended::Lost("connection closed".into());
                }
            }
        }
    }
}

/// Cuts the probe frames out of `inbound`, queueing (origin, `received`)
/// for each; a frame over `CLOCK_FRAME_MAX` or anything but a probe is an
/// error. At most `MAX_PENDING_ECHOES` wait; older ones are given up.
fn take_probes(
    codec: &mut tokio_util::codec::LengthDelimitedCodec,
    inbound: &mut BytesMut,
    received: i64,
    probes: &mut VecDeque<(i64, i64)>,
) -> Result<(), FrameError> {
    while let Some(body) = codec.decode(inbound).map_err(|e| FrameError::from_read(e, CLOCK_FRAME_MAX))? {
        let origin = clock_probe::read_probe(&body)?;
        if probes.len() >= MAX_PENDING_ECHOES {
            probes.pop_front();
        }
        probes.push_back((origin, received));
    }
    Ok(())
}

/// Echoes waiting to be written; the prober remembers no more probes than this.
const MAX_PENDING_ECHOES: usize = 4;

async fn dial(s: &PeerLinkSettings) -> Result<client::Handle<PinnedHostKey>, SshError> {
    let what = format!("peer {} at {}", s.peer_node, s.peer_addr);
    let (handler, mismatch) = PinnedHostKey::new(s.peer_host_key.clone(), what);
    let config = Arc::new(client_config());
    let mut session = super::client::connect_pinned(config, &s.peer_addr, handler, mismatch).await?;
    let key = PrivateKeyWithHashAlg::new(s.identity.clone(), None);
    let auth =
        super::client::with_timeout(&s.peer_addr, "authenticating", session.authenticate_publickey(SSH_USER, key))
            .await?
            .map_err(|source| SshError::Session { addr: s.peer_addr.clone(), source })?;
    if !auth.success() {
        return Err(SshError::AuthRejected {
            addr: s.peer_addr.clone(),
            fingerprint: fingerprint(s.identity.public_key()),
        });
    }
    Ok(session)
}

/// Exponential backoff with jitter: a random delay in [d/2, d] where
/// d = min(cap, base * 2^attempt), so redialling nodes spread out.
fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
    let full = base.saturating_mul(factor).min(cap);
    let half = full / 2;
    let jitter = rand::rng().random_range(0..=half.as_micros().min(u64::MAX as u128) as u64);
    half + Duration::from_micros(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn probes_are_cut_from_any_chunking_and_bad_ones_end_the_link() {
        let mut codec = frame::peer_codec(CLOCK_FRAME_MAX);
        let mut probes = VecDeque::new();
        let mut wire = Vec::new();
        for origin in 1..=6 {
            wire.extend(framed(format!(r#"{{"type":"clock_probe","origin":{origin}}}"#).as_bytes()));
        }
        // Byte by byte: frames come out whole, stamped on arrival.
        let mut inbound = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            inbound.extend_from_slice(&[*byte]);
            take_probes(&mut codec, &mut inbound, i as i64, &mut probes).unwrap();
        }
        assert!(inbound.is_empty());
        // Six probes, of which the last MAX_PENDING_ECHOES wait.
        let origins: Vec<i64> = probes.iter().map(|(origin, _)| *origin).collect();
        assert_eq!(origins, [3, 4, 5, 6]);
        assert_eq!(probes.back().unwrap().1, wire.len() as i64 - 1);

        let too_long = ((CLOCK_FRAME_MAX + 1) as u32).to_be_bytes().to_vec();
        let echo = framed(br#"{"type":"clock_echo","origin":1,"received":2,"sent":3}"#);
        let cases: [(Vec<u8>, &str); 4] = [
            (too_long, "exceeds the limit"),
            (framed(b"{not json"), "malformed JSON"),
            (framed(br#"{"type":"accept","ballot":1}"#), "malformed JSON"),
            (echo, "only the dialling node sends clock echoes"),
        ];
        for (bytes, complaint) in cases {
            let mut codec = frame::peer_codec(CLOCK_FRAME_MAX);
            let mut inbound = BytesMut::from(&bytes[..]);
            let err = take_probes(&mut codec, &mut inbound, 1, &mut VecDeque::new()).unwrap_err();
            assert!(err.to_string().contains(complaint), "{err}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        for attempt in 0..40 {
            let d = backoff(base, cap, attempt);
            let full = base.saturating_mul(1 << attempt.min(20)).min(cap);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
