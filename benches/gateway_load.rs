//! How fast the gateway answers from the store, and what it adds to a forwarded request.
//!
//! `cargo build --release && cargo bench --bench gateway_load`: starts the release binary's
//! simulator and gateway as separate processes on loopback (so the gateway's CPU time can
//! be read from `/proc`), then
//! - **cached**: 64 keep-alive connections ask for the same held candle series (100 rows)
//!   for 10 s, 3 times: replies per second and the gateway's CPU per reply, medians;
//! - **forwarded**: 300 sequential order-book requests, 100 ms apart (half the budget, so it stays
//!   free), straight to the simulator and through the gateway: p50 and p99 of each and the
//!   difference.
//!
//! The load generator runs on the same 2 cores, as other bots on the machine would.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_bitget-poller");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn announced(child: &mut Child, marker: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(tokio::process::ChildStdout::from_std(stdout).unwrap()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(at) = line.find(marker) {
            let rest = &line[at + marker.len()..];
            let url = rest.split_whitespace().next().unwrap_or("").to_owned();
            // Keep reading so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return url;
        }
    }
    panic!("{marker} never announced");
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is 0, utime 11, stime 12; 100 ticks per second.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn cached_round(url: &str, seconds: u64) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (url, done) = (url.to_owned(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            while Instant::now() < until {
                let reply = http.get(&url).send().await.unwrap();
                let hit = reply.headers().get("x-cache").is_some_and(|v| v == "hit");
                let _ = reply.bytes().await.unwrap();
                if hit {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed)
}

async fn latencies(http: &reqwest::Client, url: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let reply = http.get(url).send().await.unwrap();
        let _ = reply.bytes().await.unwrap();
        out.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("gateway-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut sim = Command::new(BIN)
        .args([
            "sim",
            "--addr",
            "127.0.0.1:0",
            "--symbols",
            "100",
            "--duration",
            "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sim_url = announced(&mut sim, "listening on ").await;
    let _sim = Killed(sim);
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[poll]\nsymbols = [\"BTCUSDT\"]\nmode = \"closed\"\ntickers_interval_secs = 0\n[logging]\ndir = \"{}\"\nlevel = \"warn\"\n[trading]\nenabled = false\n[gateway]\ncandle_max_age_ms = 3600000\n",
            dir.join("logs").display()
        ),
    )
    .unwrap();
    let mut gateway = Command::new(BIN)
        .args(["gateway", "--config"])
        .arg(&config)
        .args([
            "--base-url",
            &sim_url,
            "--listen",
            "127.0.0.1:0",
            "--duration",
            "600",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = gateway.id();
    let gateway_url = announced(&mut gateway, "gateway: ").await;
    let _gateway = Killed(gateway);

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let candles = format!(
        "{gateway_url}/api/v2/mix/market/candles?symbol=ETHUSDT&granularity=1H&productType=USDT-FUTURES&limit=100"
    );
    // The first ask fetches and holds the series; wait until it is a hit.
    for _ in 0..100 {
        let reply = http.get(&candles).send().await.unwrap();
        if reply.headers().get("x-cache").is_some_and(|v| v == "hit") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut rates = Vec::new();
    let mut cpu_us = Vec::new();
    for _ in 0..3 {
        let cpu = cpu_seconds(pid);
        let started = Instant::now();
        let hits = cached_round(&candles, 10).await;
        let elapsed = started.elapsed().as_secs_f64();
        let used = cpu_seconds(pid) - cpu;
        rates.push(hits as f64 / elapsed);
        cpu_us.push(used / hits.max(1) as f64 * 1e6);
    }
    println!(
        "cached 100-row candle reply, 64 connections: {:.0} replies/s (runs {:?}), gateway CPU {:.1} µs per reply (runs {:?}), gateway RSS {:.1} MB",
        median(rates.clone()),
        rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        median(cpu_us.clone()),
        cpu_us.iter().map(|c| (c * 10.0).round() / 10.0).collect::<Vec<_>>(),
        rss_mb(pid)
    );

    let path = "/api/v2/mix/market/merge-depth?symbol=BTCUSDT&productType=USDT-FUTURES&limit=5";
    let mut direct = latencies(&http, &format!("{sim_url}{path}"), 300).await;
    let mut through = latencies(&http, &format!("{gateway_url}{path}"), 300).await;
    let (d50, d99) = (percentile(&mut direct, 0.5), percentile(&mut direct, 0.99));
    let (g50, g99) = (
        percentile(&mut through, 0.5),
        percentile(&mut through, 0.99),
    );
    println!(
        "forwarded order book, free budget, 300 each: direct p50 {d50:.3} ms p99 {d99:.3} ms; through the gateway p50 {g50:.3} ms p99 {g99:.3} ms; added p50 {:.3} ms p99 {:.3} ms",
        g50 - d50,
        g99 - d99
    );
    let _ = std::fs::remove_dir_all(&dir);
}
