//! Operations: the envelope every metadata change travels and rests in, and its codec.
//!
//! The encoding is one format-version byte followed by MessagePack (rmp-serde). Decoding
//! bytes from a peer or from disk never panics: anything foreign or corrupt is a
//! [`DecodeError`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::{Dot, Seq, VersionVector};
use crate::error::DecodeError;
use crate::hlc::Hlc;

/// The format version written in front of every encoded operation and message.
pub const FORMAT_V1: u8 = 1;

/// One metadata change, generic over the application's operation type `P`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Op<P> {
    /// Its identity.
    pub dot: Dot,
    /// Its causal context: the origin's frontier when the operation was created. It always
    /// covers exactly the origin's earlier operations (`deps.get(origin) == seq - 1`).
    pub deps: VersionVector,
    /// Its timestamp for last-writer-wins; greater than the stamp of everything in `deps`.
    pub hlc: Hlc,
    /// What changed.
    pub payload: P,
}

impl<P> Op<P> {
    /// The last-writer-wins order key: `(hlc, origin)`. Unique per operation, and a linear
    /// extension of causal order.
    pub fn stamp(&self) -> (Hlc, crate::clock::NodeId) {
        (self.hlc, self.dot.origin)
    }

    /// Checks the shape rules that any op must satisfy, whatever its source.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let seq = self.dot.seq.get();
        if seq == 0 || seq == u64::MAX {
            return Err(DecodeError::Malformed {
                reason: format!("operation {} has a seq outside 1..u64::MAX", self.dot),
            });
        }
        if self.deps.get(self.dot.origin) != Seq::new(seq - 1) {
            return Err(DecodeError::Malformed {
                reason: format!(
                    "operation {} has a causal context {} that does not end at its predecessor",
                    self.dot, self.deps
                ),
            });
        }
        Ok(())
    }

    /// Whether the op can join a log whose frontier is `frontier`: it is the origin's next
    /// operation and its whole causal past is there.
    pub fn is_ready_for(&self, frontier: &VersionVector) -> bool {
        frontier.get(self.dot.origin).next() == self.dot.seq && frontier.dominates(&self.deps)
    }
}

impl<P: Serialize> Op<P> {
    /// Encodes the op in the current format.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }
}

impl<P: DeserializeOwned> Op<P> {
    /// Decodes and validates an op written by [`Op::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let op: Op<P> = decode_versioned(bytes)?;
        op.validate()?;
        Ok(op)
    }
}

/// Writes the format version and then `value` as MessagePack.
pub(crate) fn encode_versioned<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    rmp_serde::encode::write(&mut out, value)
        .expect("MessagePack encoding into a Vec only fails for maps with non-string keys, which these types do not have");
    out
}

/// Reads what [`encode_versioned`] wrote, insisting that every byte is used.
pub(crate) fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_V1 {
        return Err(DecodeError::UnknownVersion { version });
    }
    let mut reader = body;
    let value = T::deserialize(&mut rmp_serde::Deserializer::new(&mut reader)).map_err(|e| {
        DecodeError::Malformed {
            reason: e.to_string(),
        }
    })?;
    if !reader.is_empty() {
        return Err(DecodeError::TrailingBytes {
            count: reader.len(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::NodeId;

    fn op(seq: u64, deps: VersionVector) -> Op<String> {
        Op {
            dot: Dot::new(NodeId::new(1), Seq::new(seq)),
            deps,
            hlc: Hlc::new(1_700_000_000_000, 3),
            payload: "set x".to_owned(),
        }
    }

    #[test]
    fn round_trips() {
        let original = op(1, VersionVector::new());
        assert_eq!(Op::<String>::decode(&original.encode()).unwrap(), original);
    }

    #[test]
    fn rejects_foreign_and_corrupt_bytes() {
        let bytes = op(1, VersionVector::new()).encode();
        assert_eq!(Op::<String>::decode(&[]), Err(DecodeError::Empty));
        let mut future = bytes.clone();
        future[0] = 9;
        assert_eq!(
            Op::<String>::decode(&future),
            Err(DecodeError::UnknownVersion { version: 9 })
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Op::<String>::decode(&trailing),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        for cut in 1..bytes.len() {
            assert!(Op::<String>::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Op::<u64>::decode(&bytes).is_err(), "wrong payload type");
    }

    #[test]
    fn rejects_ops_whose_context_skips_their_predecessor() {
        let mut deps = VersionVector::new();
        deps.raise(NodeId::new(1), Seq::new(1));
        assert!(op(3, deps.clone()).validate().is_err());
        assert!(op(2, deps).validate().is_ok());
        let zero = op(0, VersionVector::new());
        assert!(Op::<String>::decode(&zero.encode()).is_err());
    }
}
