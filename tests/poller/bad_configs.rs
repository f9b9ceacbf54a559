//! The bad-config suite: every file in `tests/configs/bad/` is refused by `check-config` with
//! exit code 2 and one line naming the key and what is allowed.

use std::path::Path;
use std::process::Command;

/// File stem, the key the line must name, and the allowed values it must state.
const CASES: &[(&str, &str, &str)] = &[
    (
        "bad_symbol",
        "poll.symbols",
        "must look like BTCUSDT or BTC/USDT:USDT",
    ),
    ("duplicate_symbol", "poll.symbols", "lists BTCUSDT twice"),
    (
        "redis_url_not_a_url",
        "limits.redis_url",
        "write redis://host:port/db",
    ),
    (
        "unknown_limiter_backend",
        "limits.backend",
        "allowed \"local\" or \"redis\"",
    ),
    (
        "egress_bad_address",
        "egress[0].local_address",
        "is not an ip address",
    ),
    (
        "egress_ftp_proxy",
        "egress[0].proxy",
        "allowed socks5, socks5h, http, https",
    ),
    (
        "empty_symbols",
        "poll.symbols",
        "list at least one symbol or write \"all\"",
    ),
    (
        "ftp_base_url",
        "exchange.base_url",
        "must start with https://",
    ),
    (
        "gateway_listen_not_an_address",
        "gateway.listen",
        "write ip:port such as \"127.0.0.1:9810\"",
    ),
    (
        "gateway_queue_too_long",
        "gateway.queue_max_ms",
        "allowed 0 to 60000",
    ),
    (
        "gateway_token_env_not_a_name",
        "gateway.token_env",
        "is not an environment variable name",
    ),
    ("huge_fee_rate", "trading.fee_rate", "from 0 to 0.01"),
    ("base_url_bad_port", "exchange.base_url", "is not a URL"),
    ("base_url_no_host", "exchange.base_url", "is not a URL"),
    ("logging_dir_empty", "logging.dir", "names no folder"),
    (
        "gateway_no_connections",
        "gateway.max_connections",
        "allowed 1 to 100000",
    ),
    (
        "gateway_header_timeout_zero",
        "gateway.header_timeout_secs",
        "allowed 1 to 600",
    ),
    (
        "tickers_interval_negative",
        "poll.tickers_interval_secs",
        "allowed 0 (off), or 0.1 to 86400 seconds",
    ),
    (
        "initial_candles_too_many",
        "poll.initial_candles",
        "allowed 1 to 1000",
    ),
    ("margin_one", "limits.safety_margin", "allowed 0 to 0.5"),
    ("missing_poll_table", "[poll]", "symbols = [\"BTCUSDT\"]"),
    (
        "negative_account_rate",
        "limits.account_per_sec",
        "whole number without quotes, 0 or more",
    ),
    (
        "non_numeric_rate_limit_code",
        "exchange.rate_limit_codes",
        "codes are digits",
    ),
    (
        "starting_cash_not_a_number",
        "trading.starting_usdt",
        "from 1 to 1000000000",
    ),
    ("symbols_word", "poll.symbols", "write \"all\" or a list"),
    ("syntax_error", "line 1", "expected `.`, `]`"),
    (
        "tiers_out_of_order",
        "tiers.crawl_above",
        "at least tiers.slow_above",
    ),
    ("too_many_retries", "retry.max_retries", "allowed 0 to 20"),
    (
        "unknown_key_in_poll",
        "poll.symbol_list",
        "expected one of `symbols`",
    ),
    (
        "bad_metrics_addr",
        "logging.metrics_addr",
        "write ip:port such as \"127.0.0.1:9184\"",
    ),
    (
        "unknown_log_level",
        "logging.level",
        "allowed error, warn, info, debug, trace, off",
    ),
    (
        "unknown_market",
        "exchange.market",
        "allowed \"futures\" or \"spot\"",
    ),
    ("unknown_mode", "poll.mode", "expected `live` or `closed`"),
    (
        "unknown_table",
        "limitz",
        "expected one of `exchange`, `poll`",
    ),
    ("unknown_timeframe", "poll.timeframes", "allowed 1m 3m 5m"),
    (
        "wrong_type_initial_candles",
        "poll.initial_candles",
        "whole number without quotes",
    ),
    ("zero_concurrency", "poll.concurrency", "allowed 1 to 256"),
    (
        "zero_market_rate",
        "limits.market_per_sec",
        "allowed 1 to 1000",
    ),
    (
        "zero_overall_rate",
        "limits.overall_per_min",
        "allowed 1 to 100000",
    ),
    (
        "zero_timeout",
        "exchange.timeout_secs",
        "allowed 0.1 to 300 seconds",
    ),
    (
        "zero_usage_interval",
        "logging.usage_interval_secs",
        "allowed 1 to 3600 seconds",
    ),
];

fn check_config(path: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bitget-poller"))
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_bad_config_is_refused_with_one_line_naming_key_and_allowed_values() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(f, ..)| (*f).to_owned()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every file has an expectation and every expectation a file"
    );
    assert!(CASES.len() >= 20);
    for (stem, key, allowed) in CASES {
        let path = dir.join(format!("{stem}.toml"));
        let (code, stdout, stderr) = check_config(&path);
        assert_eq!(code, Some(2), "{stem}: {stderr}");
        assert!(stdout.is_empty(), "{stem}: nothing on stdout, got {stdout}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stem}: one line, got {stderr}");
        let line = lines[0];
        assert!(
            line.starts_with(&format!("error: {}: ", path.display())),
            "{stem}: {line}"
        );
        assert!(line.contains(key), "{stem}: should name {key}: {line}");
        assert!(
            line.contains(allowed),
            "{stem}: should say {allowed}: {line}"
        );
    }
}

#[test]
fn an_unreadable_config_names_the_file_with_exit_code_2() {
    let missing = Path::new("tests/configs/no-such-file.toml");
    let (code, _, stderr) = check_config(missing);
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1);
    assert!(
        stderr.starts_with("error: cannot read config tests/configs/no-such-file.toml: "),
        "{stderr}"
    );
    // A directory is not a file either.
    let (code, _, stderr) = check_config(Path::new("tests/configs"));
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: cannot read config tests/configs: "),
        "{stderr}"
    );
}
