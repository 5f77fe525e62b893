//! A data directory's identity: which cluster and node it belongs to, and a
//! random incarnation drawn when it was created. `IDENTITY` is written once,
//! atomically (temporary file, fsync, rename, fsync of the directory).
//!
//! The incarnation is how peers notice that a node lost its data: a node
//! that comes back with an empty directory introduces itself with a new
//! incarnation, and any peer that knew another one says so (see
//! `consensus::membership`). The cluster name and node id keep a directory
//! copied from another node, or from another cluster, from starting.

use super::{StorageError, write_atomically};
use crate::consensus::ballot::NodeId;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::Path;

/// The identity's file name inside the data directory.
pub const IDENTITY_FILE: &str = "IDENTITY";
const IDENTITY_TMP_FILE: &str = "IDENTITY.tmp";
/// An incarnation fits in 53 bits, so JSON readers that use doubles keep it exact.
const INCARNATION_MASK: u64 = (1 << 53) - 1;

/// Who a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub cluster: String,
    pub node: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub cluster: String,
    pub node: NodeId,
    pub incarnation: u64,
    /// Seconds since the Unix epoch when the directory was created, for people.
    pub created_unix: u64,
}

impl Identity {
    /// A fresh identity for `owner` with a random, non-zero incarnation.
    pub fn new(owner: &Owner) -> Identity {
        let incarnation = loop {
            let candidate = rand::random::<u64>() & INCARNATION_MASK;
            if candidate != 0 {
                break candidate;
            }
        };
        let created_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Identity { cluster: owner.cluster.clone(), node: owner.node, incarnation, created_unix }
    }

    /// Refuse a directory that belongs to another cluster or node.
    pub fn check(&self, owner: &Owner, dir: &Path) -> Result<(), StorageError> {
        if self.cluster != owner.cluster || self.node != owner.node {
            let message = format!(
                "the data directory {} belongs to node {} of cluster {:?}, not to node {} of cluster {:?}; \
                 a copied directory would bring another node's promises and votes: give this node its own \
                 (empty) data directory and it will rejoin safely",
                dir.display(),
                self.node,
                self.cluster,
                owner.node,
                owner.cluster
            );
            return Err(StorageError::io(dir.join(IDENTITY_FILE), io::Error::new(io::ErrorKind::InvalidData, message)));
        }
        Ok(())
    }
}

/// The identity in `dir`, if it has one.
pub fn load(dir: &Path) -> Result<Option<Identity>, StorageError> {
    let path = dir.join(IDENTITY_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    let identity: Identity = serde_json::from_slice(&bytes)
        .map_err(|e| StorageError::corrupt(&path, e.column() as u64, format!("not a data directory identity: {e}")))?;
    if identity.incarnation == 0 || identity.incarnation > INCARNATION_MASK {
        return Err(StorageError::corrupt(&path, 0, format!("incarnation {} is out of range", identity.incarnation)));
    }
    Ok(Some(identity))
}

/// Write `identity` into `dir` durably and atomically.
pub fn save(dir: &Path, identity: &Identity) -> Result<(), StorageError> {
    let mut bytes =
        serde_json::to_vec_pretty(identity).map_err(|e| StorageError::io(dir.join(IDENTITY_TMP_FILE), e.into()))?;
    bytes.push(b'\n');
    write_atomically(dir, IDENTITY_TMP_FILE, IDENTITY_FILE, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(cluster: &str, node: NodeId) -> Owner {
        Owner { cluster: cluster.into(), node }
    }

    #[test]
    fn an_identity_survives_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let identity = Identity::new(&owner("lab", 2));
        assert!(identity.incarnation > 0 && identity.incarnation <= INCARNATION_MASK);
        save(dir.path(), &identity).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(identity));
        assert!(!dir.path().join(IDENTITY_TMP_FILE).exists());
    }

    #[test]
    fn two_directories_get_different_incarnations() {
        let a = Identity::new(&owner("lab", 1));
        let b = Identity::new(&owner("lab", 1));
        assert_ne!(a.incarnation, b.incarnation);
    }

    #[test]
    fn a_directory_of_another_node_or_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::new(&owner("lab", 2));
        identity.check(&owner("lab", 2), dir.path()).unwrap();
        let err = identity.check(&owner("lab", 3), dir.path()).unwrap_err().to_string();
        assert!(err.contains("belongs to node 2 of cluster \"lab\", not to node 3"), "{err}");
        let err = identity.check(&owner("prod", 2), dir.path()).unwrap_err().to_string();
        assert!(err.contains("not to node 2 of cluster \"prod\""), "{err}");
    }

    #[test]
    fn a_damaged_identity_is_corrupt_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            &b"{\"cluster\": \"lab\""[..],
            b"garbage",
            b"{\"cluster\":\"lab\",\"node\":1,\"incarnation\":0,\"created_unix\":1}",
        ] {
            fs::write(dir.path().join(IDENTITY_FILE), bad).unwrap();
            let err = load(dir.path()).unwrap_err();
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        }
    }
}
