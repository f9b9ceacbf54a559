//! Signed requests and live orders against the simulator: clock-skew resync, each auth error,
//! reconcile-before-retry, and rejections that leave the strategy running.

use std::path::Path;
use std::sync::Arc;

use bitget_poller::bitget::credential::Credentials;
use bitget_poller::bitget::endpoints::{MIX_ACCOUNTS, MIX_ALL_POSITIONS, SERVER_TIME};
use bitget_poller::bitget::error::ErrorClass;
use bitget_poller::bitget::http::CallError;
use bitget_poller::config::SymbolSelection;
use bitget_poller::core::clock::{Clock, SystemClock};
use bitget_poller::core::timeframe::{Market, Timeframe};
use bitget_poller::store::{Store, StoreConfig};
use bitget_poller::strategy::spec::{parse, Polled};
use bitget_poller::strategy::{StrategySpec, Target};
use bitget_poller::trading::{Engine, Execution, TradingSummary};
use bitget_sim::{SimConfig, Simulator, DEMO_API_KEY};

use super::helpers::*;

const ACCOUNTS: &str = "/api/v2/mix/account/accounts";
const PLACE: &str = "/api/v2/mix/order/place-order";
const DETAIL: &str = "/api/v2/mix/order/detail";

/// The simulator's clock, running `offset_ms` ahead of ours.
#[derive(Debug)]
struct Ahead {
    offset_ms: u64,
    inner: SystemClock,
}

impl Clock for Ahead {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms() + self.offset_ms
    }
}

/// A simulator whose clock runs 45 s ahead of ours, logging requests to `log`.
async fn simulator_45_s_ahead(log: &Path) -> Simulator {
    simulator_with_clock(
        SimConfig {
            request_log: Some(log.to_owned()),
            ..SimConfig::default()
        },
        Arc::new(Ahead {
            offset_ms: 45_000,
            inner: SystemClock::new(),
        }),
    )
    .await
}

#[tokio::test]
async fn one_server_clock_stamps_signed_requests_from_the_first_public_reply() {
    // Bitget's clock 45 s ahead: a public reply's requestTime sets the limiter's bounds,
    // and the signer stamps from those, so the first signed request is accepted at once.
    let dir = temp_dir("one-clock");
    let log = dir.join("requests.jsonl");
    let sim = simulator_45_s_ahead(&log).await;
    let client = signed_client(&sim, demo_credentials());
    let http = client.http();
    assert_eq!(http.server_clock().offset_ms(), None);
    http.get(&SERVER_TIME, &[], None).await.unwrap();
    let offset = http.server_clock().offset_ms().unwrap();
    assert!((44_000..=46_000).contains(&offset), "offset {offset}");
    let reply = http
        .signed_get(&MIX_ACCOUNTS, &[("productType", "USDT-FUTURES")], None)
        .await
        .expect("stamped with the server's clock");
    assert_eq!(reply.attempts, 1);
    sim.stop().await;
    let codes: Vec<String> = request_log(&log)
        .into_iter()
        .map(|(_, _, code, _)| code)
        .collect();
    assert_eq!(codes, vec!["00000", "00000"]);
}

#[tokio::test]
async fn a_clock_45_s_off_is_resynced_and_the_request_retried_once() {
    let dir = temp_dir("skew");
    let log = dir.join("requests.jsonl");
    let sim = simulator_45_s_ahead(&log).await;
    let client = signed_client(&sim, demo_credentials());
    let reply = client
        .http()
        .signed_get(&MIX_ACCOUNTS, &[("productType", "USDT-FUTURES")], None)
        .await
        .expect("accepted after the resync");
    assert_eq!(reply.attempts, 2);
    let offset = client.http().server_clock().offset_ms().unwrap();
    assert!((44_000..=46_000).contains(&offset), "offset {offset}");
    sim.stop().await;
    let requests: Vec<_> = request_log(&log)
        .into_iter()
        .map(|(path, status, code, _)| (path, status, code))
        .collect();
    assert_eq!(
        requests,
        vec![
            (ACCOUNTS.to_owned(), 400, "40008".to_owned()),
            ("/api/v2/public/time".to_owned(), 200, "00000".to_owned()),
            (ACCOUNTS.to_owned(), 200, "00000".to_owned()),
        ]
    );
}

#[tokio::test]
async fn each_wrong_credential_is_named_and_not_retried() {
    let sim = simulator(SimConfig::default()).await;
    let good = demo_credentials();
    let cases = [
        (
            Credentials::new("no-such-key", &good.secret, &good.passphrase),
            "40006",
            "BITGET_API_KEY is not a key bitget knows",
        ),
        (
            Credentials::new(&good.api_key, "wrong-secret", &good.passphrase),
            "40009",
            "BITGET_API_SECRET does not match",
        ),
        (
            Credentials::new(&good.api_key, &good.secret, "wrong-pass"),
            "40012",
            "BITGET_API_PASSPHRASE is wrong",
        ),
    ];
    for (n, (credentials, code, advice)) in cases.into_iter().enumerate() {
        let client = signed_client(&sim, credentials);
        let error = client
            .http()
            .signed_get(&MIX_ACCOUNTS, &[("productType", "USDT-FUTURES")], None)
            .await
            .unwrap_err();
        let CallError::Bitget(error) = error else {
            panic!("expected a bitget error, got {error:?}");
        };
        assert_eq!(error.class(), ErrorClass::Auth);
        assert_eq!(error.code(), Some(code));
        let message = error.to_string();
        assert!(message.contains(advice), "{message}");
        assert!(!message.contains("wrong-secret") && !message.contains("wrong-pass"));
        let requests = sim.stats().endpoints[ACCOUNTS].requests;
        assert_eq!(requests, n as u64 + 1, "an auth failure is not retried");
    }
    sim.stop().await;
}

fn spec(name: &str, position_usdt: &str) -> StrategySpec {
    let timeframes = vec![Timeframe::parse(Market::Futures, "1m").unwrap()];
    let text = format!(
        "kind = \"supertrend_pullback\"\nsymbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntimeframe = \"1m\"\nposition_usdt = \"{position_usdt}\"\n"
    );
    parse(
        &text,
        Path::new(&format!("strategies/{name}.toml")),
        Polled {
            market: Market::Futures,
            timeframes: &timeframes,
            symbols: &SymbolSelection::All,
        },
    )
    .unwrap()
    .unwrap()
}

/// Runs a live engine over `sim` with `specs`, submitting `intents` (instance, symbol,
/// target, price) at once, until every order is done.
async fn trade_live(
    sim: &Simulator,
    specs: Vec<StrategySpec>,
    intents: &[(&str, &str, Target, &str)],
) -> TradingSummary {
    let client = signed_client(sim, demo_credentials());
    let mut engine = Engine::new(
        specs,
        Market::Futures,
        Vec::new(),
        Execution::Live(client),
        Arc::new(SystemClock::new()),
    );
    for (instance, symbol, target, price) in intents {
        let i = engine.instance(instance).unwrap();
        engine.submit(i, intent(symbol, *target, price));
    }
    let store = Store::new(StoreConfig::default());
    let receiver = store.subscribe();
    store.close();
    engine.run(receiver).await.expect("no auth failure")
}

#[tokio::test]
async fn a_rate_limited_order_is_looked_up_before_it_is_sent_again() {
    let dir = temp_dir("reconcile-429");
    let log = dir.join("requests.jsonl");
    let mut config = SimConfig {
        request_log: Some(log.clone()),
        ..SimConfig::default()
    };
    // The first order is refused as rate-limited (as when another program on the same
    // account spent the budget) and not executed.
    config.faults.rate_limited_orders = 1;
    let sim = simulator(config).await;
    let summary = trade_live(
        &sim,
        vec![spec("st", "200")],
        &[
            ("st", "BTCUSDT", Target::Long, "60000"),
            ("st", "ETHUSDT", Target::Long, "3000"),
        ],
    )
    .await;
    assert_eq!(
        (
            summary.orders,
            summary.fills,
            summary.rejected,
            summary.unknown
        ),
        (2, 2, 0, 0)
    );
    let orders = sim.state().accounts.orders_of(DEMO_API_KEY);
    sim.stop().await;
    assert_eq!(orders.len(), 2, "exactly one order per intent: {orders:?}");
    assert_ne!(orders[0].0, orders[1].0);
    assert!(orders.iter().all(|(_, state)| state == "filled"));
    let trade: Vec<(String, u64)> = request_log(&log)
        .into_iter()
        .filter(|(path, ..)| path == PLACE || path == DETAIL)
        .map(|(path, status, ..)| (path, status))
        .collect();
    let rejected = trade
        .iter()
        .position(|(path, status)| path == PLACE && *status == 429)
        .expect("one order was rate limited");
    let resent = trade[rejected + 1..]
        .iter()
        .position(|(path, _)| path == PLACE)
        .map(|i| i + rejected + 1)
        .expect("the rate-limited order was sent again");
    assert!(
        trade[rejected + 1..resent]
            .iter()
            .any(|(path, status)| path == DETAIL && *status == 400),
        "a not-found lookup came between the 429 and the re-send: {trade:?}"
    );
    assert_eq!(
        trade
            .iter()
            .filter(|(p, s)| p == PLACE && *s == 200)
            .count(),
        2
    );
}

#[tokio::test]
async fn an_order_whose_reply_was_lost_is_found_and_not_sent_again() {
    let dir = temp_dir("reconcile-lost");
    let log = dir.join("requests.jsonl");
    let mut config = SimConfig {
        request_log: Some(log.clone()),
        ..SimConfig::default()
    };
    config.faults.lost_order_replies = 1;
    let sim = simulator(config).await;
    let summary = trade_live(
        &sim,
        vec![spec("st", "200")],
        &[("st", "BTCUSDT", Target::Long, "60000")],
    )
    .await;
    assert_eq!((summary.fills, summary.unknown), (1, 0));
    let orders = sim.state().accounts.orders_of(DEMO_API_KEY);
    sim.stop().await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    let requests = request_log(&log);
    let places: Vec<_> = requests.iter().filter(|(p, ..)| p == PLACE).collect();
    assert_eq!(places.len(), 1, "the order was sent once: {places:?}");
    assert_eq!(places[0].3.as_deref(), Some("lost_reply"));
    assert!(requests.iter().any(|(p, s, ..)| p == DETAIL && *s == 200));
}

#[tokio::test]
async fn a_refused_order_is_logged_and_the_other_instances_go_on() {
    let sim = simulator(SimConfig::default()).await;
    // 10 000 USDT at 10x cannot carry 5 000 000 USDT of BTC: Bitget answers 40762.
    let summary = trade_live(
        &sim,
        vec![spec("huge", "5000000"), spec("small", "200")],
        &[
            ("huge", "BTCUSDT", Target::Long, "60000"),
            ("small", "ETHUSDT", Target::Long, "3000"),
        ],
    )
    .await;
    assert_eq!((summary.orders, summary.fills, summary.rejected), (2, 1, 1));
    let orders = sim.state().accounts.orders_of(DEMO_API_KEY);
    sim.stop().await;
    assert_eq!(orders.len(), 1);
}

#[tokio::test]
async fn a_position_found_at_start_is_taken_over_not_opened_again() {
    let sim = simulator(SimConfig::default()).await;
    // A first run opened a BTC long and stopped.
    let first = trade_live(
        &sim,
        vec![spec("st", "200")],
        &[("st", "BTCUSDT", Target::Long, "60000")],
    )
    .await;
    assert_eq!(first.fills, 1);
    let client = signed_client(&sim, demo_credentials());
    let reply = client
        .http()
        .signed_get(&MIX_ALL_POSITIONS, &[("productType", "USDT-FUTURES")], None)
        .await
        .unwrap();
    let held = bitget_poller::bitget::parse::positions(&reply.body)
        .unwrap()
        .data;
    assert_eq!(held.len(), 1);
    // The restarted instance adopts it: the same long intent sends no order.
    let mut engine = Engine::new(
        vec![spec("st", "200")],
        Market::Futures,
        Vec::new(),
        Execution::Live(client),
        Arc::new(SystemClock::new()),
    );
    engine.adopt(&held);
    let i = engine.instance("st").unwrap();
    engine.submit(i, intent("BTCUSDT", Target::Long, "60000"));
    engine.submit(i, intent("BTCUSDT", Target::Flat, "60000"));
    let store = Store::new(StoreConfig::default());
    let receiver = store.subscribe();
    store.close();
    let second = engine.run(receiver).await.unwrap();
    assert_eq!(
        (second.orders, second.fills),
        (1, 1),
        "only the exit was sent"
    );
    let orders = sim.state().accounts.orders_of(DEMO_API_KEY);
    sim.stop().await;
    assert_eq!(orders.len(), 2, "the long was not opened twice: {orders:?}");
}
