//! Who may vote: incarnations, introductions, and the safe way back for a
//! node that lost its data directory.
//!
//! An acceptor that forgets its promises and votes breaks Paxos: a value
//! chosen with its vote can be overwritten by a quorum that counts its empty
//! state. So every data directory has a random incarnation
//! (`storage::identity`), and a node votes only once its incarnation has
//! joined:
//!
//! - **Introductions.** Each node says `Hello` with its incarnation to every
//!   peer until the peer answers. A peer records the incarnation durably
//!   (`Record::Seen`) before its `HelloReply` leaves, and remembers, sticky,
//!   whether it ever saw another incarnation of that node. Two rules make
//!   that record trustworthy: an acceptor sends a promise or vote only to a
//!   proposer that has answered its hello (so whoever counts a vote has
//!   recorded the voter), and an acceptor promises or votes only for a
//!   proposer it has recorded (so whoever voted for a proposer has recorded
//!   it).
//! - **Genesis.** A node whose directory is new asks every other member. If
//!   all answer that they never saw another incarnation of it, nothing it
//!   could have forgotten was ever counted: it joins and votes. One peer
//!   that did see another incarnation is enough to say it lost its data.
//! - **Rejoin.** A node that lost its data learns (catch-up, as a learner),
//!   and runs phase 1 at a fresh ballot with a quorum of the *other*
//!   acceptors. It takes, per slot, the highest-ballot vote they report as
//!   its own, promises that ballot, waits until it has learned every slot
//!   below their commit indexes, then joins. Any value chosen with one of
//!   its lost votes was also voted by one of those acceptors (a quorum of
//!   the others meets every quorum that held its vote), and none of them
//!   votes below the fresh ballot any more, so the highest vote they report
//!   carries the chosen value. Promises it made before the loss are voided
//!   the other way round: every promise now names the incarnations its
//!   sender knows, and a candidate drops a promise whose sender's
//!   incarnation another promise contradicts.
//!
//! A rejoin's phase 1 deposes the current leader (its acceptors promise a
//! higher ballot), which costs one election.

use super::ballot::{Ballot, NodeId};
use super::messages::{Hello, HelloReply, Message, Prepare, Promise, Vote};
use super::records::{JoinedHow, Record};
use super::{Replica, SlotState};
use crate::state_machine::Slot;
use std::collections::{BTreeMap, BTreeSet};

/// Whether this incarnation may promise and vote.
#[derive(Clone, Debug)]
pub(crate) enum Voting {
    /// A new directory: asking the other members whether they knew another
    /// incarnation of this node. `answers` holds who has answered and what.
    Unclassified {
        answers: BTreeMap<NodeId, bool>,
    },
    /// The cluster knew another incarnation: rejoining.
    Recovering(Rejoin),
    Voter,
}

/// A rejoin in progress.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rejoin {
    /// The phase-1 ballot of the current attempt, if one is running.
    pub ballot: Option<Ballot>,
    pub started: u64,
    pub promises: BTreeMap<NodeId, Promise>,
    /// Phase 1 succeeded at `ballot`; joining once every slot below this is learned.
    pub learn_through: Option<Slot>,
    /// Whose promises made that phase 1: still a quorum of every
    /// configuration in view once the node has learned that far, or the
    /// rejoin starts over (the view it began with may have been stale).
    pub promisers: BTreeSet<NodeId>,
    /// No attempt before this tick (after a failed one).
    pub not_before: u64,
}

/// What the membership state says about this node, for `status`.
impl Voting {
    pub fn name(&self) -> &'static str {
        match self {
            Voting::Unclassified { .. } => "introducing",
            Voting::Recovering(r) if r.learn_through.is_some() => "rejoining (learning)",
            Voting::Recovering(_) => "rejoining",
            Voting::Voter => "voter",
        }
    }
}

impl Replica {
    pub(super) fn is_voter(&self) -> bool {
        matches!(self.voting, Voting::Voter)
    }

    /// Send a promise or a vote: only to a node that has recorded this
    /// incarnation (it answered our hello), or to ourselves. Otherwise it
    /// is dropped; the sender retransmits, and the hello goes out on the
    /// next tick.
    pub(super) fn send_vote(&mut self, to: NodeId, msg: Message) {
        if to == self.id() || self.introduced.contains(&to) {
            self.send_after_persist(to, msg);
        }
    }

    /// Whether this node has recorded `proposer`, so it may promise or vote
    /// for it: whoever voted for a proposer can later tell that the
    /// proposer existed.
    pub(super) fn knows_proposer(&self, proposer: NodeId) -> bool {
        proposer == self.id() || self.seen.contains_key(&proposer)
    }

    pub(super) fn tick_membership(&mut self) {
        let t = self.cfg.timing;
        let due = self.last_hello.is_none_or(|at| self.now >= at + t.heartbeat);
        let unanswered: Vec<NodeId> = match &self.voting {
            Voting::Unclassified { answers } => {
                self.others().into_iter().filter(|n| !answers.contains_key(n) || !self.introduced.contains(n)).collect()
            }
            _ => self.others().into_iter().filter(|n| !self.introduced.contains(n)).collect(),
        };
        if due && !unanswered.is_empty() {
            self.last_hello = Some(self.now);
            let hello = Hello { incarnation: self.incarnation };
            for peer in unanswered {
                self.send(peer, Message::Hello(hello.clone()));
            }
        }
        self.classify();
        self.tick_rejoin();
    }

    pub(super) fn on_hello(&mut self, from: NodeId, hello: Hello) {
        let known = self.seen.get(&from).copied();
        let others = match known {
            None => false,
            Some((incarnation, others)) if incarnation == hello.incarnation => others,
            Some(_) => true,
        };
        if known != Some((hello.incarnation, others)) {
            if known.is_some_and(|(incarnation, _)| incarnation != hello.incarnation) {
                // A new incarnation knows nothing of us: introduce ourselves again.
                self.introduced.remove(&from);
                self.last_hello = None;
            }
            self.seen.insert(from, (hello.incarnation, others));
            self.persist(Record::Seen { node: from, incarnation: hello.incarnation, others });
        }
        // Leaves once the record is durable: the answer is a promise to remember.
        self.send_after_persist(from, Message::HelloReply(HelloReply { incarnation: hello.incarnation, others }));
    }

    pub(super) fn on_hello_reply(&mut self, from: NodeId, reply: HelloReply) {
        if reply.incarnation != self.incarnation {
            return; // an answer to an earlier incarnation of this node
        }
        self.introduced.insert(from);
        if let Voting::Unclassified { answers } = &mut self.voting {
            answers.insert(from, reply.others);
        }
        self.classify();
    }

    /// Once every other member has answered: genesis, or rejoin.
    fn classify(&mut self) {
        let Voting::Unclassified { answers } = &self.voting else { return };
        if answers.values().any(|others| *others) {
            self.voting = Voting::Recovering(Rejoin::default());
            return;
        }
        if self.others().iter().all(|n| answers.contains_key(n)) {
            self.join(JoinedHow::Genesis);
        }
    }

    fn join(&mut self, how: JoinedHow) {
        self.persist(Record::Joined { how });
        self.voting = Voting::Voter;
        self.reset_election_timer();
    }

    fn tick_rejoin(&mut self) {
        let (now, t) = (self.now, self.cfg.timing);
        let commit = self.commit_index;
        let acceptor = self.roles().acceptor;
        let Voting::Recovering(rejoin) = &mut self.voting else { return };
        if let (Some(ballot), Some(through)) = (rejoin.ballot, rejoin.learn_through) {
            if commit < through {
                return;
            }
            let promisers = rejoin.promisers.clone();
            if acceptor && self.membership().phase1_quorum_in(&promisers) {
                self.join(JoinedHow::Rejoined { ballot });
            } else if let Voting::Recovering(rejoin) = &mut self.voting {
                // What it learned changed the configuration: phase 1 again,
                // with the acceptors it now knows.
                *rejoin = Rejoin { not_before: now, ..Rejoin::default() };
            }
            return;
        }
        if !acceptor {
            // A learner's lost state is nothing anyone counted, but this
            // view may be one the node has not caught up on yet (a node
            // that lost its data starts from its seed view): it rejoins
            // once the log it learns makes it an acceptor, and never votes
            // before. Until then there is nothing to vote on.
            return;
        }
        if rejoin.ballot.is_some() && now >= rejoin.started + t.retransmit {
            rejoin.ballot = None;
            rejoin.promises.clear();
            rejoin.not_before = now + t.backoff_base + self.rng.between(0, t.backoff_base);
        }
        if rejoin.ballot.is_none() && now >= rejoin.not_before {
            self.start_rejoin();
        }
    }

    /// Phase 1 at a fresh ballot, with the other acceptors only. The ballot
    /// is durable first, like a campaign's.
    fn start_rejoin(&mut self) {
        let ballot = Ballot::next_after(self.max_round, self.id());
        self.note_ballot(ballot);
        let now = self.now;
        if let Voting::Recovering(rejoin) = &mut self.voting {
            rejoin.ballot = Some(ballot);
            rejoin.started = now;
            rejoin.promises.clear();
        }
        self.persist(Record::Campaigned { ballot });
        let prepare = Prepare { ballot, first_slot: self.commit_index, transfer: false, rejoin: true };
        let me = self.id();
        for acceptor in self.acceptors().into_iter().filter(|a| *a != me) {
            self.send_after_persist(acceptor, Message::Prepare(prepare.clone()));
        }
    }

    /// A promise for the rejoin ballot. Returns false if it was not one.
    pub(super) fn on_rejoin_promise(&mut self, from: NodeId, p: &Promise) -> bool {
        let Voting::Recovering(rejoin) = &mut self.voting else { return false };
        if rejoin.ballot != Some(p.ballot) || rejoin.learn_through.is_some() {
            return false;
        }
        if from == self.cfg.id {
            return true;
        }
        rejoin.promises.insert(from, p.clone());
        let promises = rejoin.promises.clone();
        let valid = self.valid_promisers(&promises);
        if self.membership().phase1_quorum_in(&valid) {
            self.finish_rejoin_phase1(p.ballot, &valid);
        }
        true
    }

    /// Take the other acceptors' votes as our own and promise the ballot.
    fn finish_rejoin_phase1(&mut self, ballot: Ballot, valid: &BTreeSet<NodeId>) {
        let Voting::Recovering(rejoin) = &mut self.voting else { return };
        let promises: Vec<Promise> = std::mem::take(&mut rejoin.promises)
            .into_iter()
            .filter(|(id, _)| valid.contains(id))
            .map(|(_, p)| p)
            .collect();
        let learn_through = promises.iter().map(|p| p.commit_index).max().unwrap_or(0);
        rejoin.learn_through = Some(learn_through);
        rejoin.promisers = valid.clone();
        let mut highest: BTreeMap<Slot, Vote> = BTreeMap::new();
        for p in promises {
            for (slot, entry) in p.decided {
                if slot >= self.commit_index {
                    self.learn_decided(slot, entry);
                }
            }
            for v in p.votes.into_iter().filter(|v| v.slot >= learn_through) {
                if highest.get(&v.slot).is_none_or(|h| v.ballot > h.ballot) {
                    highest.insert(v.slot, v);
                }
            }
        }
        for v in highest.into_values() {
            if v.slot < self.log_start || self.log.get(&v.slot).is_some_and(|s| s.decided) {
                continue;
            }
            self.persist(Record::Accepted { slot: v.slot, ballot: v.ballot, entry: v.entry.clone() });
            self.log.insert(v.slot, SlotState { vote: Some(v.ballot), entry: v.entry, decided: false });
        }
        self.promised = self.promised.max(ballot);
        self.persist(Record::Promised { ballot });
        self.known_commit = self.known_commit.max(learn_through);
        self.advance_commit();
    }

    /// A rejoin attempt refused: try again later, above the ballot we heard.
    pub(super) fn on_rejoin_nack(&mut self, ballot: Ballot) {
        let (now, base) = (self.now, self.cfg.timing.backoff_base);
        let jitter = self.rng.between(0, base);
        let Voting::Recovering(rejoin) = &mut self.voting else { return };
        if rejoin.ballot == Some(ballot) && rejoin.learn_through.is_none() {
            rejoin.ballot = None;
            rejoin.promises.clear();
            rejoin.not_before = now + base + jitter;
        }
    }

    /// The promisers whose promise may count: the promise names the
    /// incarnation this node recorded for its sender, and no other promise
    /// names another one. A promise from before its sender lost its data
    /// is contradicted by any promise from an acceptor that took part in
    /// the sender's rejoin.
    pub(super) fn valid_promisers(&self, promises: &BTreeMap<NodeId, Promise>) -> BTreeSet<NodeId> {
        promises
            .iter()
            .filter(|(id, p)| {
                if **id == self.id() {
                    return p.incarnation == self.incarnation;
                }
                let recorded = self.seen.get(id).is_some_and(|(incarnation, _)| *incarnation == p.incarnation);
                let contradicted =
                    promises.values().any(|q| q.known.iter().any(|(n, i)| n == *id && *i != p.incarnation));
                recorded && !contradicted
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// What goes into every promise about incarnations.
    pub(super) fn known_incarnations(&self) -> Vec<(NodeId, u64)> {
        self.seen.iter().map(|(node, (incarnation, _))| (*node, *incarnation)).collect()
    }
}
