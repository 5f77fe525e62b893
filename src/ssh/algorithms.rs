//! The algorithm policy of every SSH connection a node makes or accepts:
//! the embedded server, peer links and the operator client all negotiate
//! from these lists, so node-to-node links always agree with the server.
//!
//! The lists are chosen so that `ssh-audit` finds nothing to warn about
//! (README, "SSH server limits and algorithms") while OpenSSH 8.x clients
//! still connect: they all speak curve25519-sha256, AES-GCM and AES-CTR
//! with encrypt-then-MAC, and ed25519 host keys.

use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
use russh::{Preferred, cipher, kex, mac};
use std::borrow::Cow;

/// Key exchange, most preferred first.
///
/// - The post-quantum hybrid first (OpenSSH 10's default), then
///   curve25519 under both of its names (OpenSSH 6.5 and later).
/// - `diffie-hellman-group16-sha512` only for clients with no curve25519,
///   such as OpenSSH in FIPS mode; the 2048-bit group14 and the
///   group-exchange methods are left out. A finite-field exchange is the
///   expensive one the DHEat flood aims at, which the per-source
///   connection rate limit (`limits`) bounds.
/// - The last four are not algorithms but extension flags (ext-info and
///   OpenSSH strict kex, the Terrapin fix); russh needs them listed, on
///   both sides, or it silently loses both features.
pub const KEX_ORDER: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::DH_G16_SHA512,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// Ciphers: AES-GCM first (an AEAD: it carries its own MAC), then AES-CTR,
/// which is only ever paired with an encrypt-then-MAC below.
///
/// No `chacha20-poly1305@openssh.com`: with a client that lacks strict kex
/// (OpenSSH before 9.6 without the backported fix) it is the combination
/// the Terrapin attack (CVE-2023-48795) works on, and OpenSSH 8.x clients
/// prefer it when offered. Offered only GCM and CTR, they take
/// aes128-gcm or aes128-ctr with an -etm MAC, which Terrapin cannot use.
pub const CIPHER_ORDER: &[cipher::Name] =
    &[cipher::AES_256_GCM, cipher::AES_128_GCM, cipher::AES_256_CTR, cipher::AES_192_CTR, cipher::AES_128_CTR];

/// MACs: only the encrypt-then-MAC forms. The encrypt-and-MAC
/// `hmac-sha2-256/512` authenticate the plaintext, which ssh-audit warns
/// about; every OpenSSH since 6.2 speaks the `-etm` forms.
pub const MAC_ORDER: &[mac::Name] = &[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM];

/// Public-key algorithms: host keys (a server only offers those it has
/// keys for, and nodes have ed25519) and the signatures a server accepts
/// from operator and reader keys, announced to clients as
/// `server-sig-algs`. RSA keys sign with SHA-2 (RFC 8332); the SHA-1
/// `ssh-rsa` signature is left out, and refused (`refused_signature`).
pub const KEY_ORDER: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
    Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
    Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
    Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
    Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
];

/// Why a client's signature algorithm is refused, if it is.
pub fn refused_signature(algorithm: &Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::Rsa { hash: None } => Some(
            "it signs with ssh-rsa (SHA-1), which is refused; RSA keys must sign with rsa-sha2-256 or \
             rsa-sha2-512 (OpenSSH 7.2 and later do)",
        ),
        _ => None,
    }
}

/// The policy, for both `russh::server::Config` and `russh::client::Config`.
/// The compression list keeps russh's default.
pub fn preferred() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(KEX_ORDER),
        key: Cow::Borrowed(KEY_ORDER),
        cipher: Cow::Borrowed(CIPHER_ORDER),
        mac: Cow::Borrowed(MAC_ORDER),
        ..Preferred::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<T: AsRef<str>>(list: &[T]) -> Vec<String> {
        list.iter().map(|n| n.as_ref().to_string()).collect()
    }

    #[test]
    fn kex_prefers_the_hybrid_then_curve25519() {
        let kex = names(&preferred().kex);
        assert_eq!(&kex[..3], ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org"]);
    }

    #[test]
    fn kex_keeps_the_extension_flags() {
        let kex = names(&preferred().kex);
        for flag in ["ext-info-c", "ext-info-s", "kex-strict-c-v00@openssh.com", "kex-strict-s-v00@openssh.com"] {
            assert!(kex.iter().any(|k| k == flag), "{flag} missing from {kex:?}");
        }
    }

    #[test]
    fn no_weak_or_small_group_kex() {
        for name in names(&preferred().kex) {
            let name = name.as_str();
            assert!(!name.contains("group14") && !name.contains("group1-") && !name.contains("sha1"), "{name}");
            assert!(!name.contains("group-exchange") && !name.starts_with("ecdh-sha2-nistp"), "{name}");
        }
    }

    #[test]
    fn macs_are_encrypt_then_mac_only() {
        let macs = names(&preferred().mac);
        assert!(!macs.is_empty());
        for mac in &macs {
            assert!(mac.ends_with("-etm@openssh.com") && !mac.contains("sha1"), "{mac}");
        }
    }

    #[test]
    fn rsa_signs_with_sha2_only() {
        let keys = names(&preferred().key);
        assert_eq!(keys[0], "ssh-ed25519");
        assert!(keys.iter().any(|k| k == "rsa-sha2-512") && keys.iter().any(|k| k == "rsa-sha2-256"), "{keys:?}");
        assert!(!keys.iter().any(|k| k == "ssh-rsa" || k.contains("dss")), "{keys:?}");
        assert!(refused_signature(&Algorithm::Rsa { hash: None }).unwrap().contains("ssh-rsa (SHA-1)"));
        assert_eq!(refused_signature(&Algorithm::Rsa { hash: Some(HashAlg::Sha256) }), None);
        assert_eq!(refused_signature(&Algorithm::Ed25519), None);
    }

    #[test]
    fn ciphers_are_gcm_or_ctr() {
        let ciphers = names(&preferred().cipher);
        assert_eq!(ciphers[0], "aes256-gcm@openssh.com");
        for name in ciphers {
            // No chacha20-poly1305 (Terrapin) and no CBC.
            assert!(name.contains("-gcm@") || name.ends_with("-ctr"), "{name}");
        }
    }
}
