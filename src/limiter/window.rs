//! The pure core of the limiter: sliding-window logs on an explicit clock.
//!
//! A token bucket of capacity C refilled at R/s admits C + R requests in the first second
//! (20 + 20 = 39 at Bitget's 20/s), and Bitget counts requests in strict sliding one-second
//! windows, so a bucket would be rejected. This core keeps the admission times themselves:
//! a request is admitted only when fewer than `limit` admissions lie in the trailing window,
//! which makes "no window ever holds more than the limit" true by construction. The window
//! is stretched by the safety margin (1.02 s for 2 %), which absorbs network jitter between
//! our clock and the server's at a cost of 2 % of the budget.
//!
//! Admissions are also paced `window / limit` apart on a fixed grid, so at 20/s one request
//! leaves every 51 ms instead of 20 at once: a reply (and its `x-mbx-used-remain-limit` or
//! 429) comes back before the next request leaves, so a limit cut costs one rejection, not a
//! burst of them. A late wake-up does not shift the grid, so timer lateness is not lost
//! budget; the log still has the last word.
//!
//! Time is microseconds since an origin chosen by the caller, so this is tested exactly,
//! and property-tested, without any runtime.

use std::collections::VecDeque;

/// Bitget's window length, in microseconds.
pub const SERVER_WINDOW_US: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    at: u64,
    /// The endpoint, so the remaining-budget estimate counts only that endpoint.
    endpoint: u16,
    /// False once the server rejected it: the server does not count it, so neither does the
    /// limit estimate.
    accepted: bool,
}

/// One sliding-window log: a category's per-second bucket or the per-IP overall bucket.
#[derive(Debug, Clone)]
pub struct WindowLog {
    configured: u32,
    effective: u32,
    window_us: u64,
    paced: bool,
    entries: VecDeque<Entry>,
    /// Grid time of the last admission; the next may leave one spacing later.
    grid: Option<u64>,
    paused_until: u64,
    /// Rejections in a row (each one a separate event), and the time of the last: requests
    /// admitted before it were already in flight and belong to the same event.
    strikes: u32,
    strike_at: Option<u64>,
}

impl WindowLog {
    /// A log admitting at most `limit` per `window_us`; `paced` spreads them evenly.
    pub fn new(limit: u32, window_us: u64, paced: bool) -> Self {
        let limit = limit.max(1);
        Self {
            configured: limit,
            effective: limit,
            window_us: window_us.max(1),
            paced,
            entries: VecDeque::with_capacity(limit.min(8192) as usize),
            grid: None,
            paused_until: 0,
            strikes: 0,
            strike_at: None,
        }
    }

    /// The limit in force now: lower than configured while the server says it allows less.
    pub fn effective_limit(&self) -> u32 {
        self.effective
    }

    /// When a pause (429 or remain 0) ends; 0 if none was ever set.
    pub fn paused_until(&self) -> u64 {
        self.paused_until
    }

    fn spacing(&self) -> u64 {
        if self.paced {
            self.window_us / u64::from(self.effective)
        } else {
            0
        }
    }

    fn expire(&mut self, now: u64) {
        let keep = self.window_us.max(SERVER_WINDOW_US);
        while self.entries.front().is_some_and(|e| e.at + keep <= now) {
            self.entries.pop_front();
        }
    }

    fn in_window(&self, now: u64) -> usize {
        self.entries
            .iter()
            .rev()
            .take_while(|e| e.at + self.window_us > now)
            .count()
    }

    /// Admissions still available at `now` in the trailing window.
    pub fn available(&mut self, now: u64) -> u32 {
        self.expire(now);
        (self.effective as usize).saturating_sub(self.in_window(now)) as u32
    }

    /// The earliest time at or after `now` when one more request may be admitted.
    pub fn ready_at(&mut self, now: u64) -> u64 {
        self.expire(now);
        let mut at = now.max(self.paused_until);
        if let Some(grid) = self.grid {
            at = at.max(grid + self.spacing());
        }
        let limit = self.effective as usize;
        let n = self.entries.len();
        if n >= limit {
            // Entries are sorted; the one `limit` places from the newest must leave first.
            at = at.max(self.entries[n - limit].at + self.window_us);
        }
        at
    }

    /// Records an admission at `now`; the caller checked [`Self::ready_at`] first.
    pub fn admit(&mut self, now: u64) {
        self.admit_to(now, u16::MAX);
    }

    /// Records an admission at `now` to `endpoint`.
    pub fn admit_to(&mut self, now: u64, endpoint: u16) {
        let spacing = self.spacing();
        // Up to one spacing of lateness stays on the grid; after idling the grid restarts.
        self.grid = Some(match self.grid {
            Some(grid) if now < grid + 2 * spacing => grid + spacing,
            _ => now,
        });
        self.entries.push_back(Entry {
            at: now,
            endpoint,
            accepted: true,
        });
    }

    /// When everything admitted so far has left the (margin-stretched) window: after a
    /// rate-limit rejection the new limit is unknown, and only an empty server window
    /// guarantees that the next request is accepted and its remaining count tells the limit.
    pub fn drained_at(&self) -> u64 {
        self.entries.back().map_or(0, |e| e.at + self.window_us)
    }

    /// Holds every admission until `until`.
    pub fn pause_until(&mut self, until: u64) {
        self.paused_until = self.paused_until.max(until);
    }

    /// The server rejected the request admitted at `admitted_at`, and we learn it at `now`.
    /// Returns the strike number (0 for the first in a row) when this is a new event, or
    /// `None` for a request that left before the previous rejection was known: it is the
    /// same event, and must neither extend the pause nor escalate the backoff.
    pub fn record_rejection(&mut self, admitted_at: u64, now: u64) -> Option<u32> {
        self.mark_rejected(admitted_at);
        if self.strike_at.is_some_and(|at| admitted_at < at) {
            return None;
        }
        self.strike_at = Some(now);
        self.strikes += 1;
        Some(self.strikes - 1)
    }

    /// The server accepted the request admitted at `admitted_at`: rejections in a row end,
    /// unless the request left before the last rejection was known.
    pub fn record_success(&mut self, admitted_at: u64) {
        if self.strike_at.is_none_or(|at| admitted_at >= at) {
            self.strikes = 0;
        }
    }

    /// The server rejected the request admitted at `admitted_at`.
    pub fn mark_rejected(&mut self, admitted_at: u64) {
        if let Some(entry) = self.entries.iter_mut().rev().find(|e| e.at == admitted_at) {
            entry.accepted = false;
        }
    }

    /// The server answered the request admitted at `admitted_at` with `remain` requests left
    /// in its window. Our accepted requests to that endpoint in the server's window at that
    /// moment plus what
    /// it says remains is the limit it enforces: the effective limit follows it (never above
    /// the configured limit). At `remain == 0` the category is held until the oldest of
    /// those requests leaves the server's window.
    ///
    /// Returns the new effective limit when it changed.
    pub fn observe_remaining(&mut self, admitted_at: u64, remain: u32) -> Option<u32> {
        let endpoint = self
            .entries
            .iter()
            .rev()
            .find(|e| e.at == admitted_at)
            .map_or(u16::MAX, |e| e.endpoint);
        let mut ours = self.entries.iter().filter(|e| {
            e.accepted
                && e.endpoint == endpoint
                && e.at + SERVER_WINDOW_US > admitted_at
                && e.at <= admitted_at
        });
        let oldest = ours.next().map(|e| e.at);
        let count = oldest.map_or(0, |_| 1 + ours.count()) as u32;
        if remain == 0 {
            if let Some(oldest) = oldest {
                self.pause_until(oldest + self.window_us);
            }
        }
        let estimate = count.saturating_add(remain).clamp(1, self.configured);
        if estimate != self.effective {
            self.effective = estimate;
            return Some(estimate);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    /// Drives `arrivals` (sorted request times) through a log the way the async limiter
    /// does: each waits until ready, in order. Returns the admission times.
    fn admit_all(log: &mut WindowLog, arrivals: &[u64]) -> Vec<u64> {
        let mut clock = 0;
        arrivals
            .iter()
            .map(|&arrival| {
                clock = clock.max(arrival);
                clock = log.ready_at(clock);
                log.admit(clock);
                clock
            })
            .collect()
    }

    fn max_in_any_window(times: &[u64], window: u64) -> usize {
        // The busiest window ends at some admission, so checking those suffices.
        times
            .iter()
            .map(|&end| {
                times
                    .iter()
                    .filter(|&&t| t + window > end && t <= end)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_burst_is_paced_and_never_exceeds_the_limit() {
        let mut log = WindowLog::new(20, 1_020_000, true);
        let times = admit_all(&mut log, &[0; 100]);
        assert_eq!(times[1] - times[0], 51_000);
        assert_eq!(max_in_any_window(&times, S), 20);
        // 100 requests at 51 ms spacing: the last leaves at 99 × 51 ms.
        assert_eq!(times[99], 99 * 51_000);
    }

    #[test]
    fn after_a_pause_requests_restart_one_spacing_apart_not_in_a_burst() {
        let mut log = WindowLog::new(20, 1_020_000, true);
        log.admit(0);
        log.pause_until(3_000_000);
        let first = log.ready_at(10);
        assert_eq!(first, 3_000_000);
        log.admit(first);
        assert_eq!(log.ready_at(first), first + 51_000);
    }

    #[test]
    fn unpaced_log_admits_the_limit_then_waits_a_window() {
        let mut log = WindowLog::new(5, S, false);
        let times = admit_all(&mut log, &[0; 7]);
        assert_eq!(times, [0, 0, 0, 0, 0, S, S]);
    }

    #[test]
    fn remaining_header_lowers_and_restores_the_effective_limit() {
        let mut log = WindowLog::new(20, 1_020_000, true);
        log.admit(0);
        // The server says 4 remain after our one request: it enforces 5.
        assert_eq!(log.observe_remaining(0, 4), Some(5));
        assert_eq!(log.effective_limit(), 5);
        assert_eq!(log.ready_at(1_000), 1_020_000 / 5);
        // Later 15 remain after our one request in the window: back to 20.
        log.admit(3 * S);
        assert_eq!(log.observe_remaining(3 * S, 15), Some(16));
        log.admit(3 * S + 100);
        assert_eq!(log.observe_remaining(3 * S + 100, 18), Some(20));
    }

    #[test]
    fn remaining_zero_holds_until_the_server_window_has_room() {
        let mut log = WindowLog::new(20, 1_020_000, true);
        log.admit(100);
        log.admit(200_000);
        assert_eq!(log.observe_remaining(200_000, 0), Some(2));
        assert_eq!(log.paused_until(), 100 + 1_020_000);
        assert_eq!(log.ready_at(201_000), 100 + 1_020_000);
    }

    #[test]
    fn requests_already_in_flight_at_a_rejection_are_the_same_event() {
        let mut log = WindowLog::new(20, 1_020_000, true);
        for t in [0, 51_000, 102_000] {
            log.admit(t);
        }
        assert_eq!(log.record_rejection(0, 60_000), Some(0));
        // 51 ms left before we knew at 60 ms: a straggler of the same event, whose
        // success would not end the streak either.
        assert_eq!(log.record_rejection(51_000, 70_000), None);
        log.record_success(51_000);
        // 102 ms left after we knew: a new event, which escalates.
        assert_eq!(log.record_rejection(102_000, 110_000), Some(1));
        log.admit(4_000_000);
        log.record_success(4_000_000);
        log.admit(5_000_000);
        assert_eq!(
            log.record_rejection(5_000_000, 5_001_000),
            Some(0),
            "reset by a success"
        );
    }

    #[test]
    fn drained_at_is_the_newest_admission_plus_the_window() {
        let mut log = WindowLog::new(20, 1_020_000, true);
        assert_eq!(log.drained_at(), 0);
        log.admit(10);
        log.admit(51_010);
        assert_eq!(log.drained_at(), 51_010 + 1_020_000);
    }

    #[test]
    fn the_estimate_counts_only_the_answering_endpoint() {
        let mut log = WindowLog::new(20, 1_020_000, true);
        log.admit_to(0, 1); // tickers
        log.admit_to(51_000, 2); // candles
        log.admit_to(102_000, 2);
        // The candles endpoint allows 5: two used, three remain. The tickers request is
        // metered separately by the server and must not raise the estimate to 6.
        assert_eq!(log.observe_remaining(102_000, 3), Some(5));
    }

    #[test]
    fn rejected_requests_do_not_count_towards_the_estimate() {
        let mut log = WindowLog::new(20, 1_020_000, true);
        log.admit(0);
        log.admit(51_000);
        log.mark_rejected(51_000);
        log.admit(102_000);
        assert_eq!(log.observe_remaining(102_000, 3), Some(5));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Event {
            /// A request arrives this many microseconds after the previous event.
            Arrive(u64),
            /// The server reports `remain` for the latest admission.
            Remain(u32),
            /// The server rejects the latest admission and asks for a pause.
            Reject(u64),
        }

        fn event() -> impl Strategy<Value = Event> {
            prop_oneof![
                6 => (0u64..400_000).prop_map(Event::Arrive),
                2 => (0u32..40).prop_map(Event::Remain),
                1 => (0u64..3_000_000).prop_map(Event::Reject),
            ]
        }

        proptest! {
            #[test]
            fn no_one_second_window_ever_exceeds_the_limit(
                limit in 1u32..40,
                margin_permille in 0u64..60,
                events in proptest::collection::vec(event(), 1..400),
            ) {
                let window = S + S * margin_permille / 1000;
                let mut log = WindowLog::new(limit, window, true);
                let mut clock = 0;
                let mut admitted = Vec::new();
                for event in events {
                    match event {
                        Event::Arrive(gap) => {
                            clock = log.ready_at(clock + gap);
                            log.admit(clock);
                            admitted.push(clock);
                        }
                        Event::Remain(remain) => {
                            if let Some(&last) = admitted.last() {
                                log.observe_remaining(last, remain);
                            }
                        }
                        Event::Reject(pause) => {
                            if let Some(&last) = admitted.last() {
                                log.mark_rejected(last);
                                log.pause_until(clock + pause);
                            }
                        }
                    }
                }
                prop_assert!(max_in_any_window(&admitted, window) <= limit as usize);
                prop_assert!(max_in_any_window(&admitted, S) <= limit as usize);
            }

            #[test]
            fn a_saturating_load_gets_at_least_97_percent_of_the_rate(
                limit in 1u32..100,
                wake_late_us in proptest::collection::vec(0u64..2_000, 64),
            ) {
                // Timers fire up to 2 ms late, as tokio's millisecond wheel can.
                let mut log = WindowLog::new(limit, 1_020_000, true);
                let mut clock = 0;
                let mut admitted = 0u64;
                let horizon = 20 * S;
                let mut i = 0;
                loop {
                    let ready = log.ready_at(clock);
                    clock = if ready > clock { ready + wake_late_us[i % 64] } else { clock };
                    i += 1;
                    if clock >= horizon {
                        break;
                    }
                    log.admit(clock);
                    admitted += 1;
                }
                let ideal = f64::from(limit) * 20.0;
                prop_assert!(admitted as f64 >= 0.97 * ideal, "{admitted} of {ideal}");
            }
        }
    }
}
