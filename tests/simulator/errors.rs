//! Bitget error replies: HTTP 400, the envelope, `data: null`, Bitget's code and message.

use bitget_sim::codes::TEMPLATES;
use bitget_sim::SimConfig;

use super::helpers::*;

const M: &str = "/api/v2/mix/market";

#[tokio::test]
async fn every_bad_request_gets_its_bitget_code() {
    let config = SimConfig {
        removed_symbols: vec!["ETHUSDT".into()],
        ..SimConfig::default()
    };
    let (sim, _clock) = start(config).await;
    let http = client();
    let cases: &[(&str, &str, &str)] = &[
        (&format!("{M}/candles?symbol=NOPEUSDT&productType=USDT-FUTURES&granularity=1m"), "40034", "Parameter NOPEUSDT does not exist"),
        (&format!("{M}/ticker?symbol=NOPEUSDT&productType=USDT-FUTURES"), "40034", "Parameter NOPEUSDT does not exist"),
        (&format!("{M}/candles?symbol=ETHUSDT&productType=USDT-FUTURES&granularity=1m"), "40309", "The contract has been removed"),
        (&format!("{M}/candles?symbol=BTCUSDT&granularity=1m"), "40019", "Parameter productType cannot be empty"),
        (&format!("{M}/candles?productType=USDT-FUTURES&granularity=1m"), "40019", "Parameter symbol cannot be empty"),
        (&format!("{M}/candles?symbol=BTCUSDT&productType=USDT-FUTURES"), "40019", "Parameter granularity cannot be empty"),
        (&format!("{M}/tickers"), "40019", "Parameter productType cannot be empty"),
        (&format!("{M}/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=7m"), "40020", "Parameter granularity error"),
        // Futures spell hours upper-case; spot spells minutes "1min".
        (&format!("{M}/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1h"), "40020", "Parameter granularity error"),
        ("/api/v2/spot/market/candles?symbol=BTCUSDT&granularity=1m", "40020", "Parameter granularity error"),
        (&format!("{M}/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=1001"), "40020", "Parameter limit error"),
        (&format!("{M}/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=0"), "40020", "Parameter limit error"),
        (&format!("{M}/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=ten"), "40020", "Parameter limit error"),
        (&format!("{M}/history-candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=201"), "40020", "Parameter limit error"),
        (&format!("{M}/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&startTime=x"), "40020", "Parameter startTime error"),
        (&format!("{M}/tickers?productType=BTC-FUTURES"), "40020", "Parameter productType error"),
        (&format!("{M}/merge-depth?symbol=BTCUSDT&productType=USDT-FUTURES&limit=201"), "40020", "Parameter limit error"),
        ("/api/v2/mix/market/nothing-here", "40404", "Request URL NOT FOUND"),
        ("/", "40404", "Request URL NOT FOUND"),
    ];
    for (path, code, msg) in cases {
        let reply = get(&http, &sim, path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert_eq!(reply.content_type, "application/json");
        let body = reply.json();
        assert_eq!(body["code"], *code, "{path}");
        assert_eq!(body["msg"], *msg, "{path}");
        assert!(
            body["data"].is_null() && body["requestTime"].is_u64(),
            "{path}"
        );
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["code", "msg", "requestTime", "data"],
            "envelope order as Bitget sends it"
        );
    }
}

#[tokio::test]
async fn wrong_method_and_junk_input_get_errors_not_hangs() {
    let (sim, _clock) = start(SimConfig::default()).await;
    let http = client();
    let url = |p: &str| format!("{}{p}", sim.base_url());
    // POST to a GET endpoint.
    let reply = to_reply(http.post(url("/api/v2/public/time")).send().await.unwrap()).await;
    assert_eq!((reply.status, reply.code()), (400, "40404".to_owned()));
    // Broken percent-encoding, a huge query and binary garbage still get Bitget errors.
    let reply = get(
        &http,
        &sim,
        "/api/v2/mix/market/ticker?symbol=%ZZ%00&productType=USDT-FUTURES",
    )
    .await;
    assert_eq!(reply.code(), "40034");
    let huge = format!(
        "/api/v2/mix/market/ticker?productType=USDT-FUTURES&symbol={}",
        "A".repeat(20_000)
    );
    assert_eq!(get(&http, &sim, &huge).await.status, 400);
    let reply = to_reply(
        http.post(url("/api/v2/mix/order/place-order"))
            .body(vec![0xff, 0x00, 0x13])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.code(),
        "40001",
        "unsigned junk is refused at the signature check"
    );
    // The server is still healthy afterwards.
    assert_eq!(get(&http, &sim, "/api/v2/public/time").await.status, 200);
}

#[test]
fn every_message_is_bitgets_published_text() {
    let published = fixture("doc-examples/error_codes_rest.json");
    let published = published.as_array().expect("error list is an array");
    assert_eq!(published.len(), 835);
    for (code, template) in TEMPLATES {
        let entry = published
            .iter()
            .find(|e| e["code"] == *code)
            .unwrap_or_else(|| panic!("{code} not in Bitget's list"));
        // Bitget lists 429 as "Too many requests"; the live body says "Too Many Requests".
        assert_eq!(entry["msg"].as_str().unwrap(), *template, "{code}");
    }
}

#[tokio::test]
async fn the_classifier_sorts_every_simulator_failure() {
    use bitget_poller::bitget::error::{Classifier, ErrorClass};
    use bitget_sim::faults::FaultConfig;

    let classifier = Classifier::default();
    let classify = |reply: &Reply| {
        classifier
            .check(
                "/e",
                Some("BTCUSDT"),
                reply.status,
                None,
                reply.body.as_bytes(),
            )
            .map_err(|e| e.class())
    };
    let (sim, _clock) = start(SimConfig {
        removed_symbols: vec!["ETHUSDT".into()],
        ..SimConfig::default()
    })
    .await;
    let http = client();
    assert_eq!(classify(&get(&http, &sim, CANDLES).await), Ok(()));
    let removed = "/api/v2/mix/market/ticker?symbol=ETHUSDT&productType=USDT-FUTURES";
    assert_eq!(
        classify(&get(&http, &sim, removed).await),
        Err(ErrorClass::BadSymbol)
    );
    let bad_granularity =
        "/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=7m";
    assert_eq!(
        classify(&get(&http, &sim, bad_granularity).await),
        Err(ErrorClass::Rejected)
    );
    for _ in 0..20 {
        get(&http, &sim, CANDLES).await;
    }
    assert_eq!(
        classify(&get(&http, &sim, CANDLES).await),
        Err(ErrorClass::RateLimited)
    );

    for faults in [
        FaultConfig {
            html: 1.0,
            ..Default::default()
        },
        FaultConfig {
            truncated: 1.0,
            ..Default::default()
        },
        FaultConfig {
            busy: 1.0,
            ..Default::default()
        },
    ] {
        let (sim, _clock) = start(SimConfig {
            faults,
            ..SimConfig::default()
        })
        .await;
        assert_eq!(
            classify(&get(&http, &sim, CANDLES).await),
            Err(ErrorClass::Transient)
        );
    }
    let config = SimConfig {
        rate_limit_code: "30001".into(),
        rate_limit_status: 400,
        ..SimConfig::default()
    };
    let (sim, _clock) = start(config).await;
    for _ in 0..20 {
        get(&http, &sim, CANDLES).await;
    }
    assert_eq!(
        classify(&get(&http, &sim, CANDLES).await),
        Err(ErrorClass::RateLimited),
        "30001 is in the default set"
    );
}
