//! The WebSocket feed against the simulator: every closed candle delivered exactly once, in
//! order, equal to the exchange's own REST candle — whether the socket repeats the finished
//! bar after its close or not, and through dropped sockets and a forced cut of all of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bitget_poller::app::{poll_session, Wiring};
use bitget_poller::core::clock::{Clock, ManualClock};
use bitget_poller::core::events::MarketEvent;
use bitget_poller::core::market::Candle;
use bitget_poller::store::{Store, StoreConfig};
use bitget_sim::ws::WsConfig;
use bitget_sim::{SimConfig, Simulator};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::helpers::config;
use crate::simulator::helpers::row_of;

/// 40.25 s into a minute.
const T0: u64 = 1_750_000_000_250;
const MINUTE: u64 = 60_000;

async fn sim(ws: WsConfig, clock: &ManualClock) -> Simulator {
    Simulator::start_with_clock(
        SimConfig {
            symbols: 3,
            ws: WsConfig {
                snapshot_rows: 30,
                push_interval: Duration::from_millis(20),
                ..ws
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap()
}

/// The simulator's own 1m candle of `symbol` opening at `open`, closed: what its REST
/// endpoints answer (read from its state, since a manual clock never lets a REST window
/// drain).
fn exchange_candle(sim: &Simulator, symbol: &str, open: u64) -> Vec<String> {
    let contract = sim.state().universe.get(symbol).expect("listed");
    let g = bitget_poller::core::timeframe::Timeframe::parse(
        bitget_poller::core::timeframe::Market::Futures,
        "1m",
    )
    .unwrap()
    .granularity();
    let k = contract.candle(g, open, open + MINUTE);
    [
        k.open,
        k.high,
        k.low,
        k.close,
        k.base_volume,
        k.quote_volume,
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// A session on `cfg` whose wall clock is `clock`, with a subscription taken before it
/// starts.
struct Launched {
    wiring: Arc<Wiring>,
    task: tokio::task::JoinHandle<bitget_poller::app::RunSummary>,
    stop: CancellationToken,
    rx: bitget_poller::store::Subscription,
}

fn launch(cfg: bitget_poller::config::Config, clock: &ManualClock) -> Launched {
    let store = Store::new(StoreConfig::default());
    let rx = store.subscribe();
    let stop = CancellationToken::new();
    let wall: Arc<dyn Clock> = Arc::new(clock.clone());
    let wiring = Arc::new(Wiring::new(&cfg, Arc::clone(&wall), store, stop.clone()).unwrap());
    let task = tokio::spawn({
        let (wiring, stop) = (Arc::clone(&wiring), stop.clone());
        async move {
            poll_session(&cfg, &wiring, wall, Instant::now(), stop, false)
                .await
                .unwrap()
        }
    });
    Launched {
        wiring,
        task,
        stop,
        rx,
    }
}

struct Session {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<bitget_poller::app::RunSummary>,
    wiring: Arc<Wiring>,
    rx: bitget_poller::store::Subscription,
    closed: BTreeMap<String, Vec<Candle>>,
}

impl Session {
    async fn start(base: &str, clock: &ManualClock, feed: &str) -> Self {
        let cfg = config(
            base,
            "symbols = \"all\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/feed.json\"",
            &format!("[feed]\n{}reconnect_min_secs = 0.1\nreconnect_max_secs = 0.5\nclose_grace_secs = 1\n{feed}", if feed.contains("source") { "" } else { "source = \"ws\"\n" }),
        );
        let Launched {
            wiring,
            task,
            stop,
            rx,
        } = launch(cfg, clock);
        Self {
            stop,
            task,
            wiring,
            rx,
            closed: BTreeMap::new(),
        }
    }

    /// Reads events until every symbol's newest closed candle opened at `open`.
    async fn until_closed(&mut self, open: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.closed.len() == 3
                && self
                    .closed
                    .values()
                    .all(|c| c.last().is_some_and(|c| c.open_time >= open))
            {
                return;
            }
            let event = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "closed candles through {open} within 20 s: {:?}",
                        self.closed
                            .iter()
                            .map(|(s, c)| (s.clone(), c.last().map(|c| c.open_time)))
                            .collect::<Vec<_>>()
                    )
                })
                .expect("store open");
            if let MarketEvent::CandleClosed(c) = event {
                self.closed.entry(c.symbol.to_string()).or_default().push(c);
            }
        }
    }

    async fn stop(self) -> (BTreeMap<String, Vec<Candle>>, Arc<Wiring>) {
        self.stop.cancel();
        self.task.await.unwrap();
        (self.closed, self.wiring)
    }
}

/// Every symbol's closed candles are consecutive minutes, each once, each equal to REST.
fn check_exact(sim: &Simulator, closed: &BTreeMap<String, Vec<Candle>>, from: u64, through: u64) {
    assert_eq!(closed.len(), 3);
    for (symbol, candles) in closed {
        let opens: Vec<u64> = candles.iter().map(|c| c.open_time).collect();
        let want: Vec<u64> = (from..=through).step_by(MINUTE as usize).collect();
        let tail: Vec<u64> = opens.iter().copied().filter(|o| *o >= from).collect();
        assert_eq!(tail, want, "{symbol}: every minute once, in order");
        for c in candles.iter().filter(|c| c.open_time >= from) {
            assert!(c.closed);
            assert_eq!(
                row_of(c),
                exchange_candle(sim, symbol, c.open_time),
                "{symbol} {}",
                c.open_time
            );
        }
    }
}

async fn closes_are_exact(final_bar: bool) -> Arc<Wiring> {
    let clock = ManualClock::new(T0);
    let sim = sim(
        WsConfig {
            final_bar,
            ..WsConfig::default()
        },
        &clock,
    )
    .await;
    let forming = T0 - T0 % MINUTE;
    let mut session = Session::start(&sim.base_url(), &clock, "").await;
    // The snapshot delivers the 29 closed bars before the forming one.
    session.until_closed(forming - MINUTE).await;
    for minute in 1..=3 {
        clock.advance_ms(MINUTE);
        session.until_closed(forming + (minute - 1) * MINUTE).await;
    }
    let (closed, wiring) = session.stop().await;
    check_exact(&sim, &closed, forming - 29 * MINUTE, forming + 2 * MINUTE);
    let stats = sim.stop().await;
    assert_eq!(stats.ws.errors.get("30006"), None);
    assert_eq!(stats.ws.errors.get("30007"), None);
    assert_eq!(stats.total.rate_limited, 0);
    wiring
}

#[tokio::test(flavor = "current_thread")]
async fn with_the_final_bar_on_the_socket_every_close_comes_over_it_without_rest() {
    let wiring = closes_are_exact(true).await;
    let feed = &wiring.feed;
    assert_eq!(
        feed.closed_rest.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        feed.rest_reads.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        feed.closed_ws.load(std::sync::atomic::Ordering::Relaxed),
        3 * 32
    );
}

#[tokio::test(flavor = "current_thread")]
async fn without_it_every_close_is_confirmed_by_rest_and_still_exact() {
    let wiring = closes_are_exact(false).await;
    let feed = &wiring.feed;
    // The snapshot's bars came over the socket; the three closes after it by REST.
    assert_eq!(
        feed.closed_ws.load(std::sync::atomic::Ordering::Relaxed),
        3 * 29
    );
    assert_eq!(
        feed.closed_rest.load(std::sync::atomic::Ordering::Relaxed),
        3 * 3
    );
}

#[tokio::test(flavor = "current_thread")]
async fn dropped_sockets_and_a_cut_of_all_of_them_lose_no_closed_candle() {
    let clock = ManualClock::new(T0);
    let sim = sim(
        WsConfig {
            final_bar: true,
            // Every socket lives 150 s of the simulator's clock: the jump below cuts them all.
            max_life: Some(Duration::from_secs(150)),
            drop_per_push: 0.2,
            seed: 7,
            ..WsConfig::default()
        },
        &clock,
    )
    .await;
    let forming = T0 - T0 % MINUTE;
    let mut session = Session::start(&sim.base_url(), &clock, "channels_per_socket = 1").await;
    session.until_closed(forming - MINUTE).await;
    for minute in 1..=3 {
        clock.advance_ms(MINUTE);
        session.until_closed(forming + (minute - 1) * MINUTE).await;
    }
    // 200 s at once: every socket is past its life, and four bars closed meanwhile.
    clock.advance_ms(200_000);
    session.until_closed(forming + 6 * MINUTE).await;
    let (closed, wiring) = session.stop().await;
    check_exact(&sim, &closed, forming - 29 * MINUTE, forming + 6 * MINUTE);
    let stats = sim.stop().await;
    assert!(
        stats.ws.dropped > 0,
        "the fault dropped sockets: {:?}",
        stats.ws
    );
    // The jump cut every socket that was up then (one may have been reconnecting).
    assert!(stats.ws.expired >= 1, "sockets were cut: {:?}", stats.ws);
    assert_eq!(stats.ws.errors.get("30006"), None);
    assert_eq!(stats.total.rate_limited, 0);
    assert!(
        wiring
            .feed
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_feed_shows_in_the_summary_and_metrics() {
    use super::telemetry::{sample_value, scrape, serve_metrics};

    let clock = ManualClock::new(T0);
    let sim = sim(WsConfig::default(), &clock).await;
    let cfg = config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntickers_interval_secs = 0",
        "[feed]\nsource = \"ws\"",
    );
    let store = Store::new(StoreConfig::default());
    let mut rx = store.subscribe();
    let stop = CancellationToken::new();
    let wall: Arc<dyn Clock> = Arc::new(clock.clone());
    let wiring = Wiring::new(&cfg, Arc::clone(&wall), store, stop.clone()).unwrap();
    let (addr, server_stop, serving) = serve_metrics(&wiring, &wall).await;
    let session = {
        let (stop, wall, cfg) = (stop.clone(), Arc::clone(&wall), cfg.clone());
        async move {
            poll_session(&cfg, &wiring, wall, Instant::now(), stop, false)
                .await
                .unwrap()
        }
    };
    let watcher = async {
        let mut closed = 0;
        while closed < 2 * 29 {
            if let Some(MarketEvent::CandleClosed(_)) = rx.recv().await {
                closed += 1;
            }
        }
        // The usage reporter writes its last lines, the feed's among them, at the stop.
        let metrics = scrape(addr).await;
        stop.cancel();
        metrics
    };
    let (summary, metrics) = tokio::join!(session, watcher);
    server_stop.cancel();
    serving.await.unwrap();
    sim.stop().await;
    assert_eq!(
        sample_value(&metrics, "bitget_poller_feed_channels"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample_value(&metrics, "bitget_poller_feed_sockets_up"),
        Some(1.0)
    );
    assert!(sample_value(&metrics, "bitget_poller_feed_closed_ws_total").unwrap() >= 58.0);
    assert_eq!(
        sample_value(
            &metrics,
            "bitget_poller_socket_budget_taken_total{budget=\"subscribes\"}"
        ),
        Some(1.0)
    );
    assert_eq!(summary.feed.channels, 2);
    assert!(summary.feed.closed_ws >= 58);
    assert!(summary.closed_delivered >= 58);
    assert_eq!(summary.gaps, 0);
    let rendered = summary.render();
    assert!(rendered.contains("websocket feed: 1 sockets"), "{rendered}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_socket_down_past_the_fallback_time_is_polled_by_rest_until_it_is_back() {
    use std::sync::atomic::Ordering::Relaxed;

    let clock = ManualClock::new(T0);
    let sim = sim(WsConfig::default(), &clock).await;
    let forming = T0 - T0 % MINUTE;
    let mut session = Session::start(
        &sim.base_url(),
        &clock,
        "source = \"auto\"\nrest_fallback_after_secs = 1",
    )
    .await;
    session.until_closed(forming - MINUTE).await;
    // An outage: every socket cut, and no new one accepted.
    sim.state().ws.set_refusing(true);
    sim.state().ws.cut_all();
    let feed = Arc::clone(&session.wiring.feed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while feed.fallback_reads.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "fallback reads began");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A close during the outage is delivered by REST, exactly.
    clock.advance_ms(MINUTE);
    session.until_closed(forming).await;
    // The socket is back: the next close comes over it.
    sim.state().ws.set_refusing(false);
    while feed.sockets_up.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the socket came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed_ws = feed.closed_ws.load(Relaxed);
    clock.advance_ms(MINUTE);
    session.until_closed(forming + MINUTE).await;
    let (closed, wiring) = session.stop().await;
    check_exact(&sim, &closed, forming - 29 * MINUTE, forming + MINUTE);
    let feed = wiring.feed.snapshot();
    assert!(feed.fallback_reads > 0);
    assert!(
        feed.closed_rest >= 3,
        "the outage's close by REST: {feed:?}"
    );
    assert!(
        feed.closed_ws > closed_ws,
        "the next over the socket: {feed:?}"
    );
    let stats = sim.stop().await;
    assert_eq!(stats.total.rate_limited, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_channel_refused_again_and_again_is_parked_and_the_others_run_on() {
    use std::sync::atomic::Ordering::Relaxed;

    let clock = ManualClock::new(T0);
    let sim = sim(WsConfig::default(), &clock).await;
    let cfg = config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\", \"NOPEUSDT\"]\ntickers_interval_secs = 0",
        "[feed]\nsource = \"ws\"",
    );
    let Launched {
        wiring,
        task,
        stop,
        mut rx,
    } = launch(cfg, &clock);
    // Refused three times (with a backoff between), then parked.
    let deadline = Instant::now() + Duration::from_secs(30);
    while wiring.feed.parked.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "parked within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let forming = T0 - T0 % MINUTE;
    clock.advance_ms(MINUTE);
    let mut btc = Vec::new();
    while !btc.contains(&forming) {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(MarketEvent::CandleClosed(c))) => {
                assert_eq!(c.symbol.as_str(), "BTCUSDT");
                btc.push(c.open_time);
            }
            Ok(Some(_)) => {}
            other => panic!("BTCUSDT's close: {other:?}"),
        }
    }
    stop.cancel();
    let summary = task.await.unwrap();
    let stats = sim.stop().await;
    assert_eq!(stats.ws.errors.get("30001"), Some(&3), "{:?}", stats.ws);
    assert_eq!(summary.feed.errors.get(&30001), Some(&3));
    assert_eq!(summary.feed.parked, 1);
    assert_eq!(summary.feed.reconnects, 0, "the socket stayed up");
    assert_eq!(stats.ws.connections, 1);
}

/// Spot has its own channels (`instType` `SPOT`) and no `/history-candles`: closes the
/// socket cannot prove are confirmed by spot `/candles`.
#[tokio::test(flavor = "current_thread")]
async fn spot_closes_are_exact_too() {
    let clock = ManualClock::new(T0);
    let sim = sim(
        WsConfig {
            final_bar: false,
            ..WsConfig::default()
        },
        &clock,
    )
    .await;
    let symbols: Vec<String> = sim
        .state()
        .universe
        .contracts()
        .iter()
        .map(|c| format!("\"{}\"", c.symbol))
        .collect();
    let text = format!(
        "[exchange]\nbase_url = \"{}\"\nmarket = \"spot\"\n[poll]\nsymbols = [{}]\ntimeframes = [\"1min\"]\ntickers_interval_secs = 0\n[feed]\nsource = \"ws\"\nclose_grace_secs = 1\n",
        sim.base_url(),
        symbols.join(", ")
    );
    let cfg =
        bitget_poller::config::Config::parse(&text, std::path::Path::new("spot.toml")).unwrap();
    let Launched {
        wiring,
        task,
        stop,
        mut rx,
    } = launch(cfg, &clock);
    let forming = T0 - T0 % MINUTE;
    let mut closed: BTreeMap<String, Vec<Candle>> = BTreeMap::new();
    let mut advanced = false;
    let give_up = Instant::now() + Duration::from_secs(30);
    while closed.len() < 3
        || closed
            .values()
            .any(|c| c.last().unwrap().open_time < forming)
    {
        if !advanced && closed.len() == 3 && closed.values().all(|c| c.len() == 29) {
            clock.advance_ms(MINUTE);
            advanced = true;
        }
        assert!(
            Instant::now() < give_up,
            "spot closes within 30 s: {:?}, feed {:?}",
            closed
                .iter()
                .map(|(s, c)| (s.clone(), c.len()))
                .collect::<Vec<_>>(),
            wiring.feed.snapshot()
        );
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Some(MarketEvent::CandleClosed(c))) => {
                assert_eq!(
                    c.timeframe.market(),
                    bitget_poller::core::timeframe::Market::Spot
                );
                closed.entry(c.symbol.to_string()).or_default().push(c);
            }
            Ok(Some(_)) => {}
            other => panic!("spot closes: {other:?} {closed:?}"),
        }
    }
    stop.cancel();
    let summary = task.await.unwrap();
    check_exact(&sim, &closed, forming - 29 * MINUTE, forming);
    assert_eq!(
        summary.feed.closed_rest, 3,
        "the close after the snapshot, by spot /candles"
    );
    let stats = sim.stop().await;
    assert_eq!(
        stats
            .endpoints
            .get("/api/v2/spot/market/candles")
            .map(|e| e.accepted),
        Some(3)
    );
}

/// Bitget's rate-limit codes on the socket: a throttled subscribe (30006, the socket stays
/// up) is retried after a backoff without counting against the channels, and a 30007
/// (Bitget closes the socket) is a reconnect. Both count as rate limits, and no closed
/// candle is lost.
#[tokio::test(flavor = "current_thread")]
async fn rate_limit_codes_back_off_and_lose_nothing() {
    use std::sync::atomic::Ordering::Relaxed;

    let clock = ManualClock::new(T0);
    let sim = sim(WsConfig::default(), &clock).await;
    // Nine throttles (three a channel) would park channels if they counted as refusals.
    sim.state().ws.refuse_subscribes(30006, 9);
    sim.state().ws.refuse_subscribes(30007, 1);
    let forming = T0 - T0 % MINUTE;
    let mut session = Session::start(&sim.base_url(), &clock, "").await;
    session.until_closed(forming - MINUTE).await;
    clock.advance_ms(MINUTE);
    session.until_closed(forming).await;
    let recent = session
        .wiring
        .recent
        .count(bitget_poller::limiter::Category::Market);
    let (closed, wiring) = session.stop().await;
    check_exact(&sim, &closed, forming - 29 * MINUTE, forming);
    let stats = sim.stop().await;
    assert_eq!(stats.ws.errors.get("30006"), Some(&9), "{:?}", stats.ws);
    assert_eq!(stats.ws.errors.get("30007"), Some(&1), "{:?}", stats.ws);
    let errors = wiring.feed.errors.lock().unwrap().clone();
    assert_eq!(errors.get(&30006), Some(&9));
    assert_eq!(errors.get(&30007), Some(&1));
    // The 30006 did not count against the channels: none parked.
    assert_eq!(wiring.feed.parked.load(Relaxed), 0);
    // One reconnect, for the 30007's close.
    assert_eq!(wiring.feed.reconnects.load(Relaxed), 1);
    assert_eq!(stats.ws.connections, 2);
    // Each code as a rate limit, and the 30007's close with its reconnect.
    assert_eq!(recent, 11, "recent rate limits");
}

/// Advances `clock` a minute at a time, once every symbol's previous 1m close is in, until
/// each of the 3 symbols has the 5m close of the bar forming at `T0`; returns the 5m
/// closes seen.
async fn until_the_five_minute_close(
    clock: &ManualClock,
    rx: &mut bitget_poller::store::Subscription,
) -> BTreeMap<String, Vec<Candle>> {
    let five = bitget_poller::core::timeframe::Timeframe::parse(
        bitget_poller::core::timeframe::Market::Futures,
        "5m",
    )
    .unwrap();
    // The 5m bar forming at the start closes 3 min 20 s later.
    let forming5 = five.open_of(T0);
    let mut closed5: BTreeMap<String, Vec<Candle>> = BTreeMap::new();
    let mut newest1: BTreeMap<String, u64> = BTreeMap::new();
    let done = |closed5: &BTreeMap<String, Vec<Candle>>| {
        closed5.len() == 3
            && closed5
                .values()
                .all(|c| c.iter().any(|c| c.open_time == forming5))
    };
    for minute in 0..=6 {
        let last_closed = clock.now_ms() - clock.now_ms() % MINUTE - MINUTE;
        let deadline = Instant::now() + Duration::from_secs(20);
        while newest1.len() < 3 || newest1.values().any(|&o| o < last_closed) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(MarketEvent::CandleClosed(c))) if c.timeframe == five => {
                    closed5.entry(c.symbol.to_string()).or_default().push(c);
                }
                Ok(Some(MarketEvent::CandleClosed(c))) => {
                    newest1.insert(c.symbol.to_string(), c.open_time);
                }
                Ok(Some(_)) => {}
                other => panic!("closes within 20 s after minute {minute}: {other:?} {newest1:?}"),
            }
        }
        // A 5m close comes right after its last minute's.
        let settle = Instant::now() + Duration::from_millis(300);
        while !done(&closed5) {
            match tokio::time::timeout_at(settle, rx.recv()).await {
                Ok(Some(MarketEvent::CandleClosed(c))) if c.timeframe == five => {
                    closed5.entry(c.symbol.to_string()).or_default().push(c);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        if done(&closed5) {
            return closed5;
        }
        clock.advance_ms(MINUTE);
    }
    panic!("the 5m bar closed within 6 minutes: {closed5:?}");
}

/// Without the final bar on the socket, a 5m close is built from its five 1m closes (each
/// confirmed by REST) instead of read by REST itself; every second one built is read by
/// REST as well and compared. Every 5m close equals the exchange's own.
#[tokio::test(flavor = "current_thread")]
async fn closes_made_of_shorter_ones_are_built_from_them_exactly() {
    use std::sync::atomic::Ordering::Relaxed;

    let clock = ManualClock::new(T0);
    let sim = sim(
        WsConfig {
            final_bar: false,
            ..WsConfig::default()
        },
        &clock,
    )
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntimeframes = [\"1m\", \"5m\"]\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/feed-built.json\"",
        "[feed]\nsource = \"ws\"\nreconnect_min_secs = 0.1\nreconnect_max_secs = 0.5\nclose_grace_secs = 1\nderive_check_every = 2",
    );
    let Launched {
        wiring,
        task,
        stop,
        mut rx,
    } = launch(cfg, &clock);
    let closed5 = until_the_five_minute_close(&clock, &mut rx).await;
    let five = bitget_poller::core::timeframe::Timeframe::parse(
        bitget_poller::core::timeframe::Market::Futures,
        "5m",
    )
    .unwrap();
    let forming5 = five.open_of(T0);
    stop.cancel();
    let summary = task.await.unwrap();
    let g5 = five.granularity();
    for (symbol, candles) in &closed5 {
        let built = candles
            .iter()
            .find(|c| c.open_time == forming5)
            .expect("the 5m close");
        let contract = sim.state().universe.get(symbol).unwrap();
        let k = contract.candle(g5, forming5, forming5 + 5 * MINUTE);
        // Equal as numbers: a sum may write a trailing zero the exchange does not.
        assert_eq!(
            [
                built.open,
                built.high,
                built.low,
                built.close,
                built.base_volume,
                built.quote_volume
            ],
            [
                k.open,
                k.high,
                k.low,
                k.close,
                k.base_volume,
                k.quote_volume
            ],
            "{symbol}"
        );
    }
    let feed = &wiring.feed;
    // Three 5m closes: the second built one was read by REST too, and agreed.
    assert_eq!(feed.built.load(Relaxed), 3);
    assert_eq!(feed.closed_built.load(Relaxed), 2);
    assert_eq!(feed.build_checks.load(Relaxed), 1);
    assert_eq!(feed.build_mismatches.load(Relaxed), 0);
    assert_eq!(summary.feed.closed_built, 2);
    let stats = sim.stop().await;
    assert_eq!(stats.total.rate_limited, 0);
}

/// `[poll] derive`: only the 1m channels are subscribed; the store builds the 5m candles
/// from the 1m ones, each equal to the exchange's own, and checks every one against it.
#[tokio::test(flavor = "current_thread")]
async fn derived_timeframes_are_built_from_the_shortest_and_checked() {
    use std::sync::atomic::Ordering::Relaxed;

    let clock = ManualClock::new(T0);
    let sim = sim(WsConfig::default(), &clock).await;
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntimeframes = [\"1m\", \"5m\"]\nderive = true\nderive_check_every = 1\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/feed-derive.json\"",
        "[feed]\nsource = \"ws\"\nreconnect_min_secs = 0.1\nreconnect_max_secs = 0.5\nclose_grace_secs = 1",
    );
    let Launched {
        wiring,
        task,
        stop,
        mut rx,
    } = launch(cfg, &clock);
    let built = until_the_five_minute_close(&clock, &mut rx).await;
    let five = bitget_poller::core::timeframe::Timeframe::parse(
        bitget_poller::core::timeframe::Market::Futures,
        "5m",
    )
    .unwrap();
    let forming5 = five.open_of(T0);
    // The checks read the exchange's candle for each built one.
    let deadline = Instant::now() + Duration::from_secs(20);
    while wiring.built.checked.load(Relaxed) < wiring.store.stats().closed_built.load(Relaxed) {
        assert!(Instant::now() < deadline, "checks within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let summary = task.await.unwrap();
    let g5 = five.granularity();
    for symbol in ["BTCUSDT", "ETHUSDT", "SOLUSDT"] {
        let candles = &built[symbol];
        // Built from the snapshot's history as well as live: each one the exchange's own.
        assert!(candles.len() >= 2, "{symbol}: {}", candles.len());
        let contract = sim.state().universe.get(symbol).unwrap();
        for c in candles {
            let k = contract.candle(g5, c.open_time, c.open_time + 5 * MINUTE);
            // Equal as numbers: a sum may write a trailing zero the exchange does not.
            assert_eq!(
                [
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.base_volume,
                    c.quote_volume
                ],
                [
                    k.open,
                    k.high,
                    k.low,
                    k.close,
                    k.base_volume,
                    k.quote_volume
                ],
                "{symbol} {}",
                c.open_time
            );
        }
        assert!(
            candles.iter().any(|c| c.open_time == forming5),
            "{symbol}: the live close"
        );
    }
    let (seen, checked, differed) = summary.built;
    assert!(seen >= 6, "{seen}");
    assert_eq!(checked, seen);
    assert_eq!(differed, 0);
    let stats = sim.stop().await;
    // Only the 1m channels were subscribed.
    assert_eq!(stats.ws.subscribed, 3, "{:?}", stats.ws);
    assert_eq!(stats.total.rate_limited, 0);
}
