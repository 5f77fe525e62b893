//! The daemon's `Transport`: each peer's SSH link (`PeerLink`), which
//! queues frames without blocking and carries them in its own task.

use super::metrics::Metrics;
use crate::consensus::ballot::NodeId;
use crate::consensus::messages::{Envelope, Message};
use crate::driver::Transport;
use crate::ssh::peer::PeerLink;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use tracing::warn;

pub struct PeerTransport {
    links: BTreeMap<NodeId, PeerLink<Message>>,
    metrics: Arc<Metrics>,
    /// The previous message sent and its frame: a message the core
    /// addressed to several peers in a row (an Accept or a Heartbeat to
    /// every member) is encoded once.
    last: Option<(Message, Bytes)>,
}

impl PeerTransport {
    pub fn new(links: BTreeMap<NodeId, PeerLink<Message>>, metrics: Arc<Metrics>) -> Self {
        PeerTransport { links, metrics, last: None }
    }
}

impl Transport for PeerTransport {
    type Error = Infallible;

    /// Queue `env` on its peer's link; a message no link can carry is
    /// dropped (Paxos retransmits what matters).
    fn send(&mut self, env: Envelope) -> Result<(), Infallible> {
        let Some(link) = self.links.get(&env.to) else {
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
