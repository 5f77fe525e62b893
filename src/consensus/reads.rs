//! Linearizable reads without writing to the log (the read-index method of
//! Raft's thesis §6.4, as etcd does it): the leader notes the end of its log,
//! confirms with a phase-2 quorum of heartbeat replies that no higher ballot
//! exists, and the read is answered once the node has applied that far.
//! A phase-2 quorum meets every phase-1 quorum, so a newer leader could not
//! have been elected unseen.

use super::ballot::NodeId;
use super::messages::{Message, ReadIndex, ReadIndexReply, read_id_chunks};
use super::{Replica, RequestId, Response};
use crate::state_machine::Slot;
use std::collections::BTreeMap;

#[derive(Debug)]
enum Waiter {
    Local { request: RequestId, key: String },
    Remote { node: NodeId, id: u64 },
}

#[derive(Debug)]
struct LeaderRead {
    round: u64,
    index: Slot,
    waiter: Waiter,
}

#[derive(Debug)]
struct RemoteRead {
    request: RequestId,
    key: String,
    sent_at: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ReadState {
    next_id: u64,
    /// Highest read round broadcast by this leader.
    pub round_sent: u64,
    /// Highest round each acceptor confirmed, this leadership.
    acks: BTreeMap<NodeId, u64>,
    confirming: Vec<LeaderRead>,
    /// Confirmed reads waiting for the local state machine: (index, request, key).
    waiting_apply: Vec<(Slot, RequestId, String)>,
    /// Reads this follower asked the leader an index for.
    remote: BTreeMap<u64, RemoteRead>,
    /// Ids of `remote` to ask the leader about at the end of the batch.
    asking: Vec<u64>,
    /// Reads that wait for a leader to be known.
    parked: Vec<(RequestId, String)>,
}

impl ReadState {
    /// Number this life's reads from a random point: a leader may answer a
    /// read a node asked for before it restarted, and that answer must not
    /// match a read of the new life (it carries an older index).
    pub(super) fn with_random_ids(random: u64) -> Self {
        ReadState { next_id: random >> 11, ..Default::default() }
    }
}

impl Replica {
    pub(super) fn on_read(&mut self, request: RequestId, key: String, linearizable: bool) {
        if !linearizable {
            let value = self.kv.get(&key).cloned();
            self.reply(request, Ok(Response::Value { value, index: self.applied }));
            return;
        }
        self.route_read(request, key);
    }

    fn route_read(&mut self, request: RequestId, key: String) {
        match self.leader {
            _ if self.is_leader() => self.leader_read(Waiter::Local { request, key }),
            Some(_) => {
                self.reads.next_id += 1;
                let id = self.reads.next_id;
                self.reads.remote.insert(id, RemoteRead { request, key, sent_at: self.now });
                self.reads.asking.push(id);
            }
            None => self.reads.parked.push((request, key)),
        }
    }

    fn leader_read(&mut self, waiter: Waiter) {
        let index = match &self.role {
            super::election::Role::Leader(ls) => ls.next_slot,
            _ => return,
        };
        let round = self.reads.round_sent + 1;
        self.reads.confirming.push(LeaderRead { round, index, waiter });
    }

    pub(super) fn on_read_index(&mut self, from: NodeId, m: ReadIndex) {
        if self.is_leader() {
            for id in m.ids() {
                self.leader_read(Waiter::Remote { node: from, id });
            }
        }
    }

    pub(super) fn on_read_index_reply(&mut self, m: ReadIndexReply) {
        for id in m.ids() {
            if let Some(r) = self.reads.remote.remove(&id) {
                self.reads.waiting_apply.push((m.index, r.request, r.key));
            }
        }
    }

    /// Ask the leader about this batch's reads in one message. If the
    /// leader changed meanwhile they go again, to whoever leads now.
    fn ask_read_indexes(&mut self) {
        let asking = std::mem::take(&mut self.reads.asking);
        let ids: Vec<u64> = asking.into_iter().filter(|id| self.reads.remote.contains_key(id)).collect();
        if ids.is_empty() {
            return;
        }
        match self.leader {
            Some(leader) if leader != self.id() && !self.is_leader() => {
                for (id, more) in read_id_chunks(&ids) {
                    self.send(leader, Message::ReadIndex(ReadIndex { id, more }));
                }
            }
            _ => {
                for id in ids {
                    if let Some(r) = self.reads.remote.remove(&id) {
                        self.route_read(r.request, r.key);
                    }
                }
            }
        }
    }

    pub(super) fn reads_ack(&mut self, from: NodeId, round: u64) {
        let acked = self.reads.acks.entry(from).or_default();
        *acked = (*acked).max(round);
    }

    /// End of step: start a confirmation round if reads wait for one, settle
    /// confirmed reads, answer reads whose index is applied.
    pub(super) fn flush_reads(&mut self) {
        self.ask_read_indexes();
        if self.is_leader() {
            if self.reads.confirming.iter().any(|r| r.round > self.reads.round_sent) {
                self.reads.round_sent += 1;
                let round = self.reads.round_sent;
                if self.roles().acceptor {
                    self.reads_ack(self.id(), round);
                }
                self.broadcast_heartbeat(round);
            }
            let read_index = if self.reads.confirming.is_empty() { None } else { self.read_index() };
            let membership = self.kv.membership().unwrap_or(&self.genesis);
            let acks = &self.reads.acks;
            let acked = |round: u64| acks.iter().filter(|(_, a)| **a >= round).map(|(n, _)| *n).collect();
            let (confirmed, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads.confirming)
                .into_iter()
                .partition(|r| read_index.is_some() && membership.phase2_quorum_in(&acked(r.round)));
            self.reads.confirming = waiting;
            // One answer per follower and index, for all its reads.
            let mut answers: BTreeMap<(NodeId, Slot), Vec<u64>> = BTreeMap::new();
            for mut read in confirmed {
                // The end of the log now: phase 1 in a configuration that
                // came into view may have shown slots decided past it.
                read.index = read.index.max(read_index.unwrap_or(0));
                match read.waiter {
                    Waiter::Local { request, key } => self.reads.waiting_apply.push((read.index, request, key)),
                    Waiter::Remote { node, id } => answers.entry((node, read.index)).or_default().push(id),
                }
            }
            for ((node, index), ids) in answers {
                for (id, more) in read_id_chunks(&ids) {
                    self.send(node, Message::ReadIndexReply(ReadIndexReply { id, more, index }));
                }
            }
        }
        let applied = self.applied;
        let (ready, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.reads.waiting_apply).into_iter().partition(|(index, _, _)| *index <= applied);
        self.reads.waiting_apply = later;
        for (_, request, key) in ready {
            let value = self.kv.get(&key).cloned();
            self.reply(request, Ok(Response::Value { value, index: applied }));
        }
    }

    pub(super) fn tick_reads(&mut self) {
        let retry = self.cfg.timing.client_retry;
        let now = self.now;
        let stale: Vec<u64> =
            self.reads.remote.iter().filter(|(_, r)| now >= r.sent_at + retry).map(|(id, _)| *id).collect();
        for id in stale {
            if let Some(r) = self.reads.remote.remove(&id) {
                self.route_read(r.request, r.key);
            }
        }
    }

    /// Reads parked for want of a leader, or sent to an old one, go again.
    pub(super) fn reads_on_leader_change(&mut self) {
        let parked = std::mem::take(&mut self.reads.parked);
        let remote = std::mem::take(&mut self.reads.remote);
        for (request, key) in parked.into_iter().chain(remote.into_values().map(|r| (r.request, r.key))) {
            self.route_read(request, key);
        }
    }

    pub(super) fn reads_on_become_leader(&mut self) {
        self.reads.acks.clear();
    }

    /// A leader stepping down keeps its own clients' reads (they are retried
    /// with the next leader) and drops followers' (they retry themselves).
    pub(super) fn reads_on_step_down(&mut self) {
        for read in std::mem::take(&mut self.reads.confirming) {
            if let Waiter::Local { request, key } = read.waiter {
                self.reads.parked.push((request, key));
            }
        }
        self.reads.acks.clear();
    }
}
