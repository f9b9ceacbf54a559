//! Market data semantics: universe, candle alignment and order, the forming candle, paging.

use bitget_poller::core::timeframe::{Granularity, Market};
use bitget_sim::SimConfig;
use serde_json::Value;

use super::helpers::*;

fn rows(reply: &Reply) -> Vec<Vec<String>> {
    let body = reply.json();
    assert_eq!(body["code"], "00000", "{}", reply.body);
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().expect("string field").to_owned())
                .collect()
        })
        .collect()
}

fn open_times(rows: &[Vec<String>]) -> Vec<u64> {
    rows.iter().map(|r| r[0].parse().unwrap()).collect()
}

#[tokio::test]
async fn universe_has_n_contracts_starting_with_btc_and_eth() {
    let (sim, _clock) = start(SimConfig {
        symbols: 120,
        ..SimConfig::default()
    })
    .await;
    let http = client();
    let contracts = get(
        &http,
        &sim,
        "/api/v2/mix/market/contracts?productType=USDT-FUTURES",
    )
    .await
    .json();
    let list = contracts["data"].as_array().unwrap();
    assert_eq!(list.len(), 120);
    assert_eq!(list[0]["symbol"], "BTCUSDT");
    assert_eq!(list[1]["symbol"], "ETHUSDT");
    assert!(list
        .iter()
        .all(|c| c["symbolStatus"] == "normal" && c["quoteCoin"] == "USDT"));
    let tickers = get(
        &http,
        &sim,
        "/api/v2/mix/market/tickers?productType=usdt-futures",
    )
    .await
    .json();
    assert_eq!(
        tickers["data"].as_array().unwrap().len(),
        120,
        "one request returns every ticker"
    );
    let coin = get(
        &http,
        &sim,
        "/api/v2/mix/market/contracts?productType=COIN-FUTURES",
    )
    .await
    .json();
    assert_eq!(coin["data"], Value::Array(vec![]));
}

#[tokio::test]
async fn candles_are_aligned_oldest_first_and_the_last_is_forming() {
    let (sim, clock) = start(SimConfig::default()).await;
    let http = client();
    for (granularity, step) in [
        ("1m", 60_000u64),
        ("5m", 300_000),
        ("1H", 3_600_000),
        ("4H", 14_400_000),
    ] {
        let reply = get(&http, &sim, &format!("/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity={granularity}&limit=50")).await;
        let rows = rows(&reply);
        assert_eq!(rows.len(), 50);
        assert!(
            rows.iter().all(|r| r.len() == 7),
            "futures rows have 7 fields"
        );
        let opens = open_times(&rows);
        assert!(
            opens.windows(2).all(|w| w[1] - w[0] == step),
            "{granularity}: consecutive and oldest first"
        );
        assert!(
            opens.iter().all(|t| t % step == 0),
            "{granularity}: aligned"
        );
        assert_eq!(
            *opens.last().unwrap(),
            T0 - T0 % step,
            "{granularity}: last row is the forming candle"
        );
    }
    // The forming candle changes as time passes; closed ones do not.
    let path =
        "/api/v2/mix/market/candles?symbol=ETHUSDT&productType=USDT-FUTURES&granularity=1m&limit=3";
    let before = rows(&get(&http, &sim, path).await);
    // T0 is 40.25 s into its minute; 10 s later the same candle is still forming.
    clock.advance_ms(10_000);
    let after = rows(&get(&http, &sim, path).await);
    assert_eq!(before[..2], after[..2]);
    assert_ne!(before[2], after[2]);
}

#[tokio::test]
async fn history_candles_never_include_the_forming_candle() {
    let (sim, _clock) = start(SimConfig::default()).await;
    let reply = get(&client(), &sim, "/api/v2/mix/market/history-candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=200").await;
    let opens = open_times(&rows(&reply));
    assert_eq!(opens.len(), 200);
    assert_eq!(*opens.last().unwrap(), T0 - T0 % 60_000 - 60_000);
}

#[tokio::test]
async fn start_and_end_times_select_a_range_and_end_excludes_its_own_open() {
    let (sim, _clock) = start(SimConfig::default()).await;
    let http = client();
    let minute = T0 - T0 % 60_000;
    let since = minute - 3 * 60_000;
    let reply = get(&http, &sim, &format!("/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&startTime={since}")).await;
    assert_eq!(
        open_times(&rows(&reply)),
        vec![since, since + 60_000, since + 120_000, minute],
        "only what is new since `since`"
    );
    let end = minute - 60_000;
    let reply = get(&http, &sim, &format!("/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&endTime={end}&limit=2")).await;
    assert_eq!(open_times(&rows(&reply)), vec![end - 120_000, end - 60_000]);
}

#[tokio::test]
async fn spot_candles_have_8_fields_and_spot_spellings() {
    let (sim, _clock) = start(SimConfig::default()).await;
    let http = client();
    for (granularity, market_spelling) in [
        ("1min", "1m"),
        ("1h", "1H"),
        ("1day", "1D"),
        ("1week", "1W"),
    ] {
        let reply = get(
            &http,
            &sim,
            &format!(
                "/api/v2/spot/market/candles?symbol=BTCUSDT&granularity={granularity}&limit=4"
            ),
        )
        .await;
        let rows = rows(&reply);
        assert_eq!(rows.len(), 4, "{granularity}");
        assert!(rows.iter().all(|r| r.len() == 8));
        // Spot and futures share the alignment of the same period.
        let g = Granularity::parse(Market::Futures, market_spelling).unwrap();
        assert_eq!(
            *open_times(&rows).last().unwrap(),
            g.open_of(T0),
            "{granularity}"
        );
    }
}

#[tokio::test]
async fn prices_are_decimal_strings_consistent_within_a_candle() {
    let (sim, _clock) = start(SimConfig::default()).await;
    let reply = get(&client(), &sim, "/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=15m&limit=100").await;
    let mut previous_close: Option<rust_decimal::Decimal> = None;
    for row in rows(&reply) {
        let [o, h, l, c]: [rust_decimal::Decimal; 4] =
            std::array::from_fn(|i| row[i + 1].parse().unwrap());
        assert!(
            h >= o.max(c) && l <= o.min(c) && l > rust_decimal::Decimal::ZERO,
            "{row:?}"
        );
        if let Some(prev) = previous_close {
            assert_eq!(prev, o, "each candle opens at the previous close");
        }
        previous_close = Some(c);
    }
}

#[tokio::test]
async fn the_endpoints_freqtrade_and_ccxt_call_are_served_in_bitgets_shapes() {
    let (sim, _clock) = start(SimConfig::default()).await;
    let http = client();
    let data = |reply: &Reply| -> Value {
        assert_eq!(reply.status, 200, "{}", reply.body);
        serde_json::from_str::<Value>(&reply.body).unwrap()["data"].clone()
    };
    let book = data(
        &get(
            &http,
            &sim,
            "/api/v2/spot/market/orderbook?symbol=BTCUSDT&limit=3",
        )
        .await,
    );
    assert_eq!(book["asks"].as_array().unwrap().len(), 3);
    let (bid, ask): (f64, f64) = (
        book["bids"][0][0].as_str().unwrap().parse().unwrap(),
        book["asks"][0][0].as_str().unwrap().parse().unwrap(),
    );
    assert!(bid < ask);
    let funding = data(&get(&http, &sim, "/api/v2/mix/market/history-fund-rate?symbol=BTCUSDT&productType=USDT-FUTURES&pageSize=3").await);
    let times: Vec<u64> = funding
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fundingTime"].as_str().unwrap().parse().unwrap())
        .collect();
    let period = 8 * 3_600_000;
    assert_eq!(
        times,
        vec![
            T0 - T0 % period,
            T0 - T0 % period - period,
            T0 - T0 % period - 2 * period
        ]
    );
    let tiers = data(
        &get(
            &http,
            &sim,
            "/api/v2/mix/market/query-position-lever?symbol=BTCUSDT&productType=USDT-FUTURES",
        )
        .await,
    );
    assert_eq!(tiers[0]["level"], "1");
    assert_eq!(tiers[0]["startUnit"], "0");
    let mark = data(&get(&http, &sim, "/api/v2/mix/market/history-mark-candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=5").await);
    let last: u64 = mark[4][0].as_str().unwrap().parse().unwrap();
    assert_eq!(
        last,
        T0 - T0 % 60_000 - 60_000,
        "history: closed candles only"
    );
    let unknown = get(&http, &sim, "/api/v2/mix/market/not-served").await;
    assert_eq!(unknown.status, 400);
    let stats = sim.stop().await;
    assert_eq!(stats.endpoints["<unknown>"].requests, 1);
    assert_eq!(stats.endpoints["/api/v2/spot/market/orderbook"].requests, 1);
}
