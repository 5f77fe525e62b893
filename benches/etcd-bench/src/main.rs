//! Closed-loop load on an etcd cluster through its gRPC API, shaped like
//! `paxos bench`: N clients spread round-robin over the endpoints, each
//! with its own connection, each sending its next request when the last one
//! was answered; puts of fixed-size values on uniformly random keys, or
//! linearizable gets (etcd's default, not `serializable`); a warm-up that is
//! not counted; one JSON document with ops/s and latency percentiles in the
//! field names `paxos bench --json` uses.
//!
//! A request that fails (its error, or no answer within `--timeout`) is
//! counted and the client sends its next request at once, as a client that
//! retries right away. `--ack-log FILE` records every answered request with
//! its wall-clock times, in the format of `paxos bench --ack-log`.
//! `--status` instead prints each endpoint's member id, leader, term, raft
//! index, applied index and revision.

use clap::Parser;
use etcd_client::{Client, ConnectOptions, GetOptions};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Comma-separated client URLs, e.g. http://127.0.0.1:23791,http://127.0.0.1:23792
    #[arg(long)]
    endpoints: String,
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Seconds measured (with --count: the most seconds to take).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many measured requests in all, or at --duration if that comes first.
    #[arg(long)]
    count: Option<u64>,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Share of requests that are linearizable gets (0 or 100 in the script).
    #[arg(long, default_value_t = 0)]
    reads: u8,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seconds a request may take before it fails (a gRPC deadline); etcdctl's --command-timeout default.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Also write every answered request to FILE, warm-up included, in the order of the answers, one line
    /// each: `SENT_US ANSWERED_US put|get ok|GRPC_CODE`, microseconds since the Unix epoch (CLOCK_REALTIME).
    #[arg(long, value_name = "FILE")]
    ack_log: Option<std::path::PathBuf>,
    /// Print every endpoint's status as one JSON array and exit: 0 when all answered and agree on a leader.
    #[arg(long)]
    status: bool,
}

#[derive(Default)]
struct Samples {
    writes: Vec<u64>,
    reads: Vec<u64>,
    errors: u64,
    /// (sent, answered, write, failure) per answered request, with --ack-log.
    acks: Vec<(u64, u64, bool, Option<String>)>,
    /// When the last measured request was answered.
    last_answer: Option<Instant>,
}

/// One word for a failure: the gRPC code ("Unavailable", ...; a request past --timeout shows as
/// "Cancelled", as tonic reports its deadline) or the error's variant.
fn failure_kind(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => format!("{:?}", status.code()),
        other => format!("{other:?}").chars().take_while(|c| c.is_alphanumeric()).collect(),
    }
}

fn unix_micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

async fn connect(endpoint: &str, timeout: Duration) -> Result<Client, etcd_client::Error> {
    let options = ConnectOptions::new().with_timeout(timeout).with_connect_timeout(Duration::from_secs(2));
    Client::connect([endpoint], Some(options)).await
}

/// One endpoint's `Status`, as JSON; `up: false` with the error when it does not answer.
async fn endpoint_status(endpoint: String) -> serde_json::Value {
    let answer = async {
        let mut client = connect(&endpoint, Duration::from_secs(2)).await?;
        client.status().await
    };
    match answer.await {
        Ok(s) => serde_json::json!({
            "endpoint": endpoint, "up": true,
            "member_id": s.header().map_or(0, |h| h.member_id()), "leader": s.leader(),
            "raft_term": s.raft_term(), "raft_index": s.raft_index(), "raft_applied_index": s.raft_applied_index(),
            "revision": s.header().map_or(0, |h| h.revision()),
        }),
        Err(e) => serde_json::json!({"endpoint": endpoint, "up": false, "error": e.to_string()}),
    }
}

async fn print_status(endpoints: &[String]) -> i32 {
    // Asked all at once, so that the rows describe one moment.
    let tasks: Vec<_> = endpoints.iter().map(|e| tokio::spawn(endpoint_status(e.clone()))).collect();
    let mut rows = Vec::new();
    for task in tasks {
        rows.push(task.await.unwrap_or_else(|e| serde_json::json!({"up": false, "error": e.to_string()})));
    }
    let leaders: Vec<u64> = rows.iter().map(|r| r["leader"].as_u64().unwrap_or(0)).collect();
    let agreed = rows.iter().all(|r| r["up"] == true) && leaders.iter().all(|l| *l != 0 && *l == leaders[0]);
    println!("{}", serde_json::Value::Array(rows));
    if agreed { 0 } else { 1 }
}

/// Requests still to measure with --count, shared by the clients; `None`: until --duration.
type Remaining = Option<Arc<AtomicU64>>;

async fn run_client(
    args: Args,
    endpoint: String,
    index: usize,
    warm_until: Instant,
    stop_at: Instant,
    remaining: Remaining,
) -> Samples {
    let mut samples = Samples::default();
    let mut client = match connect(&endpoint, Duration::from_secs(args.timeout)).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("client {index}: cannot connect to {endpoint}: {e}");
            samples.errors += 1;
            return samples;
        }
    };
    let mut rng = fastrand::Rng::with_seed(args.seed.wrapping_add(index as u64));
    let value = "v".repeat(args.value_size);
    loop {
        let (started, sent_wall) = (Instant::now(), SystemTime::now());
        if started >= stop_at {
            return samples;
        }
        if started >= warm_until
            && let Some(left) = &remaining
            && left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err()
        {
            return samples;
        }
        let key = format!("bench{}", rng.u64(0..args.keys.max(1)));
        let read = rng.u8(0..100) < args.reads;
        let answer = if read {
            client.get(key, None::<GetOptions>).await.map(|_| ())
        } else {
            client.put(key, value.clone(), None).await.map(|_| ())
        };
        let took = started.elapsed().as_micros() as u64;
        if args.ack_log.is_some() {
            let failure = answer.as_ref().err().map(failure_kind);
            samples.acks.push((unix_micros(sent_wall), unix_micros(SystemTime::now()), !read, failure));
        }
        // A failed request is not retried as such: the next one goes out at once.
        if started < warm_until {
            continue;
        }
        samples.last_answer = Some(Instant::now());
        match answer {
            Ok(()) if read => samples.reads.push(took),
            Ok(()) => samples.writes.push(took),
            Err(_) => samples.errors += 1,
        }
    }
}

fn figures(mut micros: Vec<u64>, secs: f64) -> serde_json::Value {
    micros.sort_unstable();
    let at = |q: f64| micros.get(((micros.len() as f64 - 1.0) * q).round() as usize).copied();
    let latency = (!micros.is_empty()).then(|| {
        serde_json::json!({
            "min_us": micros[0],
            "mean_us": micros.iter().sum::<u64>() / micros.len() as u64,
            "p50_us": at(0.50),
            "p90_us": at(0.90),
            "p99_us": at(0.99),
            "max_us": micros[micros.len() - 1],
        })
    });
    serde_json::json!({"ops": micros.len(), "ops_per_sec": micros.len() as f64 / secs, "latency": latency})
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let endpoints: Vec<String> = args.endpoints.split(',').map(str::to_owned).collect();
    if args.status {
        std::process::exit(print_status(&endpoints).await);
    }
    // Created before any load, so that a bad path fails fast.
    let ack_log = args.ack_log.as_ref().map(|path| match std::fs::File::create(path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("etcd-bench: --ack-log {}: {e}", path.display());
            std::process::exit(2);
        }
    });
    let warm_until = Instant::now() + Duration::from_secs(args.warmup);
    let stop_at = warm_until + Duration::from_secs(args.duration);
    let remaining: Remaining = args.count.map(|n| Arc::new(AtomicU64::new(n)));
    let tasks: Vec<_> = (0..args.clients.max(1))
        .map(|i| {
            let endpoint = endpoints[i % endpoints.len()].clone();
            tokio::spawn(run_client(args.clone(), endpoint, i, warm_until, stop_at, remaining.clone()))
        })
        .collect();
    let mut all = Samples::default();
    for task in tasks {
        if let Ok(s) = task.await {
            all.writes.extend(s.writes);
            all.reads.extend(s.reads);
            all.errors += s.errors;
            all.acks.extend(s.acks);
            all.last_answer = all.last_answer.max(s.last_answer);
        }
    }
    if let Some(file) = ack_log {
        all.acks.sort_unstable_by_key(|(sent, answered, _, _)| (*answered, *sent));
        let mut out = std::io::BufWriter::new(file);
        let written = all.acks.iter().try_for_each(|(sent, answered, write, failure)| {
            let op = if *write { "put" } else { "get" };
            writeln!(out, "{sent} {answered} {op} {}", failure.as_deref().unwrap_or("ok"))
        });
        if let Err(e) = written.and_then(|()| out.flush()) {
            eprintln!("etcd-bench: --ack-log: {e}");
            std::process::exit(1);
        }
    }
    // With a count the run ends with its last answer, not at --duration.
    let secs = match (args.count, all.last_answer) {
        (Some(_), Some(last)) => last.saturating_duration_since(warm_until).as_secs_f64(),
        _ => args.duration as f64,
    };
    let total: Vec<u64> = all.writes.iter().chain(&all.reads).copied().collect();
    let doc = serde_json::json!({
        "system": "etcd",
        "parameters": {"clients": args.clients, "duration_secs": args.duration, "count": args.count, "warmup_secs": args.warmup,
                       "value_size": args.value_size, "keys": args.keys, "reads_percent": args.reads,
                       "timeout_secs": args.timeout, "endpoints": endpoints},
        "writes": figures(all.writes, secs),
        "reads": figures(all.reads, secs),
        "total": figures(total, secs),
        "measured_secs": secs,
        "errors": {"count": all.errors},
    });
    println!("{doc}");
}
