//! The gateway end to end: `app::run` with the poller and the gateway against the
//! simulator, and clients speaking plain HTTP to the gateway.

use std::sync::Arc;
use std::time::Duration;

use bitget_poller::app::{self, RunOptions};
use bitget_poller::bitget::credential::Signer;
use bitget_poller::core::clock::SystemClock;
use bitget_poller::gateway::config::Token;
use bitget_poller::telemetry::metrics::MetricsServer;
use bitget_poller::trading::setup::Venue;
use bitget_sim::{SimConfig, DEMO_API_KEY, DEMO_API_PASSPHRASE, DEMO_API_SECRET};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::helpers::{config, simulator};

const CANDLES: &str = "/api/v2/mix/market/candles";

struct Running {
    base: String,
    metrics: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<app::Report>,
}

async fn start(cfg: bitget_poller::config::Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let metrics = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let metrics_url = format!("http://{}/metrics", metrics.local_addr().unwrap());
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let options = RunOptions {
                venue: Venue::Paper,
                specs: Vec::new(),
                metrics: Some(metrics),
                wall: Arc::new(SystemClock::new()),
                gateway: Some(listener),
            };
            app::run(&cfg, options, stop).await.expect("app runs")
        }
    });
    Running {
        base,
        metrics: metrics_url,
        stop,
        task,
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let reply = http.get(url).send().await.unwrap();
    let status = reply.status().as_u16();
    let headers = reply.headers().clone();
    let body = reply.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn cache(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_are_served_from_the_store_after_one_miss_and_signed_calls_pass_unchanged() {
    let sim = simulator(SimConfig {
        symbols: 5,
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\"]\ntickers_interval_secs = 0",
        "[gateway]\ncandle_max_age_ms = 60000\n",
    );
    let gw = start(cfg).await;
    let http = reqwest::Client::new();
    let eth = format!(
        "{}{CANDLES}?symbol=ETHUSDT&granularity=5m&productType=USDT-FUTURES&limit=20",
        gw.base
    );
    let (status, headers, first) = get(&http, &eth).await;
    assert_eq!((status, cache(&headers)), (200, "miss"));
    let (status, headers, second) = get(&http, &eth).await;
    assert_eq!((status, cache(&headers)), (200, "hit"), "{second}");
    assert!(headers.contains_key("x-cache-age-ms"));
    // A hit spends nothing upstream: no remaining-budget header to slow a bot down.
    assert!(!headers.contains_key("x-mbx-used-remain-limit"));
    // The same rows as Bitget's own reply; the forming candle may have moved on.
    let rows = |v: &Value| v["data"].as_array().unwrap().clone();
    assert_eq!(rows(&first).len(), 20);
    assert_eq!(rows(&first)[..19], rows(&second)[..19]);
    let direct = http
        .get(format!(
            "{}{CANDLES}?symbol=ETHUSDT&granularity=5m&productType=USDT-FUTURES&limit=20",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(rows(&direct)[..19], rows(&second)[..19]);

    // A signed request from another program passes unchanged, signature and all.
    let bot = Signer::new(bitget_poller::bitget::credential::Credentials::new(
        DEMO_API_KEY,
        DEMO_API_SECRET,
        DEMO_API_PASSPHRASE,
    ));
    let (path, query) = ("/api/v2/mix/account/accounts", "productType=USDT-FUTURES");
    let signed = bot.headers(
        "GET",
        path,
        query,
        b"",
        bitget_poller::core::clock::Clock::now_ms(&SystemClock::new()),
    );
    let reply = http
        .get(format!("{}{path}?{query}", gw.base))
        .header("ACCESS-KEY", signed.key)
        .header("ACCESS-SIGN", signed.sign.as_str())
        .header("ACCESS-TIMESTAMP", signed.timestamp.as_str())
        .header("ACCESS-PASSPHRASE", signed.passphrase)
        .header("X-Client-Name", "test-bot")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(cache(reply.headers()), "forwarded");
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["data"][0]["marginCoin"], "USDT");

    // A body over the cap is refused before anything is sent.
    let big = http
        .post(format!("{}/api/v2/mix/order/place-order", gw.base))
        .body(vec![b'x'; 200 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status().as_u16(), 413);

    let scrape = http
        .get(&gw.metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape.contains(
            r#"bitget_poller_gateway_requests_total{client="test-bot",served="forwarded"} 1"#
        ),
        "{scrape}"
    );
    assert!(
        scrape.contains(r#"served="hit"} 1"#),
        "the one hit: {scrape}"
    );

    gw.stop.cancel();
    let report = gw.task.await.unwrap();
    let summary = report.poll.unwrap();
    let stats = sim.stop().await;
    assert_eq!(stats.total.rate_limited, 0);
    // One upstream request for the two ETH asks (the miss) plus the poller's own,
    // possibly more for ETH once the poller keeps it fresh; never one per ask.
    assert!(stats.endpoints[CANDLES].requests >= 2);
    assert_eq!(
        summary.symbols, 1,
        "the configured symbol; ETH is the gateway's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_deadline_a_request_is_refused_locally_and_a_token_is_enforced() {
    let sim = simulator(SimConfig {
        symbols: 40,
        ..SimConfig::default()
    })
    .await;
    // The poller alone fills the market budget; the gateway may not queue at all.
    let mut cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntickers_interval_secs = 0\nconcurrency = 16\ndiscovery_cache = \"target/test-cache/gateway-deadline.json\"",
        "[gateway]\nqueue_max_ms = 0\n",
    );
    cfg.gateway.token = Some(Token::new("s3cret"));
    let gw = start(cfg).await;
    let http = reqwest::Client::new();
    let depth = format!(
        "{}/api/v2/mix/market/merge-depth?symbol=BTCUSDT&productType=USDT-FUTURES",
        gw.base
    );
    let refused = http.get(&depth).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401, "no token");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut local_429 = 0;
    for _ in 0..20 {
        let reply = http
            .get(&depth)
            .header("X-Gateway-Token", "s3cret")
            .send()
            .await
            .unwrap();
        if reply.status().as_u16() == 429 {
            assert_eq!(cache(reply.headers()), "refused");
            assert_eq!(reply.headers()["retry-after"], "1");
            let body: Value = reply.json().await.unwrap();
            assert_eq!(body["code"], "429");
            assert_eq!(body["msg"], "Too Many Requests");
            local_429 += 1;
        }
    }
    gw.stop.cancel();
    gw.task.await.unwrap();
    let stats = sim.stop().await;
    assert!(
        local_429 > 0,
        "the budget was full, so some were answered locally"
    );
    assert_eq!(
        stats.total.rate_limited, 0,
        "bitget never saw an over-limit request"
    );
}

/// A simulator with `symbols` contracts writing its request log into `name`'s scratch folder.
async fn logged_simulator(
    name: &str,
    symbols: usize,
) -> (bitget_sim::Simulator, std::path::PathBuf) {
    let log = super::helpers::temp_dir(name).join("requests.jsonl");
    let sim = simulator(SimConfig {
        symbols,
        request_log: Some(log.clone()),
        ..SimConfig::default()
    })
    .await;
    (sim, log)
}

/// Lines of the simulator's request log: (path, symbol, code).
fn request_log(path: &std::path::Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
            (s("path"), s("symbol"), s("code"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_escapes_are_resolved_before_the_budget_and_nothing_outside_api_is_relayed(
) {
    let (sim, log) = logged_simulator("gateway-dots", 40).await;
    // The poller alone fills the market budget: a candle request charged to any other
    // budget would push Bitget over its 20/s.
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntickers_interval_secs = 0\nconcurrency = 8\ndiscovery_cache = \"target/test-cache/gateway-dots.json\"",
        "",
    );
    let gw = start(cfg).await;
    let http = reqwest::Client::new();
    let query = "symbol=ETHUSDT&productType=USDT-FUTURES&granularity=5m&limit=1&startTime=1";
    let mut sent = Vec::new();
    for (i, path) in [
        "/api/v2/x/../mix/market/candles",
        "/api/v2/mix/market/./candles",
        "//api//v2/mix/market/candles",
        "/api/v2/mix/market/%63andles",
        "/api/v2/x/%2e%2e/mix/market/candles",
    ]
    .iter()
    .cycle()
    .take(60)
    .enumerate()
    {
        // A different start each time: every one is a miss that reaches Bitget.
        let url = format!("{}{path}?{query}{i}", gw.base);
        sent.push(tokio::spawn({
            let http = http.clone();
            async move { get(&http, &url).await }
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut relayed = 0;
    for task in sent {
        let (status, headers, body) = task.await.unwrap();
        match status {
            200 => {
                // Charged to the candle budget: a miss, or a hit once the series is held.
                assert!(["miss", "hit", "merged"].contains(&cache(&headers)));
                assert_eq!(body["code"], "00000");
                relayed += 1;
            }
            // The candle budget was full for longer than queue_max: refused locally.
            429 => assert_eq!(cache(&headers), "refused"),
            other => panic!("{other} {body}"),
        }
    }
    // Outside Bitget's namespaces: refused, never relayed.
    for path in [
        "/api/../sim/stats",
        "/api/%2e%2e/sim/stats",
        "/api/v2/../../sim/stats",
        "/api/v1/spot/market/tickers",
        "/api/v2/mix%2fmarket/candles",
    ] {
        let (status, _, body) = get(&http, &format!("{}{path}", gw.base)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("40404")),
            "{path}: {body}"
        );
    }
    gw.stop.cancel();
    gw.task.await.unwrap();
    let stats = sim.stop().await;
    assert!(relayed > 0, "some got through the budget");
    assert_eq!(stats.total.rate_limited, 0, "{stats:?}");
    assert!(!stats.endpoints.contains_key("<unknown>"), "{stats:?}");
    let lines = request_log(&log);
    assert!(lines.iter().any(|(path, ..)| path == CANDLES));
    assert!(
        lines.iter().all(|(path, ..)| path.starts_with("/api/v2/")),
        "only canonical /api/v2 paths reached the exchange"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_bitget_reads_otherwise_get_bitgets_answer_not_the_cache() {
    let sim = simulator(SimConfig {
        symbols: 5,
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntickers_interval_secs = 0",
        "[gateway]\ncandle_max_age_ms = 60000\n",
    );
    let gw = start(cfg).await;
    let http = reqwest::Client::new();
    // Straight to the simulator from another loopback address: its own budget there.
    let direct_http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let base = "granularity=1m&productType=USDT-FUTURES";
    // Once the poller has both series in the store, a plain query is a hit (asked until
    // it is: how soon depends on the machine's load, not on what is tested here).
    let plain = format!("{}{CANDLES}?symbol=ETHUSDT&{base}&limit=1", gw.base);
    let mut hit = false;
    for _ in 0..100 {
        let (_, headers, _) = get(&http, &plain).await;
        if cache(&headers) == "hit" {
            hit = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        hit,
        "a plain query of a polled series is answered from the store"
    );
    for (query, expect_status, expect_code) in [
        ("symbol=BTCUSDT&symbol=ETHUSDT&limit=1", 200, "00000"),
        ("symbol=BTCUSDT&limit=2&limit=3", 200, "00000"),
        ("symbol=btcusdt&limit=1", 400, "40034"),
        ("symbol=BTC/USDT:USDT&limit=1", 400, "40034"),
    ] {
        let url = format!("{{}}{CANDLES}?{query}&{base}");
        let (status, headers, body) = get(&http, &url.replace("{}", &gw.base)).await;
        let (direct_status, _, direct) =
            get(&direct_http, &url.replace("{}", &sim.base_url())).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (expect_status, Some(expect_code)),
            "{query}: {body}"
        );
        assert_eq!(status, direct_status, "{query}");
        assert_ne!(cache(&headers), "hit", "{query} is never a hit");
        if status == 200 {
            // Bitget's reading: the first value of a repeated key.
            let rows = body["data"].as_array().unwrap();
            let direct_rows = direct["data"].as_array().unwrap();
            assert_eq!(rows.len(), direct_rows.len(), "{query}");
            assert_eq!(rows[0][0], direct_rows[0][0], "{query}");
            assert_eq!(
                rows[0][1], direct_rows[0][1],
                "{query}: the first symbol's rows"
            );
        }
    }
    gw.stop.cancel();
    gw.task.await.unwrap();
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_symbols_are_not_watched_and_the_configured_series_stay_fresh() {
    let (sim, log) = logged_simulator("gateway-fakes", 10).await;
    let cfg = config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntickers_interval_secs = 0",
        "[gateway]\nmax_watched_series = 2\n",
    );
    let gw = start(cfg).await;
    let http = reqwest::Client::new();
    let q = |symbol: &str, tf: &str| {
        format!(
            "{}{CANDLES}?symbol={symbol}&granularity={tf}&productType=USDT-FUTURES&limit=5",
            gw.base
        )
    };
    // Let the gateway read the contract list (in the background).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut refused_by_bitget = 0;
    for i in 0..150 {
        let (status, headers, body) = get(&http, &q(&format!("FAKE{i:05}USDT"), "1m")).await;
        if status == 400 {
            assert_eq!(body["code"], "40034", "{body}");
            assert_eq!(cache(&headers), "miss");
            refused_by_bitget += 1;
        }
    }
    // Real series a client asks for are watched, up to the cap.
    for tf in ["5m", "15m", "30m"] {
        let (status, ..) = get(&http, &q("SOLUSDT", tf)).await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    gw.stop.cancel();
    let report = gw.task.await.unwrap();
    let summary = report.poll.unwrap();
    sim.stop().await;
    let lines = request_log(&log);
    let fake = lines
        .iter()
        .filter(|(path, symbol, _)| path == CANDLES && symbol.starts_with("FAKE"))
        .count();
    assert!(refused_by_bitget > 0);
    assert_eq!(
        fake, refused_by_bitget,
        "one forwarded request per fake symbol, never polled"
    );
    let sol = lines
        .iter()
        .filter(|(path, symbol, code)| path == CANDLES && symbol == "SOLUSDT" && code == "00000")
        .count();
    assert!(
        sol > 3,
        "the watched SOLUSDT series were polled after the client's 3 misses ({sol})"
    );
    assert_eq!(summary.stale_at_exit, 0, "{}", summary.render());
    let btc = lines
        .iter()
        .filter(|(path, symbol, _)| path == CANDLES && symbol == "BTCUSDT")
        .count();
    assert!(btc >= 20, "BTCUSDT kept being polled: {btc}");
}
