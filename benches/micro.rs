//! Micro-benchmarks of the hot paths: admitting a request, and reading replies into
//! `Decimal`.
//!
//! Run: `cargo bench --bench micro` (criterion; medians and spreads in `target/criterion/`).
//! - limiter acquire, uncontended, and with 8 tasks contending for one category on a
//!   2-worker runtime (limits set far above the rate reached, so this measures admission
//!   cost, not waiting);
//! - a 100-row and a 1000-row candle reply parsed into `Decimal` candles;
//! - an all-tickers reply of 800 contracts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitget_poller::granularity::{Granularity, Market};
use bitget_poller::limiter::{Category, Limits, LocalLimiter, RateLimiter};
use bitget_poller::models::Symbol;
use bitget_poller::parse;
use bitget_poller::retry::Backoff;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Limits no benchmark can reach, so no acquire ever waits.
fn unreachable_limits() -> Limits {
    Limits {
        per_second: [1_000_000_000; 4],
        overall_per_minute: u32::MAX,
        safety_margin: 0.0,
    }
}

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("limiter_acquire");
    group.throughput(Throughput::Elements(1));
    group.bench_function("uncontended", |b| {
        let limiter = LocalLimiter::new(&unreachable_limits(), Backoff::default());
        b.to_async(&runtime)
            .iter(|| async { black_box(limiter.acquire(Category::Market.into()).await) });
    });
    group.bench_function("8_tasks_contending", |b| {
        b.iter_custom(|iters| {
            let limiter = Arc::new(LocalLimiter::new(&unreachable_limits(), Backoff::default()));
            let per_task = iters.div_ceil(8).max(1);
            runtime.block_on(async {
                let start = Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..8 {
                    let limiter = Arc::clone(&limiter);
                    tasks.spawn(async move {
                        for _ in 0..per_task {
                            black_box(limiter.acquire(Category::Market.into()).await);
                        }
                    });
                }
                tasks.join_all().await;
                // Time per admission, whichever task made it.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_task * 8) as f64)
            })
        });
    });
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let symbol = Symbol::from_exchange("BTCUSDT");
    let one_minute = Granularity::parse(Market::Futures, "1m").unwrap();
    let mut group = c.benchmark_group("parse");
    for rows in [100usize, 1000] {
        let body = candle_reply(rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("candles", rows), &body, |b, body| {
            b.iter(|| {
                let parsed = parse::candles(body.as_bytes(), &symbol, "1m", one_minute).unwrap();
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
