//! Bitget's endpoints, in one table: path, method, which budget a request spends, whose
//! budget it is (the IP's or the account's), Bitget's documented per-endpoint limit, and
//! whether it is signed. The limiter, the HTTP layer, discovery, the scheduler and trading
//! all read it; nothing else spells a Bitget path.
//!
//! Limits are the documented figures (`../shared/bitget-api.md`, the Bitget API pages). A
//! path not in the table spends the default budget (10/s, IP) and is reported once, so a
//! mistyped path cannot go unnoticed into the wrong budget.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::core::market::Market;
use crate::limiter::{Category, Keys, Route, Scope};

/// The HTTP method an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// One Bitget endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Its index in [`ENDPOINTS`], which is its id in the limiter (a test checks they agree).
    pub id: u16,
    pub path: &'static str,
    pub method: Method,
    /// The budget family it draws from.
    pub category: Category,
    /// Metered per IP or per account (UID).
    pub scope: Scope,
    /// Bitget's documented requests per second for this endpoint.
    pub limit: u32,
    /// Needs the `ACCESS-*` signature headers.
    pub signed: bool,
}

const fn public(id: u16, path: &'static str, limit: u32) -> Endpoint {
    Endpoint {
        id,
        path,
        method: Method::Get,
        category: Category::Market,
        scope: Scope::Ip,
        limit,
        signed: false,
    }
}

const fn account(id: u16, path: &'static str, limit: u32) -> Endpoint {
    Endpoint {
        id,
        path,
        method: Method::Get,
        category: Category::Account,
        scope: Scope::Account,
        limit,
        signed: true,
    }
}

const fn trade(id: u16, path: &'static str, limit: u32) -> Endpoint {
    Endpoint {
        id,
        path,
        method: Method::Post,
        category: Category::Trade,
        scope: Scope::Account,
        limit,
        signed: true,
    }
}

pub const SERVER_TIME: Endpoint = public(0, "/api/v2/public/time", 20);
pub const MIX_CONTRACTS: Endpoint = public(1, "/api/v2/mix/market/contracts", 20);
pub const MIX_TICKERS: Endpoint = public(2, "/api/v2/mix/market/tickers", 20);
pub const MIX_TICKER: Endpoint = public(3, "/api/v2/mix/market/ticker", 20);
pub const MIX_CANDLES: Endpoint = public(4, "/api/v2/mix/market/candles", 20);
pub const MIX_HISTORY_CANDLES: Endpoint = public(5, "/api/v2/mix/market/history-candles", 20);
pub const MIX_MERGE_DEPTH: Endpoint = public(6, "/api/v2/mix/market/merge-depth", 20);
pub const MIX_CURRENT_FUND_RATE: Endpoint = public(7, "/api/v2/mix/market/current-fund-rate", 20);
pub const MIX_OPEN_INTEREST: Endpoint = public(8, "/api/v2/mix/market/open-interest", 20);
pub const SPOT_SYMBOLS: Endpoint = public(9, "/api/v2/spot/public/symbols", 20);
pub const SPOT_TICKERS: Endpoint = public(10, "/api/v2/spot/market/tickers", 20);
pub const SPOT_CANDLES: Endpoint = public(11, "/api/v2/spot/market/candles", 20);
pub const MIX_FILLS_HISTORY: Endpoint = public(12, "/api/v2/mix/market/fills-history", 10);
pub const MIX_HISTORY_FUND_RATE: Endpoint = public(13, "/api/v2/mix/market/history-fund-rate", 20);
pub const MIX_QUERY_POSITION_LEVER: Endpoint =
    public(14, "/api/v2/mix/market/query-position-lever", 10);
pub const MIX_HISTORY_MARK_CANDLES: Endpoint =
    public(15, "/api/v2/mix/market/history-mark-candles", 20);
pub const MIX_HISTORY_INDEX_CANDLES: Endpoint =
    public(16, "/api/v2/mix/market/history-index-candles", 20);
pub const SPOT_COINS: Endpoint = public(17, "/api/v2/spot/public/coins", 3);
pub const SPOT_ORDERBOOK: Endpoint = public(18, "/api/v2/spot/market/orderbook", 20);
pub const SPOT_ASSETS: Endpoint = account(19, "/api/v2/spot/account/assets", 10);
pub const UTA_SETTINGS: Endpoint = account(20, "/api/v3/account/settings", 10);
pub const MIX_ACCOUNTS: Endpoint = account(21, "/api/v2/mix/account/accounts", 10);
pub const MIX_ACCOUNT: Endpoint = account(22, "/api/v2/mix/account/account", 10);
pub const MIX_ALL_POSITIONS: Endpoint = account(23, "/api/v2/mix/position/all-position", 5);
pub const MIX_ORDER_DETAIL: Endpoint = account(24, "/api/v2/mix/order/detail", 10);
pub const MIX_ORDERS_PENDING: Endpoint = account(25, "/api/v2/mix/order/orders-pending", 10);
pub const MIX_PLACE_ORDER: Endpoint = trade(26, "/api/v2/mix/order/place-order", 10);
pub const MIX_CANCEL_ORDER: Endpoint = trade(27, "/api/v2/mix/order/cancel-order", 10);

/// Every endpoint this program calls. An endpoint's index here is its id in the limiter.
pub const ENDPOINTS: &[Endpoint] = &[
    SERVER_TIME,
    MIX_CONTRACTS,
    MIX_TICKERS,
    MIX_TICKER,
    MIX_CANDLES,
    MIX_HISTORY_CANDLES,
    MIX_MERGE_DEPTH,
    MIX_CURRENT_FUND_RATE,
    MIX_OPEN_INTEREST,
    SPOT_SYMBOLS,
    SPOT_TICKERS,
    SPOT_CANDLES,
    MIX_FILLS_HISTORY,
    MIX_HISTORY_FUND_RATE,
    MIX_QUERY_POSITION_LEVER,
    MIX_HISTORY_MARK_CANDLES,
    MIX_HISTORY_INDEX_CANDLES,
    SPOT_COINS,
    SPOT_ORDERBOOK,
    SPOT_ASSETS,
    UTA_SETTINGS,
    MIX_ACCOUNTS,
    MIX_ACCOUNT,
    MIX_ALL_POSITIONS,
    MIX_ORDER_DETAIL,
    MIX_ORDERS_PENDING,
    MIX_PLACE_ORDER,
    MIX_CANCEL_ORDER,
];

/// The `productType` of USDT-margined perpetuals, the only futures this program polls.
pub const USDT_FUTURES: &str = "USDT-FUTURES";

/// The response header carrying the endpoint's remaining requests in this second.
pub const REMAIN_HEADER: &str = "x-mbx-used-remain-limit";

/// The production REST host.
pub const BASE_URL: &str = "https://api.bitget.com";

/// Bitget's most candle rows per request on the recent-candles endpoints.
pub const MAX_CANDLE_ROWS: u32 = 1000;

/// Bitget's most candle rows per request on `/history-candles`.
pub const MAX_HISTORY_CANDLE_ROWS: u32 = 200;

/// The path of the endpoint with limiter id `id`; "other" for anything outside the table.
pub fn path_of(id: u16) -> &'static str {
    ENDPOINTS.get(usize::from(id)).map_or("other", |e| e.path)
}

/// The table entry for `path`, with its index.
pub fn lookup(path: &str) -> Option<(u16, &'static Endpoint)> {
    ENDPOINTS
        .iter()
        .position(|e| e.path == path)
        .map(|i| (i as u16, &ENDPOINTS[i]))
}

/// Paths outside the table already reported, so each is named once; at most
/// [`UNKNOWN_KEPT`] are remembered, and each is logged cut to [`UNKNOWN_SHOWN`] bytes, so a
/// client inventing paths can grow neither memory nor the log.
static UNKNOWN_REPORTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// Unknown paths remembered; past this they are counted, not named.
const UNKNOWN_KEPT: usize = 256;
/// Bytes of an unknown path written to the log.
const UNKNOWN_SHOWN: usize = 96;
/// Unknown paths seen past [`UNKNOWN_KEPT`].
static UNKNOWN_UNNAMED: AtomicU64 = AtomicU64::new(0);

/// The limiter route of `endpoint`: its budget, scope and documented limit, with no lookup.
pub fn route(endpoint: &Endpoint) -> Route {
    Route {
        category: endpoint.category,
        endpoint: endpoint.id,
        scope: endpoint.scope,
        endpoint_limit: Some(endpoint.limit),
        keys: Keys::default(),
        candidates: 0,
    }
}

/// The limiter route of a raw `path` (a relayed request): its endpoint's when it is in the
/// table; otherwise the default budget, and the first request to it is logged.
pub fn route_of(path: &str) -> Route {
    match lookup(path) {
        Some((_, e)) => route(e),
        None => {
            report_unknown(path);
            Route::from(Category::Default)
        }
    }
}

fn report_unknown(path: &str) {
    let shown = crate::core::text::cut(path, UNKNOWN_SHOWN);
    let first = {
        let Ok(mut seen) = UNKNOWN_REPORTED.lock() else {
            return;
        };
        let seen = seen.get_or_insert_with(HashSet::new);
        if seen.contains(shown) {
            false
        } else if seen.len() < UNKNOWN_KEPT {
            seen.insert(shown.to_owned())
        } else {
            let unnamed = UNKNOWN_UNNAMED.fetch_add(1, Ordering::Relaxed);
            if unnamed == 0 {
                tracing::warn!(
                    "{UNKNOWN_KEPT} paths outside the endpoint table were already reported; further ones spend the default budget (10/s per ip) without a line each"
                );
            }
            false
        }
    };
    if first {
        tracing::warn!(
            endpoint = shown,
            "a path outside the endpoint table spends the default budget (10/s per ip)"
        );
    }
}

/// Why a path cannot be sent to Bitget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path leaves the root with '..'")]
    AboveRoot,
    #[error("the path holds a character or escape bitget paths never have")]
    Character,
    #[error("only /api/v2/ and /api/v3/ paths are bitget's")]
    Namespace,
}

/// `raw` (a request path, without the query) as it will reach Bitget: dot segments
/// resolved, empty segments (`//`) dropped, percent-encoded unreserved characters decoded.
/// Refused when it climbs above the root, keeps any other escape or a character Bitget's
/// paths never hold (so no later layer — reqwest's URL parser, a proxy — can read it as
/// another path), or lies outside Bitget's `/api/v2/` and `/api/v3/` namespaces.
///
/// # Errors
/// See above; Bitget answers such paths 40404.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    let decoded = decode_unreserved(raw)?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
            }
            s => segments.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    match segments.as_slice() {
        ["api", "v2" | "v3", _, ..] => Ok(path),
        _ => Err(PathError::Namespace),
    }
}

/// Decodes `%XX` escapes of unreserved characters (RFC 3986: letters, digits, `-._~`);
/// any other escape, and any character outside those and `/`, is refused.
fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::Character)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PathError::Character)?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| PathError::Character)?;
            if !unreserved(byte) {
                return Err(PathError::Character);
            }
            out.push(char::from(byte));
            i += 3;
        } else if unreserved(b) || b == b'/' {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(PathError::Character);
        }
    }
    Ok(out)
}

/// The candles endpoint of `market`.
pub fn candles(market: Market) -> &'static Endpoint {
    match market {
        Market::Futures => &MIX_CANDLES,
        Market::Spot => &SPOT_CANDLES,
    }
}

/// The closed-candles endpoint of `market`, where the adapter knows one: its own 20/s beside
/// `/candles`, at most [`MAX_HISTORY_CANDLE_ROWS`] rows, never the forming bar.
pub fn history_candles(market: Market) -> Option<&'static Endpoint> {
    match market {
        Market::Futures => Some(&MIX_HISTORY_CANDLES),
        // Spot's `/history-candles` requires `endTime` and the simulator does not serve it
        // yet; spot keeps to `/candles`.
        Market::Spot => None,
    }
}

/// The all-tickers endpoint of `market`.
pub fn tickers(market: Market) -> &'static Endpoint {
    match market {
        Market::Futures => &MIX_TICKERS,
        Market::Spot => &SPOT_TICKERS,
    }
}

/// The instrument-list endpoint of `market`.
pub fn instruments(market: Market) -> &'static Endpoint {
    match market {
        Market::Futures => &MIX_CONTRACTS,
        Market::Spot => &SPOT_SYMBOLS,
    }
}

/// The market whose `endpoint` is at `path`, e.g. `market_of(path, candles)`.
pub fn market_of(path: &str, endpoint: fn(Market) -> &'static Endpoint) -> Option<Market> {
    [Market::Futures, Market::Spot]
        .into_iter()
        .find(|&m| endpoint(m).path == path)
}

/// The query every request about `market` carries (`productType` for futures).
pub fn market_query(market: Market) -> &'static [(&'static str, &'static str)] {
    match market {
        Market::Futures => &[("productType", USDT_FUTURES)],
        Market::Spot => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_knows_its_place_in_the_table() {
        for (i, e) in ENDPOINTS.iter().enumerate() {
            assert_eq!(usize::from(e.id), i, "{}", e.path);
            assert_eq!(route(e), route_of(e.path), "{}", e.path);
        }
    }

    #[test]
    fn paths_are_sent_as_bitget_reads_them_or_refused() {
        let ok = |raw: &str| canonical_path(raw).unwrap();
        assert_eq!(
            ok("/api/v2/x/../mix/market/candles"),
            "/api/v2/mix/market/candles"
        );
        assert_eq!(
            ok("//api//v2/./mix/market//candles/"),
            "/api/v2/mix/market/candles"
        );
        assert_eq!(
            ok("/api/v2/mix/market/%63andles"),
            "/api/v2/mix/market/candles"
        );
        assert_eq!(
            ok("/api/%2e%2E/api/v3/account/settings"),
            "/api/v3/account/settings"
        );
        assert_eq!(
            canonical_path("/api/../sim/stats"),
            Err(PathError::Namespace)
        );
        assert_eq!(
            canonical_path("/api/%2e%2e/sim/stats"),
            Err(PathError::Namespace)
        );
        assert_eq!(
            canonical_path("/api/v2/../../.."),
            Err(PathError::AboveRoot)
        );
        assert_eq!(
            canonical_path("/api/v2/mix%2fmarket/candles"),
            Err(PathError::Character)
        );
        assert_eq!(
            canonical_path("/api/v2/mix\\market"),
            Err(PathError::Character)
        );
        assert_eq!(canonical_path("/api/v2/%zz"), Err(PathError::Character));
        assert_eq!(canonical_path("/api/v2/%4"), Err(PathError::Character));
        assert_eq!(
            canonical_path("/api/v1/spot/market/tickers"),
            Err(PathError::Namespace)
        );
        assert_eq!(canonical_path("/api/v2"), Err(PathError::Namespace));
        assert_eq!(
            canonical_path("/API/v2/public/time"),
            Err(PathError::Namespace)
        );
        // Every path of the table is its own canonical form.
        for e in ENDPOINTS {
            assert_eq!(ok(e.path), e.path);
        }
    }

    #[test]
    fn every_path_is_listed_once_with_a_budget_that_fits_its_scope() {
        let mut seen = HashSet::new();
        for e in ENDPOINTS {
            assert!(seen.insert(e.path), "{} listed twice", e.path);
            assert!(
                e.path.starts_with("/api/v2/") || e.path.starts_with("/api/v3/"),
                "{}",
                e.path
            );
            let expected = match e.category {
                Category::Market | Category::Default => Scope::Ip,
                Category::Account | Category::Trade => Scope::Account,
            };
            assert_eq!(e.scope, expected, "{}", e.path);
            assert_eq!(e.signed, e.scope == Scope::Account, "{}", e.path);
            assert!(e.limit > 0 && e.limit <= 20, "{}", e.path);
        }
    }

    #[test]
    fn routes_carry_the_table_and_unknown_paths_fall_to_the_default_budget() {
        let r = route_of("/api/v2/mix/position/all-position");
        assert_eq!(r.category, Category::Account);
        assert_eq!(r.scope, Scope::Account);
        assert_eq!(r.endpoint_limit, Some(5));
        assert_eq!(
            ENDPOINTS[usize::from(r.endpoint)].path,
            MIX_ALL_POSITIONS.path
        );
        let candles = route_of(MIX_CANDLES.path);
        assert_eq!(
            (candles.category, candles.scope),
            (Category::Market, Scope::Ip)
        );
        assert_eq!(
            market_of(SPOT_CANDLES.path, super::candles),
            Some(Market::Spot)
        );
        assert_eq!(market_of(MIX_TICKERS.path, tickers), Some(Market::Futures));
        assert_eq!(market_of(MIX_TICKER.path, tickers), None);
        let typo = route_of("/api/v2/mix/market/candle");
        assert_eq!(typo.category, Category::Default);
        assert_eq!(typo.endpoint, u16::MAX);
        assert_eq!(typo.scope, Scope::Ip);
    }
}
