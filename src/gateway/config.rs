//! The gateway's section of the configuration. `config` reads `[gateway]` and checks every
//! key; this is what the gateway is given.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

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
