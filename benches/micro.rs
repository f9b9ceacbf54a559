//! Micro-benchmarks of the hot paths: admitting a request, and reading replies into
//! `Decimal`.
//!
//! Run: `cargo bench --bench micro` (criterion; medians and spreads in `target/criterion/`).
//! - the limiter's pure core admitting and answering one request, on explicit time at
//!   Bitget's 20/s with realistic window contents (the async shell adds one mutex and, when
//!   the budget is spent, a timer);
//! - a 100-row and a 1000-row candle reply parsed into `Decimal` candles;
//! - an all-tickers reply of 800 contracts.

use std::time::Duration;

use bitget_poller::bitget::endpoints::{
    route_of, MIX_CANDLES, MIX_HISTORY_CANDLES, MIX_MERGE_DEPTH, MIX_OPEN_INTEREST, MIX_TICKER,
};
use bitget_poller::bitget::parse;
use bitget_poller::core::market::Symbol;
use bitget_poller::core::timeframe::{Market, Timeframe};
use bitget_poller::limiter::backoff::Backoff;
use bitget_poller::limiter::budgets::Budgets;
use bitget_poller::limiter::{Feedback, Limits};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn candle_reply(rows: usize) -> String {
    let start = 1_700_000_000_000u64;
    let body: Vec<String> = (0..rows)
        .map(|i| {
            let p = 67_000 + (i * 37 % 500);
            format!(
                r#"["{}","{p}.1","{}.9","{}.4","{}.6","{}.1234","{}.5678"]"#,
                start + i as u64 * 60_000,
                p + 40,
                p - 35,
                p + 5,
                i % 97,
                (i % 97) * p
            )
        })
        .collect();
    format!(
        r#"{{"code":"00000","msg":"success","requestTime":{},"data":[{}]}}"#,
        start + rows as u64 * 60_000,
        body.join(",")
    )
}

fn tickers_reply(contracts: usize) -> String {
    let rows: Vec<String> = (0..contracts)
        .map(|i| {
            format!(
                r#"{{"symbol":"C{i:04}USDT","lastPr":"{i}.123","askPr":"{i}.124","bidPr":"{i}.122","bidSz":"10","askSz":"12","high24h":"{i}.5","low24h":"{i}.1","ts":"1700000000000","change24h":"0.01","baseVolume":"12345.6","quoteVolume":"654321.1","usdtVolume":"654321.1","openUtc":"{i}.1","changeUtc24h":"0.002","indexPrice":"{i}.12","fundingRate":"0.0001","holdingAmount":"9876.5","deliveryStartTime":null,"deliveryTime":null,"deliveryStatus":"","open24h":"{i}.0","markPrice":"{i}.123"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"code":"00000","msg":"success","requestTime":1700000000000,"data":[{}]}}"#,
        rows.join(",")
    )
}

fn limiter(c: &mut Criterion) {
    // The pure core on explicit time, as Bitget shapes it: 20/s per endpoint, 6000/min
    // overall, each request answered 15 ms later with its requestTime. One endpoint at 20/s
    // fills the minute window to 1,200; five endpoints at 20/s each fill it to 6,000, the
    // most Bitget allows an IP. The cost must not grow with it. (No remaining count: a
    // reading of 0 would cut the limit to 1/s and empty the windows.)
    let mut group = c.benchmark_group("limiter");
    group.throughput(Throughput::Elements(1));
    let paths = [
        MIX_CANDLES.path,
        MIX_HISTORY_CANDLES.path,
        MIX_MERGE_DEPTH.path,
        MIX_TICKER.path,
        MIX_OPEN_INTEREST.path,
    ];
    for endpoints in [1usize, 5] {
        let name = format!("admit_and_answer_{}_in_the_minute", 1_200 * endpoints);
        group.bench_function(name.as_str(), |b| {
            let mut budgets = Budgets::new(&Limits::default(), Backoff::default());
            let routes: Vec<_> = paths[..endpoints].iter().map(|p| route_of(p)).collect();
            let mut now = 0u64;
            let mut i = 0usize;
            b.iter(|| {
                let route = routes[i % endpoints];
                i += 1;
                now = budgets
                    .own_ready_at(route, now)
                    .max(budgets.overall_ready_at(route, now));
                let permit = budgets.admit(route, now, Duration::ZERO);
                let answered = now + 15_000;
                black_box(budgets.feedback(
                    &permit,
                    Feedback::Accepted {
                        remaining: None,
                        server_time_ms: Some(1_700_000_000_000 + answered / 1_000),
                    },
                    answered,
                ));
            });
        });
    }
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let symbol = Symbol::from_exchange("BTCUSDT");
    let one_minute = Timeframe::parse(Market::Futures, "1m").unwrap();
    let mut group = c.benchmark_group("parse");
    for rows in [100usize, 1000] {
        let body = candle_reply(rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("candles", rows), &body, |b, body| {
            b.iter(|| {
                let parsed = parse::candles(body.as_bytes(), &symbol, one_minute).unwrap();
                assert_eq!(parsed.data.len(), rows);
                black_box(parsed)
            })
        });
    }
    let body = tickers_reply(800);
    group.throughput(Throughput::Elements(800));
    group.bench_with_input(BenchmarkId::new("tickers", 800), &body, |b, body| {
        b.iter(|| {
            let parsed = parse::tickers(body.as_bytes()).unwrap();
            assert_eq!(parsed.data.tickers.len(), 800);
            black_box(parsed)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = limiter, parsing
}
criterion_main!(benches);
