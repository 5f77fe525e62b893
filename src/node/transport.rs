//! The daemon's `Transport`: each peer's SSH link (`PeerLink`), which
//! queues frames without blocking and carries them in its own task. The
//! set of links changes with the membership (`super::peers`).

use super::metrics::Metrics;
use crate::consensus::ballot::NodeId;
use crate::consensus::messages::{Envelope, Message};
use crate::driver::Transport;
use crate::ssh::peer::PeerLink;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tracing::warn;

/// The links to this node's peers, shared by the transport, the operator
/// handle and the reconciler that adds and removes them. The lock is only
/// ever held for a map operation, never across an await.
#[derive(Clone, Default)]
pub struct PeerLinks(Arc<RwLock<BTreeMap<NodeId, PeerLink<Message>>>>);

impl PeerLinks {
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<NodeId, PeerLink<Message>>> {
        // A panic while holding the lock leaves a plain map behind; keep going.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<NodeId, PeerLink<Message>>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: NodeId) -> Option<PeerLink<Message>> {
        self.read().get(&id).cloned()
    }

    /// Every link as of now, by peer id.
    pub fn all(&self) -> Vec<(NodeId, PeerLink<Message>)> {
        self.read().iter().map(|(id, link)| (*id, link.clone())).collect()
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.read().keys().copied().collect()
    }

    pub fn insert(&self, id: NodeId, link: PeerLink<Message>) {
        self.write().insert(id, link);
    }

    pub fn remove(&self, id: NodeId) -> Option<PeerLink<Message>> {
        self.write().remove(&id)
    }
}

pub struct PeerTransport {
    links: PeerLinks,
    metrics: Arc<Metrics>,
    /// The previous message sent and its frame: a message the core
    /// addressed to several peers in a row (an Accept or a Heartbeat to
    /// every member) is encoded once.
    last: Option<(Message, Bytes)>,
}

impl PeerTransport {
    pub fn new(links: PeerLinks, metrics: Arc<Metrics>) -> Self {
        PeerTransport { links, metrics, last: None }
    }
}

impl Transport for PeerTransport {
    type Error = Infallible;

    /// Queue `env` on its peer's link; a message no link can carry is
    /// dropped (Paxos retransmits what matters).
    fn send(&mut self, env: Envelope) -> Result<(), Infallible> {
        let Some(link) = self.links.get(env.to) else {
            warn!(to = env.to, kind = env.msg.kind(), "no link to that node; message dropped");
            return Ok(());
        };
        self.metrics.sent(env.msg.kind());
        let body = match &self.last {
            Some((msg, body)) if *msg == env.msg => body.clone(),
            _ => {
                let Some(body) = link.encode(&env.msg) else { return Ok(()) };
                self.last = Some((env.msg, body.clone()));
                body
            }
        };
        link.send_frame(body);
        Ok(())
    }
}
