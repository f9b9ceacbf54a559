//! Live orders and account reads, signed, through the shared limiter.
//!
//! An order whose reply is lost (timeout, reset, 5xx) or rate-limited may or may not exist
//! on the exchange. Sending it again blindly is how bots double their positions, so before
//! any second attempt the order is looked up by its `clientOid`. It is placed again only
//! when Bitget says no such order exists, and always with the same `clientOid`, so even a
//! wrong "not found" ends in Bitget's duplicate-id refusal (`45034`), not a second order.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::TRADING_LOG;
use crate::client::{CallError, Client};
use crate::error::{BitgetError, ErrorClass, DUPLICATE_CLIENT_OID_CODE, ORDER_NOT_FOUND_CODES};
use crate::models::{OrderAck, OrderDetail, Symbol};
use crate::parse;

pub const PLACE_ORDER_PATH: &str = "/api/v2/mix/order/place-order";
pub const ORDER_DETAIL_PATH: &str = "/api/v2/mix/order/detail";
pub const ACCOUNTS_PATH: &str = "/api/v2/mix/account/accounts";
pub const POSITIONS_PATH: &str = "/api/v2/mix/position/all-position";
const PRODUCT_TYPE: &str = "USDT-FUTURES";
/// Placements of one order at most: the first, and re-sends after "not found" lookups.
const MAX_PLACEMENTS: u32 = 3;

/// One market order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub symbol: Symbol,
    /// Signed size in the base coin: positive buys.
    pub quantity: Decimal,
    /// Closing only (one-way mode's `reduceOnly`).
    pub reduce_only: bool,
    /// Our id for it; the same on every attempt.
    pub client_oid: String,
}

impl OrderRequest {
    pub fn side(&self) -> &'static str {
        if self.quantity.is_sign_negative() {
            "sell"
        } else {
            "buy"
        }
    }

    /// The exact JSON body sent (and signed).
    pub fn body(&self) -> String {
        json!({
            "symbol": self.symbol.as_str(),
            "productType": PRODUCT_TYPE,
            "marginMode": "crossed",
            "marginCoin": "USDT",
            "size": self.quantity.abs().normalize().to_string(),
            "side": self.side(),
            "orderType": "market",
            "reduceOnly": if self.reduce_only { "YES" } else { "NO" },
            "clientOid": self.client_oid,
        })
        .to_string()
    }
}

/// How an order ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    /// On the exchange; its state as read afterwards.
    Placed(OrderDetail),
    /// On the exchange, but its detail could not be read.
    Acknowledged(OrderAck),
    /// Bitget refused it; it does not exist.
    Rejected { code: String, message: String },
    /// Shutdown began before it was sent.
    NotSent,
    /// Whether it exists could not be found out; it was not sent again.
    Unknown { message: String },
}

/// Result of looking an order up by `clientOid`.
enum Lookup {
    Found(OrderDetail),
    NotFound,
    Failed(String),
}

/// Places `order`, reconciling by `clientOid` before any second attempt.
///
/// # Errors
/// Bitget refused the credentials: nothing signed can work, the run must stop.
pub async fn place_order(
    client: &Client,
    order: &OrderRequest,
) -> Result<OrderOutcome, BitgetError> {
    let body = order.body();
    let symbol = order.symbol.as_str();
    let mut placements = 0;
    loop {
        placements += 1;
        let error = match client
            .signed_post(PLACE_ORDER_PATH, body.clone(), Some(symbol))
            .await
        {
            Ok(reply) => {
                // Accepted: read its fill by clientOid. An unreadable acknowledgement
                // (code 00000 all the same) still means the order exists.
                let ack = parse::order_ack(&reply.body).ok();
                return Ok(match (lookup(client, order).await, ack) {
                    (Lookup::Found(detail), _) => OrderOutcome::Placed(detail),
                    (_, Some(ack)) => OrderOutcome::Acknowledged(ack),
                    (_, None) => OrderOutcome::Unknown {
                        message: "accepted with an unreadable reply, and the lookup failed".into(),
                    },
                });
            }
            Err(CallError::ShuttingDown) => return Ok(OrderOutcome::NotSent),
            Err(CallError::NoCredentials(what)) => {
                return Err(BitgetError::Auth {
                    code: "local".into(),
                    msg: format!("{what} needs credentials"),
                })
            }
            Err(CallError::Bitget(error)) => error,
        };
        let duplicate = error.code() == Some(DUPLICATE_CLIENT_OID_CODE);
        match error.class() {
            ErrorClass::Auth => return Err(error),
            ErrorClass::RateLimited | ErrorClass::Transient => {}
            _ if duplicate => {}
            _ => {
                return Ok(OrderOutcome::Rejected {
                    code: error.code().unwrap_or("-").to_owned(),
                    message: error.to_string(),
                })
            }
        }
        tracing::warn!(target: TRADING_LOG, event = %"reconcile", symbol, client_oid = %order.client_oid, class = ?error.class(), "order outcome unknown ({error}); looking it up by clientOid before anything else");
        match lookup(client, order).await {
            Lookup::Found(detail) if !matches_order(&detail, order) => {
                return Ok(OrderOutcome::Unknown {
                    message: format!(
                        "clientOid {} belongs to another order ({} {}); not sending this one",
                        order.client_oid, detail.side, detail.size
                    ),
                })
            }
            Lookup::Found(detail) => {
                tracing::info!(target: TRADING_LOG, event = %"reconciled", symbol, client_oid = %order.client_oid, order_id = %detail.order_id, state = %detail.state, "the order exists; not sending it again");
                return Ok(OrderOutcome::Placed(detail));
            }
            Lookup::NotFound if placements < MAX_PLACEMENTS && !duplicate => {
                tracing::info!(target: TRADING_LOG, event = %"reconciled", symbol, client_oid = %order.client_oid, found = false, "the order does not exist; sending it again with the same clientOid");
            }
            Lookup::NotFound => {
                return Ok(OrderOutcome::Unknown {
                    message: format!("{placements} placements failed and no order with clientOid {} exists; giving up", order.client_oid),
                })
            }
            Lookup::Failed(message) => {
                return Ok(OrderOutcome::Unknown {
                    message: format!("cannot look the order up ({message}); not sending it again"),
                })
            }
        }
    }
}

/// Whether `detail` is the order we sent, not an older one with the same id.
fn matches_order(detail: &OrderDetail, order: &OrderRequest) -> bool {
    detail.side == order.side() && detail.size == order.quantity.abs()
}

async fn lookup(client: &Client, order: &OrderRequest) -> Lookup {
    let query = [
        ("symbol", order.symbol.as_str()),
        ("productType", PRODUCT_TYPE),
        ("clientOid", order.client_oid.as_str()),
    ];
    match client
        .signed_get(ORDER_DETAIL_PATH, &query, Some(order.symbol.as_str()))
        .await
    {
        Ok(reply) => match parse::order_detail(&reply.body) {
            Ok(detail) => Lookup::Found(detail),
            Err(e) => Lookup::Failed(format!("unreadable order detail: {e}")),
        },
        Err(CallError::Bitget(e))
            if e.code().is_some_and(|c| ORDER_NOT_FOUND_CODES.contains(&c)) =>
        {
            Lookup::NotFound
        }
        Err(e) => Lookup::Failed(e.to_string()),
    }
}

/// Reads balances and positions every `balances_every` / `positions_every` through the
/// account budget, logging them, until `stop`.
///
/// # Errors
/// Bitget refused the credentials.
pub async fn poll_account(
    client: Client,
    balances_every: Duration,
    positions_every: Duration,
    stop: CancellationToken,
) -> Result<(), BitgetError> {
    let mut balances = tokio::time::interval(balances_every);
    let mut positions = tokio::time::interval(positions_every);
    balances.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    positions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let query = [("productType", PRODUCT_TYPE)];
    loop {
        let path = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = balances.tick() => ACCOUNTS_PATH,
            _ = positions.tick() => POSITIONS_PATH,
        };
        let reply = match client.signed_get(path, &query, None).await {
            Ok(reply) => reply,
            Err(CallError::ShuttingDown) => return Ok(()),
            Err(CallError::Bitget(e)) if e.class() == ErrorClass::Auth => return Err(e),
            Err(e) => {
                tracing::warn!(target: TRADING_LOG, event = %"account_read_failed", endpoint = path, "{e}");
                continue;
            }
        };
        if path == ACCOUNTS_PATH {
            match parse::balances(&reply.body) {
                Ok(b) => {
                    for balance in b.data {
                        tracing::info!(target: TRADING_LOG, event = %"balance", coin = %balance.margin_coin, available = %balance.available, equity = %balance.equity, unrealized_pnl = %balance.unrealized_pnl, "account balance");
                    }
                }
                Err(e) => {
                    tracing::warn!(target: TRADING_LOG, event = %"account_read_failed", endpoint = path, "unreadable reply: {e}")
                }
            }
        } else {
            match parse::positions(&reply.body) {
                Ok(p) => {
                    tracing::info!(target: TRADING_LOG, event = %"positions", open = p.data.len(), "exchange positions");
                    for position in p.data {
                        tracing::info!(target: TRADING_LOG, event = %"position", symbol = %position.symbol, side = %position.side, size = %position.size, entry = %position.entry_price, unrealized_pnl = %position.unrealized_pnl, "exchange position");
                    }
                }
                Err(e) => {
                    tracing::warn!(target: TRADING_LOG, event = %"account_read_failed", endpoint = path, "unreadable reply: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_a_market_order_with_our_client_oid() {
        let order = OrderRequest {
            symbol: Symbol::from_exchange("BTCUSDT"),
            quantity: "-0.0030".parse().unwrap(),
            reduce_only: true,
            client_oid: "bp-st-BTCUSDT-29922000".into(),
        };
        assert_eq!(
            order.body(),
            r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.003","side":"sell","orderType":"market","reduceOnly":"YES","clientOid":"bp-st-BTCUSDT-29922000"}"#
        );
    }
}
