//! `paxos prometheus-config`: a Prometheus `scrape_configs` section with one
//! target per node of the inventory, at the node's host and the port its
//! `metrics_listen` uses. The inventory does not know that port (it is set
//! in each node's config), so it is given here.

use crate::cluster::Inventory;
use clap::Args;
use std::path::Path;

#[derive(Args, Debug)]
pub struct PrometheusConfigArgs {
    /// The port of every node's `metrics_listen` (e.g. "0.0.0.0:9464" in the node config gives 9464).
    #[arg(long, value_name = "PORT")]
    pub metrics_port: u16,
    /// The Prometheus job name.
    #[arg(long, default_value = "paxos", value_name = "NAME")]
    pub job: String,
    /// How often Prometheus scrapes, as Prometheus writes durations.
    #[arg(long, default_value = "15s", value_name = "DURATION")]
    pub scrape_interval: String,
}

pub fn run(cluster: &Path, args: PrometheusConfigArgs) -> anyhow::Result<u8> {
    let inventory = Inventory::load(cluster)?;
    if args.metrics_port == 0 {
        anyhow::bail!("--metrics-port 0 is no port a node listens on; give the port of its metrics_listen");
    }
    if !valid_duration(&args.scrape_interval) {
        anyhow::bail!(
            "--scrape-interval {:?} is not a Prometheus duration (e.g. 15s, 1m, 500ms)",
            args.scrape_interval
        );
    }
    print!("{}", scrape_config(&inventory, &args));
    Ok(0)
}

/// A Prometheus duration: one or more NUMBER UNIT pairs (`1m30s`, `500ms`).
fn valid_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"].into_iter().find(|u| rest.starts_with(u));
        let Some(unit) = unit else { return false };
        rest = &rest[unit.len()..];
    }
    true
}

/// A YAML string (JSON's double-quoted form is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

pub fn scrape_config(inventory: &Inventory, args: &PrometheusConfigArgs) -> String {
    let mut out = format!(
        "# Prometheus scrape config for the paxos cluster {} (from {}).\n\
         # Every node must serve its metrics over HTTP: set \"metrics_listen\": \"0.0.0.0:{}\"\n\
         # in its node config (off by default; the playbook writes it from paxos_metrics_listen).\n\
         # Paste under the top level of prometheus.yml.\n\
         scrape_configs:\n  - job_name: {}\n    scrape_interval: {}\n    metrics_path: /metrics\n    static_configs:\n",
        quoted(&inventory.cluster),
        inventory.path.display(),
        args.metrics_port,
        quoted(&args.job),
        quoted(&args.scrape_interval),
    );
    for node in &inventory.nodes {
        let host = if node.host.contains(':') && !node.host.starts_with('[') {
            format!("[{}]", node.host)
        } else {
            node.host.clone()
        };
        out.push_str(&format!(
            "      - targets: [{}]\n        labels:\n          cluster: {}\n          node: {}\n          paxos_id: {}\n",
            quoted(&format!("{host}:{}", args.metrics_port)),
            quoted(&inventory.cluster),
            quoted(&node.name),
            quoted(&node.id.to_string()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(port: u16) -> PrometheusConfigArgs {
        PrometheusConfigArgs { metrics_port: port, job: "paxos".into(), scrape_interval: "15s".into() }
    }

    #[test]
    fn one_target_per_node_at_its_host_and_the_metrics_port() {
        let text = r#"{"all": {"hosts": {
            "db1": {"ansible_host": "10.0.0.11", "paxos_id": 1},
            "db2": {"ansible_host": "fd00::12", "paxos_id": 2},
            "db3": {"paxos_id": 3}},
          "vars": {"paxos_cluster": "lab", "paxos_port": 7100}}}"#;
        let inventory = Inventory::from_json(text, "hosts/lab.json").unwrap();
        let yaml = scrape_config(&inventory, &args(9464));
        let targets: Vec<&str> = yaml.lines().filter(|l| l.trim_start().starts_with("- targets:")).collect();
        assert_eq!(
            targets,
            [
                "      - targets: [\"10.0.0.11:9464\"]",
                "      - targets: [\"[fd00::12]:9464\"]",
                "      - targets: [\"db3:9464\"]"
            ],
            "{yaml}"
        );
        assert!(yaml.contains("\n  - job_name: \"paxos\"\n    scrape_interval: \"15s\"\n"), "{yaml}");
        assert!(yaml.contains("          node: \"db2\"\n          paxos_id: \"2\"\n"), "{yaml}");
        assert!(yaml.contains("\"metrics_listen\": \"0.0.0.0:9464\""), "{yaml}");
    }

    #[test]
    fn scrape_intervals_are_prometheus_durations() {
        for good in ["15s", "1m30s", "500ms", "2h"] {
            assert!(valid_duration(good), "{good}");
        }
        for bad in ["", "15", "s", "1.5s", "15 s", "-1s", "1x"] {
            assert!(!valid_duration(bad), "{bad}");
        }
    }
}
