//! The poller's sections of the configuration, `[poll]` and `[tiers]`: what to poll and how,
//! as written, their checks, and what the scheduler is given.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::tiers::TierConfig;
use crate::core::check::Checker;
use crate::core::market::{Market, Symbol, SymbolSelection};
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
    /// Fetch (or subscribe) only each timeframe that is not exactly made of a shorter
    /// configured one, and build the others from it ([`crate::core::derive::split`]).
    pub derive: bool,
    /// Every this many built closed candles, one is read from the exchange and compared.
    pub derive_check_every: u64,
}

/// `symbols = "all"` or `symbols = ["BTCUSDT", "ETH/USDT:USDT"]`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RawSymbols {
    All,
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for RawSymbols {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            List(Vec<String>),
        }
        match Either::deserialize(deserializer).map_err(|_| {
            de::Error::custom("symbols must be \"all\" or a list of symbols like [\"BTCUSDT\"]")
        })? {
            Either::Text(t) if t.eq_ignore_ascii_case("all") => Ok(Self::All),
            Either::Text(t) => Err(de::Error::custom(format!(
                "symbols = \"{t}\": write \"all\" or a list like [\"{t}\"]"
            ))),
            Either::List(list) => Ok(Self::List(list)),
        }
    }
}

/// `[poll]` as written; `symbols` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSection {
    symbols: RawSymbols,
    #[serde(default = "default_timeframes")]
    timeframes: Vec<String>,
    #[serde(default = "default_mode")]
    mode: Mode,
    #[serde(default = "default_initial_candles")]
    initial_candles: u32,
    #[serde(default = "default_tickers_interval")]
    tickers_interval_secs: f64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    /// No longer used: consumers read from the store. Accepted so older files load.
    channel_capacity: Option<usize>,
    #[serde(default = "default_discovery_refresh")]
    discovery_refresh_secs: u64,
    #[serde(default = "default_discovery_cache")]
    discovery_cache: PathBuf,
    #[serde(default)]
    derive: bool,
    #[serde(default = "default_derive_check_every")]
    derive_check_every: u64,
}

fn default_derive_check_every() -> u64 {
    100
}

fn default_timeframes() -> Vec<String> {
    vec!["1m".to_owned()]
}
fn default_mode() -> Mode {
    Mode::Live
}
fn default_initial_candles() -> u32 {
    100
}
fn default_tickers_interval() -> f64 {
    5.0
}
fn default_concurrency() -> usize {
    8
}
fn default_discovery_refresh() -> u64 {
    6 * 3600
}
fn default_discovery_cache() -> PathBuf {
    PathBuf::from("logs/contracts_cache.json")
}

impl PollSection {
    /// What to poll in `market`, without the tiers and the rest for a refused symbol, which
    /// `config` composes in from `[tiers]` and `[retry]`; problems go to `c`, notes (keys no
    /// longer used) to `notes`.
    pub fn check(&self, c: &mut Checker, market: Market, notes: &mut Vec<String>) -> PollConfig {
        let symbols = match &self.symbols {
            RawSymbols::All => SymbolSelection::All,
            RawSymbols::List(list) => {
                if list.is_empty() {
                    c.problem("poll.symbols is empty; list at least one symbol or write \"all\"");
                }
                let mut out: Vec<Symbol> = Vec::with_capacity(list.len());
                let mut seen = std::collections::HashSet::with_capacity(list.len());
                for text in list {
                    match Symbol::parse(text) {
                        Ok(s) if seen.insert(s.clone()) => out.push(s),
                        Ok(s) => c.problem(format!("poll.symbols lists {s} twice")),
                        Err(e) => c.problem(format!("poll.symbols: {e}")),
                    }
                }
                SymbolSelection::List(out)
            }
        };
        if self.timeframes.is_empty() {
            c.problem("poll.timeframes is empty; list at least one, e.g. [\"1m\"]");
        }
        let mut timeframes = Vec::new();
        for tf in &self.timeframes {
            match Timeframe::parse(market, tf) {
                Some(t) if !timeframes.contains(&t) => timeframes.push(t),
                Some(_) => c.problem(format!("poll.timeframes lists \"{tf}\" twice")),
                None => c.problem(format!(
                    "poll.timeframes holds \"{tf}\", which Bitget does not offer for {}; allowed {}",
                    match market {
                        Market::Futures => "futures",
                        Market::Spot => "spot",
                    },
                    Timeframe::all(market)
                        .map(Timeframe::rest)
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            }
        }
        let initial_candles = c.range("poll.initial_candles", self.initial_candles, 1, 1000);
        let tickers_interval = if self.tickers_interval_secs == 0.0 {
            None
        } else {
            Some(c.secs_or_off(
                "poll.tickers_interval_secs",
                self.tickers_interval_secs,
                0.1,
                86_400.0,
                true,
            ))
        };
        let concurrency = c.range("poll.concurrency", self.concurrency, 1, 256);
        if self.channel_capacity.is_some() {
            notes.push("poll.channel_capacity no longer applies and is ignored: consumers read from the candle store, and [store] journal_capacity bounds how far one may fall behind".to_owned());
        }
        let discovery_refresh = c.range(
            "poll.discovery_refresh_secs",
            self.discovery_refresh_secs,
            60,
            7 * 86_400,
        );
        PollConfig {
            market,
            symbols,
            timeframes,
            mode: self.mode,
            initial_candles,
            tickers_interval,
            concurrency,
            discovery_refresh: Duration::from_secs(discovery_refresh),
            discovery_cache: self.discovery_cache.clone(),
            // Both are their own sections' ([retry], [tiers]), composed in by `config`.
            bad_symbol_retry: Duration::ZERO,
            tiers: TierConfig::default(),
            derive: self.derive,
            derive_check_every: self.derive_check_every,
        }
    }
}

/// `[tiers]` as written; every key defaults to [`TierConfig::default`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TiersSection {
    slow_above: usize,
    slow_symbols: usize,
    slow_pause_ms: u64,
    crawl_above: usize,
    crawl_symbols: usize,
    crawl_pause_ms: u64,
}

impl Default for TiersSection {
    fn default() -> Self {
        let t = TierConfig::default();
        Self {
            slow_above: t.slow_above,
            slow_symbols: t.slow_symbols,
            slow_pause_ms: t.slow_pause.as_millis() as u64,
            crawl_above: t.crawl_above,
            crawl_symbols: t.crawl_symbols,
            crawl_pause_ms: t.crawl_pause.as_millis() as u64,
        }
    }
}

impl TiersSection {
    /// The adaptive tiers; problems go to `c`.
    pub fn check(&self, c: &mut Checker) -> TierConfig {
        let slow_symbols = c.range("tiers.slow_symbols", self.slow_symbols, 1, 10_000);
        let crawl_symbols = c.range("tiers.crawl_symbols", self.crawl_symbols, 1, 10_000);
        let slow_pause = c.range("tiers.slow_pause_ms", self.slow_pause_ms, 0, 60_000);
        let crawl_pause = c.range("tiers.crawl_pause_ms", self.crawl_pause_ms, 0, 60_000);
        if self.crawl_above < self.slow_above {
            c.problem(format!(
                "tiers.crawl_above = {} must be at least tiers.slow_above = {}",
                self.crawl_above, self.slow_above
            ));
        }
        TierConfig {
            slow_above: self.slow_above,
            slow_symbols,
            slow_pause: Duration::from_millis(slow_pause),
            crawl_above: self.crawl_above,
            crawl_symbols,
            crawl_pause: Duration::from_millis(crawl_pause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_timeframes_are_parsed_once_and_refusals_list_what_the_market_spells() {
        let section: PollSection =
            toml::from_str("symbols = [\"BTCUSDT\"]\ntimeframes = [\"1min\", \"5min\", \"2H\"]\n")
                .unwrap();
        let mut c = Checker::new();
        let poll = section.check(&mut c, Market::Spot, &mut Vec::new());
        assert_eq!(
            poll.timeframes,
            [
                Timeframe::parse(Market::Spot, "1min").unwrap(),
                Timeframe::parse(Market::Spot, "5min").unwrap()
            ]
        );
        let problems = c.into_problems();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("poll.timeframes holds \"2H\", which Bitget does not offer for spot; allowed 1min 3min 5min 15min 30min 1h 4h 6h 12h 1day 3day 1week 1M 6Hutc"),
            "{problems:?}"
        );
    }
}
