//! Write-ahead log figures on this machine: the fdatasync latency of one
//! small append, and group-commit throughput by batch size.
//!
//! `cargo bench --bench wal`. Prints figures and asserts nothing; bounded
//! in count and time (a few seconds per figure at most).

use paxos::consensus::ballot::Ballot;
use paxos::consensus::records::Record;
use paxos::state_machine::{Command, Entry, Op};
use paxos::storage::Wal;
use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant};

const LATENCY_SYNCS: usize = 500;
const WARMUP_SYNCS: usize = 20;
const BATCH_SIZES: [usize; 3] = [1, 16, 256];
const MAX_SYNCS_PER_BATCH_SIZE: usize = 1000;
const TIME_LIMIT: Duration = Duration::from_secs(3);
const VALUE_LEN: usize = 100;

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory under target/");
    print_machine(dir.path());
    println!();
    sync_latency(dir.path());
    println!();
    group_commit(dir.path());
}

fn command_output(program: &str, args: &[&str]) -> String {
    Process::new(program)
        .args(args)
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn print_machine(dir: &Path) {
    let machine = paxos::cli::machine::Machine::probe();
    println!("wal bench");
    println!("date:    {}", command_output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]));
    println!("machine: {}", machine.uname);
    println!("cpus:    {} x {}", machine.cpus, machine.cpu_model);
    // fdatasync waits for the file system journal, which other writers on
    // the same disk share: a busy machine shows in the figures.
    println!("loadavg: {}", machine.loadavg);
    let fs = command_output("stat", &["-f", "-c", "%T", &dir.display().to_string()]);
    println!("dir:     {} ({fs})", dir.display());
}

fn accepted(slot: u64) -> Record {
    let value: String = std::iter::repeat_n('v', VALUE_LEN).collect();
    Record::Accepted {
        slot,
        ballot: Ballot::new(7, 2),
        entry: Entry::Batch {
            commands: vec![Command { client: 42, seq: slot, op: Op::Put { key: format!("key-{slot}"), value } }],
        },
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One small record per sync: what a lone promise or vote costs.
fn sync_latency(dir: &Path) {
    let path = dir.join("latency.log");
    let (mut wal, _) = Wal::<Record>::open(&path).expect("open the log");
    let mut samples = Vec::with_capacity(LATENCY_SYNCS);
    let started = Instant::now();
    for round in 0..WARMUP_SYNCS + LATENCY_SYNCS {
        let record = Record::Promised { ballot: Ballot::new(round as u64, 1) };
        let t = Instant::now();
        wal.append(&[record]).expect("append");
        wal.sync().expect("sync");
        if round >= WARMUP_SYNCS {
            samples.push(t.elapsed());
        }
        if started.elapsed() > TIME_LIMIT * 4 {
            break;
        }
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "append + fdatasync of one small record ({} bytes in the file per record)",
        wal.durable_len() / (WARMUP_SYNCS + samples.len()) as u64
    );
    println!("{:>8} {:>10} {:>10} {:>10} {:>10} {:>10}", "syncs", "median", "mean", "p99", "min", "max");
    println!(
        "{:>8} {:>8.0}us {:>8.0}us {:>8.0}us {:>8.0}us {:>8.0}us",
        samples.len(),
        micros(at(0.5)),
        micros(mean),
        micros(at(0.99)),
        micros(samples[0]),
        micros(samples[samples.len() - 1])
    );
    drop(wal);
    let _ = std::fs::remove_file(&path);
}

/// Many records per sync: the runtime's group commit.
fn group_commit(dir: &Path) {
    println!("group commit: Accepted records with one {VALUE_LEN}-byte put each, one write + fdatasync per batch");
    println!("{:>6} {:>8} {:>12} {:>12} {:>10} {:>12}", "batch", "syncs", "records/s", "syncs/s", "MiB/s", "us/sync");
    for batch in BATCH_SIZES {
        let path = dir.join(format!("group-{batch}.log"));
        let (mut wal, _) = Wal::<Record>::open(&path).expect("open the log");
        // The same batch each time: building records is not the log's cost.
        let records: Vec<Record> = (0..batch as u64).map(accepted).collect();
        let mut syncs = 0;
        let started = Instant::now();
        while syncs < MAX_SYNCS_PER_BATCH_SIZE && started.elapsed() < TIME_LIMIT {
            wal.append(&records).expect("append");
            wal.sync().expect("sync");
            syncs += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        let written = (syncs * batch) as f64;
        println!(
            "{:>6} {:>8} {:>12.0} {:>12.0} {:>10.1} {:>12.0}",
            batch,
            syncs,
            written / secs,
            syncs as f64 / secs,
            wal.durable_len() as f64 / secs / (1024.0 * 1024.0),
            secs * 1e6 / syncs as f64
        );
        drop(wal);
        let _ = std::fs::remove_file(&path);
    }
}
