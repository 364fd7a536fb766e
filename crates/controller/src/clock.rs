//! The controller's wall clock: the system clock, shifted by `--clock-offset-ms` (a hidden
//! test aid that lets scenario tests play a controller whose clock is wrong). The log
//! worker stamps operations and gossip with it; the service dates files with it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Reads the wall clock, shifted by a fixed offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WallClock {
    offset_ms: i64,
}

impl WallClock {
    /// The system clock shifted by `offset_ms` (negative: behind).
    pub fn shifted_by(offset_ms: i64) -> Self {
        Self { offset_ms }
    }

    /// Milliseconds since the Unix epoch (0 for a system clock set before it).
    pub fn now_ms(self) -> u64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        system.saturating_add_signed(self.offset_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_shifts_every_reading() {
        const FIFTEEN_MINUTES_MS: u64 = 15 * 60 * 1000;
        let before = WallClock::default().now_ms();
        let ahead = WallClock::shifted_by(FIFTEEN_MINUTES_MS as i64).now_ms();
        let behind = WallClock::shifted_by(-60_000).now_ms();
        let after = WallClock::default().now_ms();
        assert!((before + FIFTEEN_MINUTES_MS..=after + FIFTEEN_MINUTES_MS).contains(&ahead));
        assert!((before - 60_000..=after - 60_000).contains(&behind));
        assert_eq!(WallClock::shifted_by(i64::MIN).now_ms(), 0, "saturates");
    }
}
