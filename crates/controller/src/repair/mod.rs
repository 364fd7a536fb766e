//! The repair service: every round it compares what live files reference with what each
//! healthy chunkserver reports holding (`ListChunks`), has chunkservers that lack a chunk
//! pull it from one that has it (`ReplicateChunk`), and deletes the chunks that no controller
//! can need any more (see [`gc`]). Throttled per round and in concurrency; every call has a
//! timeout; the loop stops with the node.

pub mod gc;
pub mod planner;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use redcloud_eventlog::NodeId;
use redcloud_proto::chunkserver::{DeleteChunkRequest, ListChunksRequest, ReplicateChunkRequest};
use redcloud_types::ChunkId;
use tokio_util::sync::CancellationToken;

use crate::cluster::{ChunkserverInfo, Registry};
use crate::log_worker::LogHandle;
use crate::meta::MetaOp;
use crate::peers::Membership;
use crate::readmodel::ReadPool;
use crate::retired::Retired;
use crate::status::{RepairLedger, RoundFindings};

/// Which kind of node.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Controller,
    Chunkserver,
}

/// How the repair service runs.
#[derive(Debug, Clone, Copy)]
pub struct RepairConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Most copies started in one round.
    pub copies_per_round: usize,
    /// Most copies running at once.
    pub concurrency: usize,
    /// Longest one `ListChunks`, `ReplicateChunk` or `DeleteChunk` may take.
    pub call_timeout: Duration,
    /// Chunks written this recently are never collected.
    pub gc_grace: Duration,
    /// Collection waits while any controller's newest frontier is older than this.
    pub gc_report_max_age: Duration,
    /// Most chunk copies deleted in one round.
    pub gc_deletions_per_round: usize,
    /// Nodes silent for longer than this are retired (`--retire-after`; `None`: never).
    pub retire_after: Option<Duration>,
}

/// What the repair service reads and talks to.
pub struct Repair {
    /// The chunkservers.
    pub registry: Arc<Registry>,
    /// The read model.
    pub reads: Arc<ReadPool>,
    /// The log, for what other controllers have reported.
    pub log: LogHandle,
    /// The controllers known right now.
    pub membership: Arc<Membership>,
    /// Limits.
    pub config: RepairConfig,
    /// Where each round's findings are kept for `/status` and `/metrics`.
    pub ledger: Arc<RepairLedger>,
    /// The retired controllers.
    pub retired: Arc<Retired>,
    /// When this process started: a node never heard from has been silent at least since.
    started: Instant,
    /// Copies a chunkserver kept as recently written, and when to ask again: a chunk stays
    /// fresh for the whole grace period, so asking every round would only cost calls.
    kept: std::sync::Mutex<BTreeMap<(ChunkId, String), Instant>>,
}

/// Longest a copy a chunkserver kept as recently written waits before it is asked about again.
const KEPT_RECHECK_MAX: Duration = Duration::from_secs(60);

/// Runs repair rounds until `shutdown` is cancelled.
pub async fn run(repair: Repair, shutdown: CancellationToken) {
    let config = repair.config;
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = repair.round() => {}
        }
    }
}

impl Repair {
    /// A repair service over these parts.
    pub fn new(
        registry: Arc<Registry>,
        reads: Arc<ReadPool>,
        log: LogHandle,
        membership: Arc<Membership>,
        config: RepairConfig,
        ledger: Arc<RepairLedger>,
        retired: Arc<Retired>,
    ) -> Self {
        Self {
            registry,
            reads,
            log,
            membership,
            config,
            ledger,
            retired,
            started: Instant::now(),
            kept: std::sync::Mutex::default(),
        }
    }

    /// `holdings` without the copies a chunkserver recently kept; forgets expired entries.
    fn not_recently_kept(
        &self,
        holdings: &BTreeMap<String, BTreeSet<ChunkId>>,
    ) -> BTreeMap<String, BTreeSet<ChunkId>> {
        let now = Instant::now();
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.retain(|_, ask_again| *ask_again > now);
        holdings
            .iter()
            .map(|(node, chunks)| {
                let askable = chunks
                    .iter()
                    .filter(|chunk| !kept.contains_key(&(**chunk, node.clone())))
                    .copied()
                    .collect();
                (node.clone(), askable)
            })
            .collect()
    }

    fn remember_kept(&self, kept_now: Vec<(ChunkId, String)>) {
        let ask_again = Instant::now() + (self.config.gc_grace / 4).min(KEPT_RECHECK_MAX);
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for pair in kept_now {
            kept.insert(pair, ask_again);
        }
    }

    async fn round(&self) {
        if self.config.retire_after.is_some() {
            self.retire_silent_chunkservers().await;
        }
        let healthy = self.registry.healthy(Instant::now());
        if healthy.is_empty() {
            return;
        }
        // Taken before the read model is read, so those reads reflect at least this knowledge.
        let knowledge = match self.knowledge().await {
            Ok(knowledge) => Some(knowledge),
            Err(error) => {
                tracing::warn!(%error, "cannot tell what other controllers know; no collection this round");
                None
            }
        };
        let Some(referenced) = self.read(|r| r.referenced_chunks()).await else {
            return;
        };
        let mut holdings = BTreeMap::new();
        for (info, client) in &healthy {
            match tokio::time::timeout(self.config.call_timeout, list_chunks(client.clone())).await
            {
                Ok(Ok(chunks)) => {
                    holdings.insert(info.node_id.clone(), chunks);
                }
                Ok(Err(status)) => {
                    tracing::debug!(chunkserver = %info.node_id, %status, "cannot list chunks; skipped this round")
                }
                Err(_) => {
                    tracing::debug!(chunkserver = %info.node_id, "listing chunks timed out; skipped this round")
                }
            }
        }
        self.ledger.round(findings(&referenced, &holdings));
        let clients: BTreeMap<String, (ChunkserverInfo, Client)> = healthy
            .into_iter()
            .map(|(info, client)| (info.node_id.clone(), (info, client)))
            .collect();
        if clients.len() >= 2 {
            self.copy(&referenced, &holdings, &clients).await;
        }
        if let Some(knowledge) = knowledge {
            self.collect(&knowledge, &referenced, &holdings, &clients)
                .await;
        }
    }

    /// Has chunkservers that lack a referenced chunk copy it from one that holds it.
    async fn copy(
        &self,
        referenced: &BTreeSet<ChunkId>,
        holdings: &BTreeMap<String, BTreeSet<ChunkId>>,
        clients: &BTreeMap<String, (ChunkserverInfo, Client)>,
    ) {
        let config = self.config;
        let plan = planner::plan(referenced, holdings, config.copies_per_round);
        self.ledger.queued(plan.copies.len() as u64);
        if plan.copies.is_empty() {
            if plan.unavailable > 0 {
                tracing::warn!(
                    chunks = plan.unavailable,
                    "referenced chunks held by no healthy chunkserver"
                );
            }
            return;
        }
        tracing::info!(
            copies = plan.copies.len(),
            under_replicated = plan.under_replicated,
            unavailable = plan.unavailable,
            "repair round"
        );
        let copies = futures_util::stream::iter(plan.copies)
            .map(|copy| {
                let target = clients.get(&copy.target).map(|(_, client)| client.clone());
                let source = clients.get(&copy.source).map(|(info, _)| info.address.clone());
                async move {
                    let (Some(mut target), Some(source_address)) = (target, source) else { return false };
                    let request = ReplicateChunkRequest { chunk_id: Bytes::copy_from_slice(copy.chunk.as_bytes()), source_address };
                    match tokio::time::timeout(config.call_timeout, target.replicate_chunk(request)).await {
                        Ok(Ok(_)) => true,
                        Ok(Err(status)) => {
                            tracing::debug!(chunk = %copy.chunk, target = %copy.target, %status, "copy failed");
                            false
                        }
                        Err(_) => {
                            tracing::debug!(chunk = %copy.chunk, target = %copy.target, "copy timed out");
                            false
                        }
                    }
                }
            })
            .buffer_unordered(config.concurrency.max(1))
            .collect::<Vec<bool>>()
            .await;
        let made = copies.iter().filter(|ok| **ok).count();
        self.ledger
            .copies(made as u64, (copies.len() - made) as u64);
        tracing::info!(made, failed = copies.len() - made, "repair round done");
    }

    /// What every live controller ever seen has reported of its frontier. Controllers silent
    /// for longer than `--retire-after` are retired on the way.
    async fn knowledge(&self) -> Result<gc::Knowledge, crate::error::ApiError> {
        let frontiers = self.log.peer_frontiers().await?;
        let me = self.membership.me();
        let (known, retired) = self
            .read(|r| Ok((r.controllers()?, r.retired()?)))
            .await
            .ok_or_else(|| crate::error::ApiError::internal("cannot read the known controllers"))?;
        // The log worker learns retirements as they arrive; a projection that caught up from
        // the log in bulk is picked up here.
        self.retired.learn(&retired);
        let mut controllers: BTreeSet<NodeId> = known.into_iter().collect();
        controllers.extend(self.membership.ids());
        controllers.extend(frontiers.peers.keys().copied());
        controllers.remove(&me);
        for gone in self.retired.controllers() {
            controllers.remove(&gone);
        }
        let mut reports = BTreeMap::new();
        for node in controllers {
            let view = frontiers.peers.get(&node);
            let report = view.and_then(|view| view.report.clone());
            let silent_for = view
                .and_then(|view| view.last_heard)
                .or(report.as_ref().map(|(age, _)| *age))
                .unwrap_or_else(|| self.started.elapsed());
            if self
                .retire_if_silent(Kind::Controller, &node.to_string(), silent_for)
                .await
            {
                continue;
            }
            reports.insert(node, report);
        }
        Ok(gc::Knowledge {
            local: frontiers.local,
            reports,
        })
    }

    /// Retires the chunkservers silent for longer than `--retire-after`.
    async fn retire_silent_chunkservers(&self) {
        let now = Instant::now();
        for (info, _) in self.registry.snapshot(now) {
            let silent_for = info.last_heartbeat.map_or_else(
                || self.started.elapsed(),
                |at| now.saturating_duration_since(at),
            );
            self.retire_if_silent(Kind::Chunkserver, &info.node_id, silent_for)
                .await;
        }
    }

    /// Appends the retirement of a node silent for `silent_for` if that is longer than
    /// `--retire-after`; whether it did.
    async fn retire_if_silent(&self, kind: Kind, node_id: &str, silent_for: Duration) -> bool {
        let Some(limit) = self.config.retire_after.filter(|l| silent_for > *l) else {
            return false;
        };
        let reason = format!(
            "silent for {} s, longer than --retire-after ({} s), as seen by controller {}",
            silent_for.as_secs(),
            limit.as_secs(),
            self.membership.me()
        );
        let op = match kind {
            Kind::Controller => MetaOp::ControllerRetired {
                node_id: node_id.to_owned(),
                reason: reason.clone(),
            },
            Kind::Chunkserver => MetaOp::ChunkserverRetired {
                node_id: node_id.to_owned(),
                reason: reason.clone(),
            },
        };
        match self.log.append(vec![op]).await {
            Ok(_) => {
                tracing::warn!(node = %node_id, kind = ?kind, %reason, "node retired automatically");
                true
            }
            Err(error) => {
                tracing::warn!(node = %node_id, %error, "could not retire a silent node");
                false
            }
        }
    }

    /// Deletes copies of chunks that no controller can need any more.
    async fn collect(
        &self,
        knowledge: &gc::Knowledge,
        referenced: &BTreeSet<ChunkId>,
        holdings: &BTreeMap<String, BTreeSet<ChunkId>>,
        clients: &BTreeMap<String, (ChunkserverInfo, Client)>,
    ) {
        let config = self.config;
        let candidates: BTreeSet<ChunkId> = holdings
            .values()
            .flatten()
            .filter(|chunk| !referenced.contains(*chunk))
            .copied()
            .collect();
        let candidate_count = candidates.len() as u64;
        if candidates.is_empty() {
            self.ledger.collection(0, 0, 0, None);
            return;
        }
        let stable = match gc::stable_frontier(knowledge, config.gc_report_max_age) {
            Ok(stable) => stable,
            Err(blocked) => {
                tracing::debug!(candidates = candidates.len(), %blocked, "collection waits");
                self.ledger.collection(candidate_count, 0, 0, Some(blocked));
                return;
            }
        };
        let Some(pasts) = self.read(move |r| r.chunk_pasts(&candidates)).await else {
            return;
        };
        let askable = self.not_recently_kept(holdings);
        let plan = gc::plan(&pasts, &askable, &stable, config.gc_deletions_per_round);
        if plan.deletions.is_empty() {
            self.ledger
                .collection(candidate_count, plan.waiting as u64, 0, None);
            return;
        }
        let min_idle_ms = u64::try_from(config.gc_grace.as_millis()).unwrap_or(u64::MAX);
        let outcomes = futures_util::stream::iter(plan.deletions)
            .map(|(chunk, node)| {
                let client = clients.get(&node).map(|(_, client)| client.clone());
                async move {
                    let mut client = client?;
                    let request = DeleteChunkRequest {
                        chunk_id: Bytes::copy_from_slice(chunk.as_bytes()),
                        min_idle_ms,
                    };
                    match tokio::time::timeout(config.call_timeout, client.delete_chunk(request))
                        .await
                    {
                        Ok(Ok(response)) => {
                            Some((chunk, node, !response.get_ref().kept_recently_written))
                        }
                        Ok(Err(status)) => {
                            tracing::debug!(%chunk, chunkserver = %node, %status, "delete failed");
                            None
                        }
                        Err(_) => {
                            tracing::debug!(%chunk, chunkserver = %node, "delete timed out");
                            None
                        }
                    }
                }
            })
            .buffer_unordered(config.concurrency.max(1))
            .collect::<Vec<Option<(ChunkId, String, bool)>>>()
            .await;
        let failed = outcomes.iter().filter(|o| o.is_none()).count();
        let (removed, kept_now): (Vec<_>, Vec<_>) = outcomes
            .into_iter()
            .flatten()
            .partition(|(_, _, removed)| *removed);
        let (deleted, kept) = (removed.len(), kept_now.len());
        self.remember_kept(
            kept_now
                .into_iter()
                .map(|(chunk, node, _)| (chunk, node))
                .collect(),
        );
        self.ledger
            .collection(candidate_count, plan.waiting as u64, deleted as u64, None);
        tracing::info!(
            deleted,
            kept_recently_written = kept,
            failed,
            waiting = plan.waiting,
            "collected unneeded chunk copies"
        );
    }

    /// Runs `read` on the read model off the async runtime; failures are logged.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&crate::readmodel::Reader<'_>) -> Result<T, crate::readmodel::ReadModelError>
        + Send
        + 'static,
    ) -> Option<T> {
        let reads = Arc::clone(&self.reads);
        match tokio::task::spawn_blocking(move || reads.read(read)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                tracing::warn!(%error, "repair cannot read the read model");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "repair read task failed");
                None
            }
        }
    }
}

/// What a round's listings show: how far each referenced chunk is from being everywhere.
fn findings(
    referenced: &BTreeSet<ChunkId>,
    holdings: &BTreeMap<String, BTreeSet<ChunkId>>,
) -> RoundFindings {
    let mut under_replicated = 0;
    let mut unavailable = 0;
    for chunk in referenced {
        let holders = holdings
            .values()
            .filter(|held| held.contains(chunk))
            .count();
        if holders < holdings.len() {
            under_replicated += 1;
        }
        if holders == 0 {
            unavailable += 1;
        }
    }
    RoundFindings {
        referenced: referenced.len() as u64,
        under_replicated,
        unavailable,
        missing: holdings
            .iter()
            .map(|(node, held)| (node.clone(), referenced.difference(held).count() as u64))
            .collect(),
    }
}

type Client =
    redcloud_proto::chunkserver::chunkserver_client::ChunkserverClient<tonic::transport::Channel>;

async fn list_chunks(
    mut client: redcloud_proto::chunkserver::chunkserver_client::ChunkserverClient<
        tonic::transport::Channel,
    >,
) -> Result<BTreeSet<ChunkId>, tonic::Status> {
    let mut stream = client.list_chunks(ListChunksRequest {}).await?.into_inner();
    let mut chunks = BTreeSet::new();
    while let Some(batch) = stream.next().await {
        for id in batch?.chunk_ids {
            if let Ok(id) = ChunkId::from_slice(&id) {
                chunks.insert(id);
            }
        }
    }
    Ok(chunks)
}
