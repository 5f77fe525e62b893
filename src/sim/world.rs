//! The simulated cluster: real `Replica`s with in-memory storage over the
//! seeded network, driven tick by tick through the daemon's batch driver
//! (`crate::driver`), with the safety checks run after every step. Inputs
//! queue at each node and are stepped in batches; a batch may crash after
//! any of its stages, chosen by the seeded RNG.

use super::Failure;
use super::cluster::Trace;
use super::linearizability::Recorder;
use super::network::{Network, SimLink};
use super::votes::VoteLedger;
use super::workload::{Acked, Client};
use crate::consensus::ballot::{Ballot, NodeId};
use crate::consensus::config::Config;
use crate::consensus::configuration::{Configuration, Membership};
use crate::consensus::messages::{Envelope, Message};
use crate::consensus::rng::Rng;
use crate::consensus::{Input, Outputs, Replica, Reply, RequestId};
use crate::driver::{BatchDriver, DriveError, Host, MAX_BATCH_INPUTS, Stage};
use crate::state_machine::{Command, Entry, KvStore, Slot};
use crate::storage::Storage;
use crate::storage::mem::MemStorage;
use std::collections::{BTreeMap, VecDeque};

pub(super) struct SimNode {
    pub replica: Option<Replica>,
    /// Its storage (kept across crashes) and its link to the network.
    pub driver: BatchDriver<MemStorage, SimLink>,
    /// Inputs that reached the node and wait for its next batch.
    pending: VecDeque<Input>,
    config: Config,
    watch: Watch,
    pub restarts: u32,
}

/// What the checks remember of one node.
struct Watch {
    /// The next slot this node must apply (exactly once, in order).
    next_apply: Slot,
    last_commit: Slot,
    /// Highest ballot this node ever promised or voted in, as sent.
    max_promised_sent: Ballot,
}

impl Watch {
    fn note_sent(&mut self, env: &Envelope) {
        match &env.msg {
            Message::Promise(p) => self.max_promised_sent = self.max_promised_sent.max(p.ballot),
            Message::Accepted(a) => self.max_promised_sent = self.max_promised_sent.max(a.ballot),
            _ => {}
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
    /// Chance that a batch crashes after each stage it goes through, by
    /// `Stage::index` (all zero: no batch crashes).
    pub crash_chance: [f64; Stage::ALL.len()],
    /// Batches that crashed, by the stage they crashed after.
    pub stage_crashes: [u32; Stage::ALL.len()],
    /// Most inputs a node steps in one batch.
    pub max_batch_inputs: usize,
    /// Most inputs any node stepped in one batch so far.
    pub largest_batch: usize,
    /// Most commands any decided slot carried so far.
    pub fullest_slot: usize,
    pub max_down: usize,
    /// The frame limit of the simulated peer channels.
    pub max_frame: usize,
    /// Messages a node refused as impossible from their sender. Honest
    /// nodes never cause one, so a seeded run fails on the first; scenario
    /// tests that forge messages turn that off and look here.
    pub refused: Vec<crate::consensus::provenance::Refused>,
    pub refusals_fail: bool,
    /// Membership changes happen in this run: a node may refuse an honest
    /// peer's message for a role its view of the membership lags behind.
    pub membership_changes: bool,
    /// Snapshots taken locally, and installed from a peer (catch-up past compaction).
    pub snapshots_taken: u32,
    pub snapshots_installed: u32,
    /// Messages sent and delivered and entries applied, for the test
    /// harness (`super::cluster`); `None` (nothing recorded) in `run_seed`.
    pub trace: Option<Trace>,
    /// (tick, node, peer): `node` hears `peer`'s connection close then.
    link_losses: Vec<(u64, NodeId, NodeId)>,
    /// Every proposal and vote sent, for the check of what quorums chose.
    votes: VoteLedger,
    /// Print every message, application, reply and crash to stderr
    /// (`PAXOS_SIM_TRACE=1 paxos simulate --seed N`, to read a failure).
    log_events: bool,
}

impl World {
    pub fn new(seed: u64, configs: Vec<Config>, net: Network) -> Result<Self, Failure> {
        let mut nodes = BTreeMap::new();
        for config in configs {
            let id = config.id;
            let replica = Replica::new(config.clone(), seed, Default::default())
                .map_err(|e| Failure::new(seed, 0, format!("config: {e}")))?;
            let max_frame = crate::ssh::frame::DEFAULT_MAX_FRAME;
            let node = SimNode {
                replica: Some(replica),
                driver: BatchDriver::new(MemStorage::new(), SimLink::new(max_frame)),
                pending: VecDeque::new(),
                config,
                watch: Watch { next_apply: 0, last_commit: 0, max_promised_sent: Ballot::ZERO },
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
            crash_chance: [0.0; Stage::ALL.len()],
            stage_crashes: [0; Stage::ALL.len()],
            max_batch_inputs: MAX_BATCH_INPUTS,
            largest_batch: 0,
            fullest_slot: 0,
            max_down,
            max_frame: crate::ssh::frame::DEFAULT_MAX_FRAME,
            refused: Vec::new(),
            refusals_fail: true,
            membership_changes: false,
            snapshots_taken: 0,
            snapshots_installed: 0,
            trace: None,
            link_losses: Vec::new(),
            votes: VoteLedger::default(),
            log_events: std::env::var_os("PAXOS_SIM_TRACE").is_some(),
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

    /// One tick: deliver the messages due and a tick to every live node,
    /// then let each node work through what it has, in batches.
    pub fn tick(&mut self) -> Result<(), Failure> {
        self.now += 1;
        for env in self.net.due(self.now) {
            self.enqueue(env.to, Input::Receive(env));
        }
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.link_losses.drain(..).partition(|(at, _, _)| *at <= now);
        self.link_losses = later;
        for (_, node, peer) in due {
            self.enqueue(node, Input::LinkLost { peer });
        }
        for id in self.up() {
            self.enqueue(id, Input::Tick);
        }
        for id in self.ids() {
            self.drive(id)?;
        }
        self.check_single_leader_per_ballot()
    }

    /// Queue an input at a node, for its next batch (a node that is down
    /// loses it).
    pub fn enqueue(&mut self, id: NodeId, input: Input) {
        if let Some(node) = self.nodes.get_mut(&id).filter(|n| n.replica.is_some()) {
            node.pending.push_back(input);
        }
    }

    /// Feed one input to a node now, and let it work through everything
    /// that follows from it (what it sends itself).
    pub fn input(&mut self, id: NodeId, input: Input) -> Result<(), Failure> {
        self.enqueue(id, input);
        self.drive(id)
    }

    /// Run batches at node `id` through the batch driver until its queue is
    /// empty or a batch crashes it. What it sent goes on the network after
    /// each batch, whether the batch finished or crashed.
    fn drive(&mut self, id: NodeId) -> Result<(), Failure> {
        loop {
            let may_crash = self.nodes.values().filter(|n| n.replica.is_none()).count() < self.max_down;
            let Some(mut node) = self.nodes.remove(&id) else { return Ok(()) };
            if node.replica.is_none() || node.pending.is_empty() {
                self.nodes.insert(id, node);
                return Ok(());
            }
            let SimNode { replica, driver, pending, config, watch, .. } = &mut node;
            let replica = replica.as_mut().expect("checked above");
            driver.transport.max_frame = self.max_frame;
            driver.set_max_inputs(self.max_batch_inputs);
            let mut host = SimHost { world: self, id, watch, config, may_crash };
            let result = driver.run_batch(replica, pending, &mut host);
            let outbox = std::mem::take(&mut node.driver.transport.outbox);
            self.nodes.insert(id, node);
            let batch = result.map_err(|e| match e {
                DriveError::Storage(e) => self.fail(format!("storage: {e}")),
                DriveError::Transport(e) => self.fail(format!("peer codec: {e}")),
                DriveError::Host(f) => f,
            })?;
            self.largest_batch = self.largest_batch.max(batch.stepped);
            for env in outbox {
                self.route(env)?;
            }
            if let Some(stage) = batch.crashed {
                self.stage_crashes[stage.index()] += 1;
                self.crash(id);
                return Ok(());
            }
        }
    }

    /// A message from `env.from` to another node leaves: it is traced, its
    /// promise or vote noted, and it goes on the network.
    fn route(&mut self, env: Envelope) -> Result<(), Failure> {
        if let Some(trace) = self.trace.as_mut() {
            trace.sent(self.now, &env);
        }
        self.votes.note(&env).map_err(|e| self.fail(e))?;
        if self.log_events {
            eprintln!("{} {}->{} {:?}", self.now, env.from, env.to, env.msg);
        }
        if let Some(node) = self.nodes.get_mut(&env.from) {
            // Whatever path a promise or vote leaves by, the restarted node must honour it.
            node.watch.note_sent(&env);
            within_budgets(&env, &node.config.tuning).map_err(|e| Failure::new(self.seed, self.now, e))?;
        }
        self.net.send(self.now, env);
        Ok(())
    }

    fn on_reply(&mut self, reply: crate::consensus::Reply) -> Result<(), Failure> {
        let Some(&(client, number)) = self.requests.get(&reply.request) else {
            return Err(self.fail(format!("reply to unknown request {}", reply.request)));
        };
        if self.log_events {
            eprintln!("{} reply to client {client} op {number}: {:?}", self.now, reply.outcome);
        }
        if client == usize::MAX {
            self.operator_replies.insert(reply.request, reply.outcome);
            return Ok(());
        }
        let response = match reply.outcome {
            // As a real client does: the same command again on another
            // node, once its retry timer fires (the session table applies it
            // at most once).
            Err(crate::consensus::ClientError::Removed { .. }) => return Ok(()),
            outcome => outcome.map_err(|e| self.fail(format!("client request failed: {e}")))?,
        };
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
    fn check_step(&mut self, id: NodeId, node: &mut Watch, replica: &Replica, out: &Outputs) -> Result<(), Failure> {
        let lag = |r: &&crate::consensus::provenance::Refused| !(self.membership_changes && r.role_only);
        if let Some(r) = out.refused.iter().find(lag).filter(|_| self.refusals_fail) {
            return Err(self.fail(format!("node {id} refused a {} from node {}: {}", r.kind, r.from, r.reason)));
        }
        self.refused.extend(out.refused.iter().cloned());
        if let Some(s) = &out.snapshot {
            let installed = s.through > node.next_apply && out.applied.first().is_none_or(|a| a.slot >= s.through);
            if installed {
                self.snapshots_installed += 1;
            } else {
                self.snapshots_taken += 1;
            }
        }
        for applied in &out.applied {
            if self.log_events {
                eprintln!("{} node {id} applies {} {:?}", self.now, applied.slot, applied.entry);
            }
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
                    let votes = self.check_votes().err().map(|f| f.what).unwrap_or_default();
                    let msg = format!(
                        "agreement violated in slot {}: node {id} applied {:?}, another node {:?}\n{votes}",
                        applied.slot, applied.entry, e
                    );
                    return Err(Failure::new(self.seed, self.now, msg));
                }
                Some(_) => {}
                None => {
                    if let Entry::Batch { commands } = &applied.entry {
                        self.fullest_slot = self.fullest_slot.max(commands.len());
                    }
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
                    let m = r.membership();
                    let config = |c: &Configuration| {
                        let roles = |id: &NodeId| c.roles(*id).map_or(String::new(), |r| r.names().join("+"));
                        let members: Vec<String> = c.members.keys().map(|id| format!("{id}:{}", roles(id))).collect();
                        format!("epoch {} [{}]", c.epoch, members.join(" "))
                    };
                    let pending = m
                        .pending
                        .as_ref()
                        .map_or(String::new(), |p| format!(" -> from slot {} {}", p.effective, config(&p.config)));
                    lines.push(format!(
                        "  node {id}: {} leader={:?} ballot={} promised={} commit={} applied={} pending={} in_flight={} voting={} {}{pending}",
                        s.role, s.leader, s.ballot, s.promised, s.commit_index, s.applied_index, s.pending_requests, s.in_flight,
                        s.voting, config(&m.current)
                    ));
                }
            }
        }
        lines.join("\n")
    }

    /// Kill a node: it keeps only what storage synced, and loses the
    /// inputs it had not stepped yet.
    pub fn crash(&mut self, id: NodeId) {
        if self.log_events {
            eprintln!("{} node {id} crashes", self.now);
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            node.replica = None;
            node.pending.clear();
            node.driver.transport.outbox.clear();
            node.driver.storage.crash();
        }
        // Its connections close: every other node reads what it had sent,
        // then the end of the stream.
        let at = self.net.last_arrival_from(id).unwrap_or(self.now) + 1;
        for other in self.up() {
            self.link_losses.push((at, other, id));
        }
    }

    /// Lose a node's whole data directory (a dead disk, a reinstalled
    /// machine): it stops, and comes back on restart empty, as a new
    /// incarnation, which must rejoin before it votes again. What it
    /// promised before is gone with its disk, so the restart check starts over.
    pub fn wipe(&mut self, id: NodeId) {
        self.crash(id);
        if let Some(node) = self.nodes.get_mut(&id) {
            node.restarts += 1;
            let incarnation = (id << 32) | u64::from(node.restarts);
            node.driver.storage = MemStorage::with_incarnation(incarnation);
            node.watch.max_promised_sent = Ballot::ZERO;
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
        let recovered = node.driver.storage.recover().map_err(|e| Failure::new(seed, now, format!("recover: {e}")))?;
        node.restarts += 1;
        let replica = Replica::new(node.config.clone(), seed.wrapping_add(node.restarts as u64), recovered)
            .map_err(|e| Failure::new(seed, now, format!("restart: {e}")))?;
        let promised = replica.status().promised;
        if promised < node.watch.max_promised_sent {
            let msg = format!(
                "node {id} restarted with promise {promised} but had promised or voted at {} before crashing",
                node.watch.max_promised_sent
            );
            return Err(Failure::new(seed, now, msg));
        }
        node.watch.next_apply = replica.applied_index();
        node.watch.last_commit = replica.commit_index();
        node.replica = Some(replica);
        Ok(())
    }

    /// The membership every seed member started with.
    fn genesis(&self) -> Membership {
        let seed = self.nodes.values().find(|n| !n.config.joining).map(|n| &n.config).expect("a seed member");
        Membership::new(Configuration::genesis(seed))
    }

    /// The nodes that are members of the configuration in force and of a
    /// pending one, as the live node furthest ahead sees them: those that
    /// will go on learning. When the two share no member (a one-member
    /// configuration being replaced), the pending one's.
    pub fn members(&self) -> Vec<NodeId> {
        let ahead = self.nodes.values().filter_map(|n| n.replica.as_ref()).max_by_key(|r| r.applied_index());
        let Some(m) = ahead.map(|r| r.membership()) else { return self.ids() };
        let both: Vec<NodeId> =
            m.member_ids().into_iter().filter(|id| m.configs().all(|c| c.members.contains_key(id))).collect();
        match m.configs().last() {
            Some(newest) if both.is_empty() => newest.members.keys().copied().collect(),
            _ => both,
        }
    }

    /// How many membership changes were decided (the epoch of the newest
    /// configuration), as the node furthest ahead knows.
    pub fn membership_epoch(&self) -> u64 {
        let ahead = self.nodes.values().filter_map(|n| n.replica.as_ref()).max_by_key(|r| r.applied_index());
        ahead.map_or(0, |r| r.membership().configs().last().map_or(0, |c| c.epoch))
    }

    /// No phase-2 quorum of the configuration governing a slot voted for
    /// anything but the value chosen there.
    pub fn check_votes(&self) -> Result<(), Failure> {
        let max_sessions = self.nodes.values().next().map_or(1, |n| n.config.tuning.max_sessions);
        self.votes.check(&self.chosen, &self.genesis(), max_sessions).map_err(|e| self.fail(e))
    }

    /// Every member's state machine after applying the same prefix must
    /// equal the one obtained by applying the chosen log from scratch. Nodes
    /// that are no member of the resulting configuration (removed, or never
    /// added) stop learning, and are left out.
    pub fn check_states_converged(&self) -> Result<Slot, Failure> {
        let commits: BTreeMap<NodeId, Slot> =
            self.nodes.iter().filter_map(|(id, n)| n.replica.as_ref().map(|r| (*id, r.applied_index()))).collect();
        let target = commits.values().copied().max().unwrap_or(0);
        let mut reference = KvStore::new(self.nodes.values().next().map_or(1, |n| n.config.tuning.max_sessions));
        for slot in 0..target {
            let Some(entry) = self.chosen.get(&slot) else {
                return Err(self.fail(format!("no node applied slot {slot}")));
            };
            for command in entry.commands() {
                reference.apply_decided(slot, command, || self.genesis());
            }
            reference.settle_membership(slot + 1);
        }
        let members = reference.membership().cloned().unwrap_or_else(|| self.genesis()).member_ids();
        if let Some((id, behind)) = commits.iter().find(|(id, c)| **c != target && members.contains(id)) {
            let view = self.describe();
            return Err(self.fail(format!("node {id} applied through {behind}, others through {target}\n{view}")));
        }
        for (id, node) in self.nodes.iter().filter(|(id, _)| members.contains(id)) {
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
            None if f.commands.len() > 1 => {
                let bytes: usize = f.commands.iter().map(Command::wire_len).sum();
                if bytes > tuning.max_batch_bytes { over("a forward", bytes, tuning.max_batch_bytes) } else { Ok(()) }
            }
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The world's side of one node's batch: it checks every step, traces what
/// the node delivers to itself, answers clients and picks crash points.
struct SimHost<'a> {
    world: &'a mut World,
    id: NodeId,
    watch: &'a mut Watch,
    config: &'a Config,
    /// Whether one more node may go down.
    may_crash: bool,
}

impl Host for SimHost<'_> {
    type Error = Failure;

    fn answer(&mut self, reply: Reply) -> Result<(), Failure> {
        // Before the sync, so a crash right after an answer tests that the
        // answer needed nothing of this batch's records.
        self.world.on_reply(reply)
    }

    fn stepping(&mut self, input: &Input) {
        if let (Some(trace), Input::Receive(env)) = (self.world.trace.as_mut(), input) {
            trace.delivered(self.world.now, env);
        }
    }

    fn stepped(&mut self, replica: &Replica, out: &Outputs) -> Result<(), Failure> {
        self.world.check_step(self.id, self.watch, replica, out)?;
        if let Some(trace) = self.world.trace.as_mut() {
            trace.applied(self.id, &out.applied);
        }
        Ok(())
    }

    fn looped_back(&mut self, env: &Envelope) -> Result<(), Failure> {
        if let Some(trace) = self.world.trace.as_mut() {
            trace.sent(self.world.now, env);
        }
        self.watch.note_sent(env);
        self.world.votes.note(env).map_err(|e| self.world.fail(e))?;
        within_budgets(env, &self.config.tuning).map_err(|e| self.world.fail(e))
    }

    fn crash_point(&mut self, stages: &[Stage]) -> Option<Stage> {
        if !self.may_crash {
            return None;
        }
        let world = &mut *self.world;
        stages.iter().copied().find(|s| {
            let chance = world.crash_chance[s.index()];
            chance > 0.0 && world.rng.chance(chance)
        })
    }
}
