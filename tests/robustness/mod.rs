//! Property tests: every reply parser, the config loaders and the rate-log reader take any
//! input without panicking, and what they accept reads back exactly. The same entry points are the
//! cargo-fuzz targets in `fuzz/`, which explore far more inputs outside CI.

use std::path::Path;

use bitget_poller::bitget::parse;
use bitget_poller::config::{Config, SymbolSelection};
use bitget_poller::core::market::Symbol;
use bitget_poller::core::timeframe::{Market, Timeframe};
use bitget_poller::strategy::spec::{self, Polled};
use bitget_poller::telemetry::usage::{plot, RateLog, Report, Window};
use proptest::prelude::*;
use rust_decimal::Decimal;

/// Pieces of real replies, so generated bodies get past the JSON layer into the fields.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#"{"code":"00000","msg":"success","requestTime":"#.to_owned()),
        Just(r#","data":["#.to_owned()),
        Just(r#"["1700000000000","1","2","0.5","1.5","10","15"]"#.to_owned()),
        Just(r#"{"symbol":"BTCUSDT","lastPr":"1","ts":"1"}"#.to_owned()),
        Just(r#"{"serverTime":"1"}"#.to_owned()),
        Just(r#"{"marginCoin":"USDT","available":"1"}"#.to_owned()),
        Just(r#"{"orderId":"1","symbol":"X","side":"buy","size":"1","state":"filled"}"#.to_owned()),
        Just("]}".to_owned()),
        Just(",".to_owned()),
        Just("null".to_owned()),
        Just("\"\"".to_owned()),
        "-?[0-9]{1,25}(\\.[0-9]{0,30})?(e[0-9]{1,4})?",
        "\"[ -~]{0,12}\"",
        any::<u64>().prop_map(|n| n.to_string()),
    ]
}

fn stitched() -> impl Strategy<Value = String> {
    proptest::collection::vec(fragment(), 0..12).prop_map(|parts| parts.concat())
}

fn decimal_text() -> impl Strategy<Value = String> {
    (0u64..10_000_000_000, 0u32..9).prop_map(|(mantissa, scale)| {
        Decimal::from_i128_with_scale(i128::from(mantissa), scale).to_string()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsers_never_panic_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse::run_every_parser(&body);
    }

    #[test]
    fn parsers_never_panic_on_stitched_replies(body in stitched()) {
        parse::run_every_parser(body.as_bytes());
    }

    #[test]
    fn candle_rows_read_back_exactly(
        rows in proptest::collection::vec(
            (0u64..4_000_000_000_000, decimal_text(), decimal_text(), decimal_text(),
             decimal_text(), decimal_text(), decimal_text()),
            0..30,
        ),
        request_time in 0u64..4_000_000_000_000,
    ) {
        let body = format!(
            r#"{{"code":"00000","msg":"success","requestTime":{request_time},"data":[{}]}}"#,
            rows.iter()
                .map(|r| format!(r#"["{}","{}","{}","{}","{}","{}","{}"]"#, r.0, r.1, r.2, r.3, r.4, r.5, r.6))
                .collect::<Vec<_>>()
                .join(",")
        );
        let g = Timeframe::parse(Market::Futures, "1m").unwrap();
        let parsed = parse::candles(body.as_bytes(), &Symbol::from_exchange("BTCUSDT"), g).unwrap();
        prop_assert_eq!(parsed.server_time, request_time);
        prop_assert_eq!(parsed.data.len(), rows.len());
        for (c, r) in parsed.data.iter().zip(&rows) {
            prop_assert_eq!(c.open_time, r.0);
            prop_assert_eq!(c.open.to_string(), r.1.clone());
            prop_assert_eq!(c.close.to_string(), r.4.clone());
            prop_assert_eq!(c.quote_volume.to_string(), r.6.clone());
            prop_assert_eq!(c.closed, g.next_open(r.0) <= request_time);
        }
    }

    #[test]
    fn the_config_loader_never_panics(text in "[ -~\n]{0,300}") {
        let _ = Config::parse(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn a_mangled_real_config_is_refused_or_accepted_never_a_panic(
        cut in 0usize..4000,
        insert in "[ -~]{0,8}",
    ) {
        let real = include_str!("../../config/bitget.toml");
        let mut cut = cut.min(real.len());
        while !real.is_char_boundary(cut) {
            cut -= 1;
        }
        let text = format!("{}{insert}{}", &real[..cut], &real[cut..]);
        if let Err(e) = Config::parse(&text, Path::new("fuzz.toml")) {
            // Every problem line names the file.
            for line in e.to_string().lines() {
                prop_assert!(line.starts_with("fuzz.toml: "), "{}", line);
            }
        }
    }

    #[test]
    fn the_strategy_loader_never_panics(text in "[ -~\n]{0,300}") {
        let timeframes = vec![Timeframe::parse(Market::Futures, "1m").unwrap()];
        let _ = spec::parse(&text, Path::new("s.toml"), Polled {
            market: Market::Futures,
            timeframes: &timeframes,
            symbols: &SymbolSelection::All,
        });
    }
}

#[test]
fn extreme_open_times_do_not_panic() {
    // Regression: found by the properties above.
    for tf in ["1m", "1M", "1Wutc", "3D"] {
        let g = Timeframe::parse(Market::Futures, tf).unwrap();
        for t in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            let body = format!(
                r#"{{"code":"00000","msg":"success","requestTime":"{t}","data":[["{t}","1","1","1","1","1","1"]]}}"#
            );
            let parsed = parse::candles(body.as_bytes(), &Symbol::from_exchange("BTCUSDT"), g);
            assert_eq!(parsed.unwrap().data.len(), 1, "{tf} {t}");
        }
    }
}

#[test]
fn a_value_with_a_line_break_is_still_reported_on_one_line() {
    // Regression: found by a_mangled_real_config_is_refused_or_accepted_never_a_panic.
    let error = Config::parse(
        "[poll]\nsymbols = [\"BTC\\nUSDT\"]\n",
        Path::new("fuzz.toml"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.starts_with("fuzz.toml: poll.symbols: symbol 'BTC\\nUSDT'"),
        "{error}"
    );
}

/// Rate-log lines with every field drawn from real names, garbage and extreme numbers.
fn rate_log_line() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        Just("0".to_owned()),
        Just("NaN".to_owned()),
        Just("-1".to_owned()),
        Just("1e308".to_owned()),
        Just("inf".to_owned()),
        "[0-9.]{1,6}",
    ];
    let name = prop_oneof![
        Just("market"),
        Just("account"),
        Just("trade"),
        Just("bogus"),
        Just("normal"),
        Just("slow"),
        Just("crawl"),
    ];
    let event = prop_oneof![
        Just("usage"),
        Just("session"),
        Just("rate_limited"),
        Just("limit_follow"),
        Just("tier_change"),
        Just("stale_summary"),
        Just("stale"),
        Just("other"),
    ];
    (
        0u64..=86_400,
        event,
        name.clone(),
        name,
        proptest::collection::vec(number, 8),
    )
        .prop_map(|(secs, event, a, b, n)| {
            let time = humantime::format_rfc3339_micros(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_300_000 + secs),
            );
            format!(
                "{time}  INFO m event={event} category={a} requests={} req_per_s={} limit={} waited={} wait_ms={} tier={b} interval_ms={} from={a} to={b} effective_limit={} stale={} streams={} symbols=\"X:1m,+2 more\" symbol=X timeframe=1m",
                n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[0]
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_usage_reader_never_panics_on_any_text(text in "\\PC{0,200}(\n\\PC{0,200}){0,3}") {
        let log = RateLog::from_text("any.log", &text, Window::default());
        let _ = Report::new(&log).render();
    }

    #[test]
    fn usage_reports_and_charts_take_any_numbers(lines in proptest::collection::vec(rate_log_line(), 1..10)) {
        let log = RateLog::from_text("gen.log", &lines.join("\n"), Window::default());
        let report = Report::new(&log);
        let text = report.render();
        prop_assert!(text.contains("unreadable lines: "));
        let path = std::env::temp_dir().join(format!("bgp-prop-{}.svg", std::process::id()));
        match plot::plot(&log, &report, &path) {
            Ok(()) => prop_assert!(std::fs::metadata(&path).map(|m| m.len() > 0).unwrap_or(false)),
            Err(plot::PlotError::Empty) => prop_assert!(log.intervals.is_empty()),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
