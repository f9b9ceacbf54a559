use std::sync::Arc;
use std::time::Duration;

use bitget_poller::app::run_session;
use bitget_poller::core::clock::{Clock, ManualClock};
use bitget_poller::core::events::MarketEvent;
use bitget_poller::store::{Store, StoreConfig};
use bitget_sim::limits::LimitConfig;
use bitget_sim::{SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

use super::helpers::{closed_by_symbol, config, simulator, LogCapture};

/// 40.25 s into a minute.
const T0: u64 = 1_750_000_000_250;

#[tokio::test(flavor = "current_thread")]
async fn closed_mode_delivers_each_close_once_and_never_the_forming_candle() {
    let clock = Arc::new(ManualClock::new(T0));
    let sim = Simulator::start_with_clock(
        SimConfig {
            symbols: 10,
            limits: LimitConfig {
                overrides: vec![(
                    bitget_sim::endpoints::find("/api/v2/mix/market/candles").unwrap(),
                    1000,
                )],
                ..LimitConfig::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
    )
    .await
    .unwrap();
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\nmode = \"closed\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/closed.json\"",
        "",
    );
    let capture = LogCapture::default();
    let _guard = capture.install();
    let store = Store::new(StoreConfig::default());
    let mut rx = store.subscribe();
    let stop = CancellationToken::new();
    let session = tokio::spawn({
        let (cfg, stop, wall) = (cfg.clone(), stop.clone(), clock.clone() as Arc<dyn Clock>);
        async move { run_session(&cfg, wall, store, stop).await }
    });
    let mut events = Vec::new();
    // The first reads take turns: /candles gives 99 closed rows and the forming one (not
    // closed), /history-candles 100 closed rows.
    let first_window = 5 * 99 + 5 * 100;
    while closed_by_symbol(&events)
        .values()
        .map(Vec::len)
        .sum::<usize>()
        < first_window
    {
        events.push(rx.recv().await.unwrap());
    }
    // Nothing new until the minute closes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(rx.try_recv().is_none(), "no candle before the close");
    clock.advance_ms(20_000); // crosses the minute boundary at T0 + 19.75 s
    let boundary = T0 - T0 % 60_000 + 60_000;
    let mut round = Vec::new();
    while round.len() < 10 {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(MarketEvent::CandleClosed(c))) => round.push(c),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => panic!("round incomplete: {round:?}\n{}", capture.text()),
        }
    }
    stop.cancel();
    let summary = session.await.unwrap().unwrap();
    assert!(round
        .iter()
        .all(|c| c.open_time == boundary - 60_000 && c.closed));
    let mut symbols: Vec<_> = round.iter().map(|c| c.symbol.to_string()).collect();
    symbols.sort();
    symbols.dedup();
    assert_eq!(symbols.len(), 10, "each symbol exactly once");
    assert!(
        rx.try_recv().is_none(),
        "the new forming candle was not reported"
    );
    assert_eq!(summary.close_rounds, 1);
    assert_eq!(summary.superseded, 0);
    // Incremental: the round asked for 2 rows per symbol, not 100.
    let stats = sim.stop().await;
    // The first reads and the round took turns between the two candle endpoints: 10 on
    // each, 20 in all.
    assert_eq!(stats.endpoints["/api/v2/mix/market/candles"].requests, 10);
    assert_eq!(
        stats.endpoints["/api/v2/mix/market/history-candles"].requests,
        10
    );
    assert!(capture.text().contains("closed candles delivered"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_consumer_loses_no_closed_candle_and_forming_updates_are_dropped_and_counted() {
    let sim = simulator(SimConfig {
        symbols: 3,
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntickers_interval_secs = 0.5\nchannel_capacity = 8\ndiscovery_cache = \"target/test-cache/slow.json\"",
        "",
    );
    let store = Store::new(cfg.store);
    let mut rx = store.subscribe();
    let stop = CancellationToken::new();
    let session = tokio::spawn({
        let (cfg, stop) = (cfg.clone(), stop.clone());
        async move {
            run_session(
                &cfg,
                Arc::new(bitget_poller::core::clock::SystemClock::new()),
                store,
                stop,
            )
            .await
        }
    });
    // The consumer reads nothing for a second, then drains everything.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut events = Vec::new();
    while closed_by_symbol(&events)
        .values()
        .map(Vec::len)
        .sum::<usize>()
        < 3 * 99
    {
        events.push(rx.recv().await.unwrap());
    }
    // Then it keeps reading at 10 events/s, slower than forming updates arrive.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        events.push(rx.recv().await.unwrap());
    }
    stop.cancel();
    while let Some(event) = rx.recv().await {
        events.push(event);
    }
    let summary = session.await.unwrap().unwrap();
    sim.stop().await;
    for (symbol, opens) in closed_by_symbol(&events) {
        assert!(
            opens.windows(2).all(|w| w[1] == w[0] + 60_000),
            "{symbol}: closed candles in order, no gap, no repeat"
        );
        assert!(opens.len() >= 99);
    }
    assert!(
        summary.superseded > 0,
        "forming updates were superseded while the consumer slept, and counted"
    );
    assert_eq!(
        summary.closed_missed, 0,
        "the consumer caught up from the store; the poller never waited for it"
    );
}
