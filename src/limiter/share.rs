//! How much of a budget is ours when other clients on the same IP (or account) spend it too:
//! a congestion controller driven by Bitget's remaining count, not by 429s.
//!
//! Every metered reply says how many requests the server's window has left
//! (`x-mbx-used-remain-limit`). Our own requests in that window plus what remains is what the
//! server leaves *us*; the server's limit minus that is what someone else took. The
//! controller turns those readings into our share:
//!
//! - **Alone** (others took less than one request a second on average): the share is the
//!   whole limit the server shows, as before.
//! - **Shared**: the share is what is free after the others, minus a headroom of a tenth of
//!   the limit (at least one request), so two clients that both grow into the same free slots
//!   meet in the headroom instead of in a 429. A client holding more than half of what is
//!   shareable gives back [`YIELD`] of its excess each step, so a newcomer that found the
//!   budget taken gets a fair half within about ten steps instead of starving.
//! - **Cuts are immediate, growth is gradual**: a reading showing less free than our share
//!   cuts it at once; growth moves [`GROW_GAIN`] of the way to the target once per
//!   [`STEP_US`], about the time a change takes to show in the other clients' windows.
//! - **The server's limit is learned**: it is the most the readings ever showed us, capped at
//!   the configured limit. A 429 while alone means the server lowered its limit (Bitget does
//!   under load): the next reading of a request sent after the 429 was known sets it anew.
//!   A 429 while sharing means the split overshot: the share is cut by [`CUT_ON_REJECTION`].
//!
//! Measured alternatives, in the prototype and on this model: admitting while the
//! server shows room (169 × 429 in 55 s), additive steps (one client left with 6 %),
//! multiplicative cuts on every low reading (both starve at 0.51), steps proportional to the
//! free slots (96 × 429 from oscillation). What is not solved here: with three or more clients
//! that do not coordinate, the split is stable and rejection-free but not equal, because a
//! client cannot tell one heavy neighbour from two light ones. Coordinated sharing (one
//! budget in Redis) is the answer to that.

/// How often the share moves towards its target, in µs of local time.
pub const STEP_US: u64 = 1_000_000;
/// Mean foreign requests per window below which we count as alone.
pub const ALONE_BELOW: f64 = 0.75;
/// Headroom kept free while sharing, as a share of the server's limit (at least 1 request).
pub const HEADROOM: f64 = 0.1;
/// Fraction of the way to a higher target the share moves in one step.
pub const GROW_GAIN: f64 = 0.8;
/// Fraction of its excess over a fair half that a heavy client gives back per step.
pub const YIELD: f64 = 0.5;
/// Factor applied to the share on a 429 while sharing.
pub const CUT_ON_REJECTION: f64 = 0.8;

/// The controller of one budget.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareController {
    configured: f64,
    server_limit: f64,
    share: f64,
    foreign: f64,
    /// Waiting for a reading after a 429 while alone, to learn the server's new limit.
    relearn: bool,
    step_started_us: Option<u64>,
    sum_foreign: f64,
    sum_ours: f64,
    readings: u32,
}

impl ShareController {
    /// A controller for a budget of `limit` per window, starting alone with all of it.
    pub fn new(limit: u32) -> Self {
        let limit = f64::from(limit.max(1));
        Self {
            configured: limit,
            server_limit: limit,
            share: limit,
            foreign: 0.0,
            relearn: false,
            step_started_us: None,
            sum_foreign: 0.0,
            sum_ours: 0.0,
            readings: 0,
        }
    }

    /// Requests per window we may hold: while relearning, one probe.
    pub fn limit(&self) -> u32 {
        if self.relearn {
            1
        } else {
            // Pacing holds the mean to the fractional share; the window may hold the next
            // whole request.
            ((self.share - 1e-9).ceil() as u32).clamp(1, self.server_limit as u32)
        }
    }

    /// Our share as a rate per window, for pacing (not rounded down).
    pub fn rate(&self) -> f64 {
        if self.relearn {
            1.0
        } else {
            self.share.max(1.0)
        }
    }

    /// Requests per window others took, on average over the last step.
    pub fn foreign(&self) -> f64 {
        self.foreign
    }

    /// The limit the server enforces, as far as the readings show.
    pub fn server_limit(&self) -> u32 {
        self.server_limit as u32
    }

    /// Whether we are waiting to learn the server's limit after a 429.
    pub fn relearning(&self) -> bool {
        self.relearn
    }

    /// One reading at `now_us`: the server leaves us `available` requests in its window, of
    /// which `ours` are already ours. `fresh` says the request was sent after the last 429
    /// was known, so its reading describes the server's limit since then. Returns true when
    /// [`Self::limit`] changed.
    pub fn observe(&mut self, now_us: u64, available: u32, ours: u32, fresh: bool) -> bool {
        let before = self.limit();
        let available = f64::from(available).min(self.configured);
        if self.relearn {
            if !fresh {
                return false;
            }
            self.relearn = false;
            self.server_limit = available.max(1.0);
            self.share = self.server_limit;
            self.foreign = 0.0;
            self.restart_step(now_us);
            return self.limit() != before;
        }
        if available > self.server_limit {
            self.server_limit = available;
        }
        self.sum_foreign += (self.server_limit - available).max(0.0);
        self.sum_ours += f64::from(ours);
        self.readings += 1;
        // Never plan on more than the server shows is left for us.
        self.share = self.share.min(available.max(1.0));
        let started = *self.step_started_us.get_or_insert(now_us);
        if now_us >= started + STEP_US {
            self.step(now_us);
        }
        self.limit() != before
    }

    fn restart_step(&mut self, now_us: u64) {
        self.step_started_us = Some(now_us);
        self.sum_foreign = 0.0;
        self.sum_ours = 0.0;
        self.readings = 0;
    }

    fn step(&mut self, now_us: u64) {
        let n = f64::from(self.readings.max(1));
        let foreign = self.sum_foreign / n;
        let ours = self.sum_ours / n;
        self.foreign = foreign;
        self.restart_step(now_us);
        if foreign >= ALONE_BELOW && self.server_limit < self.configured {
            // Others are here: a limit relearned from a 429 may have been one of them
            // arriving, not the server lowering its limit. Beside others the documented
            // limit is the safe reading: it can only overstate what they take.
            self.server_limit = self.configured;
            self.sum_foreign = 0.0;
        }
        let limit = self.server_limit;
        let target = if foreign < ALONE_BELOW {
            limit
        } else {
            let headroom = (limit * HEADROOM).max(1.0);
            let free = limit - foreign - headroom;
            let fair = (limit - headroom) / 2.0;
            if ours > fair {
                free.min(ours - YIELD * (ours - fair))
            } else {
                free
            }
        };
        // Alone, what the server shows free is ours at once; beside others, growth is
        // gradual so two clients do not take the same free slots together.
        let gain = if target > self.share && foreign >= ALONE_BELOW {
            GROW_GAIN
        } else {
            1.0
        };
        self.share = (self.share + gain * (target - self.share)).clamp(1.0, limit.max(1.0));
    }

    /// The server refused a request for rate at `now_us`. Returns true when the share was cut
    /// (sharing), false when the server's limit is to be relearned (alone).
    pub fn rejected(&mut self, now_us: u64) -> bool {
        self.restart_step(now_us);
        if self.foreign < ALONE_BELOW {
            self.relearn = true;
            false
        } else {
            self.share = (self.share * CUT_ON_REJECTION).max(1.0);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn alone_the_share_is_the_whole_limit() {
        let mut c = ShareController::new(20);
        for i in 0..30 {
            c.observe(i * S / 10, 20, 19, true);
        }
        assert_eq!(c.limit(), 20);
        assert!(c.foreign() < ALONE_BELOW);
    }

    #[test]
    fn foreign_usage_shrinks_the_share_at_once_and_it_grows_back_as_it_frees() {
        let mut c = ShareController::new(20);
        // Another client takes 12 of the window: 8 are left for us.
        assert!(c.observe(0, 8, 8, true));
        assert_eq!(c.limit(), 8);
        for i in 1..=30 {
            c.observe(i * S / 5, 8, 8, true);
        }
        // Sharing: 20 − 12 − 2 of headroom.
        assert!((c.foreign() - 12.0).abs() < 1e-9);
        assert_eq!(c.limit(), 6);
        // The other client stops: the free slots come back over a few steps.
        let mut limits = Vec::new();
        for i in 31..=60 {
            c.observe(i * S / 5, 20, 6, true);
            limits.push(c.limit());
        }
        assert_eq!(*limits.last().unwrap(), 20, "{limits:?}");
        assert!(limits.windows(2).all(|w| w[0] <= w[1]), "{limits:?}");
    }

    #[test]
    fn a_rejection_while_alone_relearns_the_server_limit_from_a_fresh_reading() {
        let mut c = ShareController::new(20);
        c.observe(0, 20, 19, true);
        assert!(!c.rejected(S));
        assert!(c.relearning());
        assert_eq!(c.limit(), 1);
        // A reply to a request that left before the 429 was known says nothing new.
        assert!(!c.observe(S + 10, 19, 19, false));
        assert!(c.relearning());
        // The probe: 1 of ours, 4 remain.
        assert!(c.observe(2 * S, 5, 1, true));
        assert_eq!((c.limit(), c.server_limit()), (5, 5));
        // The server raises its limit again: followed within a step.
        c.observe(5 * S, 20, 5, true);
        c.observe(6 * S + 1, 20, 5, true);
        assert_eq!(c.limit(), 20);
    }

    #[test]
    fn a_rejection_while_sharing_cuts_the_share() {
        let mut c = ShareController::new(20);
        for i in 0..=10 {
            c.observe(i * S / 2, 10, 9, true);
        }
        let before = c.rate();
        assert!(c.rejected(6 * S));
        assert!((c.rate() - before * CUT_ON_REJECTION).abs() < 1e-9);
        assert!(!c.relearning());
    }
}
