//! The real OpenSSH client against the embedded server: the `paxos`
//! subsystem, exec requests, exit statuses, and keys written by
//! `paxos::keys` loading in `ssh`.

mod ssh_support;

use paxos::keys;
use paxos::ssh::AccessList;
use ssh_support::*;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

fn have_ssh() -> bool {
    match std::process::Command::new("ssh").arg("-V").output() {
        Ok(_) => true,
        Err(e) => {
            println!("note: OpenSSH client not runnable ({e}); skipping");
            false
        }
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    host: TestKey,
    operator: TestKey,
    server: RunningServer,
    known_hosts: PathBuf,
}

async fn fixture() -> Fixture {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let host = make_key(&dir, "node1");
    let operator = make_key(&dir, "alice");
    let access = AccessList { operators: vec![operator.public.clone()], ..AccessList::default() };
    let server = start_server(1, &host, access, 64 * 1024).await;
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, keys::known_hosts_line("127.0.0.1", server.addr.port(), &host.public) + "\n").unwrap();
    Fixture { dir, host, operator, server, known_hosts }
}

async fn ssh(f: &Fixture, identity: &Path, known_hosts: &Path, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-p")
        .arg(f.server.addr.port().to_string())
        .arg("-i")
        .arg(identity)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            "127.0.0.1",
        ])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(WAIT, cmd.output()).await {
        Ok(out) => out.expect("run ssh"),
        Err(_) => panic!("ssh {args:?} did not finish\nlogs:\n{}", logs().text()),
    }
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}\nserver logs:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs().text()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_subsystem_and_exec() {
    if !have_ssh() {
        return;
    }
    let f = fixture().await;
    let expected = format!("principal=operator key={} command=paxos status\n", f.operator.fingerprint());

    let out = ssh(&f, &f.operator.path, &f.known_hosts, &["-s", "paxos", "status"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{}", show(&out));

    let out = ssh(&f, &f.operator.path, &f.known_hosts, &["-s", "paxos", "fail"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: asked to fail"), "{}", show(&out));

    // An exec request: `ssh host paxos status`.
    let out = ssh(&f, &f.operator.path, &f.known_hosts, &["paxos", "status"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{}", show(&out));

    // Neither a shell command nor a foreign subsystem gets anywhere.
    let out = ssh(&f, &f.operator.path, &f.known_hosts, &["uname"]).await;
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let out = ssh(&f, &f.operator.path, &f.known_hosts, &["-s", "sftp"]).await;
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_with_wrong_identity_fails() {
    if !have_ssh() {
        return;
    }
    let f = fixture().await;
    let stranger = make_key(&f.dir, "mallory");
    let out = ssh(&f, &stranger.path, &f.known_hosts, &["-s", "paxos", "status"]).await;
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    let fp = stranger.fingerprint();
    eventually("the rejection to be logged", || logs().has_line(&["rejecting unknown key", &fp])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_refuses_a_server_with_another_host_key() {
    if !have_ssh() {
        return;
    }
    let f = fixture().await;
    let other = make_key(&f.dir, "other-host");
    let wrong = f.dir.path().join("known_hosts_wrong");
    std::fs::write(&wrong, keys::known_hosts_line("127.0.0.1", f.server.addr.port(), &other.public) + "\n").unwrap();
    let out = ssh(&f, &f.operator.path, &wrong, &["-s", "paxos", "status"]).await;
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    // Sanity: the pinned line for the real key is what made the other test pass.
    assert!(
        std::fs::read_to_string(&f.known_hosts)
            .unwrap()
            .contains(&keys::public_line(&russh::keys::PublicKey::new(f.host.public.key_data().clone(), "")))
    );
}
