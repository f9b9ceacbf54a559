//! Candle timeframes: Bitget's periods with every spelling it uses for them (REST per
//! market, WebSocket channels), and where each candle opens. They are protocol facts the
//! simulator must share with the poller, so they live in the `bitget-proto` crate; this
//! module is their place in the poller's core.

pub use bitget_proto::timeframe::{Granularity, Market, Timeframe};
