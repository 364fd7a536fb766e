//! The durable log store on fjall, with group commit.
//!
//! Layout: keyspace `ops` maps `origin (8 bytes BE) ++ seq (8 bytes BE)` to the encoded
//! operation; keyspace `heads` maps `origin` to its highest seq (8 bytes BE). Both change in
//! one atomic batch, so a crash never exposes half an append. Keyspace `base` holds the
//! [`LogBase`] under one key: a rebase writes it (with the heads it raises) and syncs before
//! it deletes the operations it covers, so a crash in between leaves only operations that
//! reads already skip, and the next rebase deletes them.
//!
//! Group commit: an append is admitted and queued under a short lock. The first appender to
//! find no sync in progress becomes the leader: it writes every queued append as one atomic
//! batch and issues one fsync, while later appenders queue up for the next group. Readers see
//! only what is synced.
//!
//! A full disk: fjall poisons a database whose write fails, whatever the reason, so the store
//! halts. [`FjallStore::resume`] writes a probe file to see whether there is room again, and
//! if so opens the database afresh (recovery drops a torn batch whole) and takes appends
//! again. Any other failure halts it for good: only a restart recovers.

use std::io::Write as _;
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{Dot, NodeId, Seq, VersionVector};
use crate::error::{DecodeError, DiskFullKind, StoreError, StoreResult};
use crate::op::Op;
use crate::store::{LogBase, LogStore, admit};

const OPS_KEYSPACE: &str = "ops";
const HEADS_KEYSPACE: &str = "heads";
const BASE_KEYSPACE: &str = "base";
const BASE_KEY: &[u8] = b"base";
/// Whatever the journal holds beyond the tables is replayed into memory by every open: a
/// restart, and every `redcloud log` command, which opens a copy. With the storage engine's
/// defaults (64 MiB memtables, 512 MiB of journals) that replay took 0.43 s of a 1.9 s
/// million-operation `log rebuild`; bounded as here, 0.2 s, at the price of smaller tables
/// to compact. A keyspace keeps the memtable size it was created with.
const MAX_MEMTABLE_BYTES: u64 = 16 << 20;
/// The engine's smallest allowed journal bound: beyond it, memtables that pin old journals
/// (the small `heads` one) are flushed.
const MAX_JOURNAL_BYTES: u64 = 64 << 20;
/// Operations deleted per batch when a rebase drops what its base covers.
const REBASE_DELETE_BATCH: usize = 16 * 1024;

/// Bytes [`FjallStore::resume`] writes to see whether the disk has room again: enough for a
/// burst of batches. Should a later write still find none, the store halts again and the next
/// resume probes again.
const SPACE_PROBE_BYTES: usize = 1024 * 1024;
/// The probe's file, in the database directory (fjall reads only its own files there).
const SPACE_PROBE_FILE: &str = "space-probe.tmp";

/// A log store in a fjall database directory.
///
/// A directory can be open in one store at a time; a second open fails while the first lives.
pub struct FjallStore<P> {
    dir: PathBuf,
    /// The database, closed only while a full disk keeps [`FjallStore::resume`] from opening
    /// it again.
    engine: RwLock<Engine>,
    group: Mutex<GroupCommit>,
    /// Wakes appenders waiting for their group's fsync.
    synced: Condvar,
    /// The frontier of synced operations: what readers and peers may see.
    durable: RwLock<VersionVector>,
    /// Where the history starts (durable).
    base: RwLock<LogBase>,
    /// fsyncs issued since open; fewer than appends when group commit is sharing them.
    syncs: AtomicU64,
    payload: PhantomData<fn() -> P>,
}

/// The fjall database and its two keyspaces, or why it is closed.
enum Engine {
    Open {
        db: Database,
        ops: Keyspace,
        heads: Keyspace,
        base: Keyspace,
    },
    /// Closed for a reopen that found the disk full; reads fail until a resume opens it.
    Closed(DiskFullKind),
}

/// Why the store takes no more appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    /// The disk is full: [`FjallStore::resume`] opens the database again once it has room.
    DiskFull(DiskFullKind),
    /// The database is poisoned for another reason (a failed fsync, a panic): only a restart
    /// recovers it.
    Poisoned,
}

impl Halt {
    fn error(self) -> StoreError {
        match self {
            Halt::DiskFull(kind) => StoreError::DiskFull { kind },
            Halt::Poisoned => StoreError::Engine(fjall::Error::Poisoned),
        }
    }
}

/// Appends admitted but not yet known durable, and the bookkeeping of whose fsync is whose.
struct GroupCommit {
    /// Frontier of everything admitted, synced or queued: new appends are checked against it.
    admitted: VersionVector,
    /// Encoded operations waiting for the next leader, in admission order.
    queue: Vec<(Dot, Vec<u8>)>,
    /// Tickets are handed out in admission order; every ticket up to `synced` is durable.
    issued: u64,
    synced: u64,
    /// Whether a leader is writing and syncing right now.
    leader_active: bool,
    /// Set when a group failed: the database is poisoned and every later append fails too,
    /// until a resume (after a full disk) clears it.
    halt: Option<Halt>,
}

fn op_key(dot: Dot) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&dot.origin.to_be_bytes());
    key[8..].copy_from_slice(&dot.seq.get().to_be_bytes());
    key
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn corrupt(location: String, reason: &str) -> StoreError {
    StoreError::Corrupt {
        location,
        source: DecodeError::Malformed {
            reason: reason.to_owned(),
        },
    }
}

impl Engine {
    /// Opens the database in `dir`; returns it with its frontier (the heads joined with the
    /// base) and its base.
    fn open(dir: &Path) -> StoreResult<(Self, VersionVector, LogBase)> {
        let db = Database::builder(dir)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()?;
        let ops = db.keyspace(OPS_KEYSPACE, || {
            KeyspaceCreateOptions::default().max_memtable_size(MAX_MEMTABLE_BYTES)
        })?;
        let heads = db.keyspace(HEADS_KEYSPACE, KeyspaceCreateOptions::default)?;
        let base_keyspace = db.keyspace(BASE_KEYSPACE, KeyspaceCreateOptions::default)?;
        let base: LogBase = match base_keyspace.get(BASE_KEY)? {
            None => LogBase::default(),
            Some(bytes) => {
                crate::op::decode_versioned(&bytes).map_err(|source| StoreError::Corrupt {
                    location: format!("{BASE_KEYSPACE}/base"),
                    source,
                })?
            }
        };
        let mut frontier = base.frontier.clone();
        for entry in heads.iter() {
            let (key, value) = entry.into_inner()?;
            let location = format!("{HEADS_KEYSPACE}/{}", hex::encode(&key));
            let (Some(origin), Some(seq)) = (be_u64(&key), be_u64(&value)) else {
                return Err(corrupt(location, "head entry is not two 8-byte integers"));
            };
            let head = Dot::new(NodeId::new(origin), Seq::new(seq));
            let covered = base.frontier.contains(head);
            if seq == 0 || seq == u64::MAX || !(covered || ops.contains_key(op_key(head))?) {
                return Err(corrupt(
                    location,
                    "head names an operation that is not stored",
                ));
            }
            frontier.raise(head.origin, head.seq);
        }
        let engine = Engine::Open {
            db,
            ops,
            heads,
            base: base_keyspace,
        };
        Ok((engine, frontier, base))
    }

    /// The open database and its keyspaces.
    fn open_parts(&self) -> StoreResult<(&Database, &Keyspace, &Keyspace)> {
        match self {
            Engine::Open { db, ops, heads, .. } => Ok((db, ops, heads)),
            Engine::Closed(kind) => Err(StoreError::DiskFull { kind: *kind }),
        }
    }

    /// The keyspace of the base.
    fn base_keyspace(&self) -> StoreResult<&Keyspace> {
        match self {
            Engine::Open { base, .. } => Ok(base),
            Engine::Closed(kind) => Err(StoreError::DiskFull { kind: *kind }),
        }
    }
}

/// Writes [`SPACE_PROBE_BYTES`] to a file in `dir`, syncs and removes it. The bytes vary, so
/// that a compressing filesystem has to store them too.
fn probe_space(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(SPACE_PROBE_FILE);
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let bytes: Vec<u8> = (0..SPACE_PROBE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&bytes)?;
        file.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

impl<P> FjallStore<P> {
    /// Opens (creating if needed) the log in `dir`, recovering the journal after a crash.
    ///
    /// Fails with [`StoreError::Corrupt`] when the recorded heads do not match the operations.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let (engine, frontier, base) = Engine::open(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            engine: RwLock::new(engine),
            group: Mutex::new(GroupCommit {
                admitted: frontier.clone(),
                queue: Vec::new(),
                issued: 0,
                synced: 0,
                leader_active: false,
                halt: None,
            }),
            synced: Condvar::new(),
            durable: RwLock::new(frontier),
            base: RwLock::new(base),
            syncs: AtomicU64::new(0),
            payload: PhantomData,
        })
    }

    /// Takes appends again after a full disk, once there is room: writes a probe file, then
    /// opens the database afresh (fjall never writes again to a database whose write failed).
    /// The frontier is read anew: a batch the disk took whole before refusing counts.
    ///
    /// `Ok` when the store takes appends; [`StoreError::DiskFull`] while there is still no
    /// room (call again later); any other error means only a restart can recover. It holds
    /// the group lock throughout: a halted store has no leader, and no appender gets in.
    pub fn resume(&self) -> StoreResult<()> {
        let mut group = self.group();
        let kind = match group.halt {
            None => return Ok(()),
            Some(Halt::Poisoned) => return Err(Halt::Poisoned.error()),
            Some(Halt::DiskFull(kind)) => kind,
        };
        probe_space(&self.dir).map_err(|e| StoreError::from(fjall::Error::Io(e)))?;
        let mut engine = self
            .engine
            .write()
            .expect("engine lock poisoned by a panic in another thread");
        // A directory is open in one database at a time: the poisoned one goes first.
        *engine = Engine::Closed(kind);
        let (reopened, frontier, base) = Engine::open(&self.dir)?;
        *engine = reopened;
        group.admitted = frontier.clone();
        group.queue.clear();
        group.synced = group.issued;
        group.halt = None;
        *self
            .durable
            .write()
            .expect("durable frontier lock poisoned by a panic in another thread") = frontier;
        *self
            .base
            .write()
            .expect("base lock poisoned by a panic in another thread") = base;
        Ok(())
    }

    /// Bytes the database occupies on disk.
    pub fn disk_space(&self) -> StoreResult<u64> {
        let engine = self.engine();
        let (db, _, _) = engine.open_parts()?;
        Ok(db.disk_space()?)
    }

    /// How many fsyncs the store has issued since it was opened.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn group(&self) -> MutexGuard<'_, GroupCommit> {
        self.group
            .lock()
            .expect("group commit lock poisoned by a panic in another thread")
    }

    fn engine(&self) -> RwLockReadGuard<'_, Engine> {
        self.engine
            .read()
            .expect("engine lock poisoned by a panic in another thread")
    }

    /// Deletes the stored operations `base` covers, a batch at a time; returns how many.
    fn delete_covered(&self, base: &VersionVector) -> StoreResult<u64> {
        let engine = self.engine();
        let (db, ops, heads) = engine.open_parts()?;
        let mut deleted = 0u64;
        for (origin, last) in base.iter() {
            loop {
                let range = op_key(Dot::new(origin, Seq::new(1)))..=op_key(Dot::new(origin, last));
                let keys = ops
                    .range(range)
                    .take(REBASE_DELETE_BATCH)
                    .map(|entry| entry.key().map(|key| key.to_vec()))
                    .collect::<Result<Vec<_>, _>>()?;
                if keys.is_empty() {
                    break;
                }
                let mut batch = db.batch();
                for key in &keys {
                    batch.remove(ops, key.as_slice());
                }
                batch.commit()?;
                deleted += keys.len() as u64;
            }
        }
        if deleted > 0 {
            // Deletions are tombstones until a compaction, and a journal is kept until every
            // keyspace has flushed what it holds of it: flush all three, then compact.
            for keyspace in [ops, heads, engine.base_keyspace()?] {
                keyspace.rotate_memtable_and_wait()?;
            }
            ops.major_compact()?;
        }
        Ok(deleted)
    }

    /// Writes `queue` as one atomic batch, heads included, and syncs it.
    fn write_group(&self, queue: Vec<(Dot, Vec<u8>)>, heads: &VersionVector) -> StoreResult<()> {
        let engine = self.engine();
        let (db, ops, heads_keyspace) = engine.open_parts()?;
        let mut batch = db.batch();
        for (dot, bytes) in queue {
            batch.insert(ops, op_key(dot), bytes);
        }
        for (origin, seq) in heads.iter() {
            batch.insert(
                heads_keyspace,
                origin.to_be_bytes(),
                seq.get().to_be_bytes(),
            );
        }
        batch.commit()?;
        db.persist(PersistMode::SyncAll)?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Why a failed group halts the store. fjall reports a database poisoned earlier (by a
    /// flush or compaction in the background, which may have run out of space too) only as
    /// `Poisoned`: a probe tells whether the disk is full.
    fn halt_after(&self, error: StoreError) -> (Halt, StoreError) {
        match error {
            StoreError::DiskFull { kind } => (Halt::DiskFull(kind), error),
            StoreError::Engine(fjall::Error::Poisoned) => {
                match probe_space(&self.dir)
                    .err()
                    .and_then(|e| DiskFullKind::of(&e))
                {
                    Some(kind) => (Halt::DiskFull(kind), StoreError::DiskFull { kind }),
                    None => (Halt::Poisoned, error),
                }
            }
            other => (Halt::Poisoned, other),
        }
    }
}

/// Ends a leader's turn however it ends: on success the group is marked synced; on error or
/// panic the store is halted. Either way the waiting appenders are woken, so a leader that
/// dies never leaves them waiting forever.
struct LeaderGuard<'s, P> {
    store: &'s FjallStore<P>,
    finished: Option<Result<u64, Halt>>,
}

impl<P> LeaderGuard<'_, P> {
    /// `outcome` is the last ticket now durable, or why the store halts.
    fn finish(mut self, outcome: Result<u64, Halt>) {
        self.finished = Some(outcome);
    }
}

impl<P> Drop for LeaderGuard<'_, P> {
    fn drop(&mut self) {
        let mut group = self
            .store
            .group
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        group.leader_active = false;
        match self.finished {
            Some(Ok(through)) => group.synced = through,
            Some(Err(halt)) => group.halt = Some(halt),
            None => group.halt = Some(Halt::Poisoned),
        }
        drop(group);
        self.store.synced.notify_all();
    }
}

impl<P: Serialize + DeserializeOwned> LogStore<P> for FjallStore<P> {
    fn append(&self, ops: &[Op<P>]) -> StoreResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let encoded: Vec<_> = ops.iter().map(|op| (op.dot, op.encode())).collect();
        let mut group = self.group();
        if let Some(halt) = group.halt {
            return Err(halt.error());
        }
        let mut admitted = group.admitted.clone();
        admit(&mut admitted, ops)?;
        group.admitted = admitted;
        group.queue.extend(encoded);
        group.issued += 1;
        let ticket = group.issued;
        loop {
            // Synced first: a group that made it is durable even if a later one failed.
            if group.synced >= ticket {
                return Ok(());
            }
            if let Some(halt) = group.halt {
                return Err(halt.error());
            }
            if !group.leader_active {
                break;
            }
            group = self
                .synced
                .wait(group)
                .expect("group commit lock poisoned by a panic in another thread");
        }
        // Lead: write and sync every queued append, ours included, while others queue anew.
        group.leader_active = true;
        let queue = std::mem::take(&mut group.queue);
        let through = group.issued;
        let heads = group.admitted.clone();
        drop(group);
        let leader = LeaderGuard {
            store: self,
            finished: None,
        };
        match self.write_group(queue, &heads) {
            Ok(()) => {
                self.durable
                    .write()
                    .expect("durable frontier lock poisoned by a panic in another thread")
                    .merge(&heads);
                leader.finish(Ok(through));
                Ok(())
            }
            Err(error) => {
                let (halt, error) = self.halt_after(error);
                leader.finish(Err(halt));
                Err(error)
            }
        }
    }

    fn frontier(&self) -> VersionVector {
        self.durable
            .read()
            .expect("durable frontier lock poisoned by a panic in another thread")
            .clone()
    }

    fn read(
        &self,
        origin: NodeId,
        seqs: RangeInclusive<Seq>,
        limit: usize,
    ) -> StoreResult<Vec<Op<P>>> {
        let last = (*seqs.end()).min(LogStore::<P>::frontier(self).get(origin));
        if *seqs.start() > last || limit == 0 {
            return Ok(Vec::new());
        }
        let first = (*seqs.start()).max(LogStore::<P>::base(self).frontier.get(origin).next());
        if first > last {
            return Ok(Vec::new());
        }
        let range = op_key(Dot::new(origin, first))..=op_key(Dot::new(origin, last));
        let engine = self.engine();
        let (_, ops, _) = engine.open_parts()?;
        let mut out = Vec::new();
        let mut expected = Dot::new(origin, first);
        for entry in ops.range(range).take(limit) {
            let (key, value) = entry.into_inner()?;
            let location = || format!("{OPS_KEYSPACE}/{}", hex::encode(&key));
            if *key != op_key(expected) {
                return Err(corrupt(location(), "expected operation is missing"));
            }
            let op = Op::decode(&value).map_err(|source| StoreError::Corrupt {
                location: location(),
                source,
            })?;
            if op.dot != expected {
                return Err(corrupt(
                    location(),
                    "operation stored under another dot's key",
                ));
            }
            expected.seq = expected.seq.next();
            out.push(op);
        }
        if out.len() < limit && expected.seq <= last {
            return Err(corrupt(
                format!("{OPS_KEYSPACE}/{}", hex::encode(op_key(expected))),
                "expected operation is missing",
            ));
        }
        Ok(out)
    }

    fn base(&self) -> LogBase {
        self.base
            .read()
            .expect("base lock poisoned by a panic in another thread")
            .clone()
    }

    fn rebase(&self, base: &LogBase) -> StoreResult<u64> {
        let merged = {
            let mut group = self.group();
            if let Some(halt) = group.halt {
                return Err(halt.error());
            }
            let merged = LogStore::<P>::base(self).merged(base);
            let mut heads = group.admitted.clone();
            heads.merge(&merged.frontier);
            let encoded = crate::op::encode_versioned(&merged);
            let written = {
                let engine = self.engine();
                let (db, _, heads_keyspace) = engine.open_parts()?;
                let base_keyspace = engine.base_keyspace()?;
                let mut batch = db.batch();
                batch.insert(base_keyspace, BASE_KEY, encoded);
                for (origin, _) in merged.frontier.iter() {
                    let head = heads.get(origin).get().to_be_bytes();
                    batch.insert(heads_keyspace, origin.to_be_bytes(), head);
                }
                batch
                    .commit()
                    .and_then(|()| db.persist(PersistMode::SyncAll))
            };
            if let Err(error) = written {
                let (halt, error) = self.halt_after(error.into());
                group.halt = Some(halt);
                return Err(error);
            }
            group.admitted = heads.clone();
            self.durable
                .write()
                .expect("durable frontier lock poisoned by a panic in another thread")
                .merge(&merged.frontier);
            *self
                .base
                .write()
                .expect("base lock poisoned by a panic in another thread") = merged.clone();
            merged
        };
        self.delete_covered(&merged.frontier)
    }
}
