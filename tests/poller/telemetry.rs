//! What the operator sees: the `usage` report and chart from a committed sample log, the
//! metrics endpoint while polling, and stale-candle warnings.
//!
//! The sample log (`tests/data/usage`) is a live file and one rotated copy, written in the
//! rate log's format with four broken lines among them. Its figures, worked by hand:
//! - market: 6 intervals (five of 10 s, one of 5 s) covering 55 s with 196 + 198 + 150 +
//!   40 + 100 + 99 = 783 requests: mean 783 / 55 = 14.236/s; per-interval rates 19.6, 19.8,
//!   15, 4, 10, 19.8, whose nearest-rank p95 (rank ⌈0.95 × 6⌉ = 6) is 19.8; 783 of a
//!   20 × 55 = 1100 budget is 71.18 %; 3 rate-limit lines (the 4th is cut off and unreadable);
//!   190 + 198 + 100 + 10 + 50 + 99 = 647 waited, 5 + 6 + 3 + 0.5 + 1 + 2 = 17.5 s of waiting;
//! - account: 20 + 35 = 55 requests in 20 s: mean 2.75/s, p95 3.5/s, 55 / 200 = 27.5 %, one
//!   in-flight 429, 5 waited for 0.8 s;
//! - tiers: the market run lasts from 10:00:00.0001 to 10:00:55.0001 and the tier changes at
//!   :24 (normal → slow), :31.2 (→ crawl), :39 (→ slow) and :49 (→ normal), so normal
//!   23.9999 + 6.0001 = 30 s, slow 7.2 + 10 = 17.2 s, crawl 7.8 s; 4 tier changes;
//! - staleness: 6 summaries, 3 with stale streams, at most 2 at once; XRPUSDT named 3 times,
//!   DOGEUSDT once; 2 stale warnings;
//! - 34 lines, 33 of them non-empty; unreadable: bad UTF-8, a line with no timestamp,
//!   `requests=abc`, and a line cut inside a quoted value.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitget_poller::app::{poll_session, Wiring};
use bitget_poller::bitget::endpoints::SERVER_TIME;
use bitget_poller::core::clock::{Clock, ManualClock};
use bitget_poller::core::events::MarketEvent;
use bitget_poller::limiter::Category;
use bitget_poller::scheduler::tiers::Tier;
use bitget_poller::store::{Store, StoreConfig};
use bitget_poller::telemetry::metrics::{MetricsServer, CONTENT_TYPE_OPENMETRICS};
use bitget_poller::telemetry::usage::{log_files, RateLog, Report, Window};
use bitget_sim::{SimConfig, Simulator};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::helpers::{binary, config, run_with_clock, simulator, temp_dir};

fn sample_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/usage")
}

fn sample(window: Window) -> RateLog {
    let files = log_files(&[sample_dir()], &PathBuf::from("unused")).unwrap();
    RateLog::read(&files, window).unwrap()
}

fn at(seconds_after_ten: u64) -> SystemTime {
    // 2026-11-22T10:00:00Z
    UNIX_EPOCH + Duration::from_secs(1_795_341_600 + seconds_after_ten)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn the_report_on_the_sample_log_matches_the_hand_worked_figures() {
    let log = sample(Window::default());
    let names: Vec<String> = log
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["bitget_rate_limits.log.1", "bitget_rate_limits.log"],
        "the rotated copy is older and read first"
    );
    let report = Report::new(&log);
    assert_eq!(report.lines, 33);
    assert_eq!(report.sessions, 1);
    assert_eq!(report.first, Some(at(0) + Duration::from_micros(100)));
    assert_eq!(report.last, Some(at(55) + Duration::from_micros(100)));

    let market = &report.categories[0];
    assert_eq!(market.category, Category::Market);
    assert_eq!(market.intervals, 6);
    assert_eq!(market.covered, Duration::from_secs(55));
    assert_eq!(market.requests, 783);
    assert!(
        close(market.mean_per_s, 783.0 / 55.0),
        "{}",
        market.mean_per_s
    );
    assert!(close(market.p95_per_s, 19.8), "{}", market.p95_per_s);
    assert!(close(market.max_per_s, 19.8));
    assert!(
        close(market.used_pct, 100.0 * 783.0 / 1100.0),
        "{}",
        market.used_pct
    );
    assert_eq!(market.limit, 20);
    assert_eq!(market.rate_limited, 3);
    assert_eq!(market.waited, 647);
    assert_eq!(market.wait, Duration::from_millis(17_500));
    assert_eq!(market.limit_follows, 2);

    let account = &report.categories[1];
    assert_eq!(account.category, Category::Account);
    assert_eq!(account.requests, 55);
    assert_eq!(account.covered, Duration::from_secs(20));
    assert!(close(account.mean_per_s, 2.75));
    assert!(close(account.p95_per_s, 3.5));
    assert!(close(account.used_pct, 27.5));
    assert_eq!(account.rate_limited, 1);
    assert_eq!(account.waited, 5);
    assert_eq!(account.wait, Duration::from_millis(800));
    assert_eq!(report.categories.len(), 2, "unused categories are left out");

    assert_eq!(
        report.tiers,
        [
            (Tier::Normal, Duration::from_secs(30)),
            (Tier::Slow, Duration::from_millis(17_200)),
            (Tier::Crawl, Duration::from_millis(7_800)),
        ]
    );
    assert_eq!(report.untiered, Duration::ZERO);
    assert_eq!(report.tier_changes, 4);

    assert_eq!(report.summaries, 6);
    assert_eq!(report.stale_intervals, 3);
    assert_eq!(report.most_stale_at_once, 2);
    assert_eq!(
        report.stale_streams,
        [("XRPUSDT:1m".to_owned(), 3), ("DOGEUSDT:1m".to_owned(), 1)]
    );
    assert_eq!(report.stale_warnings, 2);

    assert_eq!(report.unreadable_count, 4);
    let where_: Vec<(String, u64)> = report
        .unreadable
        .iter()
        .map(|u| {
            (
                u.file.file_name().unwrap().to_string_lossy().into_owned(),
                u.line,
            )
        })
        .collect();
    assert_eq!(
        where_,
        [
            ("bitget_rate_limits.log.1".to_owned(), 4),
            ("bitget_rate_limits.log".to_owned(), 3),
            ("bitget_rate_limits.log".to_owned(), 4),
            ("bitget_rate_limits.log".to_owned(), 9),
        ]
    );
    assert!(report.unreadable[2].reason.contains("requests='abc'"));

    let text = report.render();
    assert!(
        text.contains("market          55s        783     14.24     19.80     19.80   20/s      71.2%      3       647       17.5"),
        "{text}"
    );
    assert!(
        text.contains(
            "tiers: normal 30s (54.5%), slow 17s (31.3%), crawl 8s (14.2%); 4 tier changes"
        ),
        "{text}"
    );
}

#[test]
fn a_time_window_keeps_only_the_intervals_that_end_inside_it() {
    let window = Window::new(
        Some(at(30) + Duration::from_millis(1)),
        Some(at(50) + Duration::from_secs(1)),
    )
    .unwrap();
    let report = Report::new(&sample(window));
    let market = &report.categories[0];
    // The intervals ending at 10:00:40 and 10:00:50: 40 + 100 requests in 20 s.
    assert_eq!(market.intervals, 2);
    assert_eq!(market.requests, 140);
    assert!(close(market.mean_per_s, 7.0));
    assert!(close(market.used_pct, 35.0));
    assert_eq!(market.rate_limited, 1, "only the 429 at 10:00:31");
    assert_eq!(
        report.tiers,
        [
            // 10:00:30.0001 to 10:00:50.0001, starting in the tier the :31.2 change left.
            (Tier::Normal, Duration::from_micros(1_000_100)),
            (Tier::Slow, Duration::from_micros(11_199_900)),
            (Tier::Crawl, Duration::from_millis(7_800)),
        ]
    );
    assert!(Window::new(Some(at(50)), Some(at(30))).is_err());
}

#[test]
fn usage_prints_the_report_and_draws_svg_and_png_charts() {
    let dir = temp_dir("usage-plot");
    for name in ["usage.svg", "usage.png"] {
        let chart = dir.join(name);
        let output = binary()
            .arg("usage")
            .arg(sample_dir())
            .args(["--since", "2026-11-22T09:00:00Z", "--plot"])
            .arg(&chart)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("account         20s         55      2.75      3.50      3.50   10/s      27.5%      1         5        0.8"), "{stdout}");
        assert!(stdout.contains("unreadable lines: 4"), "{stdout}");
        assert!(stdout.contains(&format!("chart written to {}", chart.display())));
        let bytes = std::fs::read(&chart).unwrap();
        assert!(bytes.len() > 10_000, "{name} has {} bytes", bytes.len());
        if name.ends_with(".svg") {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
            // Both panels' captions, the legend, and the time axis in UTC.
            assert!(svg.contains("market: mean 14.24/s, p95 19.80/s, 71.2% of 20/s, 3 × 429"));
            assert!(svg.contains("account: mean 2.75/s"));
            assert!(svg.contains("limit followed") && svg.contains("crawl tier"));
            assert!(svg.contains("10:00:30"));
        } else {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
}

#[test]
fn usage_refuses_bad_arguments_with_a_reason_and_exit_2() {
    let dir = temp_dir("usage-bad");
    for (args, wanted) in [
        (vec!["--plot", "chart.pdf"], "must end in .svg or .png"),
        (
            vec!["--since", "yesterday"],
            "--since 'yesterday' is neither",
        ),
        (
            vec![
                "--since",
                "2026-11-22T11:00:00Z",
                "--until",
                "2026-11-22T10:00:00Z",
            ],
            "swap them",
        ),
        (
            vec!["--plot", "/nonexistent/dir/x.svg"],
            "cannot write /nonexistent/dir/x.svg: No such file or directory",
        ),
    ] {
        let output = binary()
            .arg("usage")
            .arg(sample_dir())
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{args:?}: checked before any report is printed"
        );
    }
    // No log in ./logs: say where it was looked for and what to do.
    let output = binary().arg("usage").current_dir(&dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("no rate log at logs/bitget_rate_limits.log; run `bitget-poller run`"),
        "{stderr}"
    );
    // An empty window is not an error for the report, but there is nothing to draw.
    let output = binary()
        .arg("usage")
        .arg(sample_dir())
        .args(["--since", "2026-11-23T00:00:00Z", "--plot"])
        .arg(dir.join("empty.svg"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("no usage lines in the window"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing to plot"));
    assert!(
        !dir.join("empty.svg").exists(),
        "no empty chart left behind"
    );
}

/// The value of the series `name` (with its labels, as written) in a scrape.
pub(super) fn sample_value(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `wiring`'s metrics served on a free loopback port: its address, the token that stops it,
/// and the serving task.
pub(super) async fn serve_metrics(
    wiring: &Wiring,
    wall: &Arc<dyn Clock>,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let stop = CancellationToken::new();
    let serving =
        tokio::spawn(server.serve(wiring.metrics_sources(Arc::clone(wall)), stop.clone()));
    (addr, stop, serving)
}

pub(super) async fn scrape(addr: std::net::SocketAddr) -> String {
    let reply = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.headers()["content-type"].to_str().unwrap(),
        CONTENT_TYPE_OPENMETRICS
    );
    reply.text().await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn the_metrics_endpoint_counters_move_as_requests_are_made() {
    let sim = simulator(SimConfig::default()).await;
    let config = config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntickers_interval_secs = 0",
        "",
    );
    let stop = CancellationToken::new();
    let wall: Arc<dyn Clock> = Arc::new(bitget_poller::core::clock::SystemClock::new());
    let store = Store::new(StoreConfig::default());
    let mut rx = store.subscribe();
    let wiring = Wiring::new(&config, Arc::clone(&wall), Arc::clone(&store), stop.clone()).unwrap();
    let (addr, server_stop, serving) = serve_metrics(&wiring, &wall).await;
    let requests = "bitget_poller_requests_total{category=\"market\"}";
    let timed = "bitget_poller_request_duration_seconds_count{category=\"market\"}";

    let before = scrape(addr).await;
    assert_eq!(sample_value(&before, requests), Some(0.0), "{before}");
    assert_eq!(sample_value(&before, timed), Some(0.0));
    assert_eq!(
        sample_value(
            &before,
            "bitget_poller_tokens_available{category=\"market\"}"
        ),
        Some(20.0)
    );
    assert_eq!(
        sample_value(&before, "bitget_poller_tier{tier=\"normal\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample_value(&before, "bitget_poller_limiter_backend{backend=\"local\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample_value(&before, "bitget_poller_limiter_backend{backend=\"redis\"}"),
        Some(0.0)
    );

    for _ in 0..3 {
        wiring
            .client
            .http()
            .get(&SERVER_TIME, &[], None)
            .await
            .unwrap();
    }
    let after = scrape(addr).await;
    assert_eq!(sample_value(&after, requests), Some(3.0), "{after}");
    assert_eq!(sample_value(&after, timed), Some(3.0));

    // Poll until each symbol has delivered a closed candle, then read the ages.
    let session = {
        let stop = stop.clone();
        let wall = Arc::clone(&wall);
        let config = config.clone();
        async move {
            let summary = poll_session(&config, &wiring, wall, Instant::now(), stop, false)
                .await
                .unwrap();
            store.close();
            summary
        }
    };
    let watcher = async {
        let mut seen = std::collections::HashSet::new();
        while let Some(event) = rx.recv().await {
            if let MarketEvent::CandleClosed(c) = event {
                seen.insert(c.symbol.to_string());
                if seen.len() == 2 {
                    break;
                }
            }
        }
        let polling = scrape(addr).await;
        stop.cancel();
        while rx.recv().await.is_some() {}
        polling
    };
    let (summary, polling) = tokio::join!(session, watcher);
    server_stop.cancel();
    serving.await.unwrap();
    sim.stop().await;
    let polled = sample_value(&polling, requests).unwrap();
    assert!(
        polled >= 5.0,
        "3 earlier plus a candle request per symbol: {polled}"
    );
    assert!(summary.counters(Category::Market).admitted >= polled as u64);
    assert_eq!(
        sample_value(&polling, "bitget_poller_tier{tier=\"normal\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample_value(&polling, "bitget_poller_symbols_per_iteration"),
        Some(2.0)
    );
    assert_eq!(
        sample_value(&polling, "bitget_poller_stale_streams"),
        Some(0.0)
    );
    let closed = sample_value(&polling, "bitget_poller_closed_candles_total").unwrap();
    assert!(closed >= 2.0, "both symbols delivered history: {closed}");
    assert_eq!(
        sample_value(&polling, "bitget_poller_fetch_failures_total"),
        Some(0.0)
    );
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let age = sample_value(
            &polling,
            &format!("bitget_poller_candle_age_seconds{{symbol=\"{symbol}\",timeframe=\"1m\"}}"),
        )
        .unwrap_or_else(|| panic!("no age for {symbol}: {polling}"));
        // The newest closed candle closed at most one minute (plus this test's run) ago.
        assert!((0.0..=90.0).contains(&age), "{symbol}: {age}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_symbol_without_fresh_candles_is_warned_about_and_summarised() {
    // One clock for the simulator and the poller; after the first pass it jumps 3 minutes.
    // BTCUSDT is fetched again and stays fresh; XRPUSDT is removed (40309), parked, and its
    // last candle is then older than twice its 1m timeframe.
    let start = 1_795_341_600_000;
    let clock = ManualClock::new(start);
    let sim = Simulator::start_with_clock(
        SimConfig {
            removed_symbols: vec!["XRPUSDT".to_owned()],
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let config = config(
        &sim.base_url(),
        "symbols = [\"BTCUSDT\", \"XRPUSDT\"]\ntickers_interval_secs = 0",
        "",
    );
    let jump = {
        let clock = clock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            clock.advance_ms(180_000);
        })
    };
    let run = run_with_clock(&config, Duration::from_millis(3500), Arc::new(clock)).await;
    jump.await.unwrap();
    sim.stop().await;
    let warnings = |symbol: &str| -> Vec<&str> {
        let field = format!("symbol={symbol} ");
        run.log
            .lines()
            .filter(|l| l.contains("event=stale ") && l.contains(&field))
            .collect()
    };
    let xrp = warnings("XRPUSDT");
    assert_eq!(xrp.len(), 1, "one warning, not one per check: {}", run.log);
    // BTCUSDT is stale only if a check falls between the jump and its next fetch; then it
    // must be reported fresh again.
    if !warnings("BTCUSDT").is_empty() {
        assert!(
            run.log.contains("event=fresh symbol=BTCUSDT"),
            "{}",
            run.log
        );
    }
    let warning = xrp[0];
    assert!(warning.contains("symbol=XRPUSDT timeframe=1m"), "{warning}");
    assert!(warning.contains("has_candle=false"), "{warning}");
    assert!(
        warning.contains("reason=\"parked after bitget refused it\""),
        "{warning}"
    );
    assert!(
        warning.contains("stale candles: XRPUSDT 1m has had no new closed candle for 180 s"),
        "{warning}"
    );
    assert_eq!(run.summary.stale_at_exit, 1);
    assert!(run.summary.render().ends_with("stale streams 1"));
    let summary = run
        .log
        .lines()
        .rev()
        .find(|l| l.contains("event=stale_summary"))
        .expect("a summary every usage interval");
    assert!(
        summary.contains("stale=1 streams=2 oldest_s=180 "),
        "measured on the poller's clock: {summary}"
    );
    assert!(summary.contains("symbols=XRPUSDT:1m"), "{summary}");
    assert!(!summary.contains("BTCUSDT"), "{summary}");
}

#[test]
fn the_committed_sample_chart_log_reads_cleanly_and_matches_the_readme() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/sample");
    let files = log_files(&[dir], &PathBuf::from("unused")).unwrap();
    let report = Report::new(&RateLog::read(&files, Window::default()).unwrap());
    assert_eq!(report.unreadable_count, 0, "{:?}", report.unreadable);
    let market = &report.categories[0];
    assert_eq!((market.requests, market.rate_limited), (2370, 1));
    assert_eq!(report.tier_changes, 2);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for line in report.render().lines().take(5) {
        assert!(readme.contains(line), "README is missing: {line}");
    }
}

#[test]
fn usage_names_a_missing_file_and_a_taken_metrics_port_is_refused_before_starting() {
    let output = binary()
        .args(["usage", "no/such/bitget_rate_limits.log"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read no/such/bitget_rate_limits.log"),
        "{stderr}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir("metrics-taken");
    let output = binary()
        .args(["demo", "--duration", "30", "--metrics-addr", &addr])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr} for --metrics-addr")),
        "{stderr}"
    );
    assert!(
        !dir.join("logs").exists(),
        "nothing started, not even the log files"
    );
    assert!(
        output.stdout.is_empty(),
        "not even the simulator: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn usage_json_carries_the_same_figures_and_keeps_stdout_pure() {
    let dir = temp_dir("usage-json");
    let chart = dir.join("usage.svg");
    let output = binary()
        .arg("usage")
        .arg(sample_dir())
        .args(["--json", "--plot"])
        .arg(&chart)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let market = &json["categories"][0];
    assert_eq!(market["category"], "market");
    assert_eq!(market["requests"], 783);
    assert_eq!(market["covered_s"], 55.0);
    assert_eq!(market["p95_per_s"], 19.8);
    assert_eq!(market["rate_limited"], 3);
    assert_eq!(market["wait_s"], 17.5);
    assert_eq!(json["categories"][1]["used_pct"], 27.5);
    assert_eq!(json["tiers_s"]["slow"], 17.2);
    assert_eq!(json["tier_changes"], 4);
    assert_eq!(json["stale"]["streams"][0]["stream"], "XRPUSDT:1m");
    assert_eq!(json["unreadable"]["count"], 4);
    assert_eq!(json["unreadable"]["first"][2]["line"], 4);
    assert_eq!(json["from"], "2026-11-22T10:00:00Z");
    assert!(String::from_utf8_lossy(&output.stderr).contains("chart written to"));
    assert!(std::fs::metadata(&chart).unwrap().len() > 10_000);
}
