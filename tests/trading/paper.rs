//! Paper trading through the engine: fills at the next price, fees and PnL, warm-up signals.

use std::path::Path;
use std::sync::Arc;

use bitget_poller::config::SymbolSelection;
use bitget_poller::core::clock::{Clock, SystemClock};
use bitget_poller::core::events::MarketEvent;
use bitget_poller::core::market::{Candle, Symbol, Ticker};
use bitget_poller::core::timeframe::{Market, Timeframe};
use bitget_poller::strategy::spec::{parse, Polled};
use bitget_poller::strategy::Target;
use bitget_poller::trading::paper::PaperBook;
use bitget_poller::trading::{Engine, Execution};
use rust_decimal::Decimal;

use super::helpers::intent;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn engine() -> Engine {
    let timeframes = vec![Timeframe::parse(Market::Futures, "1m").unwrap()];
    let spec = parse(
        "kind = \"supertrend_pullback\"\nsymbols = [\"BTCUSDT\"]\ntimeframe = \"1m\"\nposition_usdt = \"200\"\n",
        Path::new("strategies/st.toml"),
        Polled {
            market: Market::Futures,
            timeframes: &timeframes,
            symbols: &SymbolSelection::All,
        },
    )
    .unwrap()
    .unwrap();
    Engine::new(
        vec![spec],
        Market::Futures,
        Vec::new(),
        Execution::Paper(PaperBook::new(d("10000"), d("0.0006"))),
        Arc::new(SystemClock::new()),
    )
}

fn candle(open_time: u64, open: &str, close: &str, closed: bool) -> Candle {
    Candle {
        symbol: Symbol::from_exchange("BTCUSDT"),
        timeframe: Timeframe::parse(Market::Futures, "1m").unwrap(),
        open_time,
        open: d(open),
        high: d(open).max(d(close)),
        low: d(open).min(d(close)),
        close: d(close),
        base_volume: Decimal::ZERO,
        quote_volume: Decimal::ZERO,
        closed,
    }
}

fn ticker(ts: u64, last: &str) -> MarketEvent {
    MarketEvent::Tickers {
        server_time: ts,
        tickers: Arc::new(vec![Ticker {
            symbol: Symbol::from_exchange("BTCUSDT"),
            last: d(last),
            bid: None,
            ask: None,
            high_24h: None,
            low_24h: None,
            base_volume: None,
            quote_volume: None,
            funding_rate: None,
            open_interest: None,
            ts,
        }]),
    }
}

#[test]
fn orders_fill_at_the_next_price_and_pnl_counts_both_fees() {
    let mut engine = engine();
    let entry = intent("BTCUSDT", Target::Long, "60000");
    let closed_at = entry.candle_open_time + 60_000;
    engine.submit(0, entry);
    // A price from before the deciding candle closed is not "next".
    engine.on_event(&ticker(closed_at - 1, "59000"));
    assert_eq!(engine.finish().fills, 0);
    engine.on_event(&MarketEvent::CandleForming(candle(
        closed_at, "60050", "60100", false,
    )));
    let book = engine.paper_book().unwrap();
    // 200 USDT at 60 000 is 0.0033 BTC after rounding down to 4 places; filled at 60 100.
    assert_eq!(
        book.position("st", &Symbol::from_exchange("BTCUSDT")),
        d("0.0033")
    );

    let mut exit = intent("BTCUSDT", Target::Flat, "60300");
    exit.candle_open_time = closed_at;
    engine.submit(0, exit);
    engine.on_event(&MarketEvent::CandleClosed(candle(
        closed_at + 60_000,
        "60400",
        "60500",
        true,
    )));
    let summary = engine.finish();
    assert_eq!((summary.signals, summary.orders, summary.fills), (2, 2, 2));
    let (name, totals) = &summary.instances[0];
    assert_eq!(name, "st");
    assert_eq!(totals.realized, d("0.99")); // 0.0033 × (60 400 − 60 100)
    assert_eq!(totals.fees, d("0.118998") + d("0.119592")); // 0.06 % of each notional
    assert_eq!(totals.open_positions, 0);
    assert_eq!(summary.equity, Some(d("10000") + d("0.99") - d("0.23859")));
}

#[test]
fn a_signal_on_history_warms_up_but_is_not_traded() {
    let mut engine = engine();
    let mut old = intent("BTCUSDT", Target::Long, "60000");
    old.candle_open_time = SystemClock::new().now_ms() / 60_000 * 60_000 - 3_600_000;
    engine.submit(0, old);
    engine.on_event(&ticker(SystemClock::new().now_ms(), "60000"));
    let summary = engine.finish();
    assert_eq!((summary.signals, summary.orders, summary.fills), (0, 0, 0));
}
