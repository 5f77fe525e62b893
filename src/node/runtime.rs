//! The task that owns the consensus core. It selects over peer messages,
//! the tick clock and operator requests, and hands every input that is ready
//! to the batch driver (`crate::driver`), which steps the `Replica` and does
//! the batch's I/O in the order safety needs: send what may go now and
//! answer clients, store a snapshot, append every record, one fsync for all
//! of them (group commit), and only then send promises and votes.

use super::metrics::Metrics;
use crate::consensus::ballot::NodeId;
use crate::consensus::configuration::Membership;
use crate::consensus::messages::{Envelope, Message};
use crate::consensus::provenance::Refused;
use crate::consensus::{AppliedEntry, ClientError, Input, Replica, Reply, RequestId, Response, Status};
use crate::driver::{BatchDriver, DriveError, Host, MAX_BATCH_INPUTS, Transport};
use crate::state_machine::{Command, Slot};
use crate::storage::{Storage, StorageError};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub type Answer = oneshot::Sender<Result<Response, ClientError>>;

/// The most command bytes one `log` answer carries (past its first entry):
/// a reader asking for 10,000 entries of large values gets a part and the
/// `next` slot to go on from, instead of costing the node gigabytes.
pub const LOG_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The membership, and each peer's (commit index, ticks since it answered)
/// as the leader knows them.
pub type MembershipAnswer = (crate::consensus::configuration::Membership, BTreeMap<NodeId, (Slot, u64)>);

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
    /// The configurations in force and pending, and (on the leader) each
    /// peer's reported commit index with the ticks since it answered.
    Membership {
        reply: oneshot::Sender<MembershipAnswer>,
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

pub struct Runtime<S: Storage, T: Transport> {
    pub replica: Replica,
    pub storage: S,
    /// How messages reach the peers (`super::transport::PeerTransport`).
    pub transport: T,
    pub tick: Duration,
    pub metrics: Arc<Metrics>,
    /// Told the membership whenever it changes (`super::peers` follows it).
    pub membership: watch::Sender<Membership>,
}

/// What tells one membership from the next: each change has its own
/// epoch, and a pending change has one too until it takes effect.
fn membership_marks(m: &Membership) -> (u64, Option<(u64, Slot)>) {
    (m.current.epoch, m.pending.as_ref().map(|p| (p.config.epoch, p.effective)))
}

impl<S: Storage, T: Transport<Error = Infallible>> Runtime<S, T> {
    /// Runs until `shutdown` is cancelled or storage fails (a node that
    /// cannot persist must not answer: it stops with the error).
    pub async fn run(
        self,
        mut inbox: mpsc::Receiver<(NodeId, Message)>,
        mut requests: mpsc::Receiver<NodeRequest>,
        mut links_lost: mpsc::Receiver<NodeId>,
        shutdown: CancellationToken,
    ) -> Result<(), StorageError> {
        let Runtime { mut replica, storage, transport, tick, metrics, membership } = self;
        let me = replica.config().id;
        let mut marks = membership_marks(replica.membership());
        membership.send_replace(replica.membership().clone());
        // Storage calls block: let the async runtime move other tasks away.
        let mut driver = BatchDriver::new(storage, transport).blocking(|f| tokio::task::block_in_place(f));
        let mut ticker = tokio::time::interval(tick);
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
                    Some(request) = requests.recv() => state.accept(request, &mut pending, &replica),
                    Some(peer) = links_lost.recv() => {
                        info!(node = me, peer, "the connection from node {peer} closed");
                        pending.push_back(Input::LinkLost { peer });
                    }
                }
            }
            // Take everything else already waiting, so one fsync covers it all.
            while pending.len() < MAX_BATCH_INPUTS {
                if let Ok((from, msg)) = inbox.try_recv() {
                    pending.push_back(Input::Receive(Envelope { from, to: me, msg }));
                } else if let Ok(request) = requests.try_recv() {
                    state.accept(request, &mut pending, &replica);
                } else {
                    break;
                }
            }
            let batch = match driver.run_batch(&mut replica, &mut pending, &mut Answers { me, state: &mut state }) {
                Ok(batch) => batch,
                Err(DriveError::Storage(e)) => {
                    error!(node = me, "storage failed, stopping: {e}");
                    return Err(e);
                }
                Err(DriveError::Transport(never)) => match never {},
                Err(DriveError::Host(never)) => match never {},
            };
            if let Some((through, took)) = batch.snapshot {
                info!(node = me, through, ms = took.as_millis() as u64, "snapshot saved");
            }
            if let Some((records, took)) = batch.synced {
                metrics.fsync(took, records);
            }
            metrics.applied(batch.applied);
            let now = membership_marks(replica.membership());
            if now != marks {
                marks = now;
                let m = replica.membership();
                info!(
                    node = me,
                    epoch = m.current.epoch,
                    pending = ?m.pending.as_ref().map(|p| (p.config.epoch, p.effective)),
                    members = ?m.member_ids(),
                    "membership changed"
                );
                membership.send_replace(m.clone());
            }
            let status = replica.status();
            state.feed_watchers(&replica, &status);
            iterations += 1;
            if iterations.is_multiple_of(1024) {
                state.forget_abandoned();
            }
            metrics.observe(&status, batch.stepped);
        }
        // Commit markers may still wait for a sync (they ride on the next
        // one); make them durable on the way out.
        tokio::task::block_in_place(|| driver.storage.sync())?;
        info!(node = me, "stopped; write-ahead log flushed");
        Ok(())
    }
}

/// The daemon's side of a batch: answers go to the operators waiting, and
/// refused messages are logged.
struct Answers<'a> {
    me: NodeId,
    state: &'a mut LoopState,
}

impl Host for Answers<'_> {
    type Error = Infallible;

    fn answer(&mut self, reply: Reply) -> Result<(), Infallible> {
        self.state.answer(reply.request, reply.outcome);
        Ok(())
    }

    fn refused(&mut self, r: &Refused) {
        warn!(
            node = self.me,
            from = r.from,
            kind = r.kind,
            "dropped a message its sender could not have sent: {}",
            r.reason
        );
    }
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
            NodeRequest::Membership { reply } => {
                let _ = reply.send((replica.membership().clone(), replica.peer_progress()));
            }
            NodeRequest::Log { from, limit, reply } => {
                let status = replica.status();
                let answer = if from < status.log_start && status.log_start > 0 {
                    Err(status.log_start)
                } else {
                    Ok(replica.decided_entries(from, limit, LOG_ANSWER_BYTES))
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
                match replica.decided_entries(w.next, 1, usize::MAX).pop() {
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
