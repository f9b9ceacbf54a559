//! What consumers of market data receive, whoever produced it: the poller writes these into
//! the store, and strategies, the event log and (later) the gateway read them from there.

use std::sync::Arc;

use super::market::{Candle, Ticker};

/// What strategies receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketEvent {
    /// A candle whose period has ended (by the server's clock). Delivered once, in order
    /// per symbol and timeframe.
    CandleClosed(Candle),
    /// The latest state of a forming candle (live mode); may be dropped under backpressure.
    CandleForming(Candle),
    /// All tickers from one `/tickers` reply; may be dropped under backpressure.
    Tickers {
        server_time: u64,
        tickers: Arc<Vec<Ticker>>,
    },
}
