//! `paxos ssh-config`: the stock OpenSSH client, given only `-F FILE` and a
//! host name, reaches the real daemons with their pinned host keys.

mod support_cluster;

use paxos::keys;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;
use support_cluster::*;

fn ssh_config(cluster: &Cluster, extra: &[&str]) -> Out {
    let mut args = vec!["ssh-config"];
    args.extend_from_slice(extra);
    cluster.cli(&args)
}

/// Plain `ssh -F FILE HOST ARGS`; BatchMode only so that a failure cannot prompt.
fn ssh_f(config: &Path, host: &str, args: &[&str]) -> Out {
    let mut cmd = Command::new("/usr/bin/ssh");
    cmd.arg("-F").arg(config).args(["-o", "BatchMode=yes", host]).args(args);
    run(cmd)
}

#[test]
fn plain_ssh_with_the_generated_config_runs_status_put_and_get() {
    let cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader();
    // A directory with a space and a '%' (ssh would expand "%d"): both must survive.
    let dir = cluster.dir.path().join("my config %d");
    fs::create_dir(&dir).unwrap();
    let config = dir.join("ssh_config");
    let known = dir.join("known_hosts");
    let out = ssh_config(&cluster, &["-o", config.to_str().unwrap(), "--known-hosts", known.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(out.stdout.is_empty(), "the config went to the file: {}", out.show());
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains("Host node1\n    HostName 127.0.0.1\n"), "{text}");
    assert!(text.contains("%%d"), "a '%' in a path is escaped: {text}");
    let known_text = fs::read_to_string(&known).unwrap();
    assert_eq!(known_text.lines().count(), 3, "{known_text}");

    for node in &cluster.nodes {
        let out = ssh_f(&config, &format!("node{}", node.id), &["-s", "paxos", "status"]);
        assert_eq!(out.code, Some(0), "node{}: {}", node.id, out.show());
        assert!(out.stdout.contains(&format!("leader     {leader}\n")), "{}", out.show());
    }
    let out = ssh_f(&config, "node2", &["-s", "paxos", "put", "greeting", "hello"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    let out = ssh_f(&config, "node3", &["-s", "paxos", "get", "greeting"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "hello\n"), "{}", out.show());
}

#[test]
fn the_config_is_printed_and_known_hosts_defaults_beside_the_inventory() {
    let cluster = Cluster::prepare(2);
    let out = ssh_config(&cluster, &[]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert_eq!(out.stdout.matches("\nHost node").count(), 2, "{}", out.show());
    let known = cluster.inventory.with_extension("known_hosts");
    assert!(out.stdout.contains(&format!("UserKnownHostsFile {}", known.display())), "{}", out.show());
    let text = fs::read_to_string(&known).unwrap();
    let pinned = keys::load_public_file(&keys::public_path(&cluster.node(1).key)).unwrap();
    assert!(text.contains(&keys::known_hosts_line("127.0.0.1", cluster.node(1).port, &pinned)), "{text}");
}

#[test]
fn a_server_whose_key_changed_is_refused_by_the_generated_known_hosts() {
    let cluster = Cluster::start(3);
    // The inventory pins a key for node2 that the real node2 does not hold.
    let impostor = cluster.dir.path().join("keys/impostor");
    let impostor_public = keys::generate_ed25519(&impostor, "impostor").unwrap();
    let mut inventory: Value = serde_json::from_str(&fs::read_to_string(&cluster.inventory).unwrap()).unwrap();
    inventory["all"]["hosts"]["node2"]["paxos_host_key"] = keys::public_line(&impostor_public).into();
    let stale = cluster.dir.path().join("stale.json");
    fs::write(&stale, inventory.to_string()).unwrap();
    let config = cluster.dir.path().join("stale_ssh_config");
    let mut cmd = Command::new(PAXOS);
    cmd.arg("--cluster").arg(&stale).arg("-i").arg(&cluster.operator);
    cmd.args(["ssh-config", "-o", config.to_str().unwrap()]);
    let out = run(cmd);
    assert_eq!(out.code, Some(0), "{}", out.show());

    let out = ssh_f(&config, "node2", &["-s", "paxos", "status"]);
    assert_eq!(out.code, Some(255), "{}", out.show());
    assert!(out.stderr.contains("Host key verification failed"), "{}", out.show());
    let out = ssh_f(&config, "node1", &["-s", "paxos", "status"]);
    assert_eq!(out.code, Some(0), "the other nodes still answer: {}", out.show());
}

#[test]
fn bad_inventories_and_keys_are_refused_naming_what_to_fix() {
    let cluster = Cluster::prepare(2);
    let dir = cluster.dir.path();
    let inventory: Value = serde_json::from_str(&fs::read_to_string(&cluster.inventory).unwrap()).unwrap();
    let with = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut v = inventory.clone();
        edit(&mut v);
        let path = dir.join(name);
        fs::write(&path, v.to_string()).unwrap();
        path
    };
    let unpinned = with("unpinned.json", &|v| {
        v["all"]["hosts"]["node2"].as_object_mut().unwrap().remove("paxos_host_key");
    });
    let pattern = with("pattern.json", &|v| {
        let node = v["all"]["hosts"]["node2"].take();
        v["all"]["hosts"].as_object_mut().unwrap().remove("node2");
        v["all"]["hosts"]["node*"] = node;
    });
    let cases: [(&Path, &Path, &str); 3] = [
        (&unpinned, &cluster.operator, "host \"node2\" has no paxos_host_key"),
        (&pattern, &cluster.operator, "host \"node*\": the name cannot be an ssh Host alias"),
        (
            &cluster.inventory,
            Path::new("/nonexistent/operator"),
            "the operator key /nonexistent/operator does not exist",
        ),
    ];
    for (inventory, identity, message) in cases {
        let mut cmd = Command::new(PAXOS);
        cmd.arg("--cluster").arg(inventory).arg("-i").arg(identity).arg("ssh-config");
        let out = run(cmd);
        assert_eq!(out.code, Some(1), "{}", out.show());
        assert!(out.stderr.contains(message), "{message:?} in {}", out.show());
        assert!(!inventory.with_extension("known_hosts").exists(), "nothing written on failure");
    }
}
