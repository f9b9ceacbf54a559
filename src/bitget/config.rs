//! `[exchange]`, `[[egress]]` and `[retry]`: the adapter's own sections of the
//! configuration (where Bitget is, how long to wait, which codes mean "rate limited", the
//! ways out, how to back off), checked here.

use std::time::Duration;

use serde::Deserialize;

use super::egress::{check_proxy, EgressConfig, EgressRoute};
use super::http::ClientConfig;
use crate::core::check::Checker;
use crate::core::timeframe::Market;
use crate::limiter::backoff::Backoff;
use crate::limiter::MAX_EGRESSES;

/// `[exchange]` as written; every key defaults to [`ClientConfig::default`] and futures.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeSection {
    base_url: String,
    market: String,
    timeout_secs: f64,
    connect_timeout_secs: f64,
    pool_max_idle: usize,
    rate_limit_codes: Vec<String>,
    max_body_mb: usize,
    signed_egress: String,
    /// The public WebSocket; empty: derived from `base_url` (see `bitget::ws::url_for`).
    ws_url: String,
}

impl Default for ExchangeSection {
    fn default() -> Self {
        let d = ClientConfig::default();
        Self {
            base_url: d.base_url,
            market: "futures".to_owned(),
            timeout_secs: d.timeout.as_secs_f64(),
            connect_timeout_secs: d.connect_timeout.as_secs_f64(),
            pool_max_idle: d.pool_max_idle,
            rate_limit_codes: d.rate_limit_codes,
            max_body_mb: d.max_body_bytes >> 20,
            signed_egress: String::new(),
            ws_url: String::new(),
        }
    }
}

impl ExchangeSection {
    /// The market polled and traded; problems go to `c`.
    pub fn market(&self, c: &mut Checker) -> Market {
        match self.market.as_str() {
            "futures" => Market::Futures,
            "spot" => Market::Spot,
            other => {
                c.problem(format!(
                    "exchange.market = \"{other}\" is not known; allowed \"futures\" or \"spot\""
                ));
                Market::Futures
            }
        }
    }

    /// The client's settings, with the default backoff and the default route until the
    /// `[retry]` and `[[egress]]` sections are composed in; problems go to `c`.
    pub fn client(&self, c: &mut Checker) -> ClientConfig {
        let base_url = self.base_url.trim().to_owned();
        if let Err(problem) = check_base_url(&base_url) {
            c.problem(format!("exchange.base_url = \"{base_url}\" {problem}"));
        }
        let timeout = c.secs("exchange.timeout_secs", self.timeout_secs, 0.1, 300.0);
        let connect_timeout = c.secs(
            "exchange.connect_timeout_secs",
            self.connect_timeout_secs,
            0.1,
            60.0,
        );
        let pool_max_idle = c.range("exchange.pool_max_idle", self.pool_max_idle, 1, 1024);
        let max_body_mb = c.range("exchange.max_body_mb", self.max_body_mb, 1, 1024);
        for code in &self.rate_limit_codes {
            if code.is_empty() || !code.chars().all(|ch| ch.is_ascii_digit()) {
                c.problem(format!(
                    "exchange.rate_limit_codes holds \"{code}\"; codes are digits, like \"429\""
                ));
            }
        }
        let ws_url = self.ws_url.trim();
        let ws_url = (!ws_url.is_empty()).then(|| ws_url.to_owned());
        if let Some(url) = &ws_url {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) || url.len() <= 6 {
                c.problem(format!(
                    "exchange.ws_url = \"{url}\" is not a ws:// or wss:// address; leave it out to follow base_url"
                ));
            }
        }
        ClientConfig {
            base_url,
            ws_url,
            timeout,
            connect_timeout,
            pool_max_idle,
            rate_limit_codes: self.rate_limit_codes.clone(),
            max_body_bytes: max_body_mb << 20,
            ..ClientConfig::default()
        }
    }

    /// The egress signed requests keep to, by name (`""`: the first).
    pub fn signed_egress(&self) -> &str {
        &self.signed_egress
    }
}

/// One `[[egress]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSection {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    local_address: Option<String>,
    #[serde(default)]
    proxy: Option<String>,
}

/// `[retry]` as written; defaults to [`Backoff::default`] and 15 minutes for a refused
/// symbol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    base_ms: u64,
    max_retries: u32,
    cap_secs: f64,
    bad_symbol_retry_secs: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        let b = Backoff::default();
        Self {
            base_ms: b.base.as_millis() as u64,
            max_retries: b.max_retries,
            cap_secs: b.cap.as_secs_f64(),
            bad_symbol_retry_secs: 900,
        }
    }
}

impl RetrySection {
    /// The backoff, and how long a symbol Bitget refused rests; problems go to `c`.
    pub fn check(&self, c: &mut Checker) -> (Backoff, Duration) {
        let base = c.range("retry.base_ms", self.base_ms, 1, 60_000);
        let max_retries = c.range("retry.max_retries", self.max_retries, 0, 20);
        let cap = c.secs("retry.cap_secs", self.cap_secs, 0.001, 3600.0);
        let bad_symbol = c.range(
            "retry.bad_symbol_retry_secs",
            self.bad_symbol_retry_secs,
            1,
            86_400,
        );
        (
            Backoff {
                base: Duration::from_millis(base),
                max_retries,
                cap,
            },
            Duration::from_secs(bad_symbol),
        )
    }
}

/// The `[[egress]]` entries (the default route when there are none), and the index of
/// the one signed requests keep to.
pub fn egresses(c: &mut Checker, raw: &[EgressSection], signed: &str) -> (Vec<EgressConfig>, u16) {
    let mut egresses: Vec<EgressConfig> = Vec::new();
    if raw.len() > MAX_EGRESSES {
        c.problem(format!(
            "{} [[egress]] entries; at most {MAX_EGRESSES} are allowed",
            raw.len()
        ));
    }
    for (i, e) in raw.iter().enumerate().take(MAX_EGRESSES) {
        let route = match (&e.local_address, &e.proxy) {
            (Some(addr), None) => match addr.trim().parse::<std::net::IpAddr>() {
                Ok(ip) => EgressRoute::LocalAddress(ip),
                Err(_) => {
                    c.problem(format!(
                        "egress[{i}].local_address = {addr:?} is not an ip address; write one of this machine's addresses, like \"192.0.2.10\""
                    ));
                    EgressRoute::Default
                }
            },
            (None, Some(proxy)) => {
                if let Err(problem) = check_proxy(&format!("egress[{i}].proxy"), proxy) {
                    c.problem(problem);
                }
                EgressRoute::Proxy(proxy.clone())
            }
            (Some(_), Some(_)) => {
                c.problem(format!(
                    "egress[{i}] has both local_address and proxy; give one of them"
                ));
                EgressRoute::Default
            }
            (None, None) => {
                c.problem(format!(
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
            c.problem(format!(
                "egress[{i}].name = {name:?} must be a non-empty name without spaces or braces"
            ));
        }
        if egresses.iter().any(|x| x.name == name) {
            c.problem(format!(
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
                c.problem(format!(
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
