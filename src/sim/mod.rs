//! Deterministic simulation of a whole cluster: the real `Replica` code,
//! driven in batches by the daemon's own batch driver, over a seeded faulty
//! network with crash-restart (crashes between the batch's stages
//! included), checked after every step for
//! agreement, in-order exactly-once application, durable promises and, at
//! the end, linearizability of the clients' history and liveness once the
//! network is stable. A run is a pure function of its seed.

pub mod cluster;
pub mod linearizability;
pub mod network;
mod votes;
mod workload;
mod world;

use crate::consensus::Input;
use crate::consensus::ballot::NodeId;
use crate::consensus::config::{Config, Roles, Timing, Tuning};
use crate::consensus::rng::Rng;
use crate::driver::{MAX_BATCH_INPUTS, Stage};
use crate::state_machine::{Command, Op};
use network::{LinkFaults, Network};
use std::collections::BTreeMap;
use std::fmt;
use workload::Client;
use world::World;

pub use cluster::{Cluster, ClusterBuilder, Fate, Traced};

/// A property that failed, with what replays it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub seed: u64,
    pub tick: u64,
    pub what: String,
}

impl Failure {
    fn new(seed: u64, tick: u64, what: String) -> Self {
        Failure { seed, tick, what }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed at tick {}: {}\n  replay: cargo run --release -- simulate --seed {}",
            self.seed, self.tick, self.what, self.seed
        )
    }
}

/// What one seed did, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    pub shape: &'static str,
    pub slots: u64,
    pub operations: usize,
    pub acked_writes: usize,
    pub crashes: u32,
    /// Crashes that also lost the node's whole storage.
    pub wipes: u32,
    pub partitions: u32,
    /// Live peers' connections a node saw close (`Input::LinkLost`).
    pub link_flaps: u32,
    pub messages: u64,
    pub liveness_ticks: u64,
    pub snapshots_taken: u32,
    pub snapshots_installed: u32,
    /// Batches that crashed, by the stage they crashed after (`Stage::index`).
    pub stage_crashes: [u32; Stage::ALL.len()],
    /// Most inputs a node stepped in one batch.
    pub largest_batch: usize,
    /// Most commands one decided slot carried.
    pub fullest_slot: usize,
    /// Membership changes sent (the membership shape only).
    pub changes_proposed: u32,
    /// Membership changes decided and not refused.
    pub changes_made: u64,
}

/// Ticks within which, once the network is healed and stable and every node
/// is up, a leader must exist and a new command must be applied. Derived from
/// the simulation timing: an election timeout, a few backoffs at their cap,
/// and the round trips of phase 1 and phase 2.
pub const LIVENESS_BOUND: u64 = 400;

/// Timing in ticks for the simulation: the same ratios as the defaults,
/// scaled down so a run covers many elections.
pub fn sim_timing() -> Timing {
    Timing {
        heartbeat: 2,
        election_min: 12,
        election_max: 24,
        backoff_base: 2,
        backoff_cap: 32,
        retransmit: 6,
        client_retry: 12,
        link_lost_min: 1,
        link_lost_max: 4,
    }
}

/// Tuning for the simulation: tiny batches, a short pipeline and frequent
/// snapshots, so that a short run crosses every one of those boundaries.
pub fn sim_tuning() -> Tuning {
    Tuning {
        max_batch: 3,
        pipeline_depth: 4,
        snapshot_interval: 25,
        // A workload command holds about 70 bytes: some snapshots come
        // from the bytes, some from the slots.
        snapshot_bytes: 1000,
        log_retain: 6,
        catch_up_batch: 5,
        max_sessions: 1000,
        // A workload command is about 60 bytes encoded: these budgets bind
        // before the counts above do, so runs cross the byte limits too.
        max_command_bytes: 128,
        max_batch_bytes: 160,
        max_in_flight_bytes: 400,
        catch_up_bytes: 200,
        // Snapshots of the workload's store are a few hundred bytes: many chunks.
        snapshot_chunk_bytes: 64,
    }
}

fn full() -> Roles {
    Roles::default()
}

/// A shape's name, its members, and its quorum sizes (None: majority).
type ShapeSpec = (&'static str, Vec<(NodeId, Roles)>, Option<usize>, Option<usize>);

/// α in the simulation: twice the pipeline, so that a run brings many
/// membership changes into force.
pub const SIM_ALPHA: u64 = 8;

/// Nodes 4 and 5 of the membership shape start outside the configuration.
const JOINING: [NodeId; 2] = [4, 5];

/// Cluster shapes the seeds rotate through, mixed roles and flexible
/// quorums included, and one whose membership changes during the run.
/// The last value says whether it is that one.
fn shape(seed: u64, membership_changes: bool) -> (&'static str, Vec<Config>, bool) {
    let acceptor_only = Roles { proposer: false, acceptor: true, learner: true };
    let proposer_acceptor = full();
    if membership_changes {
        let members: BTreeMap<NodeId, Roles> = (1..=3).map(|i| (i, full())).collect();
        let configs = (1..=5)
            .map(|id| Config {
                id,
                members: members.clone(),
                phase1_quorum: None,
                phase2_quorum: None,
                timing: sim_timing(),
                // A membership change is 150-170 bytes encoded: room for one
                // in a slot, and the budgets still bind.
                tuning: Tuning {
                    max_command_bytes: 256,
                    max_batch_bytes: 320,
                    max_in_flight_bytes: 640,
                    catch_up_bytes: 320,
                    // Operators' one-off sessions make the snapshots of this
                    // shape several kilobytes: chunks of 64 bytes, one per
                    // round trip, outlast the liveness bound.
                    snapshot_chunk_bytes: 256,
                    ..sim_tuning()
                },
                joining: JOINING.contains(&id),
                alpha: SIM_ALPHA,
            })
            .collect();
        return ("3 full nodes + 2 joining, membership changes", configs, true);
    }
    let (name, members, q1, q2): ShapeSpec = match seed % 4 {
        0 => ("3 full nodes", (1..=3).map(|i| (i, full())).collect(), None, None),
        1 => ("5 full nodes", (1..=5).map(|i| (i, full())).collect(), None, None),
        2 => (
            "3 acceptors (2 proposers) + 2 learners",
            vec![
                (1, proposer_acceptor),
                (2, proposer_acceptor),
                (3, acceptor_only),
                (4, Roles::LEARNER),
                (5, Roles::LEARNER),
            ],
            None,
            None,
        ),
        _ => (
            "5 acceptors, 3 proposers, flexible quorums 4/2",
            vec![(1, full()), (2, full()), (3, full()), (4, acceptor_only), (5, acceptor_only)],
            Some(4),
            Some(2),
        ),
    };
    let members: BTreeMap<NodeId, Roles> = members.into_iter().collect();
    let tuning = sim_tuning();
    let configs = members
        .keys()
        .map(|id| Config {
            id: *id,
            members: members.clone(),
            phase1_quorum: q1,
            phase2_quorum: q2,
            timing: sim_timing(),
            tuning: tuning.clone(),
            joining: false,
            alpha: SIM_ALPHA,
        })
        .collect();
    (name, configs, false)
}

/// The chance that a batch crashes after each stage it goes through, by
/// `Stage::index`. Every batch steps and most send, while few answer a
/// client or store a snapshot: the rarer a stage, the larger its chance, so
/// that a run of seeds crashes after every stage.
pub fn stage_crash_chances() -> [f64; Stage::ALL.len()] {
    Stage::ALL.map(|stage| match stage {
        Stage::AfterStep => 0.0001,
        Stage::AfterSend => 0.0003,
        Stage::AfterAnswer => 0.01,
        Stage::AfterSnapshot => 0.02,
        Stage::AfterAppend | Stage::AfterSync => 0.002,
        Stage::AfterSendAfterPersist => 0.004,
    })
}

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub fault_ticks: u64,
    pub clients: usize,
    pub ops_per_client: u32,
    pub client_timeout: u64,
    /// Run the membership shape: changes interleaved with the faults.
    pub membership_changes: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Plan { fault_ticks: 700, clients: 4, ops_per_client: 25, client_timeout: 40, membership_changes: false }
    }
}

/// Run one seed: faults, then a stable network, checking everything.
pub fn run_seed(seed: u64, plan: &Plan) -> Result<Report, Failure> {
    let mut rng = Rng::new(seed);
    // Some seeds are calm, some stormy: loss up to 25%, duplication up to 5%.
    let faults = LinkFaults {
        loss: rng.between(0, 25) as f64 / 100.0,
        duplicate: rng.between(0, 5) as f64 / 100.0,
        max_delay: rng.between(1, 6),
    };
    let (shape_name, configs, changes) = shape(seed, plan.membership_changes);
    let mut world = World::new(seed, configs, Network::new(seed ^ 0x5eed, faults))?;
    world.membership_changes = changes;
    world.crash_chance = stage_crash_chances();
    // From one input per batch to the daemon's limit, so batches of every
    // size happen and inputs queue behind the limit.
    world.max_batch_inputs = [1, 2, 4, 8, 16, MAX_BATCH_INPUTS][rng.between(0, 5) as usize];
    world.clients = (0..plan.clients).map(|i| Client::new(i, plan.ops_per_client)).collect();
    let mut report = Report { shape: shape_name, ..Default::default() };

    while world.now < plan.fault_ticks {
        inject_faults(&mut world, &mut rng, &mut report)?;
        if changes && rng.chance(0.03) {
            propose_change(&mut world, &mut rng);
            report.changes_proposed += 1;
        }
        drive_clients(&mut world, &mut rng, plan)?;
        world.tick()?;
    }

    // Heal everything and check liveness within a bound.
    world.net.heal();
    world.net.faults = LinkFaults::STABLE;
    world.crash_chance = [0.0; Stage::ALL.len()];
    for id in world.ids() {
        world.restart(id)?;
    }
    let healed_at = world.now;
    let probe = Command { client: 1, seq: 1, op: Op::Propose { value: format!("liveness-{seed}") } };
    let members = world.members();
    let mut target = members[rng.between(0, members.len() as u64 - 1) as usize];
    let mut request = world.new_request((usize::MAX, 0));
    world.enqueue(target, Input::Submit { request, command: probe.clone() });
    while !world.operator_replies.contains_key(&request) {
        let members = world.members();
        if !members.contains(&target) {
            // A change decided after healing removed the node asked: ask a
            // member (the same command: applied once either way).
            target = members[rng.between(0, members.len() as u64 - 1) as usize];
            request = world.new_request((usize::MAX, 0));
            world.enqueue(target, Input::Submit { request, command: probe.clone() });
        }
        if world.now >= healed_at + LIVENESS_BOUND {
            let what = format!(
                "liveness: {} ticks after healing, the command sent to node {target} is not applied\n{}",
                LIVENESS_BOUND,
                world.describe()
            );
            return Err(Failure::new(seed, world.now, what));
        }
        drive_clients(&mut world, &mut rng, plan)?;
        world.tick()?;
    }
    report.liveness_ticks = world.now - healed_at;
    // Let the clients finish and every node catch up, within a bound.
    let settle_deadline = world.now + 4 * LIVENESS_BOUND;
    loop {
        drive_clients(&mut world, &mut rng, plan)?;
        world.tick()?;
        let done = world.clients.iter().all(|c| c.done()) && world.check_states_converged().is_ok();
        if done {
            break;
        }
        if world.now >= settle_deadline {
            world.check_states_converged()?;
            let what = format!("clients did not finish on a stable network\n{}\n{:?}", world.describe(), world.clients);
            return Err(Failure::new(seed, world.now, what));
        }
    }
    report.slots = world.check_states_converged()?;
    world.check_votes()?;
    // Leadership may still change hands on a stable network (a campaign from
    // the faulty phase can preempt the leader once), but it must settle.
    let settled_by = world.now + LIVENESS_BOUND;
    while world.leaders().len() != 1 {
        if world.now >= settled_by {
            let what =
                format!("stable network but no single leader after {LIVENESS_BOUND} ticks\n{}", world.describe());
            return Err(Failure::new(seed, world.now, what));
        }
        world.tick()?;
    }
    report.changes_made = world.membership_epoch();
    report.operations = world.recorder.completed();
    report.acked_writes = world.acked.len();
    report.messages = world.net.delivered;
    report.snapshots_taken = world.snapshots_taken;
    report.snapshots_installed = world.snapshots_installed;
    report.stage_crashes = world.stage_crashes;
    report.largest_batch = world.largest_batch;
    report.fullest_slot = world.fullest_slot;
    let recorder = std::mem::take(&mut world.recorder);
    recorder.check().map_err(|e| Failure::new(seed, world.now, format!("linearizability: {e}")))?;
    Ok(report)
}

fn inject_faults(world: &mut World, rng: &mut Rng, report: &mut Report) -> Result<(), Failure> {
    let ids = world.ids();
    let up = world.up();
    // Leaders are where the interesting failures are: half the faults aim at one.
    let leader = world.leaders().first().copied().filter(|_| rng.chance(0.5));
    if rng.chance(0.004) && ids.len() - up.len() < world.max_down {
        let victim = leader.unwrap_or_else(|| up[rng.between(0, up.len() as u64 - 1) as usize]);
        // Now and then the disk goes too, one node at a time: a node can
        // rejoin only with the help of a quorum of acceptors that kept theirs.
        // Not while the membership changes: a node that lost its data
        // comes back under a new id (removed, then added).
        if world.all_voting() && !world.membership_changes && rng.chance(0.25) {
            world.wipe(victim);
            report.wipes += 1;
        } else {
            world.crash(victim);
        }
        report.crashes += 1;
    }
    for id in ids.iter().filter(|id| !up.contains(id)) {
        if rng.chance(0.02) {
            world.restart(*id)?;
        }
    }
    if !world.net.is_partitioned() && rng.chance(0.004) {
        report.partitions += 1;
        let a = leader.unwrap_or_else(|| ids[rng.between(0, ids.len() as u64 - 1) as usize]);
        match rng.between(0, 2) {
            0 => world.net.isolate(&[a], &ids),
            1 => {
                let group: Vec<NodeId> = ids.iter().copied().filter(|_| rng.chance(0.5)).collect();
                world.net.isolate(&group, &ids);
            }
            _ => {
                let b = ids[rng.between(0, ids.len() as u64 - 1) as usize];
                if a != b {
                    world.net.block(a, b);
                }
            }
        }
    } else if world.net.is_partitioned() && rng.chance(0.01) {
        world.net.heal();
    }
    if rng.chance(0.004) && up.len() > 1 {
        // A link flaps: one node sees a live peer's connection close.
        let pick = |rng: &mut Rng| up[rng.between(0, up.len() as u64 - 1) as usize];
        let (a, b) = (pick(rng), pick(rng));
        if a != b {
            report.link_flaps += 1;
            world.enqueue(a, Input::LinkLost { peer: b });
        }
    }
    if rng.chance(0.002)
        && let Some(leader) = world.leaders().first().copied()
    {
        let to = if rng.chance(0.5) { Some(ids[rng.between(0, ids.len() as u64 - 1) as usize]) } else { None };
        let request = world.new_request((usize::MAX, 0));
        world.enqueue(leader, Input::TransferLeadership { request, to });
    }
    Ok(())
}

/// An operator's membership change, sent to a random live node: add a
/// joining node, change a member's roles, remove one, or replace one by a
/// joining node. Many are refused (an id already used or never a member,
/// no proposer left, another change pending), identically everywhere.
fn propose_change(world: &mut World, rng: &mut Rng) {
    use crate::consensus::configuration::{Member, MemberChange};
    let up = world.up();
    let Some(node) = workload::pick(rng, &up) else { return };
    let kinds = [full(), Roles { proposer: false, acceptor: true, learner: true }, Roles::LEARNER];
    let roles = kinds[rng.between(0, 2) as usize];
    let joining = JOINING[rng.between(0, 1) as usize];
    let change = match rng.between(0, 3) {
        0 => MemberChange::Add { id: joining, member: Member::with_roles(roles) },
        1 => MemberChange::SetRoles { id: rng.between(1, 5), roles },
        2 => MemberChange::Remove { id: rng.between(1, 5) },
        _ => MemberChange::Replace { remove: rng.between(1, 3), id: joining, member: Member::with_roles(full()) },
    };
    let request = world.new_request((usize::MAX, 0));
    let command = Command { client: 1 << 40 | request, seq: 1, op: Op::Reconfigure { change } };
    world.enqueue(node, Input::Submit { request, command });
}

fn drive_clients(world: &mut World, rng: &mut Rng, plan: &Plan) -> Result<(), Failure> {
    // Clients talk to members: a removed node, or one not added yet, no
    // longer hears from the cluster.
    let members = world.members();
    let up: Vec<NodeId> = world.up().into_iter().filter(|id| members.contains(id)).collect();
    for i in 0..world.clients.len() {
        let now = world.now;
        let input = if world.clients[i].busy() {
            if !world.clients[i].needs_retry(now, plan.client_timeout) {
                continue;
            }
            let number = world.clients[i].current_number().expect("busy client has an operation");
            let request = world.new_request((i, number));
            world.clients[i].retry(now, request)
        } else if rng.chance(0.2) {
            let request = world.new_request((i, u64::MAX));
            let mut recorder = std::mem::take(&mut world.recorder);
            let input = world.clients[i].start(now, rng, &mut recorder, request);
            world.recorder = recorder;
            if let Some(number) = world.clients[i].current_number() {
                world.requests.insert(request, (i, number));
            }
            input
        } else {
            None
        };
        if let (Some(input), Some(node)) = (input, workload::pick(rng, &up)) {
            world.enqueue(node, input);
        }
    }
    Ok(())
}

/// A panic inside the core (a debug assertion, say) is a failure of its seed too.
pub fn run_caught(seed: u64, plan: &Plan) -> Result<Report, Failure> {
    std::panic::catch_unwind(|| run_seed(seed, plan)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(Failure::new(seed, 0, format!("panicked: {what}")))
    })
}

/// Run seeds `first..first + count` on `threads` threads; the failures, by seed.
pub fn run_seeds(first: u64, count: u64, threads: usize, plan: &Plan) -> (Vec<Report>, Vec<Failure>) {
    let threads = threads.max(1) as u64;
    let results: Vec<Result<Report, Failure>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (first..first + count)
                        .filter(|s| (s - first) % threads == t)
                        .map(|s| run_caught(s, plan))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("simulation thread panicked")).collect()
    });
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(report) => reports.push(report),
            Err(f) => failures.push(f),
        }
    }
    failures.sort_by_key(|f| f.seed);
    (reports, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over a run of seeds, batches crash after every one of the driver's
    /// stages, and every seed still holds every safety check (agreement,
    /// exactly-once in-order application, promises kept across restarts, no
    /// lost acknowledged write, linearizability) and liveness after healing.
    #[test]
    fn batches_crash_after_every_stage_and_safety_holds() {
        let count: u64 = std::env::var("PAXOS_STAGE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (reports, failures) = run_seeds(0, count, threads, &Plan::default());
        for f in failures.iter().take(5) {
            eprintln!("{f}");
        }
        assert!(failures.is_empty(), "{} of {count} seeds failed (first shown above)", failures.len());
        let mut crashes = [0u32; Stage::ALL.len()];
        for r in &reports {
            for (total, n) in crashes.iter_mut().zip(r.stage_crashes) {
                *total += n;
            }
        }
        let counts: Vec<String> = Stage::ALL.iter().map(|s| format!("{}: {}", s.name(), crashes[s.index()])).collect();
        eprintln!("{count} seeds; batches crashed {}", counts.join(", "));
        eprintln!("largest batch: {} inputs", reports.iter().map(|r| r.largest_batch).max().unwrap_or(0));
        let largest = reports.iter().map(|r| r.largest_batch).max().unwrap_or(0);
        assert!(largest > 8, "no node stepped more than {largest} inputs in one batch");
        // Slots that carry several commands are exercised too.
        let fullest = reports.iter().map(|r| r.fullest_slot).max().unwrap_or(0);
        eprintln!("fullest slot: {fullest} commands");
        assert!(fullest > 1, "no slot carried more than {fullest} command");
        for stage in Stage::ALL {
            assert!(crashes[stage.index()] > 0, "no batch crashed {} over {count} seeds: {counts:?}", stage.name());
        }
    }

    #[test]
    fn a_seed_replays_exactly() {
        let plan = Plan { fault_ticks: 300, ..Plan::default() };
        for seed in [3, 11] {
            assert_eq!(run_seed(seed, &plan), run_seed(seed, &plan), "seed {seed}");
        }
    }
}

#[cfg(test)]
mod membership_tests {
    use super::*;

    /// Seeds of the membership shape: changes interleaved with crashes,
    /// partitions, lost and duplicated messages and leader changes, with
    /// every safety check active, the vote ledger's included (no phase-2
    /// quorum of any configuration chose another value than the one
    /// applied). Seed 259 once broke agreement (a leader proposed below an
    /// extension promiser's commit index), 375 and 969 linearizability (a
    /// read confirmed before phase 1 held in a configuration that came
    /// into view), 558 and 1759 liveness (a proposer that lost its
    /// download, with no leader left to tell it how far the log goes).
    #[test]
    fn membership_changes_under_faults_keep_every_safety_check() {
        let count: u64 = std::env::var("PAXOS_MEMBERSHIP_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(400);
        let plan = Plan { membership_changes: true, ..Plan::default() };
        let mut made = Vec::new();
        let mut failures = Vec::new();
        for seed in (0..count).map(|i| i * 5 + 4) {
            match run_caught(seed, &plan) {
                Ok(report) => made.push(report.changes_made),
                Err(f) => failures.push(f),
            }
        }
        for f in failures.iter().take(3) {
            eprintln!("{f}");
        }
        assert!(failures.is_empty(), "{} of {count} seeds failed (first shown above)", failures.len());
        eprintln!("changes decided per seed: {made:?}");
        assert!(made.iter().filter(|n| **n >= 2).count() > count as usize / 4, "too few changes made: {made:?}");
    }
}
