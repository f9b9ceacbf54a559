//! `run`, `demo` and `check-config`: config in, poller session out, exit code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::args::{DemoArgs, RunArgs};
use super::sim::render_sim_summary;
use super::stop::wait_for_stop;
use crate::app::{self, Report, RunError, RunOptions};
use crate::bitget::credential::Credentials;
use crate::config::{Config, ConfigError};
use crate::core::clock::SystemClock;
use crate::core::market::SymbolSelection;
use crate::gateway::config::Token;
use crate::gateway::{check_exposure, GatewayError};
use crate::strategy::StrategySpec;
use crate::telemetry::init_logging;
use crate::telemetry::metrics::MetricsServer;
use crate::trading::setup::{builtin_strategies, load_strategies, Venue};
use bitget_sim::{SimConfig, Simulator, DEMO_API_KEY, DEMO_API_PASSPHRASE, DEMO_API_SECRET};

/// `config/demo.toml` as built, for when `demo` runs outside the repository.
const EMBEDDED_DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
const DEMO_CONFIG: &str = "config/demo.toml";

pub(super) fn config_failed(error: &ConfigError) -> ExitCode {
    for line in error.to_string().lines() {
        eprintln!("error: {line}");
    }
    ExitCode::from(2)
}

pub(super) fn check_config(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            let strategies = if config.trading.enabled {
                match load_strategies(&config.trading, &config.poll) {
                    Ok(specs) => format!(
                        ", {} strategies from {}",
                        specs.len(),
                        config.trading.strategies_dir.display()
                    ),
                    Err(error) => {
                        for line in error.to_string().lines() {
                            eprintln!("error: {line}");
                        }
                        return ExitCode::from(2);
                    }
                }
            } else {
                ", trading off".to_owned()
            };
            let symbols = match &config.poll.symbols {
                SymbolSelection::All => "all listed".to_owned(),
                SymbolSelection::List(list) => list.len().to_string(),
            };
            outln!(
                "{}: ok ({symbols} symbols, {:?} mode, timeframes {}, market {}/s, against {}{strategies})",
                path.display(),
                config.poll.mode,
                config
                    .poll
                    .timeframes
                    .iter()
                    .map(|t| t.rest())
                    .collect::<Vec<_>>()
                    .join(" "),
                config.limits.per_second[0],
                config.client.base_url
            );
            for note in &config.notes {
                outln!("note: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => config_failed(&error),
    }
}

/// `run`, or with `gateway` (`Some(--listen)`) `gateway`.
pub(super) async fn run(args: RunArgs, gateway: Option<Option<SocketAddr>>) -> ExitCode {
    let mut config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => return config_failed(&error),
    };
    if let Some(url) = args.base_url {
        if let Err(problem) = crate::config::check_base_url(url.trim()) {
            eprintln!("error: --base-url '{url}' {problem}");
            return ExitCode::from(2);
        }
        config.client.base_url = url.trim_end_matches('/').to_owned();
    }
    let venue = if args.live {
        if !config.trading.enabled {
            eprintln!(
                "error: --live needs [trading] enabled = true in {}",
                args.config.display()
            );
            return ExitCode::from(2);
        }
        // Asked for only now: nothing else needs credentials.
        match crate::bitget::credential::from_env() {
            Ok(credentials) => Venue::Live(credentials),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        Venue::Paper
    };
    let specs = match strategies(&config, false) {
        Ok(specs) => specs,
        Err(code) => return code,
    };
    let metrics = match bind_metrics(args.metrics_addr.or(config.metrics_addr)).await {
        Ok(metrics) => metrics,
        Err(code) => return code,
    };
    let gateway = match gateway {
        Some(listen) => match bind_gateway(&mut config, listen).await {
            Ok(listener) => Some(listener),
            Err(code) => return code,
        },
        None => None,
    };
    poll(config, args.duration, venue, specs, metrics, gateway).await
}

/// Reads the gateway's token from the environment, checks the address is safe to listen
/// on and binds it, before anything else starts.
async fn bind_gateway(
    config: &mut Config,
    listen: Option<SocketAddr>,
) -> Result<TcpListener, ExitCode> {
    let gw = &mut config.gateway;
    if let Some(addr) = listen {
        gw.listen = addr;
    }
    gw.token = std::env::var(&gw.token_env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Token::new(t.trim()));
    if let Err(error) = check_exposure(gw) {
        eprintln!("error: {error}");
        return Err(ExitCode::from(2));
    }
    match TcpListener::bind(gw.listen).await {
        Ok(listener) => Ok(listener),
        Err(source) => {
            eprintln!(
                "error: {}",
                GatewayError::Bind {
                    addr: gw.listen,
                    source
                }
            );
            Err(ExitCode::from(2))
        }
    }
}

/// How to point ccxt and freqtrade at the gateway.
fn print_gateway_help(addr: SocketAddr, token: bool) {
    let base = format!("http://{addr}");
    outln!("gateway: {base}  (every bot on this machine: point it here instead of api.bitget.com)");
    outln!("  ccxt:      ex = ccxt.bitget({{...}}); ex.urls['api'] = {{k: '{base}' for k in ex.urls['api']}}");
    outln!("  freqtrade: \"exchange\": {{\"name\": \"bitget\", \"ccxt_config\": {{\"urls\": {{\"api\": {{<each key>: \"{base}\"}}}}}}, \"ccxt_async_config\": <the same>}}  (keys in the README)");
    if token {
        outln!("  token: send it in the X-Gateway-Token header (ccxt: ex.headers = {{'X-Gateway-Token': ...}})");
    }
}

/// The strategy instances to run; `demo` falls back to the built-in one outside the
/// repository.
fn strategies(config: &Config, demo: bool) -> Result<Vec<StrategySpec>, ExitCode> {
    if !config.trading.enabled {
        return Ok(Vec::new());
    }
    if demo && !config.trading.strategies_dir.is_dir() {
        return Ok(builtin_strategies(&config.poll));
    }
    load_strategies(&config.trading, &config.poll).map_err(|error| {
        for line in error.to_string().lines() {
            eprintln!("error: {line}");
        }
        ExitCode::from(2)
    })
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
    let metrics = match bind_metrics(args.metrics_addr.or(config.metrics_addr)).await {
        Ok(metrics) => metrics,
        Err(code) => return code,
    };
    // Every port is bound before the banner, so a taken one is the only line printed.
    let gateway = if args.gateway {
        match bind_gateway(&mut config, args.listen).await {
            Ok(listener) => Some(listener),
            Err(code) => return code,
        }
    } else {
        None
    };
    let sim_config = SimConfig {
        symbols: args.symbols,
        network: bitget_sim::network::NetworkConfig {
            jitter_ms: args.jitter_ms,
            ..Default::default()
        },
        ..SimConfig::default()
    };
    let sim = match Simulator::start(sim_config, ([127, 0, 0, 1], 0).into()).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    config.client.base_url = sim.base_url();
    // The simulator's candles are not the exchange's: they never go into the candle file.
    config.disk = None;
    outln!(
        "demo: Bitget simulator with {} contracts on {} (strict 20/s windows{}), polled with {}",
        args.symbols,
        sim.base_url(),
        if args.jitter_ms > 0 {
            format!(", requests arrive 0-{} ms late", args.jitter_ms)
        } else {
            String::new()
        },
        source.display()
    );
    outln!("      rate lines: tail -F logs/bitget_rate_limits.log   (Ctrl-C to stop)");
    outln!("      afterwards: bitget-poller usage --plot usage.svg   (where the budget went)");
    let venue = if args.live {
        outln!(
            "      --live: real signed orders to the simulator with its demo key {DEMO_API_KEY}"
        );
        Venue::Live(Credentials::new(
            DEMO_API_KEY,
            DEMO_API_SECRET,
            DEMO_API_PASSPHRASE,
        ))
    } else {
        outln!("      paper trading: signals and fills in logs/trading_unified.log (grep event=)");
        Venue::Paper
    };
    let specs = match strategies(&config, true) {
        Ok(specs) => specs,
        Err(code) => {
            let _ = sim.stop().await;
            return code;
        }
    };
    let code = poll(config, args.duration, venue, specs, metrics, gateway).await;
    let stats = sim.stop().await;
    outln!("{}", render_sim_summary(&stats));
    code
}

/// Binds `--metrics-addr` before anything else starts, so a taken port is a usage error
/// (exit 2), not a half-started run.
async fn bind_metrics(addr: Option<SocketAddr>) -> Result<Option<MetricsServer>, ExitCode> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    if !addr.ip().is_loopback() {
        eprintln!("warning: --metrics-addr {addr} is reachable from other hosts; the metrics name every polled symbol and the request rates");
    }
    MetricsServer::bind(addr).await.map(Some).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })
}

/// Runs the app with file logging and signals; prints the summaries.
async fn poll(
    config: Config,
    duration: Option<Duration>,
    venue: Venue,
    specs: Vec<StrategySpec>,
    metrics: Option<MetricsServer>,
    gateway: Option<TcpListener>,
) -> ExitCode {
    let guards = match init_logging(&config.logging) {
        Ok(guards) => guards,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    for note in &config.notes {
        tracing::warn!("{note}");
    }
    if let Some(addr) = metrics.as_ref().and_then(MetricsServer::local_addr) {
        outln!("metrics: http://{addr}/metrics");
    }
    if let Some(addr) = gateway.as_ref().and_then(|l| l.local_addr().ok()) {
        print_gateway_help(addr, config.gateway.token.is_some());
    }
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let reason = wait_for_stop(duration).await;
            tracing::info!(
                reason,
                "stopping: no new requests, finishing in-flight ones"
            );
            shutdown.cancel();
            // A second Ctrl-C or SIGTERM means now: the operator will not wait for the grace.
            let again = wait_for_stop(None).await;
            eprintln!("{again} again: exiting at once, without the summaries");
            std::process::exit(130);
        }
    });
    let options = RunOptions {
        venue,
        specs,
        metrics,
        wall: Arc::new(SystemClock::new()),
        gateway,
    };
    let report = app::run(&config, options, shutdown).await;
    signals.abort();
    let _ = signals.await;
    let code = match report {
        Ok(report) => render_report(report),
        Err(error) => {
            failed(&error);
            ExitCode::from(error.exit_code())
        }
    };
    // Flushed first, so lines lost in the last writes are counted too.
    for problem in guards.finish() {
        outln!("note: {problem}");
    }
    code
}

fn failed(error: &dyn std::fmt::Display) {
    for line in error.to_string().lines() {
        tracing::error!("{line}");
        eprintln!("error: {line}");
    }
}

/// Prints what each part did; the exit code is 1 if any part failed.
fn render_report(report: Report) -> ExitCode {
    if let Some(error) = &report.setup {
        // Trading could not start and stopped the run: that line is what matters.
        failed(error);
        return ExitCode::from(error.exit_code());
    }
    if let Err(error @ RunError::Unreachable { .. }) = &report.poll {
        // Nothing was fetched or traded; zeros would only hide the one line that matters.
        failed(error);
        return ExitCode::from(error.exit_code());
    }
    let mut code = match report.poll {
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
            failed(&error);
            ExitCode::from(error.exit_code())
        }
    };
    match report.trading {
        Some(Ok(summary)) => outln!("{}", summary.render()),
        Some(Err(error)) => {
            failed(&error);
            code = ExitCode::from(1);
        }
        None => {}
    }
    if let Some(Err(error)) = report.account {
        failed(&error);
        code = ExitCode::from(1);
    }
    code
}
