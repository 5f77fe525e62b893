//! Simulated clients: each runs one operation at a time against a random
//! node, retries the same command (same client id and sequence number) at
//! another node when it hears nothing, and records calls and answers for the
//! linearizability check.

use super::linearizability::{KeyOp, Recorder};
use crate::consensus::ballot::NodeId;
use crate::consensus::rng::Rng;
use crate::consensus::{Input, RequestId, Response};
use crate::state_machine::{ClientId, Command, Op, OpResult, Slot};

const KEYS: [&str; 3] = ["x", "y", "z"];

#[derive(Clone, Debug)]
enum Kind {
    Write(Command),
    Read { key: String },
}

#[derive(Debug)]
struct Current {
    number: u64,
    kind: Kind,
    last_try: u64,
}

#[derive(Debug)]
pub struct Client {
    pub index: usize,
    pub id: ClientId,
    seq: u64,
    ops_left: u32,
    current: Option<Current>,
    last_seen: Option<String>,
}

/// A write that was answered: its command must be in the log at `slot`.
#[derive(Clone, Debug)]
pub struct Acked {
    pub client: ClientId,
    pub seq: u64,
    pub slot: Slot,
}

impl Client {
    pub fn new(index: usize, ops: u32) -> Self {
        Client { index, id: 1000 + index as u64, seq: 0, ops_left: ops, current: None, last_seen: None }
    }

    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    pub fn done(&self) -> bool {
        self.current.is_none() && self.ops_left == 0
    }

    /// Start a new operation, returning the input to submit.
    pub fn start(&mut self, now: u64, rng: &mut Rng, recorder: &mut Recorder, request: RequestId) -> Option<Input> {
        if self.current.is_some() || self.ops_left == 0 {
            return None;
        }
        self.ops_left -= 1;
        self.seq += 1;
        let key = KEYS[rng.between(0, KEYS.len() as u64 - 1) as usize].to_string();
        let value = format!("c{}-{}", self.index, self.seq);
        let roll = rng.between(0, 99);
        let (kind, call) = if roll < 35 {
            let op = Op::Put { key: key.clone(), value: value.clone() };
            (self.write(op), Some(KeyOp::Put { value, previous: None }))
        } else if roll < 65 {
            (Kind::Read { key: key.clone() }, Some(KeyOp::Get { value: None }))
        } else if roll < 85 {
            let expected = if rng.chance(0.5) { self.last_seen.clone() } else { None };
            let op = Op::Cas { key: key.clone(), expected: expected.clone(), new: value.clone() };
            (self.write(op), Some(KeyOp::Cas { expected, new: value, swapped: None }))
        } else if roll < 93 {
            (self.write(Op::Delete { key: key.clone() }), Some(KeyOp::Delete { existed: None }))
        } else {
            (self.write(Op::Propose { value }), None)
        };
        if let Some(call) = call {
            recorder.call(self.index, &key, call);
        }
        self.current = Some(Current { number: self.seq, kind, last_try: now });
        self.retry(now, request)
    }

    fn write(&self, op: Op) -> Kind {
        Kind::Write(Command { client: self.id, seq: self.seq, op })
    }

    /// The input for another attempt of the current operation.
    pub fn retry(&mut self, now: u64, request: RequestId) -> Option<Input> {
        let current = self.current.as_mut()?;
        current.last_try = now;
        Some(match &current.kind {
            Kind::Write(command) => Input::Submit { request, command: command.clone() },
            Kind::Read { key } => Input::Read { request, key: key.clone(), linearizable: true },
        })
    }

    pub fn needs_retry(&self, now: u64, timeout: u64) -> bool {
        self.current.as_ref().is_some_and(|c| now >= c.last_try + timeout)
    }

    pub fn current_number(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.number)
    }

    /// An answer to operation `number` arrived.
    pub fn answer(
        &mut self,
        number: u64,
        response: Response,
        recorder: &mut Recorder,
    ) -> Result<Option<Acked>, String> {
        let Some(current) = self.current.take_if(|c| c.number == number) else { return Ok(None) };
        let who = format!("client {} op {}", self.id, number);
        match (current.kind, response) {
            (Kind::Read { .. }, Response::Value { value, .. }) => {
                self.last_seen = value.clone();
                recorder.respond(self.index, KeyOp::Get { value });
                Ok(None)
            }
            (Kind::Write(command), Response::Applied { slot, result }) => {
                let answered = match (&command.op, result) {
                    (Op::Put { value, .. }, OpResult::Put { previous }) => {
                        Some(KeyOp::Put { value: value.clone(), previous: Some(previous) })
                    }
                    (Op::Delete { .. }, OpResult::Delete { existed }) => Some(KeyOp::Delete { existed: Some(existed) }),
                    (Op::Cas { expected, new, .. }, OpResult::Cas { swapped, current }) => {
                        self.last_seen = current;
                        Some(KeyOp::Cas { expected: expected.clone(), new: new.clone(), swapped: Some(swapped) })
                    }
                    (Op::Propose { .. }, OpResult::Proposed { slot: at }) if at == slot => None,
                    (op, result) => return Err(format!("{who}: {op:?} answered with {result:?}")),
                };
                if let Some(op) = answered {
                    recorder.respond(self.index, op);
                }
                Ok(Some(Acked { client: command.client, seq: command.seq, slot }))
            }
            (kind, response) => Err(format!("{who}: {kind:?} answered with {response:?}")),
        }
    }
}

/// Pick a node for the next attempt (any node that is up).
pub fn pick(rng: &mut Rng, up: &[NodeId]) -> Option<NodeId> {
    (!up.is_empty()).then(|| up[rng.between(0, up.len() as u64 - 1) as usize])
}
