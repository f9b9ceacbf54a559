//! The typed Bitget client: one method per question the poller and the trading engine ask
//! (`candles()`, `tickers()`, `instruments()`, `place_order()` …), each building its query
//! from the endpoint table and parsing the reply into core types once.
//!
//! It sits on [`Http`], which any caller with a request of its own (the gateway) can use
//! directly through [`Client::http`].

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use thiserror::Error;

use super::credential::Signer;
use super::endpoints::{self, market_query, USDT_FUTURES};
use tokio_util::sync::CancellationToken;

use super::http::{BuildError, CallError, ClientConfig, Http, Observer};
use super::parse::{self, ParseError, Tickers};
use super::query::CandleQuery;
use crate::core::market::{
    Balance, Candle, Instrument, Market, OrderAck, OrderDetail, OrderRequest, Position, Stamped,
    Symbol,
};
use crate::core::timeframe::Timeframe;
use crate::limiter::backoff::Backoff;
use crate::limiter::recent::RecentRateLimits;
use crate::limiter::RateLimiter;

/// Why a typed call produced no answer.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum RequestError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// The exchange answered, but not in a shape this program reads.
    #[error("unreadable reply from {endpoint}: {source}")]
    Malformed {
        endpoint: &'static str,
        source: ParseError,
    },
}

impl RequestError {
    fn malformed(endpoint: &'static str) -> impl FnOnce(ParseError) -> Self {
        move |source| Self::Malformed { endpoint, source }
    }
}

/// The typed client; cheap to clone, every clone sharing the limiter and connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: Http,
}

impl From<Http> for Client {
    fn from(http: Http) -> Self {
        Self { http }
    }
}

impl Client {
    /// A client for `config`, limited by `limiter`; `stop` cancels waiting requests.
    ///
    /// # Errors
    /// The TLS backend cannot be set up.
    pub fn new(
        config: &ClientConfig,
        limiter: Arc<dyn RateLimiter>,
        recent: Arc<RecentRateLimits>,
        stop: CancellationToken,
    ) -> Result<Self, BuildError> {
        Http::new(config, limiter, recent, stop).map(Self::from)
    }

    /// The same client, reading `wall` for signature stamps (see [`Http::with_wall`]).
    #[must_use]
    pub fn with_wall(self, wall: Arc<dyn crate::core::clock::Clock>) -> Self {
        Self {
            http: self.http.with_wall(wall),
        }
    }

    /// The same client, telling `observer` about every round trip.
    #[must_use]
    pub fn with_observer(self, observer: Arc<dyn Observer>) -> Self {
        Self {
            http: self.http.with_observer(observer),
        }
    }

    /// The backoff policy retries follow.
    pub fn backoff(&self) -> Backoff {
        self.http.backoff()
    }

    /// The raw layer underneath, for requests that are not one of the typed ones.
    pub fn http(&self) -> &Http {
        &self.http
    }

    /// The same client, signing private requests with `signer`.
    #[must_use]
    pub fn with_signer(self, signer: Arc<Signer>) -> Self {
        Self {
            http: self.http.with_signer(signer),
        }
    }

    pub fn base_url(&self) -> &str {
        self.http.base_url()
    }

    /// Measures the clock offset to Bitget and signs with it from then on (milliseconds).
    ///
    /// # Errors
    /// As [`Http::sync_clock`].
    pub async fn sync_clock(&self) -> Result<i64, CallError> {
        self.http.sync_clock().await
    }

    /// The latest `rows` candles of `symbol` in `timeframe` (and its market), in one
    /// attempt: a failure is returned at once for a caller that asks again anyway and must
    /// not hold a task while waiting.
    ///
    /// # Errors
    /// The attempt failed, or its reply is unreadable.
    pub async fn candles(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        rows: u32,
    ) -> Result<Stamped<Vec<Candle>>, RequestError> {
        let endpoint = endpoints::candles(timeframe.market());
        self.candles_from(
            endpoint,
            endpoints::MAX_CANDLE_ROWS,
            symbol,
            timeframe,
            rows,
        )
        .await
    }

    /// The latest `rows` closed candles of `symbol` from `/history-candles`, which Bitget
    /// meters apart from `/candles`; from `/candles` where the market has no such endpoint.
    ///
    /// # Errors
    /// The attempt failed, or its reply is unreadable.
    pub async fn closed_candles(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        rows: u32,
    ) -> Result<Stamped<Vec<Candle>>, RequestError> {
        match endpoints::history_candles(timeframe.market()) {
            Some(endpoint) => {
                self.candles_from(
                    endpoint,
                    endpoints::MAX_HISTORY_CANDLE_ROWS,
                    symbol,
                    timeframe,
                    rows,
                )
                .await
            }
            None => self.candles(symbol, timeframe, rows).await,
        }
    }

    /// The `rows` closed candles of `symbol` opening before `end` (exclusive, at most the
    /// current bar's open, so every row is closed), in one attempt: what confirms a bar's
    /// final state or fills a hole. From `/history-candles` when `history` (and the market
    /// has it), else from `/candles`: Bitget meters the two apart, so callers take turns.
    ///
    /// # Errors
    /// The attempt failed, or its reply is unreadable.
    pub async fn closed_candles_before(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        end: u64,
        rows: u32,
        history: bool,
    ) -> Result<Stamped<Vec<Candle>>, RequestError> {
        let (endpoint, max_rows) = match endpoints::history_candles(timeframe.market()) {
            Some(endpoint) if history => (endpoint, endpoints::MAX_HISTORY_CANDLE_ROWS),
            _ => (
                endpoints::candles(timeframe.market()),
                endpoints::MAX_CANDLE_ROWS,
            ),
        };
        let query = CandleQuery {
            end: Some(end),
            ..CandleQuery::latest(symbol.clone(), timeframe, rows.min(max_rows))
        };
        self.candles_query(endpoint, symbol, &query).await
    }

    async fn candles_from(
        &self,
        endpoint: &'static endpoints::Endpoint,
        max_rows: u32,
        symbol: &Symbol,
        timeframe: Timeframe,
        rows: u32,
    ) -> Result<Stamped<Vec<Candle>>, RequestError> {
        let query = CandleQuery::latest(symbol.clone(), timeframe, rows.min(max_rows));
        self.candles_query(endpoint, symbol, &query).await
    }

    async fn candles_query(
        &self,
        endpoint: &'static endpoints::Endpoint,
        symbol: &Symbol,
        query: &CandleQuery,
    ) -> Result<Stamped<Vec<Candle>>, RequestError> {
        let timeframe = query.timeframe;
        let pairs = query.to_pairs();
        let query: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = self
            .http
            .get_once(endpoint, &query, Some(symbol.as_str()))
            .await?;
        parse::candles(reply.input(), symbol, timeframe).map_err(|e| {
            tracing::warn!(symbol = %symbol, endpoint = endpoint.path, class = "malformed", "{e}");
            RequestError::malformed(endpoint.path)(e)
        })
    }

    /// Every ticker of `market` in one request, retried with backoff.
    ///
    /// # Errors
    /// Retries are used up, or the reply is unreadable.
    pub async fn tickers(&self, market: Market) -> Result<Stamped<Tickers>, RequestError> {
        self.tickers_raw(market).await.map(|(tickers, _)| tickers)
    }

    /// [`Self::tickers`], with the reply's `data` exactly as Bitget sent it.
    ///
    /// # Errors
    /// As [`Self::tickers`].
    pub async fn tickers_raw(
        &self,
        market: Market,
    ) -> Result<(Stamped<Tickers>, Bytes), RequestError> {
        let endpoint = endpoints::tickers(market);
        let reply = self.http.get(endpoint, market_query(market), None).await?;
        let tickers =
            parse::tickers(reply.input()).map_err(RequestError::malformed(endpoint.path))?;
        let raw = reply
            .data
            .clone()
            .map_or_else(Bytes::new, |range| reply.body.slice(range));
        Ok((tickers, raw))
    }

    /// Every instrument Bitget lists for `market`.
    ///
    /// # Errors
    /// Retries are used up, or the reply is unreadable.
    pub async fn instruments(&self, market: Market) -> Result<Vec<Instrument>, RequestError> {
        let endpoint = endpoints::instruments(market);
        let reply = self.http.get(endpoint, market_query(market), None).await?;
        Ok(parse::instruments(reply.input())
            .map_err(RequestError::malformed(endpoint.path))?
            .data)
    }

    /// Places `order` (a USDT-M market order), sent at most once; see [`Http::signed_post`].
    ///
    /// # Errors
    /// The attempt failed, or Bitget accepted it with an unreadable acknowledgement (the
    /// order exists all the same).
    pub async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, RequestError> {
        let endpoint = &endpoints::MIX_PLACE_ORDER;
        let path = endpoint.path;
        let reply = self
            .http
            .signed_post(endpoint, order_body(order), Some(order.symbol.as_str()))
            .await?;
        parse::order_ack(reply.input()).map_err(RequestError::malformed(path))
    }

    /// The order placed with `client_oid` on `symbol`.
    ///
    /// # Errors
    /// The request failed (Bitget's "not found" codes included), or the reply is unreadable.
    pub async fn order_detail(
        &self,
        symbol: &Symbol,
        client_oid: &str,
    ) -> Result<OrderDetail, RequestError> {
        let endpoint = &endpoints::MIX_ORDER_DETAIL;
        let path = endpoint.path;
        let query = [
            ("symbol", symbol.as_str()),
            ("productType", USDT_FUTURES),
            ("clientOid", client_oid),
        ];
        let reply = self
            .http
            .signed_get(endpoint, &query, Some(symbol.as_str()))
            .await?;
        parse::order_detail(reply.input()).map_err(RequestError::malformed(path))
    }

    /// The USDT-M account balances.
    ///
    /// # Errors
    /// The request failed, or the reply is unreadable.
    pub async fn balances(&self) -> Result<Vec<Balance>, RequestError> {
        let endpoint = &endpoints::MIX_ACCOUNTS;
        let path = endpoint.path;
        let reply = self
            .http
            .signed_get(endpoint, market_query(Market::Futures), None)
            .await?;
        Ok(parse::balances(reply.input())
            .map_err(RequestError::malformed(path))?
            .data)
    }

    /// Every open USDT-M position.
    ///
    /// # Errors
    /// The request failed, or the reply is unreadable.
    pub async fn positions(&self) -> Result<Vec<Position>, RequestError> {
        let endpoint = &endpoints::MIX_ALL_POSITIONS;
        let path = endpoint.path;
        let reply = self
            .http
            .signed_get(endpoint, market_query(Market::Futures), None)
            .await?;
        Ok(parse::positions(reply.input())
            .map_err(RequestError::malformed(path))?
            .data)
    }
}

/// The exact JSON body of `order` as sent (and signed): a crossed-margin USDT-M market order.
pub fn order_body(order: &OrderRequest) -> String {
    json!({
        "symbol": order.symbol.as_str(),
        "productType": USDT_FUTURES,
        "marginMode": "crossed",
        "marginCoin": "USDT",
        "size": order.quantity.abs().normalize().to_string(),
        "side": order.side(),
        "orderType": "market",
        "reduceOnly": if order.reduce_only { "YES" } else { "NO" },
        "clientOid": order.client_oid,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::market::Symbol;

    #[test]
    fn the_body_is_a_market_order_with_our_client_oid() {
        let order = OrderRequest {
            symbol: Symbol::from_exchange("BTCUSDT"),
            quantity: "-0.0030".parse().unwrap(),
            reduce_only: true,
            client_oid: "bp-st-BTCUSDT-29922000".into(),
        };
        assert_eq!(
            order_body(&order),
            r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.003","side":"sell","orderType":"market","reduceOnly":"YES","clientOid":"bp-st-BTCUSDT-29922000"}"#
        );
    }
}
