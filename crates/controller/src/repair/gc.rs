//! Deciding which chunk copies to delete (pure).
//!
//! A chunk held by a chunkserver may be deleted only when no controller can still need it:
//! 1. every controller ever seen has recently reported a frontier, and this controller holds
//!    every operation of those frontiers: any file another controller knew of, this one knows
//!    of too;
//! 2. no live file of this controller's read model references the chunk;
//! 3. every deleted file that referenced it was deleted by an operation that every controller
//!    holds (below the pointwise minimum of their frontiers), so no controller still shows the
//!    file;
//! 4. the chunkserver itself keeps the chunk if it was written within the grace period (see
//!    `DeleteChunk.min_idle_ms`), which covers uploads in flight: an upload that is about to
//!    reference a chunk has written it (again) moments ago.
//!
//! A partition stops collection at rule 1 until it heals. Chunks that no file ever referenced
//! (the leftovers of failed uploads) are collected under rules 1 and 4.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redcloud_eventlog::{Dot, NodeId, VersionVector};
use redcloud_types::ChunkId;

/// What this controller knows of what every controller knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knowledge {
    /// This controller's own frontier (of its read model).
    pub local: VersionVector,
    /// Every other controller ever seen, with the age and contents of its newest report.
    pub reports: BTreeMap<NodeId, Option<(Duration, VersionVector)>>,
}

/// Why nothing can be collected right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// No frontier from this controller has arrived yet.
    NoReport(NodeId),
    /// Its newest frontier is older than allowed.
    StaleReport(NodeId, Duration),
    /// It reported operations this controller does not hold yet.
    AheadOfUs(NodeId),
}

impl Blocked {
    /// The controller collection waits for.
    pub fn node(&self) -> NodeId {
        match self {
            Self::NoReport(node) | Self::StaleReport(node, _) | Self::AheadOfUs(node) => *node,
        }
    }
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoReport(node) => write!(f, "no frontier from controller {node} yet"),
            Self::StaleReport(node, age) => {
                write!(
                    f,
                    "controller {node} last reported {} ms ago",
                    age.as_millis()
                )
            }
            Self::AheadOfUs(node) => write!(f, "controller {node} holds operations we lack"),
        }
    }
}

/// The operations every controller holds: the pointwise minimum of every frontier, provided
/// every controller's report is at most `max_age` old and within this controller's frontier.
pub fn stable_frontier(knowledge: &Knowledge, max_age: Duration) -> Result<VersionVector, Blocked> {
    let mut stable = knowledge.local.clone();
    for (node, report) in &knowledge.reports {
        let Some((age, frontier)) = report else {
            return Err(Blocked::NoReport(*node));
        };
        if *age > max_age {
            return Err(Blocked::StaleReport(*node, *age));
        }
        if frontier.count_missing_from(&knowledge.local) > 0 {
            return Err(Blocked::AheadOfUs(*node));
        }
        stable = stable.meet(frontier);
    }
    Ok(stable)
}

/// What the read model says about a chunk held somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkPast {
    /// A live file references it.
    Live,
    /// Only deleted files reference it: for each, the operations that deleted it.
    Deleted(Vec<Vec<Dot>>),
    /// No file references it (an upload that failed before it was recorded).
    Unreferenced,
}

/// Deletions to ask for, and what is still waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// (chunk, chunkserver node id) pairs to delete, capped per round.
    pub deletions: Vec<(ChunkId, String)>,
    /// Chunks no live file needs whose deletion some controller does not know yet.
    pub waiting: usize,
}

/// Plans up to `max_deletions` deletions of chunks that `pasts` shows no controller needs,
/// wherever `holdings` (chunkserver → chunks) shows a copy.
pub fn plan(
    pasts: &BTreeMap<ChunkId, ChunkPast>,
    holdings: &BTreeMap<String, BTreeSet<ChunkId>>,
    stable: &VersionVector,
    max_deletions: usize,
) -> GcPlan {
    let mut plan = GcPlan::default();
    for (chunk, past) in pasts {
        let collectible = match past {
            ChunkPast::Live => false,
            ChunkPast::Unreferenced => true,
            ChunkPast::Deleted(files) => files
                .iter()
                .all(|deletions| deletions.iter().any(|dot| stable.contains(*dot))),
        };
        if !collectible {
            if matches!(past, ChunkPast::Deleted(_)) {
                plan.waiting += 1;
            }
            continue;
        }
        for (node, chunks) in holdings {
            if plan.deletions.len() >= max_deletions {
                return plan;
            }
            if chunks.contains(chunk) {
                plan.deletions.push((*chunk, node.clone()));
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcloud_eventlog::Seq;

    fn node(n: u64) -> NodeId {
        NodeId::new(n)
    }

    fn vv(entries: &[(u64, u64)]) -> VersionVector {
        let mut vv = VersionVector::default();
        for (origin, seq) in entries {
            vv.raise(node(*origin), Seq::new(*seq));
        }
        vv
    }

    fn dot(origin: u64, seq: u64) -> Dot {
        Dot::new(node(origin), Seq::new(seq))
    }

    /// A report: (controller, Some((age in seconds, frontier entries)) or None).
    type Report<'a> = (u64, Option<(u64, &'a [(u64, u64)])>);

    fn knowledge(reports: &[Report<'_>]) -> Knowledge {
        Knowledge {
            local: vv(&[(1, 10), (2, 10)]),
            reports: reports
                .iter()
                .map(|(n, report)| {
                    (
                        node(*n),
                        report.map(|(age, frontier)| (Duration::from_secs(age), vv(frontier))),
                    )
                })
                .collect(),
        }
    }

    const MAX_AGE: Duration = Duration::from_secs(30);

    #[test]
    fn the_stable_frontier_is_what_every_controller_reported() {
        let k = knowledge(&[
            (2, Some((1, &[(1, 4), (2, 10)]))),
            (3, Some((2, &[(1, 9)]))),
        ]);
        assert_eq!(stable_frontier(&k, MAX_AGE), Ok(vv(&[(1, 4)])));
        assert_eq!(
            stable_frontier(&knowledge(&[]), MAX_AGE),
            Ok(vv(&[(1, 10), (2, 10)])),
            "alone, everything this controller holds is stable"
        );
    }

    #[test]
    fn a_silent_stale_or_further_controller_blocks_collection() {
        assert_eq!(
            stable_frontier(&knowledge(&[(2, Some((1, &[]))), (3, None)]), MAX_AGE),
            Err(Blocked::NoReport(node(3)))
        );
        assert_eq!(
            stable_frontier(&knowledge(&[(2, Some((31, &[])))]), MAX_AGE),
            Err(Blocked::StaleReport(node(2), Duration::from_secs(31)))
        );
        assert_eq!(
            stable_frontier(&knowledge(&[(2, Some((1, &[(2, 11)])))]), MAX_AGE),
            Err(Blocked::AheadOfUs(node(2))),
            "it may know a file that references the chunk"
        );
    }

    fn holdings(entries: &[(&str, &[u8])]) -> BTreeMap<String, BTreeSet<ChunkId>> {
        entries
            .iter()
            .map(|(n, chunks)| {
                (
                    (*n).to_owned(),
                    chunks.iter().map(|c| ChunkId::of(&[*c])).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn only_chunks_whose_every_file_deletion_is_stable_are_collected() {
        let c = |n: u8| ChunkId::of(&[n]);
        let pasts: BTreeMap<ChunkId, ChunkPast> = [
            (c(1), ChunkPast::Live),
            (c(2), ChunkPast::Deleted(vec![vec![dot(1, 3)]])),
            (
                c(3),
                ChunkPast::Deleted(vec![vec![dot(1, 3)], vec![dot(1, 7)]]),
            ),
            (c(4), ChunkPast::Deleted(vec![vec![dot(1, 7), dot(2, 1)]])),
            (c(5), ChunkPast::Unreferenced),
        ]
        .into_iter()
        .collect();
        let have = holdings(&[("a", &[1, 2, 3, 4, 5]), ("b", &[2, 5])]);
        let gc = plan(&pasts, &have, &vv(&[(1, 5), (2, 1)]), 100);
        let mut deleted = gc.deletions.clone();
        deleted.sort();
        let mut expected = vec![
            (c(2), "a".to_owned()),
            (c(2), "b".to_owned()),
            (c(4), "a".to_owned()),
            (c(5), "a".to_owned()),
            (c(5), "b".to_owned()),
        ];
        expected.sort();
        assert_eq!(
            deleted, expected,
            "chunk 3 still belongs to a file deleted at 1:7, which some controller may not know"
        );
        assert_eq!(gc.waiting, 1);

        assert_eq!(
            plan(&pasts, &have, &vv(&[(1, 5), (2, 1)]), 2)
                .deletions
                .len(),
            2
        );
    }
}
