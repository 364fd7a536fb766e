//! State-based CRDTs: the [`Crdt`] laws, and [`LwwMap`], the reference last-writer-wins
//! projection that the simulator and property tests fold operations into.

use std::collections::BTreeMap;

use crdts::{CvRDT, LWWReg};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::{NodeId, VersionVector};
use crate::hlc::Hlc;

/// The last-writer-wins order of an operation: `(hlc, origin)`, unique per operation.
pub type Stamp = (Hlc, NodeId);

/// A state-based CRDT whose `merge` is the join of a semilattice. For all `a`, `b`, `c`:
/// - commutative: `a ⊔ b == b ⊔ a`
/// - associative: `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`
/// - idempotent: `a ⊔ a == a`
///
/// so replicas that have merged the same states are equal, whatever the order.
/// The property tests in `tests/properties.rs` check these laws for every implementation.
pub trait Crdt {
    /// Joins `other` into `self`.
    fn merge(&mut self, other: &Self);
}

impl Crdt for VersionVector {
    fn merge(&mut self, other: &Self) {
        VersionVector::merge(self, other);
    }
}

/// A map of last-writer-wins registers. A removal is a write of `None`, so it competes with
/// concurrent writes by stamp like any other write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LwwMap<K: Ord, V> {
    entries: BTreeMap<K, LWWReg<Option<V>, Stamp>>,
}

impl<K: Ord, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone + Serialize, V: Clone + PartialEq + Serialize> LwwMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` (or removes, with `None`) at `stamp`; a write with a lower stamp than the
    /// key's current one has no effect.
    pub fn write(&mut self, key: K, value: Option<V>, stamp: Stamp) {
        let write = LWWReg {
            val: value,
            marker: stamp,
        };
        match self.entries.get_mut(&key) {
            Some(register) => register.merge(write),
            None => {
                self.entries.insert(key, write);
            }
        }
    }

    /// The current value at `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries
            .get(key)
            .and_then(|register| register.val.as_ref())
    }

    /// The number of keys with a value.
    pub fn len(&self) -> usize {
        self.entries.values().filter(|r| r.val.is_some()).count()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// SHA-256 over the canonical encoding of every entry, stamps and removals included:
    /// equal digests mean equal maps.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for (key, register) in &self.entries {
            let entry = (key, &register.val, register.marker);
            hasher.update(crate::op::encode_versioned(&entry));
        }
        hasher.finalize().into()
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> Crdt for LwwMap<K, V> {
    fn merge(&mut self, other: &Self) {
        for (key, theirs) in &other.entries {
            match self.entries.get_mut(key) {
                Some(mine) => mine.merge(theirs.clone()),
                None => {
                    self.entries.insert(key.clone(), theirs.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ms: u64, node: u64) -> Stamp {
        (Hlc::new(ms, 0), NodeId::new(node))
    }

    #[test]
    fn later_stamp_wins_whatever_the_order() {
        let mut a = LwwMap::new();
        a.write("k", Some(1), stamp(10, 1));
        a.write("k", Some(2), stamp(10, 2));
        let mut b = LwwMap::new();
        b.write("k", Some(2), stamp(10, 2));
        b.write("k", Some(1), stamp(10, 1));
        assert_eq!(a.get(&"k"), Some(&2));
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn removal_is_a_write() {
        let mut map = LwwMap::new();
        map.write("k", Some(1), stamp(10, 1));
        map.write("k", None, stamp(11, 1));
        map.write("k", Some(3), stamp(9, 1));
        assert_eq!(map.get(&"k"), None);
        assert!(map.is_empty());
    }
}
