//! The poller's section of the configuration: what to poll and how. `config` reads the file
//! and checks every key; this is what the scheduler is given.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::tiers::TierConfig;
use crate::core::market::{Market, SymbolSelection};
use crate::core::timeframe::Timeframe;

/// How candles are polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Keep every symbol's forming candle as fresh as the budget allows, round-robin.
    Live,
    /// Fetch every symbol once right after each candle close.
    Closed,
}

/// What and how to poll.
#[derive(Debug, Clone, PartialEq)]
pub struct PollConfig {
    pub market: Market,
    pub symbols: SymbolSelection,
    /// Timeframes of `market`, parsed from the config.
    pub timeframes: Vec<Timeframe>,
    pub mode: Mode,
    pub initial_candles: u32,
    /// `None`: tickers are not polled.
    pub tickers_interval: Option<Duration>,
    /// Requests in flight at once in the normal tier.
    pub concurrency: usize,
    pub discovery_refresh: Duration,
    pub discovery_cache: PathBuf,
    pub bad_symbol_retry: Duration,
    pub tiers: TierConfig,
}
