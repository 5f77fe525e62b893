//! The machine a benchmark ran on, printed with its figures (both
//! `paxos bench` and `cargo bench --bench wal` use it).

use serde::Serialize;
use std::process::Command;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `uname -srm`.
    pub uname: String,
    /// CPUs this process may run on (what `nproc` prints).
    pub cpus: usize,
    pub cpu_model: String,
    /// The 1, 5 and 15 minute load averages when the run started: other
    /// work on the machine shows in the figures.
    pub loadavg: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let uname = Command::new("uname")
            .arg("-srm")
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        Machine { uname, cpus, cpu_model, loadavg }
    }
}
