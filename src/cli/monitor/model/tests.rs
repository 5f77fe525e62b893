use super::*;

fn nodes() -> Vec<MonitoredNode> {
    (1..=3)
        .map(|id| MonitoredNode { id, name: format!("node{id}"), roles: vec!["acceptor".into(), "learner".into()] })
        .collect()
}

fn status(id: NodeId, role: &str, round: u64, leader: NodeId, commit: u64) -> StatusView {
    StatusView {
        id,
        roles: vec!["proposer".into(), "acceptor".into(), "learner".into()],
        role: role.into(),
        ballot: Ballot { round, node: leader },
        commit_index: commit,
        applied_index: commit,
        last_heartbeat_age_ms: (role != "leader").then_some(30),
        clock: Vec::new(),
    }
}

fn up(s: StatusView) -> NodeReport {
    NodeReport { id: s.id, status: Ok(s), fsync: None }
}

fn down(id: NodeId) -> NodeReport {
    NodeReport { id, status: Err("connection refused".into()), fsync: None }
}

fn snapshot(second: u64, nodes: Vec<NodeReport>) -> Snapshot {
    Snapshot {
        at: Duration::from_secs(second),
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + second),
        nodes,
    }
}

/// Node `leader` leads at ballot `round`; everyone at `commit`.
fn steady(second: u64, round: u64, leader: NodeId, commit: u64) -> Snapshot {
    let nodes = (1..=3)
        .map(|id| up(status(id, if id == leader { "leader" } else { "follower" }, round, leader, commit)))
        .collect();
    snapshot(second, nodes)
}

fn kinds(m: &Monitor) -> Vec<EventKind> {
    m.events().iter().map(|e| e.kind.clone()).collect()
}

#[test]
fn the_first_observation_names_the_leader_and_marks_one_row() {
    let mut m = Monitor::new(nodes(), 100);
    m.observe(steady(0, 1, 2, 10));
    assert_eq!(kinds(&m), vec![EventKind::LeaderIs { node: 2, ballot: Ballot { round: 1, node: 2 } }]);
    let rows = m.rows();
    assert_eq!(rows.iter().filter(|r| r.is_leader).map(|r| r.id).collect::<Vec<_>>(), vec![2]);
    assert!(m.all_up());
    // The node's own roles win over the inventory's.
    assert_eq!(rows[0].roles.len(), 3);
}

#[test]
fn a_leader_change_is_an_election_then_a_change() {
    let mut m = Monitor::new(nodes(), 100);
    m.observe(steady(0, 1, 1, 10));
    m.observe(steady(1, 2, 3, 12));
    let new = Ballot { round: 2, node: 3 };
    assert_eq!(
        kinds(&m)[1..],
        [
            EventKind::SteppedDown { node: 1, now: "follower".into() },
            EventKind::Election { from: Ballot { round: 1, node: 1 }, to: new },
            EventKind::LeaderChanged { from: 1, to: 3, ballot: new },
        ]
    );
    // Events carry the time of the snapshot that showed them.
    assert_eq!(m.events()[3].wall, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_001));
    // Nothing new while nothing changes.
    m.observe(steady(2, 2, 3, 14));
    assert_eq!(m.events().len(), 4);
}

#[test]
fn a_lost_leader_then_a_new_one_then_the_node_back() {
    let mut m = Monitor::new(nodes(), 100);
    m.observe(steady(0, 1, 1, 10));
    // Node 1 dies; the others still follow it for a moment.
    m.observe(snapshot(1, vec![down(1), up(status(2, "follower", 1, 1, 10)), up(status(3, "follower", 1, 1, 10))]));
    assert_eq!(
        kinds(&m)[1..],
        [EventKind::Lost { node: 1, reason: "connection refused".into() }, EventKind::NoLeader { previous: Some(1) }]
    );
    assert!(!m.all_up());
    let rows = m.rows();
    assert_eq!(rows[0].up, Some(false));
    assert_eq!(rows[0].error.as_deref(), Some("connection refused"));
    assert_eq!(rows[0].commit_index, None);
    assert!(rows.iter().all(|r| !r.is_leader));
    // Node 2 wins an election.
    m.observe(snapshot(2, vec![down(1), up(status(2, "leader", 2, 2, 11)), up(status(3, "follower", 2, 2, 11))]));
    let ballot = Ballot { round: 2, node: 2 };
    assert_eq!(
        kinds(&m)[3..],
        [
            EventKind::Election { from: Ballot { round: 1, node: 1 }, to: ballot },
            EventKind::LeaderElected { node: 2, ballot }
        ]
    );
    // Still down: no repeated event. Then back.
    m.observe(snapshot(3, vec![down(1), up(status(2, "leader", 2, 2, 11)), up(status(3, "follower", 2, 2, 11))]));
    assert_eq!(m.events().len(), 5);
    m.observe(steady(4, 2, 2, 11));
    assert_eq!(kinds(&m)[5..], [EventKind::Back { node: 1 }]);
    assert!(m.all_up());
}

#[test]
fn a_node_down_from_the_start_is_down_not_lost() {
    let mut m = Monitor::new(nodes(), 100);
    m.observe(snapshot(0, vec![down(1), up(status(2, "leader", 1, 2, 5)), up(status(3, "follower", 1, 2, 5))]));
    assert_eq!(
        kinds(&m),
        vec![
            EventKind::Down { node: 1, reason: "connection refused".into() },
            EventKind::LeaderIs { node: 2, ballot: Ballot { round: 1, node: 2 } }
        ]
    );
}

#[test]
fn of_two_nodes_that_say_they_lead_the_higher_ballot_leads() {
    let mut m = Monitor::new(nodes(), 100);
    m.observe(snapshot(
        0,
        vec![up(status(1, "leader", 1, 1, 5)), up(status(2, "leader", 2, 2, 7)), up(status(3, "follower", 2, 2, 7))],
    ));
    assert_eq!(m.leader(), Some(2));
    assert_eq!(m.rows().iter().filter(|r| r.is_leader).count(), 1);
}

#[test]
fn lag_is_measured_from_the_leader_and_falling_behind_is_an_event() {
    let mut m = Monitor::new(nodes(), 100);
    m.observe(steady(0, 1, 1, 10));
    m.observe(snapshot(
        1,
        vec![
            up(status(1, "leader", 1, 1, 500)),
            up(status(2, "follower", 1, 1, 450)),
            up(status(3, "follower", 1, 1, 300)),
        ],
    ));
    let lags: Vec<_> = m.rows().iter().map(|r| r.lag).collect();
    assert_eq!(lags, vec![Some(0), Some(50), Some(200)]);
    assert_eq!(kinds(&m)[1..], [EventKind::FellBehind { node: 3, lag: 200 }]);
    m.observe(steady(2, 1, 1, 520));
    assert_eq!(kinds(&m)[2..], [EventKind::CaughtUp { node: 3 }]);
}

#[test]
fn with_no_leader_lag_is_from_the_highest_commit() {
    let mut m = Monitor::new(nodes(), 100);
    m.observe(snapshot(
        0,
        vec![
            up(status(1, "candidate", 1, 1, 40)),
            up(status(2, "follower", 1, 1, 42)),
            up(status(3, "candidate", 1, 1, 30)),
        ],
    ));
    let lags: Vec<_> = m.rows().iter().map(|r| r.lag).collect();
    assert_eq!(lags, vec![Some(2), Some(0), Some(12)]);
}

#[test]
fn commits_per_second_come_from_commit_index_deltas() {
    let mut m = Monitor::new(nodes(), 1000);
    m.observe(steady(10, 1, 1, 100));
    assert!(m.rows().iter().all(|r| r.commits_per_sec.is_none()), "one sample is no rate");
    m.observe(steady(12, 1, 1, 400));
    assert!(m.rows().iter().all(|r| r.commits_per_sec == Some(150.0)));
    // A node that was down has no rate until it was seen twice again.
    m.observe(snapshot(13, vec![up(status(1, "leader", 1, 1, 450)), down(2), up(status(3, "follower", 1, 1, 450))]));
    m.observe(steady(14, 1, 1, 500));
    let rates: Vec<_> = m.rows().iter().map(|r| r.commits_per_sec).collect();
    assert_eq!(rates, vec![Some(50.0), None, Some(50.0)]);
    // An index that went back (a restarted node catching up) is not a negative rate.
    m.observe(snapshot(
        15,
        vec![
            up(status(1, "leader", 1, 1, 500)),
            up(status(2, "follower", 1, 1, 20)),
            up(status(3, "follower", 1, 1, 500)),
        ],
    ));
    assert_eq!(m.rows()[1].commits_per_sec, Some(0.0));
}

#[test]
fn fsync_p99_uses_the_delta_between_refreshes() {
    let mut m = Monitor::new(nodes(), 100);
    let with = |second, h: Histogram| {
        let mut s = steady(second, 1, 1, 10);
        s.nodes[0].fsync = Some(h);
        s
    };
    let slow = Histogram { buckets: vec![(0.001, 0.0), (0.1, 100.0), (f64::INFINITY, 100.0)] };
    m.observe(with(0, slow.clone()));
    let cumulative = m.rows()[0].fsync_p99_seconds.unwrap();
    assert!(cumulative > 0.09, "{cumulative}");
    let fast = Histogram { buckets: vec![(0.001, 100.0), (0.1, 200.0), (f64::INFINITY, 200.0)] };
    m.observe(with(1, fast));
    let recent = m.rows()[0].fsync_p99_seconds.unwrap();
    assert!(recent < 0.001, "{recent}");
    assert_eq!(m.rows()[1].fsync_p99_seconds, None);
}

#[test]
fn clock_offsets_are_the_leaders_measurements() {
    // A status as a node with clock estimates writes it.
    let json = r#"{"cluster":"c","id":2,"name":"node2","address":"127.0.0.1:7102",
        "roles":["proposer","acceptor","learner"],"role":"leader","leader":2,
        "ballot":{"round":3,"node":2},"promised":{"round":3,"node":2},"commit_index":9,
        "applied_index":9,"last_heartbeat_age_ms":null,"pending_requests":0,"uptime_ms":1000,
        "voting":"voter","incarnation":7,"pid":4242,
        "clock":[{"peer":1,"offset_ms":-12.5,"error_ms":0.4,"round_trip_ms":0.8},
                 {"peer":3,"offset_ms":250,"error_ms":1,"round_trip_ms":2}]}"#;
    let leader: StatusView = serde_json::from_str(json).unwrap();
    assert_eq!(leader.clock.len(), 2);
    // One without the field (a node from before clock estimates).
    let json = r#"{"cluster":"c","id":1,"name":"node1","address":"a","roles":[],"role":"follower",
        "leader":2,"ballot":{"round":3,"node":2},"promised":{"round":3,"node":2},"commit_index":9,
        "applied_index":9,"last_heartbeat_age_ms":40,"pending_requests":0,"uptime_ms":1000}"#;
    let follower: StatusView = serde_json::from_str(json).unwrap();
    assert!(follower.clock.is_empty());
    let mut third = follower.clone();
    third.id = 3;
    let mut m = Monitor::new(nodes(), 100);
    m.observe(snapshot(0, vec![up(follower), up(leader), up(third)]));
    let clocks: Vec<_> = m.rows().into_iter().map(|r| r.clock).collect();
    assert_eq!(clocks, vec![ClockCell::OffsetMs(-12.5), ClockCell::Reference, ClockCell::OffsetMs(250.0)]);
    // With no leader there is no reference.
    let mut m = Monitor::new(nodes(), 100);
    m.observe(snapshot(0, vec![down(1), down(2), down(3)]));
    assert!(m.rows().iter().all(|r| r.clock == ClockCell::Unknown));
}

#[test]
fn the_event_list_is_bounded() {
    let mut m = Monitor::new(nodes(), 100);
    for second in 0..(MAX_EVENTS as u64 + 10) {
        let leader = 1 + second % 3;
        m.observe(steady(second, second + 1, leader, 10));
    }
    assert_eq!(m.events().len(), MAX_EVENTS);
}
