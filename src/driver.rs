//! The batch driver: what turns the sans-IO `Replica` into a node. It steps
//! a batch of inputs, loops messages a node sends itself back in, then does
//! the batch's I/O in the order safety needs: send what may go now, answer
//! clients, store a snapshot, append every record, one sync for all of them
//! (group commit), and only then send promises and votes.
//!
//! The daemon (`node::runtime`) and the simulation (`sim`) both drive their
//! replicas through this one piece, over their own `Storage` and
//! `Transport`, so the order the simulation checks is the order the daemon
//! runs. The simulation may also stop a batch after any of its `Stage`s, as
//! a crash there would, and check what survives.

use crate::consensus::messages::Envelope;
use crate::consensus::provenance::Refused;
use crate::consensus::records::Record;
use crate::consensus::{Input, Outputs, Replica, Reply};
use crate::state_machine::Slot;
use crate::storage::{Storage, StorageError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most inputs the daemon steps before the batch's I/O is done.
pub const MAX_BATCH_INPUTS: usize = 1024;

/// The points between a batch's stages, where a crash may stop it. A crash
/// after a stage means every later stage of that batch never happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Inputs stepped: nothing sent, answered or stored yet.
    AfterStep,
    /// Messages that need nothing durable sent.
    AfterSend,
    /// Clients answered.
    AfterAnswer,
    /// The snapshot stored.
    AfterSnapshot,
    /// Records appended but not yet synced (a crash loses them).
    AfterAppend,
    /// Records synced; promises and votes not yet sent.
    AfterSync,
    /// Promises and votes sent; the ones to this node not yet looped back.
    AfterSendAfterPersist,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::AfterStep,
        Stage::AfterSend,
        Stage::AfterAnswer,
        Stage::AfterSnapshot,
        Stage::AfterAppend,
        Stage::AfterSync,
        Stage::AfterSendAfterPersist,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::AfterStep => "after-step",
            Stage::AfterSend => "after-send",
            Stage::AfterAnswer => "after-answer",
            Stage::AfterSnapshot => "after-snapshot",
            Stage::AfterAppend => "after-append",
            Stage::AfterSync => "after-sync",
            Stage::AfterSendAfterPersist => "after-send-after-persist",
        }
    }

    /// Position in `Stage::ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a node's messages reach other nodes.
pub trait Transport {
    type Error;
    /// Hand `env` (addressed to another node) to the network, in order.
    fn send(&mut self, env: Envelope) -> Result<(), Self::Error>;
}

/// What the caller of the driver does with a batch besides storage and the
/// network: answer clients, and, in the simulation, watch every step and
/// choose where a batch crashes.
pub trait Host {
    type Error;
    /// Answer a client request.
    fn answer(&mut self, reply: Reply) -> Result<(), Self::Error>;
    /// `input` is about to be stepped.
    fn stepping(&mut self, _input: &Input) {}
    /// `replica` has just stepped one input into `out`.
    fn stepped(&mut self, _replica: &Replica, _out: &Outputs) -> Result<(), Self::Error> {
        Ok(())
    }
    /// `env`, which the node sent itself, goes back in as an input.
    fn looped_back(&mut self, _env: &Envelope) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Once the batch is stepped: the stage after which it should crash, if
    /// any. `stages` are the ones this batch goes through (a stage with
    /// nothing to do, like storing a snapshot the batch does not have, is
    /// not offered); a stage not among them is never reached.
    fn crash_point(&mut self, _stages: &[Stage]) -> Option<Stage> {
        None
    }
    /// A message the core dropped because its sender could not have sent it.
    fn refused(&mut self, _refused: &Refused) {}
}

/// Why a batch stopped short.
#[derive(Debug)]
pub enum DriveError<T, H> {
    /// Storage failed: a node that cannot persist must not go on.
    Storage(StorageError),
    Transport(T),
    Host(H),
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Inputs stepped.
    pub stepped: usize,
    /// Slots applied to the state machine.
    pub applied: usize,
    /// Records appended and synced, and how long that took.
    pub synced: Option<(usize, Duration)>,
    /// The slot a stored snapshot covers up to, and how long storing took.
    pub snapshot: Option<(Slot, Duration)>,
    /// The stage after which the batch crashed, as its host asked.
    pub crashed: Option<Stage>,
}

/// Runs a storage call: inline, or (in the daemon) where the async runtime
/// allows blocking.
pub type Blocking = fn(&mut dyn FnMut());

fn inline(f: &mut dyn FnMut()) {
    f()
}

/// Drives one replica batch by batch over storage `S` and transport `T`.
pub struct BatchDriver<S, T> {
    pub storage: S,
    pub transport: T,
    max_inputs: usize,
    blocking: Blocking,
}

impl<S: Storage, T: Transport> BatchDriver<S, T> {
    /// At most `MAX_BATCH_INPUTS` per batch; storage calls run inline.
    pub fn new(storage: S, transport: T) -> Self {
        BatchDriver { storage, transport, max_inputs: MAX_BATCH_INPUTS, blocking: inline }
    }

    /// Step at most `max` inputs per batch (at least one).
    pub fn set_max_inputs(&mut self, max: usize) {
        self.max_inputs = max.max(1);
    }

    /// Run storage calls through `blocking`.
    pub fn blocking(mut self, blocking: Blocking) -> Self {
        self.blocking = blocking;
        self
    }

    /// Step up to the batch limit of `pending` into `replica`, end the
    /// batch (the replica proposes and forwards what the batch brought, as
    /// one), then do the batch's I/O. Messages the node sends itself that
    /// need nothing durable join `pending` as they appear (and are stepped in
    /// this batch if the limit allows); those that waited for the sync join
    /// it at the end, for the next batch.
    pub fn run_batch<H: Host>(
        &mut self,
        replica: &mut Replica,
        pending: &mut VecDeque<Input>,
        host: &mut H,
    ) -> Result<Batch, DriveError<T::Error, H::Error>> {
        let me = replica.config().id;
        let mut batch = Outputs::default();
        let mut report = Batch::default();
        loop {
            let input = if report.stepped < self.max_inputs { pending.pop_front() } else { None };
            let ending = input.is_none();
            let out = match input {
                Some(input) => {
                    host.stepping(&input);
                    report.stepped += 1;
                    replica.step_in_batch(input)
                }
                None if report.stepped == 0 => return Ok(report),
                // Everything this batch stepped is in: propose and forward
                // it together, once.
                None => replica.end_batch(),
            };
            host.stepped(replica, &out).map_err(DriveError::Host)?;
            // Messages to ourselves that need nothing durable go round now.
            let mut looped = false;
            for env in out.send.iter().filter(|e| e.to == me) {
                host.looped_back(env).map_err(DriveError::Host)?;
                pending.push_back(Input::Receive(env.clone()));
                looped = true;
            }
            merge(&mut batch, out);
            // The batch ends when its end sent nothing more round, or at the
            // limit (what is left waits for the next batch).
            if ending && (!looped || report.stepped >= self.max_inputs) {
                break;
            }
        }
        let must_sync = needs_sync(&batch);
        let crash = host.crash_point(&stages(&batch, me, must_sync));
        let stop = |stage: Stage, mut report: Batch| {
            report.crashed = Some(stage);
            Ok(report)
        };
        if crash == Some(Stage::AfterStep) {
            return stop(Stage::AfterStep, report);
        }

        for env in batch.send.into_iter().filter(|e| e.to != me) {
            self.transport.send(env).map_err(DriveError::Transport)?;
        }
        if crash == Some(Stage::AfterSend) {
            return stop(Stage::AfterSend, report);
        }

        // Answers need nothing of this batch's records: a command is applied
        // only once chosen, i.e. once a quorum has durably voted for it, and
        // this node's own vote left (through the loopback) only after its
        // fsync. What this batch may hold is the `Committed` marker, which a
        // restart can relearn; making the client wait for it cost one fsync
        // per write on the answering node.
        for reply in batch.replies {
            host.answer(reply).map_err(DriveError::Host)?;
        }
        if crash == Some(Stage::AfterAnswer) {
            return stop(Stage::AfterAnswer, report);
        }

        // The snapshot is stored before the batch's records are appended.
        if let Some(snapshot) = &batch.snapshot {
            let started = Instant::now();
            let storage = &mut self.storage;
            let mut result = Ok(());
            (self.blocking)(&mut || result = storage.save_snapshot(snapshot));
            result.map_err(DriveError::Storage)?;
            report.snapshot = Some((snapshot.through, started.elapsed()));
            if crash == Some(Stage::AfterSnapshot) {
                return stop(Stage::AfterSnapshot, report);
            }
        }

        if !batch.persist.is_empty() {
            let started = Instant::now();
            let storage = &mut self.storage;
            let persist = &batch.persist;
            // A batch of commit markers alone is appended, not synced: it
            // becomes durable with the next batch that needs a sync.
            let stop_before_sync = crash == Some(Stage::AfterAppend);
            let mut result = Ok(());
            // One sync covers every record of the batch (group commit).
            (self.blocking)(&mut || {
                result = storage
                    .append(persist)
                    .and_then(|()| if must_sync && !stop_before_sync { storage.sync() } else { Ok(()) })
            });
            result.map_err(DriveError::Storage)?;
            if stop_before_sync {
                return stop(Stage::AfterAppend, report);
            }
            if must_sync {
                report.synced = Some((persist.len(), started.elapsed()));
                if crash == Some(Stage::AfterSync) {
                    return stop(Stage::AfterSync, report);
                }
            }
        }

        // Promises and votes leave only now that what they promise is durable
        // (Paxos Made Simple §2.3); ours to ourselves wait for the next batch.
        let mut loopback = Vec::new();
        for env in batch.send_after_persist {
            if env.to == me {
                loopback.push(env);
            } else {
                self.transport.send(env).map_err(DriveError::Transport)?;
            }
        }
        if crash == Some(Stage::AfterSendAfterPersist) {
            return stop(Stage::AfterSendAfterPersist, report);
        }
        for env in loopback {
            host.looped_back(&env).map_err(DriveError::Host)?;
            pending.push_back(Input::Receive(env));
        }
        for refused in &batch.refused {
            host.refused(refused);
        }
        report.applied = batch.applied.len();
        Ok(report)
    }
}

/// The stages `batch` goes through, in order.
fn stages(batch: &Outputs, me: crate::consensus::ballot::NodeId, must_sync: bool) -> Vec<Stage> {
    let mut stages = vec![Stage::AfterStep];
    if batch.send.iter().any(|e| e.to != me) {
        stages.push(Stage::AfterSend);
    }
    if !batch.replies.is_empty() {
        stages.push(Stage::AfterAnswer);
    }
    if batch.snapshot.is_some() {
        stages.push(Stage::AfterSnapshot);
    }
    if !batch.persist.is_empty() {
        stages.push(Stage::AfterAppend);
        if must_sync {
            stages.push(Stage::AfterSync);
        }
    }
    if !batch.send_after_persist.is_empty() {
        stages.push(Stage::AfterSendAfterPersist);
    }
    stages
}

/// Whether the batch's records must be synced before its promises and votes
/// leave: any record other than a commit marker, or any message waiting for
/// the sync (it may rest on a record of an earlier, unsynced batch).
fn needs_sync(batch: &Outputs) -> bool {
    batch.persist.iter().any(Record::must_sync) || !batch.send_after_persist.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::ballot::{Ballot, NodeId};
    use crate::consensus::config::{Config, Roles};
    use crate::consensus::messages::{Accept, Heartbeat, Hello, HelloReply, Message, Prepare};
    use crate::consensus::records::{Record, Recovered, Snapshot};
    use crate::state_machine::{Command, Entry, Op};
    use crate::storage::MemStorage;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    type Events = Rc<RefCell<Vec<String>>>;

    /// Memory storage that records each call, and can be made to fail.
    struct Logged {
        inner: MemStorage,
        events: Events,
        fail: bool,
    }

    impl Storage for Logged {
        fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
            self.events.borrow_mut().push(format!("append {}", records.len()));
            if self.fail {
                return Err(StorageError::io("wal", std::io::Error::other("disk full")));
            }
            self.inner.append(records)
        }
        fn sync(&mut self) -> Result<(), StorageError> {
            self.events.borrow_mut().push("sync".into());
            self.inner.sync()
        }
        fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
            self.events.borrow_mut().push("snapshot".into());
            self.inner.save_snapshot(snapshot)
        }
        fn recover(&mut self) -> Result<Recovered, StorageError> {
            self.inner.recover()
        }
    }

    struct Wire(Events);

    impl Transport for Wire {
        type Error = String;
        fn send(&mut self, env: Envelope) -> Result<(), String> {
            self.0.borrow_mut().push(format!("send {} to {}", env.msg.kind(), env.to));
            Ok(())
        }
    }

    #[derive(Default)]
    struct Watcher {
        crash_at: Option<Stage>,
        offered: Vec<Stage>,
        looped: Vec<&'static str>,
    }

    impl Host for Watcher {
        type Error = String;
        fn answer(&mut self, _reply: Reply) -> Result<(), String> {
            Ok(())
        }
        fn looped_back(&mut self, env: &Envelope) -> Result<(), String> {
            self.looped.push(env.msg.kind());
            Ok(())
        }
        fn crash_point(&mut self, stages: &[Stage]) -> Option<Stage> {
            self.offered = stages.to_vec();
            self.crash_at.filter(|s| stages.contains(s))
        }
    }

    /// A member of a new cluster that has met every peer, so it votes.
    fn replica(id: NodeId, n: u64) -> Replica {
        let members: BTreeMap<NodeId, Roles> = (1..=n).map(|i| (i, Roles::default())).collect();
        let mut replica = Replica::new(Config::new(id, members), 7, Recovered::default()).expect("valid config");
        for peer in (1..=n).filter(|p| *p != id) {
            let hello = Message::Hello(Hello { incarnation: 100 + peer });
            replica.step(Input::Receive(Envelope { from: peer, to: id, msg: hello }));
            let reply = Message::HelloReply(HelloReply { incarnation: 0, others: false });
            replica.step(Input::Receive(Envelope { from: peer, to: id, msg: reply }));
        }
        // (A cluster of one joins on its first tick: nobody to ask.)
        assert!(n == 1 || replica.status().voting == "voter");
        replica
    }

    fn driver(fail: bool) -> (BatchDriver<Logged, Wire>, Events) {
        let events = Events::default();
        let storage = Logged { inner: MemStorage::new(), events: events.clone(), fail };
        (BatchDriver::new(storage, Wire(events.clone())), events)
    }

    fn prepare() -> VecDeque<Input> {
        let msg =
            Message::Prepare(Prepare { ballot: Ballot::new(1, 2), first_slot: 0, transfer: false, rejoin: false });
        VecDeque::from([Input::Receive(Envelope { from: 2, to: 1, msg })])
    }

    fn durable_promise(driver: &BatchDriver<Logged, Wire>) -> bool {
        driver.storage.inner.durable_records().iter().any(|r| matches!(r, Record::Promised { .. }))
    }

    #[test]
    fn a_promise_leaves_only_after_its_record_is_synced() {
        let (mut driver, events) = driver(false);
        let mut node = replica(1, 3);
        let mut host = Watcher::default();
        let batch = driver.run_batch(&mut node, &mut prepare(), &mut host).unwrap();
        assert_eq!(batch.stepped, 1);
        assert_eq!(batch.synced.map(|(records, _)| records), Some(1));
        assert_eq!(*events.borrow(), ["append 1", "sync", "send promise to 2"]);
        assert_eq!(
            host.offered,
            [Stage::AfterStep, Stage::AfterAppend, Stage::AfterSync, Stage::AfterSendAfterPersist]
        );
        assert!(durable_promise(&driver));
    }

    #[test]
    fn a_batch_of_commit_markers_alone_is_not_synced_and_rides_on_the_next_sync() {
        let (mut driver, events) = driver(false);
        let mut node = replica(1, 3);
        let mut host = Watcher::default();
        let ballot = Ballot::new(1, 2);
        let accept = |slot| {
            let msg = Message::Accept(Accept { ballot, slot, entry: Entry::Noop, commit_index: slot });
            VecDeque::from([Input::Receive(Envelope { from: 2, to: 1, msg })])
        };
        driver.run_batch(&mut node, &mut accept(0), &mut host).unwrap();
        // (The vote, with the promise its ballot implies.)
        assert_eq!(events.borrow()[1..], ["sync", "send accepted to 2"]);
        events.borrow_mut().clear();

        // The leader says slot 0 is chosen: only a commit marker to store.
        let msg = Message::Heartbeat(Heartbeat { ballot, commit_index: 1, read_round: 0 });
        let mut beat = VecDeque::from([Input::Receive(Envelope { from: 2, to: 1, msg })]);
        let batch = driver.run_batch(&mut node, &mut beat, &mut host).unwrap();
        assert_eq!(batch.synced, None);
        assert!(!events.borrow().contains(&"sync".to_string()), "{:?}", events.borrow());
        assert!(events.borrow().contains(&"append 1".to_string()), "{:?}", events.borrow());
        assert!(!host.offered.contains(&Stage::AfterSync), "{:?}", host.offered);
        let marker = |r: &Record| matches!(r, Record::Committed { through: 1 });
        assert!(!driver.storage.inner.durable_records().iter().any(marker), "a marker alone was synced");

        // The next vote's sync carries the marker to disk with it.
        driver.run_batch(&mut node, &mut accept(1), &mut host).unwrap();
        assert!(driver.storage.inner.durable_records().iter().any(marker));
    }

    #[test]
    fn a_crash_after_a_stage_skips_every_later_stage() {
        // (stage, what happened, whether the promise is durable)
        let cases: [(Stage, &[&str], bool); 4] = [
            (Stage::AfterStep, &[], false),
            (Stage::AfterAppend, &["append 1"], false),
            (Stage::AfterSync, &["append 1", "sync"], true),
            (Stage::AfterSendAfterPersist, &["append 1", "sync", "send promise to 2"], true),
        ];
        for (stage, happened, durable) in cases {
            let (mut driver, events) = driver(false);
            let mut host = Watcher { crash_at: Some(stage), ..Default::default() };
            let batch = driver.run_batch(&mut replica(1, 3), &mut prepare(), &mut host).unwrap();
            assert_eq!(batch.crashed, Some(stage));
            assert_eq!(*events.borrow(), happened, "{}", stage.name());
            driver.storage.inner.crash();
            assert_eq!(durable_promise(&driver), durable, "{}", stage.name());
        }
    }

    #[test]
    fn a_storage_failure_stops_the_batch_before_anything_waits_on_it() {
        let (mut driver, events) = driver(true);
        let result = driver.run_batch(&mut replica(1, 3), &mut prepare(), &mut Watcher::default());
        assert!(matches!(result, Err(DriveError::Storage(_))), "{result:?}");
        assert_eq!(*events.borrow(), ["append 1"]);
    }

    #[test]
    fn a_batch_steps_at_most_its_limit() {
        let (mut driver, _) = driver(false);
        driver.set_max_inputs(2);
        let mut pending: VecDeque<Input> = (0..5).map(|_| Input::Tick).collect();
        let batch = driver.run_batch(&mut replica(1, 3), &mut pending, &mut Watcher::default()).unwrap();
        assert_eq!(batch.stepped, 2);
        assert_eq!(pending.len(), 3);
        let empty = driver.run_batch(&mut replica(1, 3), &mut VecDeque::new(), &mut Watcher::default()).unwrap();
        assert_eq!(empty, Batch::default());
    }

    /// Run batches until `pending` is empty.
    fn drain(
        driver: &mut BatchDriver<Logged, Wire>,
        node: &mut Replica,
        pending: &mut VecDeque<Input>,
        host: &mut Watcher,
    ) {
        while !pending.is_empty() {
            driver.run_batch(node, pending, host).unwrap();
        }
    }

    /// A cluster of one, ticked through its driver until it leads.
    fn lone_leader(driver: &mut BatchDriver<Logged, Wire>, host: &mut Watcher) -> Replica {
        let mut node = replica(1, 1);
        for _ in 0..10_000 {
            if node.is_leader() {
                break;
            }
            drain(driver, &mut node, &mut VecDeque::from([Input::Tick]), host);
        }
        assert!(node.is_leader(), "{:?}", node.status());
        node
    }

    fn submits(count: u64, value_bytes: usize) -> VecDeque<Input> {
        let value = "v".repeat(value_bytes);
        (1..=count)
            .map(|seq| Input::Submit {
                request: seq,
                command: Command { client: 9, seq, op: Op::Put { key: format!("k{seq}"), value: value.clone() } },
            })
            .collect()
    }

    /// The votes this node made durable for batches of commands: how many
    /// commands each slot carried.
    fn commands_per_slot(driver: &BatchDriver<Logged, Wire>) -> Vec<usize> {
        let mut slots = BTreeMap::new();
        for record in driver.storage.inner.durable_records() {
            if let Record::Accepted { slot, entry: Entry::Batch { commands }, .. } = record {
                slots.insert(slot, commands.len());
            }
        }
        slots.into_values().collect()
    }

    #[test]
    fn a_lone_node_elects_itself_through_the_loopback() {
        let (mut driver, events) = driver(false);
        let mut host = Watcher::default();
        lone_leader(&mut driver, &mut host);
        assert!(host.looped.contains(&"prepare") && host.looped.contains(&"promise"), "{:?}", host.looped);
        assert!(!events.borrow().iter().any(|e| e.starts_with("send")), "a lone node sent {:?}", events.borrow());
        assert!(durable_promise(&driver));
    }

    #[test]
    fn commands_submitted_in_one_batch_share_one_slot() {
        let (mut driver, _) = driver(false);
        let mut host = Watcher::default();
        let mut node = lone_leader(&mut driver, &mut host);
        drain(&mut driver, &mut node, &mut submits(5, 8), &mut host);
        assert_eq!(commands_per_slot(&driver), [5]);
        assert_eq!(node.store().get("k5").map(String::as_str), Some("vvvvvvvv"));

        // The same commands one batch each take a slot each.
        let (mut driver, _) = self::driver(false);
        let mut node = lone_leader(&mut driver, &mut host);
        for submit in submits(5, 8) {
            drain(&mut driver, &mut node, &mut VecDeque::from([submit]), &mut host);
        }
        assert_eq!(commands_per_slot(&driver), [1, 1, 1, 1, 1]);
    }

    /// Node 1 of 3, following node 2.
    fn follower() -> Replica {
        let mut node = replica(1, 3);
        let beat = Message::Heartbeat(Heartbeat { ballot: Ballot::new(1, 2), commit_index: 0, read_round: 0 });
        node.step(Input::Receive(Envelope { from: 2, to: 1, msg: beat }));
        assert_eq!(node.leader(), Some(2));
        node
    }

    #[test]
    fn a_follower_forwards_what_one_batch_brought_in_one_message_within_a_slots_bytes() {
        let (mut driver, events) = driver(false);
        let mut host = Watcher::default();
        let mut node = follower();
        drain(&mut driver, &mut node, &mut submits(5, 8), &mut host);
        assert_eq!(*events.borrow(), ["send forward to 2"]);

        // Larger than one slot's bytes (2 MiB): split, two of these
        // commands of just under 1 MiB each at most.
        let (mut driver, events) = self::driver(false);
        let mut node = follower();
        let tuning = &node.config().tuning;
        assert_eq!(tuning.max_batch_bytes, 2 * tuning.max_command_bytes);
        let value_bytes = tuning.max_command_bytes - 200;
        drain(&mut driver, &mut node, &mut submits(5, value_bytes), &mut host);
        assert_eq!(*events.borrow(), ["send forward to 2"; 3]);
    }
}
