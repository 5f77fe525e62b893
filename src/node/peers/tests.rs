use super::*;
use crate::cluster::{ConsensusSettings, NodeEntry};
use crate::consensus::config::Roles;
use crate::consensus::configuration::{Configuration, DEFAULT_ALPHA, Member, Pending};
use crate::ssh::peer::PeerLinkSettings;
use crate::ssh::wall_clock::WallClock;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const KEY_1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwLQX/RMWc6MHKB8+aO9j37934HL8pKCCo/A/ko9kFH node1";
const KEY_2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIMrcIL0wnN5AzSpYXVkUj8dFU+K8JBZdMfWczfjAFSD node2";
const KEY_3: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBqysrTz6Lcf210GvWPub84eiyzx8R0S5DcEXQGuJPQy node3";
const KEY_4: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJyrKL0QZqe0FfkN2ORqtz7ySTg2eijym7sAIjrM+cpl node4";
const KEY_5: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGpltgxiYLpxZd9ybgzd64PXuE5YMr8B0tdRcU/m3k5 node5";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGlZanYZ6uJWP95jDgU/8N0GDUATeUJSCPNxgKGsVnXQrrC8IcYyl9w9/2lhMdWhO2YP70jOdAWw6g1Ky4HIQdQ= ec";

fn key(line: &str) -> PublicKey {
    parse_public_key(line).unwrap()
}

/// Nodes 1 to 3 with their keys, on ports 7101 to 7103.
fn inventory() -> Inventory {
    let node = |id: NodeId, key: &str| NodeEntry {
        id,
        name: format!("node{id}"),
        host: "10.0.0.1".into(),
        port: 7100 + id as u16,
        roles: vec!["proposer".into(), "acceptor".into(), "learner".into()],
        host_key: Some(key.into()),
        join: false,
    };
    Inventory {
        cluster: "test".into(),
        tick_ms: 10,
        nodes: vec![node(1, KEY_1), node(2, KEY_2), node(3, KEY_3)],
        operators: vec![],
        readers: vec![],
        consensus: ConsensusSettings::default(),
        path: "hosts/test.json".into(),
    }
}

fn config(epoch: u64, members: impl IntoIterator<Item = (NodeId, Member)>) -> Configuration {
    Configuration {
        epoch,
        members: members.into_iter().collect(),
        phase1_quorum: None,
        phase2_quorum: None,
        retired: BTreeSet::new(),
        alpha: DEFAULT_ALPHA,
    }
}

fn seed(id: NodeId) -> (NodeId, Member) {
    (id, Member::with_roles(Roles::default()))
}

fn added(id: NodeId, address: &str, key: &str) -> (NodeId, Member) {
    let member = Member { roles: Roles::LEARNER, name: format!("node{id}"), address: address.into(), key: key.into() };
    (id, member)
}

fn genesis() -> Membership {
    Membership::new(config(0, [seed(1), seed(2), seed(3)]))
}

fn with_pending(current: Configuration, next: Configuration) -> Membership {
    Membership { current, pending: Some(Pending { effective: 500, config: next }) }
}

fn spec(address: &str, line: &str) -> PeerSpec {
    PeerSpec { address: address.into(), key: key(line) }
}

fn ids<V>(map: &BTreeMap<NodeId, V>) -> Vec<NodeId> {
    map.keys().copied().collect()
}

#[test]
fn seed_members_are_reached_through_the_inventory_and_self_is_left_out() {
    let set = PeerSet::of(1, &genesis(), &inventory());
    assert_eq!(ids(&set.links), [2, 3]);
    assert_eq!(set.links[&2], spec("10.0.0.1:7102", KEY_2));
    assert_eq!(set.links[&3], spec("10.0.0.1:7103", KEY_3));
    assert_eq!(ids(&set.keys), [2, 3]);
    assert_eq!(set.keys[&2].key_data(), key(KEY_2).key_data());
    assert!(set.bad.is_empty(), "{:?}", set.bad);

    // From scratch: a link to every peer, nothing to drop.
    let plan = Plan::new(&BTreeMap::new(), set.clone());
    assert_eq!(ids(&plan.add), [2, 3]);
    assert!(plan.drop.is_empty());
    // Nothing changed: nothing to do, and the same keys to accept.
    let plan = Plan::between(1, &genesis(), &genesis(), &inventory());
    assert_eq!(plan, Plan { accept: set.keys, ..Plan::default() });
}

#[test]
fn an_added_member_is_reached_at_its_own_address_with_its_own_key() {
    let next = config(1, [seed(1), seed(2), seed(3), added(4, "10.0.0.4:7104", KEY_4)]);
    // Pending: linked to already, so it can catch up before it counts.
    let changing = with_pending(genesis().current, next.clone());
    let plan = Plan::between(1, &genesis(), &changing, &inventory());
    assert_eq!(plan.add, BTreeMap::from([(4, spec("10.0.0.4:7104", KEY_4))]));
    assert!(plan.drop.is_empty());
    assert_eq!(ids(&plan.accept), [2, 3, 4]);
    assert_eq!(plan.accept[&4].key_data(), key(KEY_4).key_data());
    assert!(plan.bad.is_empty());

    // Taking effect changes nothing more.
    let plan = Plan::between(1, &changing, &Membership::new(next), &inventory());
    assert!(plan.add.is_empty() && plan.drop.is_empty(), "{plan:?}");
    assert_eq!(ids(&plan.accept), [2, 3, 4]);

    // The added member itself links to the seed members through its inventory.
    let set = PeerSet::of(4, &changing, &inventory());
    assert_eq!(ids(&set.links), [1, 2, 3]);
    assert_eq!(set.links[&1], spec("10.0.0.1:7101", KEY_1));
}

#[test]
fn a_removed_member_is_dropped_once_no_configuration_has_it() {
    let next = config(1, [seed(1), seed(2)]);
    // While the removal is pending, the configuration in force still has it.
    let removing = with_pending(genesis().current, next.clone());
    let plan = Plan::between(1, &genesis(), &removing, &inventory());
    assert!(plan.drop.is_empty() && plan.add.is_empty(), "{plan:?}");
    assert_eq!(ids(&plan.accept), [2, 3]);

    let plan = Plan::between(1, &removing, &Membership::new(next), &inventory());
    assert_eq!(plan.drop, [3]);
    assert!(plan.add.is_empty());
    assert_eq!(ids(&plan.accept), [2]);

    // A replacement: one leaves, its successor arrives, in one change.
    let replaced = Membership::new(config(1, [seed(1), seed(2), added(5, "10.0.0.5:7105", KEY_5)]));
    let plan = Plan::between(1, &genesis(), &replaced, &inventory());
    assert_eq!(plan.drop, [3]);
    assert_eq!(ids(&plan.add), [5]);
    assert_eq!(ids(&plan.accept), [2, 5]);
}

#[test]
fn a_node_whose_removal_took_effect_has_no_peers_but_a_joining_one_does() {
    let mut after = config(1, [seed(1), seed(2)]);
    after.retired.insert(3);
    // Pending: node 3 is still in the configuration in force.
    let removing = with_pending(genesis().current, after.clone());
    let set = PeerSet::of(3, &removing, &inventory());
    assert!(!set.removed);
    assert_eq!(ids(&set.links), [1, 2]);

    let removed = Membership::new(after);
    let plan = Plan::between(3, &removing, &removed, &inventory());
    assert!(plan.removed);
    assert_eq!(plan.drop, [1, 2]);
    assert!(plan.add.is_empty() && plan.accept.is_empty(), "{plan:?}");

    // Never a member (joining): it still reaches the members to learn.
    let set = PeerSet::of(4, &genesis(), &inventory());
    assert!(!set.removed);
    assert_eq!(ids(&set.links), [1, 2, 3]);
}

#[test]
fn a_bad_key_is_reported_and_left_out_not_panicked_on() {
    let cases = [
        ("not a key at all", "does not parse"),
        ("ssh-ed25519 AAAA!!!! broken", "does not parse"),
        (ECDSA, "is ecdsa-sha2-nistp256, but nodes use ssh-ed25519 keys"),
    ];
    for (line, complaint) in cases {
        let bad = Membership::new(config(1, [seed(1), seed(2), seed(3), added(4, "10.0.0.4:7104", line)]));
        let plan = Plan::between(1, &genesis(), &bad, &inventory());
        assert!(plan.add.is_empty() && plan.drop.is_empty(), "{line}: {plan:?}");
        assert_eq!(ids(&plan.accept), [2, 3], "{line}");
        assert_eq!(plan.bad.len(), 1, "{line}");
        assert_eq!(plan.bad[0].id, 4);
        assert!(plan.bad[0].reason.contains(complaint), "{line}: {}", plan.bad[0].reason);
    }

    // A seed member the inventory does not know, or whose inventory key is bad.
    let mut inventory = inventory();
    inventory.nodes[2].host_key = Some(ECDSA.into());
    let unknown = Membership::new(config(1, [seed(1), seed(2), seed(3), seed(9)]));
    let set = PeerSet::of(1, &unknown, &inventory);
    assert_eq!(ids(&set.links), [2]);
    let bad: Vec<NodeId> = set.bad.iter().map(|b| b.id).collect();
    assert_eq!(bad, [3, 9]);
    assert!(set.bad[0].reason.contains("ssh-ed25519"), "{}", set.bad[0].reason);
    assert!(set.bad[1].reason.contains("9"), "{}", set.bad[1].reason);
}

#[test]
fn a_member_with_a_key_but_no_address_is_accepted_but_not_dialled() {
    let m = Membership::new(config(1, [seed(1), seed(2), added(7, "", KEY_4)]));
    let set = PeerSet::of(1, &m, &inventory());
    assert_eq!(ids(&set.links), [2]);
    assert_eq!(ids(&set.keys), [2, 7]);
    assert_eq!(set.bad.len(), 1);
    assert!(set.bad[0].reason.contains("no address"), "{}", set.bad[0].reason);
}

#[test]
fn a_changed_address_or_key_restarts_the_link_and_the_pending_view_wins() {
    let old = Membership::new(config(1, [seed(1), added(4, "10.0.0.4:7104", KEY_4)]));
    let moved = Membership::new(config(2, [seed(1), added(4, "10.0.0.44:7104", KEY_4)]));
    let plan = Plan::between(1, &old, &moved, &inventory());
    assert_eq!(plan.drop, [4]);
    assert_eq!(plan.add, BTreeMap::from([(4, spec("10.0.0.44:7104", KEY_4))]));

    let rekeyed = Membership::new(config(2, [seed(1), added(4, "10.0.0.4:7104", KEY_5)]));
    let plan = Plan::between(1, &old, &rekeyed, &inventory());
    assert_eq!(plan.drop, [4]);
    assert_eq!(plan.accept[&4].key_data(), key(KEY_5).key_data());

    // Only the comment differs: the same key, nothing to do.
    let comment = KEY_4.replace("node4", "renamed");
    let recommented = Membership::new(config(2, [seed(1), added(4, "10.0.0.4:7104", &comment)]));
    let plan = Plan::between(1, &old, &recommented, &inventory());
    assert!(plan.add.is_empty() && plan.drop.is_empty(), "{plan:?}");

    // In force and pending disagree: the pending one is the newer word.
    let both = with_pending(old.current.clone(), moved.current.clone());
    assert_eq!(PeerSet::of(1, &both, &inventory()).links[&4].address, "10.0.0.44:7104");
}

#[tokio::test]
async fn the_reconciler_starts_and_stops_links_and_updates_the_accepted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Arc::new({
        let path = dir.path().join("node1");
        crate::keys::generate_ed25519(&path, "node1").unwrap();
        crate::keys::load_private(&path).unwrap()
    });
    let spawned = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = spawned.clone();
    let spawn: SpawnLink = Box::new(move |peer, spec, stop| {
        record.lock().unwrap().push((peer, spec.address.clone()));
        let settings = PeerLinkSettings {
            local_node: 1,
            peer_node: peer,
            // Nobody listens there: the link keeps backing off.
            peer_addr: "127.0.0.1:1".into(),
            peer_host_key: spec.key.clone(),
            identity: identity.clone(),
            max_frame: 1024,
            queue_capacity: 4,
            queue_bytes: 4096,
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(50),
            clock: WallClock::system(),
        };
        PeerLink::spawn(settings, stop)
    });
    let links = PeerLinks::default();
    let keys = PeerKeys::new(BTreeMap::new());
    let shutdown = CancellationToken::new();
    let mut reconciler =
        Reconciler::new(1, Arc::new(inventory()), links.clone(), keys.clone(), spawn, shutdown.clone());

    reconciler.apply(&genesis());
    assert_eq!(links.ids(), [2, 3]);
    assert_eq!(keys.get().keys().copied().collect::<Vec<_>>(), [2, 3]);
    assert!(keys.accepts(3, &key(KEY_3)));

    let token3 = reconciler.running[&3].1.clone();
    let next = Membership::new(config(1, [seed(1), seed(2), added(4, "10.0.0.4:7104", KEY_4)]));
    reconciler.apply(&next);
    assert_eq!(links.ids(), [2, 4]);
    assert!(token3.is_cancelled(), "the link to the removed node is shut down");
    assert!(!reconciler.running[&2].1.is_cancelled());
    assert_eq!(keys.get().keys().copied().collect::<Vec<_>>(), [2, 4]);
    assert!(!keys.accepts(3, &key(KEY_3)), "the removed node's key is refused");
    assert!(keys.accepts(4, &key(KEY_4)));
    assert!(links.get(3).is_none(), "the transport finds no link to the removed node");
    assert_eq!(
        *spawned.lock().unwrap(),
        [(2, "10.0.0.1:7102".into()), (3, "10.0.0.1:7103".into()), (4, "10.0.0.4:7104".into())]
    );

    // Following a watch: a change published is applied.
    let (tx, rx) = watch::channel(next);
    let follow = tokio::spawn(reconciler.follow(rx));
    tx.send_replace(genesis());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while links.ids() != [2, 3] {
        assert!(tokio::time::Instant::now() < deadline, "the reconciler did not follow: {:?}", links.ids());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(keys.accepts(3, &key(KEY_3)) && !keys.accepts(4, &key(KEY_4)));
    shutdown.cancel();
    follow.await.unwrap();
}

/// A key is one principal: a member given an operator's, a reader's, this
/// node's own or another member's key is refused, never let in as a peer
/// (a peer match comes first and would shadow the other role).
#[test]
fn a_member_key_that_holds_another_role_is_refused() {
    let mut inventory = inventory();
    inventory.operators = vec![KEY_4.into()];
    inventory.readers = vec![KEY_5.into()];
    let members = [
        seed(1),
        seed(2),
        seed(3),
        added(4, "10.0.0.4:7000", KEY_4),
        added(5, "10.0.0.5:7000", KEY_5),
        added(6, "10.0.0.6:7000", KEY_1),
        added(7, "10.0.0.7:7000", KEY_2),
    ];
    let set = PeerSet::of(1, &Membership::new(config(4, members)), &inventory);
    let refused: BTreeSet<NodeId> = set.bad.iter().map(|b| b.id).collect();
    assert_eq!(refused, [4, 5, 6, 7].into(), "{:?}", set.bad);
    assert!(set.bad.iter().all(|b| b.reason.contains("one principal")), "{:?}", set.bad);
    assert_eq!(set.keys.keys().copied().collect::<Vec<_>>(), [2, 3], "node 2 keeps its own key");
}
