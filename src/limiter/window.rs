//! The pure core of the limiter: sliding-window logs kept in the server's frame, on an
//! explicit clock.
//!
//! Bitget counts requests when they *arrive*, on its clock, in strict sliding windows. A log
//! of our *send* times is exact only on a network without delay: with 0–30 ms of jitter,
//! request k and request k − limit land in the same server second although they left more
//! than a second apart. So each entry here is one of our requests with what we know of when
//! the server counted it:
//!
//! - **in flight** (no reply yet): it may be counted at any moment, so it occupies every
//!   window until its reply comes (or, if none ever does, [`IN_FLIGHT_MAX_US`]);
//! - **answered**: it was counted no later than the earlier of our receive time and its
//!   `requestTime` + 1 ms mapped to local time with the *lower* bound of the clock offset
//!   (see [`super::offset`]). It leaves every later window one window length after that.
//!
//! A request is admitted only when fewer than `limit` entries can still be in the window at
//! the earliest moment it could arrive (now). Proof sketch: take any server window and the
//! request `m` in it that we sent last. When `m` was admitted, every other request of ours
//! in that window was either in flight (counted) or answered with a leave time after `m`'s
//! send (counted), so the window holds at most `limit`. Whatever the delays, reorderings
//! or server pauses, no server window holds more than `limit` of ours; what it costs is the
//! mean arrival delay per window, `1 / (1 + delay)` of the budget, and the width of the
//! offset interval, not a fixed margin.
//!
//! Admissions are also paced `window / share` apart on a fixed grid, so at 20/s one request
//! leaves every 50 ms instead of 20 at once: a reply (and its remaining count or 429) comes
//! back before the next request leaves, so a limit cut costs one rejection, not a burst.
//!
//! The limit itself comes from a [`ShareController`] fed by the server's remaining counts:
//! the whole budget alone, a fair share with a little headroom beside other clients.
//!
//! Entries are indexed by when they leave, so an admission costs `O(log n)` however many a
//! window holds (the 60 s overall window holds thousands) and an unanswered entry does not
//! keep the answered ones behind it from expiring.
//!
//! Time is microseconds since an origin chosen by the caller, so this is tested exactly,
//! and property-tested, without any runtime.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use super::share::ShareController;

/// Bitget's window length, in microseconds.
pub const SERVER_WINDOW_US: u64 = 1_000_000;
/// An unanswered request is counted as in flight at most this long (longer than any client
/// timeout), so a lost permit cannot hold the budget forever.
pub const IN_FLIGHT_MAX_US: u64 = 30_000_000;
/// Answered entries are kept this long after they left the window, for the remaining-count
/// readings of slower replies.
const KEEP_AFTER_LEAVE_US: u64 = 2 * SERVER_WINDOW_US;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    InFlight,
    Answered {
        /// Local time from which it is certainly out of every later window.
        leaves_at: u64,
        /// The server's `requestTime`, when the reply had one.
        server_ms: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    sent: u64,
    /// The endpoint, so the remaining-count reading counts only that endpoint.
    endpoint: u16,
    fate: Fate,
    /// False once the server rejected it. Still held in the window (whether Bitget counts
    /// a rejected request is not documented), but not counted as ours in its readings.
    accepted: bool,
}

/// One sliding-window log: a category's per-second budget, an endpoint's, or the per-IP
/// overall one.
#[derive(Debug, Clone)]
pub struct WindowLog {
    window_us: u64,
    paced: bool,
    /// Every request that may still be in the window, or left it less than
    /// [`KEEP_AFTER_LEAVE_US`] ago, by id.
    entries: BTreeMap<u64, Entry>,
    /// `(leaves_at, id)` of every entry that may still be in the window.
    leaving: BTreeSet<(u64, u64)>,
    /// `(forget_at, id)` of entries that left, in leaving order: kept for the readings.
    left: VecDeque<(u64, u64)>,
    /// Grid time of the last admission; the next may leave one spacing later.
    grid: Option<u64>,
    last_admitted: Option<u64>,
    paused_until: u64,
    /// Rejections in a row (each one a separate event), and when the last was known:
    /// requests sent before it were already in flight and belong to the same event.
    strikes: u32,
    strike_at: Option<u64>,
    /// After a rejection, one request at a time until one sent since is accepted: its
    /// remaining count tells what the server allows now.
    probing: bool,
    share: ShareController,
}

impl WindowLog {
    /// A log admitting at most `limit` per `window_us`; `paced` spreads them evenly.
    pub fn new(limit: u32, window_us: u64, paced: bool) -> Self {
        let limit = limit.max(1);
        Self {
            window_us: window_us.max(1),
            paced,
            entries: BTreeMap::new(),
            leaving: BTreeSet::new(),
            left: VecDeque::new(),
            grid: None,
            last_admitted: None,
            paused_until: 0,
            strikes: 0,
            strike_at: None,
            probing: false,
            share: ShareController::new(limit),
        }
    }

    /// The limit in force now: lower than configured while the server allows less, or while
    /// other clients spend part of the budget.
    pub fn effective_limit(&self) -> u32 {
        if self.probing {
            1
        } else {
            self.share.limit()
        }
    }

    /// The share controller, for its view of other clients.
    pub fn share(&self) -> &ShareController {
        &self.share
    }

    /// When a pause ends; 0 if none was ever set.
    pub fn paused_until(&self) -> u64 {
        self.paused_until
    }

    fn spacing(&self) -> u64 {
        if self.paced {
            (self.window_us as f64 / self.share.rate()) as u64
        } else {
            0
        }
    }

    fn leaves_at(&self, entry: &Entry) -> u64 {
        match entry.fate {
            Fate::InFlight => entry.sent + IN_FLIGHT_MAX_US + self.window_us,
            Fate::Answered { leaves_at, .. } => leaves_at,
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(leaves, id)) = self.leaving.first() {
            if leaves > now {
                break;
            }
            self.leaving.pop_first();
            self.left.push_back((leaves + KEEP_AFTER_LEAVE_US, id));
        }
        while let Some(&(forget, id)) = self.left.front() {
            if forget > now {
                break;
            }
            self.left.pop_front();
            // Unless it came back into the window (answered after it timed out).
            if self
                .entries
                .get(&id)
                .is_none_or(|e| self.leaves_at(e) <= now)
            {
                self.entries.remove(&id);
            }
        }
    }

    /// Entries still in the window at `at` (at or after the last expiry): all that have not
    /// left, less the few that leave by `at`.
    fn present(&self, at: u64) -> usize {
        let gone = self.leaving.range(..=(at, u64::MAX)).count();
        self.leaving.len() - gone
    }

    /// Admissions still available at `now`.
    pub fn available(&mut self, now: u64) -> u32 {
        self.effective_limit().saturating_sub(self.in_window(now))
    }

    /// Requests of ours that may be in the server's window at `now`: in flight, or answered
    /// and not yet certainly out.
    pub fn in_window(&mut self, now: u64) -> u32 {
        self.expire(now);
        self.present(now) as u32
    }

    /// The earliest time at or after `now` when one more request may be admitted, as far
    /// as is known now: a reply arriving earlier can only bring it forward.
    pub fn ready_at(&mut self, now: u64) -> u64 {
        self.expire(now);
        let mut at = now.max(self.paused_until);
        if let (Some(grid), Some(last)) = (self.grid, self.last_admitted) {
            // On the grid, or catching up with it at twice the pace after a wait.
            let spacing = self.spacing();
            at = at.max((grid + spacing).max(last + spacing / 2));
        }
        let limit = self.effective_limit() as usize;
        let present = self.present(at);
        if present >= limit {
            // Room once all but `limit - 1` of those present have left.
            let later = (Bound::Excluded((at, u64::MAX)), Bound::Unbounded);
            if let Some(&(leaves, _)) = self.leaving.range(later).nth(present - limit) {
                at = at.max(leaves);
            }
        }
        at
    }

    /// Records the admission of request `id` to `endpoint` at `now`; the caller checked
    /// [`Self::ready_at`] first. Ids must ascend.
    pub fn admit(&mut self, now: u64, id: u64, endpoint: u16) {
        let spacing = self.spacing();
        // Lateness up to a window stays on the grid, so a wait for the window (an arrival
        // delay) is caught up instead of shifting every later request; after idling for
        // longer the grid restarts.
        self.grid = Some(match self.grid {
            Some(grid) if self.paced && now < grid + spacing + self.window_us => grid + spacing,
            _ => now,
        });
        self.last_admitted = Some(now);
        let entry = Entry {
            sent: now,
            endpoint,
            fate: Fate::InFlight,
            accepted: true,
        };
        self.leaving.insert((self.leaves_at(&entry), id));
        self.entries.insert(id, entry);
    }

    /// Request `id` was answered: the server counted it no later than local time
    /// `counted_by`; `server_ms` is the reply's `requestTime`, if it had one.
    pub fn answered(&mut self, id: u64, counted_by: u64, server_ms: Option<u64>) {
        let window = self.window_us;
        let Some(entry) = self.entries.get(&id).copied() else {
            return;
        };
        let answered = Entry {
            fate: Fate::Answered {
                leaves_at: counted_by.max(entry.sent) + window,
                server_ms,
            },
            ..entry
        };
        self.leaving.remove(&(self.leaves_at(&entry), id));
        self.leaving.insert((self.leaves_at(&answered), id));
        self.entries.insert(id, answered);
    }

    fn is_answered(&self, id: u64) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| matches!(e.fate, Fate::Answered { .. }))
    }

    /// When every answered request of ours has left the window: after a rejection only an
    /// empty window guarantees room, whatever the server's limit has become.
    pub fn drained_at(&self) -> u64 {
        // The latest leaver that was answered: among those still in the window, else among
        // those that left (in-flight entries, which leave last, are skipped).
        self.leaving
            .iter()
            .rev()
            .find(|&&(_, id)| self.is_answered(id))
            .map(|&(leaves, _)| leaves)
            .or_else(|| {
                self.left
                    .iter()
                    .rev()
                    .find(|&&(_, id)| self.is_answered(id))
                    .map(|&(forget, _)| forget - KEEP_AFTER_LEAVE_US)
            })
            .unwrap_or(0)
    }

    /// Holds every admission until `until`.
    pub fn pause_until(&mut self, until: u64) {
        self.paused_until = self.paused_until.max(until);
    }

    /// The server rejected request `id`, and we learn it at `now`. Returns the strike
    /// number (0 for the first in a row) when this is a new event, or `None` for a request
    /// that left before the previous rejection was known: it is the same event, and must
    /// neither extend the pause nor escalate the backoff. A new event also tells the share
    /// controller (see [`ShareController::rejected`]).
    pub fn record_rejection(&mut self, id: u64, now: u64) -> Option<u32> {
        let sent = self.mark_rejected(id)?;
        if self.strike_at.is_some_and(|at| sent < at) {
            return None;
        }
        self.strike_at = Some(now);
        self.strikes += 1;
        self.probing = true;
        self.share.rejected(now);
        Some(self.strikes - 1)
    }

    /// The server accepted request `id`: rejections in a row end, unless the request left
    /// before the last rejection was known.
    pub fn record_success(&mut self, id: u64) {
        let Some(sent) = self.entries.get(&id).map(|e| e.sent) else {
            return;
        };
        if self.strike_at.is_none_or(|at| sent >= at) {
            self.strikes = 0;
            self.probing = false;
        }
    }

    /// Marks request `id` rejected; returns its send time.
    pub fn mark_rejected(&mut self, id: u64) -> Option<u64> {
        let entry = self.entries.get_mut(&id)?;
        entry.accepted = false;
        Some(entry.sent)
    }

    /// The server answered request `id` (already [`Self::answered`] with its server time)
    /// with `remain` requests left in its window, read at `now`. Our accepted requests to
    /// that endpoint in the server's window at that moment, plus what remains, is what the
    /// server leaves us; the share controller follows it.
    ///
    /// Returns the new effective limit when it changed.
    pub fn observe_remaining(&mut self, id: u64, remain: u32, now: u64) -> Option<u32> {
        let entry = *self.entries.get(&id)?;
        let Fate::Answered {
            server_ms: Some(at),
            ..
        } = entry.fate
        else {
            return None;
        };
        let window_ms = SERVER_WINDOW_US / 1_000;
        // In-flight requests may already be counted; counting them as ours keeps a reading
        // from mistaking our own late requests for someone else's.
        let ours = self
            .entries
            .values()
            .filter(|e| e.accepted && e.endpoint == entry.endpoint)
            .filter(|e| match e.fate {
                Fate::InFlight => true,
                Fate::Answered {
                    server_ms: Some(t), ..
                } => t <= at && t + window_ms > at,
                Fate::Answered { .. } => false,
            })
            .count() as u32;
        self.share
            .observe(now, ours.saturating_add(remain), ours)
            .then(|| self.share.limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    /// Admits a request at the first moment the log allows, answers it `rtt` later as
    /// counted at its arrival `delay` after sending; returns the send times.
    fn saturate(log: &mut WindowLog, n: usize, delays: &[u64]) -> Vec<u64> {
        let mut clock = 0;
        let mut sent = Vec::new();
        for i in 0..n {
            clock = log.ready_at(clock);
            log.admit(clock, i as u64, 0);
            let delay = delays[i % delays.len()];
            // Answered at once for simplicity: the arrival bound is what matters here.
            log.answered(i as u64, clock + delay, None);
            sent.push(clock);
        }
        sent
    }

    #[test]
    fn a_burst_is_paced_and_never_exceeds_the_limit() {
        let mut log = WindowLog::new(20, S, true);
        let times = saturate(&mut log, 100, &[0]);
        assert_eq!(times[1] - times[0], 50_000);
        // The 21st waits for the first to leave: exactly a second after it.
        assert_eq!(times[20], S);
        assert_eq!(times[99], 99 * 50_000);
    }

    #[test]
    fn arrival_delays_push_the_next_request_past_the_counted_time() {
        let mut log = WindowLog::new(2, S, false);
        let times = saturate(&mut log, 4, &[30_000, 0]);
        // Request 1 was counted at once and leaves first, at 1 s; request 0 was counted at
        // 30 ms, so request 3 waits until 1.030 s.
        assert_eq!(times, [0, 0, 1_000_000, 1_030_000]);
    }

    #[test]
    fn a_request_in_flight_holds_its_slot_until_answered() {
        let mut log = WindowLog::new(1, S, false);
        log.admit(0, 1, 0);
        assert_eq!(log.ready_at(5 * S), IN_FLIGHT_MAX_US + S);
        log.answered(1, 5 * S, None);
        assert_eq!(log.ready_at(5 * S), 6 * S);
    }

    #[test]
    fn after_a_pause_requests_restart_one_spacing_apart_not_in_a_burst() {
        let mut log = WindowLog::new(20, S, true);
        log.admit(0, 0, 0);
        log.answered(0, 0, None);
        log.pause_until(3 * S);
        let first = log.ready_at(10);
        assert_eq!(first, 3 * S);
        log.admit(first, 1, 0);
        assert_eq!(log.ready_at(first), first + 50_000);
    }

    #[test]
    fn remaining_count_lowers_the_limit_and_restores_it() {
        let mut log = WindowLog::new(20, S, true);
        log.admit(0, 0, 7);
        log.answered(0, 1_000, Some(10_000));
        // The server says 4 remain after our one request: 5 are left for us.
        assert_eq!(log.observe_remaining(0, 4, 1_000), Some(5));
        assert_eq!(log.effective_limit(), 5);
        assert_eq!(log.ready_at(1_000), S / 5);
        // The server lets us have 20 again; followed within a step.
        for (i, at) in [(1, 3 * S), (2, 4 * S + 100)] {
            log.admit(at, i, 7);
            log.answered(i, at + 500, Some(10_000 + at / 1_000));
            log.observe_remaining(i, 19, at + 500);
        }
        assert_eq!(log.effective_limit(), 20);
    }

    #[test]
    fn the_reading_counts_only_the_answering_endpoint_in_the_server_window() {
        let mut log = WindowLog::new(20, S, true);
        // A tickers request (endpoint 1) and two candles requests (endpoint 2), then one
        // candles request counted 1.2 s earlier, outside the server's window.
        for (id, endpoint, server_ms) in
            [(0, 2, 8_800), (1, 1, 9_950), (2, 2, 9_990), (3, 2, 10_000)]
        {
            log.admit(id * 10, id, endpoint);
            log.answered(id, id * 10, Some(server_ms));
        }
        // Two of ours in (9000, 10000] plus 3 remaining: 5 for us.
        assert_eq!(log.observe_remaining(3, 3, 100), Some(5));
    }

    #[test]
    fn rejections_in_flight_are_one_event() {
        let mut log = WindowLog::new(20, S, true);
        for id in 0..3 {
            log.admit(id * 50_000, id, 0);
        }
        assert_eq!(log.record_rejection(0, 60_000), Some(0));
        // Sent at 50 ms, before we knew at 60 ms: the same event.
        assert_eq!(log.record_rejection(1, 70_000), None);
        log.record_success(1);
        // Sent at 100 ms, after we knew: a new event, which escalates.
        assert_eq!(log.record_rejection(2, 110_000), Some(1));
        log.admit(4 * S, 3, 0);
        log.record_success(3);
        log.admit(5 * S, 4, 0);
        assert_eq!(log.record_rejection(4, 5 * S + 1_000), Some(0));
    }

    #[test]
    fn an_unanswered_request_does_not_keep_answered_ones_behind_it() {
        let mut log = WindowLog::new(20, S, true);
        log.admit(0, 0, 0); // its reply never comes
        let mut clock = 0;
        for id in 1..=200 {
            clock = log.ready_at(clock);
            log.admit(clock, id, 0);
            log.answered(id, clock, None);
        }
        // The lost one holds one slot: 19 of the others per window, about 10.5 s for 200.
        assert!(clock > 10 * S && clock < 11 * S, "{clock}");
        assert_eq!(log.in_window(clock), 20);
        // Answered entries are forgotten two windows after they left, the lost one kept.
        assert!(
            log.entries.len() <= 1 + 19 + 2 * 19 + 1,
            "{}",
            log.entries.len()
        );
        assert!(log.entries.contains_key(&0));
        assert_eq!(log.leaving.len(), 20);
    }

    #[test]
    fn drained_at_is_the_latest_leave_time_of_answered_requests() {
        let mut log = WindowLog::new(20, S, true);
        assert_eq!(log.drained_at(), 0);
        log.admit(10, 0, 0);
        log.admit(50_010, 1, 0);
        log.answered(1, 70_000, None);
        log.answered(0, 20_000, None);
        assert_eq!(log.drained_at(), 70_000 + S);
    }
}
