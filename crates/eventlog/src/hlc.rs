//! Hybrid logical clock: timestamps for last-writer-wins that never go backwards and
//! always exceed every timestamp in an operation's causal past.
//!
//! Pure: the caller passes in the wall clock reading; the replication core owns one clock.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A hybrid logical timestamp: milliseconds since the Unix epoch plus a counter that orders
/// events within one millisecond. Ordered by `(wall_ms, logical)`.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Physical component, milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Logical component, for events within one millisecond.
    pub logical: u32,
}

impl Hlc {
    /// A timestamp.
    pub const fn new(wall_ms: u64, logical: u32) -> Self {
        Self { wall_ms, logical }
    }

    /// The smallest timestamp strictly greater than `self`.
    fn successor(self) -> Hlc {
        match self.logical.checked_add(1) {
            Some(logical) => Hlc::new(self.wall_ms, logical),
            // Borrowing one millisecond keeps the clock monotonic; the drift is negligible.
            None => Hlc::new(self.wall_ms.saturating_add(1), 0),
        }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.logical)
    }
}

/// One node's hybrid logical clock.
///
/// Every timestamp from [`HlcClock::tick`] is greater than every earlier one and than every
/// timestamp passed to [`HlcClock::observe`]. It follows the local wall clock when that is
/// ahead, so it stays within the largest clock skew among the nodes of the real time.
#[derive(Clone, Debug, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A clock that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh timestamp for a local event, given the wall clock now.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        self.last = if wall_ms > self.last.wall_ms {
            Hlc::new(wall_ms, 0)
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Takes note of a timestamp from elsewhere, so later ticks exceed it.
    pub fn observe(&mut self, seen: Hlc) {
        self.last = self.last.max(seen);
    }

    /// The latest timestamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_the_wall_clock_when_it_is_ahead() {
        let mut clock = HlcClock::new();
        assert_eq!(clock.tick(100), Hlc::new(100, 0));
        assert_eq!(clock.tick(100), Hlc::new(100, 1));
        assert_eq!(clock.tick(90), Hlc::new(100, 2));
        assert_eq!(clock.tick(101), Hlc::new(101, 0));
    }

    #[test]
    fn ticks_exceed_observed_timestamps() {
        let mut clock = HlcClock::new();
        clock.tick(100);
        clock.observe(Hlc::new(500, 7));
        assert_eq!(clock.tick(200), Hlc::new(500, 8));
        clock.observe(Hlc::new(10, 0));
        assert_eq!(clock.tick(200), Hlc::new(500, 9));
    }

    #[test]
    fn logical_overflow_borrows_a_millisecond() {
        let mut clock = HlcClock::new();
        clock.observe(Hlc::new(7, u32::MAX));
        assert_eq!(clock.tick(0), Hlc::new(8, 0));
    }
}
