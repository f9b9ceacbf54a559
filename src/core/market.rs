//! The poller's domain types: what strategies receive.
//!
//! Bitget sends every number as a JSON string; here they are already `Decimal` and integer
//! milliseconds, converted once in [`crate::bitget::parse`]. Symbols are always Bitget's plain form
//! (`BTCUSDT`), whatever spelling the operator used in the config.

use std::fmt;

use rust_decimal::Decimal;

pub use crate::core::timeframe::Market;
use crate::core::timeframe::Timeframe;

/// A symbol in Bitget's plain form, e.g. `BTCUSDT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(String);

impl Symbol {
    /// Normalises an operator's spelling: `BTCUSDT`, `btcusdt`, ccxt's `BTC/USDT:USDT` (swap)
    /// or `BTC/USDT` (spot) all become `BTCUSDT`.
    ///
    /// # Errors
    /// Empty text, characters other than letters and digits, or a settle currency that
    /// differs from the quote (`BTC/USD:BTC` is a coin-margined contract, not USDT-M).
    pub fn parse(text: &str) -> Result<Self, SymbolError> {
        let text = text.trim();
        let (pair, settle) = match text.split_once(':') {
            Some((pair, settle)) => (pair, Some(settle)),
            None => (text, None),
        };
        let plain = match pair.split_once('/') {
            Some((base, quote)) => {
                if let Some(settle) = settle {
                    if !settle.eq_ignore_ascii_case(quote) {
                        return Err(SymbolError::Settle(text.to_owned()));
                    }
                }
                format!("{base}{quote}")
            }
            None if settle.is_some() => return Err(SymbolError::Spelling(text.to_owned())),
            None => pair.to_owned(),
        };
        if plain.is_empty() || !plain.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(SymbolError::Spelling(text.to_owned()));
        }
        Ok(Self(plain.to_ascii_uppercase()))
    }

    /// A symbol Bitget itself sent; trusted as is.
    pub fn from_exchange(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a configured symbol was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("symbol '{0}' must look like BTCUSDT or BTC/USDT:USDT")]
    Spelling(String),
    #[error(
        "symbol '{0}' settles in another currency than its quote; only USDT-M contracts are polled"
    )]
    Settle(String),
}

/// One candle. `closed` is judged against the server's clock (`requestTime`), never ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candle {
    pub symbol: Symbol,
    /// Its timeframe (which knows its market and every spelling).
    pub timeframe: Timeframe,
    /// Open time, Unix milliseconds.
    pub open_time: u64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    /// Volume in the base coin.
    pub base_volume: Decimal,
    /// Volume in the quote coin (USDT).
    pub quote_volume: Decimal,
    /// Whether the candle's period had ended when the server answered.
    pub closed: bool,
}

impl Candle {
    /// Whether `other` has the same prices and volumes, as numbers (`1.50` is `1.5`):
    /// a candle built from shorter ones against the exchange's own.
    pub fn same_values(&self, other: &Candle) -> bool {
        (
            self.open,
            self.high,
            self.low,
            self.close,
            self.base_volume,
            self.quote_volume,
        ) == (
            other.open,
            other.high,
            other.low,
            other.close,
            other.base_volume,
            other.quote_volume,
        )
    }

    /// `open high low close base quote`, for a log line.
    pub fn values_text(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            self.open, self.high, self.low, self.close, self.base_volume, self.quote_volume
        )
    }
}

/// One ticker line of `/tickers`. Futures tickers also carry funding and open interest, so
/// those come with no extra request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticker {
    pub symbol: Symbol,
    pub last: Decimal,
    pub bid: Option<Decimal>,
    pub ask: Option<Decimal>,
    pub high_24h: Option<Decimal>,
    pub low_24h: Option<Decimal>,
    pub base_volume: Option<Decimal>,
    pub quote_volume: Option<Decimal>,
    /// Current funding rate (futures only).
    pub funding_rate: Option<Decimal>,
    /// Open interest in the base coin, Bitget's `holdingAmount` (futures only).
    pub open_interest: Option<Decimal>,
    /// Exchange timestamp, Unix milliseconds.
    pub ts: u64,
}

/// A listed futures contract or spot pair, as discovery needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instrument {
    pub symbol: Symbol,
    pub base: String,
    pub quote: String,
    /// Bitget's status word: `normal` (futures) or `online` (spot) means tradable.
    pub status: String,
    /// Decimal places allowed in an order size (`volumePlace`; spot `quantityPrecision`).
    pub volume_place: Option<u32>,
    /// Smallest order size in the base coin (`minTradeNum`; spot `minTradeAmount`).
    pub min_size: Option<Decimal>,
}

impl Instrument {
    /// Whether Bitget lists it as trading normally.
    pub fn is_live(&self) -> bool {
        matches!(self.status.as_str(), "normal" | "online")
    }
}

/// The futures account of one margin coin, from `/api/v2/mix/account/accounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub margin_coin: String,
    pub available: Decimal,
    pub equity: Decimal,
    pub unrealized_pnl: Decimal,
}

/// One open position, from `/api/v2/mix/position/all-position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub symbol: Symbol,
    /// `long` or `short`.
    pub side: String,
    /// Size in the base coin, always positive.
    pub size: Decimal,
    pub entry_price: Decimal,
    pub unrealized_pnl: Decimal,
}

/// Bitget's answer to an accepted place or cancel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderAck {
    pub order_id: String,
    pub client_oid: String,
}

/// An order as `/api/v2/mix/order/detail` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDetail {
    pub order_id: String,
    pub client_oid: String,
    pub symbol: Symbol,
    /// `buy` or `sell`.
    pub side: String,
    pub size: Decimal,
    /// Filled size in the base coin (`baseVolume`).
    pub filled: Decimal,
    /// Average fill price, once anything filled.
    pub price_avg: Option<Decimal>,
    /// Fee, negative when paid.
    pub fee: Decimal,
    /// `live`, `partially_filled`, `filled` or `canceled`.
    pub state: String,
}

/// Which symbols to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymbolSelection {
    /// Every USDT-M contract Bitget lists as trading normally.
    All,
    /// These, normalised.
    List(Vec<Symbol>),
}

/// One market order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub symbol: Symbol,
    /// Signed size in the base coin: positive buys.
    pub quantity: Decimal,
    /// Closing only (one-way mode's `reduceOnly`).
    pub reduce_only: bool,
    /// Our id for it; the same on every attempt.
    pub client_oid: String,
}

impl OrderRequest {
    pub fn side(&self) -> &'static str {
        if self.quantity.is_sign_negative() {
            "sell"
        } else {
            "buy"
        }
    }
}

/// A parsed success reply: the server's clock when it answered, and the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped<T> {
    /// `requestTime`, Unix milliseconds.
    pub server_time: u64,
    pub data: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccxt_and_plain_spellings_normalise_to_bitget_symbols() {
        for text in [
            "BTCUSDT",
            "btcusdt",
            " BTC/USDT:USDT ",
            "BTC/USDT",
            "btc/usdt:usdt",
        ] {
            assert_eq!(Symbol::parse(text).unwrap().as_str(), "BTCUSDT", "{text}");
        }
        assert_eq!(
            Symbol::parse("1000PEPE/USDT:USDT").unwrap().as_str(),
            "1000PEPEUSDT"
        );
    }

    #[test]
    fn bad_spellings_are_refused_with_the_text() {
        assert_eq!(
            Symbol::parse("BTC/USD:BTC").unwrap_err(),
            SymbolError::Settle("BTC/USD:BTC".into())
        );
        for text in ["", "BTC-USDT", "BTC USDT", "BTCUSDT:USDT", "/"] {
            assert!(Symbol::parse(text).is_err(), "{text:?}");
        }
        assert_eq!(
            Symbol::parse("BTC-USDT").unwrap_err().to_string(),
            "symbol 'BTC-USDT' must look like BTCUSDT or BTC/USDT:USDT"
        );
    }
}
