//! The inventory as Ansible users write it: their own variables, groups and
//! defaults in group vars, and misspelt `paxos_*` settings refused by name.

use super::super::{ClusterError, Inventory};
use super::PLAYBOOK_VARS;
use serde_json::{Value, json};

const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwLQX/RMWc6MHKB8+aO9j37934HL8pKCCo/A/ko9kFH node1";

fn load(v: &Value) -> Result<Inventory, ClusterError> {
    Inventory::from_json(&v.to_string(), "hosts/lab.json")
}

fn lab() -> Value {
    json!({"all": {
        "hosts": {
            "node1": {"ansible_host": "10.0.0.11", "paxos_id": 1, "ansible_user": "admin", "ansible_port": 2222,
                      "rack": "a", "paxos_host_key": KEY_A},
            "node2": {"ansible_host": "10.0.0.12", "paxos_id": 2},
            "node3": {"paxos_id": 3, "paxos_host": "node3.lab.example", "ansible_host": "192.168.1.3"}
        },
        "vars": {"paxos_cluster": "lab", "paxos_port": 7100, "ansible_python_interpreter": "/usr/bin/python3",
                 "ntp_server": "10.0.0.1", "paxos_data_dir": "/srv/paxos"},
        "children": {
            "learners": {
                "hosts": {"node4": {"ansible_host": "10.0.0.14", "paxos_id": 4}, "node5": {"paxos_id": 5}},
                "vars": {"paxos_roles": ["learner"], "paxos_port": 7200}
            }
        }
    }})
}

fn edit(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = lab();
    f(&mut v);
    v
}

fn error_of(v: &Value) -> String {
    load(v).expect_err("must be refused").to_string()
}

#[test]
fn ansible_users_own_variables_are_ignored_and_group_vars_are_defaults() {
    let inv = load(&lab()).unwrap();
    let names: Vec<&str> = inv.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "node3", "node4", "node5"], "sorted by paxos_id");
    assert_eq!(inv.nodes[0].address(), "10.0.0.11:7100", "ansible_host and the port from all.vars");
    assert_eq!(inv.nodes[0].host_key.as_deref(), Some(KEY_A));
    assert_eq!(inv.nodes[2].address(), "node3.lab.example:7100", "paxos_host wins over ansible_host");
    assert_eq!(inv.nodes[3].address(), "10.0.0.14:7200", "the child group's port overrides all.vars");
    assert_eq!(inv.nodes[4].address(), "node5:7200", "no address given: the host's own name");
    assert_eq!(inv.nodes[3].roles, ["learner"]);
    assert_eq!(inv.nodes[0].roles, ["proposer", "acceptor", "learner"], "roles default to all three");
    assert_eq!(inv.cluster, "lab");
}

#[test]
fn a_host_setting_overrides_its_groups() {
    let inv = load(&edit(|v| {
        v["all"]["children"]["learners"]["hosts"]["node5"] = json!({"paxos_id": 5, "paxos_port": 7300});
        v["all"]["hosts"]["node1"]["paxos_port"] = json!(7001);
    }))
    .unwrap();
    assert_eq!(inv.node(5).unwrap().port, 7300);
    assert_eq!(inv.node(1).unwrap().port, 7001);
    assert_eq!(inv.node(2).unwrap().port, 7100);
}

#[test]
fn other_top_level_groups_are_read_as_children_of_all() {
    let inv = load(&edit(|v| {
        v["all"]["children"]["learners"]["hosts"]["node5"] = json!({"paxos_id": 5});
        v["rack_b"] = json!({"hosts": {"node6": {"paxos_id": 6}}, "vars": {"paxos_port": 7600, "owner": "ops"}});
    }))
    .unwrap();
    assert_eq!(inv.node(6).unwrap().address(), "node6:7600");
}

#[test]
fn misspelt_paxos_settings_are_refused_naming_host_and_field() {
    let table: Vec<(Value, &str)> = vec![
        (
            edit(|v| v["all"]["hosts"]["node2"]["paxos_prot"] = json!(7100)),
            "host \"node2\" paxos_prot: unknown paxos setting; did you mean paxos_port?",
        ),
        (
            edit(|v| v["all"]["vars"]["paxos_oprators"] = json!([])),
            "group \"all\" vars paxos_oprators: unknown paxos setting; did you mean paxos_operators?",
        ),
        (
            edit(|v| v["all"]["children"]["learners"]["vars"]["paxos_role"] = json!(["learner"])),
            "group \"learners\" vars paxos_role: unknown paxos setting; did you mean paxos_roles?",
        ),
        (
            edit(|v| v["all"]["hosts"]["node1"]["paxos_cluster"] = json!("other")),
            "host \"node1\" paxos_cluster: is a cluster-wide setting; set it once under all.vars",
        ),
        (edit(|v| v["all"]["hosts"]["node1"]["paxos_zzzzzzzzzz"] = json!(1)), "known ones are paxos_id, paxos_host"),
    ];
    for (inventory, message) in table {
        let text = error_of(&inventory);
        assert!(text.starts_with("hosts/lab.json: invalid "), "{text}");
        assert!(text.contains(message), "{text:?} should contain {message:?}");
    }
}

#[test]
fn wrong_and_missing_values_name_host_and_field() {
    let table: Vec<(Value, &str)> = vec![
        (
            edit(|v| v["all"]["hosts"]["node2"]["paxos_roles"] = json!("learner")),
            "host \"node2\" paxos_roles: invalid type",
        ),
        (edit(|v| v["all"]["hosts"]["node2"]["paxos_id"] = json!("two")), "host \"node2\" paxos_id: invalid type"),
        (edit(|v| v["all"]["hosts"]["node2"]["paxos_id"] = json!(-1)), "host \"node2\" paxos_id: invalid value"),
        (edit(|v| v["all"]["hosts"]["node2"]["ansible_host"] = json!(10)), "host \"node2\" ansible_host: invalid type"),
        (
            edit(|v| v["all"]["hosts"]["node2"].as_object_mut().unwrap().remove("paxos_id").map(drop).unwrap_or(())),
            "host \"node2\" paxos_id: missing",
        ),
        (
            edit(|v| v["all"]["children"]["learners"]["hosts"]["node5"] = Value::Null),
            "host \"node5\" paxos_id: missing",
        ),
        (edit(|v| v["all"]["vars"].as_object_mut().unwrap().clear()), "all.vars paxos_cluster: missing"),
        (edit(|v| v["all"]["hosts"]["node2"] = json!([1])), "host \"node2\": must be an object"),
        (
            edit(|v| v["all"]["hostz"] = json!({})),
            "group \"all\" hostz: an inventory group holds only hosts, vars and children",
        ),
        (json!({"nodes": []}), "invalid all: missing; write {\"all\""),
        (json!([1, 2]), "an inventory is an object"),
        (
            edit(|v| v["all"]["hosts"]["node2"]["paxos_id"] = json!(1)),
            "hosts \"node1\" and \"node2\" both have paxos_id 1",
        ),
        (
            edit(|v| v["all"]["hosts"]["node3"]["paxos_host"] = json!("10.0.0.11")),
            "hosts \"node1\" and \"node3\" both listen on 10.0.0.11:7100",
        ),
    ];
    for (inventory, message) in table {
        let text = error_of(&inventory);
        assert!(text.starts_with("hosts/lab.json: "), "{text}");
        assert!(text.contains(message), "{text:?} should contain {message:?}");
    }
}

#[test]
fn written_inventories_are_in_ansible_shape_and_read_back_the_same() {
    let inv = load(&lab()).unwrap();
    let text = inv.to_json_pretty();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["all"]["hosts"]["node4"]["ansible_host"], json!("10.0.0.14"));
    assert_eq!(doc["all"]["hosts"]["node4"]["paxos_port"], json!(7200));
    assert_eq!(doc["all"]["vars"]["paxos_cluster"], json!("lab"));
    assert_eq!(Inventory::from_json(&text, "hosts/lab.json").unwrap(), inv);
}

/// Every variable the Ansible role declares is one `paxos` accepts, and the
/// other way round, so the inventory can set any of them.
#[test]
fn the_roles_variables_are_the_playbook_settings_paxos_accepts() {
    let defaults = concat!(env!("CARGO_MANIFEST_DIR"), "/ansible/roles/paxos/defaults/main.yml");
    let text = std::fs::read_to_string(defaults).unwrap();
    let mut declared: Vec<&str> =
        text.lines().filter(|l| l.starts_with("paxos_")).filter_map(|l| l.split(':').next()).collect();
    declared.sort_unstable();
    let mut accepted = PLAYBOOK_VARS.to_vec();
    accepted.sort_unstable();
    assert_eq!(declared, accepted);
}

#[test]
fn drill_templates_merge_from_groups_and_hosts() {
    let v = edit(|v| {
        v["all"]["vars"]["paxos_drill_kill_cmd"] = json!("ssh {host} sudo systemctl kill -s KILL paxos");
        v["all"]["vars"]["paxos_drill_restore_cmd"] = json!("ssh {host} sudo systemctl start paxos");
        v["all"]["children"]["learners"]["vars"]["paxos_drill_kill_cmd"] = json!("learner-kill {id}");
        v["all"]["hosts"]["node2"]["paxos_drill_restore_cmd"] = json!("node2-start");
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let settings = Inventory::load(&path).unwrap().drill_settings().unwrap();
    assert_eq!(settings[&1]["paxos_drill_kill_cmd"], "ssh {host} sudo systemctl kill -s KILL paxos");
    assert_eq!(settings[&2]["paxos_drill_restore_cmd"], "node2-start");
    assert_eq!(settings[&4]["paxos_drill_kill_cmd"], "learner-kill {id}");
    assert_eq!(settings[&4]["paxos_drill_restore_cmd"], "ssh {host} sudo systemctl start paxos");
    let typo = edit(|v| v["all"]["vars"]["paxos_drill_kil_cmd"] = json!("x"));
    assert!(error_of(&typo).contains("did you mean paxos_drill_kill_cmd"), "{}", error_of(&typo));
    let not_text = edit(|v| v["all"]["hosts"]["node1"]["paxos_drill_stop_cmd"] = json!(3));
    std::fs::write(&path, not_text.to_string()).unwrap();
    let e = Inventory::load(&path).unwrap().drill_settings().unwrap_err().to_string();
    assert!(e.contains("paxos_drill_stop_cmd"), "{e}");
}
