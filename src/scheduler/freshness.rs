//! How old each stream's newest closed candle is, and which streams have gone stale.
//!
//! A strategy fed stale candles trades on the past without knowing it, and a poller that
//! is quietly skipping a symbol (parked, backing off, starved by a degraded tier) looks
//! healthy from its request rate alone. So the poller records, per (symbol, timeframe), when
//! its newest closed candle closed, by the server's clock.
//!
//! The age of a stream is the time since that close. In steady state it stays below one
//! timeframe plus one polling round; a stream is **stale** when it is older than twice its
//! timeframe, that is when a whole candle has been missed by more than a timeframe. A stream
//! that has not had a candle yet counts from when it was first watched. The poller checks
//! every second and logs a warning when a stream turns stale and a notice when it recovers;
//! the usage reporter summarises the stale set every interval; the metrics endpoint exports
//! every age.

use std::sync::Mutex;

use crate::core::market::Symbol;
use crate::core::timeframe::Timeframe;

/// One stream's age at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAge {
    /// The stream's index, which is the poller's.
    pub index: usize,
    pub symbol: Symbol,
    pub timeframe: Timeframe,
    /// Milliseconds since its newest closed candle closed (or since it was first watched).
    pub age_ms: u64,
    /// Whether it has had a closed candle at all.
    pub has_candle: bool,
    /// Staleness threshold: twice the timeframe.
    pub limit_ms: u64,
}

impl StreamAge {
    pub fn is_stale(&self) -> bool {
        self.age_ms > self.limit_ms
    }

    /// `BTCUSDT 1m 185s`, for log lines.
    pub fn describe(&self) -> String {
        format!("{} {} {}s", self.symbol, self.timeframe, self.age_ms / 1000)
    }
}

/// Streams that turned stale or fresh at a check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub newly_stale: Vec<StreamAge>,
    pub fresh_again: Vec<StreamAge>,
}

#[derive(Debug)]
struct Entry {
    symbol: Symbol,
    timeframe: Timeframe,
    /// Server-clock ms when the newest closed candle closed.
    last_close_ms: Option<u64>,
    watched_since_ms: u64,
    stale: bool,
    retired: bool,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Entry>,
    /// Server clock minus ours.
    offset_ms: i64,
}

/// The shared age table: the poller writes it, telemetry and metrics read it.
#[derive(Debug, Default)]
pub struct Freshness {
    state: Mutex<State>,
}

impl Freshness {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching a stream at wall time `now_ms`; returns its index, which is the
    /// poller's stream index as long as streams are only ever added.
    pub fn watch(&self, symbol: Symbol, timeframe: Timeframe, now_ms: u64) -> usize {
        let mut state = self.lock();
        let since = server_ms(now_ms, state.offset_ms);
        state.entries.push(Entry {
            symbol,
            timeframe,
            last_close_ms: None,
            watched_since_ms: since,
            stale: false,
            retired: false,
        });
        state.entries.len() - 1
    }

    /// Stream `index` received the closed candle that opened at `open_ms` (which also
    /// brings a retired stream back: its symbol was listed again).
    pub fn closed(&self, index: usize, open_ms: u64) {
        let mut state = self.lock();
        if let Some(entry) = state.entries.get_mut(index) {
            entry.retired = false;
            let close = entry.timeframe.next_open(open_ms);
            if entry.last_close_ms.is_none_or(|last| close > last) {
                entry.last_close_ms = Some(close);
            }
        }
    }

    /// Stream `index` is no longer polled (its symbol was delisted): no age, never stale.
    pub fn retire(&self, index: usize) {
        if let Some(entry) = self.lock().entries.get_mut(index) {
            entry.retired = true;
            entry.stale = false;
        }
    }

    /// The server's clock minus ours, so ages are measured against the candles' clock.
    pub fn set_offset(&self, offset_ms: i64) {
        self.lock().offset_ms = offset_ms;
    }

    /// Every watched stream's age at wall time `now_ms`.
    pub fn ages(&self, now_ms: u64) -> Vec<StreamAge> {
        let state = self.lock();
        let now = server_ms(now_ms, state.offset_ms);
        state
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.retired)
            .map(|(i, e)| age_of(i, e, now))
            .collect()
    }

    /// Re-evaluates every stream at wall time `now_ms`; returns the ones that changed.
    pub fn check(&self, now_ms: u64) -> Changes {
        let mut state = self.lock();
        let now = server_ms(now_ms, state.offset_ms);
        let mut changes = Changes::default();
        for (index, entry) in state.entries.iter_mut().enumerate() {
            if entry.retired {
                continue;
            }
            let age = age_of(index, entry, now);
            let stale = age.is_stale();
            if stale != entry.stale {
                entry.stale = stale;
                if stale {
                    changes.newly_stale.push(age);
                } else {
                    changes.fresh_again.push(age);
                }
            }
        }
        changes
    }

    /// The streams found stale at the last check, oldest first, with their ages now.
    pub fn stale(&self, now_ms: u64) -> Vec<StreamAge> {
        let state = self.lock();
        let now = server_ms(now_ms, state.offset_ms);
        let mut stale: Vec<StreamAge> = state
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.stale && !e.retired)
            .map(|(i, e)| age_of(i, e, now))
            .collect();
        stale.sort_by_key(|a| std::cmp::Reverse(a.age_ms));
        stale
    }

    /// Streams watched and not retired.
    pub fn watched(&self) -> usize {
        self.lock().entries.iter().filter(|e| !e.retired).count()
    }
}

fn server_ms(now_ms: u64, offset_ms: i64) -> u64 {
    now_ms.saturating_add_signed(offset_ms)
}

fn age_of(index: usize, entry: &Entry, now: u64) -> StreamAge {
    StreamAge {
        index,
        symbol: entry.symbol.clone(),
        timeframe: entry.timeframe,
        age_ms: now.saturating_sub(entry.last_close_ms.unwrap_or(entry.watched_since_ms)),
        has_candle: entry.last_close_ms.is_some(),
        limit_ms: entry
            .timeframe
            .granularity()
            .nominal_minutes()
            .saturating_mul(2 * 60_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::timeframe::Market;

    const MIN: u64 = 60_000;
    const T0: u64 = 1_795_372_440_000; // a minute boundary

    fn one_minute() -> Timeframe {
        Timeframe::parse(Market::Futures, "1m").unwrap()
    }

    #[test]
    fn age_counts_from_the_close_and_turns_stale_after_two_timeframes() {
        let fresh = Freshness::default();
        let btc = fresh.watch(Symbol::from_exchange("BTCUSDT"), one_minute(), T0);
        // The candle that opened at T0 closes at T0 + 1 min.
        fresh.closed(btc, T0);
        let ages = fresh.ages(T0 + MIN + 30_000);
        assert_eq!(ages[0].age_ms, 30_000);
        assert!(ages[0].has_candle);
        assert_eq!(ages[0].limit_ms, 2 * MIN);
        // Exactly two timeframes is not yet stale; a millisecond more is.
        assert_eq!(fresh.check(T0 + 3 * MIN), Changes::default());
        let changes = fresh.check(T0 + 3 * MIN + 1);
        assert_eq!(changes.newly_stale.len(), 1);
        assert_eq!(changes.newly_stale[0].describe(), "BTCUSDT 1m 120s");
        // Reported once, not at every check.
        assert_eq!(fresh.check(T0 + 4 * MIN), Changes::default());
        assert_eq!(fresh.stale(T0 + 4 * MIN)[0].age_ms, 3 * MIN);
        // A newer candle makes it fresh again.
        fresh.closed(btc, T0 + 3 * MIN);
        let changes = fresh.check(T0 + 4 * MIN);
        assert_eq!(changes.fresh_again.len(), 1);
        assert!(fresh.stale(T0 + 4 * MIN).is_empty());
    }

    #[test]
    fn an_older_candle_never_moves_the_age_back_and_offsets_apply() {
        let fresh = Freshness::default();
        let s = fresh.watch(Symbol::from_exchange("ETHUSDT"), one_minute(), T0);
        fresh.closed(s, T0 + MIN);
        fresh.closed(s, T0);
        assert_eq!(fresh.ages(T0 + 2 * MIN)[0].age_ms, 0);
        // The server is 5 s ahead of us: its candles are 5 s older than our clock says.
        fresh.set_offset(5_000);
        assert_eq!(fresh.ages(T0 + 2 * MIN)[0].age_ms, 5_000);
    }

    #[test]
    fn a_stream_without_candles_counts_from_when_it_was_watched_and_retired_ones_vanish() {
        let fresh = Freshness::default();
        let a = fresh.watch(Symbol::from_exchange("AUSDT"), one_minute(), T0);
        fresh.watch(Symbol::from_exchange("BUSDT"), one_minute(), T0);
        let changes = fresh.check(T0 + 2 * MIN + 1);
        assert_eq!(changes.newly_stale.len(), 2);
        assert!(!changes.newly_stale[0].has_candle);
        fresh.retire(a);
        assert_eq!(fresh.watched(), 1);
        assert_eq!(fresh.stale(T0 + 3 * MIN).len(), 1);
        assert_eq!(fresh.ages(T0).len(), 1);
    }
}
