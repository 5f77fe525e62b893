//! `paxos --cluster hosts/lab.json ssh-config`: an OpenSSH client config for
//! the cluster's nodes, and a known_hosts file written from the host keys the
//! inventory pins, so that a plain `ssh -F FILE node1 -s paxos status` works
//! with no flags and no trust on first use.

use crate::cluster::Inventory;
use crate::keys;
use anyhow::{Context, bail};
use clap::Args;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct SshConfigArgs {
    /// The known_hosts file to write (default: the inventory's path with
    /// `.known_hosts` in place of `.json`, e.g. hosts/lab.known_hosts).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Write the config to this file instead of printing it.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

/// A path as an ssh_config argument: `%` escaped (ssh expands tokens in
/// IdentityFile and UserKnownHostsFile), quoted when it holds a space.
fn config_path(what: &str, path: &Path) -> anyhow::Result<String> {
    let text = path.to_str().with_context(|| format!("the {what} path {} is not UTF-8", path.display()))?;
    if text.contains(['"', '\n', '\r']) {
        bail!("the {what} path {text:?} holds a quote or a line break, which ssh_config cannot express");
    }
    let text = text.replace('%', "%%");
    Ok(if text.contains(char::is_whitespace) { format!("\"{text}\"") } else { text })
}

/// A host name that ssh would read as a pattern or split cannot be a `Host` alias.
fn check_alias(inventory: &Inventory, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control() || "*?!,\"#".contains(c)) {
        bail!(
            "{}: host {name:?}: the name cannot be an ssh Host alias (no spaces, quotes or *?!,#); rename the host",
            inventory.path.display()
        );
    }
    Ok(())
}

/// The config text and the known_hosts text for an inventory whose host keys are pinned.
pub fn render(inventory: &Inventory, identity: &Path, known_hosts: &Path) -> anyhow::Result<(String, String)> {
    inventory.require_host_keys()?;
    let identity = config_path("identity", identity)?;
    let known = config_path("known_hosts", known_hosts)?;
    let mut config = format!(
        "# OpenSSH client config for the paxos cluster {:?}, written by `paxos --cluster {} ssh-config`.\n\
         # Use it as `ssh -F THIS_FILE {} -s paxos status`.\n",
        inventory.cluster,
        inventory.path.display(),
        inventory.nodes.first().map_or("node1", |n| n.name.as_str()),
    );
    let mut lines = String::new();
    for node in &inventory.nodes {
        check_alias(inventory, &node.name)?;
        let key = inventory.host_key(node.id)?;
        writeln!(
            config,
            "\nHost {name}\n    HostName {host}\n    Port {port}\n    IdentityFile {identity}\n    \
             IdentitiesOnly yes\n    UserKnownHostsFile {known}\n    GlobalKnownHostsFile /dev/null\n    \
             StrictHostKeyChecking yes\n    UpdateHostKeys no\n    CheckHostIP no\n    ServerAliveInterval 15",
            name = node.name,
            host = node.host.trim_start_matches('[').trim_end_matches(']'),
            port = node.port,
        )?;
        let host = node.host.trim_start_matches('[').trim_end_matches(']');
        writeln!(lines, "{}", keys::known_hosts_line(host, node.port, &key))?;
    }
    Ok((config, lines))
}

/// Write `text` to `path` through a temporary file and a rename, so a reader
/// never sees half a file.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

pub fn run(cluster: &Path, identity: &Path, args: SshConfigArgs) -> anyhow::Result<u8> {
    let inventory = Inventory::load(cluster)?;
    let known_hosts = match args.known_hosts {
        Some(path) => path,
        None => cluster.with_extension("known_hosts"),
    };
    if !identity.exists() {
        bail!("the operator key {} does not exist; pass -i KEY (the private key ssh should offer)", identity.display());
    }
    let (config, lines) = render(&inventory, &super::absolute(identity)?, &super::absolute(&known_hosts)?)?;
    write_atomically(&known_hosts, &lines)?;
    match args.output {
        Some(path) => {
            write_atomically(&path, &config)?;
            eprintln!("wrote {} and {}", path.display(), known_hosts.display());
        }
        None => {
            print!("{config}");
            eprintln!("wrote {}", known_hosts.display());
        }
    }
    Ok(0)
}
