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

/// An RSA key made by `ssh-keygen`, as many operators already have.
fn ssh_keygen_rsa(dir: &tempfile::TempDir, name: &str, bits: u32) -> (PathBuf, russh::keys::PublicKey) {
    let path = dir.path().join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", &bits.to_string(), "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, keys::parse_public(&line).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_rsa_keys_sign_with_sha2_and_sha1_is_refused() {
    if !have_ssh() {
        return;
    }
    logs();
    let dir = tempfile::tempdir().unwrap();
    let host = make_key(&dir, "node1");
    let (operator, operator_public) = ssh_keygen_rsa(&dir, "rsa-operator", 3072);
    let (reader, reader_public) = ssh_keygen_rsa(&dir, "rsa-reader", 2048);
    let access = AccessList {
        operators: vec![operator_public.clone()],
        readers: vec![reader_public.clone()],
        ..AccessList::default()
    };
    let server = start_server(1, &host, access, 64 * 1024).await;
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, keys::known_hosts_line("127.0.0.1", server.addr.port(), &host.public) + "\n").unwrap();
    let f = Fixture { operator: make_key(&dir, "unused"), host, server, known_hosts, dir };

    for (key, public, principal) in [(&operator, &operator_public, "operator"), (&reader, &reader_public, "reader")] {
        let fp = keys::fingerprint(public);
        for algorithm in ["rsa-sha2-512", "rsa-sha2-256"] {
            let accepted = format!("PubkeyAcceptedAlgorithms={algorithm}");
            let out = ssh(&f, key, &f.known_hosts, &["-o", &accepted, "-s", "paxos", "status"]).await;
            assert_eq!(out.status.code(), Some(0), "{algorithm}: {}", show(&out));
            let expected = format!("principal={principal} key={fp} command=paxos status\n");
            assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{}", show(&out));
        }
        // OpenSSH offers no SHA-1 signature: the server does not announce one.
        let out =
            ssh(&f, key, &f.known_hosts, &["-o", "PubkeyAcceptedAlgorithms=ssh-rsa", "-s", "paxos", "status"]).await;
        assert_eq!(out.status.code(), Some(255), "{}", show(&out));
        assert!(out.stdout.is_empty(), "{}", show(&out));

        // The paxos CLI's client signs with rsa-sha2-512.
        let identity = keys::load_private(key).unwrap();
        let client = paxos::ssh::client::SshClient::connect(&f.server.addr_string(), &f.host.public, &identity).await;
        let output = client.unwrap().run("paxos status").await.unwrap();
        assert_eq!(output.exit_status, Some(0));

        // A client that signs with SHA-1 anyway is refused, and the log says why.
        assert!(!sha1_client_authenticates(&f, identity).await, "an ssh-rsa (SHA-1) signature was accepted");
        eventually("the SHA-1 refusal to be logged", || {
            logs().has_line(&["refusing key", &fp, "ssh-rsa (SHA-1), which is refused"])
        })
        .await;
    }
}

struct AnyHost;

impl russh::client::Handler for AnyHost {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Authenticate with `identity` signing as `ssh-rsa` (SHA-1).
async fn sha1_client_authenticates(f: &Fixture, identity: russh::keys::PrivateKey) -> bool {
    let config = russh::client::Config { preferred: paxos::ssh::algorithms::preferred(), ..Default::default() };
    let mut session = russh::client::connect(std::sync::Arc::new(config), f.server.addr, AnyHost).await.unwrap();
    let key = russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(identity), None);
    session.authenticate_publickey("paxos", key).await.unwrap().success()
}
