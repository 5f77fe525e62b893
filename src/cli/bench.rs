//! `paxos bench` (being written).

use clap::Args;
use std::path::Path;

#[derive(Args, Debug)]
pub struct BenchArgs {}

pub async fn run(_cluster: &Path, _identity: &Path, _args: BenchArgs) -> anyhow::Result<u8> {
    anyhow::bail!("paxos bench is not available in this build")
}
