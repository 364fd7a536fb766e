//! The repair service: every round it compares what live files reference with what each
//! healthy chunkserver reports holding (`ListChunks`), and has chunkservers that lack a chunk
//! pull it from one that has it (`ReplicateChunk`). Throttled per round and in concurrency;
//! every call has a timeout; the loop stops with the node.

pub mod planner;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use redcloud_proto::chunkserver::{ListChunksRequest, ReplicateChunkRequest};
use redcloud_types::ChunkId;
use tokio_util::sync::CancellationToken;

use crate::cluster::Registry;
use crate::readmodel::ReadPool;

/// How the repair service runs.
#[derive(Debug, Clone, Copy)]
pub struct RepairConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Most copies started in one round.
    pub copies_per_round: usize,
    /// Most copies running at once.
    pub concurrency: usize,
    /// Longest one `ListChunks` or `ReplicateChunk` may take.
    pub call_timeout: Duration,
}

/// Runs repair rounds until `shutdown` is cancelled.
pub async fn run(
    registry: Arc<Registry>,
    reads: Arc<ReadPool>,
    config: RepairConfig,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = round(&registry, &reads, config) => {}
        }
    }
}

async fn round(registry: &Registry, reads: &Arc<ReadPool>, config: RepairConfig) {
    let healthy = registry.healthy(Instant::now());
    if healthy.len() < 2 {
        return;
    }
    let referenced = {
        let reads = Arc::clone(reads);
        match tokio::task::spawn_blocking(move || reads.read(|r| r.referenced_chunks())).await {
            Ok(Ok(chunks)) => chunks,
            Ok(Err(error)) => {
                tracing::warn!(%error, "repair cannot read the referenced chunks");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "repair read task failed");
                return;
            }
        }
    };
    let mut holdings = BTreeMap::new();
    for (info, client) in &healthy {
        match tokio::time::timeout(config.call_timeout, list_chunks(client.clone())).await {
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
    let plan = planner::plan(&referenced, &holdings, config.copies_per_round);
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
    let by_node: BTreeMap<String, _> = healthy
        .into_iter()
        .map(|(info, client)| (info.node_id.clone(), (info, client)))
        .collect();
    let copies = futures_util::stream::iter(plan.copies)
        .map(|copy| {
            let target = by_node.get(&copy.target).map(|(_, client)| client.clone());
            let source = by_node.get(&copy.source).map(|(info, _)| info.address.clone());
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
    tracing::info!(made, failed = copies.len() - made, "repair round done");
}

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
