//! Property tests of the pure parts: frontier arithmetic, codecs, the hybrid logical clock,
//! CRDT laws, and order-independence of the projection.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use redcloud_eventlog::{
    Crdt, Dot, FoldsDigest, GossipMessage, Hlc, HlcClock, LwwMap, NodeId, Op, Seq, VersionVector,
};

fn node() -> impl Strategy<Value = NodeId> {
    (0u64..6).prop_map(NodeId::new)
}

fn version_vector() -> impl Strategy<Value = VersionVector> {
    prop::collection::vec((node(), 0u64..20), 0..6)
        .prop_map(|entries| entries.into_iter().map(|(n, s)| (n, Seq::new(s))).collect())
}

/// The set of dots a version vector stands for.
fn dots(vv: &VersionVector) -> BTreeSet<Dot> {
    vv.iter()
        .flat_map(|(origin, head)| (1..=head.get()).map(move |s| Dot::new(origin, Seq::new(s))))
        .collect()
}

fn op() -> impl Strategy<Value = Op<Vec<u8>>> {
    (
        node(),
        1u64..1000,
        version_vector(),
        any::<u64>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(origin, seq, mut deps, wall_ms, logical, payload)| {
            // Any op must name its predecessor exactly; the rest of the context is free.
            let mut own: VersionVector = deps.iter().filter(|(o, _)| *o != origin).collect();
            own.raise(origin, Seq::new(seq - 1));
            deps = own;
            Op {
                dot: Dot::new(origin, Seq::new(seq)),
                deps,
                hlc: Hlc::new(wall_ms, logical),
                payload,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn missing_from_matches_set_difference(a in version_vector(), b in version_vector()) {
        let expected: BTreeSet<Dot> = dots(&a).difference(&dots(&b)).copied().collect();
        let ranges = a.missing_from(&b);
        let got: BTreeSet<Dot> = ranges
            .iter()
            .flat_map(|(origin, r)| (r.start().get()..=r.end().get()).map(move |s| Dot::new(*origin, Seq::new(s))))
            .collect();
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(a.count_missing_from(&b), expected.len() as u64);
        prop_assert_eq!(ranges.len(), ranges.iter().map(|(o, _)| o).collect::<BTreeSet<_>>().len());
        prop_assert_eq!(b.dominates(&a), expected.is_empty());
    }

    #[test]
    fn version_vector_merge_is_a_join(a in version_vector(), b in version_vector(), c in version_vector()) {
        let join = |x: &VersionVector, y: &VersionVector| { let mut z = x.clone(); Crdt::merge(&mut z, y); z };
        prop_assert_eq!(join(&a, &b), join(&b, &a));
        prop_assert_eq!(join(&join(&a, &b), &c), join(&a, &join(&b, &c)));
        prop_assert_eq!(join(&a, &a), a.clone());
        let ab = join(&a, &b);
        prop_assert!(ab.dominates(&a) && ab.dominates(&b));
        prop_assert_eq!(dots(&ab), dots(&a).union(&dots(&b)).copied().collect::<BTreeSet<_>>());
    }

    #[test]
    fn version_vector_meet_covers_exactly_what_both_cover(a in version_vector(), b in version_vector()) {
        let met = a.meet(&b);
        prop_assert_eq!(&met, &b.meet(&a));
        prop_assert_eq!(dots(&met), dots(&a).intersection(&dots(&b)).copied().collect::<BTreeSet<_>>());
        prop_assert!(a.dominates(&met) && b.dominates(&met));
    }

    #[test]
    fn ops_round_trip(op in op()) {
        prop_assert_eq!(Op::<Vec<u8>>::decode(&op.encode()).unwrap(), op);
    }

    #[test]
    fn messages_round_trip(ops in prop::collection::vec(op(), 0..5), frontier in version_vector(), more: bool) {
        for message in [
            GossipMessage::Push { ops: ops.clone() },
            GossipMessage::Page { ops: ops.clone(), more },
            GossipMessage::Frontier { frontier: frontier.clone(), reply: more, folds: None, folded: false },
            GossipMessage::Frontier { frontier: frontier.clone(), reply: more, folds: FoldsDigest::of(&frontier), folded: !more },
        ] {
            prop_assert_eq!(GossipMessage::decode(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Op::<Vec<u8>>::decode(&bytes);
        let _ = GossipMessage::<String>::decode(&bytes);
        let mut versioned = bytes.clone();
        versioned.insert(0, redcloud_eventlog::FORMAT_V1);
        let _ = GossipMessage::<Vec<u8>>::decode(&versioned);
    }

    #[test]
    fn mangled_encodings_never_panic(op in op(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let bytes = GossipMessage::Push { ops: vec![op] }.encode();
        let _ = GossipMessage::<Vec<u8>>::decode(&bytes[..cut.index(bytes.len())]);
        let mut flipped = bytes.clone();
        flipped[flip.index(bytes.len())] ^= 1 << bit;
        let _ = GossipMessage::<Vec<u8>>::decode(&flipped);
    }

    /// Nodes whose wall clocks are off by up to `skew` exchange timestamps at random; each
    /// node's clock only moves forward, every tick exceeds everything it has seen, and no clock
    /// runs more than the skew between two nodes ahead of its own wall clock.
    #[test]
    fn hlc_is_monotonic_and_bounded_under_skew(
        skew_ms in 0u64..5_000,
        offsets in prop::collection::vec(any::<prop::sample::Index>(), 2..6),
        steps in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0u64..50, any::<bool>()), 1..300),
    ) {
        let n = offsets.len();
        let offset: Vec<i64> = offsets.iter().map(|i| i.index(2 * skew_ms as usize + 1) as i64 - skew_ms as i64).collect();
        let mut clocks = vec![HlcClock::new(); n];
        let mut last = vec![Hlc::default(); n];
        let mut true_ms = 1_800_000_000_000u64;
        for (a, b, advance, send) in steps {
            true_ms += advance;
            let (a, b) = (a.index(n), b.index(n));
            let wall = |i: usize| true_ms.saturating_add_signed(offset[i]);
            let stamp = clocks[a].tick(wall(a));
            prop_assert!(stamp > last[a], "went backwards");
            prop_assert!(stamp.wall_ms >= wall(a), "behind its own wall clock");
            prop_assert!(stamp.wall_ms <= wall(a) + 2 * skew_ms, "ran ahead by more than the skew");
            last[a] = stamp;
            if send {
                clocks[b].observe(stamp);
                let next = clocks[b].tick(wall(b));
                prop_assert!(next > stamp && next > last[b]);
                prop_assert!(next.wall_ms <= wall(b) + 2 * skew_ms);
                last[b] = next;
            }
        }
    }

    #[test]
    fn lww_map_merge_is_a_join(
        writes in prop::collection::vec((0u8..4, prop::option::of(any::<u8>()), 0u64..20, node(), 0u8..3), 0..30),
    ) {
        // Split the writes among three replicas; stamps are unique per write, as per op.
        let mut replicas = [LwwMap::new(), LwwMap::new(), LwwMap::new()];
        for (i, (key, value, ms, origin, replica)) in writes.into_iter().enumerate() {
            replicas[replica as usize].write(key, value, (Hlc::new(ms, i as u32), origin));
        }
        let [a, b, c] = replicas;
        let join = |x: &LwwMap<u8, u8>, y: &LwwMap<u8, u8>| { let mut z = x.clone(); z.merge(y); z };
        prop_assert_eq!(join(&a, &b).digest(), join(&b, &a).digest());
        prop_assert_eq!(join(&join(&a, &b), &c).digest(), join(&a, &join(&b, &c)).digest());
        prop_assert_eq!(join(&a, &a).digest(), a.digest());
    }

    /// A causally consistent history from several nodes (local writes and merges of each
    /// other's logs), projected in many different causal orders, always gives the same map.
    #[test]
    fn projection_is_the_same_for_every_causal_order(
        steps in prop::collection::vec((0usize..4, 0usize..4, any::<bool>(), 0u8..5, any::<u8>()), 1..60),
        orders in prop::collection::vec(any::<u64>(), 1..6),
    ) {
        let history = causal_history(&steps);
        let reference = project(&history);
        for order_seed in orders {
            let order = random_causal_order(&history, order_seed);
            prop_assert_eq!(order.len(), history.len());
            prop_assert_eq!(project(&order).digest(), reference.digest());
        }
    }
}

type KvOp = Op<(u8, u8)>;

/// Nodes write (key, value) pairs and now and then merge another node's whole log.
fn causal_history(steps: &[(usize, usize, bool, u8, u8)]) -> Vec<KvOp> {
    let mut logs: Vec<Vec<KvOp>> = vec![Vec::new(); 4];
    let mut frontiers = vec![VersionVector::new(); 4];
    let mut clocks = vec![HlcClock::new(); 4];
    let mut all = Vec::new();
    for (step, &(node, other, merge, key, value)) in steps.iter().enumerate() {
        if merge && other != node {
            let theirs = logs[other].clone();
            for op in theirs {
                if !frontiers[node].contains(op.dot) {
                    frontiers[node].raise(op.dot.origin, op.dot.seq);
                    clocks[node].observe(op.hlc);
                    logs[node].push(op);
                }
            }
        } else {
            let origin = NodeId::new(node as u64);
            let dot = Dot::new(origin, frontiers[node].get(origin).next());
            // Clocks deliberately disagree: node 0 runs far ahead of the others.
            let wall = step as u64 + if node == 0 { 1000 } else { 0 };
            let op = Op {
                dot,
                deps: frontiers[node].clone(),
                hlc: clocks[node].tick(wall),
                payload: (key, value),
            };
            frontiers[node].raise(origin, dot.seq);
            logs[node].push(op.clone());
            all.push(op);
        }
    }
    all
}

/// A uniformly random choice among ready ops at each step: some linear extension of causality.
fn random_causal_order(ops: &[KvOp], seed: u64) -> Vec<KvOp> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pending: Vec<KvOp> = ops.to_vec();
    let mut known = VersionVector::new();
    let mut out = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].is_ready_for(&known))
            .collect();
        assert!(!ready.is_empty(), "history is not causally closed");
        let op = pending.swap_remove(ready[rng.random_range(0..ready.len())]);
        known.raise(op.dot.origin, op.dot.seq);
        out.push(op);
    }
    out
}

fn project(ops: &[KvOp]) -> LwwMap<u8, u8> {
    let mut map = LwwMap::new();
    for op in ops {
        map.write(op.payload.0, Some(op.payload.1), op.stamp());
    }
    map
}
