//! Node, operator and reader keys: ed25519 key generation, loading with the
//! permission checks OpenSSH applies, public-key lines, fingerprints and
//! `known_hosts` lines for pinned host keys.
//!
//! Every node has one ed25519 key that is both its SSH host key and the
//! client key it dials peers with; the cluster pins the public halves.

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("refusing to overwrite {}: it already exists; move it away or pick another path", path.display())]
    Exists { path: PathBuf },
    #[error(
        "permissions {mode:04o} for '{path}' are too open: a private key must not be readable or writable by group or others; run `chmod 600 {path}`",
        path = path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{}: not an OpenSSH private key: {reason}", path.display())]
    BadPrivate { path: PathBuf, reason: String },
    #[error("{}: the private key is passphrase-protected; paxos needs an unencrypted key (the daemon runs unattended)", path.display())]
    Encrypted { path: PathBuf },
    #[error("cannot parse public key {line:?}: {reason} (expected a line like \"ssh-ed25519 AAAA... comment\")")]
    BadPublic { line: String, reason: String },
    #[error("{}: no public key line found", path.display())]
    NoPublicKey { path: PathBuf },
    #[error("cannot generate an ed25519 key: {0}")]
    Generate(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_path_buf(), source }
}

/// `path` with `.pub` appended to its file name, as ssh-keygen names it.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Generates an ed25519 key pair: the private key in OpenSSH format at
/// `path` (created with mode 0600, so it is never readable by others, not
/// even for an instant) and the one-line public key at `path.pub`.
/// Refuses to overwrite either file.
pub fn generate_ed25519(path: &Path, comment: &str) -> Result<PublicKey, KeyError> {
    let pub_path = public_path(path);
    for p in [path, pub_path.as_path()] {
        if p.symlink_metadata().is_ok() {
            return Err(KeyError::Exists { path: p.to_path_buf() });
        }
    }
    let mut key =
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| KeyError::Generate(e.to_string()))?;
    key.set_comment(comment);
    let pem = key.to_openssh(LineEnding::LF).map_err(|e| KeyError::Generate(e.to_string()))?;
    write_new(path, 0o600, pem.as_bytes())?;
    let public = key.public_key().clone();
    write_new(&pub_path, 0o644, format!("{}\n", public_line(&public)).as_bytes())?;
    Ok(public)
}

fn write_new(path: &Path, mode: u32, contents: &[u8]) -> Result<(), KeyError> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists { path: path.to_path_buf() }
        } else {
            io_err(path)(source)
        }
    })?;
    file.write_all(contents).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Loads an unencrypted OpenSSH private key, refusing one that group or
/// others may read or write, as OpenSSH does.
pub fn load_private(path: &Path) -> Result<PrivateKey, KeyError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    // Check the open file, not the path, so a swap between check and read
    // cannot slip a different file past the check.
    let mode = file.metadata().map_err(io_err(path))?.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen { path: path.to_path_buf(), mode });
    }
    let pem = std::io::read_to_string(file).map_err(io_err(path))?;
    let key = PrivateKey::from_openssh(pem.trim())
        .map_err(|e| KeyError::BadPrivate { path: path.to_path_buf(), reason: e.to_string() })?;
    if key.is_encrypted() {
        return Err(KeyError::Encrypted { path: path.to_path_buf() });
    }
    Ok(key)
}

/// Parses one `authorized_keys`-style line: "ssh-ed25519 AAAA... comment".
pub fn parse_public(line: &str) -> Result<PublicKey, KeyError> {
    PublicKey::from_openssh(line.trim())
        .map_err(|e| KeyError::BadPublic { line: line.trim().to_string(), reason: e.to_string() })
}

/// Loads the first key line of a `.pub` file (blank lines and `#` comments
/// are skipped).
pub fn load_public_file(path: &Path) -> Result<PublicKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| KeyError::NoPublicKey { path: path.to_path_buf() })?;
    parse_public(line)
}

/// "ssh-ed25519 AAAA... comment" (without the comment when it is empty).
pub fn public_line(key: &PublicKey) -> String {
    match key.to_openssh() {
        Ok(line) => line.trim_end().to_string(),
        // Encoding an in-memory key only fails for unsupported algorithms;
        // fall back to the bare key data so a log line still says something.
        Err(_) => format!("{} {}", key.algorithm(), fingerprint(key)),
    }
}

/// "SHA256:..." exactly as `ssh-keygen -lf` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A `known_hosts` line pinning `key` for `host:port`, in the form OpenSSH
/// looks up: a bare host for port 22, "[host]:port" otherwise.
pub fn known_hosts_line(host: &str, port: u16, key: &PublicKey) -> String {
    let bare = PublicKey::new(key.key_data().clone(), "");
    let pattern = if port == 22 { host.to_string() } else { format!("[{host}]:{port}") };
    format!("{pattern} {}", public_line(&bare))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node1");
        let public = generate_ed25519(&path, "node1@lab").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let private = load_private(&path).unwrap();
        assert_eq!(private.public_key().key_data(), public.key_data());
        let from_file = load_public_file(&public_path(&path)).unwrap();
        assert_eq!(from_file.key_data(), public.key_data());
        assert_eq!(from_file.comment().as_str_lossy(), "node1@lab");

        let line = public_line(&public);
        assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
        assert!(line.ends_with(" node1@lab"), "{line}");
        assert_eq!(parse_public(&line).unwrap().key_data(), public.key_data());
        assert!(fingerprint(&public).starts_with("SHA256:"));

        let known = known_hosts_line("127.0.0.1", 7101, &public);
        assert!(known.starts_with("[127.0.0.1]:7101 ssh-ed25519 AAAA"), "{known}");
        assert!(!known.contains("node1@lab"), "{known}");
        let known22 = known_hosts_line("node1", 22, &public);
        assert!(known22.starts_with("node1 ssh-ed25519 AAAA"), "{known22}");
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        generate_ed25519(&path, "a").unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(generate_ed25519(&path, "b"), Err(KeyError::Exists { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);

        // A stray .pub alone also blocks generation, and nothing is written.
        let other = dir.path().join("other");
        std::fs::write(public_path(&other), "x").unwrap();
        assert!(matches!(generate_ed25519(&other, "c"), Err(KeyError::Exists { .. })));
        assert!(!other.exists());
    }

    #[test]
    fn open_private_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        generate_ed25519(&path, "k").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_private(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, KeyError::TooOpen { mode: 0o644, .. }));
        assert!(text.contains("permissions 0644 for"), "{text}");
        assert!(text.contains("are too open"), "{text}");
        assert!(text.contains(&format!("chmod 600 {}", path.display())), "{text}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        load_private(&path).unwrap();
    }

    #[test]
    fn bad_public_lines_are_explained() {
        let err = parse_public("ssh-ed25519 not-base64").unwrap_err();
        assert!(err.to_string().contains("expected a line like"), "{err}");
        assert!(parse_public("").is_err());
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let public = generate_ed25519(&path, "fp-test").unwrap();
        let out = match std::process::Command::new("ssh-keygen").arg("-lf").arg(public_path(&path)).output() {
            Ok(out) => out,
            Err(e) => {
                println!("note: ssh-keygen not runnable ({e}); skipping the comparison");
                return;
            }
        };
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        // "256 SHA256:... fp-test (ED25519)"
        let theirs = text.split_whitespace().nth(1).unwrap();
        assert_eq!(theirs, fingerprint(&public));

        // ssh-keygen also reads our private key file (-y derives the public key).
        let out = std::process::Command::new("ssh-keygen").arg("-y").arg("-f").arg(&path).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let derived = parse_public(&String::from_utf8(out.stdout).unwrap()).unwrap();
        assert_eq!(derived.key_data(), public.key_data());
    }
}
