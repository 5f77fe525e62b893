//! Tests of the operator commands over an in-memory fake of the node
//! runtime (the real runtime gets its own integration tests).

mod command;
mod console;
mod exec;
mod members;
mod render;

use super::api::*;
use crate::consensus::ballot::{Ballot, NodeId};
use crate::state_machine::{Command, Entry, KvStore, Op};
use futures::future::BoxFuture;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A single-node "cluster" that applies commands at once: each submit is
/// decided in the next slot. Failures can be injected per call kind.
pub struct FakeNode {
    pub state: Mutex<FakeState>,
    /// Its seed inventory: nodes 1-3 on 127.0.0.1:7101-7103, as `member` lists them.
    pub inventory: crate::cluster::Inventory,
}

pub struct FakeState {
    pub kv: KvStore,
    pub log: Vec<LogEntry>,
    pub leader: Option<NodeId>,
    pub next_client: u64,
    pub submit_error: Option<NodeError>,
    pub read_error: Option<NodeError>,
    /// Sent after the watched entries, before the watch ends.
    pub watch_end: Option<NodeError>,
    pub submitted: Vec<(Op, Option<RequestId>)>,
    pub reads: Vec<(String, bool)>,
    pub log_requests: Vec<(u64, u64)>,
    /// `log` panics (a stand-in for any bug in a command's path).
    pub log_panics: bool,
    /// The leader's view of each peer's commit index.
    pub progress: std::collections::BTreeMap<NodeId, PeerProgress>,
}

fn fake_inventory() -> crate::cluster::Inventory {
    let hosts: serde_json::Map<String, serde_json::Value> = (1..=3)
        .map(|id| {
            let host = serde_json::json!({"ansible_host": "127.0.0.1", "paxos_id": id, "paxos_port": 7100 + id});
            (format!("node{id}"), host)
        })
        .collect();
    let doc = serde_json::json!({"all": {"hosts": hosts, "vars": {"paxos_cluster": "fake"}}});
    crate::cluster::Inventory::from_json(&doc.to_string(), "fake.json").expect("the fake's inventory")
}

/// The fake's seed configuration: nodes 1-3 with every role, α 128.
pub fn fake_genesis() -> crate::consensus::configuration::Membership {
    use crate::consensus::configuration::{Configuration, Member, Membership};
    let members = (1..=3).map(|id| (id, Member::with_roles(Default::default()))).collect();
    Membership::new(Configuration {
        epoch: 0,
        members,
        phase1_quorum: None,
        phase2_quorum: None,
        retired: Default::default(),
        alpha: crate::consensus::configuration::DEFAULT_ALPHA,
    })
}

impl FakeNode {
    pub fn new() -> FakeNode {
        FakeNode {
            state: Mutex::new(FakeState {
                kv: KvStore::new(100),
                log: Vec::new(),
                leader: Some(1),
                next_client: 1000,
                submit_error: None,
                read_error: None,
                watch_end: None,
                submitted: Vec::new(),
                reads: Vec::new(),
                log_requests: Vec::new(),
                log_panics: false,
                progress: Default::default(),
            }),
            inventory: fake_inventory(),
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

pub fn member(id: NodeId, leader: Option<NodeId>) -> MemberInfo {
    MemberInfo {
        id,
        name: format!("node{id}"),
        address: format!("127.0.0.1:710{id}"),
        roles: vec!["proposer".into(), "acceptor".into(), "learner".into()],
        is_self: id == 1,
        is_leader: leader == Some(id),
        connected: id != 3,
        last_heard_ms: if id == 1 { None } else { Some(40) },
        match_index: if leader == Some(1) { Some(7) } else { None },
        clock_offset_ms: if id == 2 { Some(2000.031) } else { None },
        clock_error_ms: if id == 2 { Some(0.052) } else { None },
        round_trip_ms: if id == 2 { Some(0.104) } else { None },
    }
}

pub fn status(leader: Option<NodeId>, commit_index: u64) -> NodeStatus {
    NodeStatus {
        cluster: "local".into(),
        id: 1,
        name: "node1".into(),
        address: "127.0.0.1:7101".into(),
        roles: vec!["proposer".into(), "acceptor".into(), "learner".into()],
        role: if leader == Some(1) { ReplicaRole::Leader } else { ReplicaRole::Follower },
        leader,
        ballot: Ballot::new(3, 1),
        promised: Ballot::new(3, 1),
        commit_index,
        applied_index: commit_index,
        last_heartbeat_age_ms: None,
        pending_requests: 0,
        uptime_ms: 3_723_000,
        voting: "voter".into(),
        incarnation: 4242,
        pid: 4321,
        clock: vec![
            PeerClock { peer: 2, offset_ms: 2000.031, error_ms: 0.052, round_trip_ms: 0.104 },
            PeerClock { peer: 3, offset_ms: -0.012, error_ms: 0.047, round_trip_ms: 0.094 },
        ],
    }
}

impl NodeApi for FakeNode {
    fn status(&self) -> BoxFuture<'_, NodeStatus> {
        let s = self.with(|s| status(s.leader, s.log.len() as u64));
        Box::pin(async move { s })
    }

    fn members(&self) -> BoxFuture<'_, Vec<MemberInfo>> {
        let leader = self.with(|s| s.leader);
        Box::pin(async move { (1..=3).map(|id| member(id, leader)).collect() })
    }

    fn membership(&self) -> BoxFuture<'_, Result<MembershipView, NodeError>> {
        let view = self.with(|s| {
            let membership = s.kv.membership().cloned().unwrap_or_else(fake_genesis);
            let progress = s.progress.clone();
            MembershipView {
                membership,
                leader: s.leader,
                is_leader: s.leader == Some(1),
                commit_index: s.log.len() as u64,
                progress,
            }
        });
        Box::pin(async move { Ok(view) })
    }

    fn submit(&self, op: Op, request: Option<RequestId>) -> BoxFuture<'_, Result<Submitted, NodeError>> {
        let result = self.with(|s| {
            s.submitted.push((op.clone(), request));
            if let Some(e) = s.submit_error.clone() {
                return Err(e);
            }
            let request = request.unwrap_or_else(|| {
                s.next_client += 1;
                RequestId { client: s.next_client, seq: 1 }
            });
            let command = Command { client: request.client, seq: request.seq, op };
            let slot = s.log.len() as u64;
            let applied = s.kv.apply_decided(slot, &command, fake_genesis);
            s.log.push(LogEntry { slot, entry: Entry::Batch { commands: vec![command] } });
            Ok(Submitted { slot, result: applied.result })
        });
        Box::pin(async move { result })
    }

    fn read(&self, key: String, linearizable: bool) -> BoxFuture<'_, Result<ReadValue, NodeError>> {
        let result = self.with(|s| {
            s.reads.push((key.clone(), linearizable));
            match s.read_error.clone() {
                Some(e) => Err(e),
                None => Ok(ReadValue { value: s.kv.get(&key).cloned(), index: s.log.len() as u64 }),
            }
        });
        Box::pin(async move { result })
    }

    fn log(&self, from: u64, limit: u64) -> BoxFuture<'_, Result<Vec<LogEntry>, NodeError>> {
        let entries = self.with(|s| {
            s.log_requests.push((from, limit));
            assert!(!s.log_panics, "log asked to panic");
            s.log.iter().filter(|e| e.slot >= from).take(limit as usize).cloned().collect()
        });
        Box::pin(async move { Ok(entries) })
    }

    fn watch(&self, from: u64) -> BoxFuture<'_, Result<WatchReceiver, NodeError>> {
        let (entries, end) = self.with(|s| {
            let entries: Vec<LogEntry> = s.log.iter().filter(|e| e.slot >= from).cloned().collect();
            (entries, s.watch_end.clone())
        });
        let (tx, rx) = mpsc::channel(entries.len() + 1);
        for entry in entries {
            tx.try_send(Ok(entry)).expect("capacity for every entry");
        }
        if let Some(e) = end {
            tx.try_send(Err(e)).expect("capacity for the end");
        }
        Box::pin(async move { Ok(rx) })
    }

    fn step_down(&self, to: Option<NodeId>) -> BoxFuture<'_, Result<NodeId, NodeError>> {
        let result = self.with(|s| match to {
            Some(id) if !(1..=3).contains(&id) => {
                Err(NodeError::BadTarget { reason: format!("node {id} is not a member") })
            }
            Some(1) => Err(NodeError::BadTarget { reason: "node 1 is already the leader".into() }),
            target => {
                let new = target.unwrap_or(2);
                s.leader = Some(new);
                Ok(new)
            }
        });
        Box::pin(async move { result })
    }

    fn metrics(&self) -> BoxFuture<'_, String> {
        Box::pin(async { "# TYPE paxos_commit_index gauge\npaxos_commit_index 0\n".to_owned() })
    }

    fn quorum(&self) -> usize {
        2
    }

    fn seed_inventory(&self) -> &crate::cluster::Inventory {
        &self.inventory
    }
}

/// A writer whose bytes stay readable after it is handed away (for the audit log).
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}
