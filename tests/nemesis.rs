//! The short nemesis run inside `cargo test`: three real daemons, clients
//! through real SSH consoles, kill -9 / SIGSTOP / step-down faults; the
//! history must be linearizable, every key readable afterwards and the
//! logs in agreement, and each fault must be followed by acknowledged writes.

use paxos::nemesis::{FaultKind, NemesisArgs, run};
use std::path::PathBuf;

#[test]
fn a_short_nemesis_run_finds_no_anomaly_and_recovers_after_every_fault() {
    let dir = tempfile::Builder::new().prefix("paxos-nemesis-").tempdir().expect("temp dir");
    let args = NemesisArgs {
        duration: 30,
        clients: 4,
        keys: 4,
        faults: FaultKind::ALL.to_vec(),
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
    for kind in FaultKind::ALL {
        let figures = &summary.faults[&kind];
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
    assert!("partition".parse::<FaultKind>().unwrap_err().contains("kill, pause and transfer, and wipe"));
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
