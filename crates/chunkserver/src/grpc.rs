//! The chunkserver's gRPC service: a thin layer over [`ChunkStore`] that moves blocking disk
//! work off the async runtime and bounds what one request may buffer.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use prost::bytes::Bytes;
use redcloud_proto::chunkserver::chunkserver_client::ChunkserverClient;
use redcloud_proto::chunkserver::chunkserver_server::Chunkserver;
use redcloud_proto::chunkserver::{
    DeleteChunkRequest, DeleteChunkResponse, ListChunksRequest, ListChunksResponse, PingRequest,
    PingResponse, ReadChunkRequest, ReadChunkResponse, ReplicateChunkRequest,
    ReplicateChunkResponse, WriteChunkRequest, WriteChunkResponse,
};
use redcloud_types::ChunkId;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::StoreError;
use crate::metrics::Metrics;
use crate::store::{ChunkStore, Deleted, MAX_CHUNK_BYTES, Written};

/// Chunk ids per `ListChunks` message: 4096 ids are 128 KiB.
const LIST_BATCH_IDS: usize = 4096;
/// How long a replication pull may take to connect to its source.
const REPLICATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a replication pull may take in all.
const REPLICATE_TIMEOUT: Duration = Duration::from_secs(60);

/// The service over one chunk store.
pub struct ChunkService {
    store: Arc<ChunkStore>,
    node_id: String,
    /// Chunks being pulled right now: a second request for the same chunk (say, from another
    /// controller's repair round) waits for the first instead of copying it again.
    pulling: Arc<std::sync::Mutex<std::collections::HashMap<ChunkId, Arc<tokio::sync::Mutex<()>>>>>,
    metrics: Arc<Metrics>,
    /// How replication pulls reach other chunkservers.
    link: redcloud_link::ClusterLink,
}

impl ChunkService {
    /// A service for `store`, answering pings as `node_id`, pulling from other chunkservers
    /// over `link`.
    pub fn new(
        store: Arc<ChunkStore>,
        node_id: String,
        metrics: Arc<Metrics>,
        link: redcloud_link::ClusterLink,
    ) -> Self {
        Self {
            store,
            node_id,
            pulling: Arc::default(),
            metrics,
            link,
        }
    }

    /// Counts the bytes of a chunk that a write stored anew.
    fn count_written(&self, written: Written, bytes: usize) {
        if written == Written::Stored {
            self.metrics.bytes_written.inc_by(bytes as u64);
        }
    }

    /// The lock for pulling `id`, shared by concurrent requests for it.
    fn pull_lock(&self, id: ChunkId) -> Arc<tokio::sync::Mutex<()>> {
        let mut pulling = self
            .pulling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pulling.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(pulling.entry(id).or_default())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&ChunkStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| Status::internal(format!("disk task failed: {e}")))?
            .map_err(Status::from)
    }
}

fn chunk_id(bytes: &[u8]) -> Result<ChunkId, Status> {
    ChunkId::from_slice(bytes).map_err(|e| Status::invalid_argument(e.to_string()))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Collects a chunk's data from a stream of pieces, refusing more than `size` bytes.
async fn collect_chunk<S>(first_piece: Bytes, size: u64, rest: &mut S) -> Result<Vec<u8>, Status>
where
    S: Stream<Item = Result<Bytes, Status>> + Unpin,
{
    if size > MAX_CHUNK_BYTES {
        return Err(StoreError::TooLarge {
            size,
            limit: MAX_CHUNK_BYTES,
        }
        .into());
    }
    let mut data = Vec::with_capacity(size as usize);
    data.extend_from_slice(&first_piece);
    while let Some(piece) = rest.next().await {
        let piece = piece?;
        if (data.len() + piece.len()) as u64 > size {
            return Err(Status::invalid_argument(format!(
                "chunk data exceeds its declared size of {size} bytes"
            )));
        }
        data.extend_from_slice(&piece);
    }
    if data.len() as u64 != size {
        return Err(Status::invalid_argument(format!(
            "chunk data ended at {} of {size} declared bytes",
            data.len()
        )));
    }
    Ok(data)
}

#[tonic::async_trait]
impl Chunkserver for ChunkService {
    async fn write_chunk(
        &self,
        request: Request<Streaming<WriteChunkRequest>>,
    ) -> Result<Response<WriteChunkResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty WriteChunk stream"))??;
        let id = chunk_id(&first.chunk_id)?;
        let mut rest = stream.map(|piece| piece.map(|p| p.data));
        let data = collect_chunk(first.data, first.size, &mut rest).await?;
        let size = data.len();
        let written = self.blocking(move |store| store.put(&id, &data)).await?;
        self.count_written(written, size);
        Ok(Response::new(WriteChunkResponse {
            already_present: written == Written::AlreadyPresent,
        }))
    }

    type ReadChunkStream = BoxStream<ReadChunkResponse>;

    async fn read_chunk(
        &self,
        request: Request<ReadChunkRequest>,
    ) -> Result<Response<Self::ReadChunkStream>, Status> {
        let id = chunk_id(&request.get_ref().chunk_id)?;
        let data = self.blocking(move |store| store.get(&id)).await?;
        let data = Bytes::from(data);
        self.metrics.bytes_read.inc_by(data.len() as u64);
        let pieces: Vec<_> = redcloud_types::pieces(&data)
            .map(|data| Ok(ReadChunkResponse { data }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(pieces))))
    }

    async fn delete_chunk(
        &self,
        request: Request<DeleteChunkRequest>,
    ) -> Result<Response<DeleteChunkResponse>, Status> {
        let id = chunk_id(&request.get_ref().chunk_id)?;
        let min_idle = Duration::from_millis(request.get_ref().min_idle_ms);
        let deleted = self
            .blocking(move |store| store.delete(&id, min_idle))
            .await?;
        if deleted == Deleted::Removed {
            self.metrics.chunks_deleted.inc();
        }
        Ok(Response::new(DeleteChunkResponse {
            existed: deleted != Deleted::Absent,
            kept_recently_written: deleted == Deleted::KeptRecentlyWritten,
        }))
    }

    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let stats = self.blocking(ChunkStore::stats).await?;
        Ok(Response::new(PingResponse {
            node_id: self.node_id.clone(),
            capacity_bytes: stats.capacity_bytes,
            used_bytes: stats.used_bytes,
            chunk_count: stats.chunk_count,
        }))
    }

    type ListChunksStream = BoxStream<ListChunksResponse>;

    async fn list_chunks(
        &self,
        _: Request<ListChunksRequest>,
    ) -> Result<Response<Self::ListChunksStream>, Status> {
        // A small channel: the directory walk runs only as fast as the client reads.
        let (tx, rx) = mpsc::channel(4);
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(LIST_BATCH_IDS);
            let mut client_gone = false;
            let walked = store.for_each_chunk(|id, _| {
                if client_gone {
                    return;
                }
                batch.push(Bytes::copy_from_slice(id.as_bytes()));
                if batch.len() == LIST_BATCH_IDS {
                    let chunk_ids =
                        std::mem::replace(&mut batch, Vec::with_capacity(LIST_BATCH_IDS));
                    client_gone = tx
                        .blocking_send(Ok(ListChunksResponse { chunk_ids }))
                        .is_err();
                }
            });
            let last = match walked {
                Ok(()) if batch.is_empty() => return,
                Ok(()) => Ok(ListChunksResponse { chunk_ids: batch }),
                Err(error) => Err(Status::from(error)),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn replicate_chunk(
        &self,
        request: Request<ReplicateChunkRequest>,
    ) -> Result<Response<ReplicateChunkResponse>, Status> {
        let ReplicateChunkRequest {
            chunk_id: raw_id,
            source_address,
        } = request.into_inner();
        let id = chunk_id(&raw_id)?;
        let lock = self.pull_lock(id);
        let _only_pull = lock.lock().await;
        let present = self.blocking(move |store| match store.get(&id) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. } | StoreError::Corrupt { .. }) => Ok(false),
            Err(other) => Err(other),
        });
        if present.await? {
            return Ok(Response::new(ReplicateChunkResponse {
                already_present: true,
            }));
        }
        let data = tokio::time::timeout(
            REPLICATE_TIMEOUT,
            fetch_chunk(&self.link, &source_address, id),
        )
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!("pulling {id} from {source_address} timed out"))
        })??;
        let size = data.len();
        let written = self.blocking(move |store| store.put(&id, &data)).await?;
        self.count_written(written, size);
        Ok(Response::new(ReplicateChunkResponse {
            already_present: written == Written::AlreadyPresent,
        }))
    }
}

/// Reads chunk `id` from the chunkserver at `address`, checking its size bound; the store
/// verifies the content when it is written.
async fn fetch_chunk(
    link: &redcloud_link::ClusterLink,
    address: &str,
    id: ChunkId,
) -> Result<Vec<u8>, Status> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("{}://{address}", link.grpc_scheme()))
            .map_err(|e| {
                Status::invalid_argument(format!("bad source address {address:?}: {e}"))
            })?;
    let endpoint = link
        .tonic_endpoint(endpoint)
        .map_err(|e| Status::internal(format!("TLS setup for {address}: {e}")))?
        .connect_timeout(REPLICATE_CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("cannot reach {address}: {e}")))?;
    let mut client =
        ChunkserverClient::new(channel).max_decoding_message_size(2 * redcloud_types::PIECE_BYTES);
    let mut stream = client
        .read_chunk(ReadChunkRequest {
            chunk_id: Bytes::copy_from_slice(id.as_bytes()),
        })
        .await?
        .into_inner();
    let mut data = Vec::new();
    while let Some(piece) = stream.next().await {
        data.extend_from_slice(&piece?.data);
        if data.len() as u64 > MAX_CHUNK_BYTES {
            return Err(StoreError::TooLarge {
                size: data.len() as u64,
                limit: MAX_CHUNK_BYTES,
            }
            .into());
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_pulls_of_one_chunk_share_a_lock_and_the_table_is_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let service = ChunkService::new(
            Arc::new(ChunkStore::open(dir.path(), None).unwrap()),
            "n".into(),
            Arc::default(),
            redcloud_link::ClusterLink::Plain,
        );
        let (a, b) = (ChunkId::of(b"a"), ChunkId::of(b"b"));
        let first = service.pull_lock(a);
        let second = service.pull_lock(a);
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!Arc::ptr_eq(&first, &service.pull_lock(b)));
        let held = first.lock().await;
        assert!(
            second.try_lock().is_err(),
            "the second pull waits for the first"
        );
        drop(held);
        drop((first, second));
        service.pull_lock(b);
        assert_eq!(
            service.pulling.lock().unwrap().len(),
            1,
            "finished pulls leave the table"
        );
    }
}
