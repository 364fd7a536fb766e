//! The controllers retired from the cluster (`ControllerRetired`), as this node has projected
//! them. The log worker learns them; membership stops listing them, collection stops waiting
//! for them, frontier tokens leave them out, and a controller that finds itself retired stops
//! taking writes (its earlier operations still spread, and stay valid).

use std::collections::BTreeSet;
use std::sync::RwLock;

use redcloud_eventlog::{NodeId, VersionVector};

/// The retired controllers.
#[derive(Debug)]
pub struct Retired {
    me: NodeId,
    controllers: RwLock<BTreeSet<NodeId>>,
}

impl Retired {
    /// None retired yet, as seen by controller `me`.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            controllers: RwLock::new(BTreeSet::new()),
        }
    }

    /// Records that `node` is retired; whether that is news.
    pub fn retire(&self, node: NodeId) -> bool {
        self.controllers
            .write()
            .expect("retired set lock poisoned by a panic in another thread")
            .insert(node)
    }

    /// Records the retired controllers among `nodes`, as the read model lists them.
    pub fn learn(&self, nodes: &[crate::readmodel::RetiredNode]) {
        for node in nodes.iter().filter(|n| n.controller) {
            if let Ok(id) = node.node_id.parse() {
                self.retire(id);
            }
        }
    }

    /// Whether `node` is retired.
    pub fn contains(&self, node: NodeId) -> bool {
        self.controllers
            .read()
            .expect("retired set lock poisoned by a panic in another thread")
            .contains(&node)
    }

    /// Every retired controller.
    pub fn controllers(&self) -> BTreeSet<NodeId> {
        self.controllers
            .read()
            .expect("retired set lock poisoned by a panic in another thread")
            .clone()
    }

    /// Whether this very controller was retired.
    pub fn me(&self) -> bool {
        self.contains(self.me)
    }

    /// `frontier` without the retired origins: what frontier tokens carry, so that their size
    /// follows the live controllers and nobody waits for a controller that is gone.
    pub fn without_retired(&self, frontier: &VersionVector) -> VersionVector {
        let retired = self
            .controllers
            .read()
            .expect("retired set lock poisoned by a panic in another thread");
        let mut kept = VersionVector::new();
        for (origin, seq) in frontier.iter().filter(|(o, _)| !retired.contains(o)) {
            kept.raise(origin, seq);
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use redcloud_eventlog::Seq;

    use super::*;

    #[test]
    fn tokens_leave_retired_origins_out() {
        let retired = Retired::new(NodeId::new(1));
        let mut frontier = VersionVector::new();
        for origin in 1..=3 {
            frontier.raise(NodeId::new(origin), Seq::new(origin * 10));
        }
        assert!(retired.retire(NodeId::new(2)));
        assert!(!retired.retire(NodeId::new(2)), "retiring twice is no news");
        let kept: Vec<_> = retired.without_retired(&frontier).iter().collect();
        assert_eq!(
            kept,
            vec![
                (NodeId::new(1), Seq::new(10)),
                (NodeId::new(3), Seq::new(30))
            ]
        );
        assert!(!retired.me());
        retired.retire(NodeId::new(1));
        assert!(retired.me());
    }
}
