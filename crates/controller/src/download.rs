//! The download pipeline: a byte range of a file, read chunk by chunk from chunkservers with
//! a few chunks fetched ahead, each checked against the length the file's record promises.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::chunks::ChunkIo;
use crate::error::ApiError;
use crate::service::Download;

/// Chunks fetched ahead of the one being sent.
const READ_AHEAD_CHUNKS: usize = 3;

/// The bytes `first_byte..=last_byte` of `download`, which must lie within the file. The
/// first chunk is read before this returns, so an unreadable file is an error here rather than
/// a broken body; a chunk that cannot be read later ends the stream with an error, never with
/// short or wrong bytes.
pub async fn stream_range(
    io: &ChunkIo,
    download: Download,
    first_byte: u64,
    last_byte: u64,
) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, ApiError> {
    let Download {
        file,
        chunks,
        chunk_size,
    } = download;
    let size = file.size;
    if first_byte > last_byte || last_byte >= size {
        return Err(ApiError::internal(format!(
            "bytes {first_byte}-{last_byte} of a {size}-byte file"
        )));
    }
    let chunk_size = chunk_size.max(1);
    let first = (first_byte / chunk_size) as usize;
    let last = ((last_byte / chunk_size) as usize).min(chunks.len().saturating_sub(1));
    let slice = move |index: usize, data: Bytes| -> Result<Bytes, std::io::Error> {
        let chunk_start = index as u64 * chunk_size;
        let expected = (size - chunk_start).min(chunk_size);
        if data.len() as u64 != expected {
            return Err(std::io::Error::other(format!(
                "chunk {index} has {} bytes, expected {expected}",
                data.len()
            )));
        }
        let from = first_byte.saturating_sub(chunk_start) as usize;
        let to = ((last_byte + 1).min(chunk_start + expected) - chunk_start) as usize;
        Ok(data.slice(from..to))
    };
    let Some(&first_id) = chunks.get(first) else {
        return Err(ApiError::internal(format!(
            "file {} has no chunk {first}",
            file.file_id
        )));
    };
    let head = slice(first, io.read(first_id).await?).map_err(ApiError::internal)?;
    let io = io.clone();
    let rest = futures_util::stream::iter((first + 1..=last).map(move |index| (index, chunks[index])))
        .map(move |(index, id)| {
            let io = io.clone();
            async move {
                let data = io.read(id).await.map_err(|e| {
                    tracing::error!(chunk = %id, error = %e, "download aborted: no replica could serve a chunk");
                    std::io::Error::other(e.to_string())
                })?;
                slice(index, data)
            }
        })
        .buffered(READ_AHEAD_CHUNKS);
    Ok(futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(rest))
}
