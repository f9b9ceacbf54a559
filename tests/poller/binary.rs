//! The binary end to end: exit codes, log files, flushing on shutdown.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bitget_sim::SimConfig;

use super::helpers::{binary, simulator, temp_dir};

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("poll.toml");
    let logs = dir.join("logs");
    std::fs::write(
        &path,
        format!(
            "[poll]\nsymbols = [\"BTCUSDT\", \"ETH/USDT:USDT\"]\ntickers_interval_secs = 1\n[feed]\nsource = \"rest\"\n[logging]\ndir = '{}'\nusage_interval_secs = 1\n[store]\npath = '{}'\n",
            logs.display(),
            dir.join("candles.sqlite").display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_duration_writes_both_logs_and_exits_zero() {
    let sim = simulator(SimConfig::default()).await;
    let dir = temp_dir("run-duration");
    let config = write_config(&dir);
    let base = sim.base_url();
    let output = tokio::task::spawn_blocking(move || {
        binary()
            .args(["run", "--config"])
            .arg(&config)
            .args(["--base-url", &base, "--duration", "2.5"])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    sim.stop().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("poller summary after"), "{stdout}");
    assert!(stdout.contains("market"), "{stdout}");
    assert!(
        !output.stderr.contains(&0x1b),
        "no colour codes when stderr is not a terminal"
    );
    let rate = std::fs::read_to_string(dir.join("logs/bitget_rate_limits.log")).unwrap();
    assert!(
        rate.lines().filter(|l| l.contains("event=usage")).count() >= 2,
        "{rate}"
    );
    let session = rate
        .lines()
        .find(|l| l.contains("event=session"))
        .expect("session line flushed");
    for key in [
        "category=market",
        "req_per_s=",
        "limit=20",
        "used_pct=",
        "status=",
        "waited=",
        "wait_ms=",
        "rate_limited_60s=0",
        "symbols_per_iteration=2",
    ] {
        assert!(session.contains(key), "{key} missing in {session}");
    }
    let unified = std::fs::read_to_string(dir.join("logs/trading_unified.log")).unwrap();
    assert!(
        unified.contains("polling started") && unified.contains("poller stopped"),
        "{unified}"
    );
    assert!(
        !unified.contains("event=usage") || unified.contains("bitget_rate"),
        "unified holds everything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_the_websocket_feed_writes_its_lines_and_summary() {
    let sim = simulator(SimConfig::default()).await;
    let dir = temp_dir("run-feed");
    let logs = dir.join("logs");
    let config = dir.join("feed.toml");
    std::fs::write(
        &config,
        format!(
            "[poll]\nsymbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntickers_interval_secs = 0\n[logging]\ndir = '{}'\nusage_interval_secs = 1\n[trading]\nenabled = false\n[store]\npath = '{}'\n",
            logs.display(),
            dir.join("candles.sqlite").display()
        ),
    )
    .unwrap();
    let base = sim.base_url();
    let output = tokio::task::spawn_blocking(move || {
        binary()
            .args(["run", "--config"])
            .arg(&config)
            .args(["--base-url", &base, "--duration", "2.5"])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stats = sim.stop().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("websocket feed: 1 sockets (1 up at the end), 2 channels"),
        "{stdout}"
    );
    assert_eq!(stats.ws.subscribed, 2);
    assert_eq!(
        stats.endpoints.get("/api/v2/mix/market/candles"),
        None,
        "no REST candles"
    );
    let rate = std::fs::read_to_string(logs.join("bitget_rate_limits.log")).unwrap();
    let interval = rate
        .lines()
        .find(|l| l.contains("event=feed_usage"))
        .unwrap_or_else(|| panic!("an interval line: {rate}"));
    assert!(
        interval.contains("channels=2") && interval.contains("sockets_up=1"),
        "{interval}"
    );
    let session = rate
        .lines()
        .find(|l| l.contains("event=feed_session"))
        .unwrap_or_else(|| panic!("a session line: {rate}"));
    for key in [
        "sockets=1",
        "channels=2",
        "ws_errors=-",
        "closed_rest=0",
        "reconnects=0",
    ] {
        assert!(session.contains(key), "{key} in {session}");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_flushes_the_logs() {
    let sim = simulator(SimConfig::default()).await;
    let dir = temp_dir("run-sigterm");
    let config = write_config(&dir);
    let child = binary()
        .args(["run", "--config"])
        .arg(&config)
        .args(["--base-url", &sim.base_url()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rate_log = dir.join("logs/bitget_rate_limits.log");
    // Wait until the first usage line is on disk, so the run is really polling.
    let mut waited = Duration::ZERO;
    while !std::fs::read_to_string(&rate_log).is_ok_and(|t| t.contains("event=usage")) {
        assert!(waited < Duration::from_secs(20), "no usage line appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    sim.stop().await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("poller summary after"));
    let rate = std::fs::read_to_string(&rate_log).unwrap();
    assert!(
        rate.contains("event=session"),
        "the final line was flushed: {rate}"
    );
    let unified = std::fs::read_to_string(dir.join("logs/trading_unified.log")).unwrap();
    assert!(unified.contains("reason=\"sigterm\""), "{unified}");
}

#[test]
fn bad_config_exits_2_with_the_key_and_nothing_started() {
    let dir = temp_dir("bad-config");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[poll]\nsymbols = [\"BTCUSDT\"]\n[limits]\nmarket_per_sec = 0\nsafety_margin = 2\n",
    )
    .unwrap();
    for args in [
        vec!["check-config", path.to_str().unwrap()],
        vec!["run", "--config", path.to_str().unwrap()],
    ] {
        let output = binary().args(&args).current_dir(&dir).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("limits.market_per_sec = 0 is out of range; allowed 1 to 1000"),
            "{stderr}"
        );
        assert!(
            stderr.contains("limits.safety_margin = 2 is out of range"),
            "{stderr}"
        );
        assert!(!dir.join("logs").exists(), "nothing started");
    }
    let output = binary()
        .args(["run", "--config", "x.toml", "--duration", "soon"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("'soon' is not a duration in seconds"));
}

#[test]
fn demo_listen_without_gateway_is_refused() {
    let output = binary()
        .args(["demo", "--listen", "127.0.0.1:0", "--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--gateway"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing started");
}

#[test]
fn shipped_configs_are_valid() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for file in ["config/bitget.toml", "config/demo.toml"] {
        let output = binary()
            .arg("check-config")
            .arg(root.join(file))
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_simulator_accepts_a_limit_schedule_and_survives_a_closed_stdout() {
    let output = binary()
        .args([
            "sim",
            "--addr",
            "127.0.0.1:0",
            "--market-limit-schedule",
            "20,1:5,2:20",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut child = binary()
        .args(["sim", "--addr", "127.0.0.1:0", "--duration", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_gateway_other_hosts_could_reach_needs_a_token_and_says_where_to_put_it() {
    let dir = temp_dir("gateway-open");
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        "[poll]\nsymbols = [\"BTCUSDT\"]\n[trading]\nenabled = false\n",
    )
    .unwrap();
    let output = binary()
        .args([
            "gateway",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .env_remove("BITGET_GATEWAY_TOKEN")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BITGET_GATEWAY_TOKEN"), "{stderr}");
    assert!(stderr.contains("X-Gateway-Token"), "{stderr}");
    assert!(!dir.join("logs").exists(), "nothing started");
}
