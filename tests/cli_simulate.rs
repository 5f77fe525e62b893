//! `paxos simulate` as an operator runs it: a range of seeds, one seed to
//! replay, and the replay line a failure prints.

use std::process::Command;

fn paxos(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paxos")).args(args).output().expect("run paxos")
}

#[test]
fn simulate_runs_a_range_of_seeds_and_reports_them() {
    let out = paxos(&["simulate", "--seeds", "12", "--first", "100"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("12 seeds from 100: 12 passed, 0 failed"), "{stdout}");
}

#[test]
fn simulate_replays_one_seed() {
    let out = paxos(&["simulate", "--seed", "7", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(v["seed"], 7);
    assert_eq!(v["ok"], true);
}

#[test]
fn a_failure_names_its_seed_and_the_command_that_replays_it() {
    let failure = paxos::sim::Failure { seed: 42, tick: 9, what: "agreement violated".into() };
    let text = failure.to_string();
    assert!(text.contains("seed 42 failed at tick 9: agreement violated"), "{text}");
    assert!(text.contains("replay: cargo run --release -- simulate --seed 42"), "{text}");
}
