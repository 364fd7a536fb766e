//! Identities and causality: node ids, sequence numbers, dots and version vectors.
//!
//! Pure data types used by every other module; the replication core compares
//! frontiers with [`VersionVector::missing_from`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use crdts::{CmRDT, CvRDT, VClock};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of a controller: a random 64-bit number kept in its data directory.
///
/// Shown as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(u64);

impl NodeId {
    /// Wraps a raw id.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The id as 8 big-endian bytes, so ids sort the same as bytes and as numbers.
    pub const fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A node id that is not 1 to 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {input:?}: expected 1 to 16 hex digits")]
pub struct ParseNodeIdError {
    /// What was given.
    pub input: String,
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let parsed = valid.then(|| u64::from_str_radix(s, 16).ok()).flatten();
        parsed.map(Self).ok_or_else(|| ParseNodeIdError {
            input: s.to_owned(),
        })
    }
}

/// The position of an operation in its origin's log. Seqs of one origin are contiguous from 1.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(u64);

impl Seq {
    /// "Nothing yet": the frontier entry of an origin whose operations are all unknown.
    pub const ZERO: Seq = Seq(0);

    /// Wraps a raw seq.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw seq.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The following seq.
    ///
    /// # Panics
    /// At `u64::MAX`, which no log can reach (it would take 584 years at a billion appends a second).
    pub fn next(self) -> Seq {
        Seq(self.0.checked_add(1).expect("seq space exhausted"))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The identity of one operation: its origin and its seq there.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Dot {
    /// The node that created the operation.
    pub origin: NodeId,
    /// Its position in the origin's log.
    pub seq: Seq,
}

impl Dot {
    /// A dot.
    pub const fn new(origin: NodeId, seq: Seq) -> Self {
        Self { origin, seq }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin, self.seq)
    }
}

/// A version vector: for each origin, the highest seq held (all lower seqs are held too).
///
/// Used both as a log's frontier and as an operation's causal context. Backed by
/// [`crdts::VClock`]; origins at zero are never stored, so equal knowledge means equal values.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector(VClock<NodeId>);

impl VersionVector {
    /// The empty vector: nothing known.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest seq of `origin` covered (zero when none).
    pub fn get(&self, origin: NodeId) -> Seq {
        Seq(self.0.get(&origin))
    }

    /// Whether the operation `dot` is covered.
    pub fn contains(&self, dot: Dot) -> bool {
        dot.seq != Seq::ZERO && self.get(dot.origin) >= dot.seq
    }

    /// Raises `origin`'s entry to `seq` if it is lower.
    pub fn raise(&mut self, origin: NodeId, seq: Seq) {
        if seq != Seq::ZERO {
            self.0.apply(crdts::Dot::new(origin, seq.0));
        }
    }

    /// Pointwise maximum (the join of the lattice).
    pub fn merge(&mut self, other: &VersionVector) {
        self.0.merge(other.0.clone());
    }

    /// Pointwise minimum (the meet of the lattice): what both cover.
    pub fn meet(&self, other: &VersionVector) -> VersionVector {
        let mut met = self.0.clone();
        met.glb(&other.0);
        Self(met)
    }

    /// Whether `self` covers everything `other` covers.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.iter().all(|(origin, seq)| self.get(origin) >= seq)
    }

    /// The operations `self` covers and `other` lacks, as one seq range per origin, by origin.
    pub fn missing_from(&self, other: &VersionVector) -> Vec<(NodeId, RangeInclusive<Seq>)> {
        self.iter()
            .filter_map(|(origin, seq)| {
                let theirs = other.get(origin);
                (theirs < seq).then(|| (origin, theirs.next()..=seq))
            })
            .collect()
    }

    /// How many operations `self` covers beyond `other`.
    pub fn count_missing_from(&self, other: &VersionVector) -> u64 {
        self.missing_from(other)
            .iter()
            .map(|(_, range)| range.end().0 - range.start().0 + 1)
            .fold(0, u64::saturating_add)
    }

    /// `(origin, highest seq)` for every origin with at least one operation, by origin.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, Seq)> + '_ {
        self.0.dots.iter().map(|(origin, seq)| (*origin, Seq(*seq)))
    }

    /// The number of origins with at least one operation.
    pub fn origin_count(&self) -> usize {
        self.0.dots.len()
    }

    /// The number of operations covered.
    pub fn op_count(&self) -> u64 {
        self.0
            .dots
            .values()
            .fold(0, |sum, seq| sum.saturating_add(*seq))
    }

    /// Whether nothing is covered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying vector clock.
    pub fn as_vclock(&self) -> &VClock<NodeId> {
        &self.0
    }
}

impl FromIterator<(NodeId, Seq)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (NodeId, Seq)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (origin, seq) in iter {
            vv.raise(origin, seq);
        }
        vv
    }
}

impl fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (origin, seq)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{origin}:{seq}")?;
        }
        f.write_str("}")
    }
}

/// Encoded as a map `origin → seq`, the compact form peers exchange every round.
impl Serialize for VersionVector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.dots.serialize(serializer)
    }
}

/// Zero entries from a peer are dropped, so a decoded vector is always canonical.
impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut dots = BTreeMap::<NodeId, u64>::deserialize(deserializer)?;
        // Kept as decoded rather than built again entry by entry: every operation read from
        // the log decodes one of these.
        dots.retain(|_, seq| *seq != 0);
        Ok(Self(VClock { dots }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(raw: u64) -> NodeId {
        NodeId::new(raw)
    }

    fn vv(entries: &[(u64, u64)]) -> VersionVector {
        entries.iter().map(|&(o, s)| (n(o), Seq::new(s))).collect()
    }

    #[test]
    fn missing_from_lists_ranges_the_other_lacks() {
        let mine = vv(&[(1, 5), (2, 3), (3, 7)]);
        let theirs = vv(&[(1, 5), (2, 1), (4, 9)]);
        assert_eq!(
            mine.missing_from(&theirs),
            vec![
                (n(2), Seq::new(2)..=Seq::new(3)),
                (n(3), Seq::new(1)..=Seq::new(7))
            ]
        );
        assert_eq!(mine.count_missing_from(&theirs), 9);
        assert_eq!(
            theirs.missing_from(&mine),
            vec![(n(4), Seq::new(1)..=Seq::new(9))]
        );
        assert!(mine.missing_from(&mine).is_empty());
    }

    #[test]
    fn zero_entries_are_not_stored() {
        assert_eq!(vv(&[(1, 0)]), VersionVector::new());
        let decoded: VersionVector =
            rmp_serde::from_slice(&rmp_serde::to_vec(&BTreeMap::from([(n(1), 0u64)])).unwrap())
                .unwrap();
        assert_eq!(decoded, VersionVector::new());
    }

    #[test]
    fn dominates_and_contains() {
        let big = vv(&[(1, 5), (2, 3)]);
        let small = vv(&[(1, 2)]);
        assert!(big.dominates(&small));
        assert!(!small.dominates(&big));
        assert!(big.contains(Dot::new(n(2), Seq::new(3))));
        assert!(!big.contains(Dot::new(n(2), Seq::new(4))));
        assert!(!big.contains(Dot::new(n(2), Seq::ZERO)));
    }

    #[test]
    fn node_ids_parse_and_print_as_hex() {
        let id: NodeId = "00000000000000ff".parse().unwrap();
        assert_eq!(id, n(255));
        assert_eq!(id.to_string(), "00000000000000ff");
        assert!("".parse::<NodeId>().is_err());
        assert!("xyz".parse::<NodeId>().is_err());
        assert!("+1".parse::<NodeId>().is_err());
        assert!("00000000000000001".parse::<NodeId>().is_err());
    }
}
