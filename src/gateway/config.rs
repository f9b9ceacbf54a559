//! The gateway's section of the configuration: `[gateway]` as written, its checks, and the
//! settings the gateway is given.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::core::check::Checker;
use crate::core::serve::ServeLimits;

/// The token clients send in [`TOKEN_HEADER`]; redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// Whether `offered` is this token, compared in time independent of where they differ.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        ours.len() == offered.len()
            && ours
                .iter()
                .zip(offered)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// The header a client sends the token in.
pub const TOKEN_HEADER: &str = "x-gateway-token";
/// The header a client may name itself in, for the per-client counters.
pub const CLIENT_HEADER: &str = "x-client-name";

/// How the gateway runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Where bots connect; loopback unless a token is set.
    pub listen: SocketAddr,
    /// The environment variable the token is read from (secrets never come from files).
    pub token_env: String,
    /// Read from `token_env` when the gateway starts.
    pub token: Option<Token>,
    /// Oldest ticker snapshot served from the store.
    pub ticker_max_age: Duration,
    /// Oldest forming candle served from the store (closed candles never change).
    pub candle_max_age: Duration,
    /// Longest a request waits for the budget before the gateway answers 429 itself.
    pub queue_max: Duration,
    /// A series no client asked for this long is no longer polled for the gateway.
    pub series_idle: Duration,
    /// Largest request body accepted from a client.
    pub max_request_body: usize,
    /// How long the instrument lists (contracts, spot symbols) are served from memory.
    pub instruments_max_age: Duration,
    /// Series clients asked for that are polled at once, beyond the configured ones.
    pub max_watched_series: usize,
    /// Connections, header-read and idle timeouts, shutdown grace.
    pub serve: ServeLimits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9810)),
            token_env: "BITGET_GATEWAY_TOKEN".to_owned(),
            token: None,
            ticker_max_age: Duration::from_millis(1000),
            candle_max_age: Duration::from_millis(5000),
            queue_max: Duration::from_millis(5000),
            series_idle: Duration::from_secs(600),
            max_request_body: 64 << 10,
            instruments_max_age: Duration::from_secs(60),
            max_watched_series: 1000,
            serve: ServeLimits::default(),
        }
    }
}

/// `[gateway]` as written; every key defaults to [`GatewayConfig::default`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
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

impl Default for GatewaySection {
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

impl GatewaySection {
    /// The gateway's settings (its token is read from the environment when it starts);
    /// problems go to `c`.
    pub fn check(&self, c: &mut Checker) -> GatewayConfig {
        let listen = match self.listen.trim().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                c.problem(format!(
                    "gateway.listen = \"{}\" is not an address; write ip:port such as \"127.0.0.1:9810\"",
                    self.listen
                ));
                GatewayConfig::default().listen
            }
        };
        if self.token_env.is_empty()
            || !self
                .token_env
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            c.problem(format!(
                "gateway.token_env = \"{}\" is not an environment variable name; write one like \"BITGET_GATEWAY_TOKEN\"",
                self.token_env
            ));
        }
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        GatewayConfig {
            listen,
            token_env: self.token_env.clone(),
            token: None,
            ticker_max_age: ms(c.range(
                "gateway.ticker_max_age_ms",
                self.ticker_max_age_ms,
                0,
                60_000,
            )),
            candle_max_age: ms(c.range(
                "gateway.candle_max_age_ms",
                self.candle_max_age_ms,
                0,
                3_600_000,
            )),
            queue_max: ms(c.range("gateway.queue_max_ms", self.queue_max_ms, 0, 60_000)),
            series_idle: secs(c.range(
                "gateway.series_idle_secs",
                self.series_idle_secs,
                10,
                86_400,
            )),
            max_request_body: c.range(
                "gateway.max_request_body_kb",
                self.max_request_body_kb,
                1,
                10_240,
            ) << 10,
            instruments_max_age: secs(c.range(
                "gateway.instruments_max_age_secs",
                self.instruments_max_age_secs,
                0,
                86_400,
            )),
            max_watched_series: c.range(
                "gateway.max_watched_series",
                self.max_watched_series,
                0,
                100_000,
            ),
            serve: ServeLimits {
                max_connections: c.range(
                    "gateway.max_connections",
                    self.max_connections,
                    1,
                    100_000,
                ),
                header_timeout: secs(c.range(
                    "gateway.header_timeout_secs",
                    self.header_timeout_secs,
                    1,
                    600,
                )),
                idle_timeout: secs(c.range(
                    "gateway.idle_timeout_secs",
                    self.idle_timeout_secs,
                    1,
                    86_400,
                )),
                ..ServeLimits::default()
            },
        }
    }
}
