//! RedCloud's metadata event log.
//!
//! Every metadata change is an [`Op`]: a [`Dot`] naming it, the [`VersionVector`] of its causal
//! past, an [`Hlc`] timestamp and an application payload. Operations rest in a [`LogStore`]
//! (durable on fjall, or in memory for simulation) that only ever holds causally closed sets,
//! and travel between controllers through the sans-IO [`Gossip`] core.
//!
//! Everything except `store::fjall` is pure: no clock, sleep, thread, socket or entropy source.
#![warn(missing_docs)]

mod clock;
mod crdt;
mod error;
mod gossip;
mod hlc;
mod op;
mod store;

pub use clock::{Dot, NodeId, ParseNodeIdError, Seq, VersionVector};
pub use crdt::{Crdt, LwwMap, Stamp};
pub use error::{DecodeError, DiskFullKind, NotReadyReason, StoreError, StoreResult};
pub use gossip::{
    ClockRefusal, ClockSkew, Event, FoldsDigest, Gossip, GossipConfig, GossipMessage, PeerStatus,
    Transmit,
};
pub use hlc::{Hlc, HlcClock};
pub use op::{FORMAT_V1, Op};
pub use store::fjall::FjallStore;
pub use store::mem::MemStore;
pub use store::{CausalPage, LogBase, LogStore, read_causal, read_causal_until, replay};
