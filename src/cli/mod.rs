//! The `bitget-poller` command line: parsing, logging setup, signals and exit codes.
//!
//! Exit codes: 0 success, 2 bad usage or configuration (nothing was started), 1 a runtime
//! failure. `anyhow` is used only here, at the edge.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// `println!` that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod poll;
mod usage;

use crate::bitget::credential::Credentials;
use crate::sim::faults::FaultConfig;
use crate::sim::limits::LimitConfig;
use crate::sim::network::NetworkConfig;
use crate::sim::record::StatsSnapshot;
use crate::sim::{
    SimConfig, SimError, Simulator, DEMO_API_KEY, DEMO_API_PASSPHRASE, DEMO_API_SECRET,
};

/// Rate-limit-exact Bitget market-data poller, with a built-in Bitget simulator.
#[derive(Debug, Parser)]
#[command(name = "bitget-poller", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Poll Bitget as the config says, until Ctrl-C, SIGTERM or --duration.
    Run(RunArgs),
    /// Start the built-in simulator on a free loopback port and poll it with config/demo.toml.
    Demo(DemoArgs),
    /// Check a config file and exit: 0 if it is valid, 2 with every problem listed if not.
    CheckConfig(CheckConfigArgs),
    /// Serve a local Bitget REST v2 simulator (rate limits, errors, signing, faults).
    Sim(Box<SimArgs>),
    /// Report rate-budget use from the rate log (mean and p95 req/s, % of limit, 429s,
    /// waits, time per adaptive tier, stale symbols); --plot draws it.
    Usage(UsageArgs),
}

#[derive(Debug, Args)]
struct UsageArgs {
    /// Rate log files or log directories; default: bitget_rate_limits.log and its rotated
    /// copies in logs/ (or in the --config file's [logging] dir).
    files: Vec<PathBuf>,
    /// Only lines after this time: 2026-11-22T18:00:00Z, "2026-11-22 18:00" (UTC), or a
    /// duration ago such as 30m, 2h, 1d.
    #[arg(long)]
    since: Option<String>,
    /// Only lines up to this time, in the same forms as --since.
    #[arg(long)]
    until: Option<String>,
    /// Also draw the usage over time into this .svg or .png file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Take the log directory from this config's [logging] dir.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the report as JSON (times in RFC 3339, durations in seconds) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The TOML config, e.g. config/bitget.toml.
    #[arg(long)]
    config: PathBuf,
    /// Poll this server instead of exchange.base_url (e.g. a simulator).
    #[arg(long)]
    base_url: Option<String>,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Place real orders, signed with BITGET_API_KEY, BITGET_API_SECRET and
    /// BITGET_API_PASSPHRASE. Without it, strategies trade on paper.
    #[arg(long)]
    live: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9184 (overrides
    /// [logging] metrics_addr).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Number of simulated USDT-FUTURES contracts.
    #[arg(long, default_value_t = 200)]
    symbols: usize,
    /// Use this config instead of config/demo.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Send real signed orders to the simulator (with its demo key) instead of paper trading.
    #[arg(long)]
    live: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9184 (overrides
    /// [logging] metrics_addr).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Give the simulator a real network: each request arrives up to MS milliseconds late
    /// (uniform), as on an ordinary internet path.
    #[arg(long, default_value_t = 0, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    jitter_ms: u64,
}

#[derive(Debug, Args)]
struct CheckConfigArgs {
    /// The TOML config to check.
    file: PathBuf,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 365.0 * 86_400.0 => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(format!(
            "'{text}' is not a duration in seconds; give a number above 0, e.g. 60"
        )),
    }
}

/// Options of `bitget-poller sim`.
#[derive(Debug, Args)]
struct SimArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9800")]
    addr: SocketAddr,
    /// Number of USDT-FUTURES contracts: BTCUSDT, ETHUSDT, ... then generated names.
    #[arg(long, default_value_t = 50)]
    symbols: usize,
    /// Seed for prices and generated names.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Symbols listed as removed (answered with 40309); repeat or separate with commas.
    #[arg(long = "removed", value_delimiter = ',')]
    removed: Vec<String>,
    /// Per-endpoint limit override, e.g. mix/market/candles=50; repeatable.
    #[arg(long = "limit", value_name = "ENDPOINT=N", value_parser = parse_override)]
    limits: Vec<(usize, u32)>,
    /// Market limit over time, e.g. "20,30:5,60:20" (20/s, 5/s from 30 s, 20/s from 60 s).
    #[arg(long, value_name = "SCHEDULE", value_parser = parse_schedule)]
    market_limit_schedule: Option<Schedule>,
    /// Overall cap per IP per minute.
    #[arg(long, default_value_t = 6_000, value_parser = clap::value_parser!(u32).range(1..))]
    overall_per_min: u32,
    /// Block a client IP for this long after a violation (Bitget documents 300); 0 = off.
    #[arg(long, default_value_t = 0)]
    penalty_secs: u64,
    /// HTTP status of rate-limit replies.
    #[arg(long, default_value_t = 429)]
    rate_limit_status: u16,
    /// Body code of rate-limit replies, e.g. 30001 to exercise a client's code mapping.
    #[arg(long, default_value = "429")]
    rate_limit_code: String,
    /// Probability of an HTML 502/503 page, as a CDN sends.
    #[arg(long, default_value_t = 0.0)]
    fault_html: f64,
    /// Probability of a 200 reply with the JSON cut in half.
    #[arg(long, default_value_t = 0.0)]
    fault_truncated: f64,
    /// Probability of a reply delayed by --slow-ms.
    #[arg(long, default_value_t = 0.0)]
    fault_slow: f64,
    /// Delay of slow replies, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    slow_ms: u64,
    /// Probability of a connection reset without reply.
    #[arg(long, default_value_t = 0.0)]
    fault_reset: f64,
    /// Probability that a symbol request is answered with 40034.
    #[arg(long, default_value_t = 0.0)]
    fault_symbol: f64,
    /// Probability of a retryable busy code (40015, 45001, 40725).
    #[arg(long, default_value_t = 0.0)]
    fault_busy: f64,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
    /// Delay each request's arrival by a uniform draw in [0, MS] milliseconds before the
    /// server meters and stamps it, as a real network path does.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    jitter_ms: u64,
    /// Per mille of requests whose arrival delay is drawn from [0, 10 × --jitter-ms]: a heavy tail.
    #[arg(long, default_value_t = 0, value_name = "PERMILLE", value_parser = clap::value_parser!(u32).range(0..=1000))]
    jitter_tail_permille: u32,
    /// Server pauses of MS (or MIN-MAX) milliseconds; requests arriving meanwhile are all
    /// metered at the pause's end. Needs --stall-every.
    #[arg(long, value_name = "MS", value_parser = parse_stall)]
    stall_ms: Option<(u64, u64)>,
    /// Seconds between the starts of two server pauses.
    #[arg(long, value_name = "SECS")]
    stall_every: Option<f64>,
    /// Seed of the arrival delays and pause lengths.
    #[arg(long, default_value_t = 1)]
    network_seed: u64,
    /// Execute the first N orders but reset the connection before replying.
    #[arg(long, default_value_t = 0)]
    lose_order_replies: u32,
    /// Refuse the first N orders with a rate-limit reply, without executing them.
    #[arg(long, default_value_t = 0)]
    rate_limit_orders: u32,
    /// Accepted API key as KEY:SECRET:PASSPHRASE; repeatable. Default: the demo key
    /// bg_demo_key:bg_demo_secret:bg_demo_pass.
    #[arg(long = "key", value_name = "KEY:SECRET:PASSPHRASE", value_parser = parse_key)]
    keys: Vec<Credentials>,
    /// Write a JSON-lines log of every request to this file.
    #[arg(long)]
    request_log: Option<PathBuf>,
    /// Write the final counters as JSON to this file at shutdown.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    duration: Option<u64>,
}

fn parse_stall(text: &str) -> Result<(u64, u64), String> {
    NetworkConfig::parse_stall(text).map_err(|e| e.to_string())
}

fn parse_override(text: &str) -> Result<(usize, u32), String> {
    LimitConfig::parse_override(text).map_err(|e| e.to_string())
}

/// A parsed `--market-limit-schedule`. A newtype, because clap reads `Option<Vec<T>>` as
/// "several values of T" and would not accept one parser producing the whole list.
#[derive(Debug, Clone)]
struct Schedule(Vec<crate::sim::limits::ScheduleStep>);

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    LimitConfig::parse_schedule(text)
        .map(Schedule)
        .map_err(|e| e.to_string())
}

fn parse_key(text: &str) -> Result<Credentials, String> {
    let mut parts = text.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(k), Some(s), Some(p)) if !k.is_empty() && !s.is_empty() && !p.is_empty() => {
            Ok(Credentials::new(k, s, p))
        }
        _ => Err("expected KEY:SECRET:PASSPHRASE, none of them empty".to_owned()),
    }
}

impl SimArgs {
    fn into_config(self) -> (SimConfig, SocketAddr, Option<u64>, Option<PathBuf>) {
        let keys = if self.keys.is_empty() {
            vec![Credentials::new(
                DEMO_API_KEY,
                DEMO_API_SECRET,
                DEMO_API_PASSPHRASE,
            )]
        } else {
            self.keys
        };
        let config = SimConfig {
            symbols: self.symbols,
            seed: self.seed,
            removed_symbols: self.removed,
            limits: LimitConfig {
                overrides: self.limits,
                schedule: self.market_limit_schedule.map(|s| s.0).unwrap_or_default(),
                overall_per_min: self.overall_per_min,
                penalty_ms: self.penalty_secs.saturating_mul(1_000),
            },
            rate_limit_status: self.rate_limit_status,
            rate_limit_code: self.rate_limit_code,
            faults: FaultConfig {
                html: self.fault_html,
                truncated: self.fault_truncated,
                slow: self.fault_slow,
                slow_ms: self.slow_ms,
                reset: self.fault_reset,
                symbol: self.fault_symbol,
                busy: self.fault_busy,
                seed: self.fault_seed,
                lost_order_replies: self.lose_order_replies,
                rate_limited_orders: self.rate_limit_orders,
            },
            network: NetworkConfig {
                jitter_ms: self.jitter_ms,
                tail_permille: self.jitter_tail_permille,
                stall_ms: self.stall_ms.unwrap_or((0, 0)),
                stall_every_ms: self
                    .stall_every
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map_or(0, |s| (s * 1_000.0).round() as u64),
                seed: self.network_seed,
            },
            keys,
            request_log: self.request_log,
            starting_usdt: rust_decimal::Decimal::from(10_000),
        };
        (config, self.addr, self.duration, self.stats_json)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // The poller makes at most a few dozen requests a second: one thread serves that with
    // no cross-thread wake-ups, which are most of a multi-threaded runtime's CPU at this
    // rate. The simulator serves many clients and keeps every core.
    let builder = match cli.command {
        Command::Sim(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match { builder }.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Run(args) => runtime.block_on(poll::run(args)),
        Command::Demo(args) => runtime.block_on(poll::demo(args)),
        Command::CheckConfig(args) => poll::check_config(&args.file),
        Command::Usage(args) => usage::usage(&args),
        Command::Sim(args) => {
            init_console_logging();
            runtime.block_on(serve(*args))
        }
    }
}

async fn serve(args: SimArgs) -> ExitCode {
    let (config, addr, duration, stats_json) = args.into_config();
    let sim = match Simulator::start(config, addr).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(match error {
                SimError::Bind { .. } | SimError::RequestLog { .. } => 1,
                _ => 2,
            });
        }
    };
    let base = sim.base_url();
    outln!("Bitget v2 simulator listening on {base}");
    outln!("  try: curl '{base}/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=5'");
    outln!("  counters: {base}/sim/stats   demo key: {DEMO_API_KEY} / {DEMO_API_SECRET} / {DEMO_API_PASSPHRASE}");
    let stopped_by = wait_for_stop(duration.map(Duration::from_secs)).await;
    tracing::info!(reason = stopped_by, "simulator stopping");
    let stats = sim.stop().await;
    print_summary(&stats);
    if let Some(path) = stats_json {
        let written = serde_json::to_vec_pretty(&stats)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&path, json));
        if let Err(error) = written {
            eprintln!("error: cannot write stats to {}: {error}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// Waits for Ctrl-C, SIGTERM (Unix) or the end of `duration`; says which.
async fn wait_for_stop(duration: Option<Duration>) -> &'static str {
    let timer = async {
        match duration {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "ctrl-c",
        () = terminate_signal() => "sigterm",
        () = timer => "duration elapsed",
    }
}

#[cfg(unix)]
async fn terminate_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate_signal() {
    std::future::pending().await
}

fn print_summary(stats: &StatsSnapshot) {
    outln!("{}", render_sim_summary(stats));
}

fn render_sim_summary(stats: &StatsSnapshot) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "simulator summary after {:.1} s:\n  {:<44} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8}",
        stats.elapsed_ms as f64 / 1_000.0,
        "endpoint",
        "requests",
        "accepted",
        "429s",
        "errors",
        "faults",
        "max/1s"
    );
    for (path, e) in stats
        .endpoints
        .iter()
        .chain(std::iter::once((&"total".to_owned(), &stats.total)))
    {
        let _ = write!(
            out,
            "\n  {:<44} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8}",
            path, e.requests, e.accepted, e.rate_limited, e.errors, e.faults, e.max_accepted_in_1s
        );
    }
    out
}

fn init_console_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
