//! How long to wait before retrying a failed request: exponential backoff with jitter.
//!
//! `delay = base × 2^retry × jitter`, jitter uniform in [0.5, 1.5), capped, at most
//! `max_retries` retries. A server-given `Retry-After` wins (still capped). The schedule is a
//! pure function of the retry number and a jitter draw, so it is tested exactly without
//! sleeping; the waiting itself happens in the limiter (which error is retried, and whether
//! a server's `Retry-After` applies, is the venue adapter's call), which every retry goes through again.

use std::time::Duration;

/// The backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry, before jitter.
    pub base: Duration,
    /// Retries after the first attempt; then the failure is reported.
    pub max_retries: u32,
    /// No delay exceeds this, `Retry-After` included.
    pub cap: Duration,
}

impl Default for Backoff {
    /// Base 1 s, at most 5 retries, capped at 30 s.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max_retries: 5,
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (0 = the first retry), or `None` when retries
    /// are used up. `jitter_unit` is a uniform draw in [0, 1).
    pub fn delay(&self, retry: u32, jitter_unit: f64) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        let factor = 0.5 + jitter_unit.clamp(0.0, 1.0);
        let exponential = self.base.as_secs_f64() * 2f64.powi(retry.min(62) as i32) * factor;
        Some(Duration::from_secs_f64(
            exponential.min(self.cap.as_secs_f64()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MID: f64 = 0.5; // jitter factor exactly 1.0

    #[test]
    fn schedule_doubles_from_one_second_and_stops_after_five_retries() {
        let b = Backoff::default();
        let schedule: Vec<_> = (0..6).map(|r| b.delay(r, MID)).collect();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            schedule,
            vec![secs(1), secs(2), secs(4), secs(8), secs(16), None]
        );
    }

    #[test]
    fn jitter_spans_half_to_one_and_a_half_and_the_cap_holds() {
        let b = Backoff::default();
        assert_eq!(b.delay(2, 0.0), Some(Duration::from_secs(2)));
        assert_eq!(b.delay(2, 1.0), Some(Duration::from_secs(6)));
        let capped = Backoff {
            max_retries: 20,
            ..b
        };
        assert_eq!(capped.delay(10, MID), Some(Duration::from_secs(30)));
    }
}
