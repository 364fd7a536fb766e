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
    let (store_a, store_b) = (MemStore::new(), MemStore::new());
    let mut a = core(1, &store_a, start);
    let mut b = core(2, &store_b, start);
    a.add_peer(NodeId::new(2));
    b.add_peer(NodeId::new(1));
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
