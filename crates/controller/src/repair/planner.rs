//! Deciding which chunk copies to make (pure): every chunk a live file references should be on
//! every healthy chunkserver. Chunks with the fewest copies go first; each round is capped.

use std::collections::{BTreeMap, BTreeSet};

use redcloud_types::ChunkId;

/// One copy to make: `target` pulls `chunk` from `source` (chunkserver node ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The chunk.
    pub chunk: ChunkId,
    /// Who holds it.
    pub source: String,
    /// Who lacks it.
    pub target: String,
}

/// What a round found and chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Copies to make this round, fewest-copies chunks first.
    pub copies: Vec<Copy>,
    /// Referenced chunks not on every healthy chunkserver.
    pub under_replicated: usize,
    /// Referenced chunks no healthy chunkserver holds: nothing to copy from right now.
    pub unavailable: usize,
}

/// Plans up to `max_copies` copies so that every `referenced` chunk ends up on every chunkserver
/// of `holdings` (healthy chunkserver → the chunks it reports). The source of each copy is the
/// holder that is currently the source of the fewest copies, to spread the load.
pub fn plan(
    referenced: &BTreeSet<ChunkId>,
    holdings: &BTreeMap<String, BTreeSet<ChunkId>>,
    max_copies: usize,
) -> Plan {
    let mut needy: Vec<(usize, ChunkId, Vec<&String>, Vec<&String>)> = Vec::new();
    let mut plan = Plan::default();
    for chunk in referenced {
        let (holders, lacking): (Vec<&String>, Vec<&String>) = holdings
            .keys()
            .partition(|node| holdings[*node].contains(chunk));
        if lacking.is_empty() {
            continue;
        }
        plan.under_replicated += 1;
        if holders.is_empty() {
            plan.unavailable += 1;
            continue;
        }
        needy.push((holders.len(), *chunk, holders, lacking));
    }
    needy.sort_by_key(|(copies, chunk, _, _)| (*copies, *chunk));
    let mut load: BTreeMap<&String, usize> = BTreeMap::new();
    'chunks: for (_, chunk, holders, lacking) in needy {
        for target in lacking {
            if plan.copies.len() >= max_copies {
                break 'chunks;
            }
            let source = holders
                .iter()
                .min_by_key(|h| load.get(**h).copied().unwrap_or(0))
                .expect("needy chunks have a holder");
            *load.entry(source).or_default() += 1;
            plan.copies.push(Copy {
                chunk,
                source: (*source).clone(),
                target: target.clone(),
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::of(&[n])
    }

    fn holdings(entries: &[(&str, &[u8])]) -> BTreeMap<String, BTreeSet<ChunkId>> {
        entries
            .iter()
            .map(|(node, chunks)| ((*node).to_owned(), chunks.iter().map(|n| id(*n)).collect()))
            .collect()
    }

    #[test]
    fn every_referenced_chunk_goes_everywhere_fewest_copies_first() {
        let referenced: BTreeSet<ChunkId> = [1, 2, 3].iter().map(|n| id(*n)).collect();
        let have = holdings(&[("a", &[1, 2, 9]), ("b", &[1]), ("c", &[])]);
        let plan = plan(&referenced, &have, 100);
        assert_eq!(plan.under_replicated, 3);
        assert_eq!(plan.unavailable, 1, "chunk 3 is nowhere");
        let targets: Vec<(ChunkId, &str)> = plan
            .copies
            .iter()
            .map(|c| (c.chunk, c.target.as_str()))
            .collect();
        assert_eq!(targets.len(), 3);
        assert_eq!(
            &targets[..2],
            &[(id(2), "b"), (id(2), "c")],
            "chunk 2 has one copy, chunk 1 two"
        );
        assert_eq!(targets[2], (id(1), "c"));
        assert!(
            plan.copies.iter().all(|c| c.chunk != id(9)),
            "unreferenced chunks are not spread"
        );
    }

    #[test]
    fn rounds_are_capped_and_sources_share_the_load() {
        let referenced: BTreeSet<ChunkId> = (0..10).map(id).collect();
        let all: Vec<u8> = (0..10).collect();
        let have = holdings(&[("a", &all), ("b", &all), ("c", &[])]);
        let plan = plan(&referenced, &have, 4);
        assert_eq!(plan.copies.len(), 4);
        let from_a = plan.copies.iter().filter(|c| c.source == "a").count();
        assert_eq!(from_a, 2, "two sources, two copies each");
    }

    #[test]
    fn nothing_to_do_when_everyone_has_everything() {
        let referenced: BTreeSet<ChunkId> = [1].iter().map(|n| id(*n)).collect();
        assert_eq!(
            plan(&referenced, &holdings(&[("a", &[1]), ("b", &[1])]), 10),
            Plan::default()
        );
        assert_eq!(plan(&referenced, &BTreeMap::new(), 10), Plan::default());
    }
}
