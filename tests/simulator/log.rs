//! The JSON-lines request log and the stats endpoint.

use bitget_sim::SimConfig;
use serde_json::Value;

use super::helpers::*;

#[tokio::test]
async fn every_request_is_logged_as_one_json_line() {
    let dir = std::env::temp_dir().join(format!("bitget-sim-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("requests.jsonl");
    let (sim, _clock) = start(SimConfig {
        request_log: Some(path.clone()),
        ..SimConfig::default()
    })
    .await;
    let http = client();
    for _ in 0..21 {
        get(&http, &sim, CANDLES).await;
    }
    get(
        &http,
        &sim,
        "/api/v2/mix/market/ticker?symbol=NOPE&productType=USDT-FUTURES",
    )
    .await;
    let stats_reply = get(&http, &sim, "/sim/stats").await.json();
    assert_eq!(
        stats_reply["total"]["requests"], 22,
        "admin endpoints are not counted"
    );
    sim.stop().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 22);
    let first = &lines[0];
    assert_eq!(first["ts"], T0);
    assert_eq!(first["path"], "/api/v2/mix/market/candles");
    assert_eq!(first["symbol"], "BTCUSDT");
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(
        (first["status"].as_u64(), first["code"].as_str()),
        (Some(200), Some("00000"))
    );
    assert_eq!(
        (lines[20]["status"].as_u64(), lines[20]["code"].as_str()),
        (Some(429), Some("429"))
    );
    assert_eq!(lines[21]["code"], "40034");
    assert_eq!(lines[21]["symbol"], "NOPE");
    std::fs::remove_dir_all(dir).unwrap();
}
