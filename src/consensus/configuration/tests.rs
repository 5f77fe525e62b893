use super::*;

const ALPHA: u64 = DEFAULT_ALPHA;

fn three() -> Configuration {
    let members = (1..=3).map(|id| (id, Member::with_roles(Roles::default()))).collect();
    Configuration {
        epoch: 0,
        members,
        phase1_quorum: None,
        phase2_quorum: None,
        retired: BTreeSet::new(),
        alpha: ALPHA,
    }
}

fn named(name: &str, roles: Roles) -> Member {
    Member { roles, name: name.into(), address: format!("{name}:7000"), key: "ssh-ed25519 AAAA".into() }
}

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

#[test]
fn a_change_takes_effect_alpha_slots_after_its_slot() {
    let mut m = Membership::new(three());
    let (epoch, effective) = m.decide(10, &MemberChange::Add { id: 4, member: named("n4", Roles::LEARNER) }).unwrap();
    assert_eq!((epoch, effective), (1, 10 + ALPHA));
    assert_eq!(m.at(10 + ALPHA - 1).epoch, 0, "the last slot of the old configuration");
    assert_eq!(m.at(10 + ALPHA).epoch, 1, "the first slot of the new one");
    assert!(m.is_member(4) && !m.current.members.contains_key(&4));
    m.settle(10 + ALPHA - 1);
    assert!(m.pending.is_some(), "not yet");
    m.settle(10 + ALPHA);
    assert!(m.pending.is_none());
    assert_eq!(m.current.epoch, 1);
    assert_eq!(m.current.roles(4), Some(Roles::LEARNER));
}

#[test]
fn one_change_at_a_time() {
    let mut m = Membership::new(three());
    m.decide(5, &MemberChange::Add { id: 4, member: named("n4", Roles::LEARNER) }).unwrap();
    let refused = m.decide(6, &MemberChange::Remove { id: 3 }).unwrap_err();
    assert!(refused.contains("takes effect at slot 133; one change at a time"), "{refused}");
    assert_eq!(m.pending.as_ref().unwrap().config.epoch, 1, "the refused change left nothing behind");
    // Once the first is in force, the next one is decided.
    let (epoch, effective) = m.decide(5 + ALPHA, &MemberChange::Remove { id: 3 }).unwrap();
    assert_eq!((epoch, effective), (2, 5 + 2 * ALPHA));
    assert!(m.current.members.contains_key(&4), "the first change settled on the way");
}

#[test]
fn changes_that_cannot_work_are_refused_with_the_reason() {
    let c = three();
    let refused = |change: MemberChange| c.changed(&change).unwrap_err();
    assert!(refused(MemberChange::Add { id: 2, member: named("x", Roles::LEARNER) }).contains("already a member"));
    assert!(refused(MemberChange::Add { id: 0, member: named("x", Roles::LEARNER) }).contains("reserved"));
    assert!(refused(MemberChange::Remove { id: 9 }).contains("node 9 is not a member"));
    assert!(refused(MemberChange::SetRoles { id: 9, roles: Roles::LEARNER }).contains("not a member"));
    assert!(refused(MemberChange::SetRoles { id: 1, roles: Roles::default() }).contains("already has the roles"));
    let learners = |c: &Configuration| {
        let mut c = c.clone();
        c.members.values_mut().for_each(|m| m.roles = Roles::LEARNER);
        c
    };
    let mut one_proposer = learners(&c);
    one_proposer.members.get_mut(&1).unwrap().roles = Roles::default();
    let no_proposer = one_proposer.changed(&MemberChange::SetRoles { id: 1, roles: Roles::LEARNER }).unwrap_err();
    assert!(no_proposer.contains("no proposer"), "{no_proposer}");
    let mut only = learners(&c);
    only.members.get_mut(&1).unwrap().roles = Roles { proposer: true, acceptor: false, learner: true };
    only.members.get_mut(&2).unwrap().roles = Roles { proposer: false, acceptor: true, learner: true };
    let no_acceptor = only.changed(&MemberChange::Remove { id: 2 }).unwrap_err();
    assert!(no_acceptor.contains("no acceptors"), "{no_acceptor}");
    // Flexible quorums that a change would break are refused, not shrunk.
    let flexible = Configuration { phase1_quorum: Some(3), phase2_quorum: Some(1), ..c.clone() };
    let broken = flexible.changed(&MemberChange::Remove { id: 3 }).unwrap_err();
    assert!(broken.contains("larger than the 2 acceptors"), "{broken}");
}

#[test]
fn removed_ids_and_taken_names_are_never_reused() {
    let mut m = Membership::new(three());
    m.decide(0, &MemberChange::Remove { id: 3 }).unwrap();
    m.settle(ALPHA);
    let reuse = m.decide(ALPHA, &MemberChange::Add { id: 3, member: named("n3", Roles::LEARNER) }).unwrap_err();
    assert!(reuse.contains("ids are never reused"), "{reuse}");
    m.decide(ALPHA, &MemberChange::Add { id: 4, member: named("n4", Roles::LEARNER) }).unwrap();
    m.settle(2 * ALPHA);
    let twice = m.decide(2 * ALPHA, &MemberChange::Add { id: 5, member: named("n4", Roles::LEARNER) }).unwrap_err();
    assert!(twice.contains("node 4 already has the name n4"), "{twice}");
    assert_eq!(m.ids_ever(), 4, "1, 2, 4 and the retired 3");
}

#[test]
fn replace_swaps_a_member_in_one_change() {
    let c = three();
    let next = c.changed(&MemberChange::Replace { remove: 2, id: 7, member: named("n7", Roles::default()) }).unwrap();
    assert_eq!(next.acceptors().collect::<Vec<_>>(), vec![1, 3, 7]);
    assert!(next.retired.contains(&2));
    let bad = c.changed(&MemberChange::Replace { remove: 9, id: 7, member: named("n7", Roles::default()) });
    assert!(bad.unwrap_err().contains("node 9 is not a member"));
}

#[test]
fn quorums_count_voters_of_every_configuration_in_force_or_pending() {
    let mut m = Membership::new(three());
    // 3 -> 5 acceptors: quorums of 2 of {1,2,3}, and 3 of {1,..,5}.
    m.decide(0, &MemberChange::Add { id: 4, member: named("n4", Roles::default()) }).unwrap();
    m.settle(ALPHA);
    m.decide(ALPHA, &MemberChange::Add { id: 5, member: named("n5", Roles::default()) }).unwrap();
    assert_eq!(m.current.acceptors().count(), 4);
    assert!(m.phase1_quorum_in(&set(&[1, 2, 3])), "3 of 4, and 3 of 5");
    assert!(!m.phase1_quorum_in(&set(&[1, 2])), "2 of 4 is not a quorum");
    assert!(!m.phase2_quorum_in(&set(&[1, 4, 9])), "9 is nobody, 2 of 4 is not a quorum");
    assert!(m.phase1_quorum_in(&set(&[1, 2, 4])));
    assert!(m.at(2 * ALPHA).phase2_quorum_in(&set(&[3, 4, 5])));
    assert!(!m.at(2 * ALPHA - 1).phase2_quorum_in(&set(&[5, 4])));
    assert!(m.phase1_out_of_reach(&set(&[1, 2])), "2 refusals of 4 leave 2 < 3");
    assert!(m.phase1_out_of_reach(&set(&[5, 4, 3])), "3 refusals of 5 leave 2 < 3");
    assert!(!m.phase1_out_of_reach(&set(&[5])), "1 refusal leaves a quorum in both");
    assert_eq!(m.acceptor_ids(), vec![1, 2, 3, 4, 5]);
    assert_eq!(m.roles(5), Some(Roles::default()));
    assert_eq!(m.roles(6), None);
}

#[test]
fn a_membership_survives_json() {
    let mut m = Membership::new(three());
    m.decide(3, &MemberChange::Replace { remove: 1, id: 4, member: named("n4", Roles::default()) }).unwrap();
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Membership>(&json).unwrap(), m);
    let change = MemberChange::SetRoles { id: 4, roles: Roles::LEARNER };
    let json = serde_json::to_string(&change).unwrap();
    assert!(json.starts_with(r#"{"change":"set_roles","id":4,"#), "{json}");
    assert_eq!(serde_json::from_str::<MemberChange>(&json).unwrap(), change);
}
