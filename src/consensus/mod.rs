//! The Multi-Paxos protocol as a pure state machine (sans-IO).
//!
//! A `Replica` is driven by `step(Input) -> Outputs`: time arrives as ticks,
//! randomness from a seeded generator, and every effect leaves as data. The
//! same code runs in the daemon (`crate::node`) and in the deterministic
//! simulation (`crate::sim`). Handlers are `impl Replica` blocks split by role:
//! `acceptor.rs`, `leader.rs`, `learner.rs`, `election.rs`, `clients.rs`,
//! `reads.rs`.

pub mod ballot;
pub mod config;
pub mod configuration;
pub mod membership;
pub mod messages;
pub mod provenance;
pub mod quorum;
pub mod records;
pub mod rng;

mod acceptor;
mod clients;
mod election;
mod epochs;
mod leader;
mod learner;
mod reads;
mod recovery;
mod snapshot_transfer;

use crate::state_machine::{ClientId, Command, Entry, KvStore, OpResult, Slot};
use ballot::{Ballot, NodeId};
use clients::ClientState;
use config::{Config, ConfigError, Roles};
use configuration::{Configuration, Membership};
use election::Role;
use messages::{Envelope, Message};
use reads::ReadState;
use records::{Record, Recovered, Snapshot};
use rng::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Identifies a request of the runtime (an operator command waiting for its
/// answer); the core hands it back in the matching `Reply`.
pub type RequestId = u64;

#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// One tick of logical time.
    Tick,
    /// A message from a peer (or from this node to itself).
    Receive(Envelope),
    /// A client command to be agreed and applied.
    Submit { request: RequestId, command: Command },
    /// A read of one key: linearizable (confirmed by a quorum) or a stale local read.
    Read { request: RequestId, key: String, linearizable: bool },
    /// Hand leadership to `to`, or to the best other proposer.
    TransferLeadership { request: RequestId, to: Option<NodeId> },
    /// Stop trying to apply the command (`client`, `seq`) if that is still
    /// certain to leave it unapplied; answers `Applied`, `Withdrawn` or
    /// `OutcomeUnknown`.
    Withdraw { request: RequestId, client: ClientId, seq: u64 },
    /// The connection `peer` held to this node closed (its process died,
    /// or the link broke). A follower whose leader it was campaigns soon,
    /// without waiting out a whole election timeout.
    LinkLost { peer: NodeId },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Applied { slot: Slot, result: OpResult },
    Value { value: Option<String>, index: Slot },
    Transferred { to: NodeId },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClientError {
    #[error("this node is not the leader (leader: {})", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader { leader: Option<NodeId> },
    #[error("cannot transfer leadership: {0}")]
    BadTarget(String),
    #[error("leadership transfer to node {0} did not complete within the election timeout")]
    TransferTimedOut(NodeId),
    /// The command was withdrawn before it left this node: it will never be applied.
    #[error("the command was withdrawn before any leader had it; it will not be applied")]
    Withdrawn,
    /// The command reached a leader and may still be applied.
    #[error("the command reached a leader and may still be applied")]
    OutcomeUnknown,
    #[error("the command is {bytes} bytes encoded, over the limit of {max} (max_command_bytes)")]
    TooLarge { bytes: usize, max: usize },
    /// This node's removal from the cluster is in force: it takes no
    /// command. `maybe_applied`: the command had reached a leader before.
    #[error("this node was removed from the cluster")]
    Removed { maybe_applied: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub request: RequestId,
    pub outcome: Result<Response, ClientError>,
}

/// A decided slot as it was applied, in slot order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppliedEntry {
    pub slot: Slot,
    pub entry: Entry,
}

/// Everything one step asks the runtime to do.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Messages that depend on nothing unsaved: send now.
    pub send: Vec<Envelope>,
    /// Records to append to durable storage, in order.
    pub persist: Vec<Record>,
    /// Messages that may leave only once `persist` is durable (promises and
    /// votes: Paxos Made Simple §2.3).
    pub send_after_persist: Vec<Envelope>,
    /// Entries applied to the state machine in this step, in slot order.
    pub applied: Vec<AppliedEntry>,
    /// Answers to requests.
    pub replies: Vec<Reply>,
    /// A snapshot to store; storage may then compact records below it.
    pub snapshot: Option<Snapshot>,
    /// Messages dropped because their sender could not have sent them
    /// (`provenance`), for the runtime to log.
    pub refused: Vec<provenance::Refused>,
}

impl Outputs {
    pub fn is_empty(&self) -> bool {
        self.send.is_empty()
            && self.persist.is_empty()
            && self.send_after_persist.is_empty()
            && self.applied.is_empty()
            && self.replies.is_empty()
            && self.snapshot.is_none()
            && self.refused.is_empty()
    }
}

/// One slot of the in-memory log.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SlotState {
    /// The ballot of this acceptor's vote in the slot, if it voted.
    pub vote: Option<Ballot>,
    /// The voted value, or the chosen one once `decided`.
    pub entry: Entry,
    pub decided: bool,
}

/// What an operator sees of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: NodeId,
    pub roles: Roles,
    pub role: String,
    pub leader: Option<NodeId>,
    pub ballot: Ballot,
    pub promised: Ballot,
    pub commit_index: Slot,
    pub applied_index: Slot,
    pub log_start: Slot,
    pub snapshot_through: Slot,
    pub ticks_since_leader: Option<u64>,
    pub pending_requests: usize,
    pub in_flight: usize,
    pub elections_started: u64,
    /// This data directory's incarnation (`storage::identity`).
    pub incarnation: u64,
    /// `voter`, or why this node does not vote yet (`introducing`, `rejoining`).
    pub voting: String,
}

pub struct Replica {
    cfg: Config,
    /// The membership this node was started with (epoch 0), in force until
    /// the store holds one (`KvStore::membership`): the first change.
    genesis: Membership,
    rng: Rng,
    now: u64,

    // Membership (durable: Seen and Joined records).
    incarnation: u64,
    /// Every peer's incarnation as last introduced, and whether another
    /// incarnation of it was ever seen.
    seen: BTreeMap<NodeId, (u64, bool)>,
    /// Peers that recorded this incarnation (answered its hello).
    introduced: std::collections::BTreeSet<NodeId>,
    last_hello: Option<u64>,
    voting: membership::Voting,

    // Acceptor state (durable: Promised and Accepted records).
    promised: Ballot,
    /// Highest round seen in any ballot, so a campaign always goes above it.
    max_round: u64,

    // The log and the state machine.
    log: BTreeMap<Slot, SlotState>,
    log_start: Slot,
    snapshot_through: Slot,
    commit_index: Slot,
    applied: Slot,
    /// What the entries applied since the last snapshot hold (`Entry::held_bytes`).
    applied_bytes: usize,
    /// What the store held at the last snapshot (`KvStore::held_bytes`).
    store_bytes_at_snapshot: usize,
    /// Highest commit index any peer told us about (for catch-up).
    known_commit: Slot,
    last_catch_up: Option<u64>,
    /// A node outside this node's view that showed the log goes further
    /// (a leader added by a change not applied here): where to catch up.
    catch_up_hint: Option<NodeId>,
    kv: KvStore,
    snapshot_image: Option<snapshot_transfer::SnapshotImage>,
    snapshot_download: Option<snapshot_transfer::SnapshotDownload>,

    // Leadership.
    role: Role,
    leader: Option<NodeId>,
    leader_ballot: Ballot,
    last_leader_contact: Option<u64>,
    election_deadline: u64,
    backoff_attempts: u32,
    no_campaign_before: u64,
    elections_started: u64,

    transfers: Vec<election::TransferWaiter>,
    clients: ClientState,
    reads: ReadState,
    out: Outputs,
}

impl Replica {
    /// A replica restarting from what storage recovered (empty on first start).
    pub fn new(cfg: Config, seed: u64, recovered: Recovered) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let genesis = Membership::new(Configuration::genesis(&cfg));
        let kv = KvStore::new(cfg.tuning.max_sessions);
        let mut replica = Replica {
            rng: Rng::new(seed ^ cfg.id.wrapping_mul(0x2545_F491_4F6C_DD1D)),
            cfg,
            genesis,
            now: 0,
            incarnation: recovered.incarnation,
            seen: BTreeMap::new(),
            introduced: Default::default(),
            last_hello: None,
            voting: membership::Voting::Unclassified { answers: BTreeMap::new() },
            promised: Ballot::ZERO,
            max_round: 0,
            log: BTreeMap::new(),
            log_start: 0,
            snapshot_through: 0,
            commit_index: 0,
            applied: 0,
            applied_bytes: 0,
            store_bytes_at_snapshot: 0,
            known_commit: 0,
            last_catch_up: None,
            catch_up_hint: None,
            kv,
            snapshot_image: None,
            snapshot_download: None,
            role: Role::Follower,
            leader: None,
            leader_ballot: Ballot::ZERO,
            last_leader_contact: None,
            election_deadline: 0,
            backoff_attempts: 0,
            no_campaign_before: 0,
            elections_started: 0,
            transfers: Vec::new(),
            clients: ClientState::default(),
            reads: ReadState::default(),
            out: Outputs::default(),
        };
        replica.reads = ReadState::with_random_ids(replica.rng.next_u64());
        replica.restore(recovered);
        replica.reset_election_timer();
        Ok(replica)
    }

    /// Advance the replica by one input and return what it asks for.
    pub fn step(&mut self, input: Input) -> Outputs {
        self.on_input(input);
        self.flush();
        std::mem::take(&mut self.out)
    }

    /// Like [`Replica::step`], but what `step` does at the end of every
    /// input waits for [`Replica::end_batch`]: commands that arrive in one
    /// batch of inputs share a slot and a `Forward`, reads share one
    /// confirmation round, and the commit is announced once. Nothing leaves
    /// before the batch ends, so waiting delays nothing.
    pub fn step_in_batch(&mut self, input: Input) -> Outputs {
        self.on_input(input);
        std::mem::take(&mut self.out)
    }

    /// The end of a batch of [`Replica::step_in_batch`]: propose what is
    /// queued, forward what waits for the leader, apply what was decided,
    /// announce the commit and settle reads.
    pub fn end_batch(&mut self) -> Outputs {
        self.flush();
        std::mem::take(&mut self.out)
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Tick => self.on_tick(),
            Input::Receive(env) => self.on_message(env.from, env.msg),
            Input::Submit { request, command } => self.on_submit(request, command),
            Input::Read { request, key, linearizable } => self.on_read(request, key, linearizable),
            Input::TransferLeadership { request, to } => self.on_transfer(request, to),
            Input::Withdraw { request, client, seq } => self.on_withdraw(request, client, seq),
            Input::LinkLost { peer } => self.on_link_lost(peer),
        }
    }

    fn on_tick(&mut self) {
        self.now += 1;
        self.tick_membership();
        self.tick_election();
        self.tick_leader();
        self.tick_learner();
        self.tick_clients();
        self.tick_reads();
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        if from == 0 {
            return;
        }
        if from != self.cfg.id && !self.membership().is_member(from) {
            self.on_message_from_outsider(from, msg);
            return;
        }
        if let Err(refusal) = self.check_provenance(from, &msg) {
            let (reason, role_only) = (refusal.reason, refusal.role_only);
            self.out.refused.push(provenance::Refused { from, kind: msg.kind(), reason, role_only });
            return;
        }
        match msg {
            Message::Probe(m) => self.on_probe(from, m),
            Message::ProbeReply(m) => self.on_probe_reply(from, m),
            Message::Prepare(m) => self.on_prepare(from, m),
            Message::Promise(m) => self.on_promise(from, m),
            Message::Accept(m) => self.on_accept(from, m),
            Message::Accepted(m) => self.on_accepted(from, m),
            Message::Nack(m) => self.on_nack(from, m),
            Message::Heartbeat(m) => self.on_heartbeat(from, m),
            Message::HeartbeatReply(m) => self.on_heartbeat_reply(from, m),
            Message::CatchUp(m) => self.on_catch_up(from, m),
            Message::Decided(m) => self.on_decided(from, m),
            Message::InstallSnapshot(m) => self.on_install_snapshot(from, m),
            Message::Forward(m) => self.on_forward(m),
            Message::ReadIndex(m) => self.on_read_index(from, m),
            Message::ReadIndexReply(m) => self.on_read_index_reply(m),
            Message::TimeoutNow(m) => self.on_timeout_now(from, m),
            Message::Hello(m) => self.on_hello(from, m),
            Message::HelloReply(m) => self.on_hello_reply(from, m),
        }
    }

    /// A message from a node that is no member in this node's view of the
    /// membership. Views lag: the sender may be a member added by a change
    /// not applied here yet, or one removed by a change it has not applied
    /// itself. Only what lets either side learn is handled; nothing that
    /// votes, leads or proposes.
    fn on_message_from_outsider(&mut self, from: NodeId, msg: Message) {
        // The limits on ballots and slots hold for anyone; roles are checked
        // against a view that does not know the sender.
        if let Err(refusal) = self.check_provenance(from, &msg).map_err(|r| (!r.role_only).then_some(r))
            && let Some(refusal) = refusal
        {
            let (reason, role_only) = (refusal.reason, false);
            self.out.refused.push(provenance::Refused { from, kind: msg.kind(), reason, role_only });
            return;
        }
        let retired = self.membership().configs().any(|c| c.retired.contains(&from));
        match msg {
            // Introductions record an incarnation and promise nothing else.
            Message::Hello(m) => self.on_hello(from, m),
            Message::HelloReply(m) => self.on_hello_reply(from, m),
            // A leader this node does not know of yet: learn how far the
            // log goes, and fetch it from that leader.
            Message::Heartbeat(hb) if hb.commit_index <= provenance::MAX_SLOT => {
                self.catch_up_hint = Some(from);
                self.known_commit = self.known_commit.max(hb.commit_index);
                if self.commit_index < self.known_commit {
                    self.request_catch_up(from);
                }
            }
            Message::Decided(m) => self.on_decided(from, m),
            Message::InstallSnapshot(m) => self.on_install_snapshot(from, m),
            // A removed node that has not learned it asks for the log.
            Message::CatchUp(m) if retired => self.on_catch_up(from, m),
            // A candidate this node does not know of, or one removed that
            // has not learned it, counts this node as an acceptor: tell it
            // how far the log goes, and fetch the log from it.
            Message::Probe(probe) => {
                self.catch_up_hint = Some(from);
                self.request_catch_up(from);
                self.refuse_probe(from, probe);
            }
            Message::Prepare(_) | Message::Accept(_) => {
                self.catch_up_hint = Some(from);
                self.request_catch_up(from);
            }
            _ => {}
        }
    }

    /// End of every step: propose what is queued, forward what waits for a
    /// leader, apply what was decided, answer reads that became answerable.
    fn flush(&mut self) {
        self.propose_queued();
        self.flush_forwards();
        self.apply_decided();
        self.flush_reads();
    }

    // ---- small shared helpers ----

    pub(crate) fn id(&self) -> NodeId {
        self.cfg.id
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.out.send.push(Envelope { from: self.cfg.id, to, msg });
    }

    fn send_after_persist(&mut self, to: NodeId, msg: Message) {
        self.out.send_after_persist.push(Envelope { from: self.cfg.id, to, msg });
    }

    fn persist(&mut self, record: Record) {
        self.out.persist.push(record);
    }

    fn reply(&mut self, request: RequestId, outcome: Result<Response, ClientError>) {
        self.out.replies.push(Reply { request, outcome });
    }

    /// The configurations in force and pending (`configuration`).
    pub fn membership(&self) -> &Membership {
        self.kv.membership().unwrap_or(&self.genesis)
    }

    /// On the leader, each peer's commit index as it last reported it and
    /// the ticks since it last answered; empty on other nodes.
    pub fn peer_progress(&self) -> BTreeMap<NodeId, (Slot, u64)> {
        let Role::Leader(ls) = &self.role else { return BTreeMap::new() };
        ls.peer_commit
            .iter()
            .map(|(id, commit)| (*id, (*commit, self.now.saturating_sub(ls.last_ack.get(id).copied().unwrap_or(0)))))
            .collect()
    }

    /// This node's roles in the configurations in force or pending; a node
    /// that is not (or no longer) a member only learns.
    fn roles(&self) -> Roles {
        self.membership().roles(self.id()).unwrap_or(Roles::LEARNER)
    }

    /// Every member but this one, sorted.
    fn others(&self) -> Vec<NodeId> {
        let me = self.id();
        self.membership().member_ids().into_iter().filter(|id| *id != me).collect()
    }

    /// The acceptors of the configurations in force or pending.
    fn acceptors(&self) -> Vec<NodeId> {
        self.membership().acceptor_ids()
    }

    fn is_acceptor(&self, id: NodeId) -> bool {
        self.membership().is_acceptor(id)
    }

    fn note_ballot(&mut self, ballot: Ballot) {
        self.max_round = self.max_round.max(ballot.round);
    }

    // ---- read-only views for the runtime and operators ----

    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            roles: self.roles(),
            role: self.role.name().to_string(),
            leader: self.leader,
            ballot: self.leader_ballot,
            promised: self.promised,
            commit_index: self.commit_index,
            applied_index: self.applied,
            log_start: self.log_start,
            snapshot_through: self.snapshot_through,
            ticks_since_leader: self.last_leader_contact.map(|t| self.now - t),
            pending_requests: self.clients.pending_len(),
            in_flight: self.role.in_flight(),
            elections_started: self.elections_started,
            incarnation: self.incarnation,
            voting: self.voting.name().to_string(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn commit_index(&self) -> Slot {
        self.commit_index
    }

    pub fn applied_index(&self) -> Slot {
        self.applied
    }

    pub fn store(&self) -> &KvStore {
        &self.kv
    }

    /// Decided entries from `from` (clamped to what memory holds), at most
    /// `limit` and, past the first, at most `max_bytes` of commands
    /// (`Entry::wire_len`); none when `from` is at or past the commit index.
    /// Operators choose `from`, so every value must give an answer, never a
    /// panic.
    pub fn decided_entries(&self, from: Slot, limit: usize, max_bytes: usize) -> Vec<AppliedEntry> {
        let start = from.max(self.log_start);
        if start >= self.commit_index {
            return Vec::new();
        }
        let mut bytes = 0usize;
        let mut entries = Vec::new();
        for (slot, s) in self.log.range(start..self.commit_index).take(limit) {
            bytes = bytes.saturating_add(s.entry.wire_len());
            // The first entry always goes, so that a reader moves on.
            if bytes > max_bytes && !entries.is_empty() {
                break;
            }
            entries.push(AppliedEntry { slot: *slot, entry: s.entry.clone() });
        }
        entries
    }

    /// The decided entry of one slot, if memory still holds it.
    pub fn decided(&self, slot: Slot) -> Option<&Entry> {
        (slot < self.commit_index).then(|| self.log.get(&slot).map(|s| &s.entry)).flatten()
    }

    /// The answer already recorded for a client command, if any.
    pub fn cached_result(&self, client: ClientId, seq: u64) -> Option<OpResult> {
        self.kv.cached(client, seq).map(|(result, _)| result)
    }
}

#[cfg(test)]
mod decided_entries_tests {
    use super::*;

    #[test]
    fn any_start_slot_gives_an_answer_not_a_panic() {
        let members = BTreeMap::from([(1, config::Roles::default())]);
        let replica = Replica::new(Config::new(1, members), 7, Recovered::default()).expect("replica");
        assert_eq!(replica.commit_index(), 0);
        for from in [0, 1, 5, u64::MAX - 1, u64::MAX] {
            assert!(replica.decided_entries(from, 10, usize::MAX).is_empty(), "from {from}");
        }
    }

    #[test]
    fn an_answer_stops_at_its_byte_budget_but_always_carries_one_entry() {
        use crate::state_machine::{Command, Op};
        let members = BTreeMap::from([(1, config::Roles::default())]);
        let put = |slot: u64, len: usize| Record::Decided {
            slot,
            entry: Entry::Batch {
                commands: vec![Command { client: 9, seq: slot + 1, op: Op::Propose { value: "v".repeat(len) } }],
            },
        };
        let mut records: Vec<Record> = (0..10).map(|slot| put(slot, 1000)).collect();
        records.push(Record::Committed { through: 10 });
        let recovered = Recovered { records, ..Recovered::default() };
        let replica = Replica::new(Config::new(1, members), 7, recovered).expect("replica");
        assert_eq!(replica.commit_index(), 10);
        let one = replica.decided_entries(0, 1, usize::MAX)[0].entry.wire_len();
        assert!(one > 1000, "{one}");

        let slots = |entries: Vec<AppliedEntry>| entries.iter().map(|e| e.slot).collect::<Vec<_>>();
        assert_eq!(slots(replica.decided_entries(0, 100, usize::MAX)), (0..10).collect::<Vec<_>>());
        assert_eq!(slots(replica.decided_entries(2, 100, 3 * one)), vec![2, 3, 4], "three entries fit exactly");
        assert_eq!(slots(replica.decided_entries(2, 100, 3 * one - 1)), vec![2, 3]);
        assert_eq!(slots(replica.decided_entries(2, 2, 3 * one)), vec![2, 3], "the count limit still holds");
        // An entry larger than the whole budget still goes, alone.
        assert_eq!(slots(replica.decided_entries(7, 100, 10)), vec![7]);
        assert_eq!(slots(replica.decided_entries(7, 100, 0)), vec![7]);
    }
}
