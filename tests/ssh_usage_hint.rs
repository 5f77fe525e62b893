//! `ssh HOST status` (an exec request) and `ssh HOST` (a shell) with the
//! real OpenSSH client: one line on stderr saying how to ask, and a
//! non-zero exit, instead of a bare "request failed".

mod limits_support;
mod ssh_support;

use limits_support::{have_ssh, openssh_from, start_limited};
use paxos::ssh::ConnectionLimits;
use std::process::Output;

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The hint lines of stderr (OpenSSH may add its own warnings).
fn hint_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("paxos: ")).map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_shell_get_a_usage_hint() {
    if !have_ssh() {
        return;
    }
    let s = start_limited(ConnectionLimits::DEFAULT).await;

    let out = openssh_from(&s, "127.0.0.1", &["status"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    assert_eq!(
        hint_lines(&out),
        ["paxos: \"status\" is not run by a shell here; use: ssh HOST -s paxos status \
          (ssh HOST -s paxos help lists the commands)"],
        "{}",
        show(&out)
    );

    // The words are carried into the suggestion.
    let out = openssh_from(&s, "127.0.0.1", &["get", "k1", "--json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(hint_lines(&out)[0].contains("use: ssh HOST -s paxos get k1 --json "), "{}", show(&out));

    // A shell: `ssh -T HOST` with no command.
    let out = openssh_from(&s, "127.0.0.1", &["-T"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(
        hint_lines(&out),
        ["paxos: no shell here; use: ssh HOST -s paxos status (ssh HOST -s paxos help lists the commands)"],
        "{}",
        show(&out)
    );

    // Control bytes are never echoed raw, and a huge command is cut short.
    let hostile = format!("x\x1b[2J{}", "y".repeat(10_000));
    let out = openssh_from(&s, "127.0.0.1", &[&hostile]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let hint = &hint_lines(&out)[0];
    assert!(!hint.contains('\x1b') && hint.contains("\\u{1b}"), "{hint}");
    assert!(hint.len() < 300 && hint.contains("use: ssh HOST -s paxos status "), "{hint}");

    // The real commands still work over exec and subsystem alike.
    let out = openssh_from(&s, "127.0.0.1", &["paxos", "status"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = openssh_from(&s, "127.0.0.1", &["-s", "paxos", "status"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}
