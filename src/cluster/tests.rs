use super::*;
use crate::consensus::quorum::QuorumError;
use serde_json::{Value, json};

const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwLQX/RMWc6MHKB8+aO9j37934HL8pKCCo/A/ko9kFH node1";
const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIMrcIL0wnN5AzSpYXVkUj8dFU+K8JBZdMfWczfjAFSD node2";
const KEY_C: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBqysrTz6Lcf210GvWPub84eiyzx8R0S5DcEXQGuJPQy node3";
const ALICE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJyrKL0QZqe0FfkN2ORqtz7ySTg2eijym7sAIjrM+cpl alice";
const BOB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGpltgxiYLpxZd9ybgzd64PXuE5YMr8B0tdRcU/m3k5 bob";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGlZanYZ6uJWP95jDgU/8N0GDUATeUJSCPNxgKGsVnXQrrC8IcYyl9w9/2lhMdWhO2YP70jOdAWw6g1Ky4HIQdQ= ec";

fn valid() -> Value {
    json!({"all": {
        "hosts": {
            "node1": {"ansible_host": "127.0.0.1", "paxos_id": 1, "paxos_port": 7101, "paxos_host_key": KEY_A},
            "node2": {"ansible_host": "127.0.0.1", "paxos_id": 2, "paxos_port": 7102, "paxos_host_key": KEY_B,
                      "paxos_roles": ["proposer", "acceptor", "learner"]},
            "node3": {"ansible_host": "127.0.0.1", "paxos_id": 3, "paxos_port": 7103, "paxos_host_key": KEY_C,
                      "paxos_roles": ["acceptor"]}
        },
        "vars": {
            "paxos_cluster": "local",
            "paxos_tick_ms": 10,
            "paxos_operators": [ALICE],
            "paxos_readers": [BOB],
            "paxos_consensus": {"phase1_quorum": null, "phase2_quorum": null, "timing": {"heartbeat": 5}}
        }
    }})
}

fn host<'a>(v: &'a mut Value, name: &str) -> &'a mut Value {
    &mut v["all"]["hosts"][name]
}

fn vars(v: &mut Value) -> &mut Value {
    &mut v["all"]["vars"]
}

fn load(v: &Value) -> Result<Inventory, ClusterError> {
    Inventory::from_json(&v.to_string(), "hosts/test.json")
}

fn edit(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = valid();
    f(&mut v);
    v
}

#[test]
fn a_valid_inventory_loads_and_round_trips() {
    let inv = load(&valid()).unwrap();
    inv.require_host_keys().unwrap();
    assert_eq!(inv.nodes[0].roles, vec!["proposer", "acceptor", "learner"], "roles default to all three");
    assert_eq!(inv.consensus.timing.heartbeat, 5);
    assert_eq!(inv.consensus.timing.election_min, Timing::default().election_min, "unset timing keeps defaults");
    let back = Inventory::from_json(&inv.to_json_pretty(), "hosts/test.json").unwrap();
    assert_eq!(back, inv);
}

#[test]
fn accessors_give_peers_keys_and_consensus_config() {
    let inv = load(&valid()).unwrap();
    assert_eq!(inv.node(2).unwrap().name, "node2");
    assert_eq!(inv.node_by_name("node3").unwrap().id, 3);
    assert!(inv.node(9).is_none());
    let peers = inv.peers(2);
    assert_eq!(peers.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(peers[0].address, "127.0.0.1:7101");
    assert_eq!(peers[0].host_key.as_deref(), Some(KEY_A));
    assert_eq!(inv.operator_keys(), [ALICE]);
    assert_eq!(inv.reader_keys(), [BOB]);
    assert_eq!(inv.host_key(1).unwrap(), parse_public_key(KEY_A).unwrap());
    let config = inv.consensus_config(3).unwrap();
    assert_eq!(config.id, 3);
    assert_eq!(config.roles(), Roles { proposer: false, acceptor: true, learner: true });
    assert_eq!(config.members.len(), 3);
    assert_eq!(config.timing.heartbeat, 5);
    assert!(matches!(inv.consensus_config(4), Err(ClusterError::NotInInventory { id: 4, .. })));
}

#[test]
fn ipv6_hosts_get_brackets_in_their_address() {
    let inv = load(&edit(|v| host(v, "node1")["ansible_host"] = json!("::1"))).unwrap();
    assert_eq!(inv.nodes[0].address(), "[::1]:7101");
}

#[test]
fn broken_inventories_each_give_their_specific_error() {
    type Check = fn(&ClusterError) -> bool;
    let table: Vec<(&str, Value, Check, &str)> = vec![
        (
            "duplicate id",
            edit(|v| host(v, "node2")["paxos_id"] = json!(1)),
            |e| matches!(e, ClusterError::DuplicateId { id: 1, .. }),
            "hosts \"node1\" and \"node2\" both have paxos_id 1",
        ),
        (
            "duplicate address",
            edit(|v| host(v, "node3")["paxos_port"] = json!(7101)),
            |e| matches!(e, ClusterError::DuplicateAddress { first, second, .. } if first == "node1" && second == "node3"),
            "both listen on 127.0.0.1:7101",
        ),
        (
            "unknown role",
            edit(|v| host(v, "node3")["paxos_roles"] = json!(["acceptor", "leader"])),
            |e| matches!(e, ClusterError::UnknownRole { node, role, .. } if node == "node3" && role == "leader"),
            "host \"node3\" paxos_roles: unknown role \"leader\"",
        ),
        (
            "unparsable host key",
            edit(|v| host(v, "node2")["paxos_host_key"] = json!("ssh-ed25519 AAAAnot-base64 node2")),
            |e| matches!(e, ClusterError::BadHostKey { node, .. } if node == "node2"),
            "host \"node2\" paxos_host_key: unusable key",
        ),
        (
            "host key that is not ed25519",
            edit(|v| host(v, "node1")["paxos_host_key"] = json!(ECDSA)),
            |e| matches!(e, ClusterError::BadHostKey { node, .. } if node == "node1"),
            "give its ssh-ed25519 key",
        ),
        (
            "two nodes with one host key",
            edit(|v| host(v, "node2")["paxos_host_key"] = json!(KEY_A.replace("node1", "copy"))),
            |e| matches!(e, ClusterError::DuplicateKey { .. }),
            "(host key of node1 and host key of node2)",
        ),
        (
            "a key both operator and reader",
            edit(|v| vars(v)["paxos_readers"] = json!([BOB, ALICE])),
            |e| matches!(e, ClusterError::DuplicateKey { first, second, .. } if first == "operators[0]" && second == "readers[1]"),
            "each key gets exactly one role",
        ),
        (
            "unparsable operator key",
            edit(|v| vars(v)["paxos_operators"] = json!(["alice's key"])),
            |e| matches!(e, ClusterError::BadUserKey { list: "operators", index: 0, .. }),
            "all.vars paxos_operators[0]: unusable public key",
        ),
        (
            "flexible quorums that do not intersect",
            edit(|v| {
                vars(v)["paxos_consensus"]["phase1_quorum"] = json!(1);
                vars(v)["paxos_consensus"]["phase2_quorum"] = json!(2);
            }),
            |e| {
                matches!(
                    e,
                    ClusterError::Consensus { source: ConfigError::Quorum(QuorumError::NoIntersection { .. }), .. }
                )
            },
            "consensus settings: phase-1 quorum 1 + phase-2 quorum 2 must exceed the 3 acceptors",
        ),
        (
            "no proposer",
            edit(|v| {
                for n in v["all"]["hosts"].as_object_mut().unwrap().values_mut() {
                    n["paxos_roles"] = json!(["acceptor"]);
                }
            }),
            |e| matches!(e, ClusterError::Consensus { source: ConfigError::NoProposers, .. }),
            "no proposer",
        ),
        (
            "bad timing",
            edit(|v| vars(v)["paxos_consensus"]["timing"] = json!({"election_min": 300, "election_max": 200})),
            |e| matches!(e, ClusterError::Consensus { source: ConfigError::Timing(_), .. }),
            "split votes",
        ),
        (
            "alpha 0",
            edit(|v| vars(v)["paxos_consensus"]["alpha"] = json!(0)),
            |e| matches!(e, ClusterError::Consensus { source: ConfigError::Tuning(_), .. }),
            "alpha is 0; it must be between 1 and 1048576",
        ),
        (
            "alpha too large",
            edit(|v| vars(v)["paxos_consensus"]["alpha"] = json!(1_048_577)),
            |e| matches!(e, ClusterError::Consensus { source: ConfigError::Tuning(_), .. }),
            "alpha is 1048577",
        ),
        (
            "alpha below the pipeline",
            edit(|v| vars(v)["paxos_consensus"]["alpha"] = json!(63)),
            |e| matches!(e, ClusterError::Consensus { source: ConfigError::Tuning(_), .. }),
            "pipeline_depth (64) must be at most alpha (63)",
        ),
        (
            "alpha not a number",
            edit(|v| vars(v)["paxos_consensus"]["alpha"] = json!(-1)),
            |e| matches!(e, ClusterError::Invalid { .. }),
            "alpha",
        ),
        (
            "no hosts",
            edit(|v| v["all"]["hosts"] = json!({})),
            |e| matches!(e, ClusterError::NoNodes { .. }),
            "lists no hosts",
        ),
        (
            "node id 0",
            edit(|v| host(v, "node1")["paxos_id"] = json!(0)),
            |e| matches!(e, ClusterError::Invalid { .. }),
            "id 0 is reserved",
        ),
        (
            "port 0",
            edit(|v| host(v, "node1")["paxos_port"] = json!(0)),
            |e| matches!(e, ClusterError::Invalid { .. }),
            "port 0 cannot be dialed",
        ),
        (
            "tick 0",
            edit(|v| vars(v)["paxos_tick_ms"] = json!(0)),
            |e| matches!(e, ClusterError::Invalid { .. }),
            "all.vars paxos_tick_ms",
        ),
        (
            "misspelt field",
            edit(|v| vars(v)["paxos_consensus"]["phase1_quorom"] = json!(2)),
            |e| matches!(e, ClusterError::Invalid { .. }),
            "all.vars paxos_consensus: unknown field `phase1_quorom`",
        ),
        (
            "port out of range",
            edit(|v| host(v, "node1")["paxos_port"] = json!(70000)),
            |e| matches!(e, ClusterError::Invalid { .. }),
            "host \"node1\" paxos_port: invalid value: integer `70000`",
        ),
    ];
    for (what, inventory, check, message) in table {
        let err = load(&inventory).expect_err(what);
        assert!(check(&err), "{what}: wrong error {err:?}");
        let text = err.to_string();
        assert!(text.starts_with("hosts/test.json"), "{what}: the error must name the file: {text}");
        assert!(text.contains(message), "{what}: {text:?} should contain {message:?}");
    }
}

#[test]
fn malformed_json_reports_line_and_column() {
    let text = "{\n  \"all\": {\"hosts\": \n  [,]}\n}";
    let err = Inventory::from_json(text, "hosts/lab.json").unwrap_err();
    assert!(matches!(err, ClusterError::Json { line: 3, column: 4, .. }), "{err:?}");
    assert!(err.to_string().starts_with("hosts/lab.json:3:4: malformed JSON"), "{err}");
}

#[test]
fn an_unreadable_file_is_named() {
    let err = Inventory::load("/nonexistent/paxos/hosts.json").unwrap_err();
    assert!(matches!(err, ClusterError::Read { .. }));
    assert!(err.to_string().starts_with("cannot read /nonexistent/paxos/hosts.json: "), "{err}");
}

#[test]
fn provisioning_inventories_may_lack_host_keys_but_serving_needs_them() {
    let inv = load(&edit(|v| host(v, "node3").as_object_mut().unwrap().retain(|k, _| k != "paxos_host_key"))).unwrap();
    let err = inv.require_host_keys().unwrap_err();
    assert!(matches!(&err, ClusterError::MissingHostKey { node, .. } if node == "node3"), "{err:?}");
    assert!(err.to_string().contains("host \"node3\" has no paxos_host_key"));
    let node = NodeConfig::from_json(r#"{"id": 1}"#, Path::new("/etc/paxos/node.json"), Some(&defaults())).unwrap();
    assert!(matches!(Cluster::from_parts(node, inv), Err(ClusterError::MissingHostKey { .. })));
}

#[test]
fn the_example_inventory_is_valid_for_provisioning() {
    let inv = Inventory::load(concat!(env!("CARGO_MANIFEST_DIR"), "/hosts/example.json")).unwrap();
    assert_eq!(inv.nodes.len(), 4);
    assert_eq!(inv.nodes[2].address(), "10.0.0.13:7100");
    assert_eq!(inv.nodes[3].roles, ["learner"]);
    assert_eq!(inv.consensus.alpha, Some(128));
}

fn defaults() -> DefaultPaths {
    DefaultPaths { data_dir: "/home/op/.local/share/paxos".into(), config_dir: "/home/op/.config/paxos".into() }
}

#[test]
fn node_config_fills_defaults_and_resolves_relative_paths() {
    let path = Path::new("/etc/paxos/node.json");
    let c = NodeConfig::from_json(r#"{"id": 2}"#, path, Some(&defaults())).unwrap();
    assert_eq!(c.listen, None);
    assert_eq!(c.data_dir, Path::new("/home/op/.local/share/paxos/node-2"));
    assert_eq!(c.key_file, Path::new("/home/op/.config/paxos/node-2.key"));
    assert_eq!(c.cluster_file, Path::new("/home/op/.config/paxos/cluster.json"));
    assert_eq!(c.audit_log, Path::new("/home/op/.local/share/paxos/node-2/audit.log"));
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.clock_skew_warn_ms, 500);

    let text = r#"{"id": 1, "listen": "0.0.0.0:7101", "data_dir": "data/n1", "key_file": "/keys/n1",
                   "cluster_file": "../hosts.json", "audit_log": "/var/log/paxos-audit.log", "log_format": "json",
                   "clock_skew_warn_ms": 250}"#;
    let c = NodeConfig::from_json(text, path, None).unwrap();
    assert_eq!(c.listen, Some("0.0.0.0:7101".parse().unwrap()));
    assert_eq!(c.data_dir, Path::new("/etc/paxos/data/n1"));
    assert_eq!(c.key_file, Path::new("/keys/n1"));
    assert_eq!(c.cluster_file, Path::new("/etc/paxos/../hosts.json"));
    assert_eq!(c.audit_log, Path::new("/var/log/paxos-audit.log"));
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.clock_skew_warn_ms, 250);
    let back = NodeConfig::from_json(&serde_json::to_string(&c).unwrap(), path, None).unwrap();
    assert_eq!(back, c);
}

#[test]
fn broken_node_configs_say_what_to_fix() {
    let path = Path::new("node.json");
    let table: [(&str, Option<&DefaultPaths>, &str); 10] = [
        (r#"{"id": 0}"#, None, "node id 0 is reserved"),
        (r#"{"listen": "0.0.0.0:1"}"#, None, "missing field `id`"),
        (r#"{"id": 1, "listen": "nowhere"}"#, None, "node.json:1:"),
        (r#"{"id": 1, "log_format": "xml"}"#, None, "unknown variant `xml`"),
        (r#"{"id": 1, "data_dri": "/x"}"#, None, "unknown field `data_dri`"),
        (r#"{"id": 1}"#, None, "data_dir is not set and there is no default location"),
        (
            r#"{"id": 1, "clock_skew_warn_ms": 0}"#,
            None,
            "node.json: invalid clock_skew_warn_ms: 0 ms is out of range; give a threshold from 1 to 3600000 ms",
        ),
        (r#"{"id": 1, "clock_skew_warn_ms": 3600001}"#, None, "invalid clock_skew_warn_ms: 3600001 ms is out of range"),
        (r#"{"id": 1, "clock_skew_warn_ms": -5}"#, None, "invalid value: integer `-5`"),
        (r#"{"id": 1, "clock_skew_warn_ms": "500ms"}"#, None, "invalid type: string \"500ms\""),
    ];
    for (text, defaults, message) in table {
        let err = NodeConfig::from_json(text, path, defaults).unwrap_err();
        assert!(err.to_string().contains(message), "{text}: {err}");
    }
}

#[test]
fn a_node_config_must_name_a_node_of_the_inventory() {
    let inv = load(&valid()).unwrap();
    let node = NodeConfig::from_json(r#"{"id": 7}"#, Path::new("/etc/paxos/node.json"), Some(&defaults())).unwrap();
    let err = Cluster::from_parts(node, inv).unwrap_err();
    assert!(matches!(err, ClusterError::NotInInventory { id: 7, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "/etc/paxos/node.json: node id 7 is not in the inventory hosts/test.json; use one of the ids listed there (1, 2, 3)"
    );
}

#[test]
fn a_cluster_joins_node_config_and_inventory() {
    let inv = load(&valid()).unwrap();
    let node = NodeConfig::from_json(r#"{"id": 2}"#, Path::new("/etc/paxos/node.json"), Some(&defaults())).unwrap();
    let cluster = Cluster::from_parts(node, inv).unwrap();
    assert_eq!(cluster.me().name, "node2");
    assert_eq!(cluster.listen(), "0.0.0.0:7102".parse().unwrap());
    assert_eq!(cluster.consensus.id, 2);
    assert_eq!(cluster.tick(), std::time::Duration::from_millis(10));
    let peers = cluster.peers().unwrap();
    assert_eq!(peers.iter().map(|(p, _)| p.id).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(peers[1].1, parse_public_key(KEY_C).unwrap());
}

#[test]
fn cluster_load_reads_both_files() {
    let dir = std::env::temp_dir().join(format!("paxos-cluster-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts.json"), valid().to_string()).unwrap();
    std::fs::write(
        dir.join("node.json"),
        r#"{"id": 3, "cluster_file": "hosts.json", "data_dir": "d", "key_file": "k"}"#,
    )
    .unwrap();
    let cluster = Cluster::load(dir.join("node.json"));
    std::fs::remove_dir_all(&dir).unwrap();
    let cluster = cluster.unwrap();
    assert_eq!(cluster.me().name, "node3");
    assert_eq!(cluster.node.data_dir, dir.join("d"));
}

#[test]
fn the_lab_inventory_is_valid_for_provisioning() {
    let inv = Inventory::load(concat!(env!("CARGO_MANIFEST_DIR"), "/hosts/lab.json")).unwrap();
    assert_eq!(inv.cluster, "lab");
    assert_eq!(
        inv.nodes.iter().map(|n| n.address()).collect::<Vec<_>>(),
        ["172.30.99.11:7100", "172.30.99.12:7100", "172.30.99.13:7100"]
    );
}

/// An RSA public key line with a modulus of `bits` bits (not a usable key
/// pair: the inventory only looks at the public half).
fn rsa_line(bits: usize) -> String {
    use russh::keys::ssh_key::Mpint;
    use russh::keys::ssh_key::public::{KeyData, RsaPublicKey};
    let mut modulus = vec![0xc5u8; bits / 8];
    modulus[bits / 8 - 1] |= 1;
    let rsa = RsaPublicKey::new(Mpint::from_positive_bytes(&[1, 0, 1]), Mpint::from_positive_bytes(&modulus)).unwrap();
    PublicKey::new(KeyData::Rsa(rsa), "carol").to_openssh().unwrap()
}

#[test]
fn rsa_operator_and_reader_keys_need_2048_bits() {
    let inv = load(&edit(|v| vars(v)["paxos_operators"] = json!([ALICE, rsa_line(3072)]))).unwrap();
    assert_eq!(inv.operator_keys().len(), 2);
    load(&edit(|v| vars(v)["paxos_readers"] = json!([rsa_line(2048)]))).unwrap();
    for list in ["paxos_operators", "paxos_readers"] {
        let err = load(&edit(|v| vars(v)[list] = json!([rsa_line(1024)]))).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ClusterError::BadUserKey { index: 0, .. }), "{message}");
        assert!(message.contains("this RSA key has 1024 bits, fewer than the 2048 required"), "{message}");
        assert!(message.contains("ssh-keygen -t rsa -b 3072"), "{message}");
    }
    // Node keys stay ed25519.
    let err = load(&edit(|v| host(v, "node1")["paxos_host_key"] = json!(rsa_line(3072)))).unwrap_err();
    assert!(err.to_string().contains("give its ssh-ed25519 key"), "{err}");
}

#[test]
fn a_host_with_paxos_join_is_outside_the_seed_configuration() {
    let doc = edit(|v| {
        *host(v, "node3") = json!({"ansible_host": "127.0.0.1", "paxos_id": 3, "paxos_port": 7103,
                                   "paxos_host_key": KEY_C, "paxos_join": true});
    });
    let inventory = load(&doc).expect("a joining host is valid");
    assert!(inventory.node(3).unwrap().join);
    let seed = inventory.consensus_config(1).unwrap();
    assert_eq!(seed.members.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert!(!seed.joining);
    let joiner = inventory.consensus_config(3).unwrap();
    assert_eq!((joiner.members, joiner.joining), (seed.members, true));
    // It round-trips through the Ansible shape.
    let again = Inventory::from_json(&inventory.to_json_pretty(), "hosts/again.json").unwrap();
    assert!(again.node(3).unwrap().join && !again.node(1).unwrap().join);

    let every = edit(|v| {
        for name in ["node1", "node2", "node3"] {
            host(v, name)["paxos_join"] = json!(true);
        }
    });
    let err = load(&every).unwrap_err().to_string();
    assert!(err.contains("every host has paxos_join"), "{err}");
    let typed = edit(|v| host(v, "node3")["paxos_join"] = json!("yes"));
    let err = load(&typed).unwrap_err().to_string();
    assert!(err.contains("paxos_join") && err.contains("\"yes\""), "{err}");
}
