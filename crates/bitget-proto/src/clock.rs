//! Wall-clock "now" in Unix milliseconds, injectable so tests control time exactly.
//!
//! The simulator's rate-limit windows, candle boundaries and signing tolerance, and the
//! poller's candle-close schedule, all read this clock. The system clock anchors wall time
//! once and then advances monotonically, so a wall-clock step never opens or closes a
//! rate-limit window early; tests use [`ManualClock`] and move time by hand instead of
//! sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as Bitget timestamps are.
pub trait Clock: Send + Sync + 'static {
    /// The current time in Unix milliseconds.
    fn now_ms(&self) -> u64;

    /// The current time in Unix microseconds, for offsets finer than a millisecond.
    fn now_us(&self) -> u64 {
        self.now_ms().saturating_mul(1_000)
    }
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now_ms())
    }
}

/// Wall time read once at start, then advanced by a monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    anchor_epoch_us: u64,
    anchor: Instant,
}

impl SystemClock {
    /// Anchors the clock to the current wall time.
    pub fn new() -> Self {
        let anchor_epoch_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Self {
            anchor_epoch_us,
            anchor: Instant::now(),
        }
    }
}

impl SystemClock {
    /// The wall time `offset_ms` ahead (negative: behind): a server whose clock differs
    /// from ours.
    pub fn shifted(offset_ms: i64) -> Self {
        let mut clock = Self::new();
        clock.anchor_epoch_us = clock
            .anchor_epoch_us
            .saturating_add_signed(offset_ms.saturating_mul(1_000));
        clock
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.now_us() / 1_000
    }

    fn now_us(&self) -> u64 {
        self.anchor_epoch_us + self.anchor.elapsed().as_micros() as u64
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// Starts at `start_ms` (Unix milliseconds).
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves time forward by `ms`.
    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the time to `ms`.
    pub fn set_ms(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        let shared = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        shared.advance_ms(250);
        assert_eq!(clock.now_ms(), 1_250);
        shared.set_ms(5);
        assert_eq!(clock.now_ms(), 5);
    }

    #[test]
    fn system_clock_is_near_wall_time_and_monotonic() {
        let clock = SystemClock::new();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let a = clock.now_ms();
        let b = clock.now_ms();
        assert!(
            a.abs_diff(wall) < 5_000,
            "clock {a} far from wall time {wall}"
        );
        assert!(b >= a);
    }
}
