//! The log worker: one thread that owns the event log, the replication core and the read
//! model's writer. Async code talks to it through a bounded channel.
//!
//! Writes that arrive together are appended together: the worker drains every queued append
//! into one batch, so concurrent requests share one fsync. A request is answered only after
//! its operations are durable *and* projected, so the writer's next read sees them.
//!
//! A full disk (under the log or the read model) is a state, not a crash: the worker refuses
//! writes (507) and peers' operations (anti-entropy offers them again), keeps serving reads,
//! and every [`DISK_FULL_PROBE_INTERVAL`] looks for room; once there is, it reopens the log,
//! projects what the log holds beyond the read model and asks its peers for what it missed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use redcloud_eventlog::{
    ClockSkew, Event, FjallStore, Gossip, GossipConfig, GossipMessage, LogBase, LogStore, NodeId,
    Op, StoreError, Transmit, VersionVector, read_causal,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::WallClock;
use crate::cluster::Registry;
use crate::error::ApiError;
use crate::meta::MetaOp;
use crate::readmodel::{Projection, ReadModelError};
use crate::retired::Retired;
use crate::snapshot::{SnapshotNeeded, Snapshots};

/// Largest encoded operation the log takes. A gossip message carries up to
/// `GossipConfig::page_max_bytes` of operations plus at most one more, and the cluster
/// listener accepts messages of `crate::internal::GOSSIP_BODY_LIMIT_BYTES`: both together
/// stay within it, so every operation can reach every controller.
pub const MAX_OP_BYTES: usize = 8 * 1024 * 1024;

fn encoded_len(op: &MetaOp) -> usize {
    rmp_serde::to_vec(op).map_or(usize::MAX, |bytes| bytes.len())
}

/// Requests queued for the worker before senders wait.
const QUEUE_CAPACITY: usize = 1024;
/// Most queued appends folded into one batch.
const BATCH_MAX_REQUESTS: usize = 256;
/// Operations per page when bringing the read model up to the log.
const CATCH_UP_PAGE_OPS: usize = 4096;
/// Time between looks for room while the disk is full. Each look writes a probe file of about
/// a megabyte, or replays a page into the read model: cheap at this pace.
const DISK_FULL_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The exit code when the log can no longer be written (EX_SOFTWARE): the supervisor restarts
/// the node and fjall recovers its journal.
const EXIT_LOG_UNWRITABLE: i32 = 70;

/// A failure to start the worker.
#[derive(Debug, thiserror::Error)]
pub enum LogOpenError {
    /// The event log.
    #[error("event log: {0}")]
    Store(#[from] StoreError),
    /// The read model.
    #[error("read model: {0}")]
    ReadModel(#[from] ReadModelError),
}

impl From<CatchUpError> for LogOpenError {
    fn from(error: CatchUpError) -> Self {
        match error {
            CatchUpError::Log(error) => LogOpenError::Store(error),
            CatchUpError::ReadModel(error) => LogOpenError::ReadModel(error),
        }
    }
}

/// Why the read model could not be brought up to the log. Nothing is lost: the read model
/// keeps the frontier it applied, and the next catch-up starts from there.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    /// Reading the log failed.
    #[error("reading the event log: {0}")]
    Log(#[from] StoreError),
    /// Writing the read model failed.
    #[error("writing the read model: {0}")]
    ReadModel(#[from] ReadModelError),
}

impl CatchUpError {
    /// Whether the disk is full: the catch-up succeeds once there is room.
    pub fn is_disk_full(&self) -> bool {
        match self {
            CatchUpError::Log(error) => error.is_disk_full(),
            CatchUpError::ReadModel(error) => error.is_disk_full(),
        }
    }
}

/// The disk under the log or the read model is full: writes are refused until a probe finds
/// room again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFull {
    /// When it was found full, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// The same moment on the monotonic clock, to tell how long it has lasted.
    pub since: Instant,
    /// What refused to write, for operators.
    pub reason: String,
}

enum Command {
    Append {
        ops: Vec<MetaOp>,
        reply: oneshot::Sender<Result<VersionVector, ApiError>>,
    },
    Gossip {
        from: NodeId,
        /// The peer's wall clock when it sent the message, if it said.
        sent_wall_ms: Option<u64>,
        message: GossipMessage<MetaOp>,
    },
    PeerJoined(NodeId),
    SyncNow,
    PeerFrontiers {
        reply: oneshot::Sender<PeerFrontiers>,
    },
    ReadLog {
        known: VersionVector,
        max_ops: usize,
        reply: oneshot::Sender<Result<LogPage, ApiError>>,
    },
    StableFrontier {
        reply: oneshot::Sender<Option<VersionVector>>,
    },
    FoldsDue {
        reply: oneshot::Sender<VersionVector>,
    },
    InstallSnapshot {
        file: std::path::PathBuf,
        base: LogBase,
        digest: [u8; 32],
        reply: oneshot::Sender<Result<Option<LogBase>, ApiError>>,
    },
}

/// This node's frontier and how it sees each peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerFrontiers {
    /// The log's frontier (all projected).
    pub local: VersionVector,
    /// Where the log's history starts.
    pub base: VersionVector,
    /// Every peer.
    pub peers: BTreeMap<NodeId, PeerView>,
    /// This node's wall clock against its peers' (none before any peer sent its clock).
    pub clock: Option<ClockSkew>,
    /// Clocks further apart than this are worth a warning.
    pub clock_skew_warning: Duration,
}

/// How the replication core sees one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerView {
    /// How long ago it was last heard from.
    pub last_heard: Option<Duration>,
    /// Whether it is suspected of being down or cut off.
    pub suspected: bool,
    /// How long ago its newest frontier arrived, and what it held.
    pub report: Option<(Duration, VersionVector)>,
    /// Its wall clock minus this node's, in milliseconds, at its newest message that said.
    pub clock_offset_ms: Option<i64>,
    /// While this node refuses its operations for stamps too far ahead of the local clock:
    /// how far ahead the last refused one was, in milliseconds.
    pub refused_ahead_ms: Option<u64>,
}

/// A page of the log in causal order, for inspection tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The operations, causally ordered.
    pub ops: Vec<Op<MetaOp>>,
    /// Whether more remain beyond them.
    pub more: bool,
    /// Where the log's history starts: older operations are covered by its snapshot only.
    pub base: VersionVector,
}

/// A handle to the log worker.
#[derive(Clone)]
pub struct LogHandle {
    tx: mpsc::Sender<Command>,
    frontier: watch::Receiver<VersionVector>,
    disk_full: watch::Receiver<Option<DiskFull>>,
    retired: Arc<Retired>,
}

impl LogHandle {
    /// Sends the worker the command `make` builds around a reply channel, and waits for the
    /// answer.
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ApiError::internal("the log worker has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the log worker dropped a request"))
    }

    /// The frontier of the log (and of the read model, which the worker keeps up with it),
    /// updated after every batch.
    pub fn frontier(&self) -> watch::Receiver<VersionVector> {
        self.frontier.clone()
    }

    /// Whether, and since when, the disk is full.
    pub fn disk_full(&self) -> Option<DiskFull> {
        self.disk_full.borrow().clone()
    }

    /// Refuses (507) while the disk is full: for writes that would cost something before
    /// they reach the log, such as an upload's chunks.
    pub fn refuse_if_disk_full(&self) -> Result<(), ApiError> {
        match &*self.disk_full.borrow() {
            Some(full) => Err(ApiError::InsufficientStorage {
                since_unix_ms: full.since_unix_ms,
                recorded: false,
            }),
            None => Ok(()),
        }
    }

    /// Hands a peer's message, with its wall clock when it sent the message if it said, to
    /// the replication core; refused when the worker is saturated, since anti-entropy will
    /// bring the same operations again.
    pub fn gossip(
        &self,
        from: NodeId,
        sent_wall_ms: Option<u64>,
        message: GossipMessage<MetaOp>,
    ) -> Result<(), ApiError> {
        self.tx
            .try_send(Command::Gossip {
                from,
                sent_wall_ms,
                message,
            })
            .map_err(|_| {
                ApiError::ChunkserverUnavailable("the log is busy; gossip later".to_owned())
            })
    }

    /// Starts replicating with a newly found peer.
    pub async fn peer_joined(&self, peer: NodeId) {
        let _ = self.tx.send(Command::PeerJoined(peer)).await;
    }

    /// Starts an anti-entropy round with every live peer now.
    pub fn sync_now(&self) {
        let _ = self.tx.try_send(Command::SyncNow);
    }

    /// Appends `ops` durably and projects them; returns the frontier that includes them. An
    /// operation larger than [`MAX_OP_BYTES`] is refused before anything is written: it could
    /// never travel to another controller.
    pub async fn append(&self, ops: Vec<MetaOp>) -> Result<VersionVector, ApiError> {
        if self.retired.me() {
            return Err(ApiError::Retired);
        }
        if let Some(size) = ops
            .iter()
            .map(encoded_len)
            .find(|size| *size > MAX_OP_BYTES)
        {
            tracing::warn!(
                size,
                "refused an operation larger than a gossip message allows"
            );
            return Err(ApiError::PayloadTooLarge {
                what: "metadata operation",
                limit: MAX_OP_BYTES as u64,
            });
        }
        self.request(|reply| Command::Append { ops, reply }).await?
    }

    /// This node's frontier and what each peer last reported of its own.
    pub async fn peer_frontiers(&self) -> Result<PeerFrontiers, ApiError> {
        self.request(|reply| Command::PeerFrontiers { reply }).await
    }

    /// Up to `max_ops` operations the holder of `known` lacks, in causal order.
    pub async fn read_log(
        &self,
        known: VersionVector,
        max_ops: usize,
    ) -> Result<LogPage, ApiError> {
        self.request(|reply| Command::ReadLog {
            known,
            max_ops,
            reply,
        })
        .await?
    }

    /// The frontier every live controller is known to have reached (`None` while one has not
    /// reported yet).
    pub async fn stable_frontier(&self) -> Result<Option<VersionVector>, ApiError> {
        self.request(|reply| Command::StableFrontier { reply })
            .await
    }

    /// Folds the retired controllers whose operations every live controller holds as far as
    /// this one does (beyond their current fold) out of the frontiers that travel: appends an
    /// `OriginsFolded` naming them. Returns what it folded (empty: nothing was due).
    pub async fn fold_retired(&self) -> Result<VersionVector, ApiError> {
        let due = self.request(|reply| Command::FoldsDue { reply }).await?;
        if !due.is_empty() {
            self.append(vec![MetaOp::OriginsFolded {
                folded: due.clone(),
            }])
            .await?;
        }
        Ok(due)
    }

    /// Starts this controller from the downloaded snapshot in `file` (at `base`, with
    /// `digest`, which is checked): the read model becomes the snapshot plus what the log
    /// holds beyond it, and the log starts at it. `None` when the log had caught up meanwhile.
    pub async fn install_snapshot(
        &self,
        file: std::path::PathBuf,
        base: LogBase,
        digest: [u8; 32],
    ) -> Result<Option<LogBase>, ApiError> {
        self.request(|reply| Command::InstallSnapshot {
            file,
            base,
            digest,
            reply,
        })
        .await?
    }
}

/// What the worker shares with the rest of the controller.
pub struct Shared {
    /// Chunkservers learned from the log are handed here.
    pub registry: Arc<Registry>,
    /// Appended operations are counted here.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Stamps operations and gossip.
    pub clock: WallClock,
    /// Retired controllers learned from the log are recorded here.
    pub retired: Arc<Retired>,
    /// The snapshot this controller serves, and where snapshots are installed from.
    pub snapshots: Arc<Snapshots>,
    /// Peers' snapshots this controller needs are asked for here.
    pub snapshot_needed: mpsc::Sender<SnapshotNeeded>,
}

/// Opens the log and the read model under `data_dir`, brings the read model up to the log
/// (rebuilding it from scratch, or from the snapshot where the log was truncated, when it was
/// deleted), and starts the worker thread. The thread stops when every handle is dropped.
/// Returns the handle and the log, which the snapshotter reads and truncates.
pub fn start(
    data_dir: &Path,
    node_id: NodeId,
    gossip: GossipConfig,
    shared: Shared,
    outbound: mpsc::Sender<Transmit<MetaOp>>,
    runtime: tokio::runtime::Handle,
) -> Result<(LogHandle, Arc<FjallStore<MetaOp>>), LogOpenError> {
    let store = Arc::new(FjallStore::<MetaOp>::open(&data_dir.join("log"))?);
    let mut projection = Projection::open(&data_dir.join("readmodel.sqlite"))?;
    let base = LogStore::<MetaOp>::base(store.as_ref());
    if !projection.applied().dominates(&base.frontier) {
        // The read model was lost or is of another format, and the log starts at a snapshot:
        // the read model starts there too.
        let Some(snapshot) = shared
            .snapshots
            .current()
            .filter(|s| s.base.frontier.dominates(&base.frontier))
        else {
            return Err(LogOpenError::ReadModel(ReadModelError::Corrupt {
                what: "read model",
                reason: format!(
                    "the log starts at {} and no snapshot in the data directory covers it; start this controller on an empty data directory to fetch one from a peer",
                    base.frontier
                ),
            }));
        };
        tracing::info!(snapshot = %snapshot.path.display(), "rebuilding the read model from the snapshot and the log");
        projection.install(&snapshot.path, &snapshot.digest)?;
    }
    let clock = shared.clock;
    // A read model that cannot catch up for lack of room still serves what it has: the node
    // starts with its disk full and catches up once there is room.
    let disk_full = match catch_up(store.as_ref(), &mut projection) {
        Ok(()) => None,
        Err(error) if error.is_disk_full() => Some(DiskFull {
            since_unix_ms: clock.now_ms(),
            since: Instant::now(),
            reason: error.to_string(),
        }),
        Err(error) => return Err(error.into()),
    };
    let core = Gossip::new(
        node_id,
        gossip,
        StdRng::from_os_rng(),
        Instant::now(),
        store.as_ref(),
    )?;
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let (frontier_tx, frontier) = watch::channel(projection.applied().clone());
    let (disk_full_tx, disk_full_rx) = watch::channel(None);
    let mut worker = Worker {
        store: Arc::clone(&store),
        core,
        projection,
        rx,
        registry: shared.registry,
        metrics: shared.metrics,
        clock,
        retired: Arc::clone(&shared.retired),
        snapshots: shared.snapshots,
        snapshot_needed: shared.snapshot_needed,
        me: node_id,
        outbound,
        frontier: frontier_tx,
        disk_full: None,
        disk_full_tx,
        runtime,
    };
    if let Some(full) = disk_full {
        worker.enter_disk_full(full);
    }
    std::thread::Builder::new()
        .name("log-worker".to_owned())
        .spawn(move || worker.run())
        .map_err(|e| {
            LogOpenError::ReadModel(ReadModelError::Corrupt {
                what: "log worker thread",
                reason: e.to_string(),
            })
        })?;
    let handle = LogHandle {
        tx,
        frontier,
        disk_full: disk_full_rx,
        retired: shared.retired,
    };
    Ok((handle, store))
}

/// Projects whatever the log holds beyond what the read model has applied, page by page in
/// causal order from the read model's frontier: each page is one transaction, so a failure
/// keeps the pages before it and the next call resumes after them.
fn catch_up(store: &FjallStore<MetaOp>, projection: &mut Projection) -> Result<(), CatchUpError> {
    let log_frontier = LogStore::<MetaOp>::frontier(store);
    let behind = log_frontier.count_missing_from(projection.applied());
    if behind == 0 {
        return Ok(());
    }
    tracing::info!(operations = behind, "bringing the read model up to the log");
    let started = Instant::now();
    loop {
        let page = read_causal(store, projection.applied(), CATCH_UP_PAGE_OPS)?;
        if page.ops.is_empty() {
            break;
        }
        projection.apply(&page.ops)?;
        if !page.more {
            break;
        }
    }
    tracing::info!(
        operations = behind,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "read model caught up"
    );
    Ok(())
}

/// Operations waiting to be appended, and where to send the outcome.
type PendingAppend = (
    Vec<MetaOp>,
    oneshot::Sender<Result<VersionVector, ApiError>>,
);

struct Worker {
    store: Arc<FjallStore<MetaOp>>,
    core: Gossip<MetaOp, StdRng>,
    projection: Projection,
    rx: mpsc::Receiver<Command>,
    registry: Arc<Registry>,
    metrics: Arc<crate::metrics::Metrics>,
    clock: WallClock,
    retired: Arc<Retired>,
    snapshots: Arc<Snapshots>,
    snapshot_needed: mpsc::Sender<SnapshotNeeded>,
    me: NodeId,
    outbound: mpsc::Sender<Transmit<MetaOp>>,
    frontier: watch::Sender<VersionVector>,
    /// Set while the disk is full, with when to look for room next.
    disk_full: Option<(DiskFull, Instant)>,
    /// Publishes `disk_full` to the front ends.
    disk_full_tx: watch::Sender<Option<DiskFull>>,
    /// Used only to wait for the next command with a deadline; the worker never runs async
    /// code of its own.
    runtime: tokio::runtime::Handle,
}

/// How a batch of local appends ended.
enum BatchOutcome {
    /// Durable and projected, up to this frontier.
    Stored(VersionVector),
    /// The disk is full.
    DiskFull {
        /// Since when, in milliseconds since the Unix epoch.
        since_unix_ms: u64,
        /// Whether the batch is durable in the log all the same (the read model ran out of
        /// room): it reaches the peers now and shows here once there is room.
        recorded: bool,
    },
    /// Anything else, for the log.
    Failed(String),
}

impl BatchOutcome {
    fn answer(&self) -> Result<VersionVector, ApiError> {
        match self {
            BatchOutcome::Stored(frontier) => Ok(frontier.clone()),
            BatchOutcome::DiskFull {
                since_unix_ms,
                recorded,
            } => Err(ApiError::InsufficientStorage {
                since_unix_ms: *since_unix_ms,
                recorded: *recorded,
            }),
            BatchOutcome::Failed(error) => Err(ApiError::internal(error)),
        }
    }
}

/// Logs `error` and exits, so the supervisor restarts the node (fjall recovers its journal).
fn exit_log_unwritable(error: &StoreError) -> ! {
    tracing::error!(%error, "the event log can no longer be written; exiting so the node restarts");
    std::process::exit(EXIT_LOG_UNWRITABLE);
}

impl Worker {
    fn run(mut self) {
        // Chunkservers learned from the log get lazily connected channels, which need the
        // runtime's context even though this thread runs no async code of its own.
        let runtime = self.runtime.clone();
        let _context = runtime.enter();
        loop {
            let mut wake = self.core.poll_timeout();
            if let Some((_, probe_at)) = &self.disk_full {
                wake = wake.min(*probe_at);
            }
            let deadline = tokio::time::Instant::from_std(wake);
            let next = self
                .runtime
                .block_on(async { tokio::time::timeout_at(deadline, self.rx.recv()).await });
            match next {
                Ok(Some(first)) => {
                    self.probe_if_due();
                    self.handle_commands(first);
                }
                Ok(None) => break,
                Err(_) => {
                    self.probe_if_due();
                    self.core.handle_tick(Instant::now(), self.store.as_ref());
                }
            }
            self.project_events();
            self.send_transmits();
        }
        tracing::info!("log worker stopped");
    }

    /// Handles `first` and every command already queued behind it; appends are batched.
    fn handle_commands(&mut self, first: Command) {
        let mut appends: Vec<PendingAppend> = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Append { ops, reply } => appends.push((ops, reply)),
                Command::Gossip {
                    from,
                    sent_wall_ms,
                    message,
                } => self.take_gossip(from, sent_wall_ms, message),
                Command::PeerJoined(peer) => {
                    self.core.add_peer(peer);
                    self.core.sync_now(Instant::now(), self.store.as_ref());
                }
                Command::SyncNow => self.core.sync_now(Instant::now(), self.store.as_ref()),
                Command::PeerFrontiers { reply } => {
                    let _ = reply.send(self.peer_frontiers());
                }
                Command::ReadLog {
                    known,
                    max_ops,
                    reply,
                } => {
                    let base = LogStore::<MetaOp>::base(self.store.as_ref()).frontier;
                    let page = read_causal(self.store.as_ref(), &known, max_ops)
                        .map(|page| LogPage {
                            ops: page.ops,
                            more: page.more,
                            base,
                        })
                        .map_err(ApiError::internal);
                    let _ = reply.send(page);
                }
                Command::StableFrontier { reply } => {
                    let _ = reply.send(self.stable_frontier());
                }
                Command::FoldsDue { reply } => {
                    let _ = reply.send(self.folds_due());
                }
                Command::InstallSnapshot {
                    file,
                    base,
                    digest,
                    reply,
                } => {
                    let _ = reply.send(self.install_snapshot(&file, &base, &digest));
                }
            }
            if appends.len() < BATCH_MAX_REQUESTS {
                next = self.rx.try_recv().ok();
            }
        }
        if !appends.is_empty() {
            self.append_batch(appends);
        }
    }

    /// Hands a peer's message to the core, then its clock. While the disk is full a message
    /// carrying operations is dropped: anti-entropy offers them again once there is room.
    fn take_gossip(
        &mut self,
        from: NodeId,
        sent_wall_ms: Option<u64>,
        message: GossipMessage<MetaOp>,
    ) {
        let (now, wall_ms) = (Instant::now(), self.clock.now_ms());
        if self.disk_full.is_some() && !message.ops().is_empty() {
            // Even where the log might still find a few bytes (the read model may be what ran
            // out): nothing is appended and no frontier moves until a probe finds room.
            tracing::debug!(peer = %from, "disk full: a peer's operations are left for anti-entropy");
        } else {
            let taken = self
                .core
                .handle_message(now, wall_ms, from, message, self.store.as_ref());
            match taken {
                Ok(()) => {}
                Err(error) if error.is_disk_full() => {
                    tracing::debug!(peer = %from, "disk full: a peer's operations are left for anti-entropy");
                    self.disk_full_found(&error);
                }
                Err(error) if error.is_fatal() => exit_log_unwritable(&error),
                Err(error) => {
                    tracing::warn!(%error, peer = %from, "could not take in a peer's operations");
                }
            }
        }
        if let Some(sent_wall_ms) = sent_wall_ms {
            self.core.handle_clock(wall_ms, from, sent_wall_ms);
        }
    }

    /// The frontier every live controller has reached: live are the controllers this one
    /// knows (origins in its log, and peers) and has not seen retired.
    fn stable_frontier(&self) -> Option<VersionVector> {
        let retired = self.retired.controllers();
        let mut live: std::collections::BTreeSet<NodeId> =
            LogStore::<MetaOp>::frontier(self.store.as_ref())
                .iter()
                .map(|(origin, _)| origin)
                .collect();
        live.extend(self.core.peers().map(|(peer, _)| peer));
        live.retain(|node| !retired.contains(node));
        self.core.stable_frontier(live, self.store.as_ref())
    }

    /// The retired controllers every live controller holds as far as this log does, where
    /// that is beyond their fold, at that seq.
    fn folds_due(&self) -> VersionVector {
        let Some(stable) = self.stable_frontier() else {
            return VersionVector::new();
        };
        let held = LogStore::<MetaOp>::frontier(self.store.as_ref());
        self.retired
            .controllers()
            .into_iter()
            .map(|gone| (gone, held.get(gone)))
            .filter(|(gone, seq)| {
                *seq > self.projection.folds().get(*gone) && stable.get(*gone) == *seq
            })
            .collect()
    }

    /// Installs a peer's snapshot (see [`LogHandle::install_snapshot`]). It must cover this
    /// log's base (whatever the log no longer holds must be in the new read model), and the
    /// read model checks its digest before anything changes.
    fn install_snapshot(
        &mut self,
        file: &Path,
        claimed: &LogBase,
        digest: &[u8; 32],
    ) -> Result<Option<LogBase>, ApiError> {
        let store = Arc::clone(&self.store);
        let store = store.as_ref();
        if LogStore::<MetaOp>::frontier(store).dominates(&claimed.frontier) {
            return Ok(None);
        }
        // What the file says it is, checked before anything changes: its position must be
        // what the peer announced, and cover whatever this log no longer holds.
        let position = crate::readmodel::snapshot_position(file)
            .map_err(|e| ApiError::InvalidRequest(format!("snapshot refused: {e}")))?;
        if position != *claimed {
            return Err(ApiError::InvalidRequest(format!(
                "the snapshot is at {}, not at {} as announced",
                position.frontier, claimed.frontier
            )));
        }
        let own_base = LogStore::<MetaOp>::base(store);
        if !position.frontier.dominates(&own_base.frontier) {
            return Err(ApiError::InvalidRequest(format!(
                "the snapshot at {} does not cover this log's base {}",
                position.frontier, own_base.frontier
            )));
        }
        if let Some((full, _)) = &self.disk_full {
            return Err(ApiError::InsufficientStorage {
                since_unix_ms: full.since_unix_ms,
                recorded: false,
            });
        }
        self.projection
            .install(file, digest)
            .map_err(|e| ApiError::InvalidRequest(format!("snapshot refused: {e}")))?;
        // Published before the log starts at it, so a crash in between leaves a snapshot that
        // covers the log's base.
        self.snapshots
            .publish(file, position.clone(), *digest, self.clock.now_ms())
            .map_err(ApiError::internal)?;
        let installed = self.core.install_snapshot(Instant::now(), &position, store);
        match installed {
            Ok(()) => {}
            Err(error) if error.is_disk_full() => self.disk_full_found(&error),
            Err(error) if error.is_fatal() => exit_log_unwritable(&error),
            Err(error) => return Err(ApiError::internal(error)),
        }
        if let Err(error) = catch_up(store, &mut self.projection) {
            tracing::warn!(%error, "catching the read model up after a snapshot install failed; retrying with the next batch");
        }
        self.learn_from_read_model();
        self.project_events();
        Ok(Some(position))
    }

    /// Takes in the nodes the read model lists (after a snapshot replaced it).
    fn learn_from_read_model(&mut self) {
        let learned = self
            .projection
            .read(|r| Ok((r.chunkservers()?, r.retired()?)));
        match learned {
            Ok((chunkservers, retired)) => {
                for (id, address) in &chunkservers {
                    self.registry.learn(id, address);
                }
                self.retired.learn(&retired);
                for node in self.retired.controllers() {
                    self.core.remove_peer(node);
                }
            }
            Err(error) => tracing::warn!(%error, "could not read the nodes a snapshot lists"),
        }
    }

    fn peer_frontiers(&self) -> PeerFrontiers {
        let now = Instant::now();
        let peers = self
            .core
            .peers()
            .map(|(peer, status)| {
                let view = PeerView {
                    last_heard: status
                        .last_heard
                        .map(|at| now.saturating_duration_since(at)),
                    suspected: status.suspected,
                    report: status.reported_frontier.as_ref().map(|(at, frontier)| {
                        (now.saturating_duration_since(*at), frontier.clone())
                    }),
                    clock_offset_ms: status.clock_offset_ms,
                    refused_ahead_ms: status.refused.map(|refusal| refusal.ahead_ms),
                };
                (peer, view)
            })
            .collect();
        PeerFrontiers {
            local: self.projection.applied().clone(),
            base: LogStore::<MetaOp>::base(self.store.as_ref()).frontier,
            peers,
            clock: self.core.clock_skew(),
            clock_skew_warning: self.core.config().clock_skew_warning,
        }
    }

    /// Hands the core's messages to the sender; when it is saturated they are dropped, and
    /// anti-entropy repeats whatever mattered.
    fn send_transmits(&mut self) {
        while let Some(transmit) = self.core.poll_transmit() {
            if let GossipMessage::Frontier { frontier, .. } = &transmit.message {
                self.metrics
                    .gossip_frontier_origins
                    .set(frontier.origin_count() as i64);
            }
            if self.outbound.try_send(transmit).is_err() {
                tracing::debug!("gossip sender saturated; message dropped");
            }
        }
    }

    fn append_batch(&mut self, appends: Vec<PendingAppend>) {
        let outcome = self.append_local(&appends);
        for (_, reply) in appends {
            let _ = reply.send(outcome.answer());
        }
    }

    /// Appends the batch's operations and projects them; refuses at once while the disk is
    /// full (the periodic probe, not every write, looks for room).
    fn append_local(&mut self, appends: &[PendingAppend]) -> BatchOutcome {
        if self.disk_full.is_some() {
            return self.disk_full_outcome(false);
        }
        let payloads: Vec<MetaOp> = appends
            .iter()
            .flat_map(|(ops, _)| ops.iter().cloned())
            .collect();
        let appended = self
            .core
            .append_local(self.clock.now_ms(), payloads, self.store.as_ref());
        let ops = match appended {
            Ok(ops) => ops,
            Err(error) if error.is_disk_full() => {
                self.disk_full_found(&error);
                return self.disk_full_outcome(false);
            }
            Err(error) if error.is_fatal() => exit_log_unwritable(&error),
            Err(error) => return BatchOutcome::Failed(error.to_string()),
        };
        self.project_events();
        if ops
            .iter()
            .all(|op| self.projection.applied().contains(op.dot))
        {
            BatchOutcome::Stored(LogStore::<MetaOp>::frontier(self.store.as_ref()))
        } else if self.disk_full.is_some() {
            self.disk_full_outcome(true)
        } else {
            BatchOutcome::Failed("the read model could not project the batch".to_owned())
        }
    }

    /// The outcome of a batch that met a full disk; `recorded` if the log took it all the same.
    fn disk_full_outcome(&self, recorded: bool) -> BatchOutcome {
        match &self.disk_full {
            Some((full, _)) => BatchOutcome::DiskFull {
                since_unix_ms: full.since_unix_ms,
                recorded,
            },
            None => BatchOutcome::Failed("the disk was full".to_owned()),
        }
    }

    /// Enters the disk-full state (if not in it yet) for `error`.
    fn disk_full_found(&mut self, error: &dyn std::fmt::Display) {
        if self.disk_full.is_none() {
            self.enter_disk_full(DiskFull {
                since_unix_ms: self.clock.now_ms(),
                since: Instant::now(),
                reason: error.to_string(),
            });
        }
    }

    fn enter_disk_full(&mut self, full: DiskFull) {
        tracing::error!(
            reason = %full.reason,
            "disk full: refusing writes and peers' operations until space is freed in the data directory; reads go on"
        );
        self.disk_full_tx.send_replace(Some(full.clone()));
        self.disk_full = Some((full, Instant::now() + DISK_FULL_PROBE_INTERVAL));
    }

    /// While the disk is full and a look is due: reopens the log if it halted, then brings
    /// the read model up to it. Both succeed only with room to write, so together they are
    /// the probe; on success writes resume and every peer is asked for what this node missed.
    fn probe_if_due(&mut self) {
        let now = Instant::now();
        let Some((full, probe_at)) = &mut self.disk_full else {
            return;
        };
        if now < *probe_at {
            return;
        }
        *probe_at = now + DISK_FULL_PROBE_INTERVAL;
        let lasted_ms = now.saturating_duration_since(full.since).as_millis() as u64;
        match self.store.resume() {
            Ok(()) => {}
            Err(error) if error.is_disk_full() => return,
            Err(error) => exit_log_unwritable(&error),
        }
        if let Err(error) = catch_up(self.store.as_ref(), &mut self.projection) {
            if !error.is_disk_full() {
                tracing::error!(%error, "the read model cannot catch up with the log");
            }
            return;
        }
        tracing::info!(
            lasted_ms,
            "space is free again: writes and peers' operations resume"
        );
        self.disk_full = None;
        self.disk_full_tx.send_replace(None);
        self.core.sync_now(now, self.store.as_ref());
    }

    /// Hands what an applied operation says about the cluster's nodes to those who act on it.
    fn learn_membership(&mut self, op: &MetaOp) {
        match op {
            MetaOp::ChunkserverSeen { node_id, address } => self.registry.learn(node_id, address),
            MetaOp::ChunkserverRetired { node_id, reason } if self.registry.forget(node_id) => {
                tracing::info!(chunkserver = %node_id, %reason, "chunkserver retired");
            }
            MetaOp::ControllerRetired { node_id, reason } => {
                let Ok(node) = node_id.parse::<NodeId>() else {
                    return;
                };
                self.core.remove_peer(node);
                if self.retired.retire(node) {
                    if node == self.me {
                        tracing::error!(%reason, "this controller was retired from the cluster: it takes no more writes; restart it on an empty data directory to rejoin under a new id");
                    } else {
                        tracing::info!(controller = %node, %reason, "controller retired");
                    }
                }
            }
            _ => {}
        }
    }

    /// Projects every applied operation the core reports, then fills any gap between the
    /// read model and the log from the log (unless the disk is full: the probe does that).
    fn project_events(&mut self) {
        let mut applied: Vec<Op<MetaOp>> = Vec::new();
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Applied { ops } => {
                    let local = ops.iter().filter(|op| op.dot.origin == self.me).count();
                    for (source, count) in [("local", local), ("peer", ops.len() - local)] {
                        if count > 0 {
                            self.metrics
                                .log_appended
                                .get_or_create(&crate::metrics::SourceLabels { source })
                                .inc_by(count as u64);
                        }
                    }
                    for op in &ops {
                        self.learn_membership(&op.payload);
                    }
                    applied.extend(ops);
                }
                Event::SnapshotNeeded { peer, base } => {
                    if self.snapshot_needed.try_send((peer, base)).is_ok() {
                        tracing::info!(%peer, "a peer truncated operations this controller lacks: fetching its snapshot");
                    }
                }
                Event::PeerSuspected { peer } => tracing::warn!(%peer, "peer suspected"),
                Event::PeerRecovered { peer } => tracing::info!(%peer, "peer answers again"),
                Event::BufferOverflow { dropped } => {
                    tracing::debug!(%dropped, "out-of-order buffer full")
                }
                // Reported per operation and offered again every round: the skew events below
                // and `/status` say it once.
                Event::ClockAhead { dot, ahead_ms } => {
                    tracing::debug!(%dot, ahead_ms, "operation stamped far ahead of this clock; held until the clock catches up");
                }
                Event::PeerClockSkewed { peer, offset_ms } => {
                    let refused = offset_ms.unsigned_abs()
                        > self.core.config().max_clock_drift.as_millis() as u64;
                    let consequence = match (offset_ms > 0, refused) {
                        (true, true) => "its operations are refused until this clock catches up",
                        (false, true) => {
                            "it refuses this node's operations until its clock catches up"
                        }
                        (_, false) => "fix the time source (NTP) before operations are refused",
                    };
                    tracing::warn!(%peer, offset_ms, consequence, "a peer's clock differs from this one");
                }
                Event::PeerClockAgrees { peer, offset_ms } => {
                    tracing::info!(%peer, offset_ms, "a peer's clock agrees with this one again");
                }
            }
        }
        if let Err(error) = self.projection.apply(&applied) {
            if error.is_disk_full() {
                self.disk_full_found(&error);
            } else {
                tracing::warn!(%error, "projection failed; catching up from the log");
            }
        }
        // Whatever went wrong before (or now), the log has the truth: fill any gap from it.
        let log_frontier = LogStore::<MetaOp>::frontier(self.store.as_ref());
        if self.disk_full.is_none()
            && log_frontier.count_missing_from(self.projection.applied()) > 0
            && let Err(error) = catch_up(self.store.as_ref(), &mut self.projection)
        {
            if error.is_disk_full() {
                self.disk_full_found(&error);
            } else {
                tracing::error!(%error, "projection failed; retrying from the log with the next write");
            }
        }
        if self.core.folds() != self.projection.folds() {
            self.core.set_folds(self.projection.folds().clone());
        }
        self.frontier.send_if_modified(|published| {
            let changed = published != self.projection.applied();
            if changed {
                published.clone_from(self.projection.applied());
            }
            changed
        });
    }
}
