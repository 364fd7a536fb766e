//! Errors of the chunkserver and their one mapping to gRPC status codes.

use std::io;
use std::path::{Path, PathBuf};

use redcloud_types::ChunkId;

/// A failure of the chunk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The chunk is not held. Nothing changed.
    #[error("chunk {id} not found")]
    NotFound {
        /// The chunk asked for.
        id: ChunkId,
    },
    /// Data offered for a chunk does not hash to its id. Nothing was written.
    #[error("chunk data hashes to {got}, not to its id {expected}")]
    ChecksumMismatch {
        /// The id the data was offered as.
        expected: ChunkId,
        /// What the data hashes to.
        got: ChunkId,
    },
    /// The stored copy failed verification; it was moved to quarantine.
    #[error("stored copy of chunk {id} is corrupt (hashes to {got}) and was quarantined")]
    Corrupt {
        /// The chunk.
        id: ChunkId,
        /// What the stored bytes hash to.
        got: ChunkId,
    },
    /// No room for the chunk. Nothing was written.
    #[error("storage full: {needed} bytes needed, {available} available")]
    Full {
        /// Size of the chunk.
        needed: u64,
        /// Room left.
        available: u64,
    },
    /// A chunk larger than the store accepts. Nothing was written.
    #[error("chunk of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size offered.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The filesystem failed. A write that fails this way leaves no partial chunk.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull {
            return StoreError::Full {
                needed: 0,
                available: 0,
            };
        }
        StoreError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

impl From<StoreError> for tonic::Status {
    fn from(error: StoreError) -> Self {
        let message = error.to_string();
        match error {
            StoreError::NotFound { .. } => tonic::Status::not_found(message),
            StoreError::ChecksumMismatch { .. } | StoreError::TooLarge { .. } => {
                tonic::Status::invalid_argument(message)
            }
            StoreError::Corrupt { .. } => tonic::Status::data_loss(message),
            StoreError::Full { .. } => tonic::Status::resource_exhausted(message),
            StoreError::Io { .. } => tonic::Status::internal(message),
        }
    }
}
