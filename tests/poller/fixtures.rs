use std::path::PathBuf;

use bitget_poller::bitget::parse::{self, WireInstrument};
use bitget_poller::core::market::Symbol;
use bitget_poller::core::timeframe::{Market, Timeframe};
use rust_decimal::Decimal;

fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bitget")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn g(market: Market, text: &str) -> Timeframe {
    Timeframe::parse(market, text).unwrap()
}

#[test]
fn recorded_and_documented_candles_parse() {
    let btc = Symbol::from_exchange("BTCUSDT");
    let rows = parse::candles(
        &fixture("recorded/mix_market_candles.BTCUSDT_5m_30rows.ai-rates.json"),
        &btc,
        g(Market::Futures, "5m"),
    )
    .unwrap();
    assert_eq!(rows.server_time, 1_789_660_121_198);
    assert_eq!(rows.data.len(), 30);
    assert_eq!(rows.data[0].open_time, 1_789_651_200_000);
    assert_eq!(rows.data[0].high, "76682.8".parse::<Decimal>().unwrap());
    assert!(rows.data[..29].iter().all(|c| c.closed));
    for file in [
        "recorded/mix_market_candles.BTCUSDT_1m_limit1.ccxt.json",
        "recorded/mix_market_candles.BTCUSD_coin-futures_1m_limit1.ccxt.json",
        "doc-examples/mix_market_candles.json",
        "doc-examples/mix_market_history-candles.json",
    ] {
        let parsed = parse::candles(&fixture(file), &btc, g(Market::Futures, "1m"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!parsed.data.is_empty(), "{file}");
    }
    for file in [
        "recorded/spot_market_candles.BTCUSDT_1min_limit1.ccxt.json",
        "doc-examples/spot_market_candles.json",
        "doc-examples/spot_market_history-candles.json",
    ] {
        let parsed = parse::candles(&fixture(file), &btc, g(Market::Spot, "1min"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!parsed.data.is_empty(), "{file}");
    }
}

#[test]
fn recorded_and_documented_tickers_parse() {
    let one = parse::tickers(&fixture(
        "recorded/mix_market_ticker.BTCUSDT.ccxt-comment.json",
    ))
    .unwrap();
    let t = &one.data.tickers[0];
    assert_eq!(t.symbol.as_str(), "BTCUSDT");
    assert_eq!(t.last, "104823.8".parse::<Decimal>().unwrap());
    assert_eq!(t.funding_rate, Some("-0.000014".parse().unwrap()));
    assert_eq!(t.open_interest, Some("7452.6421".parse().unwrap()));
    for file in [
        "recorded/spot_market_tickers.BTCUSDT.ccxt.json",
        "doc-examples/mix_market_tickers.json",
        "doc-examples/mix_market_ticker.json",
        "doc-examples/spot_market_tickers.json",
    ] {
        let parsed = parse::tickers(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!parsed.data.tickers.is_empty(), "{file}");
        assert!(
            parsed.data.skipped.is_empty(),
            "{file}: {:?}",
            parsed.data.skipped
        );
    }
}

#[test]
fn contract_lists_and_server_time_parse() {
    for file in [
        "recorded/mix_market_contracts.USDT-FUTURES.items.ccxt-static-markets.json",
        "recorded/spot_public_symbols.items.ccxt-static-markets.json",
    ] {
        let bytes = fixture(file);
        let items: Vec<WireInstrument<'_>> = serde_json::from_slice(&bytes).unwrap();
        let parsed: Vec<_> = items
            .iter()
            .map(|i| parse::instrument(i).unwrap())
            .collect();
        assert!(
            parsed.iter().all(|i| !i.symbol.as_str().is_empty()),
            "{file}"
        );
        assert!(parsed.iter().any(|i| i.is_live()), "{file}");
    }
    let contracts = parse::instruments(&fixture("doc-examples/mix_market_contracts.json")).unwrap();
    assert!(!contracts.data.is_empty());
    let spot = parse::instruments(&fixture("doc-examples/spot_public_symbols.json")).unwrap();
    assert!(!spot.data.is_empty());
    assert_eq!(
        parse::server_time(&fixture("recorded/public_time.ccxt-comment.json")).unwrap(),
        1_700_111_073_740
    );
    assert!(parse::server_time(&fixture("doc-examples/public_time.json")).is_ok());
}
