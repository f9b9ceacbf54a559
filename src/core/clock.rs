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

/// Bitget's clock as this process knows it: bounds on server time minus wall time, which
/// the rate limiter narrows with every reply's `requestTime` (see
/// `limiter::offset`). One estimate for the whole process, so what the limiter admits,
/// when the scheduler calls a candle closed, the time the gateway reports and the stamp the
/// signer puts on a request all follow the same clock. The limiter writes; the rest read.
#[derive(Debug, Default)]
pub struct ServerClock {
    /// (lower, upper) bounds on server − wall, in µs; `None` before the first reply.
    bounds_us: std::sync::Mutex<Option<(i64, i64)>>,
}

impl ServerClock {
    /// Sets the bounds (server − wall, µs).
    pub fn set_bounds_us(&self, lower: i64, upper: i64) {
        *self.bounds_us.lock().unwrap_or_else(|e| e.into_inner()) = Some((lower, upper));
    }

    /// The bounds (server − wall, µs), once a reply gave them.
    pub fn bounds_us(&self) -> Option<(i64, i64)> {
        *self.bounds_us.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bounds from one round trip outside the limiter (a reply without `requestTime`): the
    /// server read `server_ms` between our `sent_wall_ms` and `received_wall_ms`.
    pub fn observe_round_trip(&self, server_ms: u64, sent_wall_ms: u64, received_wall_ms: u64) {
        let ms = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        let lower = ms(server_ms).saturating_sub(ms(received_wall_ms));
        let upper = ms(server_ms)
            .saturating_add(1)
            .saturating_sub(ms(sent_wall_ms));
        self.set_bounds_us(lower.saturating_mul(1_000), upper.saturating_mul(1_000));
    }

    /// Server minus wall time, in ms (the middle of the bounds), once known.
    pub fn offset_ms(&self) -> Option<i64> {
        self.bounds_us()
            .map(|(lower, upper)| (lower / 2 + upper / 2).div_euclid(1_000))
    }

    /// The server's time when the wall clock reads `wall_ms`: the wall clock alone until
    /// the first reply.
    pub fn server_ms(&self, wall_ms: u64) -> u64 {
        wall_ms.saturating_add_signed(self.offset_ms().unwrap_or(0))
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
    #[test]
    fn the_server_clock_reads_the_middle_of_its_bounds_and_the_wall_until_known() {
        let clock = super::ServerClock::default();
        assert_eq!(clock.server_ms(1_000_000), 1_000_000);
        assert_eq!(clock.offset_ms(), None);
        clock.set_bounds_us(-3_000, 7_000);
        assert_eq!(clock.offset_ms(), Some(2));
        assert_eq!(clock.server_ms(1_000_000), 1_000_002);
        clock.set_bounds_us(-9_000, -5_000);
        assert_eq!(clock.server_ms(1_000_000), 999_993);
    }

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
