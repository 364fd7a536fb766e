//! The sans-IO replication core: push to a fanout of peers, anti-entropy by frontier
//! exchange, and a bounded buffer for operations whose causal past has not arrived.
//!
//! Driven by the controller's gossip driver in production and by the simulator in tests.

mod message;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::IteratorRandom;

pub use message::{FoldsDigest, GossipMessage};

use crate::clock::{Dot, NodeId, Seq, VersionVector};
use crate::error::StoreResult;
use crate::hlc::HlcClock;
use crate::op::Op;
use crate::store::{LogBase, LogStore, read_causal};

/// Tuning of the replication core.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// How many peers receive each new operation directly.
    pub fanout: usize,
    /// Mean time between anti-entropy rounds started by this node (jittered ±50%).
    pub anti_entropy_interval: Duration,
    /// Most operations in one message.
    pub page_max_ops: usize,
    /// Most encoded bytes of operations in one message; a message always carries at least
    /// one operation, so the largest message is this or one operation, whichever is larger.
    pub page_max_bytes: usize,
    /// Most operations held while their causal past is missing; beyond it, arrivals are
    /// dropped and fetched again by anti-entropy.
    pub buffer_max_ops: usize,
    /// A peer that has not answered for this long after being asked is suspected and no
    /// longer chosen for pushes, until it is heard from again.
    pub suspect_after: Duration,
    /// Operations stamped further than this ahead of the local wall clock are not taken in
    /// until the clock catches up (anti-entropy offers them again), so one node with a wild
    /// clock cannot drag every stamp into the far future.
    pub max_clock_drift: Duration,
    /// Buffered operations whose causal past has not come within this long are dropped;
    /// anti-entropy delivers them again in causal order.
    pub buffer_ttl: Duration,
    /// A peer whose wall clock is further than this from this node's is reported
    /// ([`Event::PeerClockSkewed`]): well below `max_clock_drift`, so an operator hears of a
    /// drifting clock before its operations are refused.
    pub clock_skew_warning: Duration,
}

impl GossipConfig {
    /// The configuration with every value brought into a workable range.
    fn sanitized(mut self) -> Self {
        const DAY: Duration = Duration::from_secs(86_400);
        self.page_max_ops = self.page_max_ops.max(1);
        self.page_max_bytes = self.page_max_bytes.max(1);
        self.anti_entropy_interval = self
            .anti_entropy_interval
            .clamp(Duration::from_millis(1), DAY);
        self.suspect_after = self.suspect_after.min(DAY);
        self.max_clock_drift = self.max_clock_drift.min(DAY * 365);
        self.buffer_ttl = self.buffer_ttl.min(DAY);
        self.clock_skew_warning = self.clock_skew_warning.min(DAY * 365);
        self
    }
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            fanout: 3,
            anti_entropy_interval: Duration::from_secs(1),
            page_max_ops: 512,
            page_max_bytes: 8 * 1024 * 1024,
            buffer_max_ops: 8192,
            suspect_after: Duration::from_secs(5),
            max_clock_drift: Duration::from_secs(600),
            buffer_ttl: Duration::from_secs(30),
            clock_skew_warning: Duration::from_secs(5),
        }
    }
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit<P> {
    /// The peer to send it to.
    pub to: NodeId,
    /// What to send.
    pub message: GossipMessage<P>,
}

/// Something the application must know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<P> {
    /// Operations are now durably in the log, in causal order: project them.
    Applied {
        /// The operations, each after its causal past.
        ops: Vec<Op<P>>,
    },
    /// A peer stopped answering.
    PeerSuspected {
        /// The peer.
        peer: NodeId,
    },
    /// A suspected peer answered again.
    PeerRecovered {
        /// The peer.
        peer: NodeId,
    },
    /// The out-of-order buffer was full; this operation will come again through anti-entropy.
    BufferOverflow {
        /// The operation dropped.
        dropped: Dot,
    },
    /// An operation stamped too far ahead of the local wall clock was refused for now.
    ClockAhead {
        /// The operation.
        dot: Dot,
        /// How far ahead of the local wall clock its stamp is.
        ahead_ms: u64,
    },
    /// A peer's wall clock was found further than `clock_skew_warning` from this node's
    /// (reported once, when it gets there).
    PeerClockSkewed {
        /// The peer.
        peer: NodeId,
        /// Its clock minus this node's, in milliseconds.
        offset_ms: i64,
    },
    /// A peer truncated its log below operations this node lacks: install its snapshot
    /// (covering at least `base`) with [`Gossip::install_snapshot`], then anti-entropy brings
    /// the rest. Reported again at every anti-entropy round with that peer until then.
    SnapshotNeeded {
        /// The peer that holds the snapshot.
        peer: NodeId,
        /// The peer's base, which this node's frontier does not cover.
        base: VersionVector,
    },
    /// A peer reported by [`Event::PeerClockSkewed`] is back within `clock_skew_warning`.
    PeerClockAgrees {
        /// The peer.
        peer: NodeId,
        /// Its clock minus this node's, in milliseconds.
        offset_ms: i64,
    },
}

/// A peer's operation this node refused because its stamp was too far ahead of the local
/// wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockRefusal {
    /// The operation.
    pub dot: Dot,
    /// How far ahead of the local wall clock its stamp was, in milliseconds.
    pub ahead_ms: u64,
}

/// This node's wall clock against its peers', from each peer's latest reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockSkew {
    /// This node's clock minus the median peer's, in milliseconds (positive: this node is
    /// ahead). With an even number of peers, the later of the two middle clocks counts.
    pub offset_ms: i64,
    /// How many peers' readings there are.
    pub peers: usize,
    /// Peers whose clocks are more than `max_clock_drift` behind this node's: they refuse
    /// this node's new operations until their clocks catch up.
    pub refused_by: Vec<NodeId>,
}

/// How this node sees a peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// When the peer was last heard from.
    pub last_heard: Option<Instant>,
    /// When the peer was first asked something it has not answered yet.
    pub waiting_since: Option<Instant>,
    /// Whether the peer is suspected of being down or cut off.
    pub suspected: bool,
    /// The newest frontier the peer sent, and when it arrived: everything in it was durable in
    /// the peer's log at that moment. Lets the application tell which operations every node
    /// already knows.
    pub reported_frontier: Option<(Instant, VersionVector)>,
    /// Its wall clock minus this node's, in milliseconds (positive: it is ahead), from its
    /// newest message that carried its clock. The message's time in flight makes it read a
    /// little low: noise against a warning threshold of seconds.
    pub clock_offset_ms: Option<i64>,
    /// The last of its operations this node refused for a stamp too far ahead of the local
    /// clock, until that operation is taken in.
    pub refused: Option<ClockRefusal>,
    /// The digest of its folds, as its newest frontier said.
    pub folds: Option<FoldsDigest>,
    /// The base of its log, once it said it truncated operations this node lacked: until
    /// this node's frontier covers it, this node waits for a snapshot.
    pub truncated_base: Option<VersionVector>,
}

/// The replication core of one node.
///
/// It owns no socket, clock, thread or entropy source: time comes in as `now`, randomness from
/// the injected `rng`, and the log through a [`LogStore`]. Usage:
///
/// 1. Feed inputs: [`Gossip::handle_message`] for each message received (then
///    [`Gossip::handle_clock`] if the transport says when the peer sent it),
///    [`Gossip::handle_tick`] when the deadline from [`Gossip::poll_timeout`] passes, and
///    [`Gossip::append_local`] for the node's own writes.
/// 2. After each input, drain [`Gossip::poll_event`] (project applied operations before
///    answering anyone who depends on them), then [`Gossip::poll_transmit`] (send), then
///    read [`Gossip::poll_timeout`] again.
///
/// Invariant: it appends to the store only operations whose causal past the store holds,
/// so the log stays causally closed.
pub struct Gossip<P, R> {
    me: NodeId,
    config: GossipConfig,
    rng: R,
    clock: HlcClock,
    peers: BTreeMap<NodeId, PeerStatus>,
    /// Operations waiting for their causal past, by origin then seq, with their arrival time.
    buffer: BTreeMap<NodeId, BTreeMap<Seq, (Instant, Op<P>)>>,
    buffered: usize,
    next_round: Instant,
    transmits: VecDeque<Transmit<P>>,
    events: VecDeque<Event<P>>,
    /// Origins whose history every node is known to hold up to a seq (retired ones, whose
    /// entries no longer move), as the application learned them from its log: frontiers
    /// sent to peers with the same folds leave out entries at these values.
    folds: VersionVector,
    folds_digest: Option<FoldsDigest>,
}

impl<P: Clone + serde::Serialize, R: Rng> Gossip<P, R> {
    /// A core for node `me` over the log in `store`, with no peers yet.
    ///
    /// Reads the last operation of every origin so that new local timestamps exceed every
    /// timestamp in the log.
    pub fn new(
        me: NodeId,
        config: GossipConfig,
        mut rng: R,
        now: Instant,
        store: &(impl LogStore<P> + ?Sized),
    ) -> StoreResult<Self> {
        let mut clock = HlcClock::new();
        clock.observe(store.base().hlc);
        for (origin, seq) in store.frontier().iter() {
            for op in store.read(origin, seq..=seq, 1)? {
                clock.observe(op.hlc);
            }
        }
        let config = config.sanitized();
        let first_round = now + jitter(&mut rng, config.anti_entropy_interval) / 2;
        Ok(Self {
            me,
            config,
            rng,
            clock,
            peers: BTreeMap::new(),
            buffer: BTreeMap::new(),
            buffered: 0,
            next_round: first_round,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            folds: VersionVector::new(),
            folds_digest: None,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The configuration in force (brought into workable ranges).
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// This node's wall clock against its peers', from the latest reading of each; `None`
    /// before any peer sent its clock.
    pub fn clock_skew(&self) -> Option<ClockSkew> {
        let mut readings: Vec<(i64, NodeId)> = self
            .peers
            .iter()
            .filter_map(|(peer, status)| status.clock_offset_ms.map(|offset| (offset, *peer)))
            .collect();
        readings.sort_unstable();
        let (median, _) = *readings.get(readings.len() / 2)?;
        let max_drift = i64::try_from(self.config.max_clock_drift.as_millis()).unwrap_or(i64::MAX);
        Some(ClockSkew {
            offset_ms: median.saturating_neg(),
            peers: readings.len(),
            refused_by: readings
                .iter()
                .filter(|(offset, _)| offset.saturating_neg() > max_drift)
                .map(|(_, peer)| *peer)
                .collect(),
        })
    }

    /// Sets the folds: for origins that no longer write (retired), the seq up to which their
    /// history is known everywhere. The application derives them from operations in its log
    /// (so every node holding the same operations has the same folds) and must only name
    /// what the log holds: every entry at most this node's frontier. Frontiers sent to a peer
    /// whose folds have the same digest leave those origins out while they sit exactly at
    /// their folded value, so the vectors that travel grow with the live nodes, not with
    /// every node that ever wrote.
    pub fn set_folds(&mut self, folds: VersionVector) {
        self.folds_digest = FoldsDigest::of(&folds);
        self.folds = folds;
    }

    /// The folds in force.
    pub fn folds(&self) -> &VersionVector {
        &self.folds
    }

    /// Starts gossiping with `peer` (no effect if known already or if it is this node).
    pub fn add_peer(&mut self, peer: NodeId) {
        if peer != self.me {
            self.peers.entry(peer).or_default();
        }
    }

    /// Stops gossiping with `peer`.
    pub fn remove_peer(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
    }

    /// Every known peer and how it looks from here.
    pub fn peers(&self) -> impl Iterator<Item = (NodeId, &PeerStatus)> {
        self.peers.iter().map(|(id, status)| (*id, status))
    }

    /// How many operations wait for their causal past.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Creates operations for `payloads`, appends them durably, and schedules their push.
    ///
    /// `wall_ms` is the wall clock now, in milliseconds since the Unix epoch. Returns the new
    /// operations; they also come out of [`Gossip::poll_event`] as applied.
    pub fn append_local(
        &mut self,
        wall_ms: u64,
        payloads: Vec<P>,
        store: &(impl LogStore<P> + ?Sized),
    ) -> StoreResult<Vec<Op<P>>> {
        let mut frontier = store.frontier();
        let mut ops = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let dot = Dot::new(self.me, frontier.get(self.me).next());
            let op = Op {
                dot,
                deps: frontier.clone(),
                hlc: self.clock.tick(wall_ms),
                payload,
            };
            frontier.raise(dot.origin, dot.seq);
            ops.push(op);
        }
        store.append(&ops)?;
        self.push(&ops, None);
        self.events.push_back(Event::Applied { ops: ops.clone() });
        Ok(ops)
    }

    /// Takes in a message from `from`; `wall_ms` is the wall clock now (milliseconds since the
    /// Unix epoch). A store error leaves the core consistent: operations that could not be
    /// appended will be fetched again.
    pub fn handle_message(
        &mut self,
        now: Instant,
        wall_ms: u64,
        from: NodeId,
        message: GossipMessage<P>,
        store: &(impl LogStore<P> + ?Sized),
    ) -> StoreResult<()> {
        if from == self.me {
            return Ok(());
        }
        self.heard_from(now, from);
        match message {
            GossipMessage::Push { ops } => {
                let applied = self.ingest(now, wall_ms, ops, store)?;
                self.push(&applied, Some(from));
            }
            GossipMessage::Page { ops, more } => {
                let applied = self.ingest(now, wall_ms, ops, store)?;
                // Ask for the next page only if this one moved us forward, so a page that
                // cannot be applied never loops.
                if more && !applied.is_empty() {
                    self.send_frontier(from, store.frontier(), false);
                }
            }
            GossipMessage::Frontier {
                frontier,
                reply,
                folds,
                folded,
            } => {
                if let Some(status) = self.peers.get_mut(&from) {
                    status.folds = folds;
                }
                let Some(frontier) = self.unfold(frontier, folds, folded) else {
                    // Folded by folds this node does not hold (yet, or any more): unreadable.
                    // This node's own frontier names its folds, so the sender's next one is
                    // readable, and it ships this node what it lacks meanwhile.
                    self.send_frontier(from, store.frontier(), false);
                    return Ok(());
                };
                if let Some(status) = self.peers.get_mut(&from) {
                    status.reported_frontier = Some((now, frontier.clone()));
                }
                let base = store.base().frontier;
                if !frontier.dominates(&base) {
                    // No page could apply there: what it lacks starts in the snapshot.
                    self.send(from, GossipMessage::Truncated { base });
                    if reply {
                        self.send_frontier(from, store.frontier(), false);
                    }
                    return Ok(());
                }
                let mut page = read_causal(store, &frontier, self.config.page_max_ops)?;
                if keep_within_bytes(&mut page.ops, self.config.page_max_bytes) {
                    page.more = true;
                }
                if !page.ops.is_empty() {
                    let message = GossipMessage::Page {
                        ops: page.ops,
                        more: page.more,
                    };
                    self.send(from, message);
                }
                if reply {
                    self.send_frontier(from, store.frontier(), false);
                }
            }
            GossipMessage::Truncated { base } => {
                if !store.frontier().dominates(&base) {
                    if let Some(status) = self.peers.get_mut(&from) {
                        status.truncated_base = Some(base.clone());
                    }
                    self.events
                        .push_back(Event::SnapshotNeeded { peer: from, base });
                }
            }
        }
        Ok(())
    }

    /// The frontier every node in `live` is known to have reached, with this one: the meet
    /// of this node's frontier and the newest frontier each of them reported. `None` while
    /// one of them (other than this node) has reported nothing, or is not a peer, and while
    /// this node lacks operations a peer truncated (it waits for a snapshot). Operations
    /// at or below it are causally stable: no live node will ever need them from this one
    /// again, so a snapshot at this frontier may stand for them.
    pub fn stable_frontier(
        &self,
        live: impl IntoIterator<Item = NodeId>,
        store: &(impl LogStore<P> + ?Sized),
    ) -> Option<VersionVector> {
        let mut stable = store.frontier();
        let frontier = stable.clone();
        // A node waiting for a peer's snapshot takes none of its own: truncating its log now
        // would drop operations that snapshot lacks, and the snapshot would then not cover
        // this log's base and could not be installed.
        let waiting = self.peers.values().any(|status| {
            status
                .truncated_base
                .as_ref()
                .is_some_and(|base| !frontier.dominates(base))
        });
        if waiting {
            return None;
        }
        for node in live {
            if node == self.me {
                continue;
            }
            let (_, reported) = self.peers.get(&node)?.reported_frontier.as_ref()?;
            stable = stable.meet(reported);
        }
        Some(stable)
    }

    /// Starts the log from a snapshot: `base` is the snapshot's frontier (causally closed)
    /// and newest stamp, and the application has installed the snapshot's state. The log
    /// drops what the base covers and keeps what it holds beyond; the application projects
    /// those, since its state now starts at the base. Then anti-entropy resumes with every
    /// peer at once.
    pub fn install_snapshot(
        &mut self,
        now: Instant,
        base: &LogBase,
        store: &(impl LogStore<P> + ?Sized),
    ) -> StoreResult<()> {
        store.rebase(base)?;
        self.clock.observe(base.hlc);
        self.sync_now(now, store);
        Ok(())
    }

    /// Takes note of a peer's wall clock: a message from `from`, received when this node's
    /// wall clock read `wall_ms`, was sent when the peer's read `sent_wall_ms` (the
    /// transport carries it beside the message, so nodes that do not send it still talk to
    /// this one). Reports when the offset crosses `clock_skew_warning`, either way. A peer
    /// not known yet (call [`Gossip::handle_message`] first) is ignored.
    pub fn handle_clock(&mut self, wall_ms: u64, from: NodeId, sent_wall_ms: u64) {
        let warning = self.config.clock_skew_warning.as_millis();
        let skewed = |offset: i64| u128::from(offset.unsigned_abs()) > warning;
        let Some(status) = self.peers.get_mut(&from) else {
            return;
        };
        // The peer's reading is whatever it says: saturate rather than wrap.
        let offset_ms = i64::try_from(i128::from(sent_wall_ms) - i128::from(wall_ms)).unwrap_or(
            if sent_wall_ms > wall_ms {
                i64::MAX
            } else {
                i64::MIN
            },
        );
        let was_skewed = status.clock_offset_ms.is_some_and(skewed);
        status.clock_offset_ms = Some(offset_ms);
        match (was_skewed, skewed(offset_ms)) {
            (false, true) => self.events.push_back(Event::PeerClockSkewed {
                peer: from,
                offset_ms,
            }),
            (true, false) => self.events.push_back(Event::PeerClockAgrees {
                peer: from,
                offset_ms,
            }),
            _ => {}
        }
    }

    /// Advances time: starts an anti-entropy round when one is due, updates suspicion and
    /// drops buffered operations that waited too long.
    pub fn handle_tick(&mut self, now: Instant, store: &(impl LogStore<P> + ?Sized)) {
        let ttl = self.config.buffer_ttl;
        for waiting in self.buffer.values_mut() {
            let before = waiting.len();
            waiting.retain(|_, (arrived, _)| now.saturating_duration_since(*arrived) < ttl);
            self.buffered -= before - waiting.len();
        }
        self.buffer.retain(|_, waiting| !waiting.is_empty());
        for (peer, status) in &mut self.peers {
            let overdue = status.waiting_since.is_some_and(|since| {
                now.saturating_duration_since(since) >= self.config.suspect_after
            });
            if overdue && !status.suspected {
                status.suspected = true;
                self.events.push_back(Event::PeerSuspected { peer: *peer });
            }
        }
        if now < self.next_round {
            return;
        }
        self.next_round = now + jitter(&mut self.rng, self.config.anti_entropy_interval);
        let Some(peer) = self.peers.keys().copied().choose(&mut self.rng) else {
            return;
        };
        if let Some(status) = self.peers.get_mut(&peer) {
            status.waiting_since.get_or_insert(now);
        }
        self.send_frontier(peer, store.frontier(), true);
    }

    /// Starts an anti-entropy round with every peer not suspected (all of them when every
    /// peer is suspected) right away: used when this node must catch up quickly, for example
    /// with a client that has seen more than it has.
    pub fn sync_now(&mut self, now: Instant, store: &(impl LogStore<P> + ?Sized)) {
        let live: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, s)| !s.suspected)
            .map(|(id, _)| *id)
            .collect();
        let targets = if live.is_empty() {
            self.peers.keys().copied().collect()
        } else {
            live
        };
        let frontier = store.frontier();
        for peer in targets {
            if let Some(status) = self.peers.get_mut(&peer) {
                status.waiting_since.get_or_insert(now);
            }
            self.send_frontier(peer, frontier.clone(), true);
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// When [`Gossip::handle_tick`] should be called next.
    pub fn poll_timeout(&self) -> Instant {
        let suspicion = self
            .peers
            .values()
            .filter(|status| !status.suspected)
            .filter_map(|status| status.waiting_since)
            .map(|since| since + self.config.suspect_after)
            .min();
        suspicion.map_or(self.next_round, |at| at.min(self.next_round))
    }

    fn heard_from(&mut self, now: Instant, peer: NodeId) {
        let status = self.peers.entry(peer).or_default();
        status.last_heard = Some(now);
        status.waiting_since = None;
        if status.suspected {
            status.suspected = false;
            self.events.push_back(Event::PeerRecovered { peer });
        }
    }

    /// Appends whatever of `ops` (and of the buffer) has become ready, in causal order;
    /// buffers the rest. Returns the operations appended.
    fn ingest(
        &mut self,
        now: Instant,
        wall_ms: u64,
        ops: Vec<Op<P>>,
        store: &(impl LogStore<P> + ?Sized),
    ) -> StoreResult<Vec<Op<P>>> {
        let mut known = store.frontier();
        let mut ready = Vec::new();
        let latest_acceptable =
            wall_ms.saturating_add(self.config.max_clock_drift.as_millis() as u64);
        for op in ops {
            if known.contains(op.dot) {
                continue;
            }
            if op.hlc.wall_ms > latest_acceptable {
                let ahead_ms = op.hlc.wall_ms - wall_ms;
                if let Some(origin) = self.peers.get_mut(&op.dot.origin) {
                    origin.refused = Some(ClockRefusal {
                        dot: op.dot,
                        ahead_ms,
                    });
                }
                self.events.push_back(Event::ClockAhead {
                    dot: op.dot,
                    ahead_ms,
                });
                continue;
            }
            if op.is_ready_for(&known) {
                known.raise(op.dot.origin, op.dot.seq);
                ready.push(op);
            } else {
                self.hold(now, op);
            }
        }
        self.drain_buffer(&mut known, &mut ready);
        if ready.is_empty() {
            return Ok(ready);
        }
        // Observed before the append: should the append fail yet reach the disk (a full disk
        // can refuse only the fsync), the next local stamp must still exceed these.
        for op in &ready {
            self.clock.observe(op.hlc);
        }
        store.append(&ready)?;
        for op in &ready {
            if let Some(origin) = self.peers.get_mut(&op.dot.origin)
                && origin.refused.is_some_and(|r| r.dot.seq <= op.dot.seq)
            {
                origin.refused = None;
            }
        }
        self.events.push_back(Event::Applied { ops: ready.clone() });
        Ok(ready)
    }

    fn hold(&mut self, now: Instant, op: Op<P>) {
        let waiting = self.buffer.entry(op.dot.origin).or_default();
        if waiting.contains_key(&op.dot.seq) {
            return;
        }
        if self.buffered >= self.config.buffer_max_ops {
            self.events
                .push_back(Event::BufferOverflow { dropped: op.dot });
            return;
        }
        waiting.insert(op.dot.seq, (now, op));
        self.buffered += 1;
    }

    /// Moves buffered operations that `known` now makes ready into `ready`, and forgets those
    /// already covered.
    fn drain_buffer(&mut self, known: &mut VersionVector, ready: &mut Vec<Op<P>>) {
        loop {
            let mut progressed = false;
            for (origin, waiting) in &mut self.buffer {
                let have = known.get(*origin);
                let stale: Vec<Seq> = waiting.range(..=have).map(|(seq, _)| *seq).collect();
                for seq in stale {
                    waiting.remove(&seq);
                    self.buffered -= 1;
                }
                while let Some(entry) = waiting.first_entry() {
                    if !entry.get().1.is_ready_for(known) {
                        break;
                    }
                    let (_, op) = entry.remove();
                    self.buffered -= 1;
                    known.raise(op.dot.origin, op.dot.seq);
                    ready.push(op);
                    progressed = true;
                }
            }
            self.buffer.retain(|_, waiting| !waiting.is_empty());
            if !progressed {
                return;
            }
        }
    }

    /// Sends `ops` to a fanout of live peers other than `except`, in pages.
    fn push(&mut self, ops: &[Op<P>], except: Option<NodeId>) {
        if ops.is_empty() {
            return;
        }
        let candidates = |suspected_ok: bool| {
            self.peers
                .iter()
                .filter(move |(id, status)| {
                    Some(**id) != except && (suspected_ok || !status.suspected)
                })
                .map(|(id, _)| *id)
        };
        let mut targets = candidates(false).choose_multiple(&mut self.rng, self.config.fanout);
        if targets.is_empty() {
            targets = candidates(true).choose_multiple(&mut self.rng, self.config.fanout);
        }
        let mut rest = ops;
        while !rest.is_empty() {
            let mut batch: Vec<Op<P>> = rest[..rest.len().min(self.config.page_max_ops)].to_vec();
            keep_within_bytes(&mut batch, self.config.page_max_bytes);
            rest = &rest[batch.len()..];
            for &to in &targets {
                let message = GossipMessage::Push { ops: batch.clone() };
                self.send(to, message);
            }
        }
    }

    /// Sends this node's `frontier`, folded if `to` announced the same folds.
    fn send_frontier(&mut self, to: NodeId, frontier: VersionVector, reply: bool) {
        // Never folds above what this log holds (a read model installed from a snapshot
        // whose log rebase then failed): the receiver would fill in operations it lacks.
        let folded = self.folds_digest.is_some()
            && self.peers.get(&to).and_then(|status| status.folds) == self.folds_digest
            && frontier.dominates(&self.folds);
        let frontier = if folded {
            frontier
                .iter()
                .filter(|(origin, seq)| self.folds.get(*origin) != *seq)
                .collect()
        } else {
            frontier
        };
        let message = GossipMessage::Frontier {
            frontier,
            reply,
            folds: self.folds_digest,
            folded,
        };
        self.send(to, message);
    }

    /// A peer's frontier as it is: a folded one filled in from this node's folds, which must
    /// be the sender's (same digest); `None` when they are not.
    fn unfold(
        &self,
        mut frontier: VersionVector,
        folds: Option<FoldsDigest>,
        folded: bool,
    ) -> Option<VersionVector> {
        if !folded {
            return Some(frontier);
        }
        if folds.is_none() || folds != self.folds_digest {
            return None;
        }
        // The sender left out exactly the origins at their folded value and holds at least
        // that much of every folded origin, so the pointwise maximum restores its frontier.
        frontier.merge(&self.folds);
        Some(frontier)
    }

    fn send(&mut self, to: NodeId, message: GossipMessage<P>) {
        self.transmits.push_back(Transmit { to, message });
    }
}

/// Keeps the longest prefix of `ops` whose encoded size stays within `max_bytes`, but never
/// fewer than one operation; returns whether any were left out.
fn keep_within_bytes<P: serde::Serialize>(ops: &mut Vec<Op<P>>, max_bytes: usize) -> bool {
    let mut total = 0usize;
    let keep = ops
        .iter()
        .position(|op| {
            total = total.saturating_add(op.encode().len());
            total > max_bytes
        })
        .map_or(ops.len(), |first_over| first_over.max(1));
    let trimmed = keep < ops.len();
    ops.truncate(keep);
    trimmed
}

/// A duration uniformly drawn from half to one and a half times `mean`, so nodes started
/// together do not run their rounds in lockstep.
fn jitter(rng: &mut impl Rng, mean: Duration) -> Duration {
    mean.mul_f64(rng.random_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;

    fn op(seq: u64, payload_bytes: usize) -> Op<String> {
        Op {
            dot: Dot::new(NodeId::new(1), Seq::new(seq)),
            deps: VersionVector::new(),
            hlc: Hlc::new(1_700_000_000_000, 0),
            payload: "x".repeat(payload_bytes),
        }
    }

    #[test]
    fn pages_stop_at_the_byte_bound_but_carry_at_least_one_op() {
        let mut ops: Vec<Op<String>> = (1..=10).map(|seq| op(seq, 1000)).collect();
        let one = ops[0].encode().len();
        assert!(keep_within_bytes(&mut ops, one * 3 + 10));
        assert_eq!(ops.len(), 3);
        let mut big = vec![op(1, 100_000), op(2, 10)];
        assert!(keep_within_bytes(&mut big, 1000));
        assert_eq!(
            big.len(),
            1,
            "an op larger than the bound still travels alone"
        );
        let mut small: Vec<Op<String>> = (1..=4).map(|seq| op(seq, 10)).collect();
        assert!(!keep_within_bytes(&mut small, 1 << 20));
        assert_eq!(small.len(), 4);
    }
}
