//! The durable log store on fjall, with group commit.
//!
//! Layout: keyspace `ops` maps `origin (8 bytes BE) ++ seq (8 bytes BE)` to the encoded
//! operation; keyspace `heads` maps `origin` to its highest seq (8 bytes BE). Both change in
//! one atomic batch, so a crash never exposes half an append.
//!
//! Group commit: an append writes its batch to the journal under a short lock, then waits for
//! an fsync that covers it. The first waiter becomes the leader and syncs everything written
//! so far; the others find their batch already covered. Readers see only what is synced.

use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};

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
    /// Everything written to the journal; appends are admitted against its frontier.
    written: Mutex<Written>,
    /// The number of batches known to be synced. Held by the leader across its fsync, so
    /// followers queue behind it instead of issuing their own.
    synced_batches: Mutex<u64>,
    /// The frontier of synced operations: what readers and peers may see.
    durable: RwLock<VersionVector>,
    payload: PhantomData<fn() -> P>,
}

struct Written {
    frontier: VersionVector,
    batches: u64,
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
            if seq == 0 || !ops.contains_key(op_key(head))? {
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
            written: Mutex::new(Written {
                frontier: frontier.clone(),
                batches: 0,
            }),
            synced_batches: Mutex::new(0),
            durable: RwLock::new(frontier),
            payload: PhantomData,
        })
    }

    /// Bytes the database occupies on disk.
    pub fn disk_space(&self) -> StoreResult<u64> {
        Ok(self.db.disk_space()?)
    }

    fn written(&self) -> MutexGuard<'_, Written> {
        self.written
            .lock()
            .expect("log write lock poisoned by a panic in another thread")
    }

    /// Waits until batch number `ticket` is synced, syncing it (and everything written before
    /// it) if no one else already has.
    fn sync_through(&self, ticket: u64) -> StoreResult<()> {
        let mut synced = self
            .synced_batches
            .lock()
            .expect("log sync lock poisoned by a panic in another thread");
        if *synced >= ticket {
            return Ok(());
        }
        let (batches, frontier) = {
            let written = self.written();
            (written.batches, written.frontier.clone())
        };
        self.db.persist(PersistMode::SyncAll)?;
        *synced = batches;
        self.durable
            .write()
            .expect("durable frontier lock poisoned by a panic in another thread")
            .merge(&frontier);
        Ok(())
    }
}

impl<P: Serialize + DeserializeOwned> LogStore<P> for FjallStore<P> {
    fn append(&self, ops: &[Op<P>]) -> StoreResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let encoded: Vec<_> = ops.iter().map(|op| (op.dot, op.encode())).collect();
        let ticket = {
            let mut written = self.written();
            let mut frontier = written.frontier.clone();
            admit(&mut frontier, ops)?;
            let mut batch = self.db.batch();
            for (dot, bytes) in encoded {
                batch.insert(&self.ops, op_key(dot), bytes);
            }
            for (origin, seq) in frontier.missing_from(&written.frontier) {
                batch.insert(
                    &self.heads,
                    origin.to_be_bytes(),
                    seq.end().get().to_be_bytes(),
                );
            }
            batch.commit()?;
            written.frontier = frontier;
            written.batches += 1;
            written.batches
        };
        self.sync_through(ticket)
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
