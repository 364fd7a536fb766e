//! Errors of the event log: decoding, storage, and how callers classify them.

use crate::clock::Dot;

/// Bytes from a peer or from disk that are not a valid operation or message.
/// Decoding changes no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty input")]
    Empty,
    /// A format version this build does not know (written by a newer node, or garbage).
    #[error("unknown format version {version}")]
    UnknownVersion {
        /// The version byte found.
        version: u8,
    },
    /// Not valid MessagePack for the expected type, or a value breaking a shape rule.
    #[error("malformed: {reason}")]
    Malformed {
        /// What the decoder objected to.
        reason: String,
    },
    /// A valid value followed by bytes that belong to nothing.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
}

/// Why an operation cannot join a log. The log is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReadyReason {
    /// The log already holds this dot.
    AlreadyPresent,
    /// An earlier operation of the same origin is missing.
    SeqGap,
    /// Part of the operation's causal context is missing.
    MissingDeps,
    /// The operation breaks a shape rule (see [`crate::Op::validate`]).
    Malformed,
}

/// A failure of a [`crate::LogStore`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operation of the batch would break causal closure; nothing of the batch was written.
    #[error("operation {dot} cannot be appended: {reason:?}")]
    NotReady {
        /// The first offending operation.
        dot: Dot,
        /// What is wrong with it.
        reason: NotReadyReason,
    },
    /// Stored bytes that do not decode: the disk or the data directory is damaged.
    /// Nothing was changed.
    #[error("stored data at {location} is corrupt: {source}")]
    Corrupt {
        /// Where the bad bytes are (keyspace and key).
        location: String,
        /// What is wrong with them.
        source: DecodeError,
    },
    /// The storage engine failed. After a failed fsync the database refuses all further
    /// writes; the process should exit and be restarted.
    #[error("storage engine: {0}")]
    Engine(#[from] fjall::Error),
}

impl StoreError {
    /// Whether the store can no longer be trusted to write: the process should log, exit and
    /// let its supervisor restart it (after a restart the journal is recovered).
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Engine(_))
    }

    /// Whether the error is about the input, not the store.
    pub fn is_not_ready(&self) -> bool {
        matches!(self, StoreError::NotReady { .. })
    }
}

/// Shorthand for results of the log store.
pub type StoreResult<T> = Result<T, StoreError>;
