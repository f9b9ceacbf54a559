//! `run`, `demo` and `check-config`: config in, poller session out, exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{render_sim_summary, wait_for_stop, DemoArgs, RunArgs};
use crate::clock::SystemClock;
use crate::config::{Config, ConfigError, SymbolSelection};
use crate::runner::run_session;
use crate::scheduler::MarketEvent;
use crate::sim::{SimConfig, Simulator};
use crate::telemetry::init_logging;

/// `config/demo.toml` as built, for when `demo` runs outside the repository.
const EMBEDDED_DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
const DEMO_CONFIG: &str = "config/demo.toml";

fn config_failed(error: &ConfigError) -> ExitCode {
    for line in error.to_string().lines() {
        eprintln!("error: {line}");
    }
    ExitCode::from(2)
}

pub(super) fn check_config(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            let symbols = match &config.poll.symbols {
                SymbolSelection::All => "all listed".to_owned(),
                SymbolSelection::List(list) => list.len().to_string(),
            };
            outln!(
                "{}: ok ({symbols} symbols, {:?} mode, timeframes {}, market {}/s, against {})",
                path.display(),
                config.poll.mode,
                config
                    .poll
                    .timeframes
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                config.limits.per_second[0],
                config.client.base_url
            );
            ExitCode::SUCCESS
        }
        Err(error) => config_failed(&error),
    }
}

pub(super) async fn run(args: RunArgs) -> ExitCode {
    let mut config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => return config_failed(&error),
    };
    if let Some(url) = args.base_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            eprintln!("error: --base-url '{url}' must start with https:// or http://");
            return ExitCode::from(2);
        }
        config.client.base_url = url.trim_end_matches('/').to_owned();
    }
    poll(config, args.duration).await
}

pub(super) async fn demo(args: DemoArgs) -> ExitCode {
    let (text, source) = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (text, path.clone()),
            Err(source) => {
                return config_failed(&ConfigError::Read {
                    path: path.clone(),
                    source,
                })
            }
        },
        None => match std::fs::read_to_string(DEMO_CONFIG) {
            Ok(text) => (text, PathBuf::from(DEMO_CONFIG)),
            Err(_) => (
                EMBEDDED_DEMO_CONFIG.to_owned(),
                PathBuf::from("(built-in demo.toml)"),
            ),
        },
    };
    let mut config = match Config::parse(&text, &source) {
        Ok(config) => config,
        Err(error) => return config_failed(&error),
    };
    let sim_config = SimConfig {
        symbols: args.symbols,
        ..SimConfig::default()
    };
    let sim = match Simulator::start(sim_config, ([127, 0, 0, 1], 0).into()).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(match error {
                crate::sim::SimError::Bind { .. } => 1,
                _ => 2,
            });
        }
    };
    config.client.base_url = sim.base_url();
    outln!(
        "demo: Bitget simulator with {} contracts on {} (strict 20/s windows), polled with {}",
        args.symbols,
        sim.base_url(),
        source.display()
    );
    outln!("      rate lines: tail -F logs/bitget_rate_limits.log   (Ctrl-C to stop)");
    let code = poll(config, args.duration).await;
    let stats = sim.stop().await;
    outln!("{}", render_sim_summary(&stats));
    code
}

/// Runs one session with file logging, signals and a consumer; prints the summary.
async fn poll(config: Config, duration: Option<Duration>) -> ExitCode {
    let guards = match init_logging(&config.logging) {
        Ok(guards) => guards,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let stop = CancellationToken::new();
    let (events, receiver) = mpsc::channel(config.poll.channel_capacity);
    let consumer = tokio::spawn(log_events(receiver));
    let signals = tokio::spawn({
        let stop = stop.clone();
        async move {
            let reason = wait_for_stop(duration).await;
            tracing::info!(
                reason,
                "stopping: no new requests, finishing in-flight ones"
            );
            stop.cancel();
        }
    });
    let result = run_session(&config, Arc::new(SystemClock::new()), events, stop).await;
    signals.abort();
    let _ = signals.await;
    let _ = consumer.await;
    let code = match result {
        Ok(summary) => {
            tracing::info!(
                requests = summary
                    .categories
                    .iter()
                    .map(|(_, k)| k.admitted)
                    .sum::<u64>(),
                rate_limited = summary
                    .categories
                    .iter()
                    .map(|(_, k)| k.rate_limited)
                    .sum::<u64>(),
                closed_delivered = summary.closed_delivered,
                "poller stopped"
            );
            outln!("{}", summary.render());
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    };
    drop(guards);
    code
}

/// The stand-in consumer until strategies exist: logs what arrives.
async fn log_events(mut receiver: mpsc::Receiver<MarketEvent>) {
    while let Some(event) = receiver.recv().await {
        match event {
            MarketEvent::CandleClosed(c) => {
                tracing::debug!(symbol = %c.symbol, timeframe = %c.timeframe, open_time = c.open_time, close = %c.close, "closed candle")
            }
            MarketEvent::CandleForming(c) => {
                tracing::trace!(symbol = %c.symbol, close = %c.close, "forming candle")
            }
            MarketEvent::Tickers { tickers, .. } => {
                tracing::debug!(count = tickers.len(), "tickers")
            }
        }
    }
}
