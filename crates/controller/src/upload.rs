//! The upload pipeline: cuts a byte stream into chunks, hashes each off the async runtime and
//! writes it to chunkservers, with a fixed number of chunks in flight so that memory does not
//! grow with the file.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::stream::FuturesOrdered;
use futures_util::{Stream, StreamExt};
use md5::Digest as _;
use redcloud_types::ChunkId;
use tokio_util::task::AbortOnDropHandle;

use crate::chunks::{ChunkIo, Targets};
use crate::error::ApiError;
use crate::meta::ContentMd5;

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredData {
    /// Bytes received.
    pub size: u64,
    /// The chunks, in order.
    pub chunks: Vec<ChunkId>,
    /// Bytes per chunk; every chunk but the last has this size.
    pub chunk_size: u64,
    /// The content's MD5, for S3 clients.
    pub md5: ContentMd5,
    /// When the first chunk write started: the upload must be recorded within the upload
    /// deadline of this, or garbage collection may already have taken its chunks.
    pub started: Instant,
}

/// Limits of one upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Bytes per chunk.
    pub chunk_size: usize,
    /// Chunks in flight at once.
    pub pipeline_chunks: usize,
    /// Largest upload accepted.
    pub max_bytes: Option<u64>,
    /// Longest an upload may take from its first chunk write to its record in the log.
    pub deadline: Duration,
}

impl UploadLimits {
    /// The largest file one upload may store: the configured limit, and at most
    /// [`MAX_CHUNKS_PER_FILE`] chunks.
    pub fn max_file_bytes(&self) -> u64 {
        let chunk_limit = self.chunk_size.max(1) as u64 * MAX_CHUNKS_PER_FILE;
        self.max_bytes
            .map_or(chunk_limit, |limit| limit.min(chunk_limit))
    }
}

type ChunkWrite = AbortOnDropHandle<Result<ChunkId, ApiError>>;

/// Most chunks one file may have: its `FileAdded` operation lists them all and must stay
/// within `log_worker::MAX_OP_BYTES` (at 4 MiB chunks, files of up to 390 GiB).
pub const MAX_CHUNKS_PER_FILE: u64 = 100_000;

/// Stores everything `body` yields. On any error the chunk writes still in flight are
/// cancelled; chunks already stored are collected later as unreferenced.
pub async fn store_stream<S, E>(
    io: &ChunkIo,
    limits: UploadLimits,
    mut body: S,
) -> Result<StoredData, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let targets = io.write_targets()?;
    let chunk_size = limits.chunk_size.max(1);
    let mut in_flight: FuturesOrdered<ChunkWrite> = FuturesOrdered::new();
    let mut chunks = Vec::new();
    let mut buffer = BytesMut::with_capacity(chunk_size);
    let mut size = 0u64;
    let mut md5 = RunningMd5::default();
    let max_bytes = limits.max_file_bytes();
    while let Some(piece) = body.next().await {
        let mut piece =
            piece.map_err(|e| ApiError::InvalidRequest(format!("upload interrupted: {e}")))?;
        size += piece.len() as u64;
        if size > max_bytes {
            return Err(ApiError::PayloadTooLarge {
                what: "file",
                limit: max_bytes,
            });
        }
        while !piece.is_empty() {
            let take = (chunk_size - buffer.len()).min(piece.len());
            buffer.extend_from_slice(&piece.split_to(take));
            if buffer.len() == chunk_size {
                let full =
                    std::mem::replace(&mut buffer, BytesMut::with_capacity(chunk_size)).freeze();
                md5.update(full.clone()).await?;
                submit(io, &targets, full, limits, &mut in_flight, &mut chunks).await?;
            }
        }
    }
    if !buffer.is_empty() {
        let last = buffer.freeze();
        md5.update(last.clone()).await?;
        submit(io, &targets, last, limits, &mut in_flight, &mut chunks).await?;
    }
    while let Some(written) = in_flight.next().await {
        chunks.push(joined(written)?);
    }
    Ok(StoredData {
        size,
        chunks,
        chunk_size: chunk_size as u64,
        md5: ContentMd5 {
            digest: md5.finish().await?,
            parts: 0,
        },
        started,
    })
}

/// The MD5 of everything fed to it, computed off the async threads while the next chunk
/// arrives: each update waits only for the one before it.
#[derive(Default)]
struct RunningMd5 {
    idle: md5::Md5,
    running: Option<AbortOnDropHandle<md5::Md5>>,
}

impl RunningMd5 {
    async fn update(&mut self, data: Bytes) -> Result<(), ApiError> {
        let mut hasher = self.take().await?;
        self.running = Some(AbortOnDropHandle::new(tokio::task::spawn_blocking(
            move || {
                hasher.update(&data);
                hasher
            },
        )));
        Ok(())
    }

    async fn take(&mut self) -> Result<md5::Md5, ApiError> {
        match self.running.take() {
            Some(running) => running.await.map_err(ApiError::internal),
            None => Ok(std::mem::take(&mut self.idle)),
        }
    }

    async fn finish(mut self) -> Result<[u8; 16], ApiError> {
        Ok(self.take().await?.finalize().into())
    }
}

/// Starts writing one chunk, first waiting for the oldest write when the pipeline is full.
async fn submit(
    io: &ChunkIo,
    targets: &Targets,
    data: Bytes,
    limits: UploadLimits,
    in_flight: &mut FuturesOrdered<ChunkWrite>,
    chunks: &mut Vec<ChunkId>,
) -> Result<(), ApiError> {
    if in_flight.len() >= limits.pipeline_chunks.max(1)
        && let Some(written) = in_flight.next().await
    {
        chunks.push(joined(written)?);
    }
    let io = io.clone();
    let targets = targets.clone();
    in_flight.push_back(AbortOnDropHandle::new(tokio::spawn(async move {
        let hashed = data.clone();
        let id = tokio::task::spawn_blocking(move || ChunkId::of(&hashed))
            .await
            .map_err(ApiError::internal)?;
        io.write(&targets, id, data).await?;
        Ok(id)
    })));
    Ok(())
}

fn joined(
    written: Result<Result<ChunkId, ApiError>, tokio::task::JoinError>,
) -> Result<ChunkId, ApiError> {
    written.map_err(ApiError::internal)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_file_has_an_operation_that_fits_a_gossip_message() {
        let chunks = vec![ChunkId::of(b"any chunk"); MAX_CHUNKS_PER_FILE as usize];
        let op = crate::meta::MetaOp::FileAdded {
            file_id: uuid::Uuid::new_v4(),
            owner_id: uuid::Uuid::new_v4(),
            name: "n".repeat(255),
            size: u64::MAX,
            chunk_size: u64::MAX,
            chunks,
            tags: vec!["t".repeat(128); 1000],
            created_at_ms: u64::MAX,
            replaces: vec![uuid::Uuid::new_v4(); 16],
            md5: Some(crate::meta::ContentMd5 {
                digest: [0xff; 16],
                parts: u32::MAX,
            }),
        };
        let size = rmp_serde::to_vec(&op).unwrap().len();
        assert!(
            size < crate::log_worker::MAX_OP_BYTES,
            "{size} bytes for the largest file's operation"
        );
    }
}
