//! The algorithm policy against the real OpenSSH client restricted to what
//! older clients offer: OpenSSH 8.x's default lists still connect, a
//! client with no curve25519 (OpenSSH in FIPS mode) gets group16, and a
//! client offering only what the node dropped is refused.

mod limits_support;
mod ssh_support;

use limits_support::{LimitedServer, have_ssh, openssh_from, start_limited};
use paxos::ssh::ConnectionLimits;
use std::process::Output;

/// OpenSSH 8.2's defaults (ssh_config(5) of that release).
const OPENSSH_8_KEX: &str = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,\
    ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,\
    diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";
const OPENSSH_8_CIPHERS: &str =
    "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";
const OPENSSH_8_MACS: &str = "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,\
    hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,\
    hmac-sha2-256,hmac-sha2-512,hmac-sha1";

fn show(out: &Output) -> String {
    format!("status {:?}\nstderr: {}", out.status.code(), String::from_utf8_lossy(&out.stderr))
}

/// `ssh -v` with these algorithm lists, running `paxos status`.
async fn ssh_with(s: &LimitedServer, kex: &str, ciphers: &str, macs: &str) -> Output {
    let (kex, ciphers, macs) = (format!("KexAlgorithms={kex}"), format!("Ciphers={ciphers}"), format!("MACs={macs}"));
    openssh_from(s, "127.0.0.1", &["-v", "-o", &kex, "-o", &ciphers, "-o", &macs, "-s", "paxos", "status"]).await
}

/// What OpenSSH -v says was negotiated, e.g. "kex: algorithm: X".
fn negotiated(out: &Output, what: &str) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.split_once(what).map(|(_, rest)| rest.trim().to_string()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_clients_connect_and_dropped_algorithms_are_refused() {
    if !have_ssh() {
        return;
    }
    let s = start_limited(ConnectionLimits::DEFAULT).await;

    let out = ssh_with(&s, OPENSSH_8_KEX, OPENSSH_8_CIPHERS, OPENSSH_8_MACS).await;
    assert_eq!(out.status.code(), Some(0), "OpenSSH 8.x defaults: {}", show(&out));
    assert_eq!(negotiated(&out, "kex: algorithm:"), "curve25519-sha256", "{}", show(&out));
    // No chacha20-poly1305 on offer: an 8.x client that may lack strict kex
    // takes AES-CTR with an encrypt-then-MAC (or GCM), which Terrapin
    // cannot use.
    let cipher = negotiated(&out, "kex: server->client cipher:");
    assert!(cipher.starts_with("aes128-ctr MAC: hmac-sha2-256-etm@openssh.com"), "{cipher}\n{}", show(&out));

    // OpenSSH in FIPS mode: no curve25519, no chacha20.
    let out = ssh_with(
        &s,
        "ecdh-sha2-nistp256,diffie-hellman-group16-sha512",
        "aes256-gcm@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "FIPS-like client: {}", show(&out));
    assert_eq!(negotiated(&out, "kex: algorithm:"), "diffie-hellman-group16-sha512", "{}", show(&out));

    // What the node no longer offers.
    let out = ssh_with(&s, "diffie-hellman-group14-sha256", "aes128-ctr", "hmac-sha2-256-etm@openssh.com").await;
    assert_eq!(out.status.code(), Some(255), "group14 only: {}", show(&out));
    let out = ssh_with(&s, "curve25519-sha256", "aes128-ctr", "hmac-sha2-256,hmac-sha2-512").await;
    assert_eq!(out.status.code(), Some(255), "encrypt-and-MAC only: {}", show(&out));
    let out = ssh_with(&s, "curve25519-sha256", "chacha20-poly1305@openssh.com", "hmac-sha2-256-etm@openssh.com").await;
    assert_eq!(out.status.code(), Some(255), "chacha20 only: {}", show(&out));

    // A current client gets the post-quantum hybrid, if it has it.
    let out = openssh_from(&s, "127.0.0.1", &["-v", "-s", "paxos", "status"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let kex = negotiated(&out, "kex: algorithm:");
    println!("default OpenSSH client negotiated {kex}");
    assert!(kex == "mlkem768x25519-sha256" || kex == "curve25519-sha256", "{kex}");
}
