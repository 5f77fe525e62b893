//! The task that owns the consensus core. It selects over peer messages,
//! the tick clock and operator requests, steps the `Replica` for every input
//! that is ready, then does the batch's I/O in the order safety needs:
//! send what may go now and answer clients, store a snapshot, append every
//! record, one fsync for all of them (group commit), and only then send
//! promises and votes.

use super::metrics::Metrics;
use crate::consensus::ballot::NodeId;
use crate::consensus::messages::{Envelope, Message};
use crate::consensus::{AppliedEntry, ClientError, Input, Outputs, Replica, RequestId, Response, Status};
use crate::ssh::peer::PeerLink;
use crate::state_machine::{Command, Slot};
use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Most inputs stepped before the batch's I/O is done.
const MAX_BATCH_INPUTS: usize = 1024;

pub type Answer = oneshot::Sender<Result<Response, ClientError>>;

/// What operator commands ask of the task.
pub enum NodeRequest {
    Submit {
        command: Command,
        reply: Answer,
    },
    Read {
        key: String,
        linearizable: bool,
        reply: Answer,
    },
    Transfer {
        to: Option<NodeId>,
        reply: Answer,
    },
    /// Give up on a submitted command if it has not left this node (see
    /// `Input::Withdraw`); the reply is oneshot of the core's answer.
    Withdraw {
        client: crate::state_machine::ClientId,
        seq: u64,
        reply: oneshot::Sender<Result<Response, ClientError>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    /// Decided entries from `from`; `Err(first_available)` if compacted.
    Log {
        from: Slot,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<AppliedEntry>, Slot>>,
    },
    Watch {
        from: Slot,
        tx: mpsc::Sender<Result<AppliedEntry, Slot>>,
    },
}

struct Watcher {
    next: Slot,
    tx: mpsc::Sender<Result<AppliedEntry, Slot>>,
}

pub struct Runtime<S: Storage> {
    pub replica: Replica,
    pub storage: S,
    pub peers: BTreeMap<NodeId, PeerLink<Message>>,
    pub tick: Duration,
    pub metrics: Arc<Metrics>,
}

impl<S: Storage> Runtime<S> {
    /// Runs until `shutdown` is cancelled or storage fails (a node that
    /// cannot persist must not answer: it stops with the error).
    pub async fn run(
        mut self,
        mut inbox: mpsc::Receiver<(NodeId, Message)>,
        mut requests: mpsc::Receiver<NodeRequest>,
        shutdown: CancellationToken,
    ) -> Result<(), StorageError> {
        let me = self.replica.config().id;
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = LoopState::default();
        let mut pending: VecDeque<Input> = VecDeque::new();
        let mut iterations: u64 = 0;
        loop {
            if pending.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => pending.push_back(Input::Tick),
                    Some((from, msg)) = inbox.recv() => pending.push_back(Input::Receive(Envelope { from, to: me, msg })),
                    Some(request) = requests.recv() => state.accept(request, &mut pending, &self.replica),
                }
            }
            // Take everything else already waiting, so one fsync covers it all.
            while pending.len() < MAX_BATCH_INPUTS {
                if let Ok((from, msg)) = inbox.try_recv() {
                    pending.push_back(Input::Receive(Envelope { from, to: me, msg }));
                } else if let Ok(request) = requests.try_recv() {
                    state.accept(request, &mut pending, &self.replica);
                } else {
                    break;
                }
            }
            let mut batch = Outputs::default();
            let mut stepped = 0;
            while let Some(input) = pending.pop_front() {
                let out = self.replica.step(input);
                stepped += 1;
                // Messages to ourselves that need nothing durable go round now.
                for env in out.send.iter().filter(|e| e.to == me) {
                    pending.push_back(Input::Receive(env.clone()));
                }
                merge(&mut batch, out);
                if stepped >= MAX_BATCH_INPUTS {
                    break;
                }
            }
            let after_persist = self.persist_and_send(batch, &mut state)?;
            pending.extend(after_persist.into_iter().map(Input::Receive));
            let status = self.replica.status();
            state.feed_watchers(&self.replica, &status);
            iterations += 1;
            if iterations.is_multiple_of(1024) {
                state.forget_abandoned();
            }
            self.metrics.observe(&status, stepped);
        }
        // Everything appended was synced in its own batch; sync once more so
        // a shutdown never depends on that reasoning.
        tokio::task::block_in_place(|| self.storage.sync())?;
        info!(node = me, "stopped; write-ahead log flushed");
        Ok(())
    }

    /// Do one batch's I/O; returns the messages addressed to ourselves that
    /// had to wait for the fsync.
    fn persist_and_send(&mut self, batch: Outputs, state: &mut LoopState) -> Result<Vec<Envelope>, StorageError> {
        let me = self.replica.config().id;
        for r in &batch.refused {
            warn!(
                node = me,
                from = r.from,
                kind = r.kind,
                "dropped a message its sender could not have sent: {}",
                r.reason
            );
        }
        let mut last = None;
        for env in batch.send.into_iter().filter(|e| e.to != me) {
            self.send(env, &mut last);
        }
        // Answers need nothing of this batch's records: a command is applied
        // only once chosen, i.e. once a quorum has durably voted for it, and
        // this node's own vote left (through the loopback) only after its
        // fsync. What this batch may hold is the `Committed` marker, which a
        // restart can relearn; making the client wait for it cost one fsync
        // per write on the answering node.
        for reply in batch.replies {
            state.answer(reply.request, reply.outcome);
        }
        if let Some(snapshot) = &batch.snapshot {
            let started = Instant::now();
            tokio::task::block_in_place(|| self.storage.save_snapshot(snapshot))?;
            info!(node = me, through = snapshot.through, ms = started.elapsed().as_millis() as u64, "snapshot saved");
        }
        if !batch.persist.is_empty() {
            let started = Instant::now();
            let records = batch.persist.len();
            tokio::task::block_in_place(|| {
                self.storage.append(&batch.persist)?;
                self.storage.sync()
            })
            .inspect_err(|e| error!(node = me, "storage failed, stopping: {e}"))?;
            self.metrics.fsync(started.elapsed(), records);
        }
        let mut loopback = Vec::new();
        for env in batch.send_after_persist {
            if env.to == me {
                loopback.push(env);
            } else {
                self.send(env, &mut last);
            }
        }
        self.metrics.applied(batch.applied.len());
        Ok(loopback)
    }

    /// Queue `env` on its peer's link. `last` is the previous message sent
    /// and its frame: a message the core addressed to several peers in a row
    /// (an Accept or a Heartbeat to every member) is encoded once.
    fn send(&self, env: Envelope, last: &mut Option<(Message, Bytes)>) {
        let Some(link) = self.peers.get(&env.to) else {
            warn!(to = env.to, kind = env.msg.kind(), "no link to that node; message dropped");
            return;
        };
        self.metrics.sent(env.msg.kind());
        let body = match last {
            Some((msg, body)) if *msg == env.msg => body.clone(),
            _ => {
                let Some(body) = link.encode(&env.msg) else { return };
                *last = Some((env.msg, body.clone()));
                body
            }
        };
        link.send_frame(body);
    }
}

fn merge(batch: &mut Outputs, out: Outputs) {
    batch.send.extend(out.send);
    batch.persist.extend(out.persist);
    batch.send_after_persist.extend(out.send_after_persist);
    batch.applied.extend(out.applied);
    batch.replies.extend(out.replies);
    if out.snapshot.is_some() {
        batch.snapshot = out.snapshot;
    }
    batch.refused.extend(out.refused);
}

/// Requests waiting for the core's answers, and live watches.
#[derive(Default)]
struct LoopState {
    next_request: RequestId,
    waiting: BTreeMap<RequestId, Answer>,
    watchers: Vec<Watcher>,
}

impl LoopState {
    fn accept(&mut self, request: NodeRequest, pending: &mut VecDeque<Input>, replica: &Replica) {
        let mut wait = |reply: Answer| {
            self.next_request += 1;
            self.waiting.insert(self.next_request, reply);
            self.next_request
        };
        match request {
            NodeRequest::Submit { command, reply } => {
                let request = wait(reply);
                pending.push_back(Input::Submit { request, command });
            }
            NodeRequest::Read { key, linearizable, reply } => {
                let request = wait(reply);
                pending.push_back(Input::Read { request, key, linearizable });
            }
            NodeRequest::Transfer { to, reply } => {
                let request = wait(reply);
                pending.push_back(Input::TransferLeadership { request, to });
            }
            NodeRequest::Withdraw { client, seq, reply } => {
                let request = wait(reply);
                pending.push_back(Input::Withdraw { request, client, seq });
            }
            NodeRequest::Status { reply } => {
                let _ = reply.send(replica.status());
            }
            NodeRequest::Log { from, limit, reply } => {
                let status = replica.status();
                let answer = if from < status.log_start && status.log_start > 0 {
                    Err(status.log_start)
                } else {
                    Ok(replica.decided_entries(from, limit))
                };
                let _ = reply.send(answer);
            }
            NodeRequest::Watch { from, tx } => self.watchers.push(Watcher { next: from, tx }),
        }
    }

    fn answer(&mut self, request: RequestId, outcome: Result<Response, ClientError>) {
        if let Some(reply) = self.waiting.remove(&request) {
            // The operator may have given up (timeout, disconnect); that is fine.
            let _ = reply.send(outcome);
        }
    }

    /// Forget waiters whose operator went away (their command may still be
    /// applied; nobody is left to tell). Called now and then, not per reply.
    fn forget_abandoned(&mut self) {
        self.waiting.retain(|_, r| !r.is_closed());
    }

    /// Give each watch the decided entries it has not seen, as far as its
    /// channel has room; a watch whose entries were compacted away ends.
    fn feed_watchers(&mut self, replica: &Replica, status: &Status) {
        self.watchers.retain_mut(|w| {
            if w.tx.is_closed() {
                return false;
            }
            if w.next < status.log_start && w.next < status.applied_index {
                let _ = w.tx.try_send(Err(status.log_start));
                return false;
            }
            while w.next < status.applied_index {
                let Ok(permit) = w.tx.try_reserve() else { return true };
                match replica.decided_entries(w.next, 1).pop() {
                    Some(entry) => {
                        w.next = entry.slot + 1;
                        permit.send(Ok(entry));
                    }
                    None => {
                        debug!(slot = w.next, "watch waits for an entry not in memory");
                        return true;
                    }
                }
            }
            true
        });
    }
}
