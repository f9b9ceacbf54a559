//! The poller's own vocabulary, independent of any venue or runtime: symbols, timeframes,
//! candles and tickers, the events consumers receive, and the injected clock. One piece
//! needs the runtime: [`serve`], the bounded accept loop of our own HTTP listeners, kept
//! here because both the gateway and telemetry's metrics endpoint run it. Every other
//! layer points down here; nothing here points up.

pub mod check;
pub mod clock;
pub mod derive;
pub mod events;
pub mod market;
pub mod serve;
pub mod text;
pub mod timeframe;

/// The `tracing` target of the rate log. Every layer that spends or learns about the budget
/// writes to it; telemetry routes it to its own file, which the `usage` report reads.
pub const RATE_LOG: &str = "bitget_rate";

/// The `tracing` target of the trading log (signals, orders, fills, account reads).
pub const TRADING_LOG: &str = "trading";
