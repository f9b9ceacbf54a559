//! SuperTrend and its pullback signals against independently computed reference values
//! (`tests/data/supertrend/`, made with TA-Lib's ATR and a Python transcription of the rules).

use std::str::FromStr;

use bitget_poller::core::market::{Candle, Symbol};
use bitget_poller::core::timeframe::{Market, Timeframe};
use bitget_poller::strategy::{Strategy, SuperTrend, SuperTrendParams, SuperTrendPullback, Target};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

const CANDLES: &str = include_str!("../data/supertrend/candles.csv");
const REFERENCE: &str = include_str!("../data/supertrend/reference.csv");

fn candles() -> Vec<Candle> {
    CANDLES
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let d = |i: usize| Decimal::from_str(f[i]).unwrap();
            Candle {
                symbol: Symbol::from_exchange("BTCUSDT"),
                timeframe: Timeframe::parse(Market::Futures, "1m").unwrap(),
                open_time: f[0].parse().unwrap(),
                open: d(1),
                high: d(2),
                low: d(3),
                close: d(4),
                base_volume: Decimal::ZERO,
                quote_volume: Decimal::ZERO,
                closed: true,
            }
        })
        .collect()
}

struct Row {
    open_time: u64,
    atr: f64,
    upper: f64,
    lower: f64,
    up: bool,
    line: f64,
    signal: String,
}

fn reference() -> Vec<Row> {
    REFERENCE
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.splitn(7, ',').collect();
            Row {
                open_time: f[0].parse().unwrap(),
                atr: f[1].parse().unwrap(),
                upper: f[2].parse().unwrap(),
                lower: f[3].parse().unwrap(),
                up: f[4] == "up",
                line: f[5].parse().unwrap(),
                signal: f[6].to_owned(),
            }
        })
        .collect()
}

/// The parameters make_reference.py uses.
fn params() -> SuperTrendParams {
    SuperTrendParams {
        atr_period: 10,
        multiplier: Decimal::new(25, 1),
        pullback_pct: Decimal::new(2, 1),
        stop_pct: Decimal::new(3, 1),
    }
}

fn close_to(ours: Decimal, theirs: f64) -> bool {
    let ours = ours.to_f64().unwrap();
    (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0)
}

#[test]
fn supertrend_matches_the_reference_on_every_bar() {
    let candles = candles();
    let reference = reference();
    assert_eq!(candles.len(), 999);
    let p = params();
    let mut indicator = SuperTrend::new(p.atr_period, p.multiplier);
    let readings: Vec<_> = candles
        .iter()
        .filter_map(|c| {
            indicator
                .update(c.high, c.low, c.close)
                .map(|r| (c.open_time, r))
        })
        .collect();
    // TA-Lib's first ATR is on bar `period` (0-based): 999 - 10 readings.
    assert_eq!(readings.len(), reference.len());
    assert_eq!(readings.len(), 989);
    let flips = reference.windows(2).filter(|w| w[0].up != w[1].up).count();
    assert!(
        flips >= 10,
        "the fixture should exercise trend changes, has {flips}"
    );
    for ((time, r), want) in readings.iter().zip(&reference) {
        assert_eq!(*time, want.open_time);
        assert!(
            close_to(r.atr, want.atr),
            "atr at {time}: {} vs {}",
            r.atr,
            want.atr
        );
        assert!(close_to(r.upper, want.upper), "upper at {time}");
        assert!(close_to(r.lower, want.lower), "lower at {time}");
        assert_eq!(r.up, want.up, "trend at {time}");
        assert!(close_to(r.line, want.line), "line at {time}");
    }
}

#[test]
fn pullback_signals_match_the_reference() {
    let mut strategy = SuperTrendPullback::new(params());
    let ours: Vec<(u64, String)> = candles()
        .iter()
        .flat_map(|c| strategy.on_candle(c))
        .map(|i| (i.candle_open_time, format!("{}:{}", i.target, i.reason)))
        .collect();
    let theirs: Vec<(u64, String)> = reference()
        .into_iter()
        .filter(|r| !r.signal.is_empty())
        .map(|r| (r.open_time, r.signal))
        .collect();
    assert_eq!(ours, theirs);
    let count = |prefix: &str| ours.iter().filter(|(_, s)| s.starts_with(prefix)).count();
    assert_eq!(count("long:"), 13);
    assert_eq!(count("short:"), 10);
    assert_eq!(count("flat:stop"), 17);
    assert_eq!(count("flat:trend flip"), 5);
    assert_eq!(Target::Long.sign(), Decimal::ONE);
}
