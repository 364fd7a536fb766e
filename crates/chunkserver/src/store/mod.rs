//! Content-addressed chunk files on local disk: the directory layout is the index.
//!
//! A chunk lives at `chunks/<first two hex digits>/<64 hex digits>`. Writes go to a temp file
//! that is fsynced, renamed into place, and followed by an fsync of the directory, so after a
//! crash a chunk is either whole or absent. Every read is verified against the chunk id; a bad
//! copy is moved to `corrupt/` so that it is no longer reported as held. Synchronous: call it
//! from blocking threads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use redcloud_types::ChunkId;

use crate::error::StoreError;

pub use redcloud_types::MAX_CHUNK_BYTES;

const CHUNKS_DIR: &str = "chunks";
const TMP_DIR: &str = "tmp";
const CORRUPT_DIR: &str = "corrupt";
/// Locks that order a write against a delete of the same chunk (by its first byte).
const CHUNK_LOCK_STRIPES: usize = 256;

/// What a write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The chunk is now stored.
    Stored,
    /// A verified copy was already stored; it now counts as freshly written.
    AlreadyPresent,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The chunk was removed.
    Removed,
    /// There was no such chunk.
    Absent,
    /// The chunk was written more recently than the caller allowed, so it was kept.
    KeptRecentlyWritten,
}

/// Space and contents, for heartbeats and `Ping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes the store may use.
    pub capacity_bytes: u64,
    /// Bytes of chunk data held.
    pub used_bytes: u64,
    /// Chunks held.
    pub chunk_count: u64,
}

/// The chunk files under one data directory.
pub struct ChunkStore {
    root: PathBuf,
    /// A configured limit; without one the filesystem's own size and free space decide.
    capacity_limit: Option<u64>,
    used_bytes: AtomicU64,
    chunk_count: AtomicU64,
    /// A write of a chunk and a delete of it never interleave, so a delete never removes a
    /// chunk that a write has just reported as stored.
    chunk_locks: Vec<Mutex<()>>,
}

impl ChunkStore {
    /// Opens the store in `root`, creating its directories, discarding temp files left by a
    /// crash, and counting the chunks held.
    pub fn open(root: &Path, capacity_limit: Option<u64>) -> Result<Self, StoreError> {
        for dir in [CHUNKS_DIR, TMP_DIR, CORRUPT_DIR] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(|e| StoreError::io("create", &path, e))?;
        }
        let tmp = root.join(TMP_DIR);
        for entry in fs::read_dir(&tmp).map_err(|e| StoreError::io("list", &tmp, e))? {
            let path = entry.map_err(|e| StoreError::io("list", &tmp, e))?.path();
            fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
            tracing::info!(path = %path.display(), "removed a temp file left by an interrupted write");
        }
        let store = Self {
            root: root.to_owned(),
            capacity_limit,
            used_bytes: AtomicU64::new(0),
            chunk_count: AtomicU64::new(0),
            chunk_locks: (0..CHUNK_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        };
        let (mut used, mut count) = (0, 0);
        store.for_each_chunk(|_, size| {
            used += size;
            count += 1;
        })?;
        store.used_bytes.store(used, Ordering::Relaxed);
        store.chunk_count.store(count, Ordering::Relaxed);
        Ok(store)
    }

    fn path_of(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(CHUNKS_DIR).join(&hex[..2]).join(hex)
    }

    fn lock(&self, id: &ChunkId) -> std::sync::MutexGuard<'_, ()> {
        let stripe = usize::from(id.as_bytes()[0]) % self.chunk_locks.len();
        // The guarded data is `()`: a panic elsewhere leaves nothing inconsistent behind.
        self.chunk_locks[stripe]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores `data` as chunk `id` after checking that it hashes to `id`. Writing a chunk that
    /// is already held refreshes its write time, which protects it from
    /// [`ChunkStore::delete`] with a `min_idle` for that long again.
    pub fn put(&self, id: &ChunkId, data: &[u8]) -> Result<Written, StoreError> {
        let got = ChunkId::of(data);
        if got != *id {
            return Err(StoreError::ChecksumMismatch { expected: *id, got });
        }
        let path = self.path_of(id);
        let _guard = self.lock(id);
        match self.get(id) {
            Ok(_) => {
                touch(&path)?;
                return Ok(Written::AlreadyPresent);
            }
            Err(StoreError::NotFound { .. } | StoreError::Corrupt { .. }) => {}
            Err(other) => return Err(other),
        }
        let size = data.len() as u64;
        let stats = self.stats()?;
        let available = stats.capacity_bytes.saturating_sub(stats.used_bytes);
        if size > available {
            return Err(StoreError::Full {
                needed: size,
                available,
            });
        }
        let shard = path.parent().expect("chunk paths have a shard directory");
        if !shard.exists() {
            fs::create_dir_all(shard).map_err(|e| StoreError::io("create", shard, e))?;
            sync_dir(&self.root.join(CHUNKS_DIR))?;
        }
        let tmp =
            self.root
                .join(TMP_DIR)
                .join(format!("{}.{:016x}", id.to_hex(), rand::random::<u64>()));
        let written = write_synced(&tmp, data).and_then(|()| {
            fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &path, e))?;
            sync_dir(shard)
        });
        if let Err(error) = written {
            // Never leave a torn file behind; the temp directory is swept at start anyway.
            let _ = fs::remove_file(&tmp);
            return Err(error);
        }
        self.used_bytes.fetch_add(size, Ordering::Relaxed);
        self.chunk_count.fetch_add(1, Ordering::Relaxed);
        Ok(Written::Stored)
    }

    /// Reads chunk `id`, verified. A copy that fails verification is quarantined and reported
    /// as [`StoreError::Corrupt`].
    pub fn get(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(id);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { id: *id });
            }
            Err(e) => return Err(StoreError::io("open", &path, e)),
        };
        let mut data = Vec::new();
        Read::by_ref(&mut file)
            .take(MAX_CHUNK_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| StoreError::io("read", &path, e))?;
        let got = ChunkId::of(&data);
        if got != *id {
            self.quarantine(id, &path, data.len() as u64);
            return Err(StoreError::Corrupt { id: *id, got });
        }
        Ok(data)
    }

    /// Moves a bad copy out of the index, keeping it for inspection.
    fn quarantine(&self, id: &ChunkId, path: &Path, size: u64) {
        let target = self.root.join(CORRUPT_DIR).join(format!(
            "{}.{:016x}",
            id.to_hex(),
            rand::random::<u64>()
        ));
        match fs::rename(path, &target) {
            Ok(()) => {
                self.used_bytes.fetch_sub(
                    size.min(self.used_bytes.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                self.chunk_count.fetch_sub(1, Ordering::Relaxed);
                tracing::error!(chunk = %id, moved_to = %target.display(), "chunk failed verification and was quarantined");
            }
            Err(error) => {
                tracing::error!(chunk = %id, %error, "chunk failed verification and could not be quarantined");
            }
        }
    }

    /// Removes chunk `id`, unless it was written less than `min_idle` ago.
    pub fn delete(&self, id: &ChunkId, min_idle: Duration) -> Result<Deleted, StoreError> {
        let path = self.path_of(id);
        let _guard = self.lock(id);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Deleted::Absent),
            Err(e) => return Err(StoreError::io("stat", &path, e)),
        };
        if !min_idle.is_zero() {
            let written = meta
                .modified()
                .map_err(|e| StoreError::io("stat", &path, e))?;
            // A write time in the future (a clock stepped back) counts as just written.
            let idle = SystemTime::now()
                .duration_since(written)
                .unwrap_or(Duration::ZERO);
            if idle < min_idle {
                return Ok(Deleted::KeptRecentlyWritten);
            }
        }
        let size = meta.len();
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Deleted::Absent),
            Err(e) => return Err(StoreError::io("remove", &path, e)),
        }
        if let Some(shard) = path.parent() {
            sync_dir(shard)?;
        }
        self.used_bytes.fetch_sub(size, Ordering::Relaxed);
        self.chunk_count.fetch_sub(1, Ordering::Relaxed);
        Ok(Deleted::Removed)
    }

    /// Calls `visit` with the id and size of every chunk held, shard by shard. Files whose
    /// names are not chunk ids are skipped with a warning.
    pub fn for_each_chunk(&self, mut visit: impl FnMut(ChunkId, u64)) -> Result<(), StoreError> {
        let chunks = self.root.join(CHUNKS_DIR);
        let mut shards: Vec<_> = fs::read_dir(&chunks)
            .map_err(|e| StoreError::io("list", &chunks, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::io("list", &chunks, e))?;
        shards.sort_by_key(fs::DirEntry::file_name);
        for shard in shards {
            let shard = shard.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&shard).map_err(|e| StoreError::io("list", &shard, e))? {
                let entry = entry.map_err(|e| StoreError::io("list", &shard, e))?;
                let name = entry.file_name();
                let Some(id) = name.to_str().and_then(|n| n.parse::<ChunkId>().ok()) else {
                    tracing::warn!(path = %entry.path().display(), "ignoring a file that is not a chunk");
                    continue;
                };
                let size = entry
                    .metadata()
                    .map_err(|e| StoreError::io("stat", &entry.path(), e))?
                    .len();
                visit(id, size);
            }
        }
        Ok(())
    }

    /// Capacity, bytes used and chunks held.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let used_bytes = self.used_bytes.load(Ordering::Relaxed);
        let capacity_bytes = match self.capacity_limit {
            Some(limit) => limit,
            None => {
                let fs = rustix::fs::statvfs(&self.root)
                    .map_err(|e| StoreError::io("statvfs", &self.root, e.into()))?;
                let free = fs.f_bavail.saturating_mul(fs.f_frsize);
                used_bytes.saturating_add(free)
            }
        };
        Ok(StoreStats {
            capacity_bytes,
            used_bytes,
            chunk_count: self.chunk_count.load(Ordering::Relaxed),
        })
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| StoreError::io("create", path, e))?;
    file.write_all(data)
        .map_err(|e| StoreError::io("write", path, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", path, e))
}

/// Marks the chunk file at `path` as written now.
fn touch(path: &Path) -> Result<(), StoreError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(SystemTime::now()))
        .map_err(|e| StoreError::io("touch", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync", dir, e))
}

#[cfg(test)]
mod tests;
