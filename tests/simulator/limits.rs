//! Rate limits: exact window edges, the overall cap, scopes, penalty, schedule, reply codes.

use std::net::{IpAddr, Ipv4Addr};

use bitget_poller::bitget::credential::Credentials;
use bitget_sim::limits::LimitConfig;
use bitget_sim::SimConfig;

use super::helpers::*;

/// A simulator with `limits` and everything else default.
async fn start_with_limits(
    limits: LimitConfig,
) -> (
    bitget_sim::Simulator,
    bitget_poller::core::clock::ManualClock,
) {
    start(SimConfig {
        limits,
        ..SimConfig::default()
    })
    .await
}

#[tokio::test]
async fn the_21st_request_in_a_second_is_rejected_and_the_next_second_accepted() {
    let (sim, clock) = start(SimConfig::default()).await;
    let http = client();
    for n in 0..20u32 {
        let reply = get(&http, &sim, CANDLES).await;
        assert_eq!(reply.status, 200, "request {n}");
        // The header counts down the calls left this second: 19, 18, ... 0.
        assert_eq!(reply.remain, Some(19 - n));
    }
    clock.advance_ms(999);
    let rejected = get(&http, &sim, CANDLES).await;
    assert_eq!(rejected.status, 429);
    assert_eq!(rejected.remain, Some(0));
    let body = rejected.json();
    assert_eq!(body["code"], "429");
    assert_eq!(body["msg"], "Too Many Requests");
    assert!(body["requestTime"].is_u64());
    assert!(body["data"].is_null());
    // Another endpoint has its own budget.
    assert_eq!(get(&http, &sim, "/api/v2/public/time").await.status, 200);
    clock.advance_ms(1);
    let reopened = get(&http, &sim, CANDLES).await;
    assert_eq!(reopened.status, 200);
    assert_eq!(reopened.remain, Some(19));

    let stats = sim.stop().await;
    let candles = &stats.endpoints["/api/v2/mix/market/candles"];
    assert_eq!(
        (candles.requests, candles.accepted, candles.rate_limited),
        (22, 21, 1)
    );
    assert_eq!(candles.max_accepted_in_1s, 20);
}

#[tokio::test]
async fn the_overall_cap_counts_every_endpoint_per_minute() {
    let (sim, clock) = start_with_limits(LimitConfig {
        overall_per_min: 30,
        ..LimitConfig::default()
    })
    .await;
    let http = client();
    for _ in 0..20 {
        assert_eq!(get(&http, &sim, CANDLES).await.status, 200);
    }
    clock.advance_ms(1_000);
    for _ in 0..10 {
        assert_eq!(get(&http, &sim, "/api/v2/public/time").await.status, 200);
    }
    // The time endpoint's own window has room (10 of 20), but the minute is spent.
    assert_eq!(get(&http, &sim, "/api/v2/public/time").await.status, 429);
    clock.advance_ms(58_999);
    assert_eq!(
        get(
            &http,
            &sim,
            "/api/v2/mix/market/tickers?productType=USDT-FUTURES"
        )
        .await
        .status,
        429
    );
    // One minute after the first 20 requests, they leave the window.
    clock.advance_ms(1);
    assert_eq!(
        get(
            &http,
            &sim,
            "/api/v2/mix/market/tickers?productType=USDT-FUTURES"
        )
        .await
        .status,
        200
    );
    let stats = sim.stop().await;
    assert_eq!(stats.total.accepted, 31);
    assert_eq!(stats.total.rate_limited, 2);
}

#[tokio::test]
async fn market_limits_are_per_ip() {
    let (sim, _clock) = start(SimConfig::default()).await;
    let first = client();
    let second = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    for _ in 0..20 {
        assert_eq!(get(&first, &sim, CANDLES).await.status, 200);
    }
    assert_eq!(get(&first, &sim, CANDLES).await.status, 429);
    // Another IP has a full budget of its own.
    let reply = get(&second, &sim, CANDLES).await;
    assert_eq!((reply.status, reply.remain), (200, Some(19)));
}

#[tokio::test]
async fn account_limits_are_per_key_and_all_position_is_5_per_second() {
    let alice = Credentials::new("alice", "alice-secret", "alice-pass");
    let bob = Credentials::new("bob", "bob-secret", "bob-pass");
    let (sim, _clock) = start(SimConfig {
        keys: vec![alice.clone(), bob.clone()],
        ..SimConfig::default()
    })
    .await;
    let alice_key = Signer::new(&sim, &alice);
    let bob_key = Signer::new(&sim, &bob);
    let path = "/api/v2/mix/position/all-position";
    let query = "productType=USDT-FUTURES";
    for n in 0..5u32 {
        let reply = alice_key.get(path, query).await;
        assert_eq!(
            (reply.status, reply.remain),
            (200, Some(4 - n)),
            "{}",
            reply.body
        );
    }
    assert_eq!(alice_key.get(path, query).await.status, 429);
    assert_eq!(bob_key.get(path, query).await.status, 200);
    // accounts has its own 10/s budget for alice.
    let accounts = alice_key.get("/api/v2/mix/account/accounts", query).await;
    assert_eq!((accounts.status, accounts.remain), (200, Some(9)));
}

#[tokio::test]
async fn a_violation_blocks_the_ip_for_the_penalty() {
    let (sim, clock) = start_with_limits(LimitConfig {
        penalty_ms: 300_000,
        ..LimitConfig::default()
    })
    .await;
    let http = client();
    for _ in 0..20 {
        get(&http, &sim, CANDLES).await;
    }
    assert_eq!(get(&http, &sim, CANDLES).await.status, 429);
    clock.advance_ms(299_999);
    // Even a different, idle endpoint is refused while the penalty lasts.
    assert_eq!(get(&http, &sim, "/api/v2/public/time").await.status, 429);
    clock.advance_ms(1);
    assert_eq!(get(&http, &sim, "/api/v2/public/time").await.status, 200);
    let stats = sim.stop().await;
    assert_eq!(stats.total.rate_limited, 2);
}

#[tokio::test]
async fn the_schedule_changes_the_market_limit_over_time() {
    let schedule = LimitConfig::parse_schedule("20,30:5,60:20").unwrap();
    let (sim, clock) = start_with_limits(LimitConfig {
        schedule,
        ..LimitConfig::default()
    })
    .await;
    let http = client();
    let accepted_in_burst = |n: usize| {
        let http = http.clone();
        let sim = &sim;
        async move {
            let mut ok = 0;
            for _ in 0..n {
                if get(&http, sim, CANDLES).await.status == 200 {
                    ok += 1;
                }
            }
            ok
        }
    };
    assert_eq!(accepted_in_burst(25).await, 20);
    clock.advance_ms(30_000);
    let first = get(&http, &sim, CANDLES).await;
    assert_eq!(
        first.remain,
        Some(4),
        "remaining counts against the new limit"
    );
    assert_eq!(accepted_in_burst(10).await, 4);
    clock.advance_ms(30_000);
    assert_eq!(accepted_in_burst(25).await, 20);
}

#[tokio::test]
async fn rate_limit_replies_can_use_another_code_and_status() {
    let config = SimConfig {
        rate_limit_code: "30001".into(),
        rate_limit_status: 400,
        ..SimConfig::default()
    };
    let (sim, _clock) = start(config).await;
    let http = client();
    for _ in 0..20 {
        get(&http, &sim, CANDLES).await;
    }
    let reply = get(&http, &sim, CANDLES).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.code(), "30001");
    assert_eq!(sim.stop().await.total.rate_limited, 1);
}

#[tokio::test]
async fn per_endpoint_overrides_apply() {
    let over = LimitConfig::parse_override("mix/market/candles=3").unwrap();
    let (sim, _clock) = start_with_limits(LimitConfig {
        overrides: vec![over],
        ..LimitConfig::default()
    })
    .await;
    let http = client();
    let statuses: Vec<u16> = futures_statuses(&http, &sim, 5).await;
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
}

async fn futures_statuses(
    http: &reqwest::Client,
    sim: &bitget_sim::Simulator,
    n: usize,
) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(http, sim, CANDLES).await.status);
    }
    out
}

#[tokio::test]
async fn invalid_options_are_refused_before_starting() {
    use bitget_poller::core::clock::ManualClock;
    use bitget_sim::{SimError, SimState};
    use std::sync::Arc;
    let clock = || Arc::new(ManualClock::new(T0));
    let bad = |config: SimConfig| SimState::new(config, clock()).unwrap_err();
    assert!(matches!(
        bad(SimConfig {
            symbols: 0,
            ..SimConfig::default()
        }),
        SimError::Symbols(0)
    ));
    assert!(matches!(
        bad(SimConfig {
            rate_limit_code: "x1".into(),
            ..SimConfig::default()
        }),
        SimError::RateLimitCode(_)
    ));
    assert!(matches!(
        bad(SimConfig {
            rate_limit_status: 200,
            ..SimConfig::default()
        }),
        SimError::RateLimitStatus(200)
    ));
    let faults = bitget_sim::faults::FaultConfig {
        html: 0.7,
        reset: 0.7,
        ..Default::default()
    };
    assert!(matches!(
        bad(SimConfig {
            faults,
            ..SimConfig::default()
        }),
        SimError::FaultProbability { name: "sum", .. }
    ));
    let message = bad(SimConfig {
        symbols: 9_999,
        ..SimConfig::default()
    })
    .to_string();
    assert_eq!(message, "--symbols must be between 1 and 5000, got 9999");
}
