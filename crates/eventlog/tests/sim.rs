//! Deterministic simulation of the replication core: many replicas over in-memory logs,
//! driven by one seeded RNG in virtual time through message loss, duplication, reordering,
//! corruption, partitions, crash-restarts, nodes joining and leaving, log truncation below
//! causally stable snapshots, nodes wiped and replaced under a new id (the old one retired,
//! each survivor learning of it at its own time), new nodes starting from a snapshot, and
//! retired origins folded out of the frontiers that travel once every live node holds them.
//!
//! Every failure prints `SIM_SEED=<n>`; `SIM_SEED=<n> cargo test -p redcloud-eventlog --test
//! sim` replays exactly that run. `SIM_SEEDS=<count>` and `SIM_SEED_START=<n>` widen the sweep.
#![allow(clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redcloud_eventlog::{
    Dot, Event, Gossip, GossipConfig, GossipMessage, LogBase, LogStore, LwwMap, MemStore, NodeId,
    Op, Seq, VersionVector, read_causal, read_causal_until, replay,
};

/// A write to the toy key-value projection: `None` removes the key. A write to
/// `FOLD_PREFIX` + origin id is a fold: every live node holds that origin up to the value.
type Payload = (String, Option<u32>);

const FOLD_PREFIX: &str = "fold/";

const DEFAULT_SEEDS: u64 = 1000;
const CHAOS_MS: u64 = 20_000;
const QUIET_DEADLINE_MS: u64 = 120_000;
const EPOCH_MS: u64 = 1_790_000_000_000;
/// How long replicas keep running once in sync, to check they stay quiet.
const QUIET_WINDOW_MS: u64 = 5_000;
/// Far above what any healthy run needs; beyond it the run is a message storm or a livelock.
const EVENT_BUDGET: u64 = 2_000_000;

#[derive(Debug)]
enum Ev {
    Deliver {
        from: usize,
        /// The sender's id when it sent: the node may have been replaced since.
        from_id: NodeId,
        to: usize,
        bytes: Vec<u8>,
        /// The sender's wall clock when it sent, which the transport carries beside the bytes.
        sent_wall_ms: u64,
    },
    Tick {
        node: usize,
    },
    Write {
        node: usize,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Join {
        node: usize,
    },
    /// The node takes a snapshot at its stable frontier and truncates its log below it.
    Truncate {
        node: usize,
    },
    /// The node's data is wiped and it starts again under a new id; the old id is retired.
    Replace {
        node: usize,
    },
    /// `node` learns that `retired` was retired (each survivor at its own time, as when an
    /// operator forgets a node on two sides of a partition).
    LearnRetired {
        node: usize,
        retired: NodeId,
    },
    Partition {
        groups: Vec<u8>,
    },
    Heal,
    Calm,
}

struct Scheduled {
    at: u64,
    order: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// What a replica projects from its log: the key-value map, and the folds its fold writes
/// add up to (the highest seq named per origin).
#[derive(Clone, Default)]
struct State {
    map: LwwMap<String, u32>,
    folds: VersionVector,
}

/// A projection at a causally closed frontier, standing for the log below it (durable, like
/// the log: it survives a crash).
#[derive(Clone, Default)]
struct Snapshot {
    base: LogBase,
    state: State,
}

struct Replica {
    id: NodeId,
    store: MemStore<Payload>,
    core: Option<Gossip<Payload, StdRng>>,
    projection: State,
    snapshot: Snapshot,
    /// The nodes this replica knows to be retired.
    retired: BTreeSet<NodeId>,
    joined: bool,
    tick_at: Option<u64>,
    clock_skew_ms: i64,
    /// What the projection has been given, to check that it gets each operation once, in
    /// causal order.
    applied: VersionVector,
}

impl Replica {
    fn up(&self) -> bool {
        self.core.is_some()
    }
}

#[derive(Clone, Copy, Debug)]
struct Faults {
    loss: f64,
    duplicate: f64,
    corrupt: f64,
    max_delay_ms: u64,
}

#[derive(Debug, Default)]
struct Stats {
    writes: u64,
    messages: u64,
    dropped: u64,
    decode_errors: u64,
    crashes: u64,
    partitions: u64,
    truncated_ops: u64,
    snapshots_installed: u64,
    replaced: u64,
    converged_after_ms: u64,
    /// Messages sent while in sync after convergence, and how many carried operations.
    quiet_messages: u64,
    quiet_messages_with_ops: u64,
    /// Fold operations made, and frontiers sent folded.
    folds_made: u64,
    folded_frontiers: u64,
}

struct Sim {
    seed: u64,
    rng: StdRng,
    now_ms: u64,
    t0: Instant,
    queue: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    replicas: Vec<Replica>,
    config: GossipConfig,
    faults: Faults,
    groups: Option<Vec<u8>>,
    acked: Vec<Dot>,
    /// Every id whose node was wiped and replaced.
    retired_ids: BTreeSet<NodeId>,
    /// Every operation ever made, to hold the replicas to.
    created: BTreeMap<Dot, Op<Payload>>,
    /// Acknowledged operations that only a wiped node held: the operator destroyed them.
    destroyed: BTreeSet<Dot>,
    stats: Stats,
    converged: bool,
    quiet_from: u64,
}

fn fail(seed: u64, why: impl std::fmt::Display) -> String {
    format!("SIM_SEED={seed}: {why}")
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(2..=7);
        let config = GossipConfig {
            fanout: rng.random_range(1..=3),
            anti_entropy_interval: Duration::from_millis(rng.random_range(200..=1000)),
            page_max_ops: rng.random_range(1..=32),
            // Small enough that the byte bound, not the count, often ends a page or a push.
            page_max_bytes: rng.random_range(512..=8_192),
            buffer_max_ops: rng.random_range(0..=64),
            suspect_after: Duration::from_millis(rng.random_range(1000..=3000)),
            max_clock_drift: Duration::from_millis(rng.random_range(60_000..=600_000)),
            buffer_ttl: Duration::from_millis(rng.random_range(500..=30_000)),
            ..GossipConfig::default()
        };
        let faults = Faults {
            loss: rng.random_range(0.0..0.3),
            duplicate: rng.random_range(0.0..0.2),
            corrupt: rng.random_range(0.0..0.03),
            max_delay_ms: rng.random_range(1..=300),
        };
        let replicas = (0..n)
            .map(|_| Replica {
                id: NodeId::new(rng.random()),
                store: MemStore::new(),
                core: None,
                projection: State::default(),
                snapshot: Snapshot::default(),
                retired: BTreeSet::new(),
                joined: false,
                tick_at: None,
                clock_skew_ms: rng.random_range(-30_000..=30_000),
                applied: VersionVector::new(),
            })
            .collect();
        Sim {
            seed,
            rng,
            now_ms: 0,
            t0: Instant::now(),
            queue: BinaryHeap::new(),
            order: 0,
            replicas,
            config,
            faults,
            groups: None,
            acked: Vec::new(),
            retired_ids: BTreeSet::new(),
            created: BTreeMap::new(),
            destroyed: BTreeSet::new(),
            stats: Stats::default(),
            converged: false,
            quiet_from: u64::MAX,
        }
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.order += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            order: self.order,
            ev,
        }));
    }

    /// The (skewed) wall clock of a replica, in milliseconds since the Unix epoch.
    fn wall_ms(&self, node: usize) -> u64 {
        EPOCH_MS.saturating_add_signed(self.replicas[node].clock_skew_ms) + self.now_ms
    }

    fn instant(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    fn plan(&mut self) {
        let n = self.replicas.len();
        for node in 0..n {
            let late = node >= 2 && self.rng.random_bool(0.3);
            let at = if late {
                self.rng.random_range(0..CHAOS_MS / 2)
            } else {
                0
            };
            self.schedule(at, Ev::Join { node });
        }
        for _ in 0..self.rng.random_range(50..=300) {
            let at = self.rng.random_range(0..CHAOS_MS);
            let node = self.rng.random_range(0..n);
            self.schedule(at, Ev::Write { node });
        }
        for _ in 0..self.rng.random_range(0..=n) {
            let at = self.rng.random_range(0..CHAOS_MS);
            let node = self.rng.random_range(0..n);
            self.schedule(at, Ev::Crash { node });
            let back = at + self.rng.random_range(100..=5000);
            self.schedule(back, Ev::Restart { node });
        }
        for _ in 0..self.rng.random_range(0..=4) {
            let at = self.rng.random_range(0..CHAOS_MS);
            let sides = self.rng.random_range(2..=3);
            let mut groups: Vec<u8> = (0..n).map(|_| self.rng.random_range(0..sides)).collect();
            if groups.iter().all(|g| *g == groups[0]) {
                // A partition that splits nothing tests nothing.
                let moved = self.rng.random_range(0..n);
                groups[moved] = (groups[moved] + 1) % sides;
            }
            self.schedule(at, Ev::Partition { groups });
            let heal = at + self.rng.random_range(500..=8000);
            self.schedule(heal, Ev::Heal);
        }
        for node in 0..n {
            let at = self.rng.random_range(500..=3000);
            self.schedule(at, Ev::Truncate { node });
        }
        // Replacements leave at least two of the original ids, so some history stays live.
        for _ in 0..self.rng.random_range(0..=(n as u64 - 2).min(2)) {
            let at = self.rng.random_range(0..CHAOS_MS);
            let node = self.rng.random_range(0..n);
            self.schedule(at, Ev::Replace { node });
        }
        self.schedule(CHAOS_MS, Ev::Calm);
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.groups
            .as_ref()
            .is_none_or(|groups| groups[a] == groups[b])
    }

    fn start_core(&mut self, node: usize) -> Result<(), String> {
        let core_seed = self.rng.random();
        let now = self.instant();
        let replica = &self.replicas[node];
        let mut core = Gossip::new(
            replica.id,
            self.config.clone(),
            StdRng::seed_from_u64(core_seed),
            now,
            &replica.store,
        )
        .map_err(|e| fail(self.seed, format!("restart of {}: {e}", replica.id)))?;
        for other in self.replicas.iter().filter(|r| r.joined) {
            core.add_peer(other.id);
        }
        // The projection starts from the snapshot that stands for the log below its base.
        let mut projection = replica.snapshot.state.clone();
        replay(&replica.store, 16, |ops| project(&mut projection, &ops))
            .map_err(|e| fail(self.seed, format!("replay: {e}")))?;
        let applied = replica.store.frontier();
        let replica = &mut self.replicas[node];
        replica.projection = projection;
        replica.applied = applied;
        replica.core = Some(core);
        replica.tick_at = None;
        self.after_input(node)
    }

    /// Drains the core's outputs after an input, as the real driver does.
    fn after_input(&mut self, node: usize) -> Result<(), String> {
        let mut outgoing = Vec::new();
        let mut snapshots_needed = Vec::new();
        let replica = &mut self.replicas[node];
        let Some(core) = replica.core.as_mut() else {
            return Ok(());
        };
        while let Some(event) = core.poll_event() {
            if let Event::SnapshotNeeded { peer, base } = event {
                snapshots_needed.push((peer, base));
            } else if let Event::Applied { ops } = event {
                for op in &ops {
                    if !op.is_ready_for(&replica.applied) {
                        return Err(fail(
                            self.seed,
                            format!(
                                "{} was handed {} out of causal order or twice (applied {})",
                                replica.id, op.dot, replica.applied
                            ),
                        ));
                    }
                    replica.applied.raise(op.dot.origin, op.dot.seq);
                }
                project(&mut replica.projection, &ops);
            }
        }
        if core.buffered() > self.config.buffer_max_ops {
            return Err(fail(
                self.seed,
                format!("buffer holds {} ops", core.buffered()),
            ));
        }
        for (peer, base) in snapshots_needed {
            self.fetch_snapshot(node, peer, &base)?;
        }
        let replica = &mut self.replicas[node];
        let Some(core) = replica.core.as_mut() else {
            return Ok(());
        };
        if core.folds() != &replica.projection.folds {
            core.set_folds(replica.projection.folds.clone());
        }
        while let Some(transmit) = core.poll_transmit() {
            outgoing.push(transmit);
        }
        let deadline = core.poll_timeout();
        // Rounded up: a tick before the deadline would do nothing and schedule itself again.
        let at = deadline
            .saturating_duration_since(self.t0)
            .as_nanos()
            .div_ceil(1_000_000) as u64;
        let at = at.max(self.now_ms);
        if replica.tick_at.is_none_or(|scheduled| at < scheduled) {
            replica.tick_at = Some(at);
            self.schedule(at, Ev::Tick { node });
        }
        for transmit in outgoing {
            let quiet = self.converged && self.now_ms > self.quiet_from;
            if let GossipMessage::Frontier {
                frontier,
                folded: true,
                ..
            } = &transmit.message
            {
                self.stats.folded_frontiers += 1;
                // In sync, every retired origin is folded everywhere: what travels names the
                // live nodes only.
                if let Some((gone, _)) = frontier
                    .iter()
                    .find(|(origin, _)| quiet && self.retired_ids.contains(origin))
                {
                    return Err(fail(
                        self.seed,
                        format!("a folded frontier in sync still names retired {gone}: {frontier}"),
                    ));
                }
            }
            // Frontiers sent before convergence may still be in flight and rightly answered
            // with pages; the quiet window starts once they have all landed.
            if quiet {
                self.stats.quiet_messages += 1;
                if !transmit.message.ops().is_empty() {
                    self.stats.quiet_messages_with_ops += 1;
                }
            }
            let Some(to) = self.replicas.iter().position(|r| r.id == transmit.to) else {
                // A retired id this node has not heard of yet: its messages go nowhere.
                if self
                    .replicas
                    .iter()
                    .any(|r| r.retired.contains(&transmit.to))
                    || self.was_replaced(transmit.to)
                {
                    self.stats.dropped += 1;
                    continue;
                }
                return Err(fail(
                    self.seed,
                    format!("transmit to unknown node {}", transmit.to),
                ));
            };
            let sent_wall_ms = self.wall_ms(node);
            self.send(node, to, transmit.message.encode(), sent_wall_ms);
        }
        Ok(())
    }

    fn send(&mut self, from: usize, to: usize, mut bytes: Vec<u8>, sent_wall_ms: u64) {
        self.stats.messages += 1;
        if !self.connected(from, to) || self.rng.random_bool(self.faults.loss) {
            self.stats.dropped += 1;
            return;
        }
        if self.rng.random_bool(self.faults.corrupt) {
            if self.rng.random_bool(0.5) {
                bytes.truncate(self.rng.random_range(0..bytes.len()));
            } else {
                let len = self.rng.random_range(0..64);
                bytes = (0..len).map(|_| self.rng.random()).collect();
            }
        }
        let copies = if self.rng.random_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now_ms + self.rng.random_range(1..=self.faults.max_delay_ms);
            self.schedule(
                at,
                Ev::Deliver {
                    from,
                    from_id: self.replicas[from].id,
                    to,
                    bytes: bytes.clone(),
                    sent_wall_ms,
                },
            );
        }
    }

    fn step(&mut self, ev: Ev) -> Result<(), String> {
        match ev {
            Ev::Deliver {
                from,
                from_id,
                to,
                bytes,
                sent_wall_ms,
            } => {
                if !self.replicas[to].up() || !self.connected(from, to) {
                    self.stats.dropped += 1;
                    return Ok(());
                }
                let message = match GossipMessage::<Payload>::decode(&bytes) {
                    Ok(message) => message,
                    Err(_) => {
                        self.stats.decode_errors += 1;
                        return Ok(());
                    }
                };
                let now = self.instant();
                let wall_ms = self.wall_ms(to);
                let replica = &mut self.replicas[to];
                let core = replica.core.as_mut().expect("checked up above");
                core.handle_message(now, wall_ms, from_id, message, &replica.store)
                    .map_err(|e| {
                        fail(self.seed, format!("{} handling a message: {e}", replica.id))
                    })?;
                core.handle_clock(wall_ms, from_id, sent_wall_ms);
                self.after_input(to)
            }
            Ev::Tick { node } => {
                let replica = &mut self.replicas[node];
                if replica.tick_at != Some(self.now_ms) {
                    return Ok(());
                }
                replica.tick_at = None;
                let now = self.t0 + Duration::from_millis(self.now_ms);
                if let Some(core) = replica.core.as_mut() {
                    core.handle_tick(now, &replica.store);
                }
                self.after_input(node)
            }
            Ev::Write { node } => {
                let batch = self.rng.random_range(1..=3);
                let payloads: Vec<Payload> = (0..batch)
                    .map(|_| {
                        let key = format!("k{}", self.rng.random_range(0..8));
                        let value = self.rng.random_bool(0.9).then(|| self.rng.random());
                        (key, value)
                    })
                    .collect();
                let wall_ms =
                    EPOCH_MS.saturating_add_signed(self.replicas[node].clock_skew_ms) + self.now_ms;
                let replica = &mut self.replicas[node];
                let Some(core) = replica.core.as_mut() else {
                    return Ok(());
                };
                let ops = core
                    .append_local(wall_ms, payloads, &replica.store)
                    .map_err(|e| fail(self.seed, format!("local append: {e}")))?;
                self.stats.writes += ops.len() as u64;
                self.acked.extend(ops.iter().map(|op| op.dot));
                self.created
                    .extend(ops.iter().map(|op| (op.dot, op.clone())));
                self.after_input(node)
            }
            Ev::Crash { node } => {
                if self.replicas[node].core.take().is_some() {
                    self.stats.crashes += 1;
                    if self.rng.random_bool(0.5) {
                        let id = self.replicas[node].id;
                        for other in self.replicas.iter_mut().filter_map(|r| r.core.as_mut()) {
                            other.remove_peer(id);
                        }
                    }
                }
                Ok(())
            }
            Ev::Restart { node } => {
                if self.replicas[node].joined && !self.replicas[node].up() {
                    self.rejoin(node)?;
                }
                Ok(())
            }
            Ev::Join { node } => {
                self.replicas[node].joined = true;
                self.rejoin(node)
            }
            Ev::Truncate { node } => {
                self.fold_retired(node)?;
                self.truncate(node)?;
                if self.now_ms < CHAOS_MS + QUIET_DEADLINE_MS {
                    let next = self.now_ms + self.rng.random_range(500..=3000);
                    self.schedule(next, Ev::Truncate { node });
                }
                Ok(())
            }
            Ev::Replace { node } => self.replace(node),
            Ev::LearnRetired { node, retired } => {
                let replica = &mut self.replicas[node];
                replica.retired.insert(retired);
                if let Some(core) = replica.core.as_mut() {
                    core.remove_peer(retired);
                }
                Ok(())
            }
            Ev::Partition { groups } => {
                self.stats.partitions += 1;
                self.groups = Some(groups);
                Ok(())
            }
            Ev::Heal => {
                self.groups = None;
                Ok(())
            }
            Ev::Calm => {
                self.groups = None;
                self.faults = Faults {
                    loss: 0.0,
                    duplicate: 0.0,
                    corrupt: 0.0,
                    ..self.faults
                };
                for node in 0..self.replicas.len() {
                    if !self.replicas[node].up() {
                        self.replicas[node].joined = true;
                        self.rejoin(node)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Starts a node's core and makes every running peer know it.
    fn rejoin(&mut self, node: usize) -> Result<(), String> {
        let id = self.replicas[node].id;
        for other in self.replicas.iter_mut().filter_map(|r| r.core.as_mut()) {
            other.add_peer(id);
        }
        self.start_core(node)
    }

    /// Whether `id` belonged to a replica since wiped.
    fn was_replaced(&self, id: NodeId) -> bool {
        self.created.keys().any(|dot| dot.origin == id) && self.replicas.iter().all(|r| r.id != id)
    }

    /// The nodes `node` must wait for before truncating: every node it knows of (an origin in
    /// its log or a peer) and does not know to be retired, as a controller does.
    fn live_view(&self, node: usize) -> Vec<NodeId> {
        let replica = &self.replicas[node];
        let mut live: BTreeSet<NodeId> = replica.store.frontier().iter().map(|(o, _)| o).collect();
        if let Some(core) = &replica.core {
            live.extend(core.peers().map(|(peer, _)| peer));
        }
        live.retain(|id| !replica.retired.contains(id));
        live.into_iter().collect()
    }

    /// Writes a fold for every retired origin that every live node holds as far as this one
    /// does (past its current fold), as a controller's snapshot round does.
    fn fold_retired(&mut self, node: usize) -> Result<(), String> {
        let seed = self.seed;
        let live = self.live_view(node);
        let wall_ms = self.wall_ms(node);
        let replica = &mut self.replicas[node];
        let Some(core) = replica.core.as_mut() else {
            return Ok(());
        };
        let Some(stable) = core.stable_frontier(live, &replica.store) else {
            return Ok(());
        };
        let own = replica.store.frontier();
        let payloads: Vec<Payload> = replica
            .retired
            .iter()
            .filter(|gone| {
                let held = own.get(**gone);
                held > replica.projection.folds.get(**gone) && stable.get(**gone) == held
            })
            .map(|gone| {
                let held = u32::try_from(own.get(*gone).get()).expect("sim seqs are small");
                (format!("{FOLD_PREFIX}{}", gone.get()), Some(held))
            })
            .collect();
        if payloads.is_empty() {
            return Ok(());
        }
        let ops = core
            .append_local(wall_ms, payloads, &replica.store)
            .map_err(|e| fail(seed, format!("fold append: {e}")))?;
        self.stats.folds_made += ops.len() as u64;
        self.acked.extend(ops.iter().map(|op| op.dot));
        self.created
            .extend(ops.iter().map(|op| (op.dot, op.clone())));
        self.after_input(node)
    }

    /// Advances the node's snapshot to its stable frontier and truncates its log below it.
    fn truncate(&mut self, node: usize) -> Result<(), String> {
        let seed = self.seed;
        let live = self.live_view(node);
        let replica = &mut self.replicas[node];
        let Some(core) = &replica.core else {
            return Ok(());
        };
        let Some(mut target) = core.stable_frontier(live, &replica.store) else {
            return Ok(());
        };
        target.merge(&replica.snapshot.base.frontier);
        if target == replica.snapshot.base.frontier {
            return Ok(());
        }
        let mut snapshot = replica.snapshot.clone();
        loop {
            let page = read_causal_until(&replica.store, &snapshot.base.frontier, &target, 5)
                .map_err(|e| fail(seed, e))?;
            for op in &page.ops {
                snapshot.base.frontier.raise(op.dot.origin, op.dot.seq);
                snapshot.base.hlc = snapshot.base.hlc.max(op.hlc);
            }
            project(&mut snapshot.state, &page.ops);
            // An empty page that says "more" cannot advance: the target is not causally
            // closed (a misread peer frontier), which the check below reports with the seed.
            if !page.more || page.ops.is_empty() {
                break;
            }
        }
        if snapshot.base.frontier != target {
            return Err(fail(
                seed,
                format!(
                    "{} could not read its log up to its stable frontier {target}: reached {}",
                    replica.id, snapshot.base.frontier
                ),
            ));
        }
        let dropped = replica
            .store
            .rebase(&snapshot.base)
            .map_err(|e| fail(seed, e))?;
        self.stats.truncated_ops += dropped;
        replica.snapshot = snapshot;
        Ok(())
    }

    /// Installs `peer`'s snapshot on `node` if the peer is reachable and its snapshot covers
    /// `base` and everything `node`'s own base covers (else a later round asks again).
    fn fetch_snapshot(
        &mut self,
        node: usize,
        peer: NodeId,
        base: &VersionVector,
    ) -> Result<(), String> {
        let seed = self.seed;
        let Some(from) = self.replicas.iter().position(|r| r.id == peer) else {
            return Ok(());
        };
        if !self.replicas[from].up() || !self.connected(node, from) {
            return Ok(());
        }
        let snapshot = self.replicas[from].snapshot.clone();
        let replica = &mut self.replicas[node];
        if !snapshot.base.frontier.dominates(base)
            || !snapshot
                .base
                .frontier
                .dominates(&replica.snapshot.base.frontier)
            || replica.store.frontier().dominates(&snapshot.base.frontier)
        {
            return Ok(());
        }
        let now = self.t0 + Duration::from_millis(self.now_ms);
        let Some(core) = replica.core.as_mut() else {
            return Ok(());
        };
        core.install_snapshot(now, &snapshot.base, &replica.store)
            .map_err(|e| fail(seed, format!("{} installing a snapshot: {e}", replica.id)))?;
        // The projection now starts at the snapshot, then takes what the log holds beyond.
        replica.projection = snapshot.state.clone();
        replica.applied = snapshot.base.frontier.clone();
        loop {
            let page =
                read_causal(&replica.store, &replica.applied, 16).map_err(|e| fail(seed, e))?;
            for op in &page.ops {
                replica.applied.raise(op.dot.origin, op.dot.seq);
            }
            project(&mut replica.projection, &page.ops);
            if !page.more {
                break;
            }
        }
        replica.snapshot = snapshot;
        self.stats.snapshots_installed += 1;
        Ok(())
    }

    /// Wipes `node` and starts it again under a new id; the old id is retired, and each
    /// survivor learns of it at its own time.
    fn replace(&mut self, node: usize) -> Result<(), String> {
        let old = self.replicas[node].id;
        // What only the wiped node held is gone with it, whatever its origin.
        let wiped = self.replicas[node].store.frontier();
        let others: Vec<VersionVector> = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != node)
            .map(|(_, r)| r.store.frontier())
            .collect();
        self.destroyed.extend(
            self.acked
                .iter()
                .filter(|dot| wiped.contains(**dot) && !others.iter().any(|f| f.contains(**dot)))
                .copied(),
        );
        let fresh = NodeId::new(self.rng.random());
        let replica = &mut self.replicas[node];
        replica.id = fresh;
        replica.store = MemStore::new();
        replica.core = None;
        replica.projection = State::default();
        replica.snapshot = Snapshot::default();
        replica.applied = VersionVector::new();
        replica.retired.insert(old);
        replica.tick_at = None;
        self.retired_ids.insert(old);
        self.stats.replaced += 1;
        for other in 0..self.replicas.len() {
            if other != node {
                let at = self.now_ms + self.rng.random_range(0..=5_000);
                self.schedule(
                    at,
                    Ev::LearnRetired {
                        node: other,
                        retired: old,
                    },
                );
            }
        }
        if self.replicas[node].joined {
            self.rejoin(node)?;
        }
        Ok(())
    }

    /// Every replica up with the same log, knowing every retirement, and with every retired
    /// origin it holds folded as far as it holds it.
    fn converged(&self) -> bool {
        let mut frontiers = self.replicas.iter().map(|r| r.store.frontier());
        let first = frontiers.next().expect("at least two replicas");
        let folded = |r: &Replica| {
            self.retired_ids.is_subset(&r.retired)
                && self
                    .retired_ids
                    .iter()
                    .all(|gone| r.projection.folds.get(*gone) == r.store.frontier().get(*gone))
        };
        self.replicas.iter().all(Replica::up)
            && frontiers.all(|f| f == first)
            && self.replicas.iter().all(folded)
    }

    fn run(mut self) -> Result<Stats, String> {
        self.plan();
        let mut next_check = CHAOS_MS;
        let mut quiet_until = u64::MAX;
        let mut events = 0u64;
        let mut recent: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(Reverse(Scheduled { at, ev, .. })) = self.queue.pop() {
            events += 1;
            if events + 1000 > EVENT_BUDGET {
                *recent.entry(describe(&ev)).or_default() += 1;
            }
            if events > EVENT_BUDGET {
                return Err(fail(
                    self.seed,
                    format!(
                        "over {EVENT_BUDGET} events by virtual time {at} ms; the last thousand: {recent:?}"
                    ),
                ));
            }
            self.now_ms = at;
            if at > CHAOS_MS + QUIET_DEADLINE_MS {
                let frontiers: Vec<String> = self
                    .replicas
                    .iter()
                    .map(|r| {
                        let state = if r.up() { "up" } else { "down" };
                        format!("{} ({state}): {}", r.id, r.store.frontier())
                    })
                    .collect();
                return Err(fail(
                    self.seed,
                    format!("no convergence once quiet: {frontiers:?}"),
                ));
            }
            if self.converged && at > quiet_until {
                return self.check_quiet();
            }
            self.step(ev)?;
            if !self.converged && at >= next_check {
                next_check = at + 250;
                if self.converged() {
                    self.stats.converged_after_ms = at - CHAOS_MS;
                    self.check_final_state()?;
                    self.converged = true;
                    self.quiet_from = at + self.faults.max_delay_ms;
                    quiet_until = self.quiet_from + QUIET_WINDOW_MS;
                }
            }
        }
        Err(fail(
            self.seed,
            "the event queue ran dry before convergence",
        ))
    }

    /// Once in sync, replicas only exchange frontiers: two per round, nothing carrying ops.
    fn check_quiet(self) -> Result<Stats, String> {
        let seed = self.seed;
        if !self.converged() {
            return Err(fail(seed, "replicas drifted apart after converging"));
        }
        if self.stats.quiet_messages_with_ops > 0 {
            return Err(fail(
                seed,
                format!(
                    "{} messages carried operations between replicas already in sync",
                    self.stats.quiet_messages_with_ops
                ),
            ));
        }
        let min_interval = self.config.anti_entropy_interval.as_millis() as u64 / 2;
        let rounds_max = self.replicas.len() as u64 * (QUIET_WINDOW_MS / min_interval.max(1) + 1);
        if self.stats.quiet_messages > 2 * rounds_max {
            return Err(fail(
                seed,
                format!(
                    "{} messages in a quiet {QUIET_WINDOW_MS} ms, more than two per round ({rounds_max} rounds at most)",
                    self.stats.quiet_messages
                ),
            ));
        }
        // Every reading of a peer's clock is the true offset between the two clocks, read low
        // by the message's time in flight.
        for replica in &self.replicas {
            let Some(core) = &replica.core else {
                continue;
            };
            for (peer, status) in core.peers() {
                let (Some(offset_ms), Some(sender)) = (
                    status.clock_offset_ms,
                    self.replicas.iter().find(|r| r.id == peer),
                ) else {
                    continue;
                };
                let truth = sender.clock_skew_ms - replica.clock_skew_ms;
                let in_flight = truth - offset_ms;
                if !(0..=self.faults.max_delay_ms as i64).contains(&in_flight) {
                    return Err(fail(
                        seed,
                        format!(
                            "{} reads {peer}'s clock {offset_ms} ms off, but it is {truth} ms off",
                            replica.id
                        ),
                    ));
                }
            }
        }
        Ok(self.stats)
    }

    fn check_final_state(&self) -> Result<(), String> {
        let seed = self.seed;
        let frontier = self.replicas[0].store.frontier();
        for replica in &self.replicas {
            let base = replica.store.base().frontier;
            for (origin, head) in replica.store.frontier().iter() {
                let ops = replica
                    .store
                    .read(origin, Seq::new(1)..=head, usize::MAX)
                    .map_err(|e| fail(seed, e))?;
                if ops.len() as u64 != head.get() - base.get(origin).get() {
                    return Err(fail(
                        seed,
                        format!(
                            "{} holds a gappy log for {origin} above its base {base}",
                            replica.id
                        ),
                    ));
                }
                for op in ops {
                    if self.created.get(&op.dot) != Some(&op) {
                        return Err(fail(
                            seed,
                            format!("{} holds {} unlike the operation made", replica.id, op.dot),
                        ));
                    }
                }
            }
        }
        // Last-writer-wins must let a write beat everything it causally follows.
        for (dot, op) in &self.created {
            for (origin, seq) in op.deps.iter() {
                let past = self.created[&Dot::new(origin, seq)].hlc;
                if past >= op.hlc {
                    return Err(fail(
                        seed,
                        format!(
                            "{dot} stamped {}, not after {origin}:{seq} at {past}",
                            op.hlc
                        ),
                    ));
                }
            }
        }
        if let Some(lost) = self
            .acked
            .iter()
            .find(|dot| !frontier.contains(**dot) && !self.destroyed.contains(dot))
        {
            return Err(fail(
                seed,
                format!("acknowledged operation {lost} is missing"),
            ));
        }
        let mut expected = State::default();
        for (origin, head) in frontier.iter() {
            for seq in 1..=head.get() {
                let Some(op) = self.created.get(&Dot::new(origin, Seq::new(seq))) else {
                    return Err(fail(seed, format!("{origin}:{seq} was never made")));
                };
                project(&mut expected, std::slice::from_ref(op));
            }
        }
        for replica in &self.replicas {
            if replica.projection.map.digest() != expected.map.digest()
                || replica.projection.folds != expected.folds
            {
                return Err(fail(
                    seed,
                    format!(
                        "projection of {} differs from the operations made (snapshot base {})",
                        replica.id, replica.snapshot.base.frontier
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn describe(ev: &Ev) -> String {
    match ev {
        Ev::Deliver {
            from, to, bytes, ..
        } => {
            let kind = match GossipMessage::<Payload>::decode(bytes) {
                Ok(GossipMessage::Push { ops }) => format!("push of {}", ops.len()),
                Ok(GossipMessage::Page { ops, more }) => {
                    format!("page of {} more={more}", ops.len())
                }
                Ok(GossipMessage::Frontier { reply, .. }) => format!("frontier reply={reply}"),
                Ok(GossipMessage::Truncated { .. }) => "truncated".to_owned(),
                Err(_) => "garbage".to_owned(),
            };
            format!("{from}->{to} {kind}")
        }
        other => format!("{other:?}"),
    }
}

fn project(state: &mut State, ops: &[Op<Payload>]) {
    for op in ops {
        let (key, value) = op.payload.clone();
        if let (Some(origin), Some(seq)) = (key.strip_prefix(FOLD_PREFIX), value) {
            let origin = NodeId::new(origin.parse().expect("fold keys name an origin"));
            state.folds.raise(origin, Seq::new(seq.into()));
        }
        state.map.write(key, value, op.stamp());
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {value:?}")),
    )
}

/// Runs `count` seeds from `start` on every core; panics listing every failing seed.
fn sweep(start: u64, count: u64) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    let mut seed = start + worker;
                    while seed < start + count {
                        let outcome = std::panic::catch_unwind(|| Sim::new(seed).run())
                            .unwrap_or_else(|panic| {
                                let why = panic
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| {
                                        panic.downcast_ref::<&str>().map(|s| (*s).to_owned())
                                    })
                                    .unwrap_or_default();
                                Err(fail(seed, format!("panicked: {why}")))
                            });
                        if let Err(failure) = outcome {
                            failures.push(failure);
                        }
                        seed += workers;
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn replicas_converge_under_faults() {
    if let Some(seed) = env_u64("SIM_SEED") {
        let stats = Sim::new(seed)
            .run()
            .unwrap_or_else(|failure| panic!("{failure}"));
        println!("SIM_SEED={seed}: {stats:?}");
        return;
    }
    let start = env_u64("SIM_SEED_START").unwrap_or(0);
    sweep(start, env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS));
}

#[test]
#[ignore = "long: 10,000 seeds; run with --ignored"]
fn replicas_converge_under_faults_long() {
    sweep(env_u64("SIM_SEED_START").unwrap_or(1_000_000), 10_000);
}

#[test]
fn a_seed_replays_exactly() {
    let trace = |seed| {
        let stats = Sim::new(seed).run().unwrap();
        (
            stats.messages,
            stats.dropped,
            stats.decode_errors,
            stats.converged_after_ms,
        )
    };
    for seed in [3, 17, 42] {
        assert_eq!(trace(seed), trace(seed), "seed {seed} is not deterministic");
    }
}

/// Not a law of the world, a guard on the simulator: the sweep must really exercise faults.
#[test]
fn the_default_sweep_exercises_every_fault() {
    let mut total = Stats::default();
    let mut max_nodes = 0;
    for seed in 0..40 {
        let sim = Sim::new(seed);
        max_nodes = max_nodes.max(sim.replicas.len());
        let stats = sim.run().unwrap();
        total.crashes += stats.crashes;
        total.partitions += stats.partitions;
        total.decode_errors += stats.decode_errors;
        total.dropped += stats.dropped;
        total.writes += stats.writes;
        total.quiet_messages += stats.quiet_messages;
        total.truncated_ops += stats.truncated_ops;
        total.snapshots_installed += stats.snapshots_installed;
        total.replaced += stats.replaced;
        total.folds_made += stats.folds_made;
        total.folded_frontiers += stats.folded_frontiers;
    }
    assert!(
        total.truncated_ops > 1000 && total.snapshots_installed > 10 && total.replaced > 10,
        "truncation, snapshot installs and replacements must all happen: {total:?}"
    );
    assert!(
        total.folds_made > 10 && total.folded_frontiers > 100,
        "retired origins must be folded out of frontiers: {total:?}"
    );
    assert!(
        total.quiet_messages > 100,
        "the quiet window exchanged nothing: {total:?}"
    );
    assert_eq!(max_nodes, 7);
    assert!(total.crashes > 10 && total.partitions > 10, "{total:?}");
    assert!(
        total.decode_errors > 10 && total.dropped > 100 && total.writes > 1000,
        "{total:?}"
    );
}
