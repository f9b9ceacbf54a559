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
//!   budget taken gets a fair half within about ten steps instead of starving; it goes on
//!   yielding only while the others take what it gives back, so beside a light client that
//!   wants less than half, the slots it leaves are used.
//! - **Cuts are immediate, growth is gradual**: a reading showing less left for us than our
//!   share cuts it to what is left at once; growth moves [`GROW_GAIN`] of the way towards
//!   what is free minus the headroom once per [`STEP_US`], about the time a change takes to
//!   show in the other clients' windows. A share that fits what is left but not the headroom
//!   is kept, not cut: so when the server lowers its limit (Bitget does under load), which
//!   looks exactly like another client taking the difference, the new limit is used in full.
//! - **A 429** while alone changes nothing here (the limiter holds the window until it
//!   drained, and the next reading cuts the share to what the server allows); while sharing
//!   it means the split overshot, and the share is cut by [`CUT_ON_REJECTION`].
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
/// How much more the others must take after a yield (requests per window) for it to count
/// as claimed.
pub const YIELD_CLAIMED: f64 = 0.3;
/// Steps over which a yield is judged claimed or not.
pub const YIELD_JUDGED_STEPS: u32 = 3;
/// Factor applied to the share on a 429 while sharing.
pub const CUT_ON_REJECTION: f64 = 0.8;

/// The controller of one budget.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareController {
    configured: f64,
    share: f64,
    foreign: f64,
    /// What others took when we last yielded, and steps since.
    yield_reference: Option<(f64, u32)>,
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
            share: limit,
            foreign: 0.0,
            yield_reference: None,
            step_started_us: None,
            sum_foreign: 0.0,
            sum_ours: 0.0,
            readings: 0,
        }
    }

    /// Requests per window we may hold.
    pub fn limit(&self) -> u32 {
        // Pacing holds the mean to the fractional share; the window may hold the next whole
        // request.
        ((self.share - 1e-9).ceil() as u32).clamp(1, self.configured as u32)
    }

    /// Our share as a rate per window, for pacing (not rounded).
    pub fn rate(&self) -> f64 {
        self.share.max(1.0)
    }

    /// Requests per window others took (or the server withheld), on average over the last
    /// step.
    pub fn foreign(&self) -> f64 {
        self.foreign
    }

    /// What the server leaves us per window, as of the last step.
    pub fn server_limit(&self) -> u32 {
        (self.configured - self.foreign).round().max(1.0) as u32
    }

    /// One reading at `now_us`: the server leaves us `available` requests in its window, of
    /// which `ours` are already ours. Returns true when [`Self::limit`] changed.
    pub fn observe(&mut self, now_us: u64, available: u32, ours: u32) -> bool {
        let before = self.limit();
        let available = f64::from(available).min(self.configured);
        self.sum_foreign += self.configured - available;
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
        let limit = self.configured;
        let free = limit - foreign;
        if foreign < ALONE_BELOW {
            // Alone: what the server shows free is ours at once.
            self.share = free.max(1.0);
            return;
        }
        let headroom = (limit * HEADROOM).max(1.0);
        let fair = (limit - headroom) / 2.0;
        let cap = free - headroom;
        // Yield only while the others take what we give back (a client that wants more),
        // or when they grew on their own since our last yield; a light client that leaves
        // our yield unclaimed gets no more of it, and the slots come back to us.
        // A yield shows in the others' readings only after their next step and a window,
        // so it is judged over [`YIELD_JUDGED_STEPS`] steps, holding the share meanwhile.
        if ours > fair {
            match self.yield_reference {
                Some((before, _)) if foreign > before + YIELD_CLAIMED => {
                    self.yield_now(ours, fair, foreign);
                    return;
                }
                Some((before, age)) if age + 1 < YIELD_JUDGED_STEPS => {
                    self.yield_reference = Some((before, age + 1));
                    return;
                }
                Some(_) => {}
                None => {
                    self.yield_now(ours, fair, foreign);
                    return;
                }
            }
        } else {
            self.yield_reference = None;
        }
        if cap > self.share {
            self.share += GROW_GAIN * (cap - self.share);
        }
        self.share = self.share.clamp(1.0, limit);
    }

    fn yield_now(&mut self, ours: f64, fair: f64, foreign: f64) {
        self.share = self.share.min(ours - YIELD * (ours - fair));
        self.yield_reference = Some((foreign, 0));
    }

    /// The server refused a request for rate at `now_us`. Returns true when the share was
    /// cut (sharing); alone, the readings after the hold tell what the server allows.
    pub fn rejected(&mut self, now_us: u64) -> bool {
        if self.foreign < ALONE_BELOW {
            return false;
        }
        self.restart_step(now_us);
        self.share = (self.share * CUT_ON_REJECTION).max(1.0);
        true
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
            c.observe(i * S / 10, 20, 19);
        }
        assert_eq!(c.limit(), 20);
        assert!(c.foreign() < ALONE_BELOW);
    }

    #[test]
    fn foreign_usage_shrinks_the_share_at_once_and_it_grows_back_as_it_frees() {
        let mut c = ShareController::new(20);
        // Another client takes 12 of the window: 8 are left for us.
        assert!(c.observe(0, 8, 8));
        assert_eq!(c.limit(), 8);
        for i in 1..=30 {
            c.observe(i * S / 5, 8, 8);
        }
        // A share that fits what is left is kept (it might be the server's own limit).
        assert!((c.foreign() - 12.0).abs() < 1e-9);
        assert_eq!(c.limit(), 8);
        // The other client stops: the free slots come back.
        let mut limits = Vec::new();
        for i in 31..=45 {
            c.observe(i * S / 5, 20, 8);
            limits.push(c.limit());
        }
        assert_eq!(*limits.last().unwrap(), 20, "{limits:?}");
        assert!(limits.windows(2).all(|w| w[0] <= w[1]), "{limits:?}");
    }

    #[test]
    fn beside_a_client_that_leaves_room_the_share_grows_only_to_the_headroom() {
        let mut c = ShareController::new(20);
        c.observe(0, 3, 3);
        // The other client holds 7: 13 are free, 11 after the headroom.
        let mut limits = Vec::new();
        for i in 1..=40 {
            let ours = c.limit().min(13);
            c.observe(i * S / 4, 13, ours);
            limits.push(c.limit());
        }
        assert_eq!(*limits.last().unwrap(), 11, "{limits:?}");
    }

    #[test]
    fn a_heavy_client_yields_towards_a_fair_half() {
        let mut c = ShareController::new(20);
        // We hold 16 and another client 3: we give back half of our excess over 9 a step.
        c.observe(0, 17, 16);
        c.observe(S, 17, 16);
        assert!((c.rate() - 12.5).abs() < 1e-9, "{}", c.rate());
    }

    #[test]
    fn a_rejection_cuts_the_share_only_while_sharing() {
        let mut c = ShareController::new(20);
        c.observe(0, 20, 19);
        assert!(!c.rejected(S / 2));
        assert_eq!(c.limit(), 20);
        for i in 0..=10 {
            c.observe(S + i * S / 2, 10, 9);
        }
        let before = c.rate();
        assert!(c.rejected(7 * S));
        assert!((c.rate() - before * CUT_ON_REJECTION).abs() < 1e-9);
    }
}
