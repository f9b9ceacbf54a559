use std::time::Duration;

use bitget_poller::limiter::Category;
use bitget_sim::limits::LimitConfig;
use bitget_sim::network::NetworkConfig;
use bitget_sim::SimConfig;

use super::helpers::{closed_by_symbol, config, run_for, simulator};

const CANDLES: &str = "/api/v2/mix/market/candles";

#[tokio::test(flavor = "current_thread")]
async fn live_mode_saturates_strict_windows_without_a_single_429() {
    let sim = simulator(SimConfig {
        symbols: 30,
        ..SimConfig::default()
    })
    .await;
    let cfg = config(&sim.base_url(), "symbols = \"all\"\ntickers_interval_secs = 1\ndiscovery_cache = \"target/test-cache/live.json\"", "");
    let run = run_for(&cfg, Duration::from_secs(4)).await;
    let stats = sim.stop().await;
    let candles = &stats.endpoints[CANDLES];
    assert_eq!(stats.total.rate_limited, 0, "{stats:?}");
    assert_eq!(
        candles.max_accepted_in_1s, 20,
        "the budget is reached, never exceeded"
    );
    assert_eq!(run.summary.symbols, 30);
    // Every symbol's first window arrived: 99 closed candles (the 100th is forming).
    let closed = closed_by_symbol(&run.events);
    assert_eq!(closed.len(), 30);
    assert!(closed.values().all(|opens| opens.len() >= 99));
    // After the first window, requests ask only for what is new.
    assert!(run.log.contains("polling started"));
    assert!(run.summary.tickers_delivered >= 2);
    let market = run.summary.counters(Category::Market);
    assert_eq!(
        market.admitted, stats.total.requests,
        "every request went through the limiter"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_limit_drop_costs_at_most_three_rejections_and_the_pace_follows_the_server() {
    // 20/s, then 5/s from 2 s, then 20/s again from 5 s.
    let sim = simulator(SimConfig {
        symbols: 40,
        limits: LimitConfig {
            schedule: LimitConfig::parse_schedule("20,2:5,5:20").unwrap(),
            ..LimitConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/drop.json\"",
        "",
    );
    let run = run_for(&cfg, Duration::from_secs(8)).await;
    let stats = sim.stop().await;
    let rejected = stats.total.rate_limited;
    assert!((1..=3).contains(&rejected), "429s on the drop: {rejected}");
    assert!(run.log.contains("event=rate_limited"), "{}", run.log);
    assert!(run.log.contains("limit_follow"), "{}", run.log);
    let market = run.summary.counters(Category::Market);
    assert_eq!(
        market.effective_limit, 20,
        "back to the full limit after the recovery"
    );
    assert_eq!(market.rate_limited, rejected);
}

#[tokio::test(flavor = "current_thread")]
async fn a_30001_rate_limit_code_is_handled_like_429() {
    let sim = simulator(SimConfig {
        symbols: 10,
        rate_limit_status: 400,
        rate_limit_code: "30001".into(),
        // 20/s, then 4/s from 1 s: the drop is only learnt from the rejection.
        limits: LimitConfig {
            schedule: LimitConfig::parse_schedule("20,1:4").unwrap(),
            ..LimitConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let cfg = config(&sim.base_url(), "symbols = \"all\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/30001.json\"", "");
    let run = run_for(&cfg, Duration::from_secs(3)).await;
    let stats = sim.stop().await;
    assert!((1..=3).contains(&stats.total.rate_limited), "{stats:?}");
    let market = run.summary.counters(Category::Market);
    assert_eq!(market.rate_limited, stats.total.rate_limited);
    assert_eq!(market.effective_limit, 4);
}

#[tokio::test(flavor = "current_thread")]
async fn arrival_jitter_and_server_pauses_draw_no_429_and_the_server_view_is_logged() {
    // Requests arrive 0–30 ms late and the server pauses 100–150 ms every 1.5 s: counted on
    // our send times, this drew 429s (request k and k − 20 land in one server second).
    let sim = simulator(SimConfig {
        symbols: 40,
        network: NetworkConfig {
            jitter_ms: 30,
            stall_ms: (100, 150),
            stall_every_ms: 1_500,
            seed: 9,
            ..NetworkConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let cfg = config(
        &sim.base_url(),
        "symbols = \"all\"\ntickers_interval_secs = 0\ndiscovery_cache = \"target/test-cache/jitter.json\"",
        "",
    );
    let run = run_for(&cfg, Duration::from_secs(5)).await;
    let stats = sim.stop().await;
    assert_eq!(stats.total.rate_limited, 0, "{stats:?}");
    assert_eq!(stats.endpoints[CANDLES].max_accepted_in_1s, 20);
    let market = run.summary.counters(Category::Market);
    assert_eq!(market.rate_limited, 0);
    // The offset to the simulator's clock (the same machine) is bounded around zero, and
    // the margin is about a round trip with its jitter, not a fixed 2 %.
    let (lower, upper) = market.clock_offset_us.expect("replies bounded the offset");
    assert!(lower <= 2_000 && upper >= -2_000, "{lower}..{upper}");
    let margin = market.clock_margin_us.expect("a margin in force");
    assert!(margin < 30_000, "margin {margin} µs");
    assert_eq!(market.foreign_milli, 0, "alone on the ip");
    let usage = run
        .log
        .lines()
        .find(|l| l.contains("event=usage") && l.contains("category=market"))
        .expect("a market usage line");
    for field in [
        "foreign_pct=0.0",
        "margin_ms=",
        "offset_ms=",
        "effective_limit=20",
    ] {
        assert!(usage.contains(field), "{field} missing in {usage}");
    }
}
