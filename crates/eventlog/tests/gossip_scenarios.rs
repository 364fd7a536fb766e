//! Small hand-written scenarios of the replication core, each one behaviour.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use redcloud_eventlog::{Event, Gossip, GossipConfig, GossipMessage, LogStore, MemStore, NodeId};

const WALL_MS: u64 = 1_800_000_000_000;

fn core(id: u64, store: &MemStore<String>, now: Instant) -> Gossip<String, StdRng> {
    Gossip::new(
        NodeId::new(id),
        GossipConfig::default(),
        StdRng::seed_from_u64(id),
        now,
        store,
    )
    .unwrap()
}

type Core = Gossip<String, StdRng>;

/// Nodes 1 and 2, each knowing the other, over empty logs.
fn two_peers(start: Instant) -> (MemStore<String>, MemStore<String>, Core, Core) {
    let (store_a, store_b) = (MemStore::new(), MemStore::new());
    let mut a = core(1, &store_a, start);
    let mut b = core(2, &store_b, start);
    a.add_peer(NodeId::new(2));
    b.add_peer(NodeId::new(1));
    (store_a, store_b, a, b)
}

#[test]
fn ops_stamped_far_ahead_wait_until_the_clock_catches_up() {
    let now = Instant::now();
    let (store_a, store_b) = (MemStore::new(), MemStore::new());
    let mut a = core(1, &store_a, now);
    let mut b = core(2, &store_b, now);
    a.add_peer(NodeId::new(2));
    let two_hours_ms = 2 * 3600 * 1000;
    a.append_local(
        WALL_MS + two_hours_ms,
        vec!["from the future".to_owned()],
        &store_a,
    )
    .unwrap();
    let push = a.poll_transmit().unwrap();
    assert_eq!(push.to, NodeId::new(2));

    b.handle_message(now, WALL_MS, NodeId::new(1), push.message.clone(), &store_b)
        .unwrap();
    assert!(
        store_b.frontier().is_empty(),
        "taken in despite a stamp two hours ahead"
    );
    let refused =
        std::iter::from_fn(|| b.poll_event()).find(|e| matches!(e, Event::ClockAhead { .. }));
    assert!(
        matches!(refused, Some(Event::ClockAhead { ahead_ms, .. }) if ahead_ms == two_hours_ms)
    );

    b.handle_message(
        now,
        WALL_MS + two_hours_ms,
        NodeId::new(1),
        push.message,
        &store_b,
    )
    .unwrap();
    assert_eq!(store_b.frontier(), store_a.frontier());
}

#[test]
fn orphans_leave_the_buffer_after_its_ttl() {
    let now = Instant::now();
    let (store_a, store_b) = (MemStore::new(), MemStore::new());
    let mut a = core(1, &store_a, now);
    let mut b = core(2, &store_b, now);
    let ops = a
        .append_local(WALL_MS, vec!["1".into(), "2".into(), "3".into()], &store_a)
        .unwrap();
    // Only the last op arrives: it cannot be applied and waits.
    let orphan = GossipMessage::Push {
        ops: vec![ops[2].clone()],
    };
    b.handle_message(now, WALL_MS, NodeId::new(1), orphan, &store_b)
        .unwrap();
    assert_eq!(b.buffered(), 1);
    b.handle_tick(now + Duration::from_secs(29), &store_b);
    assert_eq!(b.buffered(), 1);
    b.handle_tick(now + Duration::from_secs(31), &store_b);
    assert_eq!(b.buffered(), 0);
}

#[test]
fn sync_now_asks_every_live_peer() {
    let now = Instant::now();
    let store = MemStore::<String>::new();
    let mut a = core(1, &store, now);
    for peer in 2..=4 {
        a.add_peer(NodeId::new(peer));
    }
    a.sync_now(now, &store);
    let asked: Vec<NodeId> = std::iter::from_fn(|| a.poll_transmit())
        .filter(|t| matches!(t.message, GossipMessage::Frontier { reply: true, .. }))
        .map(|t| t.to)
        .collect();
    assert_eq!(asked, [NodeId::new(2), NodeId::new(3), NodeId::new(4)]);
}

#[test]
fn a_peers_frontier_is_remembered_with_its_arrival_time() {
    let start = Instant::now();
    let (store_a, store_b, mut a, mut b) = two_peers(start);
    b.append_local(WALL_MS, vec!["one".to_owned(), "two".to_owned()], &store_b)
        .unwrap();
    while b.poll_transmit().is_some() {}
    assert_eq!(
        a.peers()
            .find(|(id, _)| *id == NodeId::new(2))
            .unwrap()
            .1
            .reported_frontier,
        None,
        "nothing reported yet"
    );

    b.sync_now(start, &store_b);
    let later = start + Duration::from_secs(3);
    for transmit in std::iter::from_fn(|| b.poll_transmit()) {
        a.handle_message(later, WALL_MS, NodeId::new(2), transmit.message, &store_a)
            .unwrap();
    }
    let (at, frontier) = a
        .peers()
        .find(|(id, _)| *id == NodeId::new(2))
        .unwrap()
        .1
        .reported_frontier
        .clone()
        .unwrap();
    assert_eq!(at, later);
    assert_eq!(frontier, store_b.frontier());
}

/// Hands every message `from` (whose wall clock reads `from_wall_ms`) has for `to` over, as
/// the transport does: with the sender's clock beside each, at `to`'s wall clock `to_wall_ms`.
fn deliver(
    (from, from_wall_ms): (&mut Gossip<String, StdRng>, u64),
    (to, to_store, to_wall_ms): (&mut Gossip<String, StdRng>, &MemStore<String>, u64),
    now: Instant,
) {
    let sender = from.id();
    for transmit in std::iter::from_fn(|| from.poll_transmit()) {
        assert_eq!(transmit.to, to.id());
        to.handle_message(now, to_wall_ms, sender, transmit.message, to_store)
            .unwrap();
        to.handle_clock(to_wall_ms, sender, from_wall_ms);
    }
}

fn events(core: &mut Gossip<String, StdRng>) -> Vec<Event<String>> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

#[test]
fn a_clock_fifteen_minutes_ahead_is_reported_on_both_sides() {
    const FIFTEEN_MINUTES_MS: u64 = 15 * 60 * 1000;
    let ahead = FIFTEEN_MINUTES_MS as i64;
    let now = Instant::now();
    let (fast_id, slow_id) = (NodeId::new(1), NodeId::new(2));
    let (fast_store, slow_store) = (MemStore::new(), MemStore::new());
    let mut fast = core(1, &fast_store, now);
    let mut slow = core(2, &slow_store, now);
    fast.add_peer(slow_id);
    slow.add_peer(fast_id);
    let fast_wall = WALL_MS + FIFTEEN_MINUTES_MS;

    // The receiver refuses the fast node's write and names the peer and the offset.
    let written = fast
        .append_local(fast_wall, vec!["from the future".to_owned()], &fast_store)
        .unwrap();
    deliver(
        (&mut fast, fast_wall),
        (&mut slow, &slow_store, WALL_MS),
        now,
    );
    assert!(slow_store.frontier().is_empty());
    let slow_view = slow.peers().find(|(id, _)| *id == fast_id).unwrap().1;
    assert_eq!(
        slow_view.refused.map(|r| (r.dot, r.ahead_ms)),
        Some((written[0].dot, FIFTEEN_MINUTES_MS))
    );
    assert_eq!(slow_view.clock_offset_ms, Some(ahead));
    assert!(events(&mut slow).contains(&Event::PeerClockSkewed {
        peer: fast_id,
        offset_ms: ahead
    }));
    let slow_skew = slow.clock_skew().unwrap();
    assert_eq!(
        (slow_skew.offset_ms, slow_skew.peers, slow_skew.refused_by),
        (-ahead, 1, vec![])
    );

    // The fast node learns from the other's frontier that it is ahead, and that its writes
    // are refused.
    slow.sync_now(now, &slow_store);
    deliver(
        (&mut slow, WALL_MS),
        (&mut fast, &fast_store, fast_wall),
        now,
    );
    assert!(events(&mut fast).contains(&Event::PeerClockSkewed {
        peer: slow_id,
        offset_ms: -ahead
    }));
    let fast_skew = fast.clock_skew().unwrap();
    assert_eq!(
        (fast_skew.offset_ms, fast_skew.peers, fast_skew.refused_by),
        (ahead, 1, vec![slow_id])
    );
    deliver(
        (&mut fast, fast_wall),
        (&mut slow, &slow_store, WALL_MS),
        now,
    );
    assert!(
        slow_store.frontier().is_empty(),
        "the page offered it again, refused again"
    );

    // The fast clock is set right: both sides say so at the next round, while the operation
    // it stamped in the future waits until the other's clock reaches its stamp.
    let fixed = WALL_MS + 1000;
    slow.sync_now(now, &slow_store);
    deliver((&mut slow, fixed), (&mut fast, &fast_store, fixed), now);
    deliver((&mut fast, fixed), (&mut slow, &slow_store, fixed), now);
    assert!(events(&mut fast).contains(&Event::PeerClockAgrees {
        peer: slow_id,
        offset_ms: 0
    }));
    assert!(events(&mut slow).contains(&Event::PeerClockAgrees {
        peer: fast_id,
        offset_ms: 0
    }));
    assert_eq!(fast.clock_skew().unwrap().refused_by, vec![]);
    assert!(slow_store.frontier().is_empty());
    let slow_view = slow.peers().find(|(id, _)| *id == fast_id).unwrap().1;
    assert!(slow_view.refused.is_some());

    let caught_up = WALL_MS + FIFTEEN_MINUTES_MS;
    slow.sync_now(now, &slow_store);
    deliver(
        (&mut slow, caught_up),
        (&mut fast, &fast_store, caught_up),
        now,
    );
    deliver(
        (&mut fast, caught_up),
        (&mut slow, &slow_store, caught_up),
        now,
    );
    assert_eq!(slow_store.frontier(), fast_store.frontier());
    let slow_view = slow.peers().find(|(id, _)| *id == fast_id).unwrap().1;
    assert_eq!(slow_view.refused, None, "taken in at last");
}

/// The frontier `from` reported last, as `of` sees it.
fn reported(of: &Gossip<String, StdRng>, from: u64) -> Option<redcloud_eventlog::VersionVector> {
    of.peers()
        .find(|(id, _)| *id == NodeId::new(from))
        .and_then(|(_, status)| status.reported_frontier.clone())
        .map(|(_, frontier)| frontier)
}

/// The frontier `core` opens an anti-entropy round with (to its one peer), once whatever it
/// had queued is dropped.
fn frontier_opening_a_round(
    core: &mut Core,
    store: &MemStore<String>,
    now: Instant,
) -> GossipMessage<String> {
    while core.poll_transmit().is_some() {}
    core.sync_now(now, store);
    core.poll_transmit()
        .expect("a round opens with a frontier")
        .message
}

#[test]
fn frontiers_leave_out_folded_origins_only_between_nodes_with_the_same_folds() {
    let start = Instant::now();
    let (store_r, store_a, store_b) = (MemStore::new(), MemStore::new(), MemStore::new());
    let mut r = core(9, &store_r, start);
    let mut a = core(1, &store_a, start);
    let mut b = core(2, &store_b, start);
    let written = r
        .append_local(WALL_MS, vec!["x".to_owned(), "y".to_owned()], &store_r)
        .unwrap();
    while r.poll_transmit().is_some() {}
    for store in [&store_a, &store_b] {
        store.append(&written).unwrap();
    }
    a.add_peer(NodeId::new(2));
    b.add_peer(NodeId::new(1));
    a.append_local(WALL_MS, vec!["a".to_owned()], &store_a)
        .unwrap();
    while a.poll_transmit().is_some() {}
    let folds = store_r.frontier();
    a.set_folds(folds.clone());
    b.set_folds(folds.clone());

    // A does not know B's folds yet: its first frontier is whole, and names its folds.
    a.sync_now(start, &store_a);
    let first = a.poll_transmit().unwrap().message;
    let GossipMessage::Frontier {
        frontier,
        folded: false,
        folds: Some(_),
        ..
    } = &first
    else {
        panic!("expected a whole frontier, got {first:?}")
    };
    assert_eq!(frontier, &store_a.frontier());
    b.handle_message(start, WALL_MS, NodeId::new(1), first, &store_b)
        .unwrap();
    assert_eq!(reported(&b, 1), Some(store_a.frontier()));

    // B's answer is folded (it heard A's folds): R is left out, and A reads it back whole.
    let answer = std::iter::from_fn(|| b.poll_transmit())
        .find(|t| matches!(t.message, GossipMessage::Frontier { .. }))
        .unwrap()
        .message;
    let GossipMessage::Frontier {
        frontier,
        folded: true,
        ..
    } = &answer
    else {
        panic!("expected a folded frontier, got {answer:?}")
    };
    assert_eq!(frontier.get(NodeId::new(9)), redcloud_eventlog::Seq::ZERO);
    assert_eq!(
        frontier.origin_count(),
        store_b.frontier().origin_count() - 1
    );
    a.handle_message(start, WALL_MS, NodeId::new(2), answer, &store_a)
        .unwrap();
    assert_eq!(reported(&a, 2), Some(store_b.frontier()));

    // From now on A folds too; once R moves past its fold, R travels again.
    let GossipMessage::Frontier {
        frontier,
        folded: true,
        ..
    } = frontier_opening_a_round(&mut a, &store_a, start)
    else {
        panic!("expected a folded frontier")
    };
    assert_eq!(
        frontier.iter().map(|(o, _)| o).collect::<Vec<_>>(),
        [NodeId::new(1)]
    );
    let late = r
        .append_local(WALL_MS, vec!["z".to_owned()], &store_r)
        .unwrap();
    store_a.append(&late).unwrap();
    let sent = frontier_opening_a_round(&mut a, &store_a, start);
    b.handle_message(start, WALL_MS, NodeId::new(1), sent, &store_b)
        .unwrap();
    assert_eq!(reported(&b, 1), Some(store_a.frontier()));

    // Folds that differ: a folded frontier cannot be read, so it is not taken for one; the
    // receiver answers with its own whole frontier instead.
    b.set_folds(store_a.frontier());
    while b.poll_transmit().is_some() {}
    let stale = frontier_opening_a_round(&mut a, &store_a, start);
    assert!(matches!(
        stale,
        GossipMessage::Frontier { folded: true, .. }
    ));
    let before = reported(&b, 1);
    b.handle_message(start, WALL_MS, NodeId::new(1), stale, &store_b)
        .unwrap();
    assert_eq!(reported(&b, 1), before);
    let reply = b.poll_transmit().unwrap().message;
    assert!(
        matches!(reply, GossipMessage::Frontier { folded: false, .. }),
        "{reply:?}"
    );
    a.handle_message(start, WALL_MS, NodeId::new(2), reply, &store_a)
        .unwrap();
    assert!(matches!(
        frontier_opening_a_round(&mut a, &store_a, start),
        GossipMessage::Frontier { folded: false, .. }
    ));
}

#[test]
fn folds_above_the_log_are_never_used_to_fold() {
    let start = Instant::now();
    let (store_a, store_b, mut a, mut b) = two_peers(start);
    a.append_local(WALL_MS, vec!["a".to_owned()], &store_a)
        .unwrap();
    // Folds naming operations of origin 9 that A's log does not hold (its read model came
    // from a snapshot whose log rebase failed).
    let folds: redcloud_eventlog::VersionVector =
        [(NodeId::new(9), redcloud_eventlog::Seq::new(5))]
            .into_iter()
            .collect();
    a.set_folds(folds.clone());
    b.set_folds(folds);
    b.sync_now(start, &store_b);
    deliver((&mut b, WALL_MS), (&mut a, &store_a, WALL_MS), start);
    let sent = frontier_opening_a_round(&mut a, &store_a, start);
    assert!(
        matches!(sent, GossipMessage::Frontier { folded: false, .. }),
        "{sent:?}"
    );
    b.handle_message(start, WALL_MS, NodeId::new(1), sent, &store_b)
        .unwrap();
    assert_eq!(reported(&b, 1), Some(store_a.frontier()));
}

#[test]
fn a_node_waiting_for_a_snapshot_takes_none_of_its_own() {
    let start = Instant::now();
    let (store_a, store_b, mut a, mut b) = two_peers(start);
    a.append_local(WALL_MS, vec!["x".to_owned(), "y".to_owned()], &store_a)
        .unwrap();
    while a.poll_transmit().is_some() {}
    let truncated_at = redcloud_eventlog::LogBase {
        frontier: store_a.frontier(),
        hlc: redcloud_eventlog::Hlc::new(WALL_MS, 1),
    };
    LogStore::<String>::rebase(&store_a, &truncated_at).unwrap();
    // The newcomer writes, and the peer takes its operation in.
    b.append_local(WALL_MS + 1, vec!["mine".to_owned()], &store_b)
        .unwrap();
    deliver((&mut b, WALL_MS), (&mut a, &store_a, WALL_MS), start);
    assert!(store_a.frontier().dominates(&store_b.frontier()));

    // The newcomer opens a round; the peer answers that it truncated what the newcomer lacks,
    // with its frontier, which covers everything the newcomer holds.
    let opening = frontier_opening_a_round(&mut b, &store_b, start);
    a.handle_message(start, WALL_MS, NodeId::new(2), opening, &store_a)
        .unwrap();
    deliver((&mut a, WALL_MS), (&mut b, &store_b, WALL_MS), start);
    assert!(
        events(&mut b)
            .iter()
            .any(|e| matches!(e, Event::SnapshotNeeded { peer, .. } if *peer == NodeId::new(1)))
    );
    assert_eq!(reported(&b, 1), Some(store_a.frontier()));
    assert_eq!(
        b.stable_frontier([NodeId::new(1), NodeId::new(2)], &store_b),
        None,
        "a snapshot of its own would truncate what the peer's snapshot lacks"
    );

    b.install_snapshot(start, &truncated_at, &store_b).unwrap();
    assert_eq!(
        b.stable_frontier([NodeId::new(1), NodeId::new(2)], &store_b),
        Some(store_b.frontier()),
        "once its log covers the peer's base it takes snapshots again"
    );
}
