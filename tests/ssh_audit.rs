//! `ssh-audit` (the Python package) against a live node of a real 3-node
//! cluster: no failure and no warning beyond the documented allow-list,
//! including its DHEat connection-rate check; the cluster and an operator
//! still work afterwards. Skipped, saying so, when `ssh-audit` is not
//! installed (`pip install ssh-audit==3.9.0`).

mod limits_support;
mod ssh_support;
mod support_cluster;

use paxos::ssh::ConnectionLimits;
use serde_json::Value;
use std::io::Write;
use std::process::Command;
use std::time::Duration;
use support_cluster::{Cluster, Out, run};

/// Warnings that cannot be avoided, each with why (README, "SSH server
/// limits and algorithms"). Matched as (algorithm, start of the note).
///
/// The only post-quantum exchange russh has is mlkem768x25519-sha256
/// (OpenSSH 9.9 and later), so every client older than that, OpenSSH 8.x
/// included, needs a classical one; ssh-audit warns about each.
const ALLOWED_WARNINGS: &[(&str, &str)] = &[
    ("curve25519-sha256", PQ_WARNING),
    // Paramiko and OpenSSH before 7.4 know curve25519 only by this name.
    ("curve25519-sha256@libssh.org", PQ_WARNING),
    // Clients without curve25519 at all, such as OpenSSH in FIPS mode.
    ("diffie-hellman-group16-sha512", PQ_WARNING),
];

const PQ_WARNING: &str = "does not provide protection against post-quantum attacks";

/// Whether ssh-audit runs here; if not, says so on the real stderr (not
/// the test harness's captured output), so the skip shows in `cargo test`.
fn ssh_audit_installed() -> bool {
    let why = match Command::new("ssh-audit").arg("--help").output() {
        Ok(out) if out.status.success() => return true,
        Ok(out) => format!("`ssh-audit --help` exited {}", out.status),
        Err(e) => format!("ssh-audit is not installed ({e})"),
    };
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {why}; the SSH algorithm policy was not audited (pip install ssh-audit==3.9.0)"
    );
    false
}

/// Every (section, algorithm, level, note) that ssh-audit flags. Its
/// "additional notes" (the Terrapin reminder, the DHEat result) count as
/// warnings: its text output prints them as such.
fn findings(report: &Value) -> Vec<(String, String, String, String)> {
    let mut found = Vec::new();
    for section in ["kex", "key", "enc", "mac"] {
        for entry in report[section].as_array().into_iter().flatten() {
            let algorithm = entry["algorithm"].as_str().unwrap_or("?").to_string();
            for level in ["fail", "warn"] {
                for note in entry["notes"][level].as_array().into_iter().flatten() {
                    let note = note.as_str().unwrap_or("?").to_string();
                    found.push((section.to_string(), algorithm.clone(), level.to_string(), note));
                }
            }
        }
    }
    for note in report["additional_notes"].as_array().into_iter().flatten() {
        let note = note.as_str().unwrap_or("?").to_string();
        found.push(("additional_notes".into(), String::new(), "warn".into(), note));
    }
    found
}

fn allowed(algorithm: &str, level: &str, note: &str) -> bool {
    level == "warn" && ALLOWED_WARNINGS.iter().any(|(alg, start)| *alg == algorithm && note.starts_with(start))
}

/// `ssh-audit -j` against 127.0.0.1:`port`, its JSON report.
fn audit(port: u16) -> Value {
    let mut cmd = Command::new("ssh-audit");
    cmd.args(["-j", "-p", &port.to_string(), "127.0.0.1"]);
    let out: Out = run(cmd);
    let report: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ssh-audit printed no JSON ({e})\n{}", out.show()));
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    report
}

#[test]
fn ssh_audit_finds_nothing_to_warn_about() {
    if !ssh_audit_installed() {
        return;
    }
    let cluster = Cluster::start(3);
    let report = audit(cluster.node(1).port);

    let kex: Vec<&str> =
        report["kex"].as_array().into_iter().flatten().filter_map(|k| k["algorithm"].as_str()).collect();
    assert_eq!(kex.first(), Some(&"mlkem768x25519-sha256"), "{kex:?}");
    assert!(!kex.contains(&"diffie-hellman-group14-sha256"), "{kex:?}");
    for flag in ["ext-info-s", "kex-strict-s-v00@openssh.com"] {
        assert!(kex.contains(&flag), "{flag} missing from {kex:?}");
    }

    let flagged: Vec<_> =
        findings(&report).into_iter().filter(|(_, alg, level, note)| !allowed(alg, level, note)).collect();
    assert!(flagged.is_empty(), "ssh-audit flagged:\n{flagged:#?}\nfull report above");
    let recommendations = report["recommendations"].as_object().map_or(0, |r| r.len());
    assert_eq!(recommendations, 0, "ssh-audit recommends changes: {}", report["recommendations"]);
    let cves = report["cves"].as_array().map_or(0, Vec::len);
    assert_eq!(cves, 0, "ssh-audit lists CVEs: {}", report["cves"]);

    // The audit's connection flood left the cluster and operators working.
    cluster.wait_for_leader();
    let status = cluster.paxos_on(1, &["status", "--json"]);
    assert_eq!(status.code, Some(0), "{}\n{}", status.show(), cluster.logs());
}

/// The control: the same server with the rate limit opened wide is flagged
/// by the audit's DHEat check, so the test above would see a regression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_audit_flags_a_server_without_the_rate_limit() {
    if !ssh_audit_installed() {
        return;
    }
    let wide = ConnectionLimits {
        auth_timeout: Duration::from_secs(20),
        max_connections: 30_000,
        max_client_connections: 10_000,
        max_unauthenticated: 10_000,
        max_unauthenticated_per_source: 10_000,
        source_burst: 10_000,
        source_per_sec: 10_000,
    };
    let server = limits_support::start_limited(wide).await;
    let port = server.addr.port();
    let report = tokio::task::spawn_blocking(move || audit(port)).await.expect("audit");
    let dheat: Vec<_> = findings(&report).into_iter().filter(|(_, _, _, note)| note.contains("DHEat")).collect();
    assert!(!dheat.is_empty(), "ssh-audit did not notice an unthrottled server");
    assert!(dheat.iter().all(|(_, _, level, note)| level == "warn" && note.contains("conns/sec")), "{dheat:#?}");
}
