//! Moving chunk bytes between this controller and chunkservers: each chunk is written to every
//! healthy chunkserver in parallel, and read from the first replica that returns bytes matching
//! the chunk's id, healthy ones first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use redcloud_proto::chunkserver::chunkserver_client::ChunkserverClient;
use redcloud_proto::chunkserver::{ReadChunkRequest, WriteChunkRequest};
use redcloud_types::ChunkId;
use tonic::transport::Channel;

use crate::cluster::{ChunkserverInfo, Registry};
use crate::error::ApiError;

/// The chunkservers one upload writes to, chosen once per upload. A chunkserver that fell
/// behind on one chunk is left out of the upload's later chunks; repair brings it the data.
pub struct WriteTargets {
    servers: Vec<(ChunkserverInfo, ChunkserverClient<Channel>)>,
    left_behind: std::sync::Mutex<Vec<bool>>,
}

/// A shared handle on an upload's targets.
pub type Targets = Arc<WriteTargets>;

/// How long chunk transfers may take.
#[derive(Clone, Copy, Debug)]
pub struct ChunkTimeouts {
    /// Longest one read or write call may take.
    pub call: Duration,
    /// Longest a write waits for the remaining chunkservers once `min_replicas` copies are
    /// durable.
    pub straggler: Duration,
}

/// Chunk transfers with their timeouts and durability requirement.
#[derive(Clone)]
pub struct ChunkIo {
    registry: Arc<Registry>,
    timeout: Duration,
    straggler: Duration,
    min_replicas: usize,
}

impl ChunkIo {
    /// Transfers over the chunkservers in `registry` within `timeouts`; a write needs
    /// `min_replicas` durable copies.
    pub fn new(registry: Arc<Registry>, timeouts: ChunkTimeouts, min_replicas: usize) -> Self {
        Self {
            registry,
            timeout: timeouts.call,
            straggler: timeouts.straggler,
            min_replicas: min_replicas.max(1),
        }
    }

    /// The healthy chunkservers, or `ChunkserverUnavailable` when there are too few.
    pub fn write_targets(&self) -> Result<Targets, ApiError> {
        let targets = self.registry.healthy(Instant::now());
        if targets.len() < self.min_replicas {
            return Err(ApiError::ChunkserverUnavailable(format!(
                "{} healthy chunkservers, {} needed to store data",
                targets.len(),
                self.min_replicas
            )));
        }
        let left_behind = std::sync::Mutex::new(vec![false; targets.len()]);
        Ok(Arc::new(WriteTargets {
            servers: targets,
            left_behind,
        }))
    }

    /// Writes a chunk to every target of the upload at once; succeeds when `min_replicas` hold
    /// it and every other target has stored it too or had [`ChunkTimeouts::straggler`] to do
    /// so. A target that missed that deadline is left out of the upload's later chunks.
    pub async fn write(
        &self,
        targets: &Targets,
        id: ChunkId,
        data: Bytes,
    ) -> Result<usize, ApiError> {
        let skipped = targets
            .left_behind
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut writes: futures_util::stream::FuturesUnordered<_> = targets
            .servers
            .iter()
            .enumerate()
            .filter(|(index, _)| !skipped[*index])
            .map(|(index, (info, client))| {
                let mut client = client.clone();
                let messages = write_messages(id, &data);
                async move {
                    let call = client.write_chunk(tokio_stream::iter(messages));
                    let outcome = match tokio::time::timeout(self.timeout, call).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(status)) => Err(status.code()),
                        Err(_) => Err(tonic::Code::DeadlineExceeded),
                    };
                    if let Err(code) = outcome {
                        tracing::warn!(chunk = %id, chunkserver = %info.node_id, ?code, "chunk write failed");
                    }
                    (index, outcome)
                }
            })
            .collect();
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut finished = vec![false; targets.servers.len()];
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = match deadline {
                None => writes.next().await,
                Some(at) => match tokio::time::timeout_at(at, writes.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some((index, outcome)) = next else { break };
            finished[index] = true;
            outcomes.push(outcome);
            let stored = outcomes.iter().filter(|o| o.is_ok()).count();
            if stored >= self.min_replicas && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + self.straggler);
            }
        }
        drop(writes);
        let stored = outcomes.iter().filter(|o| o.is_ok()).count();
        if stored >= self.min_replicas {
            let mut left_behind = targets
                .left_behind
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (index, (info, _)) in targets.servers.iter().enumerate() {
                if !skipped[index] && !finished[index] {
                    tracing::warn!(chunk = %id, chunkserver = %info.node_id, "chunkserver too slow; left out of this upload, repair will copy its chunks");
                    left_behind[index] = true;
                }
            }
            return Ok(stored);
        }
        if !outcomes.is_empty()
            && outcomes
                .iter()
                .all(|o| *o == Err(tonic::Code::ResourceExhausted))
        {
            return Err(ApiError::StorageFull);
        }
        Err(ApiError::ChunkserverUnavailable(format!(
            "chunk stored on {stored} of {} chunkservers, {} needed",
            outcomes.len(),
            self.min_replicas
        )))
    }

    /// Reads a chunk, verified against its id, trying every known chunkserver (healthy ones
    /// first, starting at one chosen by the id to spread load). When no copy could be read and
    /// some were found corrupt, the answer is `ChecksumMismatch` rather than "unavailable".
    pub async fn read(&self, id: ChunkId) -> Result<Bytes, ApiError> {
        let mut candidates = self.registry.snapshot(Instant::now());
        let healthy = candidates.iter().filter(|(info, _)| info.healthy).count();
        if healthy > 1 {
            candidates[..healthy].rotate_left(usize::from(id.as_bytes()[0]) % healthy);
        }
        let mut corrupt_copies = 0;
        for (info, client) in candidates {
            match tokio::time::timeout(self.timeout, read_from(client, id)).await {
                Ok(Ok(data)) if ChunkId::of(&data) == id => return Ok(data),
                Ok(Ok(_)) => {
                    corrupt_copies += 1;
                    tracing::error!(chunk = %id, chunkserver = %info.node_id, "chunkserver returned bytes that do not match the chunk id");
                }
                Ok(Err(status)) if status.code() == tonic::Code::DataLoss => {
                    corrupt_copies += 1;
                    tracing::error!(chunk = %id, chunkserver = %info.node_id, message = status.message(), "replica failed verification");
                }
                Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                    tracing::debug!(chunk = %id, chunkserver = %info.node_id, "replica missing");
                }
                Ok(Err(status)) => {
                    tracing::warn!(chunk = %id, chunkserver = %info.node_id, code = ?status.code(), message = status.message(), "replica unreadable");
                }
                Err(_) => {
                    tracing::warn!(chunk = %id, chunkserver = %info.node_id, "replica read timed out");
                }
            }
        }
        if corrupt_copies > 0 {
            return Err(ApiError::ChecksumMismatch {
                chunk: id,
                corrupt_copies,
            });
        }
        Err(ApiError::ChunkserverUnavailable(
            "Storage service temporarily unavailable".to_owned(),
        ))
    }
}

fn write_messages(id: ChunkId, data: &Bytes) -> Vec<WriteChunkRequest> {
    let mut messages: Vec<WriteChunkRequest> = redcloud_types::pieces(data)
        .map(|data| WriteChunkRequest {
            data,
            ..Default::default()
        })
        .collect();
    if messages.is_empty() {
        messages.push(WriteChunkRequest::default());
    }
    messages[0].chunk_id = Bytes::copy_from_slice(id.as_bytes());
    messages[0].size = data.len() as u64;
    messages
}

async fn read_from(
    mut client: ChunkserverClient<Channel>,
    id: ChunkId,
) -> Result<Bytes, tonic::Status> {
    let mut stream = client
        .read_chunk(ReadChunkRequest {
            chunk_id: Bytes::copy_from_slice(id.as_bytes()),
        })
        .await?
        .into_inner();
    let mut pieces = Vec::new();
    let mut total = 0usize;
    while let Some(piece) = stream.next().await {
        let piece = piece?.data;
        total += piece.len();
        if total as u64 > redcloud_types::MAX_CHUNK_BYTES {
            return Err(tonic::Status::out_of_range(
                "chunk larger than any chunk may be",
            ));
        }
        pieces.push(piece);
    }
    if pieces.len() == 1 {
        return Ok(pieces.pop().expect("one piece"));
    }
    let mut data = bytes::BytesMut::with_capacity(total);
    for piece in pieces {
        data.extend_from_slice(&piece);
    }
    Ok(data.freeze())
}
