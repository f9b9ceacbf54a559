//! Freshness: how old each watched series' newest delivered closed candle is, and which
//! series have gone stale.
//!
//! A strategy fed stale candles trades on the past without knowing it, and a poller that
//! is quietly skipping a symbol (parked, backing off, starved by a degraded tier) looks
//! healthy from its request rate alone. The age of a series is read from what the store
//! delivered (its newest journalled closed candle), not from a copy the fetcher keeps, by
//! the server's clock: the time since that candle closed. A series without a candle yet
//! counts from when it was first watched.
//!
//! In steady state an age stays below one timeframe plus one polling round; a series is
//! **stale** when it is older than twice its timeframe, that is when a whole candle has
//! been missed by more than a timeframe. The poller checks every second and logs when a
//! series turns stale and when it recovers; usage lines summarise the stale set; the
//! metrics endpoint exports every age.

use crate::core::market::Symbol;
use crate::core::timeframe::Timeframe;

use super::series::SeriesKey;

/// One series' age at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAge {
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

/// Series that turned stale or fresh at a check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub newly_stale: Vec<StreamAge>,
    pub fresh_again: Vec<StreamAge>,
}

/// A watched series' bookkeeping (its candles are the series').
#[derive(Debug, Clone, Copy)]
pub(super) struct Watch {
    /// Server-clock ms when it was first watched.
    pub(super) since_ms: u64,
    /// Whether the last check found it stale.
    pub(super) stale: bool,
    /// No longer fetched (its symbol was delisted): no age, never stale.
    pub(super) retired: bool,
}

impl Watch {
    pub(super) fn new(since_ms: u64) -> Self {
        Self {
            since_ms,
            stale: false,
            retired: false,
        }
    }
}

/// The age of `key`, watched as `watch`, whose newest delivered closed candle opened at
/// `delivered` (if any), at server time `now_ms`.
pub(super) fn age_of(
    key: &SeriesKey,
    watch: &Watch,
    delivered: Option<u64>,
    now_ms: u64,
) -> StreamAge {
    let closed_at = delivered.map(|open| key.timeframe.next_open(open));
    StreamAge {
        symbol: key.symbol.clone(),
        timeframe: key.timeframe,
        age_ms: now_ms.saturating_sub(closed_at.unwrap_or(watch.since_ms)),
        has_candle: closed_at.is_some(),
        limit_ms: key
            .timeframe
            .granularity()
            .nominal_minutes()
            .saturating_mul(2 * 60_000),
    }
}
