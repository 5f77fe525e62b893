//! Which keys the server accepts, and as whom. Operator and reader keys
//! are fixed when the server starts; peer keys follow the membership
//! (`PeerKeys`).

use super::Principal;
use russh::keys::PublicKey;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// The keys this node accepts, by role. `peers` is where a server starts;
/// a running server's peer keys change through its `PeerKeys`.
#[derive(Clone, Debug, Default)]
pub struct AccessList {
    pub peers: BTreeMap<u64, PublicKey>,
    pub operators: Vec<PublicKey>,
    pub readers: Vec<PublicKey>,
}

impl AccessList {
    /// The role of `key`, compared by key material (comments are ignored).
    /// A key listed under several roles gets the narrowest: peer, then
    /// reader, then operator, so a copy-paste slip never widens access.
    pub fn principal(&self, key: &PublicKey) -> Option<Principal> {
        principal_in(&self.peers, &self.operators, &self.readers, key)
    }
}

fn principal_in(
    peers: &BTreeMap<u64, PublicKey>,
    operators: &[PublicKey],
    readers: &[PublicKey],
    key: &PublicKey,
) -> Option<Principal> {
    let data = key.key_data();
    if let Some((id, _)) = peers.iter().find(|(_, k)| k.key_data() == data) {
        return Some(Principal::Peer(*id));
    }
    if readers.iter().any(|k| k.key_data() == data) {
        return Some(Principal::Reader);
    }
    if operators.iter().any(|k| k.key_data() == data) {
        return Some(Principal::Operator);
    }
    None
}

/// The peer keys a running server accepts, by node id: the cluster's
/// membership changes while the node runs, and so do they. Clones share
/// one set. A key taken out is refused at its next authentication, and a
/// connection it opened a `paxos-peer` channel on is closed.
#[derive(Clone, Debug)]
pub struct PeerKeys(Arc<watch::Sender<BTreeMap<u64, PublicKey>>>);

impl PeerKeys {
    pub fn new(keys: BTreeMap<u64, PublicKey>) -> PeerKeys {
        PeerKeys(Arc::new(watch::Sender::new(keys)))
    }

    /// Makes `keys` the accepted set; whether anything changed (keys are
    /// compared by key material).
    pub fn replace(&self, keys: BTreeMap<u64, PublicKey>) -> bool {
        self.0.send_if_modified(|old| {
            let same = old.len() == keys.len()
                && old.iter().zip(&keys).all(|((a, ka), (b, kb))| a == b && ka.key_data() == kb.key_data());
            if !same {
                *old = keys;
            }
            !same
        })
    }

    /// The accepted keys as of now.
    pub fn get(&self) -> BTreeMap<u64, PublicKey> {
        self.0.borrow().clone()
    }

    /// Whether `key` is (still) node `peer`'s.
    pub fn accepts(&self, peer: u64, key: &PublicKey) -> bool {
        Self::holds(&self.0.borrow(), peer, key)
    }

    fn holds(keys: &BTreeMap<u64, PublicKey>, peer: u64, key: &PublicKey) -> bool {
        keys.get(&peer).is_some_and(|k| k.key_data() == key.key_data())
    }

    /// Resolves once `key` is no longer node `peer`'s (never, if the set
    /// is gone with its server).
    pub(super) fn revoked(&self, peer: u64, key: PublicKey) -> impl Future<Output = ()> + Send + 'static {
        let mut keys = self.0.subscribe();
        async move {
            loop {
                if !Self::holds(&keys.borrow_and_update(), peer, &key) {
                    return;
                }
                if keys.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// What a running server accepts: the live peer keys and the fixed
/// operator and reader keys.
pub(super) struct Access {
    pub(super) peers: PeerKeys,
    pub(super) operators: Vec<PublicKey>,
    pub(super) readers: Vec<PublicKey>,
}

impl Access {
    /// As `AccessList::principal`, against the peer keys as of now.
    pub(super) fn principal(&self, key: &PublicKey) -> Option<Principal> {
        principal_in(&self.peers.0.borrow(), &self.operators, &self.readers, key)
    }
}
