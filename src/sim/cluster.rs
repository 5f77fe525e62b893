//! A small harness for scenario tests: a cluster of real `Replica`s over the
//! simulated network, driven by the test one tick or one input at a time.
//!
//! It is the same `World` that `run_seed` drives, so every safety check
//! (agreement, in-order exactly-once application, monotonic commit, one
//! leader per ballot, promises kept across restarts) runs after every step;
//! a violation panics with the seed, the tick and every node's state. On top
//! it records every message sent and delivered and every entry applied, so a
//! test can say which messages went where. Time is ticks only: waits are
//! bounded by a number of ticks, never by the wall clock.

use super::network::{LinkFaults, Network};
use super::world::World;
use super::{Failure, sim_timing, sim_tuning};
use crate::consensus::ballot::NodeId;
use crate::consensus::config::{Config, ConfigError, Roles, Timing, Tuning};
use crate::consensus::messages::{Envelope, Message};
use crate::consensus::{AppliedEntry, ClientError, Input, Replica, RequestId, Response, Status};
use crate::state_machine::{ClientId, Command, Op, Slot};
use crate::storage::mem::MemStorage;
use std::collections::BTreeMap;

/// Whether a traced message left its sender or reached its receiver (a
/// message sent but never delivered was lost or cut off by a partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Sent,
    Delivered,
}

/// One message as the harness saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Traced {
    pub tick: u64,
    pub fate: Fate,
    pub env: Envelope,
}

impl Traced {
    pub fn kind(&self) -> &'static str {
        self.env.msg.kind()
    }
}

/// What the world records for the harness.
#[derive(Debug, Default)]
pub struct Trace {
    messages: Vec<Traced>,
    applied: BTreeMap<NodeId, Vec<AppliedEntry>>,
}

impl Trace {
    pub(super) fn sent(&mut self, tick: u64, env: &Envelope) {
        self.messages.push(Traced { tick, fate: Fate::Sent, env: env.clone() });
    }

    pub(super) fn delivered(&mut self, tick: u64, env: &Envelope) {
        self.messages.push(Traced { tick, fate: Fate::Delivered, env: env.clone() });
    }

    pub(super) fn applied(&mut self, id: NodeId, entries: &[AppliedEntry]) {
        if !entries.is_empty() {
            self.applied.entry(id).or_default().extend_from_slice(entries);
        }
    }
}

/// How to build a `Cluster`: members and roles, quorums, timing, tuning,
/// network faults. Defaults: `sim_timing()`, `sim_tuning()`, a stable network.
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    seed: u64,
    members: BTreeMap<NodeId, Roles>,
    phase1: Option<usize>,
    phase2: Option<usize>,
    timing: Timing,
    tuning: Tuning,
    faults: LinkFaults,
}

impl ClusterBuilder {
    /// Add node `id` with `roles` (or change its roles).
    pub fn node(mut self, id: NodeId, roles: Roles) -> Self {
        self.members.insert(id, roles);
        self
    }

    /// Nodes `1..=n`, each a proposer, acceptor and learner.
    pub fn full_nodes(mut self, n: u64) -> Self {
        for id in 1..=n {
            self.members.insert(id, Roles::default());
        }
        self
    }

    /// Flexible quorum sizes (phase 1, phase 2); default is a majority of acceptors.
    pub fn quorums(mut self, phase1: usize, phase2: usize) -> Self {
        (self.phase1, self.phase2) = (Some(phase1), Some(phase2));
        self
    }

    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    pub fn tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// Loss, duplication and delay on every link (default: `LinkFaults::STABLE`).
    pub fn faults(mut self, faults: LinkFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Start every node fresh. A configuration a replica refuses (quorums that
    /// do not intersect, say) is refused here, as `paxos serve` would refuse it.
    pub fn build(self) -> Result<Cluster, ConfigError> {
        let configs: Vec<Config> = self
            .members
            .keys()
            .map(|id| Config {
                id: *id,
                members: self.members.clone(),
                phase1_quorum: self.phase1,
                phase2_quorum: self.phase2,
                timing: self.timing,
                tuning: self.tuning.clone(),
                joining: false,
                alpha: crate::consensus::configuration::DEFAULT_ALPHA,
            })
            .collect();
        if configs.is_empty() {
            return Err(ConfigError::NoProposers);
        }
        for config in &configs {
            config.validate()?;
        }
        let network = Network::new(self.seed ^ 0x5eed, self.faults);
        let mut world = World::new(self.seed, configs, network).unwrap_or_else(|f| panic!("{f}"));
        world.trace = Some(Trace::default());
        // Scenario tests forge messages; they check `refused()` themselves.
        world.refusals_fail = false;
        Ok(Cluster { world, next_client: 1_000_000 })
    }
}

/// A running simulated cluster under a test's control.
pub struct Cluster {
    world: World,
    next_client: ClientId,
}

impl Cluster {
    /// `n` full nodes (ids `1..=n`) with `sim_timing()` over a stable network.
    pub fn new(n: u64, seed: u64) -> Cluster {
        Cluster::builder(seed).full_nodes(n).build().expect("a cluster of full nodes is a valid configuration")
    }

    pub fn builder(seed: u64) -> ClusterBuilder {
        ClusterBuilder {
            seed,
            members: BTreeMap::new(),
            phase1: None,
            phase2: None,
            timing: sim_timing(),
            tuning: sim_tuning(),
            faults: LinkFaults::STABLE,
        }
    }

    fn ok<T>(&self, result: Result<T, Failure>) -> T {
        result.unwrap_or_else(|f| panic!("{f}\n{}", self.world.describe()))
    }

    // ---- time ----

    /// Current tick.
    pub fn now(&self) -> u64 {
        self.world.now
    }

    /// One tick: deliver the messages due, then tick every live node.
    pub fn tick(&mut self) {
        let result = self.world.tick();
        self.ok(result);
    }

    pub fn ticks(&mut self, n: u64) {
        for _ in 0..n {
            self.tick();
        }
    }

    /// Tick until `condition` holds, at most `max_ticks` times; the number of
    /// ticks it took (0 if it already held), or what the cluster looked like.
    pub fn run_until(&mut self, max_ticks: u64, mut condition: impl FnMut(&Cluster) -> bool) -> Result<u64, String> {
        for elapsed in 0..=max_ticks {
            if condition(self) {
                return Ok(elapsed);
            }
            if elapsed < max_ticks {
                self.tick();
            }
        }
        Err(format!(
            "condition not reached within {max_ticks} ticks (now tick {}, seed {})\n{}",
            self.world.now,
            self.world.seed,
            self.describe()
        ))
    }

    /// Tick until exactly one node leads and every live node follows it.
    pub fn elect(&mut self, max_ticks: u64) -> Result<NodeId, String> {
        self.run_until(max_ticks, |c| c.agreed_leader().is_some())?;
        Ok(self.agreed_leader().expect("checked by run_until"))
    }

    /// The leader, if exactly one node leads and every live node says so.
    pub fn agreed_leader(&self) -> Option<NodeId> {
        self.agreed_leader_among(&self.up())
    }

    /// The leader of `group` (a side of a partition, say): exactly one of its
    /// nodes leads and every one of its live nodes follows it.
    pub fn agreed_leader_among(&self, group: &[NodeId]) -> Option<NodeId> {
        let live: Vec<NodeId> = group.iter().copied().filter(|id| self.is_up(*id)).collect();
        let leaders: Vec<NodeId> = live.iter().copied().filter(|id| self.replica(*id).is_leader()).collect();
        let [leader] = leaders[..] else { return None };
        live.iter().all(|id| self.replica(*id).leader() == Some(leader)).then_some(leader)
    }

    // ---- nodes ----

    pub fn ids(&self) -> Vec<NodeId> {
        self.world.ids()
    }

    pub fn up(&self) -> Vec<NodeId> {
        self.world.up()
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.world.replica(id).is_some()
    }

    /// Nodes that believe they lead.
    pub fn leaders(&self) -> Vec<NodeId> {
        self.world.leaders()
    }

    /// The replica of a live node (panics if the node is down).
    pub fn replica(&self, id: NodeId) -> &Replica {
        self.world.replica(id).unwrap_or_else(|| panic!("node {id} is down"))
    }

    pub fn status(&self, id: NodeId) -> Status {
        self.replica(id).status()
    }

    /// A node's durable storage (kept across crashes).
    pub fn storage(&self, id: NodeId) -> &MemStorage {
        &self.world.nodes.get(&id).unwrap_or_else(|| panic!("no node {id}")).driver.storage
    }

    /// Kill a node: it keeps only what its storage synced.
    pub fn crash(&mut self, id: NodeId) {
        self.world.crash(id);
    }

    /// Kill a node and lose its storage: it restarts empty, as a new incarnation.
    pub fn wipe(&mut self, id: NodeId) {
        self.world.wipe(id);
    }

    /// Start a crashed node again from its storage. The world checks that it
    /// still honours every promise and vote it sent before.
    pub fn restart(&mut self, id: NodeId) {
        let result = self.world.restart(id);
        self.ok(result);
    }

    /// One line per node: role, leader, ballots, indexes.
    pub fn describe(&self) -> String {
        self.world.describe()
    }

    // ---- network ----

    /// Cut `id` off from every other node, both ways.
    pub fn isolate(&mut self, id: NodeId) {
        self.partition(&[id]);
    }

    /// Cut `group` off from the rest, both ways.
    pub fn partition(&mut self, group: &[NodeId]) {
        let all = self.world.ids();
        self.world.net.isolate(group, &all);
    }

    /// Drop every message from `from` to `to` (one direction).
    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.world.net.block(from, to);
    }

    /// Remove every partition and block.
    pub fn heal(&mut self) {
        self.world.net.heal();
    }

    pub fn set_faults(&mut self, faults: LinkFaults) {
        self.world.net.faults = faults;
    }

    // ---- inputs and requests ----

    /// Feed one input straight to a node, bypassing the network (a message
    /// injected this way is traced as delivered).
    pub fn input(&mut self, id: NodeId, input: Input) {
        let result = self.world.input(id, input);
        self.ok(result);
    }

    /// Messages refused so far as impossible from their sender.
    pub fn refused(&self) -> &[crate::consensus::provenance::Refused] {
        &self.world.refused
    }

    /// Deliver a message to `env.to` now, as if the network had carried it.
    pub fn deliver(&mut self, env: Envelope) {
        self.input(env.to, Input::Receive(env));
    }

    fn request(&mut self) -> RequestId {
        self.world.new_request((usize::MAX, 0))
    }

    /// Submit `op` at `node` as a new client's first command.
    pub fn submit(&mut self, node: NodeId, op: Op) -> RequestId {
        self.next_client += 1;
        let command = Command { client: self.next_client, seq: 1, op };
        self.submit_command(node, command)
    }

    /// Submit a command with the caller's (client, seq), as a retrying client does.
    pub fn submit_command(&mut self, node: NodeId, command: Command) -> RequestId {
        let request = self.request();
        self.input(node, Input::Submit { request, command });
        request
    }

    /// Ask `node` to give up on the command (`client`, `seq`), as the daemon
    /// does when an operator's wait ends.
    pub fn withdraw(&mut self, node: NodeId, client: ClientId, seq: u64) -> RequestId {
        let request = self.request();
        self.input(node, Input::Withdraw { request, client, seq });
        request
    }

    /// Submit each of `ops` as a new client's first command, all arriving
    /// at `node` together: stepped in one batch.
    pub fn submit_together(&mut self, node: NodeId, ops: Vec<Op>) -> Vec<RequestId> {
        let inputs: Vec<_> = ops
            .into_iter()
            .map(|op| {
                self.next_client += 1;
                let request = self.request();
                (request, Input::Submit { request, command: Command { client: self.next_client, seq: 1, op } })
            })
            .collect();
        self.inputs_together(node, inputs)
    }

    /// Linearizable reads of `keys`, all arriving at `node` together.
    pub fn read_together(&mut self, node: NodeId, keys: &[&str]) -> Vec<RequestId> {
        let inputs: Vec<_> = keys
            .iter()
            .map(|key| {
                let request = self.request();
                (request, Input::Read { request, key: key.to_string(), linearizable: true })
            })
            .collect();
        self.inputs_together(node, inputs)
    }

    fn inputs_together(&mut self, node: NodeId, inputs: Vec<(RequestId, Input)>) -> Vec<RequestId> {
        let mut requests = Vec::new();
        let mut inputs = inputs.into_iter().peekable();
        while let Some((request, input)) = inputs.next() {
            requests.push(request);
            match inputs.peek() {
                Some(_) => self.world.enqueue(node, input),
                None => self.input(node, input),
            }
        }
        requests
    }

    pub fn read(&mut self, node: NodeId, key: &str, linearizable: bool) -> RequestId {
        let request = self.request();
        self.input(node, Input::Read { request, key: key.to_string(), linearizable });
        request
    }

    /// Ask `node` to hand leadership to `to` (or to the best other proposer).
    pub fn transfer(&mut self, node: NodeId, to: Option<NodeId>) -> RequestId {
        let request = self.request();
        self.input(node, Input::TransferLeadership { request, to });
        request
    }

    /// The answer to a request, once there is one.
    pub fn reply(&self, request: RequestId) -> Option<&Result<Response, ClientError>> {
        self.world.operator_replies.get(&request)
    }

    /// Tick until `request` is answered (at most `max_ticks`); its answer.
    pub fn await_reply(&mut self, request: RequestId, max_ticks: u64) -> Result<Result<Response, ClientError>, String> {
        self.run_until(max_ticks, |c| c.reply(request).is_some())
            .map_err(|e| format!("request {request} not answered: {e}"))?;
        Ok(self.reply(request).cloned().expect("checked by run_until"))
    }

    // ---- what happened ----

    /// Every message sent or delivered so far, in order.
    pub fn messages(&self) -> &[Traced] {
        &self.trace().messages
    }

    /// Forget the messages traced so far (to look at what follows only).
    pub fn clear_messages(&mut self) {
        if let Some(trace) = self.world.trace.as_mut() {
            trace.messages.clear();
        }
    }

    /// Messages of `kind` (as `Message::kind` names it) delivered from `from` to `to`.
    pub fn delivered(&self, kind: &str, from: NodeId, to: NodeId) -> Vec<&Message> {
        self.traced(Fate::Delivered, kind, from, to)
    }

    /// Messages of `kind` sent from `from` to `to`, delivered or not.
    pub fn sent(&self, kind: &str, from: NodeId, to: NodeId) -> Vec<&Message> {
        self.traced(Fate::Sent, kind, from, to)
    }

    fn traced(&self, fate: Fate, kind: &str, from: NodeId, to: NodeId) -> Vec<&Message> {
        self.messages()
            .iter()
            .filter(|t| t.fate == fate && t.kind() == kind && t.env.from == from && t.env.to == to)
            .map(|t| &t.env.msg)
            .collect()
    }

    /// Every entry `node` applied, in order, over all its lives (entries
    /// covered by an installed snapshot are not listed).
    pub fn applied(&self, node: NodeId) -> &[AppliedEntry] {
        self.trace().applied.get(&node).map_or(&[], Vec::as_slice)
    }

    fn trace(&self) -> &Trace {
        self.world.trace.as_ref().expect("the harness always traces")
    }

    /// Every node is up and has applied the same prefix of the chosen log,
    /// and every state machine equals that prefix applied once in order; the
    /// length of the prefix.
    pub fn converged(&self) -> Result<Slot, String> {
        let down: Vec<NodeId> = self.ids().into_iter().filter(|id| !self.is_up(*id)).collect();
        if !down.is_empty() {
            return Err(format!("nodes {down:?} are down"));
        }
        self.world.check_states_converged().map_err(|f| f.to_string())
    }
}
