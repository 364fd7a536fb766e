//! The durable log store on fjall, with group commit.
//!
//! Layout: keyspace `ops` maps `origin (8 bytes BE) ++ seq (8 bytes BE)` to the encoded
//! operation; keyspace `heads` maps `origin` to its highest seq (8 bytes BE). Both change in
//! one atomic batch, so a crash never exposes half an append.
//!
//! Group commit: an append is admitted and queued under a short lock. The first appender to
//! find no sync in progress becomes the leader: it writes every queued append as one atomic
//! batch and issues one fsync, while later appenders queue up for the next group. Readers see
//! only what is synced.

use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{Dot, NodeId, Seq, VersionVector};
use crate::error::{DecodeError, StoreError, StoreResult};
use crate::op::Op;
use crate::store::{LogStore, admit};

const OPS_KEYSPACE: &str = "ops";
const HEADS_KEYSPACE: &str = "heads";

/// A log store in a fjall database directory.
///
/// A directory can be open in one store at a time; a second open fails while the first lives.
pub struct FjallStore<P> {
    db: Database,
    ops: Keyspace,
    heads: Keyspace,
    group: Mutex<GroupCommit>,
    /// Wakes appenders waiting for their group's fsync.
    synced: Condvar,
    /// The frontier of synced operations: what readers and peers may see.
    durable: RwLock<VersionVector>,
    /// fsyncs issued since open; fewer than appends when group commit is sharing them.
    syncs: AtomicU64,
    payload: PhantomData<fn() -> P>,
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
    /// Set when a group failed: the database is poisoned and every later append fails too.
    failed: bool,
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

impl<P> FjallStore<P> {
    /// Opens (creating if needed) the log in `dir`, recovering the journal after a crash.
    ///
    /// Fails with [`StoreError::Corrupt`] when the recorded heads do not match the operations.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let db = Database::builder(dir).open()?;
        let ops = db.keyspace(OPS_KEYSPACE, KeyspaceCreateOptions::default)?;
        let heads = db.keyspace(HEADS_KEYSPACE, KeyspaceCreateOptions::default)?;
        let mut frontier = VersionVector::new();
        for entry in heads.iter() {
            let (key, value) = entry.into_inner()?;
            let location = format!("{HEADS_KEYSPACE}/{}", hex::encode(&key));
            let (Some(origin), Some(seq)) = (be_u64(&key), be_u64(&value)) else {
                return Err(corrupt(location, "head entry is not two 8-byte integers"));
            };
            let head = Dot::new(NodeId::new(origin), Seq::new(seq));
            if seq == 0 || seq == u64::MAX || !ops.contains_key(op_key(head))? {
                return Err(corrupt(
                    location,
                    "head names an operation that is not stored",
                ));
            }
            frontier.raise(head.origin, head.seq);
        }
        Ok(Self {
            db,
            ops,
            heads,
            group: Mutex::new(GroupCommit {
                admitted: frontier.clone(),
                queue: Vec::new(),
                issued: 0,
                synced: 0,
                leader_active: false,
                failed: false,
            }),
            synced: Condvar::new(),
            durable: RwLock::new(frontier),
            syncs: AtomicU64::new(0),
            payload: PhantomData,
        })
    }

    /// Bytes the database occupies on disk.
    pub fn disk_space(&self) -> StoreResult<u64> {
        Ok(self.db.disk_space()?)
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

    /// Writes `queue` as one atomic batch, heads included, and syncs it.
    fn write_group(&self, queue: Vec<(Dot, Vec<u8>)>, heads: &VersionVector) -> StoreResult<()> {
        let mut batch = self.db.batch();
        for (dot, bytes) in queue {
            batch.insert(&self.ops, op_key(dot), bytes);
        }
        for (origin, seq) in heads.iter() {
            batch.insert(&self.heads, origin.to_be_bytes(), seq.get().to_be_bytes());
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Ends a leader's turn however it ends: on success the group is marked synced; on error or
/// panic the store is marked failed. Either way the waiting appenders are woken, so a leader
/// that dies never leaves them waiting forever.
struct LeaderGuard<'s, P> {
    store: &'s FjallStore<P>,
    finished: Option<Option<u64>>,
}

impl<P> LeaderGuard<'_, P> {
    /// `synced_through` is the last ticket now durable, or `None` after a failure.
    fn finish(mut self, synced_through: Option<u64>) {
        self.finished = Some(synced_through);
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
        match self.finished.flatten() {
            Some(through) => group.synced = through,
            None => group.failed = true,
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
        if group.failed {
            return Err(fjall::Error::Poisoned.into());
        }
        let mut admitted = group.admitted.clone();
        admit(&mut admitted, ops)?;
        group.admitted = admitted;
        group.queue.extend(encoded);
        group.issued += 1;
        let ticket = group.issued;
        loop {
            if group.failed {
                return Err(fjall::Error::Poisoned.into());
            }
            if group.synced >= ticket {
                return Ok(());
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
        let written = self.write_group(queue, &heads);
        if written.is_ok() {
            self.durable
                .write()
                .expect("durable frontier lock poisoned by a panic in another thread")
                .merge(&heads);
        }
        leader.finish(written.is_ok().then_some(through));
        written
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
        let range = op_key(Dot::new(origin, *seqs.start()))..=op_key(Dot::new(origin, last));
        let mut out = Vec::new();
        let mut expected = Dot::new(origin, *seqs.start());
        for entry in self.ops.range(range).take(limit) {
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
}
