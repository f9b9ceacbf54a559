//! The command line's grammar: every subcommand and flag, with its parser and checks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::bitget::credential::Credentials;
use bitget_sim::faults::FaultConfig;
use bitget_sim::limits::LimitConfig;
use bitget_sim::network::NetworkConfig;
use bitget_sim::{SimConfig, DEMO_API_KEY, DEMO_API_PASSPHRASE, DEMO_API_SECRET};

/// Rate-limit-exact Bitget market-data poller, with a built-in Bitget simulator.
#[derive(Debug, Parser)]
#[command(name = "bitget-poller", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Poll Bitget as the config says, until Ctrl-C, SIGTERM or --duration.
    Run(RunArgs),
    /// Start the built-in simulator on a free loopback port and poll it with config/demo.toml.
    Demo(DemoArgs),
    /// Serve a local Bitget-compatible endpoint for other bots (ccxt, freqtrade): market data
    /// from the store, everything else forwarded, all through one limiter; polls as `run`.
    Gateway(GatewayArgs),
    /// Check a config file and exit: 0 if it is valid, 2 with every problem listed if not.
    CheckConfig(CheckConfigArgs),
    /// Serve a local Bitget REST v2 simulator (rate limits, errors, signing, faults).
    Sim(Box<SimArgs>),
    /// Report rate-budget use from the rate log (mean and p95 req/s, % of limit, 429s,
    /// waits, time per adaptive tier, stale symbols); --plot draws it.
    Usage(UsageArgs),
    /// Write stored closed candles of one series as CSV or as freqtrade's json data format.
    Export(ExportArgs),
    /// Fetch history into the candle file: only the ranges it lacks, resumable, through
    /// the limiter (shared with a running poller under backend = "redis").
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
pub(super) struct BackfillArgs {
    /// The TOML config: exchange, limits and [store] path, e.g. config/bitget.toml.
    #[arg(long)]
    pub(super) config: PathBuf,
    /// Symbols, comma-separated: BTCUSDT,ETH/USDT:USDT.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(super) symbols: Vec<String>,
    /// Timeframes, comma-separated, in the market's spelling: 1m,5m,1H.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(super) timeframes: Vec<String>,
    /// From this time: 2026-11-01, 2026-11-01T12:00:00Z, or a duration ago such as 30d.
    #[arg(long)]
    pub(super) since: String,
    /// Up to this time (default: now), in the same forms.
    #[arg(long)]
    pub(super) until: Option<String>,
    /// Fetch from this server instead of exchange.base_url (e.g. a simulator).
    #[arg(long)]
    pub(super) base_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ExportFormat {
    /// `open_time,open,high,low,close,base_volume,quote_volume`, open time in Unix ms.
    Csv,
    /// freqtrade's `json` data format: `[[ms, open, high, low, close, volume], ...]`.
    Json,
}

#[derive(Debug, Args)]
pub(super) struct ExportArgs {
    /// The symbol: BTCUSDT, or ccxt's BTC/USDT:USDT.
    #[arg(long)]
    pub(super) symbol: String,
    /// The timeframe in the market's spelling: 1m, 5m, 1H, 1D (spot: 1min, 1h, 1day).
    #[arg(long)]
    pub(super) timeframe: String,
    /// futures (USDT-M, the default) or spot.
    #[arg(long, default_value = "futures")]
    pub(super) market: String,
    /// Only candles opening at or after this time: 2026-11-01, 2026-11-01T12:00:00Z, or
    /// a duration ago such as 7d.
    #[arg(long)]
    pub(super) since: Option<String>,
    /// Only candles opening before this time, in the same forms.
    #[arg(long)]
    pub(super) until: Option<String>,
    #[arg(long, value_enum, default_value = "csv")]
    pub(super) format: ExportFormat,
    /// Write to this file (whole, or not at all) instead of standard output.
    #[arg(long, short)]
    pub(super) output: Option<PathBuf>,
    /// Read the candle file named by this config's [store] path.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// Read this candle file (default: data/candles.sqlite, or the --config's).
    #[arg(long)]
    pub(super) store: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct UsageArgs {
    /// Rate log files or log directories; default: bitget_rate_limits.log and its rotated
    /// copies in logs/ (or in the --config file's [logging] dir).
    pub(super) files: Vec<PathBuf>,
    /// Only lines after this time: 2026-11-22T18:00:00Z, "2026-11-22 18:00" (UTC), or a
    /// duration ago such as 30m, 2h, 1d.
    #[arg(long)]
    pub(super) since: Option<String>,
    /// Only lines up to this time, in the same forms as --since.
    #[arg(long)]
    pub(super) until: Option<String>,
    /// Also draw the usage over time into this .svg or .png file.
    #[arg(long)]
    pub(super) plot: Option<PathBuf>,
    /// Take the log directory from this config's [logging] dir.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// Print the report as JSON (times in RFC 3339, durations in seconds) instead of text.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The TOML config, e.g. config/bitget.toml.
    #[arg(long)]
    pub(super) config: PathBuf,
    /// Poll this server instead of exchange.base_url (e.g. a simulator).
    #[arg(long)]
    pub(super) base_url: Option<String>,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_parser = parse_secs)]
    pub(super) duration: Option<Duration>,
    /// Place real orders, signed with BITGET_API_KEY, BITGET_API_SECRET and
    /// BITGET_API_PASSPHRASE. Without it, strategies trade on paper.
    #[arg(long)]
    pub(super) live: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9184 (overrides
    /// [logging] metrics_addr).
    #[arg(long, value_name = "ADDR")]
    pub(super) metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub(super) struct GatewayArgs {
    #[command(flatten)]
    pub(super) run: RunArgs,
    /// Listen here instead of [gateway] listen (default 127.0.0.1:9810; port 0 picks one).
    #[arg(long)]
    pub(super) listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_parser = parse_secs)]
    pub(super) duration: Option<Duration>,
    /// Number of simulated USDT-FUTURES contracts.
    #[arg(long, default_value_t = 200)]
    pub(super) symbols: usize,
    /// Use this config instead of config/demo.toml.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// Send real signed orders to the simulator (with its demo key) instead of paper trading.
    #[arg(long)]
    pub(super) live: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9184 (overrides
    /// [logging] metrics_addr).
    #[arg(long, value_name = "ADDR")]
    pub(super) metrics_addr: Option<SocketAddr>,
    /// Give the simulator a real network: each request arrives up to MS milliseconds late
    /// (uniform), as on an ordinary internet path.
    #[arg(long, default_value_t = 0, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub(super) jitter_ms: u64,
    /// Also serve the gateway, and print how to point ccxt and freqtrade at it.
    #[arg(long)]
    pub(super) gateway: bool,
    /// The gateway's address with --gateway (default 127.0.0.1:9810; port 0 picks one).
    #[arg(long, requires = "gateway")]
    pub(super) listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub(super) struct CheckConfigArgs {
    /// The TOML config to check.
    pub(super) file: PathBuf,
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
pub(super) struct SimArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9800")]
    pub(super) addr: SocketAddr,
    /// Number of USDT-FUTURES contracts: BTCUSDT, ETHUSDT, ... then generated names.
    #[arg(long, default_value_t = 50)]
    pub(super) symbols: usize,
    /// Seed for prices and generated names.
    #[arg(long, default_value_t = 1)]
    pub(super) seed: u64,
    /// Symbols listed as removed (answered with 40309); repeat or separate with commas.
    #[arg(long = "removed", value_delimiter = ',')]
    pub(super) removed: Vec<String>,
    /// Per-endpoint limit override, e.g. mix/market/candles=50; repeatable.
    #[arg(long = "limit", value_name = "ENDPOINT=N", value_parser = parse_override)]
    pub(super) limits: Vec<(usize, u32)>,
    /// Market limit over time, e.g. "20,30:5,60:20" (20/s, 5/s from 30 s, 20/s from 60 s).
    #[arg(long, value_name = "SCHEDULE", value_parser = parse_schedule)]
    pub(super) market_limit_schedule: Option<Schedule>,
    /// Overall cap per IP per minute.
    #[arg(long, default_value_t = 6_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) overall_per_min: u32,
    /// Block a client IP for this long after a violation (Bitget documents 300); 0 = off.
    #[arg(long, default_value_t = 0)]
    pub(super) penalty_secs: u64,
    /// HTTP status of rate-limit replies.
    #[arg(long, default_value_t = 429)]
    pub(super) rate_limit_status: u16,
    /// Body code of rate-limit replies, e.g. 30001 to exercise a client's code mapping.
    #[arg(long, default_value = "429")]
    pub(super) rate_limit_code: String,
    /// Probability of an HTML 502/503 page, as a CDN sends.
    #[arg(long, default_value_t = 0.0)]
    pub(super) fault_html: f64,
    /// Probability of a 200 reply with the JSON cut in half.
    #[arg(long, default_value_t = 0.0)]
    pub(super) fault_truncated: f64,
    /// Probability of a reply delayed by --slow-ms.
    #[arg(long, default_value_t = 0.0)]
    pub(super) fault_slow: f64,
    /// Delay of slow replies, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub(super) slow_ms: u64,
    /// Probability of a connection reset without reply.
    #[arg(long, default_value_t = 0.0)]
    pub(super) fault_reset: f64,
    /// Probability that a symbol request is answered with 40034.
    #[arg(long, default_value_t = 0.0)]
    pub(super) fault_symbol: f64,
    /// Probability of a retryable busy code (40015, 45001, 40725).
    #[arg(long, default_value_t = 0.0)]
    pub(super) fault_busy: f64,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 1)]
    pub(super) fault_seed: u64,
    /// Delay each request's arrival by a uniform draw in [0, MS] milliseconds before the
    /// server meters and stamps it, as a real network path does.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub(super) jitter_ms: u64,
    /// Per mille of requests whose arrival delay is drawn from [0, 10 × --jitter-ms]: a heavy tail.
    #[arg(long, default_value_t = 0, value_name = "PERMILLE", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub(super) jitter_tail_permille: u32,
    /// Server pauses of MS (or MIN-MAX) milliseconds; requests arriving meanwhile are all
    /// metered at the pause's end. Needs --stall-every.
    #[arg(long, value_name = "MS", value_parser = parse_stall)]
    pub(super) stall_ms: Option<(u64, u64)>,
    /// Seconds between the starts of two server pauses.
    #[arg(long, value_name = "SECS")]
    pub(super) stall_every: Option<f64>,
    /// Seed of the arrival delays and pause lengths.
    #[arg(long, default_value_t = 1)]
    pub(super) network_seed: u64,
    /// Execute the first N orders but reset the connection before replying.
    #[arg(long, default_value_t = 0)]
    pub(super) lose_order_replies: u32,
    /// Refuse the first N orders with a rate-limit reply, without executing them.
    #[arg(long, default_value_t = 0)]
    pub(super) rate_limit_orders: u32,
    /// Accepted API key as KEY:SECRET:PASSPHRASE; repeatable. Default: the demo key
    /// bg_demo_key:bg_demo_secret:bg_demo_pass.
    #[arg(long = "key", value_name = "KEY:SECRET:PASSPHRASE", value_parser = parse_key)]
    pub(super) keys: Vec<Credentials>,
    /// Write a JSON-lines log of every request to this file.
    #[arg(long)]
    pub(super) request_log: Option<PathBuf>,
    /// Write the final counters as JSON to this file at shutdown.
    #[arg(long)]
    pub(super) stats_json: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    pub(super) duration: Option<u64>,
    /// Close every WebSocket this many seconds after it opened (Bitget: every 24 h).
    #[arg(long, default_value_t = 86_400, value_name = "SECS")]
    pub(super) ws_max_life_secs: u64,
    /// The first push after a bar's close carries only the new bar, not the finished bar's
    /// final row (Bitget does not document which it does; a client must cope with both).
    #[arg(long)]
    pub(super) ws_no_final_bar: bool,
    /// Rows of a WebSocket candle snapshot, the forming bar included.
    #[arg(long, default_value_t = 100, value_name = "ROWS")]
    pub(super) ws_snapshot_rows: usize,
    /// Probability per socket and second that it is dropped without a close frame.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub(super) ws_drop: f64,
    /// Probability per socket and second that it goes silent (no pushes, no pongs) for
    /// --ws-stall-secs.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub(super) ws_stall: f64,
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub(super) ws_stall_secs: f64,
    /// Cut every open WebSocket at once, this many seconds after the start (a release
    /// window's mass disconnect).
    #[arg(long, value_name = "SECS")]
    pub(super) ws_cut_all_at_secs: Option<u64>,
    /// Run the simulator's clock this many seconds ahead of the system's (negative:
    /// behind), as a server whose clock differs from ours; also brings a boundary (a
    /// quarter hour, a day) within a short run.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECS",
        allow_hyphen_values = true
    )]
    pub(super) clock_offset_secs: i64,
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
pub(super) struct Schedule(Vec<bitget_sim::limits::ScheduleStep>);

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
    /// The simulator's clock: the system's, shifted by `--clock-offset-secs`.
    pub(super) fn clock(&self) -> bitget_sim::SystemClock {
        bitget_sim::SystemClock::shifted(self.clock_offset_secs.saturating_mul(1_000))
    }

    pub(super) fn into_config(self) -> (SimConfig, SocketAddr, Option<u64>, Option<PathBuf>) {
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
            ws: bitget_sim::ws::WsConfig {
                max_life: Some(std::time::Duration::from_secs(self.ws_max_life_secs)),
                final_bar: !self.ws_no_final_bar,
                snapshot_rows: self.ws_snapshot_rows,
                drop_per_push: self.ws_drop,
                stall_per_push: self.ws_stall,
                // A negative or unreadable length is refused when the simulator starts.
                stall: std::time::Duration::try_from_secs_f64(self.ws_stall_secs)
                    .unwrap_or(std::time::Duration::ZERO),
                cut_all_after: self.ws_cut_all_at_secs.map(std::time::Duration::from_secs),
                seed: self.fault_seed,
                ..bitget_sim::ws::WsConfig::default()
            },
        };
        (config, self.addr, self.duration, self.stats_json)
    }
}
