//! Log storage: the [`LogStore`] trait, its fjall and in-memory adapters, and causal-order
//! reading over any store.
//!
//! A store only ever holds a causally closed set of operations: [`LogStore::append`] itself
//! refuses an operation whose causal past is not already in the log.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Seq, VersionVector};
use crate::error::{NotReadyReason, StoreError, StoreResult};
use crate::hlc::Hlc;
use crate::op::Op;

pub mod fjall;
pub mod mem;

/// Where a log's history starts: the operations at or below `frontier` are no longer held one
/// by one, because a snapshot of the read model stands for them (the log was truncated below
/// a snapshot, or started from one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBase {
    /// Every operation at or below it is covered by the base, not held.
    pub frontier: VersionVector,
    /// The newest stamp among them, so that a node's new stamps still exceed every stamp its
    /// log ever covered.
    pub hlc: Hlc,
}

impl LogBase {
    /// The base covering both `self` and `other`.
    pub fn merged(&self, other: &LogBase) -> LogBase {
        let mut frontier = self.frontier.clone();
        frontier.merge(&other.frontier);
        LogBase {
            frontier,
            hlc: self.hlc.max(other.hlc),
        }
    }
}

/// Durable, append-only storage of operations, synchronous (call it off the async runtime).
///
/// Contract (checked by the shared suite in `tests/store_contract.rs` against every adapter):
/// - `append` is atomic and durable when it returns: all of the batch or none of it, on disk.
/// - It rejects any operation that is already present, not its origin's next seq, or whose
///   causal context is not covered by the log plus the earlier operations of the batch.
/// - `frontier` and `read` show only durable operations.
/// - The log holds every operation above its base and at or below its frontier; `frontier`
///   always covers `base`. `rebase` is durable when it returns.
/// - Safe to share between threads; concurrent appends may share one fsync.
pub trait LogStore<P>: Send + Sync {
    /// Appends `ops`, in order, atomically and durably.
    fn append(&self, ops: &[Op<P>]) -> StoreResult<()>;

    /// The highest durable seq of every origin.
    fn frontier(&self) -> VersionVector;

    /// Up to `limit` operations of `origin` with seqs in `seqs`, in seq order. Seqs at or
    /// below the base are skipped: the log no longer holds them.
    fn read(
        &self,
        origin: NodeId,
        seqs: RangeInclusive<Seq>,
        limit: usize,
    ) -> StoreResult<Vec<Op<P>>>;

    /// Where the log's history starts.
    fn base(&self) -> LogBase;

    /// Raises the base to cover `base` too, and stops holding the operations it covers; the
    /// frontier becomes the frontier joined with the base. Below the frontier this truncates
    /// the log; beyond it, it starts the log from a snapshot. The caller guarantees that a
    /// snapshot stands for everything the new base covers and that its frontier is causally
    /// closed where it goes beyond the log. Returns how many held operations were dropped.
    fn rebase(&self, base: &LogBase) -> StoreResult<u64>;
}

/// Checks that `ops` may follow a log whose frontier is `frontier`, advancing it past them.
/// On error `frontier` is partly advanced: pass a copy.
pub(crate) fn admit<P>(frontier: &mut VersionVector, ops: &[Op<P>]) -> StoreResult<()> {
    for op in ops {
        let reason = if op.validate().is_err() {
            Some(NotReadyReason::Malformed)
        } else if frontier.contains(op.dot) {
            Some(NotReadyReason::AlreadyPresent)
        } else if frontier.get(op.dot.origin).next() != op.dot.seq {
            Some(NotReadyReason::SeqGap)
        } else if !frontier.dominates(&op.deps) {
            Some(NotReadyReason::MissingDeps)
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(StoreError::NotReady {
                dot: op.dot,
                reason,
            });
        }
        frontier.raise(op.dot.origin, op.dot.seq);
    }
    Ok(())
}

/// A page of operations read in causal order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CausalPage<P> {
    /// Operations the reader lacked, each after its whole causal past.
    pub ops: Vec<Op<P>>,
    /// Whether the store holds further operations the reader lacks.
    pub more: bool,
}

/// Most operations read from one origin at a time while merging origins in causal order.
const READ_CHUNK_OPS: usize = 256;
/// Most operations a page is allocated room for up front (a caller may ask for pages of any
/// size; larger ones grow as they fill).
const PAGE_CAPACITY_MAX: usize = 16 * 1024;

/// Walks the operations a store holds beyond a starting frontier, in causal order, reading
/// each origin lazily in chunks so that nothing is read twice or far ahead of need.
///
/// Among the operations that are ready, the one with the smallest `(hlc, origin)` goes first,
/// so honest logs come out in stamp order.
struct CausalCursor<P> {
    origins: Vec<OriginCursor<P>>,
    known: VersionVector,
}

struct OriginCursor<P> {
    origin: NodeId,
    /// The next seq to read from the store, and the last one to read.
    next: Seq,
    last: Seq,
    queue: VecDeque<Op<P>>,
}

impl<P> CausalCursor<P> {
    fn new(frontier: &VersionVector, since: &VersionVector) -> Self {
        let origins = frontier
            .missing_from(since)
            .into_iter()
            .map(|(origin, seqs)| OriginCursor {
                origin,
                next: *seqs.start(),
                last: *seqs.end(),
                queue: VecDeque::new(),
            })
            .collect();
        Self {
            origins,
            known: since.clone(),
        }
    }

    /// Up to `max_ops` further operations; fewer only when the walk is over.
    fn next_page<S: LogStore<P> + ?Sized>(
        &mut self,
        store: &S,
        max_ops: usize,
    ) -> StoreResult<Vec<Op<P>>> {
        let chunk = max_ops.clamp(1, READ_CHUNK_OPS);
        let mut ops = Vec::with_capacity(max_ops.min(PAGE_CAPACITY_MAX));
        while ops.len() < max_ops {
            for cursor in &mut self.origins {
                if cursor.queue.is_empty() && cursor.next <= cursor.last {
                    let read = store.read(cursor.origin, cursor.next..=cursor.last, chunk)?;
                    let Some(last_read) = read.last() else {
                        // Below the frontier yet unreadable: stop this origin rather than loop.
                        cursor.next = cursor.last.next();
                        continue;
                    };
                    cursor.next = last_read.dot.seq.next();
                    cursor.queue.extend(read);
                }
            }
            let next = self
                .origins
                .iter()
                .enumerate()
                .filter_map(|(i, cursor)| cursor.queue.front().map(|op| (i, op)))
                .filter(|(_, op)| op.is_ready_for(&self.known))
                .min_by_key(|(_, op)| op.stamp())
                .map(|(i, _)| i);
            let Some(op) = next.and_then(|i| self.origins[i].queue.pop_front()) else {
                break;
            };
            self.known.raise(op.dot.origin, op.dot.seq);
            ops.push(op);
        }
        Ok(ops)
    }

    fn is_done(&self) -> bool {
        self.origins
            .iter()
            .all(|cursor| cursor.queue.is_empty() && cursor.next > cursor.last)
    }
}

/// Reads up to `max_ops` operations that `store` holds and `since` does not cover, in an order
/// where each comes after its causal past: a reader whose log has frontier `since` can append
/// them one by one. A reader whose frontier does not cover the store's base cannot: it needs
/// a snapshot first (the pages start at the base).
pub fn read_causal<P, S: LogStore<P> + ?Sized>(
    store: &S,
    since: &VersionVector,
    max_ops: usize,
) -> StoreResult<CausalPage<P>> {
    read_causal_until(store, since, &store.frontier(), max_ops)
}

/// [`read_causal`] of only the operations `until` covers: for a projection that must stop at
/// a given frontier, such as a snapshot's.
pub fn read_causal_until<P, S: LogStore<P> + ?Sized>(
    store: &S,
    since: &VersionVector,
    until: &VersionVector,
    max_ops: usize,
) -> StoreResult<CausalPage<P>> {
    let mut start = since.clone();
    start.merge(&store.base().frontier);
    let mut cursor = CausalCursor::new(&store.frontier().meet(until), &start);
    let ops = cursor.next_page(store, max_ops)?;
    Ok(CausalPage {
        ops,
        more: !cursor.is_done(),
    })
}

/// Reads every operation `store` holds in causal order, `page_ops` at a time, handing each
/// page to `visit`. Returns the number of operations visited. A rebased store's history
/// starts at its base: whoever replays must start from the snapshot that stands for it.
pub fn replay<P, S: LogStore<P> + ?Sized>(
    store: &S,
    page_ops: usize,
    mut visit: impl FnMut(Vec<Op<P>>),
) -> StoreResult<u64> {
    let mut cursor = CausalCursor::new(&store.frontier(), &store.base().frontier);
    let mut count = 0u64;
    loop {
        let page = cursor.next_page(store, page_ops.max(1))?;
        if page.is_empty() {
            return Ok(count);
        }
        count += page.len() as u64;
        visit(page);
    }
}
