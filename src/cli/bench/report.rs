//! What `paxos bench` prints: the machine, the cluster, the parameters,
//! then throughput, latency percentiles, errors and the nodes' batching,
//! as text for people or one JSON document.

use super::Plan;
use super::stats::{Errors, Latency};
use serde::Serialize;
use std::fmt::Write as _;

pub use crate::cli::machine::Machine;

#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    pub id: u64,
    pub name: String,
    pub address: String,
    /// Benchmark clients connected to this node.
    pub clients: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterInfo {
    pub name: String,
    pub inventory: String,
    /// The leader when the run started.
    pub leader: Option<u64>,
    pub nodes: Vec<NodeInfo>,
}

/// Throughput and latency of one kind of command.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub ops: u64,
    pub ops_per_sec: f64,
    pub latency: Option<Latency>,
}

/// Counters read from one node's `metrics`, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeCounters {
    pub fsyncs: f64,
    pub fsync_seconds: f64,
    pub records: f64,
    pub batches: f64,
    pub inputs: f64,
    pub slots_applied: f64,
}

impl NodeCounters {
    /// From the Prometheus text of `paxos metrics`; a missing metric reads as zero.
    pub fn parse(text: &str) -> NodeCounters {
        let get = |name: &str| metric_value(text, name).unwrap_or(0.0);
        NodeCounters {
            fsyncs: get("paxos_wal_fsync_duration_seconds_count"),
            fsync_seconds: get("paxos_wal_fsync_duration_seconds_sum"),
            records: get("paxos_wal_records_per_fsync_sum"),
            batches: get("paxos_inputs_per_batch_count"),
            inputs: get("paxos_inputs_per_batch_sum"),
            slots_applied: get("paxos_applied_slots_total"),
        }
    }
}

/// The value of an unlabelled sample `name` in Prometheus text format.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// One node's batching while the benchmark measured.
#[derive(Clone, Debug, Serialize)]
pub struct NodeBatching {
    pub id: u64,
    pub role: String,
    pub fsyncs_per_sec: f64,
    pub wal_records_per_fsync: Option<f64>,
    pub fsync_mean_ms: Option<f64>,
    pub batches_per_sec: f64,
    pub inputs_per_batch: Option<f64>,
    pub slots_applied_per_sec: f64,
}

impl NodeBatching {
    pub fn between(id: u64, role: String, before: NodeCounters, after: NodeCounters, secs: f64) -> NodeBatching {
        let ratio = |num: f64, den: f64| (den > 0.0).then(|| num / den);
        let rate = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
        let fsyncs = after.fsyncs - before.fsyncs;
        let batches = after.batches - before.batches;
        NodeBatching {
            id,
            role,
            fsyncs_per_sec: rate(fsyncs),
            wal_records_per_fsync: ratio(after.records - before.records, fsyncs),
            fsync_mean_ms: ratio((after.fsync_seconds - before.fsync_seconds) * 1000.0, fsyncs),
            batches_per_sec: rate(batches),
            inputs_per_batch: ratio(after.inputs - before.inputs, batches),
            slots_applied_per_sec: rate(after.slots_applied - before.slots_applied),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: Machine,
    pub cluster: ClusterInfo,
    pub parameters: Plan,
    /// From the end of the warm-up to the last measured answer.
    pub measured_secs: f64,
    pub writes: Figures,
    pub reads: Figures,
    pub total: Figures,
    pub errors: Errors,
    /// Failed commands of the warm-up, not counted in `errors`.
    pub warmup_errors: u64,
    /// Commands per slot: measured writes over the slots the leader applied meanwhile.
    pub writes_per_slot: Option<f64>,
    /// Empty when the metrics could not be read.
    pub nodes: Vec<NodeBatching>,
    /// CPU time (user + system) of this benchmark process, which shares the machine.
    pub client_cpu_secs: f64,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// What runs where, printed before the run starts.
pub fn header(date: &str, machine: &Machine, cluster: &ClusterInfo, plan: &Plan) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "paxos bench, {date}");
    let _ = writeln!(
        t,
        "machine   {}; {} cpus: {}; load {}",
        machine.uname, machine.cpus, machine.cpu_model, machine.loadavg
    );
    let leader = cluster.leader.map_or_else(|| "none known".to_owned(), |l| format!("node {l}"));
    let _ = writeln!(t, "cluster   {} ({}), leader {leader}", cluster.name, cluster.inventory);
    for n in &cluster.nodes {
        let _ = writeln!(t, "          node {} {} at {}: {} clients", n.id, n.name, n.address, n.clients);
    }
    let _ = writeln!(
        t,
        "workload  {} clients x pipeline {}; {}% linearizable get, {}% put of {}-byte values; {} keys; seed {}",
        plan.clients,
        plan.pipeline,
        plan.read_percent,
        100 - plan.read_percent,
        plan.value_size,
        plan.keys,
        plan.seed
    );
    let measure = match (plan.duration_secs, plan.count) {
        (Some(secs), _) => format!("{secs} s"),
        (None, Some(count)) => format!("{count} commands (at most {} s)", plan.time_limit_secs),
        (None, None) => "?".to_owned(),
    };
    let _ = writeln!(t, "run       {} s warm-up, then {measure}", plan.warmup_secs);
    t
}

/// The figures, after the run.
pub fn results(r: &Report) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nmeasured {:.2} s: {} commands answered, {:.1} ops/s",
        r.measured_secs, r.total.ops, r.total.ops_per_sec
    );
    let _ = writeln!(
        t,
        "{:<8} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "commands", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"
    );
    for (name, f) in [("writes", &r.writes), ("reads", &r.reads), ("all", &r.total)] {
        let _ = write!(t, "{name:<8} {:>9} {:>10.1}", f.ops, f.ops_per_sec);
        match &f.latency {
            Some(l) => {
                let _ = writeln!(
                    t,
                    " {:>9} {:>9} {:>9} {:>9} {:>9}",
                    ms(l.p50_us),
                    ms(l.p90_us),
                    ms(l.p99_us),
                    ms(l.max_us),
                    ms(l.mean_us)
                );
            }
            None => t.push_str(&format!(" {:>9} {:>9} {:>9} {:>9} {:>9}\n", "-", "-", "-", "-", "-")),
        }
    }
    let _ = write!(t, "errors   {}", r.errors.count);
    if !r.errors.by_kind.is_empty() {
        let kinds: Vec<String> = r.errors.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = write!(t, " ({})", kinds.join(", "));
    }
    if r.warmup_errors > 0 {
        let _ = write!(t, "; {} more during the warm-up", r.warmup_errors);
    }
    t.push('\n');
    if let Some(first) = &r.errors.first {
        let _ = writeln!(t, "first error: {first}");
    }
    if !r.nodes.is_empty() {
        let _ = writeln!(t, "\nnodes while measuring (deltas of `paxos metrics`):");
        let _ = writeln!(
            t,
            "{:<5} {:<10} {:>9} {:>14} {:>9} {:>10} {:>13} {:>8}",
            "node", "role", "fsyncs/s", "records/fsync", "fsync ms", "batches/s", "inputs/batch", "slots/s"
        );
        for n in &r.nodes {
            let _ = writeln!(
                t,
                "{:<5} {:<10} {:>9.1} {:>14} {:>9} {:>10.1} {:>13} {:>8.1}",
                n.id,
                n.role,
                n.fsyncs_per_sec,
                opt(n.wal_records_per_fsync, 2),
                opt(n.fsync_mean_ms, 3),
                n.batches_per_sec,
                opt(n.inputs_per_batch, 2),
                n.slots_applied_per_sec
            );
        }
        if let Some(per_slot) = r.writes_per_slot {
            let _ = writeln!(t, "writes per slot on the leader: {per_slot:.2}");
        }
    }
    let share = if r.measured_secs > 0.0 { 100.0 * r.client_cpu_secs / r.measured_secs } else { 0.0 };
    let _ = writeln!(
        t,
        "bench client cpu: {:.2} s over the whole run ({share:.0}% of one cpu over the measured time)",
        r.client_cpu_secs
    );
    t
}

/// User plus system CPU time of this process so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage(2) fills the struct we pass and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::metrics::Metrics;
    use std::time::Duration;

    #[test]
    fn counters_are_read_from_a_nodes_metrics_text() {
        let m = Metrics::new();
        m.fsync(Duration::from_millis(2), 5);
        m.fsync(Duration::from_millis(4), 7);
        m.applied(3);
        let c = NodeCounters::parse(&m.render());
        assert_eq!(c.fsyncs, 2.0);
        assert_eq!(c.records, 12.0);
        assert!((c.fsync_seconds - 0.006).abs() < 1e-9, "{c:?}");
        assert_eq!(c.slots_applied, 3.0);
        assert_eq!(NodeCounters::parse("garbage\n"), NodeCounters::default());
    }

    #[test]
    fn a_metric_name_must_match_whole() {
        let text = "paxos_x_total 3\npaxos_x 4\npaxos_x{kind=\"a\"} 5\n";
        assert_eq!(metric_value(text, "paxos_x"), Some(4.0));
        assert_eq!(metric_value(text, "paxos_x_total"), Some(3.0));
        assert_eq!(metric_value(text, "paxos_y"), None);
    }

    #[test]
    fn batching_is_the_ratio_of_deltas() {
        let before = NodeCounters { fsyncs: 10.0, fsync_seconds: 0.01, records: 20.0, ..Default::default() };
        let after = NodeCounters {
            fsyncs: 110.0,
            fsync_seconds: 0.06,
            records: 1020.0,
            batches: 50.0,
            inputs: 500.0,
            slots_applied: 40.0,
        };
        let b = NodeBatching::between(1, "leader".into(), before, after, 2.0);
        assert_eq!(b.fsyncs_per_sec, 50.0);
        assert_eq!(b.wal_records_per_fsync, Some(10.0));
        assert!((b.fsync_mean_ms.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(b.inputs_per_batch, Some(10.0));
        assert_eq!(b.slots_applied_per_sec, 20.0);
        let idle = NodeBatching::between(2, "follower".into(), after, after, 2.0);
        assert_eq!((idle.wal_records_per_fsync, idle.fsync_mean_ms, idle.inputs_per_batch), (None, None, None));
    }
}
