//! The log worker: one thread that owns the event log, the replication core and the read
//! model's writer. Async code talks to it through a bounded channel.
//!
//! Writes that arrive together are appended together: the worker drains every queued append
//! into one batch, so concurrent requests share one fsync. A request is answered only after
//! its operations are durable *and* projected, so the writer's next read sees them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;

use redcloud_eventlog::{
    Event, FjallStore, Gossip, GossipConfig, GossipMessage, LogStore, NodeId, Op, Transmit,
    VersionVector, read_causal, replay,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::Registry;

use crate::error::ApiError;
use crate::meta::MetaOp;
use crate::readmodel::{Projection, ReadModelError};
use crate::retired::Retired;

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
/// Operations per page when replaying the log into a fresh read model.
const REPLAY_PAGE_OPS: usize = 4096;

/// A failure to start the worker.
#[derive(Debug, thiserror::Error)]
pub enum LogOpenError {
    /// The event log.
    #[error("event log: {0}")]
    Store(#[from] redcloud_eventlog::StoreError),
    /// The read model.
    #[error("read model: {0}")]
    ReadModel(#[from] ReadModelError),
}

enum Command {
    Append {
        ops: Vec<MetaOp>,
        reply: oneshot::Sender<Result<VersionVector, ApiError>>,
    },
    Snapshot {
        reply: oneshot::Sender<Result<LogSnapshot, ApiError>>,
    },
    Gossip {
        from: NodeId,
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
}

/// This node's frontier and how it sees each peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerFrontiers {
    /// The log's frontier (all projected).
    pub local: VersionVector,
    /// Every peer.
    pub peers: BTreeMap<NodeId, PeerView>,
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
}

/// A page of the log in causal order, for inspection tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The operations, causally ordered.
    pub ops: Vec<Op<MetaOp>>,
    /// Whether more remain beyond them.
    pub more: bool,
}

/// The log's frontier and the read model's digest, taken together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSnapshot {
    /// Operations in the log (all projected: the worker projects before it answers).
    pub frontier: VersionVector,
    /// The canonical digest of the read model.
    pub digest: [u8; 32],
}

/// A handle to the log worker.
#[derive(Clone)]
pub struct LogHandle {
    tx: mpsc::Sender<Command>,
    frontier: watch::Receiver<VersionVector>,
    retired: Arc<Retired>,
}

impl LogHandle {
    /// The frontier of the log (and of the read model, which the worker keeps up with it),
    /// updated after every batch.
    pub fn frontier(&self) -> watch::Receiver<VersionVector> {
        self.frontier.clone()
    }

    /// Hands a peer's message to the replication core; refused when the worker is saturated,
    /// since anti-entropy will bring the same operations again.
    pub fn gossip(&self, from: NodeId, message: GossipMessage<MetaOp>) -> Result<(), ApiError> {
        self.tx
            .try_send(Command::Gossip { from, message })
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
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Append { ops, reply })
            .await
            .map_err(|_| ApiError::internal("the log worker has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the log worker dropped a request"))?
    }

    /// This node's frontier and what each peer last reported of its own.
    pub async fn peer_frontiers(&self) -> Result<PeerFrontiers, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::PeerFrontiers { reply })
            .await
            .map_err(|_| ApiError::internal("the log worker has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the log worker dropped a request"))
    }

    /// Up to `max_ops` operations the holder of `known` lacks, in causal order.
    pub async fn read_log(
        &self,
        known: VersionVector,
        max_ops: usize,
    ) -> Result<LogPage, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::ReadLog {
                known,
                max_ops,
                reply,
            })
            .await
            .map_err(|_| ApiError::internal("the log worker has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the log worker dropped a request"))?
    }

    /// The log's frontier with the digest of the read model that projects exactly it.
    pub async fn snapshot(&self) -> Result<LogSnapshot, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Snapshot { reply })
            .await
            .map_err(|_| ApiError::internal("the log worker has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the log worker dropped a request"))?
    }
}

/// What the worker shares with the rest of the controller.
pub struct Shared {
    /// Chunkservers learned from the log are handed here.
    pub registry: Arc<Registry>,
    /// Appended operations are counted here.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Retired controllers learned from the log are recorded here.
    pub retired: Arc<Retired>,
}

/// Opens the log and the read model under `data_dir`, brings the read model up to the log
/// (rebuilding it from scratch when it was deleted), and starts the worker thread. The thread
/// stops when every handle is dropped.
pub fn start(
    data_dir: &Path,
    node_id: NodeId,
    gossip: GossipConfig,
    shared: Shared,
    outbound: mpsc::Sender<Transmit<MetaOp>>,
    runtime: tokio::runtime::Handle,
) -> Result<LogHandle, LogOpenError> {
    let store = FjallStore::<MetaOp>::open(&data_dir.join("log"))?;
    let mut projection = Projection::open(&data_dir.join("readmodel.sqlite"))?;
    catch_up(&store, &mut projection)?;
    let core = Gossip::new(
        node_id,
        gossip,
        StdRng::from_os_rng(),
        Instant::now(),
        &store,
    )?;
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let (frontier_tx, frontier) = watch::channel(projection.applied().clone());
    let worker = Worker {
        store,
        core,
        projection,
        rx,
        registry: shared.registry,
        metrics: shared.metrics,
        retired: Arc::clone(&shared.retired),
        me: node_id,
        outbound,
        frontier: frontier_tx,
        runtime,
    };
    std::thread::Builder::new()
        .name("log-worker".to_owned())
        .spawn(move || worker.run())
        .map_err(|e| {
            LogOpenError::ReadModel(ReadModelError::Corrupt {
                what: "log worker thread",
                reason: e.to_string(),
            })
        })?;
    Ok(LogHandle {
        tx,
        frontier,
        retired: shared.retired,
    })
}

/// Projects whatever the log holds beyond what the read model has applied.
fn catch_up(store: &FjallStore<MetaOp>, projection: &mut Projection) -> Result<(), LogOpenError> {
    let log_frontier = LogStore::<MetaOp>::frontier(store);
    let behind = log_frontier.count_missing_from(projection.applied());
    if behind == 0 {
        return Ok(());
    }
    tracing::info!(operations = behind, "bringing the read model up to the log");
    let started = Instant::now();
    let mut failure = None;
    replay(store, REPLAY_PAGE_OPS, |ops| {
        if failure.is_none() {
            failure = projection.apply(&ops).err();
        }
    })?;
    if let Some(error) = failure {
        return Err(error.into());
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
    store: FjallStore<MetaOp>,
    core: Gossip<MetaOp, StdRng>,
    projection: Projection,
    rx: mpsc::Receiver<Command>,
    registry: Arc<Registry>,
    metrics: Arc<crate::metrics::Metrics>,
    retired: Arc<Retired>,
    me: NodeId,
    outbound: mpsc::Sender<Transmit<MetaOp>>,
    frontier: watch::Sender<VersionVector>,
    /// Used only to wait for the next command with a deadline; the worker never runs async
    /// code of its own.
    runtime: tokio::runtime::Handle,
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Worker {
    fn run(mut self) {
        // Chunkservers learned from the log get lazily connected channels, which need the
        // runtime's context even though this thread runs no async code of its own.
        let runtime = self.runtime.clone();
        let _context = runtime.enter();
        loop {
            let deadline = tokio::time::Instant::from_std(self.core.poll_timeout());
            let next = self
                .runtime
                .block_on(async { tokio::time::timeout_at(deadline, self.rx.recv()).await });
            match next {
                Ok(Some(first)) => self.handle_commands(first),
                Ok(None) => break,
                Err(_) => self.core.handle_tick(Instant::now(), &self.store),
            }
            if let Err(error) = self.project_events() {
                tracing::warn!(%error, "projection behind the log; retrying with the next batch");
            }
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
                Command::Snapshot { reply } => {
                    let snapshot = self
                        .projection
                        .digest()
                        .map(|digest| LogSnapshot {
                            frontier: self.projection.applied().clone(),
                            digest,
                        })
                        .map_err(ApiError::internal);
                    let _ = reply.send(snapshot);
                }
                Command::Gossip { from, message } => {
                    if let Err(error) = self.core.handle_message(
                        Instant::now(),
                        wall_clock_ms(),
                        from,
                        message,
                        &self.store,
                    ) {
                        self.fail_if_fatal(&error);
                        tracing::warn!(%error, peer = %from, "could not take in a peer's operations");
                    }
                }
                Command::PeerJoined(peer) => {
                    self.core.add_peer(peer);
                    self.core.sync_now(Instant::now(), &self.store);
                }
                Command::SyncNow => self.core.sync_now(Instant::now(), &self.store),
                Command::PeerFrontiers { reply } => {
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
                            };
                            (peer, view)
                        })
                        .collect();
                    let _ = reply.send(PeerFrontiers {
                        local: self.projection.applied().clone(),
                        peers,
                    });
                }
                Command::ReadLog {
                    known,
                    max_ops,
                    reply,
                } => {
                    let page = read_causal(&self.store, &known, max_ops)
                        .map(|page| LogPage {
                            ops: page.ops,
                            more: page.more,
                        })
                        .map_err(ApiError::internal);
                    let _ = reply.send(page);
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

    fn fail_if_fatal(&self, error: &redcloud_eventlog::StoreError) {
        if error.is_fatal() {
            tracing::error!(%error, "the event log can no longer be written; exiting so the node restarts");
            std::process::exit(70);
        }
    }

    /// Hands the core's messages to the sender; when it is saturated they are dropped, and
    /// anti-entropy repeats whatever mattered.
    fn send_transmits(&mut self) {
        while let Some(transmit) = self.core.poll_transmit() {
            if self.outbound.try_send(transmit).is_err() {
                tracing::debug!("gossip sender saturated; message dropped");
            }
        }
    }

    fn append_batch(&mut self, appends: Vec<PendingAppend>) {
        let payloads: Vec<MetaOp> = appends
            .iter()
            .flat_map(|(ops, _)| ops.iter().cloned())
            .collect();
        let appended = self
            .core
            .append_local(wall_clock_ms(), payloads, &self.store);
        let outcome = match appended {
            Ok(_) => self.project_events(),
            Err(error) if error.is_fatal() => {
                tracing::error!(%error, "the event log can no longer be written; exiting so the node restarts");
                std::process::exit(70);
            }
            Err(error) => Err(ApiError::internal(error)),
        };
        let frontier = LogStore::<MetaOp>::frontier(&self.store);
        for (_, reply) in appends {
            let answer = match &outcome {
                Ok(()) => Ok(frontier.clone()),
                Err(error) => Err(ApiError::internal(error)),
            };
            let _ = reply.send(answer);
        }
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

    /// Projects every applied operation the core reports.
    fn project_events(&mut self) -> Result<(), ApiError> {
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
                Event::PeerSuspected { peer } => tracing::warn!(%peer, "peer suspected"),
                Event::PeerRecovered { peer } => tracing::info!(%peer, "peer answers again"),
                Event::BufferOverflow { dropped } => {
                    tracing::debug!(%dropped, "out-of-order buffer full")
                }
                Event::ClockAhead { dot, ahead_ms } => {
                    tracing::warn!(%dot, ahead_ms, "operation stamped far ahead of this clock; held until the clock catches up");
                }
            }
        }
        if let Err(error) = self.projection.apply(&applied) {
            tracing::warn!(%error, "projection failed; catching up from the log");
        }
        // Whatever went wrong before (or now), the log has the truth: fill any gap from it.
        let log_frontier = LogStore::<MetaOp>::frontier(&self.store);
        if log_frontier.count_missing_from(self.projection.applied()) > 0 {
            catch_up(&self.store, &mut self.projection).map_err(|error| {
                tracing::error!(%error, "projection failed; retrying from the log with the next write");
                ApiError::internal(error)
            })?;
        }
        self.frontier.send_if_modified(|published| {
            let changed = published != self.projection.applied();
            if changed {
                published.clone_from(self.projection.applied());
            }
            changed
        });
        Ok(())
    }
}
