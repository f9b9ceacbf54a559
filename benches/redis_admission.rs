//! One admission through Redis: latency (p50, p99) and CPU, against the in-process limiter.
//!
//!     cargo bench --bench redis_admission
//!
//! Starts a private `redis-server` (Debian's package) on a free loopback port, without
//! persistence. Limits are set far above the load, so what is timed is the admission
//! itself (one script call round trip), not waiting for budget; every permit is answered
//! at once, which queues one answer script for the writer. Admissions go round 1000 egress
//! keys, so each window holds about what it would at Bitget's rates. CPU is this process's user +
//! system time and the Redis server's, from /proc, over the admissions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitget_poller::limiter::backoff::Backoff;
use bitget_poller::limiter::redis::{RedisConfig, RedisLimiter, ScopeNames};
use bitget_poller::limiter::{Category, Feedback, Limits, LocalLimiter, RateLimiter, Route};
use tokio_util::sync::CancellationToken;

const ADMISSIONS: usize = 20_000;

/// User + system CPU seconds of process `pid` (`self` for this one).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Spread over this many egress keys, so each window holds what it would at a real rate
/// (about 16 per second each) rather than the whole benchmark's load.
const KEYS: u16 = 1000;

async fn measure(limiter: &dyn RateLimiter, redis_pid: Option<&str>) -> serde_json::Value {
    let mut n: u16 = 0;
    let mut next_route = || {
        n = (n + 1) % KEYS;
        Route::new(Category::Market, 0, None).on_egress(n)
    };
    // Warm up: connection, script load.
    for _ in 0..200 {
        let permit = limiter.acquire(next_route()).await;
        limiter.feedback(
            &permit,
            Feedback::Accepted {
                remaining: None,
                server_time_ms: None,
            },
        );
    }
    let (cpu0, server0) = (cpu_seconds("self"), redis_pid.map(cpu_seconds));
    let mut micros = Vec::with_capacity(ADMISSIONS);
    let started = Instant::now();
    for _ in 0..ADMISSIONS {
        let route = next_route();
        let t = Instant::now();
        let permit = limiter.acquire(route).await;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
        limiter.feedback(
            &permit,
            Feedback::Accepted {
                remaining: None,
                server_time_ms: None,
            },
        );
    }
    let wall = started.elapsed().as_secs_f64();
    // Let the writer catch up before reading CPU.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = cpu_seconds("self") - cpu0;
    let server = redis_pid.map(cpu_seconds).zip(server0).map(|(a, b)| a - b);
    micros.sort_by(f64::total_cmp);
    serde_json::json!({
        "admissions": ADMISSIONS,
        "p50_us": percentile(&micros, 50.0),
        "p99_us": percentile(&micros, 99.0),
        "max_us": micros.last(),
        "admissions_per_s": ADMISSIONS as f64 / wall,
        "client_cpu_us_per_admission": cpu * 1e6 / ADMISSIONS as f64,
        "redis_cpu_us_per_admission": server.map(|s| s * 1e6 / ADMISSIONS as f64),
    })
}

fn main() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("bitget-poller-bench-redis-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = std::process::Command::new(
        std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
    )
    .args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .arg("--dir")
    .arg(&dir)
    .stdout(std::process::Stdio::null())
    .spawn()
    .expect("redis-server starts (apt install redis-server)");
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.id().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let limits = Limits {
        per_second: [1_000_000; 4],
        total_per_second: [None; 4],
        overall_per_minute: 1_000_000_000,
        safety_margin: 0.0,
    };
    let result = runtime.block_on(async {
        let local = LocalLimiter::new(&limits, Backoff::default());
        let local = measure(&local, None).await;
        let config = RedisConfig {
            url: format!("redis://127.0.0.1:{port}/0"),
            ..RedisConfig::default()
        };
        let (limiter, writer) = RedisLimiter::new(
            &config,
            &limits,
            Backoff::default(),
            ScopeNames {
                egresses: (0..KEYS).map(|k| format!("egress-{k}")).collect(),
                ..ScopeNames::default()
            },
        )
        .unwrap();
        let stop = CancellationToken::new();
        let writing = tokio::spawn(writer.run(stop.clone()));
        let limiter = Arc::new(limiter);
        let redis = measure(limiter.as_ref(), Some(&pid)).await;
        stop.cancel();
        let _ = writing.await;
        serde_json::json!({ "local": local, "redis": redis })
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
}
