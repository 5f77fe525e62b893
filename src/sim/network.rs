//! A seeded faulty network: loss, duplication, reordering by random delay,
//! and directed partitions (a symmetric partition blocks both directions).

use crate::consensus::ballot::NodeId;
use crate::consensus::messages::{Envelope, Message};
use crate::consensus::rng::Rng;
use crate::driver::Transport;
use crate::ssh::frame;
use bytes::BytesMut;
use std::collections::{BTreeMap, BTreeSet};
use tokio_util::codec::{Decoder, Encoder};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkFaults {
    pub loss: f64,
    pub duplicate: f64,
    /// Delivery takes 1..=max_delay ticks; different delays reorder messages.
    pub max_delay: u64,
}

impl LinkFaults {
    pub const STABLE: LinkFaults = LinkFaults { loss: 0.0, duplicate: 0.0, max_delay: 2 };
}

pub struct Network {
    rng: Rng,
    pub faults: LinkFaults,
    /// (deliver_at, sequence) -> message; the sequence keeps ties deterministic.
    in_flight: BTreeMap<(u64, u64), Envelope>,
    sequence: u64,
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub delivered: u64,
    pub dropped: u64,
}

impl Network {
    pub fn new(seed: u64, faults: LinkFaults) -> Self {
        Network {
            rng: Rng::new(seed),
            faults,
            in_flight: BTreeMap::new(),
            sequence: 0,
            blocked: BTreeSet::new(),
            delivered: 0,
            dropped: 0,
        }
    }

    pub fn send(&mut self, now: u64, env: Envelope) {
        if self.blocked.contains(&(env.from, env.to)) || self.rng.chance(self.faults.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let at = now + self.rng.between(1, self.faults.max_delay.max(1));
            self.sequence += 1;
            self.in_flight.insert((at, self.sequence), env.clone());
        }
    }

    /// Every message due at or before `now`, in delivery order. A partition
    /// that appeared while a message was in flight also drops it.
    pub fn due(&mut self, now: u64) -> Vec<Envelope> {
        let later = self.in_flight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        let mut out = Vec::with_capacity(due.len());
        for env in due.into_values() {
            if self.blocked.contains(&(env.from, env.to)) {
                self.dropped += 1;
            } else {
                self.delivered += 1;
                out.push(env);
            }
        }
        out
    }

    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Cut `group` off from everyone else, both ways.
    pub fn isolate(&mut self, group: &[NodeId], all: &[NodeId]) {
        for a in group {
            for b in all.iter().filter(|b| !group.contains(b)) {
                self.block(*a, *b);
                self.block(*b, *a);
            }
        }
    }

    /// The tick the last message `from` sent that is still in flight arrives.
    pub fn last_arrival_from(&self, from: NodeId) -> Option<u64> {
        self.in_flight.iter().rev().find(|(_, env)| env.from == from).map(|((at, _), _)| *at)
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

/// Pass a message through the real `paxos-peer` wire format (JSON body,
/// length-delimited frame with the daemon's frame limit) and back, as a
/// message between two daemons would. A message that does not fit a frame,
/// or that decodes to anything but itself, is a failure of the simulation:
/// between daemons it would be dropped (and retried) forever.
pub fn through_peer_codec(env: Envelope, max_frame: usize) -> Result<Envelope, String> {
    let kind = env.msg.kind();
    let what = |e: &dyn std::fmt::Display| format!("{kind} from {} to {}: {e}", env.from, env.to);
    let body = frame::encode_message(&env.msg, max_frame).map_err(|e| what(&e))?;
    let mut codec = frame::peer_codec(max_frame);
    let mut wire = BytesMut::new();
    codec.encode(body, &mut wire).map_err(|e| what(&e))?;
    let Some(frame) = codec.decode(&mut wire).map_err(|e| what(&e))? else {
        return Err(what(&"the frame did not come back whole"));
    };
    let msg: Message = frame::decode_message(&frame).map_err(|e| what(&e))?;
    if msg != env.msg {
        return Err(what(&"the message decoded to a different value"));
    }
    Ok(Envelope { msg, ..env })
}

/// A simulated node's network interface, the `Transport` its batch driver
/// sends through: every message passes the real peer codec as it is sent
/// and waits in `outbox` until the world hands it to the `Network`, at the
/// same tick, when the node's batch ends (crashed or not: what a node sent
/// before crashing is on the wire).
#[derive(Debug)]
pub struct SimLink {
    pub max_frame: usize,
    pub outbox: Vec<Envelope>,
}

impl SimLink {
    pub fn new(max_frame: usize) -> Self {
        SimLink { max_frame, outbox: Vec::new() }
    }
}

impl Transport for SimLink {
    type Error = String;

    fn send(&mut self, env: Envelope) -> Result<(), String> {
        let env = through_peer_codec(env, self.max_frame)?;
        self.outbox.push(env);
        Ok(())
    }
}
