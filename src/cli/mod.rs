//! The `paxos` command line: the daemon (`serve`), the embedded local
//! cluster (`up`), key generation, the simulation, the benchmark, and every
//! operator command sent over SSH to the nodes of an inventory.

mod bench;
mod drill;
mod health;
mod local;
pub mod machine;
mod monitor;
mod prometheus_config;
mod remote;
mod ssh_config;
mod up;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "paxos", version, about = "Multi-Paxos replicated key-value log over SSH")]
pub struct Cli {
    /// Inventory of the cluster to talk to.
    #[arg(long, global = true, default_value = "hosts/local.json", env = "PAXOS_CLUSTER")]
    pub cluster: PathBuf,
    /// Operator (or reader) private key for SSH.
    #[arg(short = 'i', long, global = true, default_value = "keys/operator", env = "PAXOS_IDENTITY")]
    pub identity: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one node: the daemon of a lab machine.
    Serve(local::ServeArgs),
    /// Start a complete 3-node cluster on 127.0.0.1, generating keys and the inventory.
    Up(up::UpArgs),
    /// Write an ed25519 key pair in OpenSSH format (private key 0600).
    Keygen(local::KeygenArgs),
    /// Run the deterministic simulation over many seeds.
    Simulate(local::SimulateArgs),
    /// Print an OpenSSH client config for the inventory's nodes and write their pinned known_hosts.
    SshConfig(ssh_config::SshConfigArgs),
    /// Drive a running cluster with concurrent clients and print throughput and latency.
    Bench(bench::BenchArgs),
    /// Run a local 3-node cluster under concurrent clients and injected faults; check the history.
    Nemesis(crate::nemesis::NemesisArgs),
    /// Check every node of the inventory (or one): up, one leader, a quorum, lag under a limit.
    /// Exits 0 when healthy, 5 with one line per problem otherwise.
    Health(health::HealthArgs),
    /// A live view of the cluster: one row per node, refreshed over long-lived SSH sessions,
    /// and the events seen (leader changes, elections, nodes lost and back). `q` quits.
    Monitor(monitor::MonitorArgs),
    /// Drill a failover on the live cluster: fault the leader under load, measure, check, restore.
    /// Exits 0 when every check passed, 5 otherwise.
    Drill(drill::DrillArgs),
    /// Print a Prometheus scrape config with one target per node of the inventory (metrics_listen).
    PrometheusConfig(prometheus_config::PrometheusConfigArgs),
    /// Any operator command, sent over SSH (see the list below).
    #[command(external_subcommand)]
    Ops(Vec<String>),
}

/// `p` as an absolute path: relative ones are taken from the current directory.
fn absolute(p: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    Ok(if p.is_absolute() { p.to_owned() } else { std::env::current_dir()?.join(p) })
}

/// The operator commands under `paxos --help`, from the command registry.
pub fn remote_commands_help() -> String {
    let mut text = String::from(
        "Operator commands (sent over SSH to the cluster's nodes; each takes --json; quote a value with \
         spaces as a shell would, e.g. paxos cas k 'old value' new):\n",
    );
    // A command the CLI runs itself over the whole inventory (`health`) is
    // listed above with the CLI's own; `ssh NODE -s paxos health` is the node's.
    let local: Vec<String> = Cli::command().get_subcommands().map(|c| c.get_name().to_owned()).collect();
    let remote: Vec<_> = crate::ops::COMMANDS.iter().filter(|c| !local.iter().any(|l| l == c.name)).collect();
    let width = remote.iter().map(|c| c.usage.len()).max().unwrap_or(0);
    for c in remote {
        let access = if c.read_only { "" } else { " (operator key)" };
        text.push_str(&format!("  {:width$}  {}{access}\n", c.usage, c.summary));
    }
    text
}

/// The whole command line of the CLI, operator commands listed in its help.
pub fn command() -> clap::Command {
    Cli::command().after_help(remote_commands_help())
}

pub fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let code = match cli.command {
        Command::Serve(args) => local::serve(args),
        Command::Up(args) => up::run(args),
        Command::Keygen(args) => local::keygen(args),
        Command::Simulate(args) => local::simulate(args),
        Command::SshConfig(args) => ssh_config::run(&cli.cluster, &cli.identity, args),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::run(&cli.cluster, &cli.identity, args))),
        Command::Nemesis(args) => runtime().and_then(|rt| rt.block_on(crate::nemesis::cli(args))),
        Command::Health(args) => runtime().and_then(|rt| rt.block_on(health::run(&cli.cluster, &cli.identity, args))),
        Command::Monitor(args) => runtime().and_then(|rt| rt.block_on(monitor::run(&cli.cluster, &cli.identity, args))),
        Command::Drill(args) => runtime().and_then(|rt| rt.block_on(drill::run(&cli.cluster, &cli.identity, args))),
        Command::PrometheusConfig(args) => prometheus_config::run(&cli.cluster, args),
        Command::Ops(words) => runtime().and_then(|rt| rt.block_on(remote::run(&cli.cluster, &cli.identity, words))),
    };
    match code {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("paxos: {e:#}");
            ExitCode::from(1)
        }
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_help_lists_every_registered_operator_command() {
        let help = super::command().render_long_help().to_string();
        for c in crate::ops::COMMANDS.iter().filter(|c| c.name != "health") {
            assert!(help.contains(c.usage), "{} missing from\n{help}", c.usage);
        }
        assert!(help.contains("  health "), "{help}");
        assert!(help.contains("paxos console [--json]"), "{help}");
        let put = help.lines().find(|l| l.trim_start().starts_with("paxos put ")).unwrap();
        assert!(put.ends_with("set KEY to the value words joined by spaces (operator key)"), "{put}");
        let get = help.lines().find(|l| l.trim_start().starts_with("paxos get ")).unwrap();
        assert!(!get.contains("operator key"), "{get}");
    }
}
