//! The operator's TOML configuration, checked completely before anything starts.
//!
//! Unknown keys are refused (a typo must not silently fall back to a default), and every bad
//! value is reported at once, each on one line naming its key and the allowed range, so the
//! operator fixes the file in one pass. Secrets never live here: the exchange credentials
//! come from the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use thiserror::Error;
use tracing_subscriber::filter::LevelFilter;

use crate::bitget::egress::{check_proxy, EgressConfig, EgressRoute};
use crate::bitget::error::default_rate_limit_codes;
use crate::bitget::http::{ClientConfig, BITGET_BASE_URL, DEFAULT_MAX_BODY};
use crate::core::market::Symbol;
pub use crate::core::market::SymbolSelection;
use crate::core::serve::ServeLimits;
use crate::core::text::{describe_toml_error, one_line};
use crate::core::timeframe::{Market, Timeframe};
use crate::gateway::config::GatewayConfig;
use crate::limiter::backoff::Backoff;
use crate::limiter::redis::{
    check_url, BackendConfig, RedisConfig, DEFAULT_KEY_PREFIX, DEFAULT_REDIS_URL,
};
use crate::limiter::{Limits, MAX_EGRESSES};
pub use crate::scheduler::config::{Mode, PollConfig};
pub use crate::scheduler::tiers::TierConfig;
use crate::store::StoreConfig;
use crate::telemetry::LogConfig;
use crate::trading::TradingConfig;

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{}", .problems.iter().map(|p| format!("{}: {}", .path.display(), one_line(p))).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// `symbols = "all"` or `symbols = ["BTCUSDT", "ETH/USDT:USDT"]`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RawSymbols {
    All,
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for RawSymbols {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            List(Vec<String>),
        }
        match Either::deserialize(deserializer).map_err(|_| {
            de::Error::custom("symbols must be \"all\" or a list of symbols like [\"BTCUSDT\"]")
        })? {
            Either::Text(t) if t.eq_ignore_ascii_case("all") => Ok(Self::All),
            Either::Text(t) => Err(de::Error::custom(format!(
                "symbols = \"{t}\": write \"all\" or a list like [\"{t}\"]"
            ))),
            Either::List(list) => Ok(Self::List(list)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    exchange: RawExchange,
    poll: RawPoll,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    tiers: RawTiers,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    trading: RawTrading,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    egress: Vec<RawEgress>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    local_address: Option<String>,
    #[serde(default)]
    proxy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawGateway {
    listen: String,
    token_env: String,
    ticker_max_age_ms: u64,
    candle_max_age_ms: u64,
    queue_max_ms: u64,
    series_idle_secs: u64,
    max_request_body_kb: usize,
    instruments_max_age_secs: u64,
    max_watched_series: usize,
    max_connections: usize,
    header_timeout_secs: u64,
    idle_timeout_secs: u64,
}

impl Default for RawGateway {
    fn default() -> Self {
        let d = GatewayConfig::default();
        Self {
            listen: d.listen.to_string(),
            token_env: d.token_env,
            ticker_max_age_ms: d.ticker_max_age.as_millis() as u64,
            candle_max_age_ms: d.candle_max_age.as_millis() as u64,
            queue_max_ms: d.queue_max.as_millis() as u64,
            series_idle_secs: d.series_idle.as_secs(),
            max_request_body_kb: d.max_request_body >> 10,
            instruments_max_age_secs: d.instruments_max_age.as_secs(),
            max_watched_series: d.max_watched_series,
            max_connections: d.serve.max_connections,
            header_timeout_secs: d.serve.header_timeout.as_secs(),
            idle_timeout_secs: d.serve.idle_timeout.as_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    journal_capacity: usize,
    candles_per_series: usize,
}

impl Default for RawStore {
    fn default() -> Self {
        let d = StoreConfig::default();
        Self {
            journal_capacity: d.journal_capacity,
            candles_per_series: d.candles_per_series,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTrading {
    enabled: bool,
    strategies_dir: PathBuf,
    starting_usdt: String,
    fee_rate: String,
    balances_interval_secs: f64,
    positions_interval_secs: f64,
}

impl Default for RawTrading {
    fn default() -> Self {
        let t = TradingConfig::default();
        Self {
            enabled: t.enabled,
            strategies_dir: t.strategies_dir,
            starting_usdt: t.starting_usdt.to_string(),
            fee_rate: t.fee_rate.to_string(),
            balances_interval_secs: t.balances_every.as_secs_f64(),
            positions_interval_secs: t.positions_every.as_secs_f64(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawExchange {
    base_url: String,
    market: String,
    timeout_secs: f64,
    connect_timeout_secs: f64,
    pool_max_idle: usize,
    rate_limit_codes: Vec<String>,
    max_body_mb: usize,
    signed_egress: String,
}

impl Default for RawExchange {
    fn default() -> Self {
        Self {
            base_url: BITGET_BASE_URL.to_owned(),
            market: "futures".to_owned(),
            timeout_secs: 10.0,
            connect_timeout_secs: 5.0,
            pool_max_idle: 32,
            rate_limit_codes: default_rate_limit_codes(),
            max_body_mb: DEFAULT_MAX_BODY >> 20,
            signed_egress: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoll {
    symbols: RawSymbols,
    #[serde(default = "default_timeframes")]
    timeframes: Vec<String>,
    #[serde(default = "default_mode")]
    mode: Mode,
    #[serde(default = "default_initial_candles")]
    initial_candles: u32,
    #[serde(default = "default_tickers_interval")]
    tickers_interval_secs: f64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    /// No longer used: consumers read from the store. Accepted so older files load.
    channel_capacity: Option<usize>,
    #[serde(default = "default_discovery_refresh")]
    discovery_refresh_secs: u64,
    #[serde(default = "default_discovery_cache")]
    discovery_cache: PathBuf,
}

fn default_timeframes() -> Vec<String> {
    vec!["1m".to_owned()]
}
fn default_mode() -> Mode {
    Mode::Live
}
fn default_initial_candles() -> u32 {
    100
}
fn default_tickers_interval() -> f64 {
    5.0
}
fn default_concurrency() -> usize {
    8
}
fn default_discovery_refresh() -> u64 {
    6 * 3600
}
fn default_discovery_cache() -> PathBuf {
    PathBuf::from("logs/contracts_cache.json")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    market_per_sec: u32,
    account_per_sec: u32,
    trade_per_sec: u32,
    default_per_sec: u32,
    overall_per_min: u32,
    market_total_per_sec: Option<u32>,
    safety_margin: f64,
    backend: String,
    redis_url: String,
    redis_key_prefix: String,
    redis_expected_instances: u32,
    redis_fallback_share: Option<f64>,
}

impl Default for RawLimits {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            market_per_sec: l.per_second[0],
            account_per_sec: l.per_second[1],
            trade_per_sec: l.per_second[2],
            default_per_sec: l.per_second[3],
            overall_per_min: l.overall_per_minute,
            market_total_per_sec: None,
            safety_margin: l.safety_margin,
            backend: "local".to_owned(),
            redis_url: DEFAULT_REDIS_URL.to_owned(),
            redis_key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            redis_expected_instances: 2,
            redis_fallback_share: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetry {
    base_ms: u64,
    max_retries: u32,
    cap_secs: f64,
    bad_symbol_retry_secs: u64,
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            base_ms: 1000,
            max_retries: 5,
            cap_secs: 30.0,
            bad_symbol_retry_secs: 900,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTiers {
    slow_above: usize,
    slow_symbols: usize,
    slow_pause_ms: u64,
    crawl_above: usize,
    crawl_symbols: usize,
    crawl_pause_ms: u64,
}

impl Default for RawTiers {
    fn default() -> Self {
        let t = TierConfig::default();
        Self {
            slow_above: t.slow_above,
            slow_symbols: t.slow_symbols,
            slow_pause_ms: t.slow_pause.as_millis() as u64,
            crawl_above: t.crawl_above,
            crawl_symbols: t.crawl_symbols,
            crawl_pause_ms: t.crawl_pause.as_millis() as u64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLogging {
    dir: PathBuf,
    level: String,
    usage_interval_secs: f64,
    ascii_status: bool,
    max_file_mb: u64,
    keep_files: usize,
    metrics_addr: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("logs"),
            level: "info".to_owned(),
            usage_interval_secs: 10.0,
            ascii_status: false,
            max_file_mb: 50,
            keep_files: 5,
            metrics_addr: String::new(),
        }
    }
}

/// A complete, checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub client: ClientConfig,
    pub limits: Limits,
    pub poll: PollConfig,
    pub logging: LogConfig,
    pub usage_interval: Duration,
    pub ascii_status: bool,
    /// Where to serve Prometheus metrics (`--metrics-addr` overrides it); none when empty.
    pub metrics_addr: Option<SocketAddr>,
    pub trading: TradingConfig,
    pub store: StoreConfig,
    pub gateway: GatewayConfig,
    /// Which limiter admits requests: this process's, or shared through Redis.
    pub limiter: BackendConfig,
    /// Things worth telling the operator that are not problems (keys that no longer
    /// apply); `check-config` prints them and a run logs them.
    pub notes: Vec<String>,
}

/// `[limits] backend` and its Redis keys.
fn limiter_backend(c: &mut Checker, l: &RawLimits) -> BackendConfig {
    match l.backend.as_str() {
        "local" => BackendConfig::Local,
        "redis" => {
            if let Err(e) = check_url(&l.redis_url) {
                c.problems.push(e.to_string());
            }
            let prefix = l.redis_key_prefix.trim();
            if prefix.is_empty() || prefix.contains(['{', '}', ' ']) {
                c.problems.push(format!(
                    "limits.redis_key_prefix = {:?} must be a non-empty name without spaces or braces",
                    l.redis_key_prefix
                ));
            }
            let n = c.range(
                "limits.redis_expected_instances",
                l.redis_expected_instances,
                1,
                1000,
            );
            let share = l.redis_fallback_share.unwrap_or(1.0 / f64::from(n.max(1)));
            if !(share > 0.0 && share <= 1.0) {
                c.problems.push(format!(
                    "limits.redis_fallback_share = {share} is out of range; allowed above 0 up to 1 (each instance's part of every limit while redis is unreachable; 1/N for N instances)"
                ));
            }
            BackendConfig::Redis(RedisConfig {
                url: l.redis_url.clone(),
                key_prefix: prefix.to_owned(),
                fallback_share: share,
            })
        }
        other => {
            c.problems.push(format!(
                "limits.backend = \"{other}\" is not known; allowed \"local\" or \"redis\""
            ));
            BackendConfig::Local
        }
    }
}

/// The `[[egress]]` entries (the default route when there are none), and the index of
/// the one signed requests keep to.
fn egresses(c: &mut Checker, raw: &[RawEgress], signed: &str) -> (Vec<EgressConfig>, u16) {
    let mut egresses: Vec<EgressConfig> = Vec::new();
    if raw.len() > MAX_EGRESSES {
        c.problems.push(format!(
            "{} [[egress]] entries; at most {MAX_EGRESSES} are allowed",
            raw.len()
        ));
    }
    for (i, e) in raw.iter().enumerate().take(MAX_EGRESSES) {
        let route = match (&e.local_address, &e.proxy) {
            (Some(addr), None) => match addr.trim().parse::<std::net::IpAddr>() {
                Ok(ip) => EgressRoute::LocalAddress(ip),
                Err(_) => {
                    c.problems.push(format!(
                        "egress[{i}].local_address = {addr:?} is not an ip address; write one of this machine's addresses, like \"192.0.2.10\""
                    ));
                    EgressRoute::Default
                }
            },
            (None, Some(proxy)) => {
                if let Err(problem) = check_proxy(&format!("egress[{i}].proxy"), proxy) {
                    c.problems.push(problem);
                }
                EgressRoute::Proxy(proxy.clone())
            }
            (Some(_), Some(_)) => {
                c.problems.push(format!(
                    "egress[{i}] has both local_address and proxy; give one of them"
                ));
                EgressRoute::Default
            }
            (None, None) => {
                c.problems.push(format!(
                    "egress[{i}] needs local_address = \"…\" or proxy = \"socks5://…\""
                ));
                EgressRoute::Default
            }
        };
        let name = e.name.clone().unwrap_or_else(|| match &route {
            EgressRoute::LocalAddress(ip) => ip.to_string(),
            EgressRoute::Proxy(url) => reqwest::Url::parse(url)
                .ok()
                .and_then(|u| {
                    u.host_str()
                        .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
                })
                .unwrap_or_else(|| format!("egress-{i}")),
            EgressRoute::Default => format!("egress-{i}"),
        });
        if name.trim().is_empty() || name.contains(['{', '}', ' ']) {
            c.problems.push(format!(
                "egress[{i}].name = {name:?} must be a non-empty name without spaces or braces"
            ));
        }
        if egresses.iter().any(|x| x.name == name) {
            c.problems.push(format!(
                "egress[{i}].name = {name:?} is used twice; each egress needs its own name"
            ));
        }
        egresses.push(EgressConfig { name, route });
    }
    if egresses.is_empty() {
        egresses.push(EgressConfig::default_route());
    }
    let signed_egress = match signed.trim() {
        "" => 0,
        name => match egresses.iter().position(|e| e.name == name) {
            Some(i) => i as u16,
            None => {
                let known: Vec<String> = egresses.iter().map(|e| format!("{:?}", e.name)).collect();
                c.problems.push(format!(
                    "exchange.signed_egress = {name:?} names no [[egress]]; allowed {}",
                    known.join(", ")
                ));
                0
            }
        },
    };
    (egresses, signed_egress)
}

/// Whether `url` can be the exchange's base URL: `http(s)://host[:port]`, perhaps with a
/// path prefix (a reverse proxy).
///
/// # Errors
/// What is wrong with it, to follow the key and value.
pub fn check_base_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err("must start with https:// (or http:// for a local simulator)".into());
    }
    match reqwest::Url::parse(url) {
        Err(error) => Err(format!(
            "is not a URL ({error}); write one like \"https://api.bitget.com\""
        )),
        Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => {
            Err("names no host; write one like \"https://api.bitget.com\"".into())
        }
        Ok(_) => Ok(()),
    }
}

/// A number as an operator wrote it, short: `1e308`, not its 309 digits.
fn shown(value: f64) -> String {
    if value.is_finite() && value.abs() >= 1e9 {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

/// Collects every problem rather than stopping at the first.
struct Checker {
    problems: Vec<String>,
}

impl Checker {
    fn range<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        key: &str,
        value: T,
        min: T,
        max: T,
    ) -> T {
        if !(min <= value && value <= max) {
            self.problems.push(format!(
                "{key} = {value} is out of range; allowed {min} to {max}"
            ));
        }
        value
    }

    fn secs(&mut self, key: &str, value: f64, min: f64, max: f64) -> Duration {
        self.secs_or_off(key, value, min, max, false)
    }

    /// Seconds in `min..=max`, or 0 as well when `zero_is_off`.
    fn secs_or_off(
        &mut self,
        key: &str,
        value: f64,
        min: f64,
        max: f64,
        zero_is_off: bool,
    ) -> Duration {
        if !value.is_finite() || !(min..=max).contains(&value) {
            self.problems.push(format!(
                "{key} = {} is out of range; allowed {}{min} to {max} seconds",
                shown(value),
                if zero_is_off { "0 (off), or " } else { "" }
            ));
            return Duration::ZERO;
        }
        Duration::from_secs_f64(value)
    }
}

impl Config {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML for this schema, or holds bad values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks `text`, naming `path` in errors.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: describe_toml_error(text, &e),
        })?;
        let mut c = Checker {
            problems: Vec::new(),
        };
        let market = match raw.exchange.market.as_str() {
            "futures" => Market::Futures,
            "spot" => Market::Spot,
            other => {
                c.problems.push(format!(
                    "exchange.market = \"{other}\" is not known; allowed \"futures\" or \"spot\""
                ));
                Market::Futures
            }
        };
        let base_url = raw.exchange.base_url.trim().to_owned();
        if let Err(problem) = check_base_url(&base_url) {
            c.problems
                .push(format!("exchange.base_url = \"{base_url}\" {problem}"));
        }
        let timeout = c.secs(
            "exchange.timeout_secs",
            raw.exchange.timeout_secs,
            0.1,
            300.0,
        );
        let connect_timeout = c.secs(
            "exchange.connect_timeout_secs",
            raw.exchange.connect_timeout_secs,
            0.1,
            60.0,
        );
        c.range(
            "exchange.pool_max_idle",
            raw.exchange.pool_max_idle,
            1,
            1024,
        );
        c.range("exchange.max_body_mb", raw.exchange.max_body_mb, 1, 1024);
        for code in &raw.exchange.rate_limit_codes {
            if code.is_empty() || !code.chars().all(|ch| ch.is_ascii_digit()) {
                c.problems.push(format!(
                    "exchange.rate_limit_codes holds \"{code}\"; codes are digits, like \"429\""
                ));
            }
        }

        let symbols = match raw.poll.symbols {
            RawSymbols::All => SymbolSelection::All,
            RawSymbols::List(list) => {
                if list.is_empty() {
                    c.problems.push(
                        "poll.symbols is empty; list at least one symbol or write \"all\"".into(),
                    );
                }
                let mut out: Vec<Symbol> = Vec::with_capacity(list.len());
                let mut seen = std::collections::HashSet::with_capacity(list.len());
                for text in &list {
                    match Symbol::parse(text) {
                        Ok(s) if seen.insert(s.clone()) => out.push(s),
                        Ok(s) => c.problems.push(format!("poll.symbols lists {s} twice")),
                        Err(e) => c.problems.push(format!("poll.symbols: {e}")),
                    }
                }
                SymbolSelection::List(out)
            }
        };
        if raw.poll.timeframes.is_empty() {
            c.problems
                .push("poll.timeframes is empty; list at least one, e.g. [\"1m\"]".into());
        }
        let mut timeframes = Vec::new();
        for tf in &raw.poll.timeframes {
            match Timeframe::parse(market, tf) {
                Some(t) if !timeframes.contains(&t) => timeframes.push(t),
                Some(_) => c.problems.push(format!("poll.timeframes lists \"{tf}\" twice")),
                None => c.problems.push(format!(
                    "poll.timeframes holds \"{tf}\", which Bitget does not offer for {}; allowed {}",
                    match market {
                        Market::Futures => "futures",
                        Market::Spot => "spot",
                    },
                    match market {
                        Market::Futures => "1m 3m 5m 15m 30m 1H 4H 6H 12H 1D 3D 1W 1M 6Hutc 12Hutc 1Dutc 3Dutc 1Wutc 1Mutc",
                        Market::Spot => "1min 3min 5min 15min 30min 1h 4h 6h 12h 1day 3day 1week 1M 6Hutc 12Hutc 1Dutc 3Dutc 1Wutc 1Mutc",
                    }
                )),
            }
        }
        let max_rows = match market {
            Market::Futures => 1000,
            Market::Spot => 1000,
        };
        c.range(
            "poll.initial_candles",
            raw.poll.initial_candles,
            1,
            max_rows,
        );
        let tickers_interval = if raw.poll.tickers_interval_secs == 0.0 {
            None
        } else {
            Some(c.secs_or_off(
                "poll.tickers_interval_secs",
                raw.poll.tickers_interval_secs,
                0.1,
                86_400.0,
                true,
            ))
        };
        c.range("poll.concurrency", raw.poll.concurrency, 1, 256);
        let mut notes = Vec::new();
        if raw.poll.channel_capacity.is_some() {
            notes.push("poll.channel_capacity no longer applies and is ignored: consumers read from the candle store, and [store] journal_capacity bounds how far one may fall behind".to_owned());
        }
        let gw = &raw.gateway;
        let gateway_listen = match gw.listen.trim().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                c.problems.push(format!(
                    "gateway.listen = \"{}\" is not an address; write ip:port such as \"127.0.0.1:9810\"",
                    gw.listen
                ));
                GatewayConfig::default().listen
            }
        };
        if gw.token_env.is_empty()
            || !gw
                .token_env
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            c.problems.push(format!(
                "gateway.token_env = \"{}\" is not an environment variable name; write one like \"BITGET_GATEWAY_TOKEN\"",
                gw.token_env
            ));
        }
        c.range("gateway.ticker_max_age_ms", gw.ticker_max_age_ms, 0, 60_000);
        c.range(
            "gateway.candle_max_age_ms",
            gw.candle_max_age_ms,
            0,
            3_600_000,
        );
        c.range("gateway.queue_max_ms", gw.queue_max_ms, 0, 60_000);
        c.range("gateway.series_idle_secs", gw.series_idle_secs, 10, 86_400);
        c.range(
            "gateway.max_request_body_kb",
            gw.max_request_body_kb,
            1,
            10_240,
        );
        c.range(
            "gateway.instruments_max_age_secs",
            gw.instruments_max_age_secs,
            0,
            86_400,
        );
        c.range(
            "gateway.max_watched_series",
            gw.max_watched_series,
            0,
            100_000,
        );
        c.range("gateway.max_connections", gw.max_connections, 1, 100_000);
        c.range(
            "gateway.header_timeout_secs",
            gw.header_timeout_secs,
            1,
            600,
        );
        c.range("gateway.idle_timeout_secs", gw.idle_timeout_secs, 1, 86_400);
        c.range(
            "store.journal_capacity",
            raw.store.journal_capacity,
            1024,
            16_777_216,
        );
        c.range(
            "store.candles_per_series",
            raw.store.candles_per_series,
            1,
            100_000,
        );
        c.range(
            "poll.discovery_refresh_secs",
            raw.poll.discovery_refresh_secs,
            60,
            7 * 86_400,
        );

        let l = &raw.limits;
        let per_second = [
            c.range("limits.market_per_sec", l.market_per_sec, 1, 1000),
            c.range("limits.account_per_sec", l.account_per_sec, 1, 1000),
            c.range("limits.trade_per_sec", l.trade_per_sec, 1, 1000),
            c.range("limits.default_per_sec", l.default_per_sec, 1, 1000),
        ];
        c.range("limits.overall_per_min", l.overall_per_min, 1, 100_000);
        let market_total = l
            .market_total_per_sec
            .map(|t| c.range("limits.market_total_per_sec", t, 1, 1000));
        if !(0.0..0.5).contains(&l.safety_margin) {
            c.problems.push(format!(
                "limits.safety_margin = {} is out of range; allowed 0 to 0.5 (0.02 keeps 2 % spare on top of the measured margin)",
                l.safety_margin
            ));
        }

        let limiter = limiter_backend(&mut c, l);
        let (egresses, signed_egress) = egresses(&mut c, &raw.egress, &raw.exchange.signed_egress);

        let r = &raw.retry;
        c.range("retry.base_ms", r.base_ms, 1, 60_000);
        c.range("retry.max_retries", r.max_retries, 0, 20);
        let cap = c.secs("retry.cap_secs", r.cap_secs, 0.001, 3600.0);
        c.range(
            "retry.bad_symbol_retry_secs",
            r.bad_symbol_retry_secs,
            1,
            86_400,
        );

        let t = &raw.tiers;
        c.range("tiers.slow_symbols", t.slow_symbols, 1, 10_000);
        c.range("tiers.crawl_symbols", t.crawl_symbols, 1, 10_000);
        c.range("tiers.slow_pause_ms", t.slow_pause_ms, 0, 60_000);
        c.range("tiers.crawl_pause_ms", t.crawl_pause_ms, 0, 60_000);
        if t.crawl_above < t.slow_above {
            c.problems.push(format!(
                "tiers.crawl_above = {} must be at least tiers.slow_above = {}",
                t.crawl_above, t.slow_above
            ));
        }

        let g = &raw.logging;
        let level = match g.level.to_ascii_lowercase().as_str() {
            "off" => LevelFilter::OFF,
            "error" => LevelFilter::ERROR,
            "warn" => LevelFilter::WARN,
            "info" => LevelFilter::INFO,
            "debug" => LevelFilter::DEBUG,
            "trace" => LevelFilter::TRACE,
            other => {
                c.problems.push(format!(
                    "logging.level = \"{other}\" is not a level; allowed error, warn, info, debug, trace, off"
                ));
                LevelFilter::INFO
            }
        };
        let usage_interval = c.secs(
            "logging.usage_interval_secs",
            g.usage_interval_secs,
            1.0,
            3600.0,
        );
        if g.dir.as_os_str().is_empty() {
            c.problems.push(
                "logging.dir = \"\" names no folder; write one such as \"logs\" (relative paths are taken from the working directory)".into(),
            );
        }
        c.range("logging.max_file_mb", g.max_file_mb, 0, 100_000);
        c.range("logging.keep_files", g.keep_files, 0, 100);
        let metrics_addr = match g.metrics_addr.trim() {
            "" => None,
            text => match text.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    c.problems.push(format!(
                        "logging.metrics_addr = \"{text}\" is not an address; write ip:port such as \"127.0.0.1:9184\", or \"\" for none"
                    ));
                    None
                }
            },
        };

        let tr = &raw.trading;
        let mut decimal = |key: &str, text: &str, min: Decimal, max: Decimal| {
            match Decimal::from_str(text.trim()) {
                Ok(v) if v >= min && v <= max => v,
                _ => {
                    c.problems.push(format!(
                        "{key} = \"{text}\" is not allowed; write a number from {min} to {max} in quotes"
                    ));
                    Decimal::ZERO
                }
            }
        };
        let starting_usdt = decimal(
            "trading.starting_usdt",
            &tr.starting_usdt,
            Decimal::ONE,
            Decimal::from(1_000_000_000),
        );
        let fee_rate = decimal(
            "trading.fee_rate",
            &tr.fee_rate,
            Decimal::ZERO,
            Decimal::new(1, 2),
        );
        let balances_every = c.secs(
            "trading.balances_interval_secs",
            tr.balances_interval_secs,
            1.0,
            3600.0,
        );
        let positions_every = c.secs(
            "trading.positions_interval_secs",
            tr.positions_interval_secs,
            1.0,
            3600.0,
        );

        if !c.problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: c.problems,
            });
        }
        Ok(Self {
            client: ClientConfig {
                base_url,
                timeout,
                connect_timeout,
                pool_max_idle: raw.exchange.pool_max_idle,
                backoff: Backoff {
                    base: Duration::from_millis(r.base_ms),
                    max_retries: r.max_retries,
                    cap,
                },
                rate_limit_codes: raw.exchange.rate_limit_codes,
                max_body_bytes: raw.exchange.max_body_mb << 20,
                egresses,
                signed_egress,
            },
            limits: Limits {
                per_second,
                total_per_second: [market_total, None, None, None],
                overall_per_minute: l.overall_per_min,
                safety_margin: l.safety_margin,
            },
            poll: PollConfig {
                market,
                symbols,
                timeframes,
                mode: raw.poll.mode,
                initial_candles: raw.poll.initial_candles,
                tickers_interval,
                concurrency: raw.poll.concurrency,
                discovery_refresh: Duration::from_secs(raw.poll.discovery_refresh_secs),
                discovery_cache: raw.poll.discovery_cache,
                bad_symbol_retry: Duration::from_secs(r.bad_symbol_retry_secs),
                tiers: TierConfig {
                    slow_above: t.slow_above,
                    slow_symbols: t.slow_symbols,
                    slow_pause: Duration::from_millis(t.slow_pause_ms),
                    crawl_above: t.crawl_above,
                    crawl_symbols: t.crawl_symbols,
                    crawl_pause: Duration::from_millis(t.crawl_pause_ms),
                },
            },
            logging: LogConfig {
                dir: g.dir.clone(),
                level,
                max_file_bytes: g.max_file_mb * 1024 * 1024,
                keep_files: g.keep_files,
            },
            usage_interval,
            ascii_status: g.ascii_status,
            metrics_addr,
            trading: TradingConfig {
                enabled: raw.trading.enabled,
                strategies_dir: raw.trading.strategies_dir,
                starting_usdt,
                fee_rate,
                balances_every,
                positions_every,
            },
            store: StoreConfig {
                journal_capacity: raw.store.journal_capacity,
                candles_per_series: raw.store.candles_per_series,
            },
            limiter,
            gateway: GatewayConfig {
                listen: gateway_listen,
                token_env: raw.gateway.token_env.clone(),
                token: None,
                ticker_max_age: Duration::from_millis(raw.gateway.ticker_max_age_ms),
                candle_max_age: Duration::from_millis(raw.gateway.candle_max_age_ms),
                queue_max: Duration::from_millis(raw.gateway.queue_max_ms),
                series_idle: Duration::from_secs(raw.gateway.series_idle_secs),
                max_request_body: raw.gateway.max_request_body_kb << 10,
                instruments_max_age: Duration::from_secs(raw.gateway.instruments_max_age_secs),
                max_watched_series: raw.gateway.max_watched_series,
                serve: ServeLimits {
                    max_connections: raw.gateway.max_connections,
                    header_timeout: Duration::from_secs(raw.gateway.header_timeout_secs),
                    idle_timeout: Duration::from_secs(raw.gateway.idle_timeout_secs),
                    ..ServeLimits::default()
                },
            },
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[poll]\nsymbols = [\"BTCUSDT\", \"ETH/USDT:USDT\"]\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.poll.symbols,
            SymbolSelection::List(vec![
                Symbol::parse("BTCUSDT").unwrap(),
                Symbol::parse("ETHUSDT").unwrap()
            ])
        );
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.client.base_url, BITGET_BASE_URL);
        assert_eq!(c.poll.mode, Mode::Live);
        assert_eq!(c.poll.timeframes[0].rest(), "1m");
        assert_eq!(c.poll.tiers, TierConfig::default());
        assert_eq!(c.usage_interval, Duration::from_secs(10));
        assert_eq!(c.metrics_addr, None);
        let with_metrics = parse(&format!(
            "{MINIMAL}[logging]\nmetrics_addr = \"127.0.0.1:9184\"\n"
        ))
        .unwrap();
        assert_eq!(
            with_metrics.metrics_addr,
            Some(SocketAddr::from(([127, 0, 0, 1], 9184)))
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_and_line() {
        let e = parse(&format!("{MINIMAL}[limits]\nmarket_per_second = 20\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml: line 4: limits.market_per_second: unknown field `market_per_second`, expected one of `market_per_sec`, `account_per_sec`, `trade_per_sec`, `default_per_sec`, `overall_per_min`, `market_total_per_sec`, `safety_margin`, `backend`, `redis_url`, `redis_key_prefix`, `redis_expected_instances`, `redis_fallback_share`"
        );
        let e = parse(&format!("{MINIMAL}[limits]\nmarket_per_sec = \"fast\"\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml: line 4: limits.market_per_sec: invalid type: string \"fast\", expected a whole number without quotes, 0 or more"
        );
    }

    #[test]
    fn every_bad_value_is_reported_with_its_range() {
        let text = "[poll]\nsymbols = []\ntimeframes = [\"7m\"]\n[limits]\nmarket_per_sec = 0\nsafety_margin = 1.0\n";
        let ConfigError::Invalid { problems, .. } = parse(text).unwrap_err() else {
            panic!("expected value problems");
        };
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with("poll.symbols is empty"));
        assert!(problems[1].starts_with("poll.timeframes holds \"7m\""));
        assert_eq!(
            problems[2],
            "limits.market_per_sec = 0 is out of range; allowed 1 to 1000"
        );
        assert!(problems[3].starts_with("limits.safety_margin = 1 is out of range"));
    }

    #[test]
    fn symbols_all_and_bad_symbol_text() {
        let c = parse("[poll]\nsymbols = \"all\"\n").unwrap();
        assert_eq!(c.poll.symbols, SymbolSelection::All);
        let e = parse("[poll]\nsymbols = \"BTCUSDT\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("write \"all\" or a list"), "{e}");
        let e = parse("[poll]\nsymbols = [\"BTC-USDT\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("symbol 'BTC-USDT' must look like BTCUSDT"),
            "{e}"
        );
    }

    #[test]
    fn redis_backend_and_egresses_are_read_and_checked() {
        let c = parse(&format!(
            "{MINIMAL}[limits]\nbackend = \"redis\"\nredis_url = \"redis://10.0.0.5:6380/2\"\nredis_expected_instances = 4\n[exchange]\nsigned_egress = \"b\"\n[[egress]]\nlocal_address = \"127.0.0.2\"\n[[egress]]\nname = \"b\"\nproxy = \"socks5://127.0.0.1:1080\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.limiter,
            BackendConfig::Redis(RedisConfig {
                url: "redis://10.0.0.5:6380/2".into(),
                key_prefix: "bitget-poller".into(),
                fallback_share: 0.25,
            })
        );
        assert_eq!(c.client.egresses.len(), 2);
        assert_eq!(c.client.egresses[0].name, "127.0.0.2");
        assert_eq!(
            c.client.egresses[1].route,
            EgressRoute::Proxy("socks5://127.0.0.1:1080".into())
        );
        assert_eq!(c.client.signed_egress, 1);
        assert_eq!(parse(MINIMAL).unwrap().limiter, BackendConfig::Local);

        let text = format!(
            "{MINIMAL}[limits]\nbackend = \"redis\"\nredis_url = \"http://x\"\nredis_fallback_share = 0\n[exchange]\nsigned_egress = \"z\"\n[[egress]]\nlocal_address = \"not-an-ip\"\n[[egress]]\n[[egress]]\nproxy = \"ftp://h\"\n"
        );
        let ConfigError::Invalid { problems, .. } = parse(&text).unwrap_err() else {
            panic!("invalid")
        };
        let joined = problems.join("\n");
        for expected in [
            "limits.redis_url = \"http://x\" is not a redis url",
            "limits.redis_fallback_share = 0 is out of range",
            "egress[0].local_address = \"not-an-ip\" is not an ip address",
            "egress[1] needs local_address",
            "egress[2].proxy = \"ftp://h\" has scheme \"ftp\"",
            "exchange.signed_egress = \"z\" names no [[egress]]",
        ] {
            assert!(joined.contains(expected), "{expected} in {joined}");
        }
        let e = parse(&format!("{MINIMAL}[limits]\nbackend = \"etcd\"\n")).unwrap_err();
        assert!(
            e.to_string()
                .contains("limits.backend = \"etcd\" is not known; allowed \"local\" or \"redis\""),
            "{e}"
        );
    }
}
