//! Scenarios, one per test, each named by what it shows: the real consensus
//! core over the simulated network (`paxos::sim::Cluster`), with every
//! safety check of the simulation running after every step.
//!
//! Bounds are in ticks of `sim_timing()` (heartbeat 2, election timeout
//! 12..24, backoff base 2 capped at 32 plus as much jitter, retransmit 6) and
//! the stable network's delay of 1..2 ticks. No test sleeps or measures time.

use paxos::consensus::ballot::{Ballot, NodeId};
use paxos::consensus::config::{ConfigError, Roles, Tuning};
use paxos::consensus::messages::{Accept, Envelope, Message, NackReason, Prepare, TimeoutNow};
use paxos::consensus::quorum::QuorumError;
use paxos::consensus::records::Record;
use paxos::consensus::{ClientError, Response};
use paxos::sim::network::LinkFaults;
use paxos::sim::{Cluster, sim_timing};
use paxos::state_machine::{Command, Entry, Op, OpResult};

/// Most ticks a message takes on the stable network.
const MAX_DELAY: u64 = LinkFaults::STABLE.max_delay;

/// A round trip on the stable network.
fn round_trip() -> u64 {
    2 * MAX_DELAY
}

/// Ticks within which a cluster with no leader elects one on a stable
/// network: the longest election timeout, then up to three campaigns that
/// collide (each gives up after `retransmit` and backs off at most
/// `backoff_cap` plus as much jitter), then one that wins: a probe round trip
/// and a prepare round trip.
fn election_bound() -> u64 {
    let t = sim_timing();
    t.election_max + 3 * (t.retransmit + 2 * t.backoff_cap) + 2 * round_trip()
}

/// Ticks within which a command reaches a leader and is applied: forwarding
/// to the leader, an accept round trip, and the commit reaching the origin,
/// plus a client retry in case a step raced a leader change.
fn commit_bound() -> u64 {
    let t = sim_timing();
    4 * round_trip() + t.client_retry + t.heartbeat
}

fn put(key: &str, value: &str) -> Op {
    Op::Put { key: key.into(), value: value.into() }
}

fn applied(outcome: Result<Response, ClientError>) -> (u64, OpResult) {
    match outcome {
        Ok(Response::Applied { slot, result }) => (slot, result),
        other => panic!("expected an applied command, got {other:?}"),
    }
}

fn value_of(outcome: Result<Response, ClientError>) -> (Option<String>, u64) {
    match outcome {
        Ok(Response::Value { value, index }) => (value, index),
        other => panic!("expected a value, got {other:?}"),
    }
}

fn ballot_of(msg: &Message) -> Ballot {
    match msg {
        Message::Prepare(m) => m.ballot,
        Message::Promise(m) => m.ballot,
        Message::Accept(m) => m.ballot,
        Message::Accepted(m) => m.ballot,
        Message::Nack(m) => m.ballot,
        Message::Heartbeat(m) => m.ballot,
        other => panic!("{} carries no ballot of its own", other.kind()),
    }
}

fn elected(cluster: &mut Cluster) -> NodeId {
    cluster.elect(election_bound()).unwrap_or_else(|e| panic!("no leader: {e}"))
}

fn followers(cluster: &Cluster, leader: NodeId) -> Vec<NodeId> {
    cluster.ids().into_iter().filter(|id| *id != leader).collect()
}

/// Submit and wait for the answer.
fn commit(cluster: &mut Cluster, node: NodeId, op: Op) -> (u64, OpResult) {
    let request = cluster.submit(node, op);
    applied(cluster.await_reply(request, commit_bound()).unwrap())
}

#[test]
fn a_proposer_with_no_leader_campaigns_and_wins() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, seed);
        assert!(cluster.leaders().is_empty(), "seed {seed}: a leader at tick 0");
        assert!(cluster.ids().iter().all(|id| cluster.replica(*id).leader().is_none()));

        let leader = elected(&mut cluster);
        let ballot = cluster.status(leader).ballot;
        assert!(ballot > Ballot::ZERO, "seed {seed}: leader {leader} leads with ballot {ballot}");
        assert_eq!(ballot.node, leader, "a ballot names the proposer that chose it");
        assert!(cluster.status(leader).elections_started >= 1);
        // Phase 1 ran: the prepare reached the acceptors and a quorum of
        // promises for exactly this ballot came back.
        let mut promised_by = Vec::new();
        for acceptor in cluster.ids() {
            let prepares = cluster.delivered("prepare", leader, acceptor);
            assert!(prepares.iter().any(|p| ballot_of(p) == ballot), "seed {seed}: no prepare to {acceptor}");
            if cluster.delivered("promise", acceptor, leader).iter().any(|p| ballot_of(p) == ballot) {
                promised_by.push(acceptor);
                assert_eq!(cluster.status(acceptor).promised, ballot, "seed {seed}: acceptor {acceptor}");
            }
            // No acceptor promised anyone above the leader. (An acceptor that
            // refused the prepare because it was itself leading at a lower
            // ballot then follows the winner's heartbeats without promising
            // its ballot, until the first accept raises its promise.)
            assert!(cluster.status(acceptor).promised <= ballot, "seed {seed}: acceptor {acceptor}");
        }
        assert!(promised_by.len() >= 2, "seed {seed}: promises for {ballot} only from {promised_by:?}");
    }
}

/// Let the members of a new cluster introduce themselves and all become
/// voters (genesis), before any election is due.
fn introduce(cluster: &mut Cluster, seed: u64) {
    cluster
        .run_until(50, |c| c.ids().iter().all(|id| c.status(*id).voting == "voter"))
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
}

#[test]
fn an_election_between_three_proposers_ends_with_exactly_one_leader() {
    // At the very same tick: every proposer is told to campaign at once
    // (the message of a planned transfer, which also waives stickiness).
    for seed in 0..50 {
        let mut cluster = Cluster::new(3, seed);
        introduce(&mut cluster, seed);
        assert_eq!(cluster.leaders(), Vec::<u64>::new(), "seed {seed}");
        for id in cluster.ids() {
            let other = id % 3 + 1;
            cluster.deliver(Envelope {
                from: other,
                to: id,
                msg: Message::TimeoutNow(TimeoutNow { ballot: Ballot::new(0, other) }),
            });
        }
        for id in cluster.ids() {
            assert_eq!(cluster.status(id).role, "candidate", "seed {seed}: node {id} is not campaigning");
        }
        let leader = elected(&mut cluster);
        assert_eq!(cluster.leaders(), vec![leader]);
        let ballot = cluster.status(leader).ballot;
        for id in followers(&cluster, leader) {
            assert_eq!(cluster.replica(id).leader(), Some(leader), "seed {seed}");
            assert_eq!(cluster.status(id).ballot, ballot, "seed {seed}: node {id} follows another ballot");
        }
    }
    // After a partition in which every node kept timing out on its own.
    for seed in 0..50 {
        let mut cluster = Cluster::new(3, seed);
        introduce(&mut cluster, seed);
        for id in cluster.ids() {
            cluster.isolate(id);
        }
        let t = sim_timing();
        // Every node campaigns at least twice: two election timeouts and backoffs.
        cluster
            .run_until(4 * (t.election_max + 2 * t.backoff_cap), |c| {
                c.ids().iter().all(|id| c.status(*id).elections_started >= 2)
            })
            .unwrap();
        assert!(cluster.leaders().is_empty(), "seed {seed}: a leader without a quorum");
        cluster.heal();
        let leader = elected(&mut cluster);
        assert_eq!(cluster.leaders(), vec![leader]);
        for id in followers(&cluster, leader) {
            assert_eq!(cluster.replica(id).leader(), Some(leader), "seed {seed}");
        }
    }
}

#[test]
fn the_leader_knows_it_leads_and_does_not_campaign() {
    let t = sim_timing();
    for seed in 0..10 {
        let mut cluster = Cluster::new(5, seed);
        let leader = elected(&mut cluster);
        let ballot = cluster.status(leader).ballot;
        let started: Vec<u64> = cluster.ids().iter().map(|id| cluster.status(*id).elections_started).collect();
        // Fifty heartbeat intervals: several times the longest election timeout.
        for _ in 0..50 * t.heartbeat {
            cluster.tick();
            assert_eq!(cluster.leaders(), vec![leader], "seed {seed} tick {}", cluster.now());
            assert!(cluster.replica(leader).is_leader());
            assert_eq!(cluster.replica(leader).leader(), Some(leader));
        }
        assert_eq!(cluster.status(leader).ballot, ballot, "seed {seed}: the leader changed its ballot");
        let after: Vec<u64> = cluster.ids().iter().map(|id| cluster.status(*id).elections_started).collect();
        assert_eq!(after, started, "seed {seed}: someone campaigned under a healthy leader");
        // Nobody's campaign got a promise: nobody promised above the leader.
        assert!(cluster.ids().iter().all(|id| cluster.status(*id).promised <= ballot), "seed {seed}");
    }
}

#[test]
fn a_client_request_sent_to_a_follower_reaches_the_leader() {
    let mut cluster = Cluster::new(3, 7);
    let leader = elected(&mut cluster);
    let follower = followers(&cluster, leader)[0];
    cluster.clear_messages();

    let request = cluster.submit(follower, put("colour", "blue"));
    let (slot, result) = applied(cluster.await_reply(request, commit_bound()).unwrap());
    assert_eq!(result, OpResult::Put { previous: None });

    let forwarded = cluster.delivered("forward", follower, leader);
    let carried = forwarded.iter().any(|m| match m {
        Message::Forward(f) => f.commands.iter().any(|c| c.op == put("colour", "blue")),
        _ => false,
    });
    assert!(carried, "no Forward with the command reached the leader: {forwarded:?}");
    // The leader proposed it (the follower never proposes) and every node
    // applied it in that slot (a node other than the one answering may learn
    // the decision a tick later: wait for every node).
    assert!(cluster.sent("accept", follower, leader).is_empty());
    cluster.run_until(commit_bound(), |c| c.converged().is_ok()).unwrap();
    for id in cluster.ids() {
        let entry = cluster.replica(id).decided(slot);
        assert!(entry.is_some_and(|e| e.commands().iter().any(|c| c.op == put("colour", "blue"))), "node {id}");
    }
    for id in cluster.ids() {
        assert_eq!(cluster.replica(id).store().get("colour").map(String::as_str), Some("blue"));
    }
}

#[test]
fn commands_that_arrive_together_at_a_follower_travel_in_one_forward_and_share_a_slot() {
    // The daemon's batch budgets (the simulation's bind at two commands).
    let mut cluster = Cluster::builder(7).full_nodes(3).tuning(Tuning::default()).build().unwrap();
    let leader = elected(&mut cluster);
    let follower = followers(&cluster, leader)[0];
    cluster.clear_messages();

    let ops: Vec<Op> = (0..5).map(|i| put(&format!("k{i}"), "v")).collect();
    let requests = cluster.submit_together(follower, ops);
    assert_eq!(cluster.sent("forward", follower, leader).len(), 1, "{:?}", cluster.messages());
    let slots: Vec<u64> =
        requests.iter().map(|r| applied(cluster.await_reply(*r, commit_bound()).unwrap()).0).collect();
    assert!(slots.iter().all(|s| *s == slots[0]), "slots {slots:?}");
    let accepts = cluster.sent("accept", leader, follower);
    assert_eq!(accepts.len(), 1, "{accepts:?}");
}

#[test]
fn reads_that_arrive_together_share_one_confirmation_round_and_one_read_index() {
    let mut cluster = Cluster::new(3, 7);
    let leader = elected(&mut cluster);
    commit(&mut cluster, leader, put("k", "v"));
    cluster.clear_messages();

    let requests = cluster.read_together(leader, &["k"; 10]);
    for follower in followers(&cluster, leader) {
        let beats = cluster.sent("heartbeat", leader, follower);
        assert_eq!(beats.len(), 1, "to node {follower}: {beats:?}");
    }
    for request in requests {
        assert_eq!(value_of(cluster.await_reply(request, commit_bound()).unwrap()).0.as_deref(), Some("v"));
    }

    // At a follower: one ReadIndex for all of them, one answer back.
    let follower = followers(&cluster, leader)[0];
    cluster.clear_messages();
    let requests = cluster.read_together(follower, &["k"; 10]);
    for request in requests {
        assert_eq!(value_of(cluster.await_reply(request, commit_bound()).unwrap()).0.as_deref(), Some("v"));
    }
    let asked = cluster.sent("read_index", follower, leader);
    assert!(matches!(asked.as_slice(), [Message::ReadIndex(r)] if r.ids().count() == 10), "{asked:?}");
    let answered = cluster.sent("read_index_reply", leader, follower);
    assert!(matches!(answered.as_slice(), [Message::ReadIndexReply(r)] if r.ids().count() == 10), "{answered:?}");
}

#[test]
fn acceptors_receive_prepares_and_accepts_from_the_proposer() {
    // One node only proposes; three only accept: every Paxos message crosses the network.
    let acceptor_only = Roles { proposer: false, acceptor: true, learner: true };
    let proposer_only = Roles { proposer: true, acceptor: false, learner: true };
    let mut cluster = Cluster::builder(3)
        .node(1, proposer_only)
        .node(2, acceptor_only)
        .node(3, acceptor_only)
        .node(4, acceptor_only)
        .build()
        .unwrap();
    let leader = elected(&mut cluster);
    assert_eq!(leader, 1);
    let ballot = cluster.status(leader).ballot;
    let (slot, _) = commit(&mut cluster, 1, put("k", "v"));
    // A quorum of two chose the value; the third vote may still be on its way.
    let voted = |c: &Cluster, a: NodeId| {
        c.delivered("accepted", a, 1).iter().any(|m| matches!(m, Message::Accepted(v) if v.slot == slot))
    };
    cluster.run_until(commit_bound(), |c| (2..=4).all(|a| voted(c, a))).unwrap();

    for acceptor in 2..=4 {
        let prepares = cluster.delivered("prepare", 1, acceptor);
        assert!(prepares.iter().any(|m| ballot_of(m) == ballot), "acceptor {acceptor} got no prepare for {ballot}");
        let accepts = cluster.delivered("accept", 1, acceptor);
        let for_slot = accepts.iter().any(|m| matches!(m, Message::Accept(a) if a.ballot == ballot && a.slot == slot));
        assert!(for_slot, "acceptor {acceptor} got no accept for slot {slot}");
        assert!(!cluster.delivered("promise", acceptor, 1).is_empty(), "acceptor {acceptor} never promised");
        assert!(!cluster.delivered("accepted", acceptor, 1).is_empty(), "acceptor {acceptor} never voted");
        assert_eq!(cluster.status(acceptor).promised, ballot);
        // Acceptors without the proposer role never start phase 1 themselves.
        for other in 1..=4 {
            assert!(cluster.sent("prepare", acceptor, other).is_empty());
        }
    }
    // The proposer is no acceptor: nobody asked it for a promise or a vote.
    for acceptor in 2..=4 {
        assert!(cluster.sent("prepare", acceptor, 1).is_empty() && cluster.sent("accept", acceptor, 1).is_empty());
    }
    assert_eq!(cluster.status(1).promised, Ballot::ZERO, "a pure proposer promises nothing");
}

#[test]
fn acceptors_votes_reach_the_learners() {
    // Votes (Accepted) go to the leader, the distinguished learner of Paxos
    // Made Simple §2.4, which counts them and relays the chosen values to
    // learners that vote on nothing (Decided) and to acceptors (the commit
    // index on heartbeats and accepts).
    let mut cluster =
        Cluster::builder(11).full_nodes(3).node(4, Roles::LEARNER).node(5, Roles::LEARNER).build().unwrap();
    let leader = elected(&mut cluster);
    let mut slots = Vec::new();
    for i in 0..12 {
        let node = [4, 5, leader][i % 3];
        slots.push(commit(&mut cluster, node, put(&format!("k{i}"), &format!("v{i}"))).0);
    }
    cluster.run_until(commit_bound(), |c| c.converged().is_ok()).unwrap();

    for acceptor in 1..=3 {
        if acceptor != leader {
            assert!(!cluster.delivered("accepted", acceptor, leader).is_empty(), "no vote from {acceptor}");
        }
    }
    for learner in [4, 5] {
        assert!(!cluster.delivered("decided", leader, learner).is_empty(), "no decision reached learner {learner}");
        for node in 1..=5 {
            assert!(cluster.delivered("accept", node, learner).is_empty(), "learner {learner} was asked to vote");
            assert!(cluster.sent("accepted", learner, node).is_empty(), "learner {learner} voted");
        }
        // The same entries in the same slots as the leader, none skipped.
        assert_eq!(cluster.applied(learner), cluster.applied(leader), "learner {learner}");
        assert_eq!(cluster.replica(learner).store(), cluster.replica(leader).store());
    }
    for slot in slots {
        assert!(cluster.applied(4).iter().any(|a| a.slot == slot));
    }
}

#[test]
fn a_killed_leader_is_replaced() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(5, seed);
        let old = elected(&mut cluster);
        let old_ballot = cluster.status(old).ballot;
        let (before, _) = commit(&mut cluster, old, put("before", "crash"));

        cluster.crash(old);
        // The survivors notice within an election timeout (no heartbeats),
        // then elect among themselves.
        let new = elected(&mut cluster);
        assert_ne!(new, old, "seed {seed}");
        let new_ballot = cluster.status(new).ballot;
        assert!(new_ballot > old_ballot, "seed {seed}: {new_ballot} is not above {old_ballot}");

        let survivor = cluster.up().into_iter().find(|id| *id != new).unwrap();
        let (after, _) = commit(&mut cluster, survivor, put("after", "crash"));
        assert!(after > before);
        for id in cluster.up() {
            cluster.run_until(commit_bound(), |c| c.replica(id).applied_index() > after).unwrap();
            let store = cluster.replica(id).store();
            assert_eq!(store.get("before").map(String::as_str), Some("crash"), "seed {seed}: node {id}");
            assert_eq!(store.get("after").map(String::as_str), Some("crash"), "seed {seed}: node {id}");
        }
    }
}

#[test]
fn a_restarted_acceptor_keeps_its_promises() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, seed);
        let old_leader = elected(&mut cluster);
        let old_ballot = cluster.status(old_leader).ballot;
        commit(&mut cluster, old_leader, put("k", "v"));
        let target = followers(&cluster, old_leader)[0];
        let acceptor = cluster.ids().into_iter().find(|id| *id != old_leader && *id != target).unwrap();

        // A new leadership: crash the acceptor the very tick it promised the
        // new ballot, before it voted in it, so only its Promised record
        // stands for that promise.
        let request = cluster.transfer(old_leader, Some(target));
        cluster.run_until(election_bound(), |c| c.status(acceptor).promised > old_ballot).unwrap();
        let promised = cluster.status(acceptor).promised;
        let sent = cluster.sent("promise", acceptor, target);
        assert!(sent.iter().any(|m| ballot_of(m) == promised), "seed {seed}: no promise for {promised} left");
        let voted_in_new = |c: &Cluster| {
            let s = c.storage(acceptor);
            s.durable_records().iter().any(|r| matches!(r, Record::Accepted { ballot, .. } if *ballot == promised))
        };
        assert!(!voted_in_new(&cluster), "seed {seed}: already voted at {promised}");
        cluster.crash(acceptor);
        cluster.restart(acceptor);
        assert_eq!(cluster.status(acceptor).promised, promised, "seed {seed}: the promise was forgotten");

        // The old leader's late prepare and accept, at the ballot this
        // acceptor voted in before, straight to it.
        cluster.clear_messages();
        let storage = cluster.storage(acceptor);
        let records_before = storage.durable_records().len() + storage.unsynced_records().len();
        let prepare = Prepare { ballot: old_ballot, first_slot: 0, transfer: true, rejoin: false };
        cluster.deliver(Envelope { from: old_leader, to: acceptor, msg: Message::Prepare(prepare) });
        let accept = Accept { ballot: old_ballot, slot: 1000, entry: Entry::Noop, commit_index: 0 };
        cluster.deliver(Envelope { from: old_leader, to: acceptor, msg: Message::Accept(accept) });

        let nacks = cluster.sent("nack", acceptor, old_leader);
        assert_eq!(nacks.len(), 2, "seed {seed}: expected a nack for the prepare and the accept: {nacks:?}");
        for nack in nacks {
            let Message::Nack(n) = nack else { unreachable!() };
            assert_eq!((n.ballot, n.promised, n.reason), (old_ballot, promised, NackReason::Preempted));
        }
        assert!(cluster.sent("promise", acceptor, old_leader).is_empty(), "seed {seed}: promised {old_ballot}");
        assert!(cluster.sent("accepted", acceptor, old_leader).is_empty(), "seed {seed}: voted at {old_ballot}");
        assert_eq!(cluster.status(acceptor).promised, promised);
        // Nothing was stored for them: no promise, no vote.
        let storage = cluster.storage(acceptor);
        let records: Vec<_> = storage.durable_records().iter().chain(storage.unsynced_records()).collect();
        assert_eq!(records.len(), records_before, "seed {seed}: stored {:?}", &records[records_before..]);
        assert!(!records.iter().any(|r| matches!(r, Record::Accepted { slot: 1000, .. })));

        // The transfer completes and the restarted acceptor serves the new leader.
        assert_eq!(cluster.await_reply(request, election_bound()).unwrap(), Ok(Response::Transferred { to: target }));
        assert_eq!(cluster.elect(election_bound()).unwrap(), target, "seed {seed}");
        commit(&mut cluster, acceptor, put("k", "w"));
        assert!(voted_in_new(&cluster) || cluster.status(target).ballot > promised, "seed {seed}");
        cluster.run_until(commit_bound(), |c| c.converged().is_ok()).unwrap();
    }
}

#[test]
fn a_restarted_replica_recovers_every_earlier_decision() {
    // Snapshots every 10 slots, 3 kept behind: 43 commands cross four of them
    // and leave decisions after the last one. The store's image (a few KB)
    // goes over in 1 KB chunks, one round trip each.
    let tuning = paxos::consensus::config::Tuning {
        snapshot_interval: 10,
        log_retain: 3,
        snapshot_chunk_bytes: 1024,
        ..paxos::sim::sim_tuning()
    };
    let mut cluster = Cluster::builder(5).full_nodes(3).tuning(tuning).build().unwrap();
    let leader = elected(&mut cluster);
    let node = followers(&cluster, leader)[0];
    for i in 0..43 {
        commit(&mut cluster, [leader, node][i % 2], put(&format!("k{i}"), &format!("v{i}")));
    }
    cluster.run_until(commit_bound(), |c| c.converged().is_ok()).unwrap();
    let before = cluster.status(node);
    assert!(before.snapshot_through >= 40, "no snapshot was taken: {before:?}");
    assert!(before.commit_index > before.snapshot_through, "nothing decided after the snapshot: {before:?}");
    let store = cluster.replica(node).store().clone();
    let decided: Vec<_> =
        (before.snapshot_through..before.commit_index).map(|s| cluster.replica(node).decided(s).cloned()).collect();
    assert!(decided.iter().all(Option::is_some));

    cluster.crash(node);
    cluster.restart(node);
    // Before any message: the snapshot holds every decision below it, the
    // log every one after it that its commit markers cover (the in-memory
    // tail kept behind a snapshot for peers' catch-up is not reloaded:
    // storage compacted it). A batch of commit markers alone is not synced
    // (it rides on the next vote's fsync), so the last markers may be lost;
    // the votes are not, and the leader's next heartbeat says the rest.
    let after = cluster.status(node);
    assert_eq!(after.snapshot_through, before.snapshot_through);
    assert_eq!(after.applied_index, after.commit_index);
    assert!(
        (before.commit_index - 2..=before.commit_index).contains(&after.commit_index),
        "lost more than the last markers: {after:?} after {before:?}"
    );
    let recovered: Vec<_> =
        (after.snapshot_through..after.commit_index).map(|s| cluster.replica(node).decided(s).cloned()).collect();
    assert_eq!(recovered, decided[..recovered.len()]);
    for (i, entry) in cluster.applied(node).iter().enumerate() {
        assert_eq!(entry.slot, i as u64, "the first life applied every slot in order");
    }
    cluster.run_until(commit_bound(), |c| c.status(node).applied_index == before.applied_index).unwrap();
    assert_eq!(*cluster.replica(node).store(), store);
    let relearned = cluster.status(node).commit_index;

    // Down again while the others move on past another snapshot.
    cluster.crash(node);
    let mut last = 0;
    for i in 40..65 {
        last = commit(&mut cluster, leader, put(&format!("k{i}"), &format!("v{i}"))).0;
    }
    assert!(cluster.status(leader).snapshot_through > before.commit_index);
    cluster.restart(node);
    let stored = cluster.status(node).commit_index;
    assert!((after.commit_index..=relearned).contains(&stored), "it cannot know more than it stored: {stored}");
    cluster.run_until(4 * commit_bound(), |c| c.converged().is_ok_and(|s| s > last)).unwrap();
    assert_eq!(cluster.replica(node).store(), cluster.replica(leader).store());
    assert_eq!(cluster.replica(node).store().get("k64").map(String::as_str), Some("v64"));
}

#[test]
fn a_cut_off_node_that_reconnects_does_not_depose_a_healthy_leader() {
    let t = sim_timing();
    for seed in 0..20 {
        let mut cluster = Cluster::new(5, seed);
        let leader = elected(&mut cluster);
        let ballot = cluster.status(leader).ballot;
        let cut = followers(&cluster, leader)[seed as usize % 4];
        let others = followers(&cluster, cut);
        let started = cluster.status(cut).elections_started;
        let steady = |cluster: &Cluster, phase: &str| {
            assert_eq!(cluster.leaders(), vec![leader], "seed {seed}, {phase}: leadership moved");
            assert_eq!(cluster.status(leader).ballot, ballot, "seed {seed}, {phase}: the leader's ballot changed");
            for id in &others {
                assert!(cluster.status(*id).promised <= ballot, "seed {seed}, {phase}: node {id} promised higher");
            }
        };

        // Cut off for ten election timeouts: it campaigns again and again,
        // each time a round higher, and nobody hears it.
        cluster.isolate(cut);
        for _ in 0..10 * t.election_max {
            cluster.tick();
            steady(&cluster, "while cut off");
        }
        let campaigns = cluster.status(cut).elections_started - started;
        assert!(campaigns >= 3, "seed {seed}: the cut-off node campaigned {campaigns} times");

        // Its outgoing links come back first: its campaigns reach the
        // others, who hear from a live leader and refuse them.
        cluster.heal();
        for id in &others {
            cluster.block(*id, cut);
        }
        cluster.clear_messages();
        for _ in 0..5 * t.election_max {
            cluster.tick();
            steady(&cluster, "half reconnected");
        }
        for id in &others {
            let probes = cluster.delivered("probe", cut, *id).len() + cluster.delivered("prepare", cut, *id).len();
            assert!(probes > 0, "seed {seed}: no campaign message of node {cut} reached {id}");
            for reply in cluster.sent("probe_reply", *id, cut) {
                assert!(matches!(reply, Message::ProbeReply(r) if !r.granted), "seed {seed}: {id} granted {cut}");
            }
        }

        // Fully back: it follows the leader it could not depose.
        cluster.heal();
        for _ in 0..5 * t.election_max {
            cluster.tick();
            steady(&cluster, "healed");
        }
        assert_eq!(cluster.replica(cut).leader(), Some(leader), "seed {seed}: the node rejoined no one");
        commit(&mut cluster, cut, put("back", "yes"));
    }
}

#[test]
fn a_leader_that_cannot_reach_a_quorum_steps_down() {
    let t = sim_timing();
    for seed in 0..20 {
        let mut cluster = Cluster::new(5, seed);
        let old = elected(&mut cluster);
        let old_ballot = cluster.status(old).ballot;
        let commit_before = cluster.status(old).commit_index;
        cluster.isolate(old);
        let stranded = cluster.submit(old, put("lost", "leader"));

        // Check-quorum: acks older than election_min no longer count, and
        // the check runs every tick; allow a heartbeat and a delivery more.
        let bound = 2 * t.election_min + t.heartbeat + MAX_DELAY;
        cluster.run_until(bound, |c| !c.replica(old).is_leader()).unwrap();
        assert_eq!(cluster.status(old).commit_index, commit_before, "seed {seed}: committed without a quorum");
        assert!(cluster.reply(stranded).is_none());

        // The majority side elects someone else, with a higher ballot.
        let majority = followers(&cluster, old);
        cluster
            .run_until(election_bound(), |c| c.agreed_leader_among(&majority).is_some())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let new = cluster.agreed_leader_among(&majority).unwrap();
        assert!(cluster.status(new).ballot > old_ballot);
        assert!(!cluster.replica(old).is_leader(), "seed {seed}: two leaders");
        cluster.heal();
        // The old leader rejoins as a follower of the new one.
        assert_eq!(cluster.elect(election_bound()).unwrap(), new, "seed {seed}");
        // The command waiting at the old leader goes through the new one.
        let (_, result) = applied(cluster.await_reply(stranded, commit_bound()).unwrap());
        assert_eq!(result, OpResult::Put { previous: None });
    }
}

#[test]
fn planned_transfer_moves_leadership_to_the_named_node() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, seed);
        let leader = elected(&mut cluster);
        let ballot = cluster.status(leader).ballot;
        let target = followers(&cluster, leader)[seed as usize % 2];

        let refused = cluster.transfer(target, Some(leader));
        assert_eq!(cluster.reply(refused), Some(&Err(ClientError::NotLeader { leader: Some(leader) })));

        let request = cluster.transfer(leader, Some(target));
        let outcome = cluster.await_reply(request, election_bound()).unwrap();
        assert_eq!(outcome, Ok(Response::Transferred { to: target }), "seed {seed}");
        assert_eq!(cluster.elect(election_bound()).unwrap(), target, "seed {seed}");
        assert!(cluster.status(target).ballot > ballot);
        commit(&mut cluster, leader, put("after", "transfer"));
        assert_eq!(cluster.leaders(), vec![target]);
    }
    // Only a proposer can lead.
    let acceptor_only = Roles { proposer: false, acceptor: true, learner: true };
    let mut cluster = Cluster::builder(1).full_nodes(2).node(3, acceptor_only).build().unwrap();
    let leader = elected(&mut cluster);
    let request = cluster.transfer(leader, Some(3));
    assert!(matches!(cluster.reply(request), Some(Err(ClientError::BadTarget(_)))));
    assert_eq!(cluster.leaders(), vec![leader]);
}

#[test]
fn duelling_proposers_back_off_and_elect_a_leader() {
    // Five proposers whose timers all fire within 12..24 ticks of a cold
    // start, on a network that loses a fifth of the messages.
    let lossy = LinkFaults { loss: 0.2, duplicate: 0.05, max_delay: 3 };
    let t = sim_timing();
    // With loss a campaign may fail for want of replies, not only by
    // collision: allow eight failed campaigns at the backoff cap, each
    // giving up after `retransmit`, after the first timeout, plus the
    // heartbeats that must reach every follower.
    let bound = t.election_max + 8 * (t.retransmit + 2 * t.backoff_cap) + 10 * t.heartbeat;
    let mut duels = 0;
    for seed in 0..200 {
        let mut cluster = Cluster::builder(seed).full_nodes(5).faults(lossy).build().unwrap();
        let leader = cluster.elect(bound).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let campaigners = cluster.ids().into_iter().filter(|id| cluster.status(*id).elections_started > 0).count();
        if campaigners >= 2 {
            duels += 1;
        }
        assert_eq!(cluster.leaders(), vec![leader]);
        assert!(cluster.status(leader).ballot > Ballot::ZERO);
    }
    assert!(duels >= 50, "only {duels} of 200 seeds had two proposers campaigning");
}

#[test]
fn a_follower_read_is_linearizable_after_a_write_elsewhere() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, seed);
        let leader = elected(&mut cluster);
        let reader = followers(&cluster, leader)[0];

        // Written at the leader; the leader answers as soon as the value is
        // chosen, while the commit is still on its way to the followers.
        let (slot, _) = commit(&mut cluster, leader, put("x", "1"));
        let stale = cluster.read(reader, "x", false);
        let (value, index) = value_of(cluster.reply(stale).cloned().unwrap());
        assert!(index <= slot, "seed {seed}: the follower already applied slot {slot}?");
        assert_eq!(value, None, "seed {seed}: a stale read lags here");

        let fresh = cluster.read(reader, "x", true);
        let (value, index) = value_of(cluster.await_reply(fresh, commit_bound()).unwrap());
        assert_eq!(value.as_deref(), Some("1"), "seed {seed}");
        assert!(index > slot);

        // Written at one follower, read at another.
        let others = followers(&cluster, leader);
        commit(&mut cluster, others[0], put("x", "2"));
        let fresh = cluster.read(others[1], "x", true);
        let (value, _) = value_of(cluster.await_reply(fresh, commit_bound()).unwrap());
        assert_eq!(value.as_deref(), Some("2"), "seed {seed}");
    }
}

#[test]
fn a_retried_command_is_applied_once() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, seed);
        let leader = elected(&mut cluster);
        let [a, b] = followers(&cluster, leader)[..] else { unreachable!() };
        let command = Command { client: 42, seq: 1, op: Op::Propose { value: "once".into() } };

        // The client gave up on `a` and retried at `b`, and also at the leader.
        let first = cluster.submit_command(a, command.clone());
        let second = cluster.submit_command(b, command.clone());
        let third = cluster.submit_command(leader, command.clone());
        let first = applied(cluster.await_reply(first, commit_bound()).unwrap());
        let second = applied(cluster.await_reply(second, commit_bound()).unwrap());
        let third = applied(cluster.await_reply(third, commit_bound()).unwrap());
        assert_eq!(first, second, "seed {seed}");
        assert_eq!(first, third, "seed {seed}");
        // A retry after the answer is answered from the session table.
        let late = cluster.submit_command(a, command.clone());
        assert_eq!(applied(cluster.reply(late).cloned().unwrap()), first);

        cluster.run_until(commit_bound(), |c| c.converged().is_ok()).unwrap();
        for id in cluster.ids() {
            assert_eq!(cluster.replica(id).store().proposals(), 1, "seed {seed}: node {id} applied it twice");
        }
    }

    // Across a leader crash the command can be chosen twice: the new leader
    // re-proposes the dead leader's slot from the promises, and the node the
    // client is waiting on forwards it again to the new leader. The session
    // table must then apply the second copy as a no-op.
    let mut twice = 0;
    for seed in 0..20 {
        let mut cluster = Cluster::new(5, seed);
        let leader = elected(&mut cluster);
        let origin = followers(&cluster, leader)[0];
        let command = Command { client: 42, seq: 1, op: Op::Propose { value: "once".into() } };
        let first = cluster.submit_command(origin, command.clone());
        // Crash the leader once every acceptor voted for the command, before
        // any of them hears that it was chosen.
        let voted = |c: &Cluster, id: NodeId| {
            c.storage(id)
                .durable_records()
                .iter()
                .any(|r| matches!(r, Record::Accepted { entry, .. } if entry.commands().contains(&command)))
        };
        cluster.run_until(commit_bound(), |c| c.ids().iter().all(|id| voted(c, *id))).unwrap();
        cluster.crash(leader);
        let retry = cluster.submit_command(followers(&cluster, leader)[1], command.clone());
        let first = applied(cluster.await_reply(first, election_bound() + commit_bound()).unwrap());
        let retry = applied(cluster.await_reply(retry, commit_bound()).unwrap());
        assert_eq!(first, retry, "seed {seed}");
        cluster.restart(leader);
        cluster.run_until(election_bound(), |c| c.converged().is_ok()).unwrap();
        let copies = cluster.applied(origin).iter().filter(|a| a.entry.commands().contains(&command)).count();
        if copies > 1 {
            twice += 1;
        }
        for id in cluster.ids() {
            assert_eq!(cluster.replica(id).store().proposals(), 1, "seed {seed}: node {id} applied it twice");
        }
    }
    assert!(twice > 0, "no seed chose the command twice; the scenario lost its point");
}

#[test]
fn flexible_quorums_that_do_not_intersect_are_refused_at_start() {
    let refused = Cluster::builder(1).full_nodes(5).quorums(2, 3).build().err();
    assert_eq!(refused, Some(ConfigError::Quorum(QuorumError::NoIntersection { phase1: 2, phase2: 3, acceptors: 5 })));
    let message = refused.unwrap().to_string();
    assert!(message.contains("must exceed the 5 acceptors"), "{message}");
    assert!(Cluster::builder(1).full_nodes(4).quorums(2, 2).build().is_err());

    // Quorums that intersect start, and a phase-2 quorum of 2 out of 5
    // keeps committing with three acceptors down.
    let mut cluster = Cluster::builder(1).full_nodes(5).quorums(4, 2).build().unwrap();
    let leader = elected(&mut cluster);
    let others = followers(&cluster, leader);
    for id in &others[..3] {
        cluster.crash(*id);
    }
    let (_, result) = commit(&mut cluster, leader, put("flexible", "yes"));
    assert_eq!(result, OpResult::Put { previous: None });
    assert_eq!(cluster.leaders(), vec![leader]);
}

#[test]
fn a_node_cut_off_from_the_leader_alone_still_catches_up_through_another_peer() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, seed);
        let leader = elected(&mut cluster);
        let fs = followers(&cluster, leader);
        let (cut, bridge) = (fs[0], fs[1]);
        // Only the link between the leader and `cut` fails, both ways.
        cluster.block(leader, cut);
        cluster.block(cut, leader);
        for i in 0..10 {
            commit(&mut cluster, bridge, Op::Put { key: format!("k{i}"), value: format!("v{i}") });
        }
        assert_eq!(cluster.leaders(), vec![leader], "seed {seed}: the healthy leader was deposed");
        let target = cluster.replica(leader).applied_index();
        // It learns it is behind from the bridge's answers to its probes,
        // which come at most one backoff cap (plus jitter) apart.
        let bound = 4 * sim_timing().backoff_cap + election_bound();
        cluster
            .run_until(bound, |c| c.replica(cut).applied_index() >= target)
            .unwrap_or_else(|e| panic!("seed {seed}: node {cut} never caught up: {e}"));
        assert_eq!(cluster.replica(cut).store().get("k9").map(String::as_str), Some("v9"), "seed {seed}");
    }
}

/// Elects a leader in a 3-node cluster and commits one write; returns the
/// leader, a follower, the other follower and the leader's ballot.
fn settled_three(seed: u64) -> (Cluster, NodeId, NodeId, NodeId, Ballot) {
    let mut cluster = Cluster::new(3, seed);
    let leader = elected(&mut cluster);
    let request = cluster.submit(leader, put("k", "v"));
    applied(cluster.await_reply(request, commit_bound()).unwrap());
    let others = followers(&cluster, leader);
    let ballot = cluster.status(leader).ballot;
    (cluster, leader, others[0], others[1], ballot)
}

#[test]
fn an_accept_forged_with_the_leaders_ballot_by_another_node_is_refused() {
    let (mut cluster, leader, forger, victim, ballot) = settled_three(3);
    let commit = cluster.status(victim).commit_index;
    let forged = Entry::Batch { commands: vec![Command { client: 666, seq: 1, op: put("k", "forged") }] };
    cluster.deliver(Envelope {
        from: forger,
        to: victim,
        msg: Message::Accept(Accept { ballot, slot: commit, entry: forged, commit_index: commit + 1 }),
    });
    let refused = cluster.refused();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].from, refused[0].kind), (forger, "accept"));
    assert!(refused[0].reason.contains(&format!("belongs to node {leader}")), "{}", refused[0].reason);
    assert_eq!(cluster.status(victim).commit_index, commit, "the forged accept must not move the commit index");
    cluster.ticks(commit_bound());
    let request = cluster.read(victim, "k", true);
    assert_eq!(value_of(cluster.await_reply(request, commit_bound()).unwrap()).0.as_deref(), Some("v"));
}

#[test]
fn a_transfer_prepare_forged_in_the_leaders_name_does_not_depose_it() {
    let (mut cluster, leader, forger, victim, ballot) = settled_three(4);
    let above = Ballot::new(ballot.round + 1, leader);
    for to in [leader, victim] {
        cluster.deliver(Envelope {
            from: forger,
            to,
            msg: Message::Prepare(Prepare { ballot: above, first_slot: 0, transfer: true, rejoin: false }),
        });
    }
    assert_eq!(cluster.refused().len(), 2, "{:?}", cluster.refused());
    cluster.ticks(4 * round_trip());
    assert_eq!(cluster.leaders(), vec![leader]);
    assert_eq!(cluster.status(leader).ballot, ballot, "the leader kept its ballot");
    assert_eq!(cluster.status(victim).promised, ballot, "the victim promised nothing new");
}

#[test]
fn a_ballot_with_an_absurd_round_is_refused_and_cannot_wrap_the_next_campaign() {
    use paxos::consensus::provenance::MAX_ROUND;
    let (mut cluster, leader, sender, victim, ballot) = settled_three(5);
    for round in [MAX_ROUND + 1, u64::MAX] {
        cluster.deliver(Envelope {
            from: sender,
            to: victim,
            msg: Message::Prepare(Prepare {
                ballot: Ballot::new(round, sender),
                first_slot: 0,
                transfer: true,
                rejoin: false,
            }),
        });
    }
    assert_eq!(cluster.refused().len(), 2);
    assert!(cluster.refused()[1].reason.contains("above the limit"), "{}", cluster.refused()[1].reason);
    assert_eq!(cluster.status(victim).promised, ballot);
    // A campaign after the highest round that is allowed still goes up.
    assert_eq!(Ballot::next_after(MAX_ROUND, 2).round, MAX_ROUND + 1);
    assert_eq!(Ballot::next_after(u64::MAX, 2).round, u64::MAX, "saturates instead of wrapping to 0");
    cluster.ticks(4 * round_trip());
    assert_eq!(cluster.leaders(), vec![leader]);
}

#[test]
fn votes_and_promises_from_a_node_without_the_acceptor_role_are_refused() {
    let mut cluster = Cluster::builder(6)
        .node(1, Roles::default())
        .node(2, Roles::default())
        .node(3, Roles::default())
        .node(4, Roles::LEARNER)
        .build()
        .unwrap();
    let leader = elected(&mut cluster);
    let ballot = cluster.status(leader).ballot;
    let slot = cluster.status(leader).commit_index;
    cluster.deliver(Envelope {
        from: 4,
        to: leader,
        msg: Message::Accepted(paxos::consensus::messages::Accepted { ballot, slot }),
    });
    let refused = cluster.refused();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].reason.contains("node 4 is not an acceptor"), "{}", refused[0].reason);
}

#[test]
fn a_withdrawn_command_is_never_applied_and_one_a_leader_has_is_reported_unknown() {
    let mut cluster = Cluster::new(3, 8);
    let leader = elected(&mut cluster);
    let f = followers(&cluster, leader);
    let (alone, linked) = (f[0], f[1]);

    // Submitted on a node that knows no leader: it never left, so it is withdrawn.
    cluster.isolate(alone);
    cluster.run_until(election_bound(), |c| c.replica(alone).leader().is_none()).unwrap();
    let lost = Command { client: 77, seq: 1, op: put("w", "withdrawn") };
    let submitted = cluster.submit_command(alone, lost.clone());
    let withdrawn = cluster.withdraw(alone, 77, 1);
    assert_eq!(cluster.reply(withdrawn), Some(&Err(ClientError::Withdrawn)));
    assert_eq!(cluster.reply(submitted), Some(&Err(ClientError::Withdrawn)), "the waiting submit is answered too");
    cluster.heal();

    // Forwarded to a leader that cannot get it chosen: the outcome is unknown.
    let leader = elected(&mut cluster);
    let linked = if linked == leader { alone } else { linked };
    for other in cluster.ids().into_iter().filter(|id| *id != leader) {
        cluster.block(leader, other);
    }
    let held = Command { client: 78, seq: 1, op: put("u", "unknown") };
    cluster.submit_command(linked, held.clone());
    cluster.ticks(2 * round_trip());
    let unknown = cluster.withdraw(linked, 78, 1);
    assert_eq!(cluster.reply(unknown), Some(&Err(ClientError::OutcomeUnknown)));
    cluster.heal();

    // A retry with the same request id learns the outcome; the withdrawn
    // command is not in the store, the unknown one may be, exactly once.
    let retry = cluster.submit_command(linked, held);
    let (_, result) = applied(cluster.await_reply(retry, election_bound() + commit_bound()).unwrap());
    assert!(matches!(result, OpResult::Put { .. }), "{result:?}");
    let read = cluster.read(linked, "w", true);
    assert_eq!(value_of(cluster.await_reply(read, commit_bound()).unwrap()).0, None);
    let read = cluster.read(linked, "u", true);
    assert_eq!(value_of(cluster.await_reply(read, commit_bound()).unwrap()).0.as_deref(), Some("unknown"));
}

#[test]
fn a_command_over_the_byte_limit_is_refused_up_front_and_slots_stay_within_budget() {
    let mut cluster = Cluster::new(3, 9);
    let leader = elected(&mut cluster);
    let tuning = cluster.replica(leader).config().tuning.clone();
    let follower = followers(&cluster, leader)[0];
    let sized = |client: u64, bytes: usize| {
        let mut command = Command { client, seq: 1, op: put("big", "") };
        let overhead = command.wire_len();
        command.op = put("big", &"x".repeat(bytes - overhead));
        assert_eq!(command.wire_len(), bytes);
        command
    };
    let too_big = cluster.submit_command(follower, sized(50, tuning.max_command_bytes + 1));
    assert_eq!(
        cluster.reply(too_big),
        Some(&Err(ClientError::TooLarge { bytes: tuning.max_command_bytes + 1, max: tuning.max_command_bytes }))
    );
    // Control characters take six bytes each in JSON: counted as sent.
    let mut escaped = Command { client: 51, seq: 1, op: put("ctl", &"\u{1}".repeat(tuning.max_command_bytes / 6)) };
    assert!(escaped.wire_len() > tuning.max_command_bytes);
    let refused = cluster.submit_command(follower, escaped.clone());
    assert!(matches!(cluster.reply(refused), Some(Err(ClientError::TooLarge { .. }))));
    escaped.op = put("ctl", "\u{1}");
    // Commands right at the limit all commit, one slot each at most.
    let requests: Vec<_> =
        (0..4).map(|n| cluster.submit_command(follower, sized(60 + n, tuning.max_command_bytes))).collect();
    for request in requests {
        applied(cluster.await_reply(request, 4 * commit_bound()).unwrap());
    }
    let request = cluster.submit_command(follower, escaped);
    applied(cluster.await_reply(request, commit_bound()).unwrap());
    let read = cluster.read(follower, "ctl", true);
    assert_eq!(value_of(cluster.await_reply(read, commit_bound()).unwrap()).0.as_deref(), Some("\u{1}"));
}

/// Three members whose snapshots only the bytes trigger (1000 of them),
/// never the slot count, with their leader.
fn snapshots_by_bytes_only(seed: u64) -> (Cluster, NodeId) {
    let tuning = paxos::consensus::config::Tuning {
        snapshot_interval: 1_000_000,
        snapshot_bytes: 1000,
        ..paxos::sim::sim_tuning()
    };
    let mut cluster = Cluster::builder(seed).full_nodes(3).tuning(tuning).build().unwrap();
    let leader = elected(&mut cluster);
    (cluster, leader)
}

fn snapshots_through(cluster: &Cluster) -> Vec<u64> {
    cluster.ids().iter().map(|id| cluster.status(*id).snapshot_through).collect()
}

#[test]
fn members_snapshot_once_the_commands_since_the_last_hold_snapshot_bytes_each_at_its_own_point() {
    let (mut cluster, leader) = snapshots_by_bytes_only(12);
    // Each put holds 40 + 2 + 64 bytes: a snapshot after 10, 13 and 16 of
    // them (1000 bytes times 3/3, 4/3 and 5/3), the first one at slot 10 or later.
    for i in 0..12 {
        commit(&mut cluster, leader, put(&format!("k{i}"), &"v".repeat(40)));
    }
    cluster.run_until(commit_bound(), |c| c.converged().is_ok()).unwrap();
    let through = snapshots_through(&cluster);
    assert_eq!(
        through.iter().filter(|t| **t > 0).count(),
        1,
        "only the first member's threshold was crossed: {through:?}"
    );
    for i in 12..40 {
        commit(&mut cluster, leader, put(&format!("k{i}"), &"v".repeat(40)));
    }
    cluster.run_until(commit_bound(), |c| c.converged().is_ok()).unwrap();
    let through = snapshots_through(&cluster);
    assert!(through.iter().all(|t| *t > 0), "{through:?}");
    let mut distinct = through.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 1, "every member took its snapshot at the same slot: {through:?}");
}

#[test]
fn snapshots_by_bytes_wait_for_as_much_as_the_store_held_at_the_last_one() {
    // Distinct keys: the store grows with every put. Snapshotting every
    // 1000 bytes of puts would write the growing store 60 times over; waiting
    // for as much as the store held makes the waits grow with it.
    let (mut cluster, leader) = snapshots_by_bytes_only(13);
    let mut taken = std::collections::BTreeSet::new();
    for i in 0..200 {
        commit(&mut cluster, leader, put(&format!("key-{i}"), &"v".repeat(60)));
        taken.insert(cluster.status(leader).snapshot_through);
    }
    taken.remove(&0);
    // 200 puts of about 135 bytes each: 27 thresholds of 1000 bytes, but the
    // store doubles between snapshots from about 1 KB to 27 KB.
    assert!((3..=8).contains(&taken.len()), "snapshots at {taken:?}");
}

#[test]
fn a_snapshot_of_values_full_of_quotes_and_multibyte_characters_arrives_whole_in_small_chunks() {
    let tuning = paxos::consensus::config::Tuning {
        snapshot_interval: 10,
        log_retain: 2,
        snapshot_chunk_bytes: 37,
        ..paxos::sim::sim_tuning()
    };
    let mut cluster = Cluster::builder(10).full_nodes(3).tuning(tuning).build().unwrap();
    let leader = elected(&mut cluster);
    let behind = followers(&cluster, leader)[0];
    cluster.crash(behind);
    let mut last = 0;
    for i in 0..30 {
        // Quotes and backslashes double when escaped; the others are 2-4 bytes of UTF-8.
        let value = format!("\"\\é😀{i}\u{1}");
        last = commit(&mut cluster, leader, put(&format!("k{i}"), &value)).0;
    }
    assert!(cluster.status(leader).snapshot_through > 10);
    cluster.restart(behind);
    cluster.run_until(40 * commit_bound(), |c| c.converged().is_ok_and(|s| s > last)).unwrap();
    assert_eq!(cluster.replica(behind).store(), cluster.replica(leader).store());
    assert_eq!(cluster.replica(behind).store().get("k7").map(String::as_str), Some("\"\\é😀7\u{1}"));
}

#[test]
fn a_slot_or_index_at_the_top_of_the_range_is_refused() {
    use paxos::consensus::messages::{Decided, InstallSnapshot};
    use paxos::consensus::provenance::MAX_SLOT;
    let (mut cluster, _leader, sender, victim, _ballot) = settled_three(11);
    let before = cluster.status(victim);
    cluster.deliver(Envelope {
        from: sender,
        to: victim,
        msg: Message::InstallSnapshot(InstallSnapshot { through: u64::MAX, offset: 0, total: 2, chunk: "{}".into() }),
    });
    cluster.deliver(Envelope {
        from: sender,
        to: victim,
        msg: Message::Decided(Decided { first_slot: MAX_SLOT, entries: vec![Entry::Noop], commit_index: 0 }),
    });
    assert_eq!(cluster.refused().len(), 2, "{:?}", cluster.refused());
    assert!(cluster.refused()[0].reason.contains("above the limit"));
    let after = cluster.status(victim);
    assert_eq!((after.commit_index, after.applied_index), (before.commit_index, before.applied_index));
}

/// The defect that made data-directory identities necessary: with one node
/// down, two writes are acknowledged by the other two; one of those loses
/// its storage and restarts empty; the node that kept the writes goes down.
/// The empty node must not vote (no leader from it and the third node, which
/// would reuse the slots of the acknowledged writes), and once the node with
/// the writes is back, the empty one rejoins and every write survives.
#[test]
fn a_node_that_lost_its_storage_does_not_vote_until_it_has_rejoined() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, seed);
        let leader = elected(&mut cluster);
        let others = followers(&cluster, leader);
        let (down, wiped) = (others[0], others[1]);
        cluster.crash(down);
        let first = commit(&mut cluster, leader, put("a", "1")).0;
        let second = commit(&mut cluster, wiped, put("b", "2")).0;

        cluster.wipe(wiped);
        cluster.restart(wiped);
        assert_eq!(cluster.status(wiped).commit_index, 0, "seed {seed}: the storage is gone");
        cluster.crash(leader);
        cluster.restart(down);
        // The empty node and the one that missed the writes: no leader, ever.
        cluster.ticks(3 * election_bound());
        assert_eq!(
            cluster.leaders(),
            Vec::<NodeId>::new(),
            "seed {seed}: elected without the node that has the writes"
        );
        assert_ne!(cluster.status(wiped).voting, "voter", "seed {seed}");
        assert_eq!(cluster.status(wiped).promised, Ballot::ZERO, "seed {seed}: it promised while not admitted");

        cluster.restart(leader);
        cluster
            .run_until(4 * election_bound(), |c| c.status(wiped).voting == "voter" && c.agreed_leader().is_some())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let now_leader = cluster.agreed_leader().unwrap();
        let read = cluster.read(now_leader, "a", true);
        let (value, _) = value_of(cluster.await_reply(read, commit_bound()).unwrap());
        assert_eq!(value.as_deref(), Some("1"), "seed {seed}");
        let last = commit(&mut cluster, wiped, put("c", "3")).0;
        assert!(last > second && second > first);
        cluster.run_until(4 * commit_bound(), |c| c.converged().is_ok_and(|s| s > last)).unwrap();
        for id in cluster.ids() {
            assert_eq!(cluster.replica(id).store().get("b").map(String::as_str), Some("2"), "seed {seed}: node {id}");
        }
    }
}

/// A brand-new cluster: nobody votes until every member has answered that
/// it never saw another incarnation of it (a member that never started
/// cannot vouch for anything, and cannot be told from one that lost its
/// disk), then a leader is elected as usual.
#[test]
fn a_new_cluster_votes_once_every_member_has_introduced_itself() {
    let mut cluster = Cluster::new(3, 11);
    cluster.crash(3);
    cluster.ticks(2 * election_bound());
    assert_eq!(cluster.leaders(), Vec::<NodeId>::new());
    assert_eq!(cluster.status(1).voting, "introducing");
    cluster.restart(3);
    let leader = elected(&mut cluster);
    for id in cluster.ids() {
        assert_eq!(cluster.status(id).voting, "voter", "node {id}");
    }
    commit(&mut cluster, leader, put("k", "v"));
}

/// A member that joins a running cluster with a fresh directory, never
/// having run before, is recognised as new by everyone and votes at once;
/// one that comes back empty after having run is sent to rejoin.
#[test]
fn only_a_node_the_cluster_knew_has_to_rejoin() {
    let mut cluster = Cluster::new(3, 12);
    let leader = elected(&mut cluster);
    let node = followers(&cluster, leader)[0];
    cluster.crash(node);
    cluster.restart(node);
    cluster.run_until(commit_bound(), |c| c.status(node).voting == "voter").unwrap();
    cluster.wipe(node);
    cluster.restart(node);
    cluster.run_until(commit_bound(), |c| c.status(node).voting.starts_with("rejoining")).unwrap();
    cluster.run_until(4 * election_bound(), |c| c.status(node).voting == "voter").unwrap();
    assert!(
        cluster
            .storage(node)
            .durable_records()
            .iter()
            .any(|r| matches!(r, Record::Joined { how: paxos::consensus::records::JoinedHow::Rejoined { .. } }))
    );
}

/// A follower that restarts while the leader still holds one of its read
/// requests must not take the leader's late answer (an older read index) for
/// a read of its new life: read ids do not start over. (Found by the
/// simulation, seed 2808: a restarted node answered a linearizable read
/// with a value older than a write acknowledged before the read began.)
#[test]
fn read_ids_are_not_reused_after_a_restart() {
    let mut cluster = Cluster::new(3, 4);
    let leader = elected(&mut cluster);
    let node = followers(&cluster, leader)[0];
    let ids_of = |m: &Message| match m {
        Message::ReadIndex(r) => r.ids().collect::<Vec<u64>>(),
        other => panic!("{}", other.kind()),
    };
    let read = cluster.read(node, "k", true);
    value_of(cluster.await_reply(read, commit_bound()).unwrap());
    let first: Vec<u64> = cluster.sent("read_index", node, leader).into_iter().flat_map(ids_of).collect();
    cluster.crash(node);
    cluster.restart(node);
    let read = cluster.read(node, "k", true);
    value_of(cluster.await_reply(read, commit_bound()).unwrap());
    let all: Vec<u64> = cluster.sent("read_index", node, leader).into_iter().flat_map(ids_of).collect();
    let second = &all[first.len()..];
    assert!(!first.is_empty() && !second.is_empty());
    assert!(second.iter().all(|id| !first.contains(id)), "ids {first:?} were used again: {second:?}");
}

#[test]
fn a_dead_leader_whose_connections_close_is_replaced_before_any_election_timeout() {
    // The followers hear the leader's connections close (the simulation
    // says so as the node crashes) and campaign within link_lost_min..max
    // ticks. Without that, the first campaign starts an election timeout
    // after the last heartbeat: at least election_min - heartbeat ticks
    // after the crash, plus a probe and a prepare round trip.
    let t = sim_timing();
    let bound = t.link_lost_max + 2 * round_trip() + 1;
    // (Two round trips of at least 1 tick each way.)
    assert!(bound < t.election_min - t.heartbeat + 2 * 2, "the bound would not tell the two apart");
    let mut took = Vec::new();
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, seed);
        let leader = elected(&mut cluster);
        cluster.crash(leader);
        let elapsed = cluster
            .run_until(bound, |c| c.leaders().iter().any(|l| *l != leader))
            .unwrap_or_else(|e| panic!("seed {seed}: no new leader within {bound} ticks: {e}\n{}", cluster.describe()));
        took.push(elapsed);
    }
    println!("ticks from the crash to a new leader, seeds 0..20: {took:?}");
}

#[test]
fn a_follower_whose_link_to_a_live_leader_flaps_does_not_depose_it() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, seed);
        let leader = elected(&mut cluster);
        let ballot = cluster.status(leader).ballot;
        let follower = followers(&cluster, leader)[seed as usize % 2];
        let campaigns = cluster.status(follower).elections_started;
        // The connection from the leader breaks (nothing of it arrives)
        // and is redialled a little later, before any election timeout.
        cluster.block(leader, follower);
        cluster.input(follower, paxos::consensus::Input::LinkLost { peer: leader });
        let t = sim_timing();
        cluster.run_until(t.link_lost_max + round_trip(), |_| false).unwrap_err();
        // It did campaign; the others refused its probe, hearing the leader.
        assert!(cluster.status(follower).elections_started > campaigns, "seed {seed}: the loss was ignored");
        cluster.heal();
        cluster.run_until(election_bound(), |_| false).unwrap_err();
        assert_eq!(cluster.leaders(), vec![leader], "seed {seed}: leadership moved\n{}", cluster.describe());
        assert_eq!(cluster.status(leader).ballot, ballot, "seed {seed}");
        commit(&mut cluster, follower, put("after", "flap"));
    }
}
