//! Live orders and account reads, signed, through the shared limiter.
//!
//! An order whose reply is lost (timeout, reset, 5xx) or rate-limited may or may not exist
//! on the exchange. Sending it again blindly is how bots double their positions, so before
//! any second attempt the order is looked up by its `clientOid`. It is placed again only
//! when Bitget says no such order exists, and always with the same `clientOid`, so even a
//! wrong "not found" ends in Bitget's duplicate-id refusal (`45034`), not a second order.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bitget::client::{Client, RequestError};
use crate::bitget::error::{
    BitgetError, ErrorClass, DUPLICATE_CLIENT_OID_CODE, ORDER_NOT_FOUND_CODES,
};
use crate::bitget::http::CallError;
pub use crate::core::market::OrderRequest;
use crate::core::market::{OrderAck, OrderDetail};
use crate::core::TRADING_LOG;
/// Placements of one order at most: the first, and re-sends after "not found" lookups.
const MAX_PLACEMENTS: u32 = 3;

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
    let symbol = order.symbol.as_str();
    let mut placements = 0;
    loop {
        placements += 1;
        let error = match client.place_order(order).await {
            accepted @ (Ok(_) | Err(RequestError::Malformed { .. })) => {
                // Accepted: read its fill by clientOid. An unreadable acknowledgement
                // (code 00000 all the same) still means the order exists.
                let ack = accepted.ok();
                return Ok(match (lookup(client, order).await, ack) {
                    (Lookup::Found(detail), _) => OrderOutcome::Placed(detail),
                    (_, Some(ack)) => OrderOutcome::Acknowledged(ack),
                    (_, None) => OrderOutcome::Unknown {
                        message: "accepted with an unreadable reply, and the lookup failed".into(),
                    },
                });
            }
            Err(RequestError::Call(CallError::ShuttingDown)) => return Ok(OrderOutcome::NotSent),
            Err(RequestError::Call(CallError::NoCredentials(what))) => {
                return Err(BitgetError::LocalCredentials {
                    detail: format!("none are set, and {what} needs them"),
                })
            }
            Err(RequestError::Call(CallError::Bitget(error))) => error,
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
    match client.order_detail(&order.symbol, &order.client_oid).await {
        Ok(detail) => Lookup::Found(detail),
        Err(RequestError::Call(CallError::Bitget(e)))
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
    loop {
        let balances_due = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = balances.tick() => true,
            _ = positions.tick() => false,
        };
        let read = if balances_due {
            client.balances().await.map(|b| {
                for balance in b {
                    tracing::info!(target: TRADING_LOG, event = %"balance", coin = %balance.margin_coin, available = %balance.available, equity = %balance.equity, unrealized_pnl = %balance.unrealized_pnl, "account balance");
                }
            })
        } else {
            client.positions().await.map(|p| {
                tracing::info!(target: TRADING_LOG, event = %"positions", open = p.len(), "exchange positions");
                for position in p {
                    tracing::info!(target: TRADING_LOG, event = %"position", symbol = %position.symbol, side = %position.side, size = %position.size, entry = %position.entry_price, unrealized_pnl = %position.unrealized_pnl, "exchange position");
                }
            })
        };
        let what = if balances_due {
            "balances"
        } else {
            "positions"
        };
        match read {
            Ok(()) => {}
            Err(RequestError::Call(CallError::ShuttingDown)) => return Ok(()),
            Err(RequestError::Call(CallError::Bitget(e))) if e.class() == ErrorClass::Auth => {
                return Err(e)
            }
            Err(e) => {
                tracing::warn!(target: TRADING_LOG, event = %"account_read_failed", read = what, "{e}");
            }
        }
    }
}
