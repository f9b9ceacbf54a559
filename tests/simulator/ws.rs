//! The simulator's public WebSocket, through the poller's own socket client: Bitget's shapes,
//! both close behaviours, and every limit with its code.

use std::time::Duration;

use bitget_poller::bitget::ws::client::{self, Socket};
use bitget_poller::bitget::ws::messages::{self, Channel};
use bitget_poller::bitget::ws::parse::{Action, Incoming, Push};
use bitget_poller::core::market::Symbol;
use bitget_poller::core::timeframe::{Market, Timeframe};
use bitget_sim::ws::WsConfig;
use bitget_sim::{SimConfig, Simulator};
use serde_json::Value;

use super::helpers::{client, row_of, start, T0};

fn config(final_bar: bool) -> SimConfig {
    SimConfig {
        symbols: 5,
        ws: WsConfig {
            final_bar,
            snapshot_rows: 10,
            // Pushes follow the runtime's timer; short, so the test waits little.
            push_interval: Duration::from_millis(20),
            ..WsConfig::default()
        },
        ..SimConfig::default()
    }
}

fn one_minute(symbol: &str) -> Channel {
    Channel {
        symbol: Symbol::from_exchange(symbol),
        timeframe: Timeframe::parse(Market::Futures, "1m").unwrap(),
    }
}

async fn open(sim: &Simulator) -> Socket {
    client::connect(&sim.ws_url(), Duration::from_secs(5))
        .await
        .expect("the socket opens")
}

async fn next(socket: &mut Socket) -> Incoming {
    tokio::time::timeout(Duration::from_secs(5), socket.recv())
        .await
        .expect("a message within 5 s")
        .expect("socket open")
        .expect("readable")
}

/// The next message that is not a candle push.
async fn next_event(socket: &mut Socket) -> Incoming {
    loop {
        match next(socket).await {
            Incoming::Push(_) => continue,
            other => return other,
        }
    }
}

/// The next candle push, skipping acks.
async fn next_push(socket: &mut Socket) -> Push {
    loop {
        if let Incoming::Push(p) = next(socket).await {
            return p;
        }
    }
}

async fn rest_candle(base: &str, symbol: &str, open: u64) -> Vec<Value> {
    let url = format!(
        "{base}/api/v2/mix/market/candles?symbol={symbol}&productType=USDT-FUTURES&granularity=1m&endTime={}&limit=1",
        open + 60_000
    );
    let body: Value = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"][0].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_subscription_gets_an_ack_a_snapshot_and_updates_and_the_final_bar_at_the_close() {
    let (sim, clock) = start(config(true)).await;
    let mut socket = open(&sim).await;
    for m in messages::subscribe(&[one_minute("BTCUSDT"), one_minute("ETHUSDT")]) {
        socket.send(&m).await.unwrap();
    }
    let Incoming::Ack { op, channel } = next(&mut socket).await else {
        panic!("ack first")
    };
    assert_eq!(
        (op.as_str(), channel),
        ("subscribe", Some(one_minute("BTCUSDT")))
    );
    let snapshot = next_push(&mut socket).await;
    assert_eq!(snapshot.action, Action::Snapshot);
    assert_eq!(snapshot.ts, T0);
    let opens: Vec<u64> = snapshot.rows.iter().map(|c| c.open_time).collect();
    let forming = T0 - T0 % 60_000;
    assert_eq!(opens.len(), 10);
    assert_eq!(*opens.last().unwrap(), forming, "the forming bar last");
    assert!(
        opens.windows(2).all(|w| w[1] == w[0] + 60_000),
        "oldest first"
    );
    // A closed row of the snapshot is the REST candle exactly.
    let rest = rest_candle(&sim.base_url(), "BTCUSDT", opens[5]).await;
    let rest: Vec<String> = rest[1..7]
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(row_of(&snapshot.rows[5]), rest);
    // Updates carry the forming bar.
    let update = loop {
        let p = next_push(&mut socket).await;
        if p.action == Action::Update && p.channel == one_minute("BTCUSDT") {
            break p;
        }
    };
    assert_eq!(update.rows.len(), 1);
    assert_eq!(update.rows[0].open_time, forming);
    // Across the close, the first update repeats the finished bar's final row.
    clock.advance_ms(60_000);
    let crossing = loop {
        let p = next_push(&mut socket).await;
        if p.channel == one_minute("BTCUSDT") {
            break p;
        }
    };
    assert_eq!(crossing.rows.len(), 2);
    assert_eq!(crossing.rows[0].open_time, forming);
    assert_eq!(crossing.rows[1].open_time, forming + 60_000);
    assert!(crossing.ts >= forming + 60_000);
    let rest = rest_candle(&sim.base_url(), "BTCUSDT", forming).await;
    let rest: Vec<String> = rest[1..7]
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        row_of(&crossing.rows[0]),
        rest,
        "the final row is the REST candle"
    );
    socket.close().await;
    let stats = sim.stop().await;
    assert_eq!(stats.ws.connections, 1);
    assert_eq!(stats.ws.subscribed, 2);
    assert!(stats.ws.pushes >= 4);
}

#[tokio::test]
async fn without_the_final_bar_the_first_push_after_a_close_carries_only_the_new_bar() {
    let (sim, clock) = start(config(false)).await;
    let mut socket = open(&sim).await;
    socket
        .send(&messages::subscribe(&[one_minute("BTCUSDT")])[0])
        .await
        .unwrap();
    let snapshot = next_push(&mut socket).await;
    let forming = snapshot.rows.last().unwrap().open_time;
    clock.advance_ms(60_000);
    let crossing = loop {
        let p = next_push(&mut socket).await;
        if p.rows[0].open_time > forming {
            break p;
        }
    };
    assert_eq!(crossing.rows.len(), 1);
    assert_eq!(crossing.rows[0].open_time, forming + 60_000);
    sim.stop().await;
}

#[tokio::test]
async fn bad_channels_and_symbols_get_their_codes_and_the_socket_stays_open() {
    let (sim, _clock) = start(config(true)).await;
    let mut socket = open(&sim).await;
    // A REST spelling on the socket: 30016, and the socket stays open.
    socket
        .send(r#"{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"candle1h","instId":"BTCUSDT"}]}"#)
        .await
        .unwrap();
    assert!(matches!(
        next(&mut socket).await,
        Incoming::Error { code: 30016, .. }
    ));
    socket
        .send(r#"{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"candle1m","instId":"NOPEUSDT"}]}"#)
        .await
        .unwrap();
    let Incoming::Error { code, msg } = next(&mut socket).await else {
        panic!("an error")
    };
    assert_eq!(code, 30001);
    assert!(msg.contains("NOPEUSDT doesn't exist"), "{msg}");
    socket.send(r#"{"op":"dance"}"#).await.unwrap();
    assert!(matches!(
        next(&mut socket).await,
        Incoming::Error { code: 30003, .. }
    ));
    socket.send("ping").await.unwrap();
    assert_eq!(next(&mut socket).await, Incoming::Pong);
    // Arguments over 4096 bytes: 30016.
    let args: Vec<String> = (0..80)
        .map(|_| {
            r#"{"instType":"USDT-FUTURES","channel":"candle1m","instId":"BTCUSDT"}"#.to_owned()
        })
        .collect();
    socket
        .send(&format!(
            r#"{{"op":"subscribe","args":[{}]}}"#,
            args.join(",")
        ))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut socket).await,
        Incoming::Error { code: 30016, .. }
    ));
    let stats = sim.stop().await;
    assert_eq!(stats.ws.errors["30016"], 2);
    assert_eq!(stats.ws.errors["30001"], 1);
}

#[tokio::test]
async fn the_eleventh_message_in_a_second_closes_the_socket_with_30007() {
    let (sim, clock) = start(config(true)).await;
    let mut socket = open(&sim).await;
    for _ in 0..10 {
        socket.send("ping").await.unwrap();
        assert_eq!(next(&mut socket).await, Incoming::Pong);
    }
    socket.send("ping").await.unwrap();
    assert!(matches!(
        next(&mut socket).await,
        Incoming::Error { code: 30007, .. }
    ));
    let end = tokio::time::timeout(Duration::from_secs(5), socket.recv())
        .await
        .unwrap();
    assert!(matches!(end, None | Some(Err(_))), "closed: {end:?}");
    // In the next second, ten again are fine.
    clock.advance_ms(1_000);
    let mut socket = open(&sim).await;
    for _ in 0..10 {
        socket.send("ping").await.unwrap();
        assert_eq!(next(&mut socket).await, Incoming::Pong);
    }
    let stats = sim.stop().await;
    assert_eq!(stats.ws.max_messages_in_1s, 11);
    assert_eq!(stats.ws.errors["30007"], 1);
}

#[tokio::test]
async fn subscribe_requests_past_240_an_hour_get_30006() {
    let (sim, clock) = start(config(true)).await;
    let mut socket = open(&sim).await;
    let subscribe = &messages::subscribe(&[one_minute("BTCUSDT")])[0];
    for _ in 0..240 {
        // Ten a second at most: the clock moves a tenth of a second per request.
        clock.advance_ms(100);
        socket.send(subscribe).await.unwrap();
        assert!(matches!(
            next_event(&mut socket).await,
            Incoming::Ack { .. }
        ));
    }
    clock.advance_ms(100);
    socket.send(subscribe).await.unwrap();
    let reply = next_event(&mut socket).await;
    assert!(
        matches!(reply, Incoming::Error { code: 30006, .. }),
        "{reply:?}"
    );
    // The socket stays open, and an hour after the first request there is room again.
    clock.advance_ms(3_600_000);
    socket.send(subscribe).await.unwrap();
    let reply = next_event(&mut socket).await;
    assert!(matches!(reply, Incoming::Ack { .. }), "{reply:?}");
    sim.stop().await;
}

#[tokio::test]
async fn one_ip_gets_100_sockets_and_300_attempts_in_five_minutes() {
    let (sim, clock) = start(config(true)).await;
    let url = sim.ws_url();
    let mut open = Vec::new();
    for _ in 0..100 {
        open.push(client::connect(&url, Duration::from_secs(5)).await.unwrap());
    }
    let refused = client::connect(&url, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(refused.is_rate_limited(), "{refused}");
    for socket in open.drain(..) {
        socket.close().await;
    }
    // 101 attempts so far; 199 more are accepted (one at a time), the 301st is refused.
    for _ in 0..199 {
        let mut accepted = None;
        for _ in 0..50 {
            match client::connect(&url, Duration::from_secs(5)).await {
                Ok(s) => {
                    accepted = Some(s);
                    break;
                }
                // A closed socket's slot frees when the server sees the close.
                Err(e) if e.is_rate_limited() => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        accepted.expect("a slot").close().await;
    }
    let stats = sim.stats();
    let attempts = stats.ws.connections + stats.ws.refused_sockets + stats.ws.refused_attempts;
    assert!(attempts >= 300);
    if stats.ws.refused_attempts == 0 {
        let refused = client::connect(&url, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(refused.is_rate_limited());
    }
    assert!(sim.stats().ws.refused_attempts >= 1);
    // Five minutes later the attempts have left the window.
    clock.advance_ms(300_000);
    client::connect(&url, Duration::from_secs(5))
        .await
        .unwrap()
        .close()
        .await;
    sim.stop().await;
}
