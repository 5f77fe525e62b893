//! `NodeHandle`: the `NodeApi` that operator commands use, talking to the
//! runtime task over a channel. Waits are bounded: a command that finds no
//! leader fails after `request_timeout` with a message saying so.

use super::clock::PeerClocks;
use super::metrics::{Metrics, PeerSample};
use super::runtime::NodeRequest;
use super::transport::PeerLinks;
use crate::cluster::Inventory;
use crate::consensus::ballot::NodeId;
use crate::consensus::{ClientError, Response, Status};
use crate::ops::api::{
    LogEntry, MemberInfo, MembershipView, NodeApi, NodeError, NodeStatus, PeerClock, PeerProgress, ReadValue,
    ReplicaRole, RequestId, Submitted, WatchReceiver,
};
use crate::state_machine::{Command, ONE_OFF_SEQ, Op, Slot};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(Clone)]
pub struct NodeHandle {
    pub(super) requests: mpsc::Sender<NodeRequest>,
    pub(super) inventory: Arc<Inventory>,
    pub(super) id: NodeId,
    pub(super) peers: PeerLinks,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clocks: Arc<PeerClocks>,
    pub(super) started: Instant,
    pub(super) tick: Duration,
    pub request_timeout: Duration,
}

impl NodeHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> NodeRequest) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    pub async fn core_status(&self) -> Result<Status, NodeError> {
        self.ask(|reply| NodeRequest::Status { reply }).await
    }

    /// Wait for the core's answer, at most `request_timeout`; on timeout say
    /// whether a leader was known.
    async fn answer(&self, make: impl FnOnce(super::runtime::Answer) -> NodeRequest) -> Result<Response, NodeError> {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.map_err(|_| NodeError::ShuttingDown)?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(e))) => Err(client_error(e)),
            Ok(Err(_)) => Err(NodeError::ShuttingDown),
            Err(_) => {
                let waited_ms = started.elapsed().as_millis() as u64;
                match self.core_status().await?.leader {
                    None => Err(NodeError::NoLeader { waited_ms }),
                    Some(_) => Err(NodeError::Timeout { waited_ms }),
                }
            }
        }
    }

    /// Like `answer`, but a command not decided in time is withdrawn from
    /// the core, so the error says exactly one of: not applied (safe to
    /// retry) or outcome unknown (retry with the same request id).
    async fn submit_and_wait(&self, command: Command) -> Result<Response, NodeError> {
        let started = Instant::now();
        let (client, seq) = (command.client, command.seq);
        let (tx, rx) = oneshot::channel();
        self.requests.send(NodeRequest::Submit { command, reply: tx }).await.map_err(|_| NodeError::ShuttingDown)?;
        let decided = match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => {
                self.metrics.proposal_failed();
                return Err(NodeError::ShuttingDown);
            }
            Err(_) => self.ask(|reply| NodeRequest::Withdraw { client, seq, reply }).await?,
        };
        let took = started.elapsed();
        match &decided {
            Ok(_) => self.metrics.proposal_committed(took),
            Err(_) => self.metrics.proposal_failed(),
        }
        let waited_ms = took.as_millis() as u64;
        match decided {
            Ok(response) => Ok(response),
            Err(ClientError::Withdrawn) => match self.core_status().await?.leader {
                None => Err(NodeError::NoLeader { waited_ms }),
                Some(_) => Err(NodeError::NotApplied { waited_ms }),
            },
            Err(ClientError::OutcomeUnknown) => {
                Err(NodeError::OutcomeUnknown { waited_ms, request: RequestId { client, seq } })
            }
            Err(e) => Err(client_error(e)),
        }
    }

    /// This node's metrics, with the peer links' state as of now.
    pub fn metrics_text(&self) -> String {
        self.metrics.peers(self.peers.all().into_iter().map(|(id, link)| {
            let stats = link.stats();
            let clock_offset = self.clocks.estimate(id).map(|e| e.offset_us as f64 / 1e6);
            (id, PeerSample { connected: stats.connected, dropped: stats.dropped, clock_offset })
        }));
        self.metrics.render()
    }

    fn ms(&self, ticks: u64) -> u64 {
        ticks.saturating_mul(self.tick.as_millis() as u64)
    }

    fn node_status(&self, s: Status) -> NodeStatus {
        let me = self.inventory.node(self.id);
        NodeStatus {
            cluster: self.inventory.cluster.clone(),
            id: s.id,
            name: me.map(|n| n.name.clone()).unwrap_or_default(),
            address: me.map(|n| n.address()).unwrap_or_default(),
            roles: s.roles.names().into_iter().map(String::from).collect(),
            role: match s.role.as_str() {
                "leader" => ReplicaRole::Leader,
                "candidate" => ReplicaRole::Candidate,
                _ => ReplicaRole::Follower,
            },
            leader: s.leader,
            ballot: s.ballot,
            promised: s.promised,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_heartbeat_age_ms: if s.leader == Some(s.id) { None } else { s.ticks_since_leader.map(|t| self.ms(t)) },
            pending_requests: s.pending_requests as u64,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            voting: s.voting,
            incarnation: s.incarnation,
            pid: std::process::id(),
            clock: self
                .clocks
                .estimates()
                .into_iter()
                .map(|(peer, e)| PeerClock {
                    peer,
                    offset_ms: e.offset_ms(),
                    error_ms: e.error_ms(),
                    round_trip_ms: e.round_trip_ms(),
                })
                .collect(),
        }
    }
}

fn client_error(e: ClientError) -> NodeError {
    match e {
        ClientError::NotLeader { leader } => NodeError::NotLeader { leader },
        ClientError::BadTarget(reason) => NodeError::BadTarget { reason },
        ClientError::TransferTimedOut(to) => {
            NodeError::BadTarget { reason: format!("node {to} did not take over within the election timeout") }
        }
        ClientError::TooLarge { bytes, max } => NodeError::TooLarge { bytes: bytes as u64, max: max as u64 },
        // Answered only to a withdrawal, which `submit_and_wait` handles.
        ClientError::Withdrawn => NodeError::NotApplied { waited_ms: 0 },
        ClientError::Removed { maybe_applied } => NodeError::Removed { maybe_applied },
        ClientError::OutcomeUnknown => NodeError::Timeout { waited_ms: 0 },
    }
}

fn unexpected(what: &str, r: Response) -> NodeError {
    NodeError::Storage { reason: format!("internal: {what} answered with {r:?}") }
}

impl NodeApi for NodeHandle {
    fn status(&self) -> BoxFuture<'_, NodeStatus> {
        Box::pin(async move {
            match self.core_status().await {
                Ok(s) => self.node_status(s),
                Err(_) => self.node_status(Status {
                    id: self.id,
                    roles: Default::default(),
                    role: "stopping".into(),
                    leader: None,
                    ballot: Default::default(),
                    promised: Default::default(),
                    commit_index: 0,
                    applied_index: 0,
                    log_start: 0,
                    snapshot_through: 0,
                    ticks_since_leader: None,
                    pending_requests: 0,
                    in_flight: 0,
                    elections_started: 0,
                    incarnation: 0,
                    voting: "stopping".into(),
                }),
            }
        })
    }

    /// The members of the configurations in force and pending, named and
    /// addressed as the change that added them said (seed members: as the
    /// inventory does), with their roles in the newest configuration.
    fn members(&self) -> BoxFuture<'_, Vec<MemberInfo>> {
        Box::pin(async move {
            let Ok(view) = self.membership().await else { return Vec::new() };
            let newest = view.membership.configs().last().cloned().unwrap_or_else(|| view.membership.current.clone());
            view.membership
                .member_ids()
                .into_iter()
                .map(|id| {
                    let member = newest.members.get(&id).or_else(|| view.membership.current.members.get(&id));
                    let seed = self.inventory.node(id);
                    let or_seed = |given: Option<&String>, seeded: Option<String>| {
                        given.filter(|g| !g.is_empty()).cloned().or(seeded).unwrap_or_default()
                    };
                    let is_self = id == self.id;
                    let link = self.peers.get(id).map(|l| l.stats());
                    let clock = if is_self { None } else { self.clocks.estimate(id) };
                    let progress = view.progress.get(&id);
                    MemberInfo {
                        id,
                        name: or_seed(member.map(|m| &m.name), seed.map(|n| n.name.clone())),
                        address: or_seed(member.map(|m| &m.address), seed.map(|n| n.address())),
                        roles: newest
                            .roles(id)
                            .map(|r| r.names().into_iter().map(String::from).collect())
                            .unwrap_or_else(|| vec!["leaving".to_owned()]),
                        is_self,
                        is_leader: view.leader == Some(id),
                        connected: is_self || link.as_ref().is_some_and(|l| l.connected),
                        last_heard_ms: progress.map(|p| p.since_ms),
                        match_index: if is_self && view.is_leader {
                            Some(view.commit_index)
                        } else {
                            progress.map(|p| p.commit_index)
                        },
                        clock_offset_ms: clock.map(|e| e.offset_ms()),
                        clock_error_ms: clock.map(|e| e.error_ms()),
                        round_trip_ms: clock.map(|e| e.round_trip_ms()),
                    }
                })
                .collect()
        })
    }

    fn membership(&self) -> BoxFuture<'_, Result<MembershipView, NodeError>> {
        Box::pin(async move {
            let status = self.core_status().await?;
            let (membership, progress) = self.ask(|reply| NodeRequest::Membership { reply }).await?;
            let tick_ms = self.tick.as_millis() as u64;
            let progress = progress
                .into_iter()
                .map(|(id, (commit_index, ticks))| (id, PeerProgress { commit_index, since_ms: ticks * tick_ms }))
                .collect();
            Ok(MembershipView {
                membership,
                leader: status.leader,
                is_leader: status.leader == Some(self.id) && status.role == "leader",
                commit_index: status.commit_index,
                progress,
            })
        })
    }

    fn submit(&self, op: Op, request: Option<RequestId>) -> BoxFuture<'_, Result<Submitted, NodeError>> {
        Box::pin(async move {
            // Without an id from the caller, a fresh client id per command
            // (commands from one client must be applied in sequence order,
            // which concurrent operators cannot promise), as a one-off: no
            // caller can retry it, so no store keeps its result.
            let one_off = RequestId { client: rand::random::<u64>() | 1, seq: ONE_OFF_SEQ };
            let RequestId { client, seq } = request.unwrap_or(one_off);
            let command = Command { client, seq, op };
            match self.submit_and_wait(command).await? {
                Response::Applied { slot, result } => Ok(Submitted { slot, result }),
                other => Err(unexpected("submit", other)),
            }
        })
    }

    fn read(&self, key: String, linearizable: bool) -> BoxFuture<'_, Result<ReadValue, NodeError>> {
        Box::pin(async move {
            match self.answer(|reply| NodeRequest::Read { key, linearizable, reply }).await? {
                Response::Value { value, index } => Ok(ReadValue { value, index }),
                other => Err(unexpected("read", other)),
            }
        })
    }

    fn log(&self, from: Slot, limit: u64) -> BoxFuture<'_, Result<Vec<LogEntry>, NodeError>> {
        Box::pin(async move {
            let limit = limit.min(10_000) as usize;
            let entries = self.ask(|reply| NodeRequest::Log { from, limit, reply }).await?;
            let entries = entries.map_err(|first_available| NodeError::Compacted { first_available })?;
            Ok(entries.into_iter().map(|e| LogEntry { slot: e.slot, entry: e.entry }).collect())
        })
    }

    fn watch(&self, from: Slot) -> BoxFuture<'_, Result<WatchReceiver, NodeError>> {
        Box::pin(async move {
            let (tx, mut rx) = mpsc::channel(256);
            self.requests.send(NodeRequest::Watch { from, tx }).await.map_err(|_| NodeError::ShuttingDown)?;
            let (out_tx, out_rx) = mpsc::channel(256);
            tokio::spawn(async move {
                while let Some(item) = rx.recv().await {
                    let item = item
                        .map(|e| LogEntry { slot: e.slot, entry: e.entry })
                        .map_err(|first_available| NodeError::Compacted { first_available });
                    let last = item.is_err();
                    if out_tx.send(item).await.is_err() || last {
                        break;
                    }
                }
            });
            Ok(out_rx)
        })
    }

    fn step_down(&self, to: Option<NodeId>) -> BoxFuture<'_, Result<NodeId, NodeError>> {
        Box::pin(async move {
            match self.answer(|reply| NodeRequest::Transfer { to, reply }).await? {
                Response::Transferred { to } => Ok(to),
                other => Err(unexpected("step-down", other)),
            }
        })
    }

    fn seed_inventory(&self) -> &crate::cluster::Inventory {
        &self.inventory
    }

    fn quorum(&self) -> usize {
        let acceptors = self.inventory.nodes.iter().filter(|n| n.roles().names().contains(&"acceptor")).count();
        match self.inventory.consensus_config(self.id).map(|c| c.validate()) {
            Ok(Ok(q)) => q.phase1.max(q.phase2),
            _ => acceptors / 2 + 1,
        }
    }

    fn metrics(&self) -> BoxFuture<'_, String> {
        Box::pin(async move { self.metrics_text() })
    }
}
