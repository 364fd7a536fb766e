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

/// A set of chunkservers to write to, chosen once per upload.
pub type Targets = Arc<Vec<(ChunkserverInfo, ChunkserverClient<Channel>)>>;

/// Chunk transfers with their timeout and durability requirement.
#[derive(Clone)]
pub struct ChunkIo {
    registry: Arc<Registry>,
    timeout: Duration,
    min_replicas: usize,
}

impl ChunkIo {
    /// Transfers over the chunkservers in `registry`; each one may take `timeout`, and a write
    /// needs `min_replicas` durable copies.
    pub fn new(registry: Arc<Registry>, timeout: Duration, min_replicas: usize) -> Self {
        Self {
            registry,
            timeout,
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
        Ok(Arc::new(targets))
    }

    /// Writes a chunk to every target at once; succeeds when `min_replicas` hold it.
    pub async fn write(
        &self,
        targets: &Targets,
        id: ChunkId,
        data: Bytes,
    ) -> Result<usize, ApiError> {
        let writes = targets.iter().map(|(info, client)| {
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
                outcome
            }
        });
        let outcomes = futures_util::future::join_all(writes).await;
        let stored = outcomes.iter().filter(|o| o.is_ok()).count();
        if stored >= self.min_replicas {
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
