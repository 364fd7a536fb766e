//! In-memory log store for simulation and tests: the same contract as the fjall store,
//! with every append "durable" at once. Clones share one log, so a simulated crash can drop
//! the replication core and rebuild it over the surviving store.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{Dot, NodeId, Seq, VersionVector};
use crate::error::{StoreError, StoreResult};
use crate::op::Op;
use crate::store::{LogBase, LogStore, admit};

/// A log held in memory, encoded exactly as on disk so the codec is exercised too.
pub struct MemStore<P> {
    inner: Arc<Mutex<MemLog>>,
    payload: PhantomData<fn() -> P>,
}

#[derive(Default)]
struct MemLog {
    ops: BTreeMap<Dot, Vec<u8>>,
    frontier: VersionVector,
    base: LogBase,
}

impl<P> MemStore<P> {
    /// An empty log.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            payload: PhantomData,
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemLog> {
        self.inner
            .lock()
            .expect("memory log lock poisoned by a panic in another thread")
    }
}

impl<P> Default for MemStore<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Clone for MemStore<P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            payload: PhantomData,
        }
    }
}

impl<P: Serialize + DeserializeOwned> LogStore<P> for MemStore<P> {
    fn append(&self, ops: &[Op<P>]) -> StoreResult<()> {
        let encoded: Vec<_> = ops.iter().map(|op| (op.dot, op.encode())).collect();
        let mut log = self.lock();
        let mut frontier = log.frontier.clone();
        admit(&mut frontier, ops)?;
        log.ops.extend(encoded);
        log.frontier = frontier;
        Ok(())
    }

    fn frontier(&self) -> VersionVector {
        self.lock().frontier.clone()
    }

    fn read(
        &self,
        origin: NodeId,
        seqs: RangeInclusive<Seq>,
        limit: usize,
    ) -> StoreResult<Vec<Op<P>>> {
        let log = self.lock();
        let first = (*seqs.start()).max(log.base.frontier.get(origin).next());
        if first > *seqs.end() {
            return Ok(Vec::new());
        }
        let range = Dot::new(origin, first)..=Dot::new(origin, *seqs.end());
        log.ops
            .range(range)
            .take(limit)
            .map(|(dot, bytes)| {
                Op::decode(bytes).map_err(|source| StoreError::Corrupt {
                    location: format!("memory log at {dot}"),
                    source,
                })
            })
            .collect()
    }

    fn base(&self) -> LogBase {
        self.lock().base.clone()
    }

    fn rebase(&self, base: &LogBase) -> StoreResult<u64> {
        let mut log = self.lock();
        let base = log.base.merged(base);
        let before = log.ops.len();
        log.ops.retain(|dot, _| !base.frontier.contains(*dot));
        log.frontier.merge(&base.frontier);
        log.base = base;
        Ok((before - log.ops.len()) as u64)
    }
}
