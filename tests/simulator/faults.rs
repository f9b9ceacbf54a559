//! Fault injection: each kind, forced with probability 1, looks as it would from a real CDN.

use std::time::Duration;

use bitget_sim::faults::FaultConfig;
use bitget_sim::SimConfig;

use super::helpers::*;

async fn with_fault(
    faults: FaultConfig,
) -> (
    bitget_sim::Simulator,
    bitget_poller::core::clock::ManualClock,
) {
    start(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await
}

#[tokio::test]
async fn html_error_pages_come_as_a_cdn_sends_them() {
    let (sim, _clock) = with_fault(FaultConfig {
        html: 1.0,
        seed: 3,
        ..Default::default()
    })
    .await;
    let http = client();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let reply = get(&http, &sim, CANDLES).await;
        assert!(
            reply.status == 502 || reply.status == 503,
            "{}",
            reply.status
        );
        assert_eq!(reply.content_type, "text/html");
        assert!(reply.body.starts_with("<html>") && reply.body.contains(&reply.status.to_string()));
        seen.push(reply.status);
    }
    assert!(
        seen.contains(&502) && seen.contains(&503),
        "both pages appear: {seen:?}"
    );
    let stats = sim.stop().await;
    assert_eq!(stats.faults["html"], 10);
    assert_eq!(
        stats.total.accepted, 10,
        "a faulted request still spent its budget"
    );
}

#[tokio::test]
async fn truncated_replies_are_status_200_with_half_the_json() {
    let (sim, _clock) = with_fault(FaultConfig {
        truncated: 1.0,
        ..Default::default()
    })
    .await;
    let reply = get(&client(), &sim, CANDLES).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.starts_with(r#"{"code":"00000","msg":"success""#));
    assert!(serde_json::from_str::<serde_json::Value>(&reply.body).is_err());
}

#[tokio::test]
async fn slow_replies_outlast_a_short_client_timeout() {
    let (sim, _clock) = with_fault(FaultConfig {
        slow: 1.0,
        slow_ms: 2_000,
        ..Default::default()
    })
    .await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = impatient
        .get(format!("{}{CANDLES}", sim.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    // Counted once the server is done with it, whether it finished the reply or saw the
    // client hang up.
    let stats = sim.stop().await;
    assert_eq!(stats.faults["slow"], 1);
    assert_eq!(stats.total.accepted, 1);
}

#[tokio::test]
async fn resets_close_the_connection_without_a_reply() {
    let (sim, _clock) = with_fault(FaultConfig {
        reset: 1.0,
        ..Default::default()
    })
    .await;
    let error = client()
        .get(format!("{}{CANDLES}", sim.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(error.status().is_none());
    assert!(
        !error.is_timeout(),
        "the connection is dropped at once: {error}"
    );
    // Raw TCP view: the server sends nothing and resets the connection.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    socket
        .write_all(b"GET /api/v2/public/time HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = socket.read_to_end(&mut buf).await;
    assert!(buf.is_empty(), "no bytes of a reply");
    assert_eq!(
        read.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
    assert_eq!(sim.stop().await.faults["reset"], 2);
}

#[tokio::test]
async fn symbol_and_busy_faults_use_bitget_codes() {
    let (sim, _clock) = with_fault(FaultConfig {
        symbol: 1.0,
        ..Default::default()
    })
    .await;
    let reply = get(&client(), &sim, CANDLES).await;
    assert_eq!((reply.status, reply.code()), (400, "40034".to_owned()));
    // Requests without a symbol are not affected.
    assert_eq!(
        get(&client(), &sim, "/api/v2/public/time").await.status,
        200
    );

    let (sim, _clock) = with_fault(FaultConfig {
        busy: 1.0,
        ..Default::default()
    })
    .await;
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..15 {
        codes.insert(get(&client(), &sim, CANDLES).await.code());
    }
    assert_eq!(
        codes.into_iter().collect::<Vec<_>>(),
        ["40015", "40725", "45001"]
    );
}

#[tokio::test]
async fn mixed_faults_follow_their_probabilities_and_the_seed() {
    let faults = FaultConfig {
        html: 0.1,
        truncated: 0.1,
        busy: 0.1,
        seed: 9,
        ..Default::default()
    };
    let http = client();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (sim, clock) = with_fault(faults.clone()).await;
        let mut statuses = Vec::new();
        for _ in 0..300 {
            statuses.push(get(&http, &sim, CANDLES).await.status);
            // 10 requests a second keeps the rate limit out of the picture.
            clock.advance_ms(100);
        }
        let stats = sim.stop().await;
        let faulted: u64 = stats.faults.values().sum();
        assert!(
            (50..=130).contains(&faulted),
            "about 30 % of 300 faulted, got {faulted}"
        );
        assert_eq!(stats.total.rate_limited, 0);
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "same seed, same faults in the same order");
}
