//! Client commands: a command waits at the node it was submitted to until
//! that node applies it. Followers forward it to the leader (all that
//! arrived in one batch of inputs together) and forward it again after a
//! timeout or a leader change; the state machine's session table makes those
//! retries safe.

use super::messages::{Forward, Message};
use super::{ClientError, Replica, RequestId, Response};
use crate::state_machine::{ClientId, Command};
use std::collections::BTreeMap;

#[derive(Debug)]
struct Pending {
    requests: Vec<RequestId>,
    command: Command,
    last_sent: Option<u64>,
    /// Forwarded to another node at least once: from then on only the
    /// session table can say whether it was applied.
    handed_off: bool,
}

#[derive(Debug, Default)]
pub(crate) struct ClientState {
    pending: BTreeMap<(ClientId, u64), Pending>,
    forward: Vec<Command>,
}

impl ClientState {
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

impl Replica {
    pub(super) fn on_submit(&mut self, request: RequestId, command: Command) {
        if self.is_removed() {
            self.reply(request, Err(ClientError::Removed { maybe_applied: false }));
            return;
        }
        let (bytes, max) = (command.wire_len(), self.cfg.tuning.max_command_bytes);
        if bytes > max {
            self.reply(request, Err(ClientError::TooLarge { bytes, max }));
            return;
        }
        if let Some((result, slot)) = self.kv.cached(command.client, command.seq) {
            self.reply(request, Ok(Response::Applied { slot, result }));
            return;
        }
        let key = (command.client, command.seq);
        if let Some(p) = self.clients.pending.get_mut(&key) {
            p.requests.push(request);
            return;
        }
        self.clients.pending.insert(
            key,
            Pending { requests: vec![request], command: command.clone(), last_sent: None, handed_off: false },
        );
        self.route(command);
    }

    /// Hand a command to the leader: our own queue, or the forward batch.
    fn route(&mut self, command: Command) {
        let now = self.now;
        let forwarding = !self.is_leader() && self.leader.is_some_and(|l| l != self.id());
        if let Some(p) = self.clients.pending.get_mut(&(command.client, command.seq)) {
            p.last_sent = Some(now);
            p.handed_off |= forwarding;
        }
        if self.is_leader() {
            self.leader_enqueue(command);
        } else if forwarding {
            self.clients.forward.push(command);
        }
    }

    /// The runtime gave up waiting for a command. If it never left this
    /// node and no slot carries it, it is withdrawn and will never be
    /// applied; once forwarded or proposed, it stays pending (a retry with
    /// the same request id attaches to it) and the outcome is unknown.
    pub(super) fn on_withdraw(&mut self, request: RequestId, client: ClientId, seq: u64) {
        if let Some((result, slot)) = self.kv.cached(client, seq) {
            self.reply(request, Ok(Response::Applied { slot, result }));
            return;
        }
        let key = (client, seq);
        let handed_off = self.clients.pending.get(&key).is_some_and(|p| p.handed_off);
        let proposed = match &mut self.role {
            super::election::Role::Leader(ls) if ls.queued.contains(&key) => {
                let waiting = ls.queue.iter().position(|(c, _)| (c.client, c.seq) == key);
                match waiting {
                    Some(i) => {
                        ls.queue.remove(i);
                        ls.queued.remove(&key);
                        false
                    }
                    None => true, // in a slot already
                }
            }
            _ => false,
        };
        if handed_off || proposed {
            self.reply(request, Err(ClientError::OutcomeUnknown));
            return;
        }
        if let Some(p) = self.clients.pending.remove(&key) {
            for waiting in p.requests {
                self.reply(waiting, Err(ClientError::Withdrawn));
            }
        }
        self.reply(request, Err(ClientError::Withdrawn));
    }

    pub(super) fn flush_forwards(&mut self) {
        if self.clients.forward.is_empty() {
            return;
        }
        let commands = std::mem::take(&mut self.clients.forward);
        let Some(leader) = self.leader.filter(|l| *l != self.id()) else {
            // The leader changed during this batch; the retry timer resends.
            return;
        };
        // Each Forward carries at most a slot's worth of bytes (and at least
        // one command), so it fits a peer frame however many are waiting.
        let budget = self.cfg.tuning.max_batch_bytes;
        let (mut chunk, mut bytes) = (Vec::new(), 0);
        for command in commands {
            let len = command.wire_len();
            if !chunk.is_empty() && bytes + len > budget {
                self.send(leader, Message::Forward(Forward { commands: std::mem::take(&mut chunk) }));
                bytes = 0;
            }
            bytes += len;
            chunk.push(command);
        }
        self.send(leader, Message::Forward(Forward { commands: chunk }));
    }

    /// Whether this node's removal is in force: no configuration in view
    /// has it, and one retired its id. It has no leader to send to.
    pub(super) fn is_removed(&self) -> bool {
        let (me, membership) = (self.id(), self.membership());
        !membership.is_member(me) && membership.configs().any(|c| c.retired.contains(&me))
    }

    /// A removed node answers what waits on it at once, rather than let it
    /// time out: nobody will decide it here any more. Each may have been
    /// forwarded, or proposed while this node led, so it may be applied yet.
    fn fail_pending_on_removal(&mut self) {
        for (_, p) in std::mem::take(&mut self.clients.pending) {
            for request in p.requests {
                self.reply(request, Err(ClientError::Removed { maybe_applied: true }));
            }
        }
        self.clients.forward.clear();
    }

    pub(super) fn tick_clients(&mut self) {
        if self.is_removed() {
            self.fail_pending_on_removal();
            return;
        }
        let retry = self.cfg.timing.client_retry;
        let now = self.now;
        let due: Vec<Command> = self
            .clients
            .pending
            .values()
            .filter(|p| p.last_sent.is_none_or(|t| now >= t + retry))
            .map(|p| p.command.clone())
            .collect();
        for command in due {
            self.route(command);
        }
    }

    /// A new leader is known: resend everything still waiting, now.
    pub(super) fn on_leader_change(&mut self) {
        let waiting: Vec<Command> = self.clients.pending.values().map(|p| p.command.clone()).collect();
        for command in waiting {
            self.route(command);
        }
        self.reads_on_leader_change();
    }

    pub(super) fn on_forward(&mut self, m: Forward) {
        // A follower that is no longer leader drops forwarded commands: their
        // origin retries them with the leader it learns about.
        if self.is_leader() {
            for command in m.commands {
                self.leader_enqueue(command);
            }
        }
    }

    pub(super) fn on_command_applied(&mut self, command: &Command, response: Response) {
        if let super::election::Role::Leader(ls) = &mut self.role {
            ls.queued.remove(&(command.client, command.seq));
        }
        if let Some(p) = self.clients.pending.remove(&(command.client, command.seq)) {
            for request in p.requests {
                self.reply(request, Ok(response.clone()));
            }
        }
    }

    /// After installing a snapshot, commands applied inside it are answered
    /// from the session table.
    pub(super) fn answer_from_sessions(&mut self) {
        let done: Vec<(ClientId, u64)> =
            self.clients.pending.keys().copied().filter(|(c, s)| self.kv.cached(*c, *s).is_some()).collect();
        for (client, seq) in done {
            let Some((result, slot)) = self.kv.cached(client, seq) else { continue };
            if let Some(p) = self.clients.pending.remove(&(client, seq)) {
                for request in p.requests {
                    self.reply(request, Ok(Response::Applied { slot, result: result.clone() }));
                }
            }
        }
    }
}
