//! Public market-data replies: the `data` part of each endpoint's envelope, as JSON text.
//!
//! Shapes follow the recorded Bitget responses in tests/fixtures/bitget: every number is a
//! string, tickers come as arrays, futures candle rows have 7 fields and spot rows 8.

use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::codes::ApiError;
use super::endpoints::Route;
use super::market::{second_start, Contract, Universe};
use super::params::Params;
use bitget_proto::timeframe::{Granularity, Market};

const DAY_MS: u64 = 86_400_000;

/// Which futures product a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// `USDT-FUTURES`, the only product with contracts in the simulator.
    UsdtFutures,
    /// `COIN-FUTURES` or `USDC-FUTURES`: valid, but the simulator lists nothing there.
    Empty,
}

/// `productType`, required and case-insensitive as Bitget's docs send it in lower case.
pub fn product(params: &Params) -> Result<Product, ApiError> {
    match params
        .required("productType")?
        .to_ascii_uppercase()
        .as_str()
    {
        "USDT-FUTURES" => Ok(Product::UsdtFutures),
        "COIN-FUTURES" | "USDC-FUTURES" | "SUSDT-FUTURES" | "SCOIN-FUTURES" | "SUSDC-FUTURES" => {
            Ok(Product::Empty)
        }
        _ => Err(ApiError::invalid("productType")),
    }
}

/// The contract named by `symbol`: `40019` if missing, `40034` if unknown, `40309` if removed.
pub fn contract<'u>(
    universe: &'u Universe,
    params: &Params,
    product: Product,
) -> Result<&'u Contract, ApiError> {
    let symbol = params.required("symbol")?;
    let found = match product {
        Product::UsdtFutures => universe.get(symbol),
        Product::Empty => None,
    };
    let contract = found.ok_or_else(|| ApiError::unknown(symbol))?;
    if contract.status != "normal" {
        return Err(ApiError::bad_request("40309", ""));
    }
    Ok(contract)
}

/// The `data` JSON for a public endpoint at `now`.
pub fn public(
    route: Route,
    params: &Params,
    universe: &Universe,
    now: u64,
) -> Result<String, ApiError> {
    let spot_symbol = |params: &Params| {
        params
            .get("symbol")
            .map(|s| spot_pair(universe, s))
            .transpose()
    };
    let value = match route {
        Route::Time => json!({ "serverTime": now.to_string() }),
        Route::Contracts => {
            let product = product(params)?;
            let list: Vec<Value> = match (product, params.get("symbol")) {
                (Product::Empty, None) => Vec::new(),
                (_, Some(_)) => vec![contract_json(contract_any_status(
                    universe, params, product,
                )?)],
                (Product::UsdtFutures, None) => {
                    universe.contracts().iter().map(contract_json).collect()
                }
            };
            Value::Array(list)
        }
        Route::Tickers => match product(params)? {
            Product::Empty => json!([]),
            Product::UsdtFutures => Value::Array(
                universe
                    .contracts()
                    .iter()
                    .filter(|c| c.status == "normal")
                    .map(|c| futures_ticker(c, now))
                    .collect(),
            ),
        },
        Route::Ticker => {
            let product = product(params)?;
            json!([futures_ticker(contract(universe, params, product)?, now)])
        }
        Route::HistoryMarkCandles | Route::HistoryIndexCandles => {
            // Mark and index prices follow the last price closely; the simulator serves the
            // same series, which is what a client's parsing needs.
            let product = product(params)?;
            let c = contract(universe, params, product)?;
            return candles(c, params, Market::Futures, 200, true, now);
        }
        Route::SpotOrderbook => {
            let c = spot_pair(universe, params.required("symbol")?)?;
            let levels = bounded_limit(params, 150, 150)?;
            if let Some(step) = params.get("type") {
                if !matches!(
                    step,
                    "step0" | "step1" | "step2" | "step3" | "step4" | "step5"
                ) {
                    return Err(ApiError::invalid("type"));
                }
            }
            let mut book = merge_depth(c, &Params::default(), now)?;
            for side in ["asks", "bids"] {
                if let Some(rows) = book[side].as_array_mut() {
                    rows.truncate(levels as usize);
                }
            }
            json!({ "asks": book["asks"], "bids": book["bids"], "ts": now.to_string() })
        }
        Route::HistoryFundRate => {
            const PERIOD: u64 = 8 * 3_600_000;
            let product = product(params)?;
            let c = contract(universe, params, product)?;
            let page_size = match params.number("pageSize")? {
                None => 20,
                Some(n) if (1..=100).contains(&n) => n,
                Some(_) => return Err(ApiError::invalid("pageSize")),
            };
            let page = params.number("pageNo")?.unwrap_or(1).max(1);
            let last = now - now % PERIOD;
            let rows: Vec<Value> = (0..page_size)
                .map(|i| last.saturating_sub(((page - 1) * page_size + i) * PERIOD))
                .filter(|&t| t > 0)
                .map(|t| {
                    json!({ "symbol": c.symbol, "fundingRate": c.funding_rate(t).to_string(), "fundingTime": t.to_string() })
                })
                .collect();
            Value::Array(rows)
        }
        Route::QueryPositionLever => {
            let product = product(params)?;
            let c = contract(universe, params, product)?;
            let tiers = [
                ("0", "150000", "125", "0.004"),
                ("150000", "750000", "100", "0.005"),
                ("750000", "3000000", "50", "0.01"),
                ("3000000", "10000000", "20", "0.025"),
            ];
            Value::Array(
                tiers
                    .iter()
                    .enumerate()
                    .map(|(i, (start, end, lever, rate))| {
                        json!({ "symbol": c.symbol, "level": (i + 1).to_string(), "startUnit": start, "endUnit": end, "leverage": lever, "keepMarginRate": rate })
                    })
                    .collect(),
            )
        }
        Route::Candles | Route::HistoryCandles => {
            let product = product(params)?;
            let c = contract(universe, params, product)?;
            if let Some(kind) = params.get("kLineType") {
                if route == Route::HistoryCandles
                    || !matches!(
                        kind.to_ascii_uppercase().as_str(),
                        "MARKET" | "MARK" | "INDEX"
                    )
                {
                    return Err(ApiError::invalid("kLineType"));
                }
            }
            let history = route == Route::HistoryCandles;
            return candles(
                c,
                params,
                Market::Futures,
                if history { 200 } else { 1_000 },
                history,
                now,
            );
        }
        Route::MergeDepth => {
            let product = product(params)?;
            let c = contract(universe, params, product)?;
            merge_depth(c, params, now)?
        }
        Route::CurrentFundRate => {
            let product = product(params)?;
            let rows: Vec<Value> = match params.get("symbol") {
                Some(_) => vec![funding_json(contract(universe, params, product)?, now)],
                None if product == Product::Empty => Vec::new(),
                None => universe
                    .contracts()
                    .iter()
                    .filter(|c| c.status == "normal")
                    .map(|c| funding_json(c, now))
                    .collect(),
            };
            Value::Array(rows)
        }
        Route::OpenInterest => {
            let product = product(params)?;
            let c = contract(universe, params, product)?;
            json!({
                "openInterestList": [{ "symbol": c.symbol, "size": c.open_interest(now).to_string() }],
                "ts": now.to_string(),
            })
        }
        Route::FillsHistory => {
            let product = product(params)?;
            let c = contract(universe, params, product)?;
            let limit = bounded_limit(params, 500, 1_000)?;
            fills_history(c, limit, now)
        }
        Route::SpotSymbols => {
            let list: Vec<Value> = match spot_symbol(params)? {
                Some(c) => vec![spot_symbol_json(c)],
                None => universe
                    .contracts()
                    .iter()
                    .filter(|c| c.status == "normal")
                    .map(spot_symbol_json)
                    .collect(),
            };
            Value::Array(list)
        }
        Route::SpotCoins => spot_coins(universe),
        Route::MarginCurrencies => json!([]),
        Route::SpotTickers => {
            let list: Vec<Value> = match spot_symbol(params)? {
                Some(c) => vec![spot_ticker(c, now)],
                None => universe
                    .contracts()
                    .iter()
                    .filter(|c| c.status == "normal")
                    .map(|c| spot_ticker(c, now))
                    .collect(),
            };
            Value::Array(list)
        }
        Route::SpotCandles => {
            let c = spot_pair(universe, params.required("symbol")?)?;
            return candles(c, params, Market::Spot, 1_000, false, now);
        }
        Route::SpotAssets
        | Route::AccountSettings
        | Route::Accounts
        | Route::Account
        | Route::AllPosition
        | Route::PlaceOrder
        | Route::CancelOrder
        | Route::OrderDetail
        | Route::OrdersPending => unreachable!("private routes are handled by the account book"),
    };
    Ok(value.to_string())
}

/// The spot pair named `symbol`: `40034` unless it exists and is listed.
fn spot_pair<'u>(universe: &'u Universe, symbol: &str) -> Result<&'u Contract, ApiError> {
    universe
        .get(symbol)
        .filter(|c| c.status == "normal")
        .ok_or_else(|| ApiError::unknown(symbol))
}

/// Like [`contract`] but a removed contract is still listed (with status `off`).
fn contract_any_status<'u>(
    universe: &'u Universe,
    params: &Params,
    product: Product,
) -> Result<&'u Contract, ApiError> {
    let symbol = params.required("symbol")?;
    match product {
        Product::UsdtFutures => universe
            .get(symbol)
            .ok_or_else(|| ApiError::unknown(symbol)),
        Product::Empty => Err(ApiError::unknown(symbol)),
    }
}

/// `limit`, defaulting to `default`, `40020` outside 1..=max.
fn bounded_limit(params: &Params, default: u64, max: u64) -> Result<u64, ApiError> {
    match params.number("limit")? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid("limit")),
    }
}

/// Candle rows for `/candles`, `/history-candles` and spot `/candles`, oldest first.
///
/// Rows are the newest `limit` candles that open at or after `startTime` and before `endTime`
/// (an `endTime` equal to a candle's open excludes it, as Bitget does). `/candles` includes the
/// forming candle; `/history-candles` never does.
fn candles(
    c: &Contract,
    params: &Params,
    market: Market,
    max_limit: u64,
    history: bool,
    now: u64,
) -> Result<String, ApiError> {
    let granularity = Granularity::parse(market, params.required("granularity")?)
        .ok_or_else(|| ApiError::invalid("granularity"))?;
    let limit = bounded_limit(params, 100, max_limit)?;
    let start = params.number("startTime")?.unwrap_or(0);
    let end = params.number("endTime")?;
    if end.is_some_and(|e| e < start) {
        return Err(ApiError::invalid("endTime"));
    }
    let mut last = now;
    if let Some(end) = end {
        last = last.min(end.saturating_sub(1));
    }
    if history {
        last = last.min(granularity.open_of(now).saturating_sub(1));
    }
    let mut opens = Vec::with_capacity(limit as usize);
    let mut open = granularity.open_of(last);
    while opens.len() < limit as usize && open >= start && open > 0 {
        opens.push(open);
        open = granularity.prev_open(open);
    }
    let mut out = String::with_capacity(opens.len() * 96 + 2);
    out.push('[');
    for (i, &open) in opens.iter().rev().enumerate() {
        let k = c.candle(granularity, open, now);
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"["{}","{}","{}","{}","{}","{}","{}""#,
            k.open_time, k.open, k.high, k.low, k.close, k.base_volume, k.quote_volume
        );
        if market == Market::Spot {
            // Spot rows add the USDT volume; for USDT pairs it equals the quote volume.
            let _ = write!(out, r#","{}""#, k.quote_volume);
        }
        out.push(']');
    }
    out.push(']');
    Ok(out)
}

fn contract_json(c: &Contract) -> Value {
    let size_step = Decimal::new(1, c.volume_place).to_string();
    json!({
        "symbol": c.symbol, "baseCoin": c.base, "quoteCoin": "USDT",
        "buyLimitPriceRatio": "0.01", "sellLimitPriceRatio": "0.01", "feeRateUpRatio": "0.005",
        "makerFeeRate": "0.0002", "takerFeeRate": "0.0006", "openCostUpRatio": "0.01",
        "supportMarginCoins": ["USDT"], "minTradeNum": size_step, "priceEndStep": "1",
        "volumePlace": c.volume_place.to_string(), "pricePlace": c.price_place.to_string(),
        "sizeMultiplier": size_step, "symbolType": "perpetual", "minTradeUSDT": "5",
        "maxSymbolOrderNum": "200", "maxProductOrderNum": "400", "maxPositionNum": "150",
        "symbolStatus": c.status, "offTime": "-1", "limitOpenTime": "-1", "deliveryTime": "",
        "deliveryStartTime": "", "deliveryPeriod": "", "launchTime": "", "fundInterval": "8",
        "minLever": "1", "maxLever": "125", "posLimit": "0.05", "maintainTime": "",
    })
}

/// Prices a ticker needs: last, 24 h open/high/low, UTC-day open.
struct TickerPrices {
    last: Decimal,
    open24h: Decimal,
    high24h: Decimal,
    low24h: Decimal,
    open_utc: Decimal,
}

fn ticker_prices(c: &Contract, now: u64) -> TickerPrices {
    // The 24 h look-backs step from the same second as the last price.
    let now_s = second_start(now);
    let last = c.last_price(now);
    let open24h = c.price_at(now_s - DAY_MS);
    let (mut high24h, mut low24h) = (last.max(open24h), last.min(open24h));
    for hour in 1..24 {
        let p = c.price_at(now_s - hour * 3_600_000);
        high24h = high24h.max(p);
        low24h = low24h.min(p);
    }
    TickerPrices {
        last,
        open24h,
        high24h,
        low24h,
        open_utc: c.price_at(now_s - now_s % DAY_MS),
    }
}

fn ratio(from: Decimal, to: Decimal) -> String {
    if from.is_zero() {
        return "0".to_owned();
    }
    ((to - from) / from).round_dp(5).normalize().to_string()
}

fn futures_ticker(c: &Contract, now: u64) -> Value {
    let p = ticker_prices(c, now);
    let volume = c.volume_24h(now);
    let quote_volume = (volume * p.last).round_dp(5).normalize().to_string();
    let index = (p.last * Decimal::new(10_003, 4)).round_dp(c.price_place + 2);
    json!({
        "symbol": c.symbol, "lastPr": p.last.to_string(), "askPr": (p.last + c.tick()).to_string(),
        "bidPr": p.last.to_string(), "bidSz": Decimal::new(703, 3).to_string(), "askSz": Decimal::new(13_894, 3).to_string(),
        "high24h": p.high24h.to_string(), "low24h": p.low24h.to_string(), "ts": now.to_string(),
        "change24h": ratio(p.open24h, p.last), "baseVolume": volume.to_string(),
        "quoteVolume": quote_volume, "usdtVolume": quote_volume, "openUtc": p.open_utc.to_string(),
        "changeUtc24h": ratio(p.open_utc, p.last), "indexPrice": index.to_string(),
        "fundingRate": c.funding_rate(now).to_string(), "holdingAmount": c.open_interest(now).to_string(),
        "deliveryStartTime": null, "deliveryTime": null, "deliveryStatus": "",
        "open24h": p.open24h.to_string(), "markPrice": p.last.to_string(),
    })
}

fn spot_ticker(c: &Contract, now: u64) -> Value {
    let p = ticker_prices(c, now);
    let volume = c.volume_24h(now);
    let quote_volume = (volume * p.last).round_dp(6).normalize().to_string();
    json!({
        "open": p.open24h.to_string(), "symbol": c.symbol, "high24h": p.high24h.to_string(),
        "low24h": p.low24h.to_string(), "lastPr": p.last.to_string(), "quoteVolume": quote_volume,
        "baseVolume": volume.to_string(), "usdtVolume": quote_volume, "ts": now.to_string(),
        "bidPr": p.last.to_string(), "askPr": (p.last + c.tick()).to_string(),
        "bidSz": "0.057344", "askSz": "0.002773", "openUtc": p.open_utc.to_string(),
        "changeUtc24h": ratio(p.open_utc, p.last), "change24h": ratio(p.open24h, p.last),
    })
}

fn spot_symbol_json(c: &Contract) -> Value {
    json!({
        "symbol": c.symbol, "baseCoin": c.base, "quoteCoin": "USDT", "minTradeAmount": "0",
        "maxTradeAmount": "10000000000", "takerFeeRate": "0.002", "makerFeeRate": "0.002",
        "pricePrecision": c.price_place.to_string(), "quantityPrecision": c.volume_place.to_string(),
        "quotePrecision": "6", "status": "online", "minTradeUSDT": "1", "buyLimitPriceRatio": "0.05",
        "sellLimitPriceRatio": "0.05", "areaSymbol": "no", "orderQuantity": "200",
    })
}

fn spot_coins(universe: &Universe) -> Value {
    let coin = |name: &str| {
        json!({
            "coinId": "1", "coin": name, "transfer": "true",
            "chains": [{
                "chain": name, "needTag": "false", "withdrawable": "true", "rechargeable": "true",
                "withdrawFee": "0", "extraWithdrawFee": "0", "depositConfirm": "12",
                "withdrawConfirm": "12", "minDepositAmount": "0.0001", "minWithdrawAmount": "0.001",
                "browserUrl": "", "contractAddress": "", "withdrawStep": "0", "withdrawMinScale": "8",
                "congestion": "normal",
            }],
        })
    };
    let mut coins = vec![coin("USDT")];
    coins.extend(universe.contracts().iter().map(|c| coin(&c.base)));
    Value::Array(coins)
}

fn funding_json(c: &Contract, now: u64) -> Value {
    const PERIOD: u64 = 8 * 3_600_000;
    json!({
        "symbol": c.symbol, "fundingRate": c.funding_rate(now).to_string(), "fundingRateInterval": "8",
        "nextUpdate": (now - now % PERIOD + PERIOD).to_string(), "minFundingRate": "-0.003", "maxFundingRate": "0.003",
    })
}

/// Order book around the current price, best levels first.
fn merge_depth(c: &Contract, params: &Params, now: u64) -> Result<Value, ApiError> {
    let precision = params.get("precision").unwrap_or("scale0");
    let scale_steps: i64 = match precision {
        "scale0" => 1,
        "scale1" => 10,
        "scale2" => 100,
        "scale3" => 1_000,
        _ => return Err(ApiError::invalid("precision")),
    };
    let levels = match params.get("limit") {
        None => 100,
        Some("max") => 200,
        // The docs list 1/5/15/50/max, but clients ask for others (freqtrade: 20) and
        // Bitget serves them; any count up to the maximum is served as asked.
        Some(text) => match text.parse::<usize>() {
            Ok(n @ 1..=200) => n,
            _ => return Err(ApiError::invalid("limit")),
        },
    };
    let step = c.tick() * Decimal::from(scale_steps);
    let mid = c.last_price(now);
    let size =
        |i: usize| Decimal::new(((i * 37 + 11) % 97 + 1) as i64, c.volume_place.min(3)).to_string();
    let best_bid = (mid / step).floor() * step;
    let bids: Vec<[String; 2]> = (0..levels)
        .map(|i| [(best_bid - step * Decimal::from(i)).to_string(), size(i)])
        .collect();
    let asks: Vec<[String; 2]> = (0..levels)
        .map(|i| {
            [
                (best_bid + step * Decimal::from(i + 1)).to_string(),
                size(i + 7),
            ]
        })
        .collect();
    Ok(json!({
        "asks": asks, "bids": bids, "ts": now.to_string(), "scale": step.to_string(),
        "precision": precision, "isMaxPrecision": if precision == "scale0" { "YES" } else { "NO" },
    }))
}

/// Public trades, newest first, one every 250 ms.
fn fills_history(c: &Contract, limit: u64, now: u64) -> Value {
    let base = now - now % 250;
    Value::Array(
        (0..limit)
            .map(|i| {
                let ts = base - i * 250;
                json!({
                    "tradeId": (ts / 250).to_string(), "price": c.price_at(ts).to_string(),
                    "size": Decimal::new(((ts / 250) % 50 + 1) as i64, c.volume_place).to_string(),
                    "side": if (ts / 250).is_multiple_of(2) { "Buy" } else { "Sell" }, "ts": ts.to_string(), "symbol": c.symbol,
                })
            })
            .collect(),
    )
}
