//! Every endpoint the simulator serves, with the scope and limit Bitget documents for it.
//!
//! One table drives routing, signing checks and rate limiting, so adding an endpoint is one
//! line here plus its handler. Limits are Bitget's documented per-endpoint budgets (see the
//! "Rate limit" line on each endpoint's doc page); each is counted independently.

/// Who a budget belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Market data: counted per client IP.
    Ip,
    /// Account and trade: counted per API key (Bitget says per UID; a key belongs to one UID).
    ApiKey,
}

/// What an endpoint does; the handler dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Time,
    Contracts,
    Tickers,
    Ticker,
    Candles,
    HistoryCandles,
    MergeDepth,
    CurrentFundRate,
    OpenInterest,
    FillsHistory,
    SpotSymbols,
    SpotCoins,
    SpotTickers,
    SpotCandles,
    MarginCurrencies,
    SpotOrderbook,
    HistoryFundRate,
    QueryPositionLever,
    HistoryMarkCandles,
    HistoryIndexCandles,
    SpotAssets,
    AccountSettings,
    Accounts,
    Account,
    AllPosition,
    PlaceOrder,
    CancelOrder,
    OrderDetail,
    OrdersPending,
}

/// One row of the endpoint table.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Full request path, as signed.
    pub path: &'static str,
    pub route: Route,
    pub scope: Scope,
    /// Documented requests per second for one scope key.
    pub limit_per_sec: u32,
    /// Whether `ACCESS-*` headers are required.
    pub signed: bool,
}

const fn public(path: &'static str, route: Route, limit_per_sec: u32) -> Endpoint {
    Endpoint {
        method: "GET",
        path,
        route,
        scope: Scope::Ip,
        limit_per_sec,
        signed: false,
    }
}

const fn private(
    method: &'static str,
    path: &'static str,
    route: Route,
    limit_per_sec: u32,
) -> Endpoint {
    Endpoint {
        method,
        path,
        route,
        scope: Scope::ApiKey,
        limit_per_sec,
        signed: true,
    }
}

/// The endpoint table. Limits: market data 20/s per IP (fills-history 10/s); account 10/s per
/// key (all-position 5/s); trade 10/s per key.
pub const ENDPOINTS: &[Endpoint] = &[
    public("/api/v2/public/time", Route::Time, 20),
    public("/api/v2/mix/market/contracts", Route::Contracts, 20),
    public("/api/v2/mix/market/tickers", Route::Tickers, 20),
    public("/api/v2/mix/market/ticker", Route::Ticker, 20),
    public("/api/v2/mix/market/candles", Route::Candles, 20),
    public(
        "/api/v2/mix/market/history-candles",
        Route::HistoryCandles,
        20,
    ),
    public("/api/v2/mix/market/merge-depth", Route::MergeDepth, 20),
    public(
        "/api/v2/mix/market/current-fund-rate",
        Route::CurrentFundRate,
        20,
    ),
    public("/api/v2/mix/market/open-interest", Route::OpenInterest, 20),
    public("/api/v2/mix/market/fills-history", Route::FillsHistory, 10),
    public("/api/v2/spot/public/symbols", Route::SpotSymbols, 20),
    // Spot coin list: ccxt's load_markets reads it; Bitget meters it at 3/s.
    public("/api/v2/spot/public/coins", Route::SpotCoins, 3),
    public("/api/v2/spot/market/tickers", Route::SpotTickers, 20),
    public("/api/v2/spot/market/candles", Route::SpotCandles, 20),
    // Margin pairs: ccxt's load_markets reads it; the simulator has none, so it lists nothing.
    public("/api/v2/margin/currencies", Route::MarginCurrencies, 10),
    public("/api/v2/spot/market/orderbook", Route::SpotOrderbook, 20),
    public(
        "/api/v2/mix/market/history-fund-rate",
        Route::HistoryFundRate,
        20,
    ),
    public(
        "/api/v2/mix/market/query-position-lever",
        Route::QueryPositionLever,
        10,
    ),
    public(
        "/api/v2/mix/market/history-mark-candles",
        Route::HistoryMarkCandles,
        20,
    ),
    public(
        "/api/v2/mix/market/history-index-candles",
        Route::HistoryIndexCandles,
        20,
    ),
    private("GET", "/api/v2/spot/account/assets", Route::SpotAssets, 10),
    private(
        "GET",
        "/api/v3/account/settings",
        Route::AccountSettings,
        10,
    ),
    private("GET", "/api/v2/mix/account/accounts", Route::Accounts, 10),
    private("GET", "/api/v2/mix/account/account", Route::Account, 10),
    private(
        "GET",
        "/api/v2/mix/position/all-position",
        Route::AllPosition,
        5,
    ),
    private(
        "POST",
        "/api/v2/mix/order/place-order",
        Route::PlaceOrder,
        10,
    ),
    private(
        "POST",
        "/api/v2/mix/order/cancel-order",
        Route::CancelOrder,
        10,
    ),
    private("GET", "/api/v2/mix/order/detail", Route::OrderDetail, 10),
    private(
        "GET",
        "/api/v2/mix/order/orders-pending",
        Route::OrdersPending,
        10,
    ),
];

/// Index into [`ENDPOINTS`] of the endpoint at `path`, whatever the method.
pub fn find(path: &str) -> Option<usize> {
    ENDPOINTS.iter().position(|e| e.path == path)
}

/// Looks an endpoint up by full path or by the part after `/api/v2/` (`mix/market/candles`).
pub fn find_by_name(name: &str) -> Option<usize> {
    let name = name.trim().trim_start_matches('/');
    let full = if name.starts_with("api/v2/") {
        format!("/{name}")
    } else {
        format!("/api/v2/{name}")
    };
    find(&full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_and_limits_match_the_docs() {
        assert!(find("/api/v3/account/settings").is_some());
        let mut paths: Vec<_> = ENDPOINTS.iter().map(|e| e.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ENDPOINTS.len());
        let limit = |name| ENDPOINTS[find_by_name(name).unwrap()].limit_per_sec;
        assert_eq!(limit("mix/market/candles"), 20);
        assert_eq!(limit("mix/market/fills-history"), 10);
        assert_eq!(limit("mix/position/all-position"), 5);
        assert_eq!(limit("/api/v2/mix/order/place-order"), 10);
        assert!(find_by_name("mix/market/nope").is_none());
    }
}
