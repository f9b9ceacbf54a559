//! How many replies per second the simulator serves on this machine, so it is never the
//! bottleneck of a client benchmark.
//!
//! Two loads, each run for several rounds and reported as the median: cached candle replies
//! (the same 100-row query, limits lifted so every request is answered) and 429 replies
//! (default limits, so all but the first 20 requests of each second are refused). The load
//! generator runs in the same process and shares the machine's cores, so the figures are a
//! lower bound on what the server alone can do.
//!
//! Run: `cargo bench --bench sim_throughput` (env `ROUNDS`, `SECS`, `CONNECTIONS` to change).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitget_sim::limits::LimitConfig;
use bitget_sim::{SimConfig, Simulator};

const CANDLES: &str =
    "/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=100";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Requests per second over one round of `secs` with `connections` keep-alive clients, and
/// how many replies had each status.
async fn round(url: &str, connections: u64, secs: u64) -> (f64, u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (ok, limited, url) = (ok.clone(), limited.clone(), url.to_owned());
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            while Instant::now() < deadline {
                let response = client.get(&url).send().await.expect("simulator answers");
                let status = response.status().as_u16();
                let body = response.bytes().await.expect("body");
                assert!(!body.is_empty());
                match status {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    429 => limited.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected status {other}"),
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, limited) = (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed));
    ((ok + limited) as f64 / elapsed, ok, limited)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let rounds = env_or("ROUNDS", 5);
    let secs = env_or("SECS", 3);
    let connections = env_or("CONNECTIONS", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let lifted = LimitConfig {
            overrides: vec![LimitConfig::parse_override("mix/market/candles=1000000000").unwrap()],
            overall_per_min: u32::MAX,
            ..LimitConfig::default()
        };
        let cases = [
            ("cached 100-row candle replies (HTTP 200)", SimConfig { limits: lifted, ..SimConfig::default() }, 200),
            ("rate-limited replies (HTTP 429)", SimConfig::default(), 429),
        ];
        println!("simulator throughput: {rounds} rounds x {secs} s, {connections} keep-alive connections, {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        for (name, config, expect) in cases {
            let sim = Simulator::start(config, addr).await.unwrap();
            let url = format!("{}{CANDLES}", sim.base_url());
            let mut rates = Vec::new();
            for _ in 0..rounds {
                let (rate, ok, limited) = round(&url, connections, secs).await;
                let majority = if expect == 200 { ok } else { limited };
                assert!(majority * 10 >= (ok + limited) * 9, "{name}: expected mostly {expect}, got {ok} ok / {limited} limited");
                rates.push(rate);
            }
            let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
            println!("  {name:<44} median {:>8.0} req/s  (rounds: {})", median(rates.clone()), shown.join(", "));
            sim.stop().await;
        }
    });
}
