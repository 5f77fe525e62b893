//! The `paxos` command line: the daemon (`serve`), the embedded local
//! cluster (`up`), key generation, the simulation, the benchmark, and every
//! operator command sent over SSH to the nodes of an inventory.

mod bench;
mod local;
pub mod machine;
mod remote;
mod ssh_config;
mod up;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "paxos", version, about = "Multi-Paxos replicated key-value log over SSH")]
#[command(after_help = "Operator commands (sent over SSH to the cluster's nodes):\n  \
    status, leader, members, propose VALUE…, put KEY VALUE…, get KEY [--stale], delete KEY,\n  \
    cas KEY (EXPECTED|--absent) NEW, log [--from N] [--limit N], watch [--from N],\n  \
    step-down [--to NODE], metrics, help [COMMAND]   (each takes --json)")]
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
    /// Any operator command, sent over SSH (see the list below).
    #[command(external_subcommand)]
    Ops(Vec<String>),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => local::serve(args),
        Command::Up(args) => up::run(args),
        Command::Keygen(args) => local::keygen(args),
        Command::Simulate(args) => local::simulate(args),
        Command::SshConfig(args) => ssh_config::run(&cli.cluster, &cli.identity, args),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::run(&cli.cluster, &cli.identity, args))),
        Command::Nemesis(args) => runtime().and_then(|rt| rt.block_on(crate::nemesis::cli(args))),
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
