//! Messages between replication cores, and their versioned wire encoding.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::VersionVector;
use crate::error::DecodeError;
use crate::op::{Op, decode_versioned, encode_versioned};

/// What one replication core says to another.
///
/// On the wire: a format-version byte, then MessagePack. Fields added later must be optional.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum GossipMessage<P> {
    /// New operations, pushed to a few peers as soon as they are in a log. A receiver relays
    /// the ones it did not have yet.
    Push {
        /// In causal order.
        ops: Vec<Op<P>>,
    },
    /// Part of what the receiver lacks, answering its [`GossipMessage::Frontier`].
    Page {
        /// In causal order, starting from the receiver's frontier.
        ops: Vec<Op<P>>,
        /// Whether the sender holds more that the receiver lacks; the receiver asks for the
        /// next page by sending its new frontier.
        more: bool,
    },
    /// "This is everything I have": the receiver ships a page of what the sender lacks.
    Frontier {
        /// The sender's frontier; when `folded`, without the origins it holds exactly as far
        /// as its folds say.
        frontier: VersionVector,
        /// Whether the receiver should answer with its own frontier (the start of an
        /// anti-entropy round), so the sender can ship what the receiver lacks in turn.
        reply: bool,
        /// The digest of the sender's folds (none while it has none), so the receiver knows
        /// whether its own messages may be folded for this sender.
        #[serde(default)]
        folds: Option<FoldsDigest>,
        /// Whether `frontier` leaves out every origin at its value in the folds named by
        /// `folds`: only a receiver holding the same folds can read it whole.
        #[serde(default)]
        folded: bool,
    },
    /// "What you lack starts below my log's base": the answer to a [`GossipMessage::Frontier`]
    /// that does not cover the sender's base. The receiver needs the sender's snapshot before
    /// any page of operations could apply.
    Truncated {
        /// The sender's base: operations at or below it are covered by its snapshot only.
        base: VersionVector,
    },
}

/// Names a set of folds ([`crate::Gossip::set_folds`]): the first 16 bytes of SHA-256 over
/// its `(origin, seq)` entries in order. Two nodes fold frontiers for each other only while
/// their digests agree, so a folded frontier is read back exactly.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct FoldsDigest(pub [u8; 16]);

impl FoldsDigest {
    /// The digest of `folds`; `None` when it is empty (nothing to fold).
    pub fn of(folds: &VersionVector) -> Option<Self> {
        use sha2::{Digest, Sha256};
        if folds.is_empty() {
            return None;
        }
        let mut hasher = Sha256::new();
        for (origin, seq) in folds.iter() {
            hasher.update(origin.get().to_be_bytes());
            hasher.update(seq.get().to_be_bytes());
        }
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&hasher.finalize()[..16]);
        Some(Self(digest))
    }
}

impl<P> GossipMessage<P> {
    /// The operations carried, if any.
    pub fn ops(&self) -> &[Op<P>] {
        match self {
            GossipMessage::Push { ops } | GossipMessage::Page { ops, .. } => ops,
            GossipMessage::Frontier { .. } | GossipMessage::Truncated { .. } => &[],
        }
    }
}

impl<P: Serialize> GossipMessage<P> {
    /// Encodes the message in the current format.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }
}

impl<P: DeserializeOwned> GossipMessage<P> {
    /// Decodes a message and validates every operation in it.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let message: GossipMessage<P> = decode_versioned(bytes)?;
        for op in message.ops() {
            op.validate()?;
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Dot, NodeId, Seq};
    use crate::hlc::Hlc;

    #[test]
    fn round_trips_and_rejects_invalid_ops() {
        let op = Op {
            dot: Dot::new(NodeId::new(7), Seq::new(1)),
            deps: VersionVector::new(),
            hlc: Hlc::new(5, 0),
            payload: 42u32,
        };
        let message = GossipMessage::Page {
            ops: vec![op.clone()],
            more: true,
        };
        assert_eq!(GossipMessage::decode(&message.encode()), Ok(message));

        let bad = GossipMessage::Push {
            ops: vec![Op {
                dot: Dot::new(NodeId::new(7), Seq::new(2)),
                ..op
            }],
        };
        assert!(matches!(
            GossipMessage::<u32>::decode(&bad.encode()),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
