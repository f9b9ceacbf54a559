//! `Http::forward`: a request another client built and signed goes through our limiter and
//! reaches the exchange byte for byte; its reply comes back as the exchange sent it.

use std::sync::Arc;
use std::time::Duration;

use bitget_poller::bitget::client::Client;
use bitget_poller::bitget::credential::Signer;
use bitget_poller::bitget::error::BitgetError;
use bitget_poller::bitget::http::{CallError, ClientConfig, Method, RawRequest};
use bitget_poller::core::clock::SystemClock;
use bitget_poller::limiter::backoff::Backoff;
use bitget_poller::limiter::{Category, Limits, LocalLimiter, RateLimiter};
use bitget_poller::telemetry::RecentRateLimits;
use bitget_sim::SimConfig;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::helpers::{demo_credentials, simulator};

fn unsigned_client(base_url: String, max_body_bytes: usize) -> (Client, Arc<LocalLimiter>) {
    let config = ClientConfig {
        base_url,
        backoff: Backoff {
            base: Duration::from_millis(100),
            max_retries: 1,
            cap: Duration::from_secs(1),
        },
        max_body_bytes,
        ..ClientConfig::default()
    };
    let limiter = Arc::new(LocalLimiter::new(&Limits::default(), config.backoff));
    let client = Client::new(
        &config,
        limiter.clone(),
        Arc::new(RecentRateLimits::default()),
        CancellationToken::new(),
    )
    .unwrap();
    (client, limiter)
}

#[tokio::test]
async fn a_request_signed_elsewhere_is_forwarded_unchanged_and_spends_our_budget() {
    let sim = simulator(SimConfig::default()).await;
    let (client, limiter) = unsigned_client(sim.base_url(), 16 << 20);
    // Signed by "another bot": our client holds no credentials at all.
    let bot = Signer::new(demo_credentials());
    let path = "/api/v2/mix/account/accounts";
    let query = "productType=USDT-FUTURES";
    let signed = bot.headers(
        "GET",
        path,
        query,
        b"",
        bitget_poller::core::clock::Clock::now_ms(&SystemClock::new()),
    );
    let mut headers = HeaderMap::new();
    headers.insert("ACCESS-KEY", HeaderValue::from_str(signed.key).unwrap());
    headers.insert("ACCESS-SIGN", HeaderValue::from_str(&signed.sign).unwrap());
    headers.insert(
        "ACCESS-TIMESTAMP",
        HeaderValue::from_str(&signed.timestamp).unwrap(),
    );
    headers.insert(
        "ACCESS-PASSPHRASE",
        HeaderValue::from_str(signed.passphrase).unwrap(),
    );
    let reply = client
        .http()
        .forward(RawRequest {
            method: Method::GET,
            path: path.into(),
            query: query.into(),
            headers: headers.clone(),
            body: Bytes::new(),
        })
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["code"], "00000");
    assert_eq!(body["data"][0]["marginCoin"], "USDT");
    assert!(reply.headers.contains_key("x-mbx-used-remain-limit"));
    assert_eq!(limiter.counters(Category::Account).admitted, 1);

    // A signature for another query is refused by the exchange, and the refusal comes back
    // as it was sent: status and body unchanged, not turned into an error of ours.
    let refused = client
        .http()
        .forward(RawRequest {
            method: Method::GET,
            path: path.into(),
            query: "productType=COIN-FUTURES".into(),
            headers,
            body: Bytes::new(),
        })
        .await
        .unwrap();
    assert_eq!(refused.status, 400);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["code"], "40009");

    // A path outside the endpoint table spends the default budget.
    let unknown = client
        .http()
        .forward(RawRequest {
            method: Method::GET,
            path: "/api/v2/mix/market/not-an-endpoint".into(),
            query: String::new(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        })
        .await
        .unwrap();
    assert_eq!(unknown.status, 400);
    let body: Value = serde_json::from_slice(&unknown.body).unwrap();
    assert_eq!(
        body["code"], "40404",
        "Bitget's own not-found, passed on unchanged"
    );
    assert_eq!(limiter.counters(Category::Default).admitted, 1);
    assert_eq!(limiter.counters(Category::Account).admitted, 2);
    sim.stop().await;
}

#[tokio::test]
async fn a_reply_over_the_body_cap_is_refused_unread() {
    let sim = simulator(SimConfig {
        symbols: 400,
        ..SimConfig::default()
    })
    .await;
    let (client, _) = unsigned_client(sim.base_url(), 4096);
    let error = client
        .http()
        .forward(RawRequest {
            method: Method::GET,
            path: "/api/v2/mix/market/contracts".into(),
            query: "productType=USDT-FUTURES".into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        })
        .await
        .unwrap_err();
    let CallError::Bitget(BitgetError::Malformed { detail, .. }) = error else {
        panic!("{error:?}")
    };
    assert!(detail.contains("over the 4096 byte cap"), "{detail}");
    sim.stop().await;
}
