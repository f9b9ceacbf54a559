//! Per-key balances, orders and positions behind the simulator's signed endpoints.
//!
//! Deliberately simple exchange semantics: one-way mode, cross margin at 10x, market orders
//! fill at the current price, limit orders fill at once when marketable and otherwise rest
//! until cancelled. Enough for a client to read balances, place and cancel orders, and
//! reconcile by `clientOid` (a repeated `clientOid` is refused, as Bitget does).

use std::collections::HashMap;
use std::sync::Mutex;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::codes::ApiError;
use super::endpoints::Route;
use super::handlers::{contract, product, Product};
use super::market::Universe;
use super::params::Params;

/// Leverage applied to every position.
const LEVERAGE: i64 = 10;
/// Taker fee, as Bitget's default tier.
const TAKER_FEE: Decimal = Decimal::from_parts(6, 0, 0, false, 4);

/// Every key's book.
#[derive(Debug)]
pub struct Accounts {
    starting_usdt: Decimal,
    books: Mutex<HashMap<String, Book>>,
}

#[derive(Debug, Default)]
struct Book {
    /// Cash balance in USDT, after fees and realised PnL.
    cash: Decimal,
    orders: Vec<Order>,
    /// Net position per symbol: size (negative = short) and average entry price.
    positions: HashMap<String, (Decimal, Decimal)>,
    next_order_id: u64,
}

#[derive(Debug, Clone)]
struct Order {
    order_id: String,
    client_oid: String,
    symbol: String,
    side: String,
    order_type: String,
    size: Decimal,
    price: Option<Decimal>,
    price_avg: Option<Decimal>,
    state: &'static str,
    fee: Decimal,
    c_time: u64,
    u_time: u64,
}

impl Accounts {
    /// Each key starts with `starting_usdt` of cash and no positions.
    pub fn new(starting_usdt: Decimal) -> Self {
        Self {
            starting_usdt,
            books: Mutex::new(HashMap::new()),
        }
    }

    /// `(clientOid, state)` of every order `api_key` placed, oldest first; for tests and
    /// the demo's summary.
    pub fn orders_of(&self, api_key: &str) -> Vec<(String, String)> {
        let books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books.get(api_key).map_or_else(Vec::new, |b| {
            b.orders
                .iter()
                .map(|o| (o.client_oid.clone(), o.state.to_owned()))
                .collect()
        })
    }

    /// The data JSON of a signed endpoint for `api_key`.
    pub fn handle(
        &self,
        route: Route,
        params: &Params,
        api_key: &str,
        universe: &Universe,
        now: u64,
    ) -> Result<String, ApiError> {
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        let book = books.entry(api_key.to_owned()).or_insert_with(|| Book {
            cash: self.starting_usdt,
            next_order_id: 1_100_000_000_000_000_000,
            ..Book::default()
        });
        let value = match route {
            Route::SpotAssets => {
                // One USDT balance per key, shared with the futures account: enough for a
                // spot client to read its cash.
                let cash = book.cash.round_dp(8).to_string();
                json!([{ "coin": "USDT", "available": cash, "limitAvailable": "0", "frozen": "0", "locked": "0", "uTime": now.to_string() }])
            }
            Route::AccountSettings => {
                // The unified-account (v3) API refuses a classic account; Bitget's exact code
                // for that is not recorded, so the simulator answers as for a path it lacks.
                // ccxt probes this to tell the two apart and takes any refusal as "classic".
                return Err(ApiError::bad_request("40404", ""));
            }
            Route::Accounts => match product(params)? {
                Product::Empty => json!([]),
                Product::UsdtFutures => json!([account_json(book, universe, now)]),
            },
            Route::Account => {
                let product = product(params)?;
                contract(universe, params, product)?;
                let coin = params.required("marginCoin")?;
                if !coin.eq_ignore_ascii_case("USDT") {
                    return Err(ApiError::invalid("marginCoin"));
                }
                account_json(book, universe, now)
            }
            Route::AllPosition => match product(params)? {
                Product::Empty => json!([]),
                Product::UsdtFutures => Value::Array(
                    book.positions
                        .iter()
                        .filter(|(_, (size, _))| !size.is_zero())
                        .map(|(symbol, &(size, avg))| {
                            position_json(symbol, size, avg, universe, now)
                        })
                        .collect(),
                ),
            },
            Route::PlaceOrder => place_order(book, params, universe, now)?,
            Route::CancelOrder => {
                let product = product(params)?;
                let c = contract(universe, params, product)?;
                let order = find_order(book, params, &c.symbol)?;
                if order.state != "live" {
                    return Err(ApiError::bad_request("43001", ""));
                }
                order.state = "canceled";
                order.u_time = now;
                json!({ "orderId": order.order_id, "clientOid": order.client_oid })
            }
            Route::OrderDetail => {
                let product = product(params)?;
                let c = contract(universe, params, product)?;
                order_json(find_order(book, params, &c.symbol)?)
            }
            Route::OrdersPending => {
                product(params)?;
                let live: Vec<Value> = book
                    .orders
                    .iter()
                    .filter(|o| o.state == "live")
                    .filter(|o| params.get("symbol").is_none_or(|s| s == o.symbol))
                    .map(order_json)
                    .collect();
                json!({ "entrustedList": if live.is_empty() { Value::Null } else { Value::Array(live) }, "endId": null })
            }
            _ => unreachable!("public routes are handled by the market handlers"),
        };
        Ok(value.to_string())
    }
}

fn place_order(
    book: &mut Book,
    params: &Params,
    universe: &Universe,
    now: u64,
) -> Result<Value, ApiError> {
    let product = product(params)?;
    let c = contract(universe, params, product)?;
    let margin_mode = params.required("marginMode")?;
    if !matches!(margin_mode, "crossed" | "isolated") {
        return Err(ApiError::invalid("marginMode"));
    }
    if !params.required("marginCoin")?.eq_ignore_ascii_case("USDT") {
        return Err(ApiError::invalid("marginCoin"));
    }
    let side = params.required("side")?;
    if !matches!(side, "buy" | "sell") {
        return Err(ApiError::invalid("side"));
    }
    let order_type = params.required("orderType")?;
    let size: Decimal = params
        .required("size")?
        .parse()
        .map_err(|_| ApiError::invalid("size"))?;
    if size <= Decimal::ZERO || size.scale() > c.volume_place {
        return Err(ApiError::invalid("size"));
    }
    let price = match order_type {
        "market" => None,
        "limit" => {
            let price: Decimal = params
                .required("price")?
                .parse()
                .map_err(|_| ApiError::invalid("price"))?;
            if price <= Decimal::ZERO {
                return Err(ApiError::invalid("price"));
            }
            Some(price)
        }
        _ => return Err(ApiError::invalid("orderType")),
    };
    let client_oid = match params.get("clientOid") {
        Some(oid)
            if oid.len() >= 50
                || !oid
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-+_#".contains(ch)) =>
        {
            return Err(ApiError::invalid("clientOid"));
        }
        Some(oid) if book.orders.iter().any(|o| o.client_oid == oid) => {
            return Err(ApiError::bad_request("45034", ""))
        }
        Some(oid) => oid.to_owned(),
        None => format!("sim{}", book.next_order_id),
    };
    let last = c.last_price(now);
    let signed_size = if side == "buy" { size } else { -size };
    let marketable = match price {
        None => true,
        Some(p) => (side == "buy" && p >= last) || (side == "sell" && p <= last),
    };
    let (current, avg) = book.positions.get(&c.symbol).copied().unwrap_or_default();
    let opening = (current + signed_size).abs() > current.abs();
    if marketable && opening {
        let margin_needed = (size * last) / Decimal::from(LEVERAGE);
        if margin_needed > available(book, universe, now) {
            return Err(ApiError::bad_request("40762", ""));
        }
    }
    book.next_order_id += 1;
    let mut order = Order {
        order_id: book.next_order_id.to_string(),
        client_oid: client_oid.clone(),
        symbol: c.symbol.clone(),
        side: side.to_owned(),
        order_type: order_type.to_owned(),
        size,
        price,
        price_avg: None,
        state: "live",
        fee: Decimal::ZERO,
        c_time: now,
        u_time: now,
    };
    if marketable {
        let fee = (size * last * TAKER_FEE).round_dp(8);
        let new_size = current + signed_size;
        // Realise PnL on the part that reduces the existing position.
        let reduced = if current.is_sign_negative() != signed_size.is_sign_negative() {
            current.abs().min(size)
        } else {
            Decimal::ZERO
        };
        let direction = if current.is_sign_negative() {
            -Decimal::ONE
        } else {
            Decimal::ONE
        };
        book.cash += reduced * (last - avg) * direction - fee;
        let new_avg = if new_size.is_zero() {
            Decimal::ZERO
        } else if current.is_zero() || new_size.is_sign_negative() != current.is_sign_negative() {
            last
        } else if new_size.abs() > current.abs() {
            ((current.abs() * avg + size * last) / new_size.abs()).round_dp(8)
        } else {
            avg
        };
        book.positions.insert(c.symbol.clone(), (new_size, new_avg));
        order.state = "filled";
        order.price_avg = Some(last);
        order.fee = -fee;
    }
    let reply = json!({ "orderId": order.order_id, "clientOid": order.client_oid });
    book.orders.push(order);
    Ok(reply)
}

fn find_order<'b>(
    book: &'b mut Book,
    params: &Params,
    symbol: &str,
) -> Result<&'b mut Order, ApiError> {
    let order_id = params.get("orderId");
    let client_oid = params.get("clientOid");
    if order_id.is_none() && client_oid.is_none() {
        return Err(ApiError::bad_request("40924", ""));
    }
    book.orders
        .iter_mut()
        .find(|o| {
            o.symbol == symbol
                && (order_id == Some(&o.order_id) || client_oid == Some(&o.client_oid))
        })
        .ok_or_else(|| ApiError::bad_request("43001", ""))
}

fn unrealized(book: &Book, universe: &Universe, now: u64) -> Decimal {
    book.positions
        .iter()
        .filter_map(|(symbol, &(size, avg))| {
            universe
                .get(symbol)
                .map(|c| size * (c.last_price(now) - avg))
        })
        .sum()
}

fn used_margin(book: &Book, universe: &Universe, now: u64) -> Decimal {
    book.positions
        .iter()
        .filter_map(|(symbol, &(size, _))| {
            universe.get(symbol).map(|c| size.abs() * c.last_price(now))
        })
        .sum::<Decimal>()
        / Decimal::from(LEVERAGE)
}

fn available(book: &Book, universe: &Universe, now: u64) -> Decimal {
    book.cash + unrealized(book, universe, now) - used_margin(book, universe, now)
}

fn account_json(book: &Book, universe: &Universe, now: u64) -> Value {
    let upl = unrealized(book, universe, now).round_dp(8);
    let equity = (book.cash + upl).round_dp(8);
    let available = available(book, universe, now).round_dp(8).to_string();
    json!({
        "marginCoin": "USDT", "locked": "0", "available": available, "crossedMaxAvailable": available,
        "isolatedMaxAvailable": available, "maxTransferOut": available, "accountEquity": equity.to_string(),
        "usdtEquity": equity.to_string(), "btcEquity": universe.get("BTCUSDT").map(|b| (equity / b.last_price(now)).round_dp(12).to_string()).unwrap_or_default(),
        "crossedRiskRate": "0", "crossedMarginLeverage": LEVERAGE.to_string(), "isolatedLongLever": LEVERAGE.to_string(),
        "isolatedShortLever": LEVERAGE.to_string(), "marginMode": "crossed", "posMode": "one_way_mode",
        "unrealizedPL": upl.to_string(), "coupon": "0", "crossedUnrealizedPL": upl.to_string(), "isolatedUnrealizedPL": "0",
        "grant": "", "assetMode": "single", "isolatedMargin": "0", "crossedMargin": used_margin(book, universe, now).round_dp(8).to_string(),
    })
}

fn position_json(
    symbol: &str,
    size: Decimal,
    avg: Decimal,
    universe: &Universe,
    now: u64,
) -> Value {
    let mark = universe
        .get(symbol)
        .map(|c| c.last_price(now))
        .unwrap_or(avg);
    json!({
        "marginCoin": "USDT", "symbol": symbol, "holdSide": if size.is_sign_negative() { "short" } else { "long" },
        "openDelegateSize": "0", "marginSize": (size.abs() * avg / Decimal::from(LEVERAGE)).round_dp(8).to_string(),
        "available": size.abs().to_string(), "locked": "0", "total": size.abs().to_string(), "leverage": LEVERAGE.to_string(),
        "achievedProfits": "0", "openPriceAvg": avg.to_string(), "marginMode": "crossed", "posMode": "one_way_mode",
        "unrealizedPL": (size * (mark - avg)).round_dp(8).to_string(), "liquidationPrice": "0", "keepMarginRate": "0.004",
        "markPrice": mark.to_string(), "marginRatio": "0", "cTime": now.to_string(),
    })
}

fn order_json(o: &Order) -> Value {
    let filled = if o.state == "filled" {
        o.size
    } else {
        Decimal::ZERO
    };
    json!({
        "symbol": o.symbol, "size": o.size.to_string(), "orderId": o.order_id, "clientOid": o.client_oid,
        "baseVolume": filled.to_string(), "fee": o.fee.to_string(),
        "price": o.price.map(|p| p.to_string()).unwrap_or_default(),
        "priceAvg": o.price_avg.map(|p| p.to_string()).unwrap_or_default(), "state": o.state, "status": o.state,
        "side": o.side, "force": "gtc", "totalProfits": "0", "posSide": "net", "marginCoin": "USDT",
        "presetStopSurplusPrice": "", "presetStopLossPrice": "",
        "quoteVolume": o.price_avg.map(|p| (p * filled).to_string()).unwrap_or_else(|| "0".to_owned()),
        "orderType": o.order_type, "leverage": LEVERAGE.to_string(), "marginMode": "crossed", "reduceOnly": "NO",
        "enterPointSource": "API", "tradeSide": "open", "posMode": "one_way_mode", "orderSource": o.order_type,
        "cTime": o.c_time.to_string(), "uTime": o.u_time.to_string(),
    })
}
