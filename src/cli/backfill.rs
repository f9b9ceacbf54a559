//! `backfill`: history into the candle file, with a progress bar and ETA on a terminal and
//! plain progress lines otherwise.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::args::BackfillArgs;
use super::poll::config_failed;
use super::stop::wait_for_stop;
use crate::app::{self, BackfillRequest};
use crate::config::Config;
use crate::core::clock::{Clock, SystemClock};
use crate::core::market::Symbol;
use crate::core::timeframe::Timeframe;
use crate::store::SeriesKey;
use crate::telemetry::usage::parse_time;

fn ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn fail(text: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {text}");
    ExitCode::from(2)
}

pub(super) async fn backfill(args: BackfillArgs) -> ExitCode {
    let mut config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => return config_failed(&error),
    };
    if let Some(url) = &args.base_url {
        if let Err(problem) = crate::config::check_base_url(url.trim()) {
            return fail(format!("--base-url '{url}' {problem}"));
        }
        config.client.base_url = url.trim_end_matches('/').to_owned();
    }
    let market = config.poll.market;
    let mut series = Vec::new();
    for text in &args.symbols {
        let symbol = match Symbol::parse(text) {
            Ok(symbol) => symbol,
            Err(error) => return fail(format!("--symbols: {error}")),
        };
        for tf in &args.timeframes {
            let Some(timeframe) = Timeframe::parse(market, tf) else {
                let spelled: Vec<&str> = Timeframe::all(market).map(Timeframe::rest).collect();
                return fail(format!(
                    "--timeframes {tf} is not one of {market:?}'s: {}",
                    spelled.join(", ")
                ));
            };
            series.push(SeriesKey::new(symbol.clone(), timeframe));
        }
    }
    let wall: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let now = SystemTime::now();
    let since = match parse_time(&args.since, now) {
        Ok(t) => ms(t),
        Err(e) => return fail(format!("--since {e}")),
    };
    let until = match args.until.as_deref().map(|t| parse_time(t, now)) {
        None => wall.now_ms(),
        Some(Ok(t)) => ms(t),
        Some(Err(e)) => return fail(format!("--until {e}")),
    };
    if since >= wall.now_ms() {
        return fail(format!(
            "--since {} is in the future; nothing to fetch",
            args.since
        ));
    }
    if since >= until {
        return fail("--since is not before --until; nothing to fetch");
    }
    let stop = CancellationToken::new();
    let signals = tokio::spawn({
        let stop = stop.clone();
        async move {
            let reason = wait_for_stop(None).await;
            eprintln!("{reason}: stopping after the page in flight; run the same command again to continue");
            stop.cancel();
        }
    });
    let request = BackfillRequest {
        series,
        since,
        until,
    };
    let mut shown = Progress::new();
    let result = app::backfill(
        &config,
        &args.config.display().to_string(),
        &request,
        wall,
        stop.clone(),
        |done, total| shown.update(done.pages, total, done.rows),
    )
    .await;
    shown.finish();
    signals.abort();
    let report = match result {
        Ok(report) => report,
        Err(error) => return fail(error),
    };
    let done = &report.done;
    println!(
        "backfill: {} of {} pages, {} candles written{}",
        done.pages,
        report.total_pages,
        done.rows,
        if done.stopped {
            "; stopped: the same command continues"
        } else {
            ""
        }
    );
    let mut empty = Vec::new();
    for (key, rows, first) in &report.series {
        match first {
            Some(first) => println!(
                "  {} {}: {rows} candles held in the range, the first at {}",
                key.symbol,
                key.timeframe,
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(*first))
            ),
            None => empty.push(format!("{} {}", key.symbol, key.timeframe)),
        }
    }
    if done.stopped {
        return ExitCode::from(130);
    }
    if !empty.is_empty() {
        return fail(format!(
            "bitget has no candles of {} in the range (before the symbol was listed?); check --since",
            empty.join(", ")
        ));
    }
    ExitCode::SUCCESS
}

/// A progress bar with ETA on a terminal; otherwise a plain line every 5 s and at the end.
struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Option<Instant>,
    last: (u64, u64, u64),
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {pos}/{len} pages  {msg}  {elapsed_precise} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_line: None,
            last: (0, 0, 0),
        }
    }

    fn update(&mut self, pages: u64, total: u64, rows: u64) {
        self.last = (pages, total, rows);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(pages);
            bar.set_message(format!("{rows} candles"));
            return;
        }
        if self
            .last_line
            .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
            && pages < total
        {
            return;
        }
        self.last_line = Some(Instant::now());
        self.line();
    }

    fn line(&self) {
        let (pages, total, rows) = self.last;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if pages > 0 && total > pages {
            format!(
                ", eta {:.0} s",
                elapsed / pages as f64 * (total - pages) as f64
            )
        } else {
            String::new()
        };
        eprintln!(
            "backfill: {pages}/{total} pages ({:.0} %), {rows} candles, {elapsed:.0} s{eta}",
            if total == 0 {
                100.0
            } else {
                pages as f64 * 100.0 / total as f64
            }
        );
    }

    fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish(),
            None => self.line(),
        }
    }
}
