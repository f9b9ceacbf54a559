use std::time::Duration;

use bitget_sim::faults::FaultConfig;
use bitget_sim::SimConfig;

use super::helpers::{closed_by_symbol, config, run_for, simulator};

#[tokio::test(flavor = "current_thread")]
async fn html_truncated_reset_slow_and_busy_replies_never_stop_polling() {
    let sim = simulator(SimConfig {
        symbols: 12,
        faults: FaultConfig {
            html: 0.05,
            truncated: 0.05,
            slow: 0.05,
            slow_ms: 300,
            reset: 0.05,
            busy: 0.05,
            seed: 7,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/faults.json\"",
        "[retry]\nbase_ms = 50\n",
    );
    let run = run_for(&cfg, Duration::from_secs(5)).await;
    let stats = sim.stop().await;
    assert!(stats.total.faults >= 5, "faults were injected: {stats:?}");
    assert_eq!(stats.total.rate_limited, 0);
    // Every symbol still got its candles.
    let closed = closed_by_symbol(&run.events);
    assert_eq!(closed.len(), 12, "{:?}", closed.keys());
    // Failures are logged with the endpoint and retried.
    let retried = run
        .log
        .lines()
        .filter(|l| l.contains("retrying with backoff") && l.contains("/api/v2/mix/market/candles"))
        .count();
    assert!(retried >= 1, "{}", run.log);
    assert!(run
        .log
        .lines()
        .any(|l| l.contains("retrying with backoff") && l.contains("symbol=")));
    for line in run
        .log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("candles"))
    {
        assert!(
            line.contains("symbol="),
            "warning without its symbol: {line}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_removed_symbol_is_parked_reported_once_and_not_retried_every_iteration() {
    let sim = simulator(SimConfig {
        symbols: 5,
        removed_symbols: vec!["XRPUSDT".into()],
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\", \"ETHUSDT\", \"XRPUSDT\"]\ntickers_interval_secs = 0",
        "",
    );
    let run = run_for(&cfg, Duration::from_secs(3)).await;
    let stats = sim.stop().await;
    let candles = &stats.endpoints["/api/v2/mix/market/candles"];
    assert_eq!(
        candles.errors, 1,
        "the removed symbol was asked once: {candles:?}"
    );
    assert!(candles.accepted >= 20, "the others kept going: {candles:?}");
    assert_eq!(run.summary.parked, 1);
    let reports = run
        .log
        .lines()
        .filter(|l| l.contains("XRPUSDT") && l.contains("parked"))
        .count();
    assert_eq!(reports, 1, "{}", run.log);
    let closed = closed_by_symbol(&run.events);
    assert_eq!(closed.keys().collect::<Vec<_>>(), ["BTCUSDT", "ETHUSDT"]);
}

#[tokio::test(flavor = "current_thread")]
async fn an_occasional_unknown_symbol_error_is_retried_not_parked() {
    let sim = simulator(SimConfig {
        symbols: 5,
        faults: FaultConfig {
            symbol: 0.05,
            seed: 3,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntickers_interval_secs = 0",
        "",
    );
    let run = run_for(&cfg, Duration::from_secs(4)).await;
    let stats = sim.stop().await;
    let errors = stats.faults.get("symbol").copied().unwrap_or(0);
    assert!(errors >= 1, "40034 was injected: {stats:?}");
    assert_eq!(run.summary.parked, 0, "{}", run.log);
    let retried = run
        .log
        .lines()
        .filter(|l| l.contains("trying again on the next pass") && l.contains("code=40034"))
        .count();
    assert_eq!(retried as u64, errors, "{}", run.log);
    assert_eq!(closed_by_symbol(&run.events).len(), 2);
}
