//! Candles kept in a SQLite file across restarts: a second run starts from what the first
//! stored and asks the exchange only for what is missing since.

use std::path::Path;

use bitget_sim::SimConfig;

use super::helpers::{binary, simulator, temp_dir};

const CANDLES: &str = "/api/v2/mix/market/candles";

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("run.toml");
    std::fs::write(
        &path,
        format!(
            "[poll]\nsymbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntimeframes = [\"1m\", \"5m\"]\ntickers_interval_secs = 0\n[feed]\nsource = \"rest\"\n[trading]\nenabled = false\n[logging]\ndir = '{}'\nusage_interval_secs = 1\n[store]\npath = '{}'\n",
            dir.join("logs").display(),
            dir.join("data").join("candles.sqlite").display()
        ),
    )
    .unwrap();
    path
}

/// Candle reads in the request log: (symbol, granularity, limit), in order.
fn candle_reads(log: &str) -> Vec<(String, String, u32)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["path"] == CANDLES || r["path"] == "/api/v2/mix/market/history-candles")
        .map(|r| {
            (
                r["symbol"].as_str().unwrap_or("").to_owned(),
                r["granularity"].as_str().unwrap_or("").to_owned(),
                r["limit"].as_u64().unwrap_or(0) as u32,
            )
        })
        .collect()
}

async fn run(config: &Path, base: &str) -> String {
    let (config, base) = (config.to_owned(), base.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        binary()
            .args(["run", "--config"])
            .arg(&config)
            .args(["--base-url", &base, "--duration", "2"])
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_back_what_it_stored_and_fetches_only_what_is_missing() {
    let dir = temp_dir("persist-restart");
    let log = dir.join("requests.jsonl");
    let sim = simulator(SimConfig {
        request_log: Some(log.clone()),
        ..SimConfig::default()
    })
    .await;
    let config = write_config(&dir);
    run(&config, &sim.base_url()).await;
    sim.state().recorder.flush();
    let first = candle_reads(&std::fs::read_to_string(&log).unwrap());
    // The first run read each series' history.
    for series in [
        ("BTCUSDT", "1m"),
        ("ETHUSDT", "1m"),
        ("BTCUSDT", "5m"),
        ("ETHUSDT", "5m"),
    ] {
        let max = first
            .iter()
            .filter(|(s, g, _)| (s.as_str(), g.as_str()) == series)
            .map(|(_, _, l)| *l)
            .max();
        assert_eq!(max, Some(100), "{series:?} first read: {first:?}");
    }
    let file = dir.join("data").join("candles.sqlite");
    assert!(file.exists(), "the folder and file were made");

    let second_out = run(&config, &sim.base_url()).await;
    sim.state().recorder.flush();
    let all = candle_reads(&std::fs::read_to_string(&log).unwrap());
    let second = &all[first.len()..];
    assert!(!second.is_empty());
    // Seconds after the first run, each series lacks at most its forming bar and the one
    // before: nothing asks for history again.
    assert!(
        second.iter().all(|(_, _, limit)| *limit <= 3),
        "second run's reads: {second:?}"
    );
    assert!(
        second_out.contains("candles taken back from the store"),
        "{second_out}"
    );

    // What was stored exports exactly: freqtrade's json, every row the exchange's own.
    let out = dir.join("btc-1m.json");
    let export = binary()
        .args([
            "export",
            "--symbol",
            "BTC/USDT:USDT",
            "--timeframe",
            "1m",
            "--format",
            "json",
            "--store",
        ])
        .arg(&file)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        export.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    // Read as text, not as floats: every digit must be the exchange's.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_ok(),
        "valid json"
    );
    let rows: Vec<Vec<String>> = text
        .trim()
        .trim_start_matches("[[")
        .trim_end_matches("]]")
        .split("],[")
        .map(|row| row.split(',').map(str::to_owned).collect())
        .collect();
    assert!(rows.len() >= 99, "{} rows", rows.len());
    let g = bitget_poller::core::timeframe::Timeframe::parse(
        bitget_poller::core::timeframe::Market::Futures,
        "1m",
    )
    .unwrap()
    .granularity();
    let btc = sim.state().universe.get("BTCUSDT").unwrap();
    for row in &rows {
        let open: u64 = row[0].parse().unwrap();
        let k = btc.candle(g, open, open + 60_000);
        assert_eq!(
            row[1..],
            [k.open, k.high, k.low, k.close, k.base_volume]
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            "{open}"
        );
    }
    let opens: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(
        opens.windows(2).all(|w| w[1] == w[0] + 60_000),
        "consecutive minutes"
    );
    // CSV to standard output, a window of it.
    let csv = binary()
        .args([
            "export",
            "--symbol",
            "BTCUSDT",
            "--timeframe",
            "1m",
            "--store",
        ])
        .arg(&file)
        .args([
            "--since",
            &opens[10].to_string(),
            "--until",
            &opens[13].to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(csv.status.code(), Some(2), "a bare number is not a time");
    let since = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(opens[10]),
    )
    .to_string();
    let until = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(opens[13]),
    )
    .to_string();
    let csv = binary()
        .args([
            "export",
            "--symbol",
            "BTCUSDT",
            "--timeframe",
            "1m",
            "--store",
        ])
        .arg(&file)
        .args(["--since", &since, "--until", &until])
        .output()
        .unwrap();
    assert_eq!(
        csv.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let text = String::from_utf8(csv.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "open_time,open,high,low,close,base_volume,quote_volume"
    );
    assert_eq!(
        lines[1..]
            .iter()
            .map(|l| l.split(',').next().unwrap().parse::<u64>().unwrap())
            .collect::<Vec<_>>(),
        opens[10..13]
    );
    // A file that is not there, a timeframe futures do not spell: one line each, exit 2.
    for (args, says) in [
        (
            vec![
                "--store",
                "/nonexistent/candles.sqlite",
                "--timeframe",
                "1m",
            ],
            "no candle store at /nonexistent/candles.sqlite",
        ),
        (
            vec!["--store", file.to_str().unwrap(), "--timeframe", "1min"],
            "--timeframe 1min is not one of",
        ),
    ] {
        let out = binary()
            .args(["export", "--symbol", "BTCUSDT"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && err.lines().count() == 1, "{err}");
    }
    let stats = sim.stop().await;
    assert_eq!(stats.total.rate_limited, 0);
}
