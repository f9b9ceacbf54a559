//! `symbols = "all"`: every USDT-M contract (or USDT spot pair) Bitget lists as trading.
//!
//! The list changes a few times a week, so it is read from a small JSON cache when the cache
//! is younger than the refresh interval and was made against the same base URL; otherwise it
//! is fetched (one request, through the limiter) and the cache rewritten atomically.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::client::{Client, RequestError};
use crate::core::market::{Instrument, Symbol};
use crate::core::timeframe::Market;

/// Why discovery failed.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error("cannot list contracts: {0}")]
    Request(#[from] RequestError),
    #[error(
        "bitget lists no tradable USDT instruments; check exchange.market and exchange.base_url"
    )]
    Empty,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cache {
    base_url: String,
    market: String,
    fetched_at_ms: u64,
    symbols: Vec<String>,
}

fn market_name(market: Market) -> &'static str {
    match market {
        Market::Futures => "futures",
        Market::Spot => "spot",
    }
}

/// Every instrument Bitget lists for `market` (one request, through the limiter).
///
/// # Errors
/// The request failed or the reply is unreadable.
pub async fn instruments(
    client: &Client,
    market: Market,
) -> Result<Vec<Instrument>, DiscoveryError> {
    Ok(client.instruments(market).await?)
}

/// Reads the cache if it is fresh and for this exchange and market.
pub fn read_cache(
    path: &Path,
    base_url: &str,
    market: Market,
    now_ms: u64,
    max_age: Duration,
) -> Option<Vec<Symbol>> {
    let text = std::fs::read_to_string(path).ok()?;
    let cache: Cache = serde_json::from_str(&text).ok()?;
    let fresh = now_ms.saturating_sub(cache.fetched_at_ms) < max_age.as_millis() as u64;
    (fresh && cache.base_url == base_url && cache.market == market_name(market)).then(|| {
        cache
            .symbols
            .iter()
            .map(|s| Symbol::from_exchange(s))
            .collect()
    })
}

fn write_cache(path: &Path, cache: &Cache) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(cache).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

/// Fetches the tradable USDT instruments now, and rewrites the cache (a cache that cannot be
/// written is logged, not fatal).
///
/// # Errors
/// The request failed, the reply is unreadable, or it lists nothing tradable.
pub async fn fetch(
    client: &Client,
    market: Market,
    cache: &Path,
    now_ms: u64,
) -> Result<Vec<Symbol>, DiscoveryError> {
    let symbols: Vec<Symbol> = instruments(client, market)
        .await?
        .into_iter()
        .filter(|i| i.is_live() && i.quote == "USDT")
        .map(|i| i.symbol)
        .collect();
    if symbols.is_empty() {
        return Err(DiscoveryError::Empty);
    }
    let record = Cache {
        base_url: client.base_url().to_owned(),
        market: market_name(market).to_owned(),
        fetched_at_ms: now_ms,
        symbols: symbols.iter().map(|s| s.as_str().to_owned()).collect(),
    };
    if let Err(error) = write_cache(cache, &record) {
        tracing::warn!(path = %cache.display(), "cannot write the contract cache: {error}");
    }
    Ok(symbols)
}

/// The symbol list: from the cache when fresh, else fetched.
///
/// # Errors
/// As [`fetch`], when the cache is stale or missing.
pub async fn discover(
    client: &Client,
    market: Market,
    cache: &Path,
    now_ms: u64,
    max_age: Duration,
) -> Result<Vec<Symbol>, DiscoveryError> {
    if let Some(symbols) = read_cache(cache, client.base_url(), market, now_ms, max_age) {
        tracing::info!(count = symbols.len(), cache = %cache.display(), "symbols from the contract cache");
        return Ok(symbols);
    }
    let symbols = fetch(client, market, cache, now_ms).await?;
    tracing::info!(count = symbols.len(), "symbols discovered from bitget");
    Ok(symbols)
}
