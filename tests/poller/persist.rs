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

/// Backfill fetches only what the file lacks, through `/history-candles`; stopped after
/// three pages and run again, it fetches the rest and no page twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_fills_only_gaps_and_resumes_without_fetching_a_page_twice() {
    use std::sync::Arc;

    use bitget_poller::app::{backfill, BackfillRequest};
    use bitget_poller::core::clock::{Clock, SystemClock};
    use bitget_poller::core::market::Symbol;
    use bitget_poller::core::timeframe::{Market, Timeframe};
    use bitget_poller::store::disk::{DiskConfig, DiskStore};
    use bitget_poller::store::SeriesKey;
    use tokio_util::sync::CancellationToken;

    const HISTORY: &str = "/api/v2/mix/market/history-candles";
    let dir = temp_dir("persist-backfill");
    let log = dir.join("requests.jsonl");
    let sim = simulator(SimConfig {
        request_log: Some(log.clone()),
        ..SimConfig::default()
    })
    .await;
    let file = dir.join("candles.sqlite");
    let cfg = super::helpers::config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\"]",
        &format!("[store]\npath = '{}'", file.display()),
    );
    let wall: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let one = Timeframe::parse(Market::Futures, "1m").unwrap();
    let now_open = one.open_of(wall.now_ms());
    let since = now_open - 1000 * 60_000;
    let keys = [
        SeriesKey::new(Symbol::from_exchange("BTCUSDT"), one),
        SeriesKey::new(Symbol::from_exchange("ETHUSDT"), one),
    ];
    // A hole to leave alone: 100 minutes already held in the middle of BTCUSDT's range.
    {
        let disk = DiskStore::open(
            &DiskConfig {
                path: file.clone(),
                retention: Default::default(),
            },
            Arc::clone(&wall),
        )
        .unwrap();
        let btc = sim.state().universe.get("BTCUSDT").unwrap();
        let held: Vec<_> = (400..500)
            .map(|k| {
                let open = since + k * 60_000;
                let c = btc.candle(one.granularity(), open, open + 60_000);
                bitget_poller::core::market::Candle {
                    symbol: keys[0].symbol.clone(),
                    timeframe: one,
                    open_time: open,
                    open: c.open,
                    high: c.high,
                    low: c.low,
                    close: c.close,
                    base_volume: c.base_volume,
                    quote_volume: c.quote_volume,
                    closed: true,
                }
            })
            .collect();
        disk.write(held);
        assert!(disk.close(std::time::Duration::from_secs(10)));
    }
    let request = BackfillRequest {
        series: keys.to_vec(),
        since,
        until: now_open,
    };
    // Stopped once three pages are in.
    let stop = CancellationToken::new();
    let mut totals = Vec::new();
    let first = backfill(
        &cfg,
        "test",
        &request,
        Arc::clone(&wall),
        stop.clone(),
        |done, total| {
            totals.push(total);
            if done.pages == 3 {
                stop.cancel();
            }
        },
    )
    .await
    .unwrap();
    assert!(first.done.stopped);
    assert_eq!(first.done.pages, 3);
    // BTCUSDT lacks 900 minutes in two ranges (400 and 500: 2 + 3 pages), ETHUSDT 1000 (5).
    assert_eq!(totals[0], 10);
    let second = backfill(
        &cfg,
        "test",
        &request,
        Arc::clone(&wall),
        CancellationToken::new(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(!second.done.stopped);
    assert_eq!(second.total_pages, 7, "the rest, not the whole");
    for (key, rows, first_open) in &second.series {
        assert_eq!(*rows, 1000, "{key:?}");
        assert_eq!(*first_open, Some(since));
    }
    sim.state().recorder.flush();
    let pages = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(HISTORY))
        .count();
    assert_eq!(pages, 10, "every page once");
    // Nothing left to fetch.
    let third = backfill(
        &cfg,
        "test",
        &request,
        Arc::clone(&wall),
        CancellationToken::new(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(third.total_pages, 0);

    // A gateway on the file answers a range older than memory keeps from disk, exactly,
    // without asking the exchange.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (stop, cfg) = (stop.clone(), cfg.clone());
        async move {
            let options = bitget_poller::app::RunOptions {
                venue: bitget_poller::trading::setup::Venue::Paper,
                specs: Vec::new(),
                metrics: None,
                wall,
                gateway: Some(listener),
            };
            bitget_poller::app::run(&cfg, options, stop)
                .await
                .expect("app runs")
        }
    });
    let (start, end) = (since + 100 * 60_000, since + 300 * 60_000);
    let url = format!(
        "{base}{CANDLES}?symbol=ETHUSDT&productType=USDT-FUTURES&granularity=1m&startTime={start}&endTime={end}&limit=200"
    );
    sim.state().recorder.flush();
    let before = std::fs::read_to_string(&log).unwrap().lines().count();
    let http = reqwest::Client::new();
    let mut reply = None;
    for _ in 0..100 {
        if let Ok(r) = http.get(&url).send().await {
            reply = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reply = reply.expect("gateway up");
    assert_eq!(reply.headers()["x-cache"], "disk");
    let body: serde_json::Value = reply.json().await.unwrap();
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 200);
    let eth = sim.state().universe.get("ETHUSDT").unwrap();
    for (k, row) in rows.iter().enumerate() {
        let open = start + k as u64 * 60_000;
        assert_eq!(row[0], open.to_string());
        let c = eth.candle(one.granularity(), open, open + 60_000);
        assert_eq!(row[4], c.close.to_string());
        assert_eq!(row[5], c.base_volume.to_string());
    }
    sim.state().recorder.flush();
    let asked: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .skip(before)
        .filter(|l| l.contains("ETHUSDT") && l.contains("candles"))
        .map(str::to_owned)
        .collect();
    assert!(asked.is_empty(), "asked the exchange: {asked:?}");
    stop.cancel();
    task.await.unwrap();
    let stats = sim.stop().await;
    assert_eq!(stats.total.rate_limited, 0);
}

/// Bad input is one line and exit 2, with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_refuses_bad_input_in_one_line() {
    let sim = simulator(SimConfig::default()).await;
    let dir = temp_dir("persist-backfill-bad");
    let config = write_config(&dir);
    let memory = dir.join("memory.toml");
    std::fs::write(
        &memory,
        "[poll]\nsymbols = [\"BTCUSDT\"]\n[store]\npath = \"\"\n",
    )
    .unwrap();
    let base = sim.base_url();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--symbols".into(),
                "BTCUSDT".into(),
                "--timeframes".into(),
                "1m".into(),
                "--since".into(),
                "2099-01-01".into(),
            ],
            "is in the future",
        ),
        (
            vec![
                "--symbols".into(),
                "NOPEUSDT".into(),
                "--timeframes".into(),
                "1m".into(),
                "--since".into(),
                "2h".into(),
            ],
            "bitget does not list NOPEUSDT",
        ),
        (
            vec![
                "--symbols".into(),
                "BTCUSDT".into(),
                "--timeframes".into(),
                "7m".into(),
                "--since".into(),
                "2h".into(),
            ],
            "--timeframes 7m is not one of",
        ),
        (
            vec![
                "--symbols".into(),
                "BTCUSDT".into(),
                "--timeframes".into(),
                "1m".into(),
                "--since".into(),
                "2h".into(),
                "--until".into(),
                "3h".into(),
            ],
            "is not before --until",
        ),
    ];
    for (args, says) in cases {
        let out = binary()
            .args(["backfill", "--config"])
            .arg(&config)
            .args(["--base-url", &base])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert!(
            errors.len() == 1 && errors[0].contains(says),
            "{args:?}: {err}"
        );
    }
    let out = binary()
        .args(["backfill", "--config"])
        .arg(&memory)
        .args([
            "--base-url",
            &base,
            "--symbols",
            "BTCUSDT",
            "--timeframes",
            "1m",
            "--since",
            "1h",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keeps candles in memory only"));
    // Refused before the file was made.
    assert!(!dir.join("data").join("candles.sqlite").exists());
    sim.stop().await;
}
