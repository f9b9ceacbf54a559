//! One simulator run's configuration and shared state: what every handler reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use rust_decimal::Decimal;
use thiserror::Error;

use super::account::Accounts;
use super::endpoints::Route;
use super::faults::{FaultConfig, FaultInjector};
use super::limits::{LimitConfig, Limiter};
use super::market::Universe;
use super::network::{Network, NetworkConfig, NetworkConfigError};
use super::record::{Recorder, StatsSnapshot};
use super::ws::{WsConfig, WsHub};
use bitget_proto::clock::Clock;
use bitget_proto::sign::Credentials;

/// The key every simulator accepts unless told otherwise; safe to publish, it guards nothing.
pub const DEMO_API_KEY: &str = "bg_demo_key";
/// Secret of [`DEMO_API_KEY`].
pub const DEMO_API_SECRET: &str = "bg_demo_secret";
/// Passphrase of [`DEMO_API_KEY`].
pub const DEMO_API_PASSPHRASE: &str = "bg_demo_pass";

/// Everything a simulator run can be told.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of USDT-FUTURES contracts (BTCUSDT, ETHUSDT, ... then generated names).
    pub symbols: usize,
    /// Seed of prices and generated names.
    pub seed: u64,
    /// Symbols listed as removed; requests for them get `40309`.
    pub removed_symbols: Vec<String>,
    pub limits: LimitConfig,
    /// HTTP status of rate-limit replies (Bitget: 429).
    pub rate_limit_status: u16,
    /// Body code of rate-limit replies (Bitget: `429`); another code exercises client mapping.
    pub rate_limit_code: String,
    pub faults: FaultConfig,
    /// Arrival delays and server pauses between clients and the simulator.
    pub network: NetworkConfig,
    /// Keys accepted on signed endpoints.
    pub keys: Vec<Credentials>,
    /// Where to write the JSON-lines request log, if anywhere.
    pub request_log: Option<PathBuf>,
    /// Cash each key starts with, in USDT.
    pub starting_usdt: Decimal,
    /// How the public WebSocket behaves.
    pub ws: WsConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            symbols: 50,
            seed: 1,
            removed_symbols: Vec::new(),
            limits: LimitConfig::default(),
            rate_limit_status: 429,
            rate_limit_code: "429".to_owned(),
            faults: FaultConfig::default(),
            network: NetworkConfig::default(),
            keys: vec![Credentials::new(
                DEMO_API_KEY,
                DEMO_API_SECRET,
                DEMO_API_PASSPHRASE,
            )],
            request_log: None,
            starting_usdt: Decimal::from(10_000),
            ws: WsConfig::default(),
        }
    }
}

/// Why a simulator could not start.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}; pick another --addr or free the port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create request log {path}: {source}")]
    RequestLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--symbols must be between 1 and 5000, got {0}")]
    Symbols(usize),
    #[error("rate-limit status must be an HTTP status between 400 and 599, got {0}")]
    RateLimitStatus(u16),
    #[error("rate-limit code must be digits, e.g. 429 or 30001, got '{0}'")]
    RateLimitCode(String),
    #[error(
        "fault probability {name} must be between 0 and 1 and all together at most 1, got {value}"
    )]
    FaultProbability { name: &'static str, value: f64 },
    #[error(transparent)]
    Network(#[from] NetworkConfigError),
    #[error("websocket settings: {0}")]
    Ws(String),
}

/// Shared state of one simulator run.
#[derive(Debug)]
pub struct SimState {
    pub clock: Arc<dyn Clock>,
    pub universe: Universe,
    pub limiter: Limiter,
    pub faults: FaultInjector,
    pub network: Network,
    pub recorder: Recorder,
    pub accounts: Accounts,
    pub keys: Vec<Credentials>,
    pub rate_limit_status: StatusCode,
    pub rate_limit_code: &'static str,
    pub cache: ReplyCache,
    /// The public WebSocket's sockets, limits and counters.
    pub ws: WsHub,
}

impl SimState {
    /// Everything counted so far, the socket side included.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut snapshot = self.recorder.snapshot(self.clock.now_ms());
        snapshot.ws = self.ws.stats();
        snapshot
    }

    /// Validates `config` and builds the state, reading time from `clock`.
    ///
    /// # Errors
    /// A configuration value is out of range, or the request log cannot be created.
    pub fn new(config: SimConfig, clock: Arc<dyn Clock>) -> Result<Self, SimError> {
        if !(1..=5_000).contains(&config.symbols) {
            return Err(SimError::Symbols(config.symbols));
        }
        let rate_limit_status = StatusCode::from_u16(config.rate_limit_status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error());
        let rate_limit_status =
            rate_limit_status.ok_or(SimError::RateLimitStatus(config.rate_limit_status))?;
        let code = config.rate_limit_code.trim();
        if code.is_empty() || code.len() > 8 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SimError::RateLimitCode(config.rate_limit_code));
        }
        // Error replies carry `&'static str` codes; this one string per run is leaked on purpose.
        let rate_limit_code: &'static str = if code == "429" {
            "429"
        } else {
            Box::leak(code.to_owned().into_boxed_str())
        };
        let f = &config.faults;
        let probabilities = [
            ("html", f.html),
            ("truncated", f.truncated),
            ("slow", f.slow),
            ("reset", f.reset),
            ("symbol", f.symbol),
            ("busy", f.busy),
        ];
        for (name, value) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimError::FaultProbability { name, value });
            }
        }
        let total: f64 = probabilities.iter().map(|(_, p)| p).sum();
        if total > 1.0 + 1e-9 {
            return Err(SimError::FaultProbability {
                name: "sum",
                value: total,
            });
        }
        config.network.validate()?;
        let ws = &config.ws;
        for (name, value) in [
            ("ws drop", ws.drop_per_push),
            ("ws stall", ws.stall_per_push),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimError::FaultProbability { name, value });
            }
        }
        if ws.stall_per_push > 0.0 && ws.stall.is_zero() {
            return Err(SimError::Ws(
                "a stall probability needs a positive stall length (--ws-stall-secs)".to_owned(),
            ));
        }
        if ws.push_interval.is_zero() || !(1..=1000).contains(&ws.snapshot_rows) {
            return Err(SimError::Ws(format!(
                "push interval {:?} and snapshot rows {} must be positive (rows at most 1000)",
                ws.push_interval, ws.snapshot_rows
            )));
        }
        let now = clock.now_ms();
        let recorder = Recorder::new(now, config.request_log.as_deref()).map_err(|source| {
            SimError::RequestLog {
                path: config.request_log.clone().unwrap_or_default(),
                source,
            }
        })?;
        Ok(Self {
            universe: Universe::new(config.symbols, config.seed, &config.removed_symbols),
            limiter: Limiter::new(config.limits, now),
            faults: FaultInjector::new(config.faults),
            network: Network::new(config.network, now),
            recorder,
            accounts: Accounts::new(config.starting_usdt),
            keys: config.keys,
            rate_limit_status,
            rate_limit_code,
            cache: ReplyCache::default(),
            ws: WsHub::new(config.ws),
            clock,
        })
    }
}

/// Cached `data` JSON of public replies, valid for the second they were made in.
#[derive(Debug, Default)]
pub struct ReplyCache {
    pub(super) entries: Mutex<HashMap<CacheKey, CachedData>>,
}

/// A public reply is identified by its route and raw query string.
type CacheKey = (Route, String);
/// The Unix second a reply was made in, and its `data` JSON.
type CachedData = (u64, Arc<str>);
