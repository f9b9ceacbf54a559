//! The operator's TOML configuration, checked completely before anything starts.
//!
//! Each section is its owner's type, checked by its owner with the shared
//! [`Checker`] (`[exchange]`, `[[egress]]`, `[retry]` in `bitget::config`, `[poll]` and
//! `[tiers]` in `scheduler::config`, `[limits]` in `limiter::config`, `[store]`,
//! `[gateway]`, `[feed]`, `[logging]` in `telemetry::config`, `[trading]`), with its defaults written
//! once beside its settings; this module composes them, so a settings change at run time
//! can be validated by the same checks. Unknown keys are refused (a typo must not silently fall back to a default), and every bad
//! value is reported at once, each on one line naming its key and the allowed range, so the
//! operator fixes the file in one pass. Secrets never live here: the exchange credentials
//! come from the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

pub use crate::bitget::config::check_base_url;
use crate::bitget::config::{egresses, EgressSection, ExchangeSection, RetrySection};
use crate::bitget::http::ClientConfig;
use crate::core::check::Checker;
pub use crate::core::market::SymbolSelection;
use crate::core::text::{describe_toml_error, one_line};
use crate::feed::config::{FeedConfig, FeedSection};
use crate::gateway::config::{GatewayConfig, GatewaySection};
use crate::limiter::config::LimitsSection;
use crate::limiter::redis::BackendConfig;
use crate::limiter::Limits;
pub use crate::scheduler::config::{Mode, PollConfig};
use crate::scheduler::config::{PollSection, TiersSection};
pub use crate::scheduler::tiers::TierConfig;
use crate::store::config::StoreSection;
use crate::store::StoreConfig;
use crate::telemetry::config::LoggingSection;
use crate::telemetry::LogConfig;
use crate::trading::config::TradingSection;
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

/// The file as written: each section is its owner's type, checked by its owner.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    exchange: ExchangeSection,
    poll: PollSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    retry: RetrySection,
    #[serde(default)]
    tiers: TiersSection,
    #[serde(default)]
    logging: LoggingSection,
    #[serde(default)]
    trading: TradingSection,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    gateway: GatewaySection,
    #[serde(default)]
    feed: FeedSection,
    #[serde(default)]
    egress: Vec<EgressSection>,
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
    /// The SQLite file closed candles are kept in (`[store] path`); `None`: memory only.
    pub disk: Option<crate::store::disk::DiskConfig>,
    pub gateway: GatewayConfig,
    /// Where live candles come from (`[feed]`).
    pub feed: FeedConfig,
    /// Which limiter admits requests: this process's, or shared through Redis.
    pub limiter: BackendConfig,
    /// Things worth telling the operator that are not problems (keys that no longer
    /// apply); `check-config` prints them and a run logs them.
    pub notes: Vec<String>,
}

/// `[limits] backend` and its Redis keys.
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
        // In the file's order of concerns, so problems are listed as an operator reads them.
        let mut c = Checker::new();
        let mut notes = Vec::new();
        let market = raw.exchange.market(&mut c);
        let mut client = raw.exchange.client(&mut c);
        let mut poll = raw.poll.check(&mut c, market, &mut notes);
        let gateway = raw.gateway.check(&mut c);
        let feed = raw.feed.check(&mut c);
        let store = raw.store.check(&mut c);
        let disk = raw.store.disk(&mut c);
        let limits = raw.limits.limits(&mut c);
        let limiter = raw.limits.backend(&mut c);
        (client.egresses, client.signed_egress) =
            egresses(&mut c, &raw.egress, raw.exchange.signed_egress());
        (client.backoff, poll.bad_symbol_retry) = raw.retry.check(&mut c);
        poll.tiers = raw.tiers.check(&mut c);
        let logging = raw.logging.check(&mut c);
        let trading = raw.trading.check(&mut c);
        if !c.is_clean() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: c.into_problems(),
            });
        }
        Ok(Self {
            client,
            limits,
            poll,
            logging: logging.files,
            usage_interval: logging.usage_interval,
            ascii_status: logging.ascii_status,
            metrics_addr: logging.metrics_addr,
            trading,
            store,
            disk,
            limiter,
            gateway,
            feed,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitget::egress::EgressRoute;
    use crate::bitget::http::BITGET_BASE_URL;
    use crate::core::market::Symbol;
    use crate::limiter::redis::RedisConfig;

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
