//! One budget across instances through a real `redis-server`, and several egress
//! addresses against the simulator (which keys IP budgets on the client address).
//!
//! The Redis tests start their own `redis-server` (Debian's package; `bash .ci/test`
//! installs it) on a free loopback port, without persistence, and stop it at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bitget_poller::app::{poll_session, RunSummary, Wiring};
use bitget_poller::config::Config;
use bitget_poller::core::clock::{Clock, SystemClock};
use bitget_poller::limiter::{Backend, Category};
use bitget_poller::store::{Store, StoreConfig};
use bitget_poller::telemetry::metrics::render;
use bitget_sim::limits::LimitConfig;
use bitget_sim::network::NetworkConfig;
use bitget_sim::SimConfig;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::helpers::{binary, config, free_port, simulator, temp_dir, RedisServer};

const CANDLES: &str = "/api/v2/mix/market/candles";

fn redis_extra(redis: &RedisServer, instances: u32) -> String {
    format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_expected_instances = {instances}\n[trading]\nenabled = false\n",
        redis.url()
    )
}

/// A simulator of `symbols` contracts with 0–20 ms of arrival jitter, and a live-mode
/// config on all of them sharing through `redis` among `instances`.
async fn jittered_through_redis(
    redis: &RedisServer,
    symbols: usize,
    instances: u32,
    name: &str,
) -> (bitget_sim::Simulator, Config) {
    let sim = simulator(SimConfig {
        symbols,
        network: NetworkConfig {
            jitter_ms: 20,
            ..NetworkConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        &format!("symbols = \"all\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/{name}.json\""),
        &redis_extra(redis, instances),
    );
    (sim, cfg)
}

/// A poller instance of its own (own limiter, own client), as a separate process would
/// have; returns its wiring so the test can look at the limiter while it runs.
struct Instance {
    wiring: Arc<Wiring>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<RunSummary>,
}

fn start(config: &Config) -> Instance {
    let stop = CancellationToken::new();
    let store = Store::new(StoreConfig::default());
    let wall: Arc<dyn bitget_poller::core::clock::Clock> =
        Arc::new(bitget_poller::core::clock::SystemClock::new());
    let wiring = Arc::new(Wiring::new(config, wall, Arc::clone(&store), stop.clone()).unwrap());
    let task = {
        let (wiring, stop, config) = (Arc::clone(&wiring), stop.clone(), config.clone());
        tokio::spawn(async move {
            let wall: Arc<dyn Clock> = Arc::new(SystemClock::new());
            let summary = poll_session(&config, &wiring, wall, Instant::now(), stop, false)
                .await
                .expect("session runs");
            store.close();
            wiring.close().await;
            summary
        })
    };
    Instance { wiring, stop, task }
}

impl Instance {
    fn backend(&self) -> Backend {
        self.wiring.limiter.counters(Category::Market).backend
    }

    async fn stop(self) -> RunSummary {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_budget_through_redis_without_a_429() {
    let redis = RedisServer::start("three");
    let (sim, cfg) = jittered_through_redis(&redis, 30, 3, "shared3").await;
    let instances: Vec<Instance> = (0..3).map(|_| start(&cfg)).collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(instances.iter().all(|i| i.backend() == Backend::Redis));
    let wall: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let scrape = render(&instances[0].wiring.metrics_sources(wall)).unwrap();
    assert!(
        scrape.contains("bitget_poller_limiter_backend{backend=\"redis\"} 1"),
        "{scrape}"
    );
    let mut replies = Vec::new();
    let mut admitted = 0;
    for instance in instances {
        let summary = instance.stop().await;
        let market = summary.counters(Category::Market);
        assert_eq!(market.rate_limited, 0);
        admitted += market.admitted;
        replies.push(summary.candle_replies);
    }
    let stats = sim.stop().await;
    let candles = &stats.endpoints[CANDLES];
    assert_eq!(stats.total.rate_limited, 0, "{stats:?}");
    assert!(
        candles.max_accepted_in_1s <= 20,
        "the server never saw more than its limit in a second: {}",
        candles.max_accepted_in_1s
    );
    // Each polled: one budget, three users (each alone would take all of it, and three
    // local limiters together draw 429s).
    assert!(replies.iter().all(|&r| r > 0), "{replies:?}");
    // Every request the server saw was admitted by one of the instances' limiters (some
    // admitted at the stop never arrived, and replies in flight then were not counted).
    assert!(replies.iter().sum::<u64>() <= candles.requests);
    assert!(
        admitted >= stats.total.requests,
        "{admitted} admitted, {} seen",
        stats.total.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_run_costs_no_429_and_sharing_resumes() {
    let mut redis = RedisServer::start("restart");
    let (sim, cfg) = jittered_through_redis(&redis, 20, 2, "restart").await;
    let a = start(&cfg);
    let b = start(&cfg);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.backend(), Backend::Redis);
    redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Both noticed and fell back to their share; both still admit.
    assert_eq!(a.backend(), Backend::Fallback);
    assert_eq!(b.backend(), Backend::Fallback);
    let during = a.wiring.limiter.counters(Category::Market).admitted;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.wiring.limiter.counters(Category::Market).admitted > during);
    assert_eq!(
        a.wiring.limiter.counters(Category::Market).effective_limit,
        10
    );
    redis.restart();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(a.backend(), Backend::Redis);
    assert_eq!(b.backend(), Backend::Redis);
    let sa = a.stop().await;
    let sb = b.stop().await;
    let stats = sim.stop().await;
    assert_eq!(stats.total.rate_limited, 0, "{stats:?}");
    assert!(stats.endpoints[CANDLES].max_accepted_in_1s <= 20);
    assert!(sa.candle_replies > 0 && sb.candle_replies > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_drop_one_instance_meets_holds_them_all() {
    let redis = RedisServer::start("drop");
    // 20/s, then 5/s from 2 s, then 20/s again from 5 s.
    let sim = simulator(SimConfig {
        symbols: 30,
        limits: LimitConfig {
            schedule: LimitConfig::parse_schedule("20,2:5,5:20").unwrap(),
            ..LimitConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/shared-drop.json\"",
        &redis_extra(&redis, 2),
    );
    let a = start(&cfg);
    let b = start(&cfg);
    tokio::time::sleep(Duration::from_secs(4)).await;
    // In the 5/s phase: the fleet follows the server's remaining count.
    let during = a.wiring.limiter.counters(Category::Market).effective_limit;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = a.wiring.limiter.counters(Category::Market).effective_limit;
    let (sa, sb) = (a.stop().await, b.stop().await);
    let stats = sim.stop().await;
    let rejected = stats.total.rate_limited;
    assert!(
        (1..=4).contains(&rejected),
        "429s for two instances on the drop: {rejected}"
    );
    assert!(during <= 6, "effective limit in the 5/s phase: {during}");
    assert_eq!(after, 20, "back to the full limit");
    assert!(sa.candle_replies > 0 && sb.candle_replies > 0);
}

#[tokio::test(flavor = "current_thread")]
async fn redis_unreachable_at_start_runs_on_the_share_and_says_so_once() {
    let sim = simulator(SimConfig {
        symbols: 5,
        ..SimConfig::default()
    })
    .await;
    let dir = temp_dir("redis-unreachable");
    // A port nothing listens on.
    let port = free_port();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[exchange]\nbase_url = \"{}\"\n[poll]\nsymbols = \"all\"\ndiscovery_cache = \"{}\"\n[logging]\ndir = \"{}\"\n[limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/0\"\n[feed]\nsource = \"rest\"\n[trading]\nenabled = false\n[store]\npath = \"{}\"\n",
            sim.base_url(),
            dir.join("cache.json").display(),
            dir.join("logs").display(),
            dir.join("candles.sqlite").display()
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        binary()
            .args(["run", "--config", cfg.to_str().unwrap(), "--duration", "4"])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stats = sim.stop().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    let all = format!("{stdout}{stderr}");
    let lines: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("cannot reach redis"))
        .collect();
    assert_eq!(lines.len(), 1, "said once, loudly: {all}");
    assert!(
        lines[0].contains(&format!("127.0.0.1:{port}")),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("fallback share"), "{}", lines[0]);
    assert_eq!(stats.total.rate_limited, 0);
    assert!(stats.endpoints[CANDLES].accepted > 0, "polled on the share");
    // Half of 20/s (two instances expected by default).
    assert!(stats.endpoints[CANDLES].max_accepted_in_1s <= 10);
}

/// Accepted candle replies per client address, and the most accepted from all addresses
/// together in any sliding second.
fn per_client(log: &std::path::Path) -> (BTreeMap<String, u64>, usize) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut by = BTreeMap::new();
    let mut times = Vec::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["path"] == CANDLES && row["status"] == 200 && row["code"] == "00000" {
            *by.entry(row["client"].as_str().unwrap().to_owned())
                .or_default() += 1;
            times.push(row["ts"].as_u64().unwrap());
        }
    }
    times.sort_unstable();
    let mut best = 0;
    let mut j = 0;
    for (i, &t) in times.iter().enumerate() {
        while times[j] + 1000 <= t {
            j += 1;
        }
        best = best.max(i - j + 1);
    }
    (by, best)
}

#[tokio::test(flavor = "current_thread")]
async fn four_egress_addresses_each_carry_their_own_ip_budget() {
    let dir = temp_dir("egress4");
    let log = dir.join("requests.jsonl");
    let sim = simulator(SimConfig {
        symbols: 40,
        request_log: Some(log.clone()),
        ..SimConfig::default()
    })
    .await;
    let egress: String = (2..=5)
        .map(|i| format!("[[egress]]\nlocal_address = \"127.0.0.{i}\"\n"))
        .collect();
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/egress4.json\"",
        &format!("[trading]\nenabled = false\n{egress}"),
    );
    let instance = start(&cfg);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let wall: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let scrape = render(&instance.wiring.metrics_sources(wall)).unwrap();
    for ip in ["127.0.0.2", "127.0.0.5"] {
        let line = format!("bitget_poller_egress_requests_total{{egress=\"{ip}\"}} ");
        let value: f64 = scrape
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line} in {scrape}"));
        assert!(value > 0.0, "{line}{value}");
        assert!(scrape.contains(&format!(
            "bitget_poller_egress_healthy{{egress=\"{ip}\"}} 1"
        )));
    }
    let wiring = Arc::clone(&instance.wiring);
    let summary = instance.stop().await;
    // After the stop, so both counts cover the same admissions.
    let loads = wiring.limiter.egress_loads();
    let stats = sim.stop().await;
    assert_eq!(stats.total.rate_limited, 0, "{stats:?}");
    assert!(stats.endpoints[CANDLES].max_accepted_in_1s <= 20);
    let (by, busiest) = per_client(&log);
    let clients: Vec<&str> = by.keys().map(String::as_str).collect();
    assert_eq!(
        clients,
        ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    );
    assert!(
        busiest > 3 * 20,
        "four addresses' budgets in use at once: {busiest} in the busiest second"
    );
    assert_eq!(loads.len(), 4);
    assert_eq!(
        loads.iter().map(|l| l.admitted).sum::<u64>(),
        summary.counters(Category::Market).admitted
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_egress_is_taken_out_and_the_others_carry_on() {
    let dir = temp_dir("egress-out");
    let log = dir.join("requests.jsonl");
    let sim = simulator(SimConfig {
        symbols: 10,
        request_log: Some(log.clone()),
        ..SimConfig::default()
    })
    .await;
    // A proxy nothing listens on: every connection through it is refused.
    let dead = free_port();
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/egress-out.json\"",
        &format!(
            "[trading]\nenabled = false\n[[egress]]\nname = \"good\"\nlocal_address = \"127.0.0.2\"\n[[egress]]\nname = \"dead\"\nproxy = \"http://127.0.0.1:{dead}\"\n"
        ),
    );
    let instance = start(&cfg);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let health = instance.wiring.client.http().egress_health();
    let summary = instance.stop().await;
    let stats = sim.stop().await;
    assert_eq!(health.len(), 2);
    assert_eq!(health[0].taken_out, 0);
    assert!(health[1].taken_out >= 1, "{health:?}");
    assert!(health[1].out_until > 0);
    let (by, _) = per_client(&log);
    assert_eq!(by.keys().collect::<Vec<_>>(), ["127.0.0.2"]);
    assert!(summary.candle_replies > 10, "the good egress carried on");
    assert_eq!(stats.total.rate_limited, 0);
}

#[test]
fn a_bad_redis_url_is_one_line_and_exit_2() {
    let dir = temp_dir("bad-redis-url");
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[poll]\nsymbols = [\"BTCUSDT\"]\n[limits]\nbackend = \"redis\"\nredis_url = \"http://127.0.0.1:6379\"\n",
    )
    .unwrap();
    let out = binary()
        .args(["run", "--config", cfg.to_str().unwrap(), "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("limits.redis_url = \"http://127.0.0.1:6379\" is not a redis url"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn signed_requests_keep_to_the_signed_egress_while_market_data_rotates() {
    use bitget_poller::bitget::credential::{Credentials, Signer};
    use bitget_poller::core::market::Symbol;
    use bitget_poller::core::timeframe::{Market, Timeframe};
    use bitget_sim::{DEMO_API_KEY, DEMO_API_PASSPHRASE, DEMO_API_SECRET};

    let dir = temp_dir("signed-egress");
    let log = dir.join("requests.jsonl");
    let sim = simulator(SimConfig {
        symbols: 5,
        request_log: Some(log.clone()),
        ..SimConfig::default()
    })
    .await;
    let cfg = Config::parse(
        &format!("[exchange]\nbase_url = \"{}\"\nsigned_egress = \"b\"\n[poll]\nsymbols = \"all\"\n[[egress]]\nname = \"a\"\nlocal_address = \"127.0.0.2\"\n[[egress]]\nname = \"b\"\nlocal_address = \"127.0.0.3\"\n[[egress]]\nname = \"c\"\nlocal_address = \"127.0.0.4\"\n", sim.base_url()),
        std::path::Path::new("signed.toml"),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let wiring = Wiring::new(
        &cfg,
        Arc::new(bitget_poller::core::clock::SystemClock::new()),
        Store::new(StoreConfig::default()),
        stop,
    )
    .unwrap();
    let signer = Arc::new(Signer::new(Credentials::new(
        DEMO_API_KEY,
        DEMO_API_SECRET,
        DEMO_API_PASSPHRASE,
    )));
    let client = wiring.client.clone().with_signer(signer);
    let btc = Symbol::parse("BTCUSDT").unwrap();
    let one_minute = Timeframe::parse(Market::Futures, "1m").unwrap();
    for _ in 0..6 {
        client.balances().await.unwrap();
        client.candles(&btc, one_minute, 5).await.unwrap();
    }
    drop(client);
    sim.stop().await;
    let text = std::fs::read_to_string(&log).unwrap();
    let mut signed = BTreeMap::<String, u32>::new();
    let mut public = BTreeMap::<String, u32>::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let client = row["client"].as_str().unwrap().to_owned();
        let path = row["path"].as_str().unwrap();
        if path.contains("/account/") {
            *signed.entry(client).or_default() += 1;
        } else if path == CANDLES {
            *public.entry(client).or_default() += 1;
        }
    }
    assert_eq!(
        signed.into_iter().collect::<Vec<_>>(),
        [("127.0.0.3".to_owned(), 6)]
    );
    assert!(
        public.len() >= 2,
        "market data left from several egresses: {public:?}"
    );
}

/// A Redis server and two limiter instances sharing it under `prefix`.
fn two_redis_instances(
    prefix: &str,
) -> (
    super::helpers::RedisServer,
    bitget_poller::limiter::redis::RedisLimiter,
    bitget_poller::limiter::redis::RedisLimiter,
) {
    use bitget_poller::limiter::backoff::Backoff;
    use bitget_poller::limiter::redis::{RedisConfig, RedisLimiter, ScopeNames};
    use bitget_poller::limiter::Limits;

    let server = super::helpers::RedisServer::start(prefix);
    let config = RedisConfig {
        url: server.url(),
        key_prefix: format!("{prefix}-test"),
        ..RedisConfig::default()
    };
    let instance = || {
        let (limiter, _writer) = RedisLimiter::new(
            &config,
            &Limits::default(),
            Backoff::default(),
            ScopeNames::default(),
        )
        .unwrap();
        limiter
    };
    let (a, b) = (instance(), instance());
    (server, a, b)
}

/// Bitget meters connection attempts per address: two instances leaving from one address
/// take them from one window in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connection_attempts_are_one_window_for_every_instance() {
    use bitget_poller::limiter::sockets::{SocketBudget, SocketWindow};
    use bitget_poller::limiter::RateLimiter;

    let (_server, a, b) = two_redis_instances("ws-attempts");
    let attempts = [SocketWindow {
        budget: SocketBudget::Attempts,
        key: 0,
        limit: 3,
        window_ms: 60_000,
    }];
    a.socket_acquire(&attempts).await;
    a.socket_acquire(&attempts).await;
    b.socket_acquire(&attempts).await;
    // The address's fourth attempt in the minute waits, whichever instance makes it, although
    // each instance's own window has room.
    let fourth =
        tokio::time::timeout(Duration::from_millis(500), b.socket_acquire(&attempts)).await;
    assert!(fourth.is_err(), "the fourth attempt waited");
    let fourth =
        tokio::time::timeout(Duration::from_millis(500), a.socket_acquire(&attempts)).await;
    assert!(fourth.is_err(), "from either instance");
    // Another address has its own window.
    let other = [SocketWindow {
        key: 1,
        ..attempts[0]
    }];
    tokio::time::timeout(Duration::from_secs(5), b.socket_acquire(&other))
        .await
        .expect("another address is not held");
}

/// Bitget counts open sockets per address too: two instances leaving from one address hold
/// slots of one count in Redis, and a slot one closes is the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_websockets_are_one_count_for_every_instance() {
    use bitget_poller::limiter::sockets::{SocketBudget, SocketWindow};
    use bitget_poller::limiter::RateLimiter;

    let (server, a, b) = two_redis_instances("ws-sockets");
    let sockets = [SocketWindow {
        budget: SocketBudget::Sockets,
        key: 0,
        limit: 2,
        window_ms: 0,
    }];
    a.socket_acquire(&sockets).await;
    b.socket_acquire(&sockets).await;
    // The address's third socket waits, from either instance, although each has room of
    // its own.
    let third = tokio::time::timeout(Duration::from_millis(1500), b.socket_acquire(&sockets)).await;
    assert!(third.is_err(), "the third socket waited");
    let third = tokio::time::timeout(Duration::from_millis(1500), a.socket_acquire(&sockets)).await;
    assert!(third.is_err(), "from either instance");
    assert_eq!(
        server.zcard("{ws-sockets-test}:ws:sockets:0"),
        2,
        "two slots held in redis"
    );
    // A closes its socket: B opens one in its place.
    a.socket_closed(1, 0);
    tokio::time::timeout(Duration::from_secs(5), b.socket_acquire(&sockets))
        .await
        .expect("the freed slot is taken");
    assert_eq!(server.zcard("{ws-sockets-test}:ws:sockets:0"), 2);
    // The waits given up above left nothing held: B closes both of its sockets, and A
    // opens two again.
    b.socket_closed(2, 0);
    b.socket_closed(3, 0);
    tokio::time::timeout(Duration::from_secs(5), async {
        a.socket_acquire(&sockets).await;
        a.socket_acquire(&sockets).await;
    })
    .await
    .expect("both slots free again");
}
