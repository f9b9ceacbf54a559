//! Every reply's shape matches Bitget's recorded (or documented) reply for the same endpoint:
//! the same keys, and the same JSON type for each value (strings stay strings).

use bitget_poller::bitget::credential::Credentials;
use bitget_sim::SimConfig;
use serde_json::Value;

use super::helpers::*;

/// Checks that `actual` has every key of `expected`, recursively, with the same JSON type.
/// Doc examples sometimes write strings as numbers; `loose` accepts that one difference.
fn assert_same_shape(expected: &Value, actual: &Value, at: &str, loose: bool) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, e_value) in e {
                let a_value = a.get(key).unwrap_or_else(|| {
                    panic!(
                        "{at}: missing key '{key}' (have {:?})",
                        a.keys().collect::<Vec<_>>()
                    )
                });
                assert_same_shape(e_value, a_value, &format!("{at}.{key}"), loose);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(e0), Some(a0)) = (e.first(), a.first()) {
                if e0.is_array() || !e0.is_object() {
                    // Rows: same length, same element types.
                    if let (Some(er), Some(ar)) = (e0.as_array(), a0.as_array()) {
                        assert_eq!(er.len(), ar.len(), "{at}: row length");
                    }
                }
                for a_item in a {
                    assert_same_shape(e0, a_item, &format!("{at}[]"), loose);
                }
            }
        }
        (Value::Number(_), Value::String(_)) if loose => {}
        // A recorded null (e.g. the 2025 account's `isolatedMargin`) says the field may be null;
        // the simulator fills it in. Strict nulls (429 `data`) are asserted by value elsewhere.
        (Value::Null, _) => {}
        // Bitget's account leverage fields are numbers in one recording and strings in another.
        (Value::Number(_), Value::String(_))
            if at.ends_with("Lever") || at.ends_with("Leverage") => {}
        (e, a) => assert_eq!(kind(e), kind(a), "{at}: expected {e}, got {a}"),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn assert_success_envelope(reply: &Reply, what: &str) -> Value {
    assert_eq!(reply.status, 200, "{what}: {}", reply.body);
    let body = reply.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["code", "msg", "requestTime", "data"], "{what}");
    assert_eq!(body["code"], "00000");
    assert_eq!(body["msg"], "success");
    assert!(
        body["requestTime"].is_u64(),
        "requestTime is a number as live Bitget sends it"
    );
    body["data"].clone()
}

#[tokio::test]
async fn public_replies_match_the_fixtures() {
    let (sim, _clock) = start(SimConfig::default()).await;
    let http = client();
    let m = "/api/v2/mix/market";
    let q = "symbol=BTCUSDT&productType=USDT-FUTURES";
    // (request, fixture, whether the fixture is an envelope, loose number/string typing)
    let cases: Vec<(String, &str, bool, bool)> = vec![
        (
            "/api/v2/public/time".into(),
            "recorded/public_time.ccxt-comment.json",
            true,
            false,
        ),
        (
            format!("{m}/contracts?productType=USDT-FUTURES"),
            "recorded/mix_market_contracts.USDT-FUTURES.items.ccxt-static-markets.json",
            false,
            false,
        ),
        (
            format!("{m}/tickers?productType=USDT-FUTURES"),
            "recorded/mix_market_ticker.BTCUSDT.ccxt-comment.json",
            true,
            false,
        ),
        (
            format!("{m}/tickers?productType=USDT-FUTURES"),
            "doc-examples/mix_market_tickers.json",
            true,
            false,
        ),
        (
            format!("{m}/ticker?{q}"),
            "recorded/mix_market_ticker.BTCUSDT.ccxt-comment.json",
            true,
            false,
        ),
        (
            format!("{m}/candles?{q}&granularity=5m&limit=30"),
            "recorded/mix_market_candles.BTCUSDT_5m_30rows.ai-rates.json",
            true,
            false,
        ),
        (
            format!("{m}/candles?{q}&granularity=1m&limit=1"),
            "recorded/mix_market_candles.BTCUSDT_1m_limit1.ccxt.json",
            true,
            false,
        ),
        (
            format!("{m}/history-candles?{q}&granularity=1m"),
            "doc-examples/mix_market_history-candles.json",
            true,
            false,
        ),
        (
            format!("{m}/merge-depth?{q}"),
            "doc-examples/mix_market_merge-depth.json",
            true,
            true,
        ),
        (
            format!("{m}/current-fund-rate?{q}"),
            "recorded/mix_market_current-fund-rate.BTCUSDT.ccxt.json",
            true,
            false,
        ),
        (
            format!("{m}/current-fund-rate?productType=USDT-FUTURES"),
            "doc-examples/mix_market_current-fund-rate.json",
            true,
            false,
        ),
        (
            format!("{m}/open-interest?{q}"),
            "doc-examples/mix_market_open-interest.json",
            true,
            false,
        ),
        (
            format!("{m}/fills-history?{q}&limit=3"),
            "doc-examples/mix_market_fills-history.json",
            true,
            false,
        ),
        (
            "/api/v2/spot/public/symbols".into(),
            "recorded/spot_public_symbols.items.ccxt-static-markets.json",
            false,
            false,
        ),
        (
            "/api/v2/spot/market/tickers?symbol=BTCUSDT".into(),
            "recorded/spot_market_tickers.BTCUSDT.ccxt.json",
            true,
            false,
        ),
        (
            "/api/v2/spot/market/tickers".into(),
            "doc-examples/spot_market_tickers.json",
            true,
            false,
        ),
        (
            "/api/v2/spot/market/candles?symbol=BTCUSDT&granularity=1min&limit=1".into(),
            "recorded/spot_market_candles.BTCUSDT_1min_limit1.ccxt.json",
            true,
            false,
        ),
        (
            "/api/v2/spot/market/candles?symbol=BTCUSDT&granularity=1min".into(),
            "doc-examples/spot_market_candles.json",
            true,
            false,
        ),
    ];
    for (request, fixture_path, enveloped, loose) in cases {
        let data = assert_success_envelope(&get(&http, &sim, &request).await, &request);
        let expected = fixture(fixture_path);
        let expected = if enveloped {
            expected["data"].clone()
        } else {
            expected
        };
        assert_same_shape(
            &expected,
            &data,
            &format!("{request} vs {fixture_path}"),
            loose,
        );
    }
}

#[tokio::test]
async fn signed_replies_match_the_fixtures() {
    let creds = Credentials::new("shape", "shape-secret", "shape-pass");
    let (sim, _clock) = start(SimConfig {
        keys: vec![creds.clone()],
        ..SimConfig::default()
    })
    .await;
    let creds_key = Signer::new(&sim, &creds);
    let order = r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.01","side":"buy","orderType":"market","clientOid":"shape-1"}"#;
    let placed = creds_key.post("/api/v2/mix/order/place-order", order).await;
    let placed = assert_success_envelope(&placed, "place-order");
    assert_same_shape(
        &fixture("doc-examples/mix_order_place-order.json")["data"],
        &placed,
        "place-order",
        false,
    );
    let resting = r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.01","price":"1","side":"buy","orderType":"limit","clientOid":"abc321"}"#;
    creds_key
        .post("/api/v2/mix/order/place-order", resting)
        .await;
    let cancel = r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","clientOid":"abc321"}"#;
    let cancelled = creds_key
        .post("/api/v2/mix/order/cancel-order", cancel)
        .await;
    let cancelled = assert_success_envelope(&cancelled, "cancel-order");
    assert_same_shape(
        &fixture("recorded/mix_order_cancel-order.BTCUSDT_by_clientOid.ccxt.json")["data"],
        &cancelled,
        "cancel-order",
        false,
    );

    let cases = [
        (
            "/api/v2/mix/account/account",
            "symbol=BTCUSDT&productType=USDT-FUTURES&marginCoin=USDT",
            "recorded/mix_account_account.BTCUSDT_2024-11.ccxt.json",
        ),
        (
            "/api/v2/mix/account/account",
            "symbol=BTCUSDT&productType=USDT-FUTURES&marginCoin=USDT",
            "recorded/mix_account_account.BTCUSDT.ccxt.json",
        ),
        (
            "/api/v2/mix/position/all-position",
            "productType=USDT-FUTURES&marginCoin=USDT",
            "recorded/mix_position_all-position.USDT-FUTURES.ccxt.json",
        ),
        (
            "/api/v2/mix/order/detail",
            "symbol=BTCUSDT&productType=USDT-FUTURES&clientOid=shape-1",
            "recorded/mix_order_detail.LTCUSDT.ccxt.json",
        ),
    ];
    for (path, query, fixture_path) in cases {
        let reply = creds_key.get(path, query).await;
        let data = assert_success_envelope(&reply, path);
        assert_same_shape(
            &fixture(fixture_path)["data"],
            &data,
            &format!("{path} vs {fixture_path}"),
            false,
        );
    }
    // accounts is a list of the same account objects.
    let accounts = creds_key
        .get("/api/v2/mix/account/accounts", "productType=USDT-FUTURES")
        .await;
    let accounts = assert_success_envelope(&accounts, "accounts");
    let one = fixture("recorded/mix_account_account.BTCUSDT_2024-11.ccxt.json")["data"].clone();
    assert_same_shape(&Value::Array(vec![one]), &accounts, "accounts", false);
}

#[tokio::test]
async fn rate_limit_reply_matches_the_observed_429() {
    let (sim, _clock) = start(SimConfig::default()).await;
    let http = client();
    let mut last = None;
    for _ in 0..21 {
        last = Some(get(&http, &sim, CANDLES).await);
    }
    let reply = last.unwrap();
    assert_eq!(reply.status, 429);
    let observed = fixture("recorded/error.429_too_many_requests.observed.json");
    let body = reply.json();
    assert_same_shape(&observed, &body, "429", false);
    assert_eq!(body["code"], observed["code"]);
    assert_eq!(body["msg"], observed["msg"]);
    assert_eq!(body["data"], observed["data"]);
}
