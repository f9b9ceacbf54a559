//! Strategies: pure functions of the candles (and tickers) they are fed, returning intents.
//!
//! A [`Strategy`] does no I/O, reads no clock and sets up no logging, so the same candles
//! always give the same intents: it is tested on fixture data, replayed, and run unchanged
//! in paper and live trading. Everything with side effects (fills, orders, logs) belongs to
//! [`crate::trading`]. Instances are defined by `strategies/*.toml` ([`spec`]).

pub mod spec;
pub mod supertrend;

use std::fmt;

use rust_decimal::Decimal;

use crate::core::market::{Candle, Symbol, Ticker};

pub use spec::{load_dir, StrategyError, StrategySpec, KINDS};
pub use supertrend::{SuperTrend, SuperTrendParams, SuperTrendPullback};

/// The position a strategy wants in one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Long,
    Short,
    Flat,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Long => "long",
            Self::Short => "short",
            Self::Flat => "flat",
        }
    }

    /// +1 for long, -1 for short, 0 for flat.
    pub fn sign(self) -> Decimal {
        match self {
            Self::Long => Decimal::ONE,
            Self::Short => -Decimal::ONE,
            Self::Flat => Decimal::ZERO,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a strategy wants done, decided on a candle close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub symbol: Symbol,
    pub target: Target,
    /// Why, in a few words, for the trading log.
    pub reason: &'static str,
    /// Open time of the candle that decided it (Unix ms); orders for it fill after its close.
    pub candle_open_time: u64,
    /// The close it was decided on.
    pub decided_at_price: Decimal,
}

/// A trading strategy. Implementations are pure: no I/O, no clock, no logging setup.
pub trait Strategy: Send + fmt::Debug {
    /// A closed candle of the instance's timeframe for one of its symbols, oldest first.
    fn on_candle(&mut self, candle: &Candle) -> Vec<Intent>;

    /// A ticker snapshot of one of its symbols. Most strategies decide on candles only.
    fn on_ticker(&mut self, _ticker: &Ticker) -> Vec<Intent> {
        Vec::new()
    }
}
