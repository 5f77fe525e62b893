//! The simulated cluster: real `Replica`s with in-memory storage over the
//! seeded network, driven tick by tick, with the safety checks run after
//! every step.

use super::Failure;
use super::cluster::Trace;
use super::linearizability::Recorder;
use super::network::{Network, through_peer_codec};
use super::workload::{Acked, Client};
use crate::consensus::ballot::{Ballot, NodeId};
use crate::consensus::config::Config;
use crate::consensus::messages::{Envelope, Message};
use crate::consensus::rng::Rng;
use crate::consensus::{Input, Outputs, Replica, RequestId};
use crate::state_machine::{Entry, KvStore, Slot};
use crate::storage::Storage;
use crate::storage::mem::MemStorage;
use std::collections::{BTreeMap, VecDeque};

pub(super) struct SimNode {
    pub replica: Option<Replica>,
    pub storage: MemStorage,
    config: Config,
    /// The next slot this node must apply (exactly once, in order).
    next_apply: Slot,
    last_commit: Slot,
    /// Highest ballot this node ever promised or voted in, as sent.
    max_promised_sent: Ballot,
    pub restarts: u32,
}

impl SimNode {
    fn note_sent(&mut self, sent: &[Envelope]) {
        for env in sent {
            match &env.msg {
                Message::Promise(p) => self.max_promised_sent = self.max_promised_sent.max(p.ballot),
                Message::Accepted(a) => self.max_promised_sent = self.max_promised_sent.max(a.ballot),
                _ => {}
            }
        }
    }
}

pub(super) struct World {
    pub seed: u64,
    pub now: u64,
    pub net: Network,
    pub rng: Rng,
    pub nodes: BTreeMap<NodeId, SimNode>,
    pub clients: Vec<Client>,
    pub recorder: Recorder,
    /// The value chosen in each slot, as first applied anywhere.
    pub chosen: BTreeMap<Slot, Entry>,
    /// Request id -> (client index, operation number); usize::MAX for operators.
    pub requests: BTreeMap<RequestId, (usize, u64)>,
    pub operator_replies: BTreeMap<RequestId, Result<crate::consensus::Response, crate::consensus::ClientError>>,
    next_request: RequestId,
    pub acked: Vec<Acked>,
    pub crash_before_sync: f64,
    pub max_down: usize,
    /// The frame limit of the simulated peer channels.
    pub max_frame: usize,
    /// Messages a node refused as impossible from their sender. Honest
    /// nodes never cause one, so a seeded run fails on the first; scenario
    /// tests that forge messages turn that off and look here.
    pub refused: Vec<crate::consensus::provenance::Refused>,
    pub refusals_fail: bool,
    /// Snapshots taken locally, and installed from a peer (catch-up past compaction).
    pub snapshots_taken: u32,
    pub snapshots_installed: u32,
    /// Messages sent and delivered and entries applied, for the test
    /// harness (`super::cluster`); `None` (nothing recorded) in `run_seed`.
    pub trace: Option<Trace>,
}

impl World {
    pub fn new(seed: u64, configs: Vec<Config>, net: Network) -> Result<Self, Failure> {
        let mut nodes = BTreeMap::new();
        for config in configs {
            let id = config.id;
            let replica = Replica::new(config.clone(), seed, Default::default())
                .map_err(|e| Failure::new(seed, 0, format!("config: {e}")))?;
            let node = SimNode {
                replica: Some(replica),
                storage: MemStorage::new(),
                config,
                next_apply: 0,
                last_commit: 0,
                max_promised_sent: Ballot::ZERO,
                restarts: 0,
            };
            nodes.insert(id, node);
        }
        let max_down = (nodes.len() - 1) / 2;
        Ok(World {
            seed,
            now: 0,
            net,
            rng: Rng::new(seed.wrapping_mul(31).wrapping_add(7)),
            nodes,
            clients: Vec::new(),
            recorder: Recorder::default(),
            chosen: BTreeMap::new(),
            requests: BTreeMap::new(),
            operator_replies: BTreeMap::new(),
            next_request: 0,
            acked: Vec::new(),
            crash_before_sync: 0.0,
            max_down,
            max_frame: crate::ssh::frame::DEFAULT_MAX_FRAME,
            refused: Vec::new(),
            refusals_fail: true,
            snapshots_taken: 0,
            snapshots_installed: 0,
            trace: None,
        })
    }

    fn fail(&self, what: String) -> Failure {
        Failure::new(self.seed, self.now, what)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn up(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| n.replica.is_some()).map(|(id, _)| *id).collect()
    }

    pub fn replica(&self, id: NodeId) -> Option<&Replica> {
        self.nodes.get(&id).and_then(|n| n.replica.as_ref())
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.replica.as_ref().is_some_and(|r| r.is_leader()))
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn new_request(&mut self, owner: (usize, u64)) -> RequestId {
        self.next_request += 1;
        self.requests.insert(self.next_request, owner);
        self.next_request
    }

    /// One tick: deliver due messages, then tick every live node.
    pub fn tick(&mut self) -> Result<(), Failure> {
        self.now += 1;
        for env in self.net.due(self.now) {
            self.input(env.to, Input::Receive(env))?;
        }
        for id in self.up() {
            self.input(id, Input::Tick)?;
        }
        self.check_single_leader_per_ballot()
    }

    /// Feed one input to a node, then everything it addressed to itself.
    pub fn input(&mut self, id: NodeId, input: Input) -> Result<(), Failure> {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let Some(node) = self.nodes.get_mut(&id) else { return Ok(()) };
            let Some(replica) = node.replica.as_mut() else { return Ok(()) };
            if let (Some(trace), Input::Receive(env)) = (self.trace.as_mut(), &input) {
                trace.delivered(self.now, env);
            }
            let out = replica.step(input);
            self.check_step(id, &out)?;
            if let Some(trace) = self.trace.as_mut() {
                trace.applied(id, &out.applied);
            }
            let mut loopback = Vec::new();
            self.effects(id, out, &mut loopback)?;
            queue.extend(loopback.into_iter().map(Input::Receive));
        }
        Ok(())
    }

    /// Carry out a step's outputs in the order the daemon does: send, answer
    /// clients, store the snapshot, append, sync (or crash before it), send
    /// what waited.
    fn effects(&mut self, id: NodeId, out: Outputs, loopback: &mut Vec<Envelope>) -> Result<(), Failure> {
        let node = self.nodes.get_mut(&id).expect("node exists");
        // Whatever path a promise or vote leaves by, the restarted node must honour it.
        node.note_sent(&out.send);
        for env in out.send {
            self.route(env, loopback)?;
        }
        // Before the sync, so a crash right after an answer tests that the
        // answer needed nothing of this step's records.
        for reply in out.replies {
            self.on_reply(reply)?;
        }
        let node = self.nodes.get_mut(&id).expect("node exists");
        let io = |e: crate::storage::StorageError| Failure::new(self.seed, self.now, format!("storage: {e}"));
        if let Some(snapshot) = &out.snapshot {
            node.storage.save_snapshot(snapshot).map_err(io)?;
        }
        node.storage.append(&out.persist).map_err(io)?;
        let down = self.nodes.values().filter(|n| n.replica.is_none()).count();
        if !out.persist.is_empty() && down < self.max_down && self.rng.chance(self.crash_before_sync) {
            self.crash(id);
            return Ok(());
        }
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.storage.sync().map_err(io)?;
        node.note_sent(&out.send_after_persist);
        for env in out.send_after_persist {
            self.route(env, loopback)?;
        }
        Ok(())
    }

    /// Messages to other nodes go through the real peer codec, so a message
    /// the wire cannot carry fails the run here rather than in a daemon.
    fn route(&mut self, env: Envelope, loopback: &mut Vec<Envelope>) -> Result<(), Failure> {
        if let Some(trace) = self.trace.as_mut() {
            trace.sent(self.now, &env);
        }
        if let Some(node) = self.nodes.get(&env.from) {
            within_budgets(&env, &node.config.tuning).map_err(|e| self.fail(e))?;
        }
        if env.to == env.from {
            loopback.push(env);
        } else {
            let env = through_peer_codec(env, self.max_frame).map_err(|e| self.fail(format!("peer codec: {e}")))?;
            self.net.send(self.now, env);
        }
        Ok(())
    }

    fn on_reply(&mut self, reply: crate::consensus::Reply) -> Result<(), Failure> {
        let Some(&(client, number)) = self.requests.get(&reply.request) else {
            return Err(self.fail(format!("reply to unknown request {}", reply.request)));
        };
        if client == usize::MAX {
            self.operator_replies.insert(reply.request, reply.outcome);
            return Ok(());
        }
        let response = reply.outcome.map_err(|e| self.fail(format!("client request failed: {e}")))?;
        let acked = self.clients[client].answer(number, response, &mut self.recorder).map_err(|e| self.fail(e))?;
        if let Some(a) = acked {
            let in_log = self
                .chosen
                .get(&a.slot)
                .is_some_and(|e| e.commands().iter().any(|c| c.client == a.client && c.seq == a.seq));
            if !in_log {
                return Err(self.fail(format!("acknowledged command {}:{} is not in slot {}", a.client, a.seq, a.slot)));
            }
            self.acked.push(a);
        }
        Ok(())
    }

    /// Agreement, in-order exactly-once application, monotonic commit.
    fn check_step(&mut self, id: NodeId, out: &Outputs) -> Result<(), Failure> {
        if let Some(r) = out.refused.first().filter(|_| self.refusals_fail) {
            return Err(self.fail(format!("node {id} refused a {} from node {}: {}", r.kind, r.from, r.reason)));
        }
        self.refused.extend(out.refused.iter().cloned());
        let node = self.nodes.get_mut(&id).expect("node exists");
        let replica = node.replica.as_ref().expect("stepped node is up");
        if let Some(s) = &out.snapshot {
            let installed = s.through > node.next_apply && out.applied.first().is_none_or(|a| a.slot >= s.through);
            if installed {
                self.snapshots_installed += 1;
            } else {
                self.snapshots_taken += 1;
            }
        }
        for applied in &out.applied {
            if applied.slot < node.next_apply {
                return Err(Failure::new(
                    self.seed,
                    self.now,
                    format!("node {id} applied slot {} twice", applied.slot),
                ));
            }
            if applied.slot > node.next_apply && out.snapshot.as_ref().is_none_or(|s| s.through < applied.slot) {
                let msg = format!("node {id} skipped from slot {} to {}", node.next_apply, applied.slot);
                return Err(Failure::new(self.seed, self.now, msg));
            }
            node.next_apply = applied.slot + 1;
            match self.chosen.get(&applied.slot) {
                Some(e) if *e != applied.entry => {
                    let msg = format!(
                        "agreement violated in slot {}: node {id} applied {:?}, another node {:?}",
                        applied.slot, applied.entry, e
                    );
                    return Err(Failure::new(self.seed, self.now, msg));
                }
                Some(_) => {}
                None => {
                    self.chosen.insert(applied.slot, applied.entry.clone());
                }
            }
        }
        if out.snapshot.is_some() {
            node.next_apply = node.next_apply.max(replica.applied_index());
        }
        if node.next_apply != replica.applied_index() {
            let msg = format!("node {id} applied through {} but reports {}", node.next_apply, replica.applied_index());
            return Err(Failure::new(self.seed, self.now, msg));
        }
        if replica.commit_index() < node.last_commit || replica.applied_index() > replica.commit_index() {
            let msg = format!(
                "node {id}: commit index went from {} to {} (applied {})",
                node.last_commit,
                replica.commit_index(),
                replica.applied_index()
            );
            return Err(Failure::new(self.seed, self.now, msg));
        }
        node.last_commit = replica.commit_index();
        Ok(())
    }

    fn check_single_leader_per_ballot(&self) -> Result<(), Failure> {
        let mut ballots = BTreeMap::new();
        for id in self.leaders() {
            let ballot = self.replica(id).expect("leader is up").status().ballot;
            if let Some(other) = ballots.insert(ballot, id) {
                return Err(self.fail(format!("nodes {other} and {id} both lead with ballot {ballot}")));
            }
        }
        Ok(())
    }

    /// One line per node, for failure messages.
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        for (id, node) in &self.nodes {
            match &node.replica {
                None => lines.push(format!("  node {id}: down")),
                Some(r) => {
                    let s = r.status();
                    lines.push(format!(
                        "  node {id}: {} leader={:?} ballot={} promised={} commit={} applied={} pending={} in_flight={}",
                        s.role, s.leader, s.ballot, s.promised, s.commit_index, s.applied_index, s.pending_requests, s.in_flight
                    ));
                }
            }
        }
        lines.join("\n")
    }

    /// Kill a node: it keeps only what storage synced.
    pub fn crash(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.replica = None;
            node.storage.crash();
        }
    }

    /// Lose a node's whole data directory (a dead disk, a reinstalled
    /// machine): it stops, and comes back on restart empty, as a new
    /// incarnation, which must rejoin before it votes again. What it
    /// promised before is gone with its disk, so the restart check starts over.
    pub fn wipe(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.replica = None;
            node.restarts += 1;
            let incarnation = (id << 32) | u64::from(node.restarts);
            node.storage = MemStorage::with_incarnation(incarnation);
            node.max_promised_sent = Ballot::ZERO;
        }
    }

    /// Whether every node is up and may vote (none is still rejoining).
    pub fn all_voting(&self) -> bool {
        self.nodes.values().all(|n| n.replica.as_ref().is_some_and(|r| r.status().voting == "voter"))
    }

    /// Restart a node from its durable state; it must still honour every
    /// promise and vote it sent before the crash.
    pub fn restart(&mut self, id: NodeId) -> Result<(), Failure> {
        let seed = self.seed;
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("node exists");
        if node.replica.is_some() {
            return Ok(());
        }
        let recovered = node.storage.recover().map_err(|e| Failure::new(seed, now, format!("recover: {e}")))?;
        node.restarts += 1;
        let replica = Replica::new(node.config.clone(), seed.wrapping_add(node.restarts as u64), recovered)
            .map_err(|e| Failure::new(seed, now, format!("restart: {e}")))?;
        let promised = replica.status().promised;
        if promised < node.max_promised_sent {
            let msg = format!(
                "node {id} restarted with promise {promised} but had promised or voted at {} before crashing",
                node.max_promised_sent
            );
            return Err(Failure::new(seed, now, msg));
        }
        node.next_apply = replica.applied_index();
        node.last_commit = replica.commit_index();
        node.replica = Some(replica);
        Ok(())
    }

    /// Every live node's state machine after applying the same prefix must
    /// equal the one obtained by applying the chosen log from scratch.
    pub fn check_states_converged(&self) -> Result<Slot, Failure> {
        let commits: BTreeMap<NodeId, Slot> =
            self.nodes.iter().filter_map(|(id, n)| n.replica.as_ref().map(|r| (*id, r.applied_index()))).collect();
        let target = commits.values().copied().max().unwrap_or(0);
        if let Some((id, behind)) = commits.iter().find(|(_, c)| **c != target) {
            return Err(self.fail(format!("node {id} applied through {behind}, others through {target}")));
        }
        let mut reference = KvStore::new(self.nodes.values().next().map_or(1, |n| n.config.tuning.max_sessions));
        for slot in 0..target {
            let Some(entry) = self.chosen.get(&slot) else {
                return Err(self.fail(format!("no node applied slot {slot}")));
            };
            for command in entry.commands() {
                reference.apply(slot, command);
            }
        }
        for (id, node) in &self.nodes {
            let replica = node.replica.as_ref().expect("all nodes are up at the end");
            if *replica.store() != reference {
                return Err(self.fail(format!("node {id}'s state differs from the chosen log applied once in order")));
            }
        }
        for a in &self.acked {
            if a.slot >= target {
                return Err(self
                    .fail(format!("acknowledged command {}:{} in slot {} is past the end", a.client, a.seq, a.slot)));
            }
        }
        Ok(target)
    }
}

/// The byte budgets of `Tuning` hold for every message that carries entries.
fn within_budgets(env: &Envelope, tuning: &crate::consensus::config::Tuning) -> Result<(), String> {
    let over = |what: &str, bytes: usize, max: usize| {
        Err(format!("{what} from node {} to {} carries {bytes} bytes, over its budget of {max}", env.from, env.to))
    };
    match &env.msg {
        Message::Accept(a) if a.entry.wire_len() > tuning.max_batch_bytes => {
            over("an accept", a.entry.wire_len(), tuning.max_batch_bytes)
        }
        Message::Decided(d) if d.entries.len() > 1 => {
            let bytes: usize = d.entries.iter().map(Entry::wire_len).sum();
            if bytes > tuning.catch_up_bytes { over("a decided run", bytes, tuning.catch_up_bytes) } else { Ok(()) }
        }
        Message::InstallSnapshot(m) if m.chunk.len() > tuning.snapshot_chunk_bytes => {
            over("a snapshot chunk", m.chunk.len(), tuning.snapshot_chunk_bytes)
        }
        Message::Forward(f) => match f.commands.iter().find(|c| c.wire_len() > tuning.max_command_bytes) {
            Some(c) => over("a forwarded command", c.wire_len(), tuning.max_command_bytes),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}
