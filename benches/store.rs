//! The candle file's costs: writing closed candles in batches, and reading ranges back.
//!
//! Run: `cargo bench --bench store` (criterion; medians in `target/criterion/`).
//! - 100,000 one-minute candles of 100 symbols queued and committed (the writer thread's
//!   batched upserts, WAL, `synchronous = NORMAL`), on a file in the target folder;
//! - a 30-day 1m range of one symbol (43,200 rows) read back as `Decimal` candles;
//! - the 1000 rows of one gateway reply.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bitget_poller::core::clock::ManualClock;
use bitget_poller::core::market::{Candle, Symbol};
use bitget_poller::core::timeframe::{Market, Timeframe};
use bitget_poller::store::disk::{DiskConfig, DiskStore};
use bitget_poller::store::SeriesKey;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rust_decimal::Decimal;

const T: u64 = 1_790_000_000_000 - 1_790_000_000_000 % 86_400_000;
const M: u64 = 60_000;

fn candle(symbol: &Symbol, tf: Timeframe, open: u64, k: u64) -> Candle {
    let p = 60_000 + (k * 37 % 900) as i64;
    Candle {
        symbol: symbol.clone(),
        timeframe: tf,
        open_time: open,
        open: Decimal::new(p * 10 + 1, 1),
        high: Decimal::new(p * 10 + 9, 1),
        low: Decimal::new(p * 10 - 7, 1),
        close: Decimal::new(p * 10 + 3, 1),
        base_volume: Decimal::new((k % 997) as i64 * 1000 + 123, 3),
        quote_volume: Decimal::from_str("1234567.8901").unwrap(),
        closed: true,
    }
}

fn open(name: &str) -> Arc<DiskStore> {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-store");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    DiskStore::open(
        &DiskConfig {
            path,
            retention: BTreeMap::new(),
        },
        Arc::new(ManualClock::new(T)),
    )
    .unwrap()
}

fn store(c: &mut Criterion) {
    let tf = Timeframe::parse(Market::Futures, "1m").unwrap();
    let symbols: Vec<Symbol> = (0..100)
        .map(|i| Symbol::from_exchange(&format!("S{i:03}USDT")))
        .collect();
    let mut group = c.benchmark_group("store");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));

    // 100,000 rows: 1000 minutes of 100 symbols, a new range each iteration.
    let disk = open("write.sqlite");
    let mut round = 0u64;
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("write_100k_rows", |b| {
        b.iter(|| {
            let base = T + round * 1000 * M;
            round += 1;
            disk.write(
                (0..1000u64)
                    .flat_map(|m| symbols.iter().map(move |s| candle(s, tf, base + m * M, m))),
            );
            assert!(disk.flush(Duration::from_secs(60)));
        });
    });
    disk.close(Duration::from_secs(30));

    // 30 days of one symbol, among 10 symbols' worth of rows.
    let disk = open("read.sqlite");
    for s in &symbols[..10] {
        disk.write((0..43_200u64).map(|m| candle(s, tf, T + m * M, m)));
    }
    assert!(disk.flush(Duration::from_secs(120)));
    let key = SeriesKey::new(symbols[3].clone(), tf);
    group.throughput(Throughput::Elements(43_200));
    group.bench_function("read_30_days_1m", |b| {
        b.iter(|| {
            let rows = disk.range(&key, T, T + 43_200 * M, 50_000).unwrap();
            assert_eq!(rows.len(), 43_200);
            black_box(rows)
        });
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("read_1000_rows", |b| {
        b.iter(|| {
            let rows = disk
                .range(&key, T + 20_000 * M, T + 21_000 * M, 1000)
                .unwrap();
            assert_eq!(rows.len(), 1000);
            black_box(rows)
        });
    });
    let (file, wal) = disk.size();
    eprintln!(
        "read.sqlite: 432,000 rows, file {file} bytes ({:.0} bytes/row), WAL {wal} bytes",
        file as f64 / 432_000.0
    );
    disk.close(Duration::from_secs(30));
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
