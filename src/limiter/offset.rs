//! Bounds on the offset between our clock and Bitget's, from each request's send and receive
//! times and the server's `requestTime`.
//!
//! Bitget counts a request at some instant between its arrival and its reply, on the
//! server's clock, and stamps `requestTime` (milliseconds) on the reply. The docs leave open
//! which instant the stamp is: arrival or reply. Both readings put the stamp between our send
//! and our receive, so for θ = server − local and a request sent at `s` and answered at `r`
//! (local µs) with stamp `T` (server ms, truncated):
//!
//! ```text
//! s + θ ≤ T_true < T + 1 ms    and    T ≤ T_true ≤ r + θ
//! ⇒  T − r ≤ θ ≤ T + 1 ms − s
//! ```
//!
//! Every reply narrows the interval; the tightest lower and upper bounds seen so far win.
//! Clocks drift, so a bound loosens by [`DRIFT_PPM`] for every second since it was
//! measured, and a new sample that contradicts the interval (the server's clock stepped)
//! restarts it from that sample. Pure arithmetic on explicit times.

/// Resolution of `requestTime`: one millisecond, truncated.
pub const STAMP_RESOLUTION_US: i64 = 1_000;

/// How fast the two clocks may drift apart, in parts per million: ten times what ordinary
/// quartz oscillators do, so a bound is never trusted longer than it holds.
pub const DRIFT_PPM: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bound {
    value_us: i64,
    at_us: u64,
}

impl Bound {
    /// How far drift may have moved the offset since this bound was measured.
    fn slack(&self, now_us: u64) -> i64 {
        (now_us.saturating_sub(self.at_us) as i64).saturating_mul(DRIFT_PPM) / 1_000_000
    }
}

/// The interval the clock offset (server − local, µs) is known to lie in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetBounds {
    lower: Option<Bound>,
    upper: Option<Bound>,
    samples: u64,
    restarts: u64,
}

impl OffsetBounds {
    /// Narrows the bounds with one request sent at `sent_us` and answered at `received_us`
    /// (local µs) whose reply was stamped `server_ms`. Returns false when the sample
    /// contradicted the bounds, which then restart from it.
    pub fn observe(&mut self, sent_us: u64, received_us: u64, server_ms: u64) -> bool {
        let server_us = (server_ms as i64).saturating_mul(1_000);
        let low = server_us - received_us.max(sent_us) as i64;
        let high = server_us + STAMP_RESOLUTION_US - sent_us as i64;
        self.samples += 1;
        let now = received_us.max(sent_us);
        let consistent =
            self.lower(now).is_none_or(|l| l <= high) && self.upper(now).is_none_or(|u| u >= low);
        if !consistent {
            self.restarts += 1;
            self.lower = None;
            self.upper = None;
        }
        if self.lower(now).is_none_or(|l| low > l) {
            self.lower = Some(Bound {
                value_us: low,
                at_us: now,
            });
        }
        if self.upper(now).is_none_or(|u| high < u) {
            self.upper = Some(Bound {
                value_us: high,
                at_us: now,
            });
        }
        consistent
    }

    /// The lowest the offset can be at `now_us`, once any reply was seen.
    pub fn lower(&self, now_us: u64) -> Option<i64> {
        self.lower.map(|b| b.value_us - b.slack(now_us))
    }

    /// The highest the offset can be at `now_us`, once any reply was seen.
    pub fn upper(&self, now_us: u64) -> Option<i64> {
        self.upper.map(|b| b.value_us + b.slack(now_us))
    }

    /// How wide the interval is at `now_us`: what the limiter cannot know about the
    /// server's clock, and so the margin it keeps.
    /// Both bounds, measured from `base_us` (the wall clock at this time base's origin)
    /// instead of the origin: the server's clock minus the wall clock.
    pub fn from_wall(&self, now_us: u64, base_us: i64) -> Option<(i64, i64)> {
        self.lower(now_us)
            .zip(self.upper(now_us))
            .map(|(lo, hi)| (lo - base_us, hi - base_us))
    }

    pub fn width(&self, now_us: u64) -> Option<u64> {
        Some(
            self.upper(now_us)?
                .saturating_sub(self.lower(now_us)?)
                .max(0) as u64,
        )
    }

    /// Replies used so far, and how many times a contradiction restarted the bounds.
    pub fn samples(&self) -> (u64, u64) {
        (self.samples, self.restarts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reply_bounds_the_offset_by_its_round_trip() {
        let mut offset = OffsetBounds::default();
        assert_eq!(offset.lower(0), None);
        // Sent at 1.000 s, answered at 1.040 s, stamped 5000.020 s by the server.
        assert!(offset.observe(1_000_000, 1_040_000, 5_000_020));
        let lo = 5_000_020_000 - 1_040_000;
        let hi = 5_000_020_000 + 1_000 - 1_000_000;
        assert_eq!(offset.lower(1_040_000), Some(lo));
        assert_eq!(offset.upper(1_040_000), Some(hi));
        assert_eq!(offset.width(1_040_000), Some(41_000));
    }

    #[test]
    fn the_tightest_bounds_of_many_replies_win() {
        // True offset 7 s; each request takes `up` to arrive and `down` to come back.
        let theta: i64 = 7_000_000;
        let mut offset = OffsetBounds::default();
        for (i, (up, down)) in [(30_000, 2_000), (1_000, 25_000), (12_000, 12_000)]
            .into_iter()
            .enumerate()
        {
            let sent = 10_000_000 + i as u64 * 100_000;
            let arrival = sent + up;
            let server_ms = (arrival as i64 + theta) as u64 / 1_000;
            assert!(offset.observe(sent, arrival + down, server_ms));
        }
        let now = 10_300_000;
        let (lo, hi) = (offset.lower(now).unwrap(), offset.upper(now).unwrap());
        assert!(lo <= theta && theta <= hi, "{lo} ≤ {theta} ≤ {hi}");
        // The first reply came back fast, the second arrived fast: together a few ms.
        assert!(hi - lo <= 4_100, "width {}", hi - lo);
    }

    #[test]
    fn bounds_loosen_with_time_for_drift() {
        let mut offset = OffsetBounds::default();
        offset.observe(0, 1_000, 10);
        let width_now = offset.width(1_000).unwrap();
        // 100 ppm over 10 s is 1 ms on each side.
        assert_eq!(offset.width(10_001_000).unwrap(), width_now + 2_000);
    }

    #[test]
    fn a_contradicting_reply_restarts_the_bounds() {
        let mut offset = OffsetBounds::default();
        offset.observe(0, 1_000, 100);
        // The server's clock stepped 5 s forward.
        assert!(!offset.observe(2_000_000, 2_001_000, 5_102));
        assert_eq!(offset.lower(2_001_000), Some(5_102_000 - 2_001_000));
        assert_eq!(offset.samples(), (2, 1));
    }
}
