//! Errors of the event log: decoding, storage, and how callers classify them.

use std::fmt;
use std::io::ErrorKind;

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
    /// The disk holding the log has no room left. The batch did not become visible (if the
    /// disk took all of it before refusing, it turns up after [`crate::FjallStore::resume`]);
    /// the store refuses appends until a resume finds room again, and reads go on.
    #[error("the disk holding the log is full: {kind}")]
    DiskFull {
        /// Which limit the disk ran into.
        kind: DiskFullKind,
    },
    /// The storage engine failed. After a failed fsync the database refuses all further
    /// writes; the process should exit and be restarted.
    #[error("storage engine: {0}")]
    Engine(fjall::Error),
}

impl From<fjall::Error> for StoreError {
    /// The one place a storage engine failure is classified: a full disk is a state the node
    /// recovers from, anything else poisons the database for good.
    fn from(error: fjall::Error) -> Self {
        match DiskFullKind::of(&error) {
            Some(kind) => StoreError::DiskFull { kind },
            None => StoreError::Engine(error),
        }
    }
}

impl StoreError {
    /// Whether the store can no longer be trusted to write: the process should log, exit and
    /// let its supervisor restart it (after a restart the journal is recovered). A full disk
    /// is not fatal: see [`StoreError::is_disk_full`].
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Engine(_))
    }

    /// Whether the disk is full: the store takes appends again once
    /// [`crate::FjallStore::resume`] finds room.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }

    /// Whether the error is about the input, not the store.
    pub fn is_not_ready(&self) -> bool {
        matches!(self, StoreError::NotReady { .. })
    }
}

/// Which limit of the disk a write ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFullKind {
    /// The filesystem has no free blocks (`ENOSPC`, "No space left on device").
    NoSpace,
    /// The user's or group's disk quota is spent (`EDQUOT`, "Disk quota exceeded").
    QuotaExceeded,
}

impl DiskFullKind {
    /// The kind of `error` if it, or an error it wraps, is an I/O error saying the disk is
    /// full: the storage engine wraps I/O errors in its own (fjall's in lsm-tree's), so the
    /// whole chain of sources is searched.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    ErrorKind::StorageFull => return Some(DiskFullKind::NoSpace),
                    ErrorKind::QuotaExceeded => return Some(DiskFullKind::QuotaExceeded),
                    _ => {}
                }
            }
            next = error.source();
        }
        None
    }
}

impl fmt::Display for DiskFullKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskFullKind::NoSpace => "no space left on device (ENOSPC)",
            DiskFullKind::QuotaExceeded => "disk quota exceeded (EDQUOT)",
        })
    }
}

/// Shorthand for results of the log store.
pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn classify(error: fjall::Error) -> StoreError {
        StoreError::from(error)
    }

    #[test]
    fn a_full_disk_is_told_apart_from_every_other_engine_failure() {
        let full = classify(fjall::Error::Io(io::Error::from(ErrorKind::StorageFull)));
        assert!(
            matches!(
                full,
                StoreError::DiskFull {
                    kind: DiskFullKind::NoSpace
                }
            ),
            "{full}"
        );
        assert!(full.is_disk_full() && !full.is_fatal());
        assert!(
            full.to_string().contains("no space left on device"),
            "{full}"
        );

        let quota = classify(fjall::Error::Io(io::Error::from(ErrorKind::QuotaExceeded)));
        assert!(matches!(
            quota,
            StoreError::DiskFull {
                kind: DiskFullKind::QuotaExceeded
            }
        ));

        for other in [
            fjall::Error::Poisoned,
            fjall::Error::Io(io::Error::from(ErrorKind::PermissionDenied)),
            // Words are not errno values: only the kind of the I/O error counts.
            fjall::Error::Io(io::Error::other("No space left on device")),
        ] {
            let error = classify(other);
            assert!(error.is_fatal() && !error.is_disk_full(), "{error}");
        }
    }

    /// The numbers the kernel returns, as fjall (and lsm-tree below it) pass them up.
    #[cfg(target_os = "linux")]
    #[test]
    fn enospc_and_edquot_are_found_under_the_engines_wrapping() {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        const EIO: i32 = 5;
        let wrapped = |errno| {
            classify(fjall::Error::Storage(fjall::LsmError::Io(
                io::Error::from_raw_os_error(errno),
            )))
        };
        assert!(matches!(
            wrapped(ENOSPC),
            StoreError::DiskFull {
                kind: DiskFullKind::NoSpace
            }
        ));
        assert!(matches!(
            wrapped(EDQUOT),
            StoreError::DiskFull {
                kind: DiskFullKind::QuotaExceeded
            }
        ));
        assert!(wrapped(EIO).is_fatal());
        assert!(matches!(
            classify(fjall::Error::Io(io::Error::from_raw_os_error(ENOSPC))),
            StoreError::DiskFull { .. }
        ));
    }
}
