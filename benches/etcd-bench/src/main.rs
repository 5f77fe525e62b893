//! Closed-loop load on an etcd cluster through its gRPC API, shaped like
//! `paxos bench`: N clients spread round-robin over the endpoints, each
//! with its own connection, each sending its next request when the last one
//! was answered; puts of fixed-size values on uniformly random keys, or
//! linearizable gets (etcd's default, not `serializable`); a warm-up that is
//! not counted; one JSON document with ops/s and latency percentiles in the
//! field names `paxos bench --json` uses.

use clap::Parser;
use etcd_client::{Client, ConnectOptions, GetOptions};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Comma-separated client URLs, e.g. http://127.0.0.1:23791,http://127.0.0.1:23792
    #[arg(long)]
    endpoints: String,
    #[arg(long, default_value_t = 1)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    duration: u64,
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
}

#[derive(Default)]
struct Samples {
    writes: Vec<u64>,
    reads: Vec<u64>,
    errors: u64,
}

async fn connect(endpoint: &str) -> Result<Client, etcd_client::Error> {
    let options =
        ConnectOptions::new().with_timeout(Duration::from_secs(5)).with_connect_timeout(Duration::from_secs(2));
    Client::connect([endpoint], Some(options)).await
}

async fn run_client(args: Args, endpoint: String, index: usize, warm_until: Instant, stop_at: Instant) -> Samples {
    let mut samples = Samples::default();
    let mut client = match connect(&endpoint).await {
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
        let started = Instant::now();
        if started >= stop_at {
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
        if started < warm_until {
            continue;
        }
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
    let warm_until = Instant::now() + Duration::from_secs(args.warmup);
    let stop_at = warm_until + Duration::from_secs(args.duration);
    let tasks: Vec<_> = (0..args.clients.max(1))
        .map(|i| tokio::spawn(run_client(args.clone(), endpoints[i % endpoints.len()].clone(), i, warm_until, stop_at)))
        .collect();
    let mut all = Samples::default();
    for task in tasks {
        if let Ok(s) = task.await {
            all.writes.extend(s.writes);
            all.reads.extend(s.reads);
            all.errors += s.errors;
        }
    }
    let secs = args.duration as f64;
    let total: Vec<u64> = all.writes.iter().chain(&all.reads).copied().collect();
    let doc = serde_json::json!({
        "system": "etcd",
        "parameters": {"clients": args.clients, "duration_secs": args.duration, "warmup_secs": args.warmup,
                       "value_size": args.value_size, "keys": args.keys, "reads_percent": args.reads},
        "writes": figures(all.writes, secs),
        "reads": figures(all.reads, secs),
        "total": figures(total, secs),
        "errors": {"count": all.errors},
    });
    println!("{doc}");
}
