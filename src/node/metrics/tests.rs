use super::*;
use crate::consensus::ballot::Ballot;
use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

fn parsed(m: &Metrics) -> Exposition {
    let text = m.render();
    parse_openmetrics(&text).unwrap_or_else(|e| panic!("not OpenMetrics text ({e:?}):\n{text}"))
}

/// The single sample of an unlabelled family, as a number.
fn value(e: &Exposition, family: &str) -> f64 {
    let f = e.families.get(family).unwrap_or_else(|| panic!("no family {family}"));
    let sample = f.iter_samples().next().unwrap_or_else(|| panic!("{family} has no sample"));
    match &sample.value {
        OpenMetricsValue::Counter(c) => c.value.as_f64(),
        OpenMetricsValue::Gauge(g) => g.as_f64(),
        other => panic!("{family} is {other:?}"),
    }
}

fn status(leader: Option<NodeId>, role: &str, elections: u64) -> Status {
    Status {
        id: 1,
        roles: Default::default(),
        role: role.into(),
        leader,
        ballot: Ballot::default(),
        promised: Ballot::default(),
        commit_index: 7,
        applied_index: 6,
        log_start: 2,
        snapshot_through: 3,
        ticks_since_leader: None,
        pending_requests: 4,
        in_flight: 0,
        elections_started: elections,
        incarnation: 9,
        voting: "voter".into(),
    }
}

#[test]
fn every_operator_facing_name_is_present_with_its_type() {
    let m = Metrics::new();
    m.observe(&status(Some(1), "leader", 1), 3);
    m.peers([(2, PeerSample { connected: true, dropped: 0, clock_offset: Some(0.25) })]);
    m.round_trip(2, Duration::from_micros(150));
    let e = parsed(&m);
    let expected = [
        ("paxos_has_leader", OpenMetricsType::Gauge),
        ("paxos_is_leader", OpenMetricsType::Gauge),
        ("paxos_leader_changes_seen", OpenMetricsType::Counter),
        ("paxos_proposals_committed", OpenMetricsType::Counter),
        ("paxos_proposals_failed", OpenMetricsType::Counter),
        ("paxos_proposals_pending", OpenMetricsType::Gauge),
        ("paxos_commit_index", OpenMetricsType::Gauge),
        ("paxos_applied_index", OpenMetricsType::Gauge),
        ("paxos_wal_fsync_duration_seconds", OpenMetricsType::Histogram),
        ("paxos_commit_duration_seconds", OpenMetricsType::Histogram),
        ("paxos_elections_started", OpenMetricsType::Counter),
        ("paxos_snapshot_index", OpenMetricsType::Gauge),
        ("paxos_peer_connected", OpenMetricsType::Gauge),
        ("paxos_peer_messages_dropped", OpenMetricsType::Counter),
        ("paxos_peer_round_trip_seconds", OpenMetricsType::Histogram),
        ("paxos_clock_offset_seconds", OpenMetricsType::Gauge),
        ("paxos_build_info", OpenMetricsType::Gauge),
    ];
    for (name, kind) in expected {
        let family = e.families.get(name).unwrap_or_else(|| panic!("{name} missing from\n{}", m.render()));
        assert_eq!(family.family_type, kind, "{name}");
    }
    assert_eq!(value(&e, "paxos_has_leader"), 1.0);
    assert_eq!(value(&e, "paxos_is_leader"), 1.0);
    assert_eq!(value(&e, "paxos_commit_index"), 7.0);
    assert_eq!(value(&e, "paxos_applied_index"), 6.0);
    assert_eq!(value(&e, "paxos_proposals_pending"), 4.0);
    assert_eq!(value(&e, "paxos_snapshot_index"), 3.0);
    let build = &e.families["paxos_build_info"];
    let sample = build.iter_samples().next().unwrap();
    let labels = sample.get_labelset().unwrap();
    assert_eq!(labels.get_label_value("version"), Some(env!("CARGO_PKG_VERSION")));
}

#[test]
fn leader_changes_count_each_new_leader_and_elections_follow_the_core() {
    let m = Metrics::new();
    m.observe(&status(None, "follower", 0), 1);
    assert_eq!(value(&parsed(&m), "paxos_leader_changes_seen"), 0.0);
    assert_eq!(value(&parsed(&m), "paxos_has_leader"), 0.0);
    m.observe(&status(Some(2), "follower", 0), 1);
    m.observe(&status(Some(2), "follower", 0), 1);
    // Losing the leader and finding the same one again is no change.
    m.observe(&status(None, "candidate", 2), 1);
    m.observe(&status(Some(2), "follower", 2), 1);
    m.observe(&status(Some(1), "leader", 3), 1);
    let e = parsed(&m);
    assert_eq!(value(&e, "paxos_leader_changes_seen"), 2.0);
    assert_eq!(value(&e, "paxos_elections_started"), 3.0);
    assert_eq!(value(&e, "paxos_is_leader"), 1.0);
}

#[test]
fn proposals_and_latencies_resolve_a_tenth_of_a_millisecond() {
    let m = Metrics::new();
    m.proposal_committed(Duration::from_micros(80));
    m.proposal_committed(Duration::from_millis(3));
    m.proposal_failed();
    m.fsync(Duration::from_micros(90), 5);
    m.fsync(Duration::from_micros(300), 7);
    let e = parsed(&m);
    assert_eq!(value(&e, "paxos_proposals_committed"), 2.0);
    assert_eq!(value(&e, "paxos_proposals_failed"), 1.0);
    for (name, count) in [("paxos_wal_fsync_duration_seconds", 2), ("paxos_commit_duration_seconds", 2)] {
        let sample = e.families[name].iter_samples().next().unwrap();
        let OpenMetricsValue::Histogram(h) = &sample.value else { panic!("{name} is not a histogram") };
        assert_eq!(h.count, Some(count), "{name}");
        let first = h.buckets.iter().map(|b| b.upper_bound).fold(f64::INFINITY, f64::min);
        assert!(first <= 0.0001, "{name}: first bucket {first}");
        // Exactly one observation lies under 0.1 ms.
        let under = h.buckets.iter().find(|b| b.upper_bound == first).unwrap();
        assert_eq!(under.count.as_f64(), 1.0, "{name}");
    }
}

#[test]
fn peer_samples_label_by_peer_and_drops_never_go_back() {
    let m = Metrics::new();
    m.peers([
        (2, PeerSample { connected: true, dropped: 5, clock_offset: None }),
        (3, PeerSample { connected: false, dropped: 0, clock_offset: None }),
    ]);
    m.peers([(2, PeerSample { connected: false, dropped: 9, clock_offset: None })]);
    let e = parsed(&m);
    let by_peer = |family: &str| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = e.families[family]
            .iter_samples()
            .map(|s| {
                let peer = s.get_labelset().unwrap().get_label_value("peer").unwrap().to_owned();
                let n = match &s.value {
                    OpenMetricsValue::Counter(c) => c.value.as_f64(),
                    OpenMetricsValue::Gauge(g) => g.as_f64(),
                    other => panic!("{other:?}"),
                };
                (peer, n)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(by_peer("paxos_peer_connected"), vec![("2".into(), 0.0), ("3".into(), 0.0)]);
    assert_eq!(by_peer("paxos_peer_messages_dropped"), vec![("2".into(), 9.0), ("3".into(), 0.0)]);
}

#[test]
fn the_text_keeps_the_older_names_operators_may_use() {
    let m = Metrics::new();
    m.sent("accept");
    m.sent("accept");
    m.applied(3);
    let e = parsed(&m);
    assert_eq!(value(&e, "paxos_applied_slots"), 3.0);
    let sent = e.families["paxos_messages_sent"].iter_samples().next().unwrap();
    assert_eq!(sent.get_labelset().unwrap().get_label_value("kind"), Some("accept"));
    for name in ["paxos_promised_round", "paxos_wal_records_per_fsync", "paxos_inputs_per_batch"] {
        assert!(e.families.contains_key(name), "{name}");
    }
    assert!(m.render().ends_with("# EOF\n"));
}

#[test]
fn clock_offsets_and_round_trips_are_per_peer_and_unknown_offsets_leave() {
    let m = Metrics::new();
    let sample = |clock_offset| PeerSample { connected: true, dropped: 0, clock_offset };
    m.peers([(2, sample(Some(2.0005))), (3, sample(Some(-0.75)))]);
    for micros in [90, 120, 5_000] {
        m.round_trip(2, Duration::from_micros(micros));
    }
    m.round_trip(3, Duration::from_micros(200));
    let e = parsed(&m);
    let mut offsets: Vec<(String, f64)> = e.families["paxos_clock_offset_seconds"]
        .iter_samples()
        .map(|s| {
            let OpenMetricsValue::Gauge(g) = &s.value else { panic!("{:?}", s.value) };
            (s.get_labelset().unwrap().get_label_value("peer").unwrap().to_owned(), g.as_f64())
        })
        .collect();
    offsets.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(offsets, vec![("2".into(), 2.0005), ("3".into(), -0.75)]);
    for s in e.families["paxos_peer_round_trip_seconds"].iter_samples() {
        let peer = s.get_labelset().unwrap().get_label_value("peer").unwrap().to_owned();
        let OpenMetricsValue::Histogram(h) = &s.value else { panic!("{:?}", s.value) };
        let first = h.buckets.iter().map(|b| b.upper_bound).fold(f64::INFINITY, f64::min);
        assert!(first <= 0.0001, "a loopback round trip must be resolved: {first}");
        let under_first = h.buckets.iter().find(|b| b.upper_bound == first).unwrap().count.as_f64();
        match peer.as_str() {
            "2" => assert_eq!((h.count, under_first), (Some(3), 1.0)),
            "3" => assert_eq!((h.count, under_first), (Some(1), 0.0)),
            other => panic!("peer {other}"),
        }
    }
    // No estimate any more (the peer went quiet): its offset is not reported.
    m.peers([(3, sample(None))]);
    let e = parsed(&m);
    let peers: Vec<_> = e.families["paxos_clock_offset_seconds"]
        .iter_samples()
        .map(|s| s.get_labelset().unwrap().get_label_value("peer").unwrap().to_owned())
        .collect();
    assert_eq!(peers, ["2"]);
}
