//! The short nemesis run inside `cargo test`: three real daemons, clients
//! through real SSH consoles, kill -9 / SIGSTOP / step-down / partition /
//! one-way / flap / full-disk faults, overlapping; the history must be
//! linearizable, every key readable afterwards and the logs in agreement,
//! and each fault must be followed by acknowledged writes. Also: the peer
//! fault file of a real daemon, malformed lines included.

use paxos::nemesis::{FaultKind, NemesisArgs, run};
use std::path::PathBuf;

#[test]
fn a_short_nemesis_run_finds_no_anomaly_and_recovers_after_every_fault() {
    let kinds: Vec<FaultKind> = FaultKind::ALL.into_iter().chain([FaultKind::Wipe]).collect();
    let dir = tempfile::Builder::new().prefix("paxos-nemesis-").tempdir().expect("temp dir");
    let args = NemesisArgs {
        duration: 40,
        clients: 4,
        keys: 4,
        faults: kinds.clone(),
        overlap: true,
        interval: 2,
        seed: Some(20261130),
        dir: Some(dir.path().to_owned()),
        keep: false,
        check: None,
    };
    let plan = args.plan(PathBuf::from(env!("CARGO_BIN_EXE_paxos"))).expect("plan");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let summary = rt.block_on(run(&plan)).expect("the run completes");
    println!("{summary}");
    let logs = || {
        (1..=3)
            .map(|id| std::fs::read_to_string(dir.path().join(format!("node{id}.log"))).unwrap_or_default())
            .map(|log| log.lines().rev().take(30).collect::<Vec<_>>().join("\n"))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    assert!(summary.anomalies.is_empty(), "anomalies:\n{summary}\nlast node log lines:\n{}", logs());
    assert!(summary.total.ok > 0, "{summary}");
    let disk_skipped = summary.notes.iter().any(|n| n.starts_with("disk-full skipped"));
    for kind in kinds {
        let figures = &summary.faults[&kind];
        if kind == FaultKind::DiskFull && disk_skipped {
            // Without the right to mount a tmpfs the fault is skipped, and says so.
            assert_eq!(figures.injected, 0, "{summary}");
            continue;
        }
        assert!(figures.injected >= 1, "no {kind} fault was injected:\n{summary}");
        assert_eq!(figures.unrecovered, 0, "a {kind} fault had no acknowledged write after it:\n{summary}");
    }
    assert!(summary.slots_compared > 0, "{summary}");
    let history = std::fs::read_to_string(&summary.history).expect("history written");
    let events = paxos::nemesis::history::read_jsonl(&history).expect("history reads back");
    assert!(events.len() as u64 >= summary.total.ok * 2, "every ok has its invoke");
}

#[test]
fn bad_arguments_are_refused_with_what_to_change() {
    let base = NemesisArgs {
        duration: 10,
        clients: 2,
        keys: 2,
        faults: vec![],
        overlap: false,
        interval: 1,
        seed: None,
        dir: None,
        keep: false,
        check: None,
    };
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_paxos"));
    for (args, says) in [
        (NemesisArgs { duration: 0, ..base.clone() }, "--duration"),
        (NemesisArgs { clients: 0, ..base.clone() }, "--clients"),
        (NemesisArgs { clients: 100_000, ..base.clone() }, "--clients"),
        (NemesisArgs { keys: 0, ..base.clone() }, "--keys"),
        (NemesisArgs { interval: 0, ..base.clone() }, "--interval"),
    ] {
        let e = args.plan(exe.clone()).expect_err(says).to_string();
        assert!(e.contains(says), "{e}");
    }
    assert!("sideways".parse::<FaultKind>().unwrap_err().contains("one-way, flap and disk-full, and wipe"));
    assert_eq!("one-way".parse::<FaultKind>(), Ok(FaultKind::OneWay));
    assert_eq!("disk-full".parse::<FaultKind>(), Ok(FaultKind::DiskFull));
    let out = std::process::Command::new(&exe).args(["nemesis", "--duration", "0"]).output().expect("run paxos");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"), "{out:?}");
}

#[test]
fn a_recorded_history_with_a_stale_read_fails_the_check_command() {
    let dir = tempfile::Builder::new().prefix("paxos-nemesis-check-").tempdir().expect("temp dir");
    let line = |i: u64, rest: &str| format!(r#"{{"index":{i},"time":{},{rest}}}"#, i * 1000);
    let good = [
        line(0, r#""process":0,"type":"invoke","f":"write","key":"k0","value":"a""#),
        line(1, r#""process":0,"type":"ok","f":"write","key":"k0","value":"a","result":{"previous":null}"#),
        line(2, r#""process":0,"type":"invoke","f":"write","key":"k0","value":"b""#),
        line(3, r#""process":0,"type":"ok","f":"write","key":"k0","value":"b","result":{"previous":"a"}"#),
        line(4, r#""process":1,"type":"invoke","f":"read","key":"k0","value":null"#),
    ];
    let check = |name: &str, last: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{}\n{}\n", good.join("\n"), line(5, last))).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_paxos"))
            .args(["nemesis", "--check"])
            .arg(&path)
            .output()
            .expect("run paxos");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = check("fresh.jsonl", r#""process":1,"type":"ok","f":"read","key":"k0","value":"b""#);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = check("stale.jsonl", r#""process":1,"type":"ok","f":"read","key":"k0","value":"a""#);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not linearizable"), "{out}");
}

#[test]
fn a_fault_file_cuts_a_daemon_off_its_peers_and_a_malformed_line_is_logged_and_ignored() {
    use paxos::nemesis::cluster::LocalCluster;
    use paxos::nemesis::faults::{statuses, wait_for_leader};
    use paxos::ops::api::ReplicaRole;
    use std::time::{Duration, Instant};

    let dir = tempfile::Builder::new().prefix("paxos-fault-file-").tempdir().expect("temp dir");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_paxos"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut cluster = LocalCluster::prepare(dir.path(), &exe, 3, 11).expect("cluster");
        for id in cluster.access.node_ids() {
            cluster.spawn(id).expect("spawn");
        }
        let leader = wait_for_leader(&cluster, Duration::from_secs(30)).await.expect("a first leader");
        let others: Vec<u64> = cluster.access.node_ids().into_iter().filter(|id| *id != leader).collect();
        let rules = format!("drop both {}\ndrop across {}\ndrop both {}\n", others[0], others[0], others[1]);
        cluster.set_peer_faults(leader, &rules).expect("fault file");
        let log = cluster.nodes.iter().find(|n| n.id == leader).map(|n| n.log.clone()).expect("its log");
        let deadline = Instant::now() + Duration::from_secs(30);
        // Cut off both ways (the malformed line in between changes nothing),
        // the other two elect one of themselves.
        let new_leader = loop {
            let found = statuses(&cluster)
                .await
                .into_iter()
                .filter(|(id, _)| *id != leader)
                .filter_map(|(_, s)| s)
                .find(|s| s.role == ReplicaRole::Leader);
            if let Some(s) = found {
                break s.id;
            }
            assert!(Instant::now() < deadline, "no new leader while node {leader} was cut off");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_ne!(new_leader, leader);
        let text = std::fs::read_to_string(&log).expect("node log");
        assert!(
            text.contains("ignored line 2: \"drop across"),
            "the malformed line is not in node {leader}'s log:\n{text}"
        );
        // Cleared: all three agree on one leader again.
        cluster.set_peer_faults(leader, "").expect("fault file");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = statuses(&cluster).await;
            let leaders: Vec<Option<u64>> = all.iter().map(|(_, s)| s.as_ref().and_then(|s| s.leader)).collect();
            if leaders.len() == 3 && leaders.iter().all(|l| l.is_some() && *l == leaders[0]) {
                break;
            }
            assert!(Instant::now() < deadline, "the nodes did not agree on a leader after healing: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster.stop_all();
    });
}
