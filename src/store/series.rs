//! A series as the store holds it: its key, its closed candles as compact rows, its
//! forming candle, the holes between what was written, and the hook a persistent backend
//! attaches to receive every new closed candle.

use std::collections::VecDeque;

use rust_decimal::Decimal;

use crate::core::market::{Candle, Market, Symbol};
use crate::core::timeframe::Timeframe;

/// One series: a symbol's candles of one timeframe (which carries its market).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub symbol: Symbol,
    pub timeframe: Timeframe,
}

impl SeriesKey {
    pub fn new(symbol: Symbol, timeframe: Timeframe) -> Self {
        Self { symbol, timeframe }
    }

    /// The series of `candle`, or `None` if its timeframe is not of `market`.
    pub fn of(market: Market, candle: &Candle) -> Option<Self> {
        (candle.timeframe.market() == market)
            .then(|| Self::new(candle.symbol.clone(), candle.timeframe))
    }

    pub fn market(&self) -> Market {
        self.timeframe.market()
    }
}

/// A closed candle without its series, as a series holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandleRow {
    pub open_time: u64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub base_volume: Decimal,
    pub quote_volume: Decimal,
}

impl CandleRow {
    /// The row of `c`, without its series.
    pub fn of(c: &Candle) -> Self {
        Self {
            open_time: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            base_volume: c.base_volume,
            quote_volume: c.quote_volume,
        }
    }

    pub(super) fn candle(&self, key: &SeriesKey) -> Candle {
        Candle {
            symbol: key.symbol.clone(),
            timeframe: key.timeframe,
            open_time: self.open_time,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            base_volume: self.base_volume,
            quote_volume: self.quote_volume,
            closed: true,
        }
    }
}

/// Holes kept per series: the oldest are forgotten beyond this.
const GAPS_KEPT: usize = 64;

/// Receives every new closed candle the store keeps, in order, for a persistent backend.
/// Called under the store's lock, so it must not block: it owns its own queue (a disk
/// writer buffers there and writes on its own thread), and nothing it is handed is lost
/// to a slow reader, as journal entries can be.
pub trait WriteThrough: Send + Sync + std::fmt::Debug {
    fn closed(&self, candle: &Candle);
}

#[derive(Debug, Default)]
pub(super) struct Series {
    /// Bumped on every change, so a reader can tell it holds the same as before.
    pub(super) version: u64,
    /// Holes between journalled closed candles, `[from, to)` by open time, oldest first.
    pub(super) gaps: VecDeque<(u64, u64)>,
    /// The newest closed candle journalled to subscribers.
    pub(super) journaled_through: Option<u64>,
    pub(super) closed: VecDeque<CandleRow>,
    pub(super) forming: Option<Candle>,
    /// The server's `requestTime` of the newest reply that refreshed this series.
    pub(super) fetched_at: Option<u64>,
    /// Whether that newest refresh came over the WebSocket.
    pub(super) streamed: bool,
}

/// A series as it is held, for a reader that works under the store's lock (briefly).
#[derive(Debug, Clone, Copy)]
pub struct SeriesRead<'a> {
    /// Closed candles, oldest first, without gaps unless the exchange had them.
    pub closed: &'a VecDeque<CandleRow>,
    pub forming: Option<&'a Candle>,
    /// The server's `requestTime` of the newest reply that refreshed the series.
    pub fetched_at: Option<u64>,
    /// Whether that refresh came over the WebSocket (its push time is `fetched_at`).
    pub streamed: bool,
    /// Changes whenever anything in the series does.
    pub version: u64,
}

/// What a reader gets of one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesView {
    /// Closed candles, oldest first, the newest `limit`.
    pub closed: Vec<Candle>,
    pub forming: Option<Candle>,
    /// The server's `requestTime` of the newest reply that refreshed the series.
    pub fetched_at: Option<u64>,
    /// Closed candles held in all.
    pub held: usize,
}

impl Series {
    /// Holds `row` in open-time order (a repeat replaces nothing), dropping the oldest
    /// beyond `cap`. Returns whether it was new.
    pub(super) fn hold(&mut self, row: CandleRow, cap: usize) -> bool {
        match self
            .closed
            .binary_search_by_key(&row.open_time, |r| r.open_time)
        {
            Ok(_) => return false,
            Err(at) => self.closed.insert(at, row),
        }
        while self.closed.len() > cap {
            self.closed.pop_front();
        }
        true
    }

    /// A closed candle opening at `open` follows the one journalled last: notes the hole
    /// between them, if any.
    pub(super) fn note_gap(&mut self, timeframe: Timeframe, open: u64) {
        let Some(last) = self.journaled_through else {
            return;
        };
        let expected = timeframe.next_open(last);
        if open > expected {
            self.gaps.push_back((expected, open));
            while self.gaps.len() > GAPS_KEPT {
                self.gaps.pop_front();
            }
        }
    }
}
