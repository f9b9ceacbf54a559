//! The gateway end to end: `app::run` with the poller and the gateway against the
//! simulator, and clients speaking plain HTTP to the gateway.

use std::sync::Arc;
use std::time::Duration;

use bitget_poller::app::{self, RunOptions};
use bitget_poller::bitget::credential::Signer;
use bitget_poller::core::clock::SystemClock;
use bitget_poller::gateway::config::Token;
use bitget_poller::sim::{SimConfig, DEMO_API_KEY, DEMO_API_PASSPHRASE, DEMO_API_SECRET};
use bitget_poller::telemetry::metrics::MetricsServer;
use bitget_poller::trading::setup::Venue;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::helpers::{config, simulator};

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
    assert!(headers.contains_key("x-mbx-used-remain-limit"));
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
    let bot = Signer::new(
        bitget_poller::bitget::credential::Credentials::new(
            DEMO_API_KEY,
            DEMO_API_SECRET,
            DEMO_API_PASSPHRASE,
        ),
        Arc::new(SystemClock::new()),
    );
    let (path, query) = ("/api/v2/mix/account/accounts", "productType=USDT-FUTURES");
    let signed = bot.headers("GET", path, query, b"");
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
