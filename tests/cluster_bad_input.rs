//! Bad input against live daemons: unknown keys, keys used outside their
//! role, a wrongly pinned peer host key, garbage on a real `paxos-peer`
//! channel, bad command lines and broken config files. Each case shows the
//! cluster keeps serving and nothing committed is lost.

mod support_cluster;

use paxos::keys;
use paxos::ssh::SshClient;
use paxos::ssh::frame::{PEER_SUBSYSTEM, encode_hello};
use russh::ChannelMsg;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support_cluster::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

/// A client of node `id` authenticated with the private key at `identity`.
async fn connect(cluster: &Cluster, id: u64, identity: &Path) -> Result<SshClient, paxos::ssh::SshError> {
    let node = cluster.node(id);
    let host_key = keys::load_public_file(&keys::public_path(&node.key)).expect("host key");
    let identity = keys::load_private(identity).expect("identity");
    SshClient::connect(&format!("127.0.0.1:{}", node.port), &host_key, &identity).await
}

fn fingerprint_of(private_key: &Path) -> String {
    keys::fingerprint(&keys::load_public_file(&keys::public_path(private_key)).expect("public key"))
}

/// Whether some line of `log` contains every one of `parts`.
fn has_line(log: &str, parts: &[&str]) -> bool {
    log.lines().any(|line| parts.iter().all(|p| line.contains(p)))
}

/// Commits a fresh value and reads back one written before the bad input.
fn still_serving(cluster: &Cluster, round: &str) {
    // Keys are one word; values may be several.
    let key = format!("after-{}", round.replace(' ', "-"));
    cluster.put(&key, round);
    assert_eq!(cluster.get(&key).as_deref(), Some(round));
    assert_eq!(cluster.get("kept").as_deref(), Some("safe"), "a committed value was lost after {round}");
}

#[test]
fn unknown_keys_and_keys_outside_their_role_are_refused_while_the_node_serves() {
    let mut cluster = Cluster::start(3);
    cluster.put("kept", "safe");
    let target = 1;

    // A key in no list: OpenSSH gives up with 255 and the node logs who knocked.
    let stranger = cluster.dir.path().join("keys/stranger");
    keys::generate_ed25519(&stranger, "stranger").unwrap();
    let out = cluster.ssh(target, &stranger, &["-s", "paxos", "status"]);
    assert_eq!(out.code, Some(255), "{}", out.show());
    assert!(out.stdout.is_empty(), "{}", out.show());
    let fp = fingerprint_of(&stranger);
    eventually(
        "the unknown key to be logged",
        || has_line(&cluster.log(target), &["WARN", "rejecting unknown key", &fp]).then_some(()),
        || cluster.logs(),
    );
    still_serving(&cluster, "stranger");

    let rt = runtime();
    rt.block_on(async {
        // An operator key may not speak the peer protocol...
        let client = connect(&cluster, target, &cluster.operator).await.expect("operator connects");
        let err = client.open_subsystem(PEER_SUBSYSTEM).await.expect_err("operator opened paxos-peer");
        assert!(err.to_string().contains("refused subsystem \"paxos-peer\""), "{err}");
        // ...yet the same connection still runs operator commands.
        let out = client.run("paxos leader --json").await.expect("leader");
        assert_eq!(out.exit_status, Some(0), "{out:?}");
        // A node's key may not run operator commands.
        let peer = connect(&cluster, target, &cluster.node(2).key).await.expect("peer connects");
        let err = peer.run("paxos status").await.expect_err("a peer key ran an operator command");
        assert!(err.to_string().contains("refused subsystem \"paxos status\""), "{err}");
    });
    let operator_fp = fingerprint_of(&cluster.operator);
    assert!(
        has_line(&cluster.log(target), &["WARN", &format!("operator key {operator_fp}"), "may not open paxos-peer"]),
        "{}",
        cluster.logs()
    );
    assert!(
        has_line(&cluster.log(target), &["WARN", "peer 2 key", "may not run operator commands"]),
        "{}",
        cluster.logs()
    );
    still_serving(&cluster, "roles");

    // Wrong arguments: usage errors, exit 2, from the CLI and over SSH.
    let out = cluster.cli(&["get"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("usage: paxos get KEY"), "{}", out.show());
    let out = cluster.paxos_on(target, &["get"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("usage: paxos get KEY"), "{}", out.show());
    let out = cluster.paxos_on(target, &["log", "--limit", "0", "--json"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert_eq!(out.json()["error"]["kind"], "usage", "{}", out.show());
    still_serving(&cluster, "usage");
    assert!(cluster.exited(target).is_none(), "node {target} exited\n{}", cluster.logs());
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn garbage_on_a_real_peer_channel_closes_only_that_channel() {
    let mut cluster = Cluster::start(3);
    cluster.put("kept", "safe");
    let (leader, _) = cluster.wait_for_leader();
    // Speak to the leader with the key of one of its peers.
    let target = leader;
    let speaker = cluster.nodes.iter().map(|n| n.id).find(|id| *id != target).unwrap();
    let speaker_key = cluster.node(speaker).key.clone();

    let mut oversized = (16 * 1024 * 1024 + 1u32).to_be_bytes().to_vec();
    oversized.extend_from_slice(b"{\"type\":");
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("malformed", raw_frame(b"{\"type\": \"prepare\", "), "malformed JSON"),
        ("oversized", oversized, "frame exceeds the limit of 16777216 bytes"),
        ("unknown type", raw_frame(br#"{"type":"launch_missiles","n":1}"#), "unknown message type \"launch_missiles\""),
    ];
    let rt = runtime();
    for (case, bytes, complaint) in cases {
        rt.block_on(async {
            let client = connect(&cluster, target, &speaker_key).await.expect("peer key connects");
            let mut channel = client.open_subsystem(PEER_SUBSYSTEM).await.expect("paxos-peer for a peer key");
            let mut stream = raw_frame(&encode_hello(speaker).unwrap());
            stream.extend(bytes);
            channel.data_bytes(stream).await.expect("send");
            let closed = async {
                while let Some(msg) = channel.wait().await {
                    if matches!(msg, ChannelMsg::Close) {
                        return;
                    }
                }
            };
            tokio::time::timeout(WAIT, closed)
                .await
                .unwrap_or_else(|_| panic!("{case}: channel left open\n{}", cluster.logs()));
        });
        let expected =
            ["ERROR", &format!("closing paxos-peer channel from node {speaker} at 127.0.0.1:") as &str, complaint];
        eventually(
            &format!("{case}: the error to be logged"),
            || has_line(&cluster.log(target), &expected).then_some(()),
            || cluster.logs(),
        );
        assert!(cluster.exited(target).is_none(), "{case}: node {target} exited\n{}", cluster.logs());
        still_serving(&cluster, case);
    }
    // Every node, the one that was fed garbage included, applied everything.
    let slot = cluster.put("last", "word");
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    cluster.wait_applied(&ids, slot + 1);
    for id in ids {
        assert_eq!(cluster.get_stale_on(id, "last").as_deref(), Some("word"), "node {id}");
    }
}

#[test]
fn a_node_pinning_the_wrong_host_key_for_a_peer_names_both_fingerprints_and_the_rest_commit() {
    // The cluster first starts whole: a brand-new cluster votes only once
    // every member has introduced itself (a member that never spoke cannot
    // be told from one that lost its data), so this is a running cluster
    // whose node 1 is restarted with a bad inventory.
    let mut cluster = Cluster::start(3);
    cluster.put("before", "restart");
    cluster.stop(1);
    // Node 1 alone reads an inventory that pins an impostor's key for node 2.
    let impostor = cluster.dir.path().join("keys/impostor");
    let impostor_public = keys::generate_ed25519(&impostor, "impostor").unwrap();
    let mut inventory: Value = serde_json::from_str(&fs::read_to_string(&cluster.inventory).unwrap()).unwrap();
    inventory["all"]["hosts"]["node2"]["paxos_host_key"] = keys::public_line(&impostor_public).into();
    let wrong = cluster.dir.path().join("cluster-node1.json");
    fs::write(&wrong, serde_json::to_string_pretty(&inventory).unwrap()).unwrap();
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&cluster.node(1).config).unwrap()).unwrap();
    config["cluster_file"] = wrong.to_str().unwrap().into();
    fs::write(&cluster.node(1).config, config.to_string()).unwrap();
    let first_life = cluster.log(1).len();
    cluster.restart(1);

    let real = fingerprint_of(&cluster.node(2).key);
    let pinned = keys::fingerprint(&impostor_public);
    let expected = format!(
        "peer 2 at 127.0.0.1:{} presented host key {real} but the cluster pins {pinned}; refusing",
        cluster.node(2).port
    );
    eventually(
        "node 1 to report the mismatch",
        || has_line(&cluster.log(1), &["ERROR", &expected]).then_some(()),
        || cluster.logs(),
    );
    // Node 2 dials node 1 with its real key, which node 1 does not know either.
    eventually(
        "node 1 to refuse node 2's key",
        || has_line(&cluster.log(1), &["rejecting unknown key", &real]).then_some(()),
        || cluster.logs(),
    );

    // Nodes 1 and 2 cannot talk; node 3 reaches both, so a majority commits.
    eventually(
        "a write through node 3 to commit",
        || {
            let out = cluster.paxos_on(3, &["put", "kept", "safe", "--json"]);
            out.json().get("slot").and_then(Value::as_u64)
        },
        || cluster.logs(),
    );
    let out = cluster.paxos_on(3, &["get", "kept"]);
    assert_eq!(out.stdout, "safe\n", "{}", out.show());
    let members = cluster.paxos_on(1, &["members", "--json"]).json();
    let node2 = members["members"].as_array().unwrap().iter().find(|m| m["id"] == 2).cloned().unwrap();
    assert_eq!(node2["connected"], Value::Bool(false), "{members}");
    eventually(
        "node 3 to be linked to both",
        || {
            let members = cluster.paxos_on(3, &["members", "--json"]).json();
            let all = members["members"].as_array()?.iter().all(|m| m["connected"] == Value::Bool(true));
            all.then_some(())
        },
        || cluster.logs(),
    );
    assert!(!has_line(&cluster.log(1)[first_life..], &["node 1 linked to peer 2"]), "{}", cluster.logs());
    for id in [1, 2, 3] {
        assert!(cluster.exited(id).is_none(), "node {id} exited\n{}", cluster.logs());
    }
}

/// `paxos serve --config CONFIG`, expected to fail; returns its stderr.
fn serve_fails(config: &Path) -> String {
    let mut cmd = Command::new(PAXOS);
    cmd.arg("serve").arg("--config").arg(config);
    let out = run(cmd);
    assert!(matches!(out.code, Some(c) if c != 0), "serve --config {} did not fail:\n{}", config.display(), out.show());
    assert!(!out.stderr.contains("node serving"), "{}", out.show());
    out.stderr
}

#[test]
fn serve_refuses_broken_configs_and_names_the_file() {
    let cluster = Cluster::prepare(3);
    let dir = cluster.dir.path();
    let node1: Value = serde_json::from_str(&fs::read_to_string(&cluster.node(1).config).unwrap()).unwrap();
    let write_config = |name: &str, config: &Value| {
        let path = dir.join(name);
        fs::write(&path, config.to_string()).unwrap();
        path
    };

    // A malformed inventory.
    let broken = dir.join("broken-cluster.json");
    fs::write(&broken, "{\"cluster\": \"itest\", \"nodes\": [\n  {\"id\": 1,, }\n").unwrap();
    let mut config = node1.clone();
    config["cluster_file"] = broken.to_str().unwrap().into();
    let stderr = serve_fails(&write_config("node-broken-inventory.json", &config));
    assert!(stderr.contains(&format!("{}:2:", broken.display())), "{stderr}");
    assert!(stderr.contains("malformed JSON"), "{stderr}");

    // A node config naming a node the inventory does not list.
    let mut config = node1.clone();
    config["id"] = 9.into();
    let path = write_config("node9.json", &config);
    let stderr = serve_fails(&path);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("node id 9 is not in the inventory"), "{stderr}");
    assert!(stderr.contains("use one of the ids listed there (1, 2, 3)"), "{stderr}");

    // A node config that is not JSON.
    let path = dir.join("garbled.json");
    fs::write(&path, "id = 1\n").unwrap();
    let stderr = serve_fails(&path);
    assert!(stderr.contains(&format!("{}:1:", path.display())), "{stderr}");

    // A private key others may read.
    let open_key = dir.join("keys/node1-open");
    fs::copy(&cluster.node(1).key, &open_key).unwrap();
    fs::set_permissions(&open_key, fs::Permissions::from_mode(0o644)).unwrap();
    let mut config = node1.clone();
    config["key_file"] = open_key.to_str().unwrap().into();
    let stderr = serve_fails(&write_config("node-open-key.json", &config));
    assert!(stderr.contains(&format!("permissions 0644 for '{}' are too open", open_key.display())), "{stderr}");
    assert!(stderr.contains(&format!("chmod 600 {}", open_key.display())), "{stderr}");
    // None of them touched the data directory it was given.
    assert!(!cluster.node(1).data_dir.join("wal.log").exists());
}
