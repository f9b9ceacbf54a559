//! Bitget's JSON, mirrored as wire structs, converted once into [`crate::core::market`].
//!
//! Bitget sends numbers as strings, its own docs sometimes show them as numbers, and ccxt's
//! recordings store `requestTime` as a string: every numeric field here accepts either. The
//! wire structs borrow from the reply body, so a 1000-row candle reply is parsed without
//! copying the text of each field. A malformed row is an error naming the field and value,
//! never a panic; a malformed ticker line is skipped and counted, because one bad line must
//! not hide 500 good ones.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use thiserror::Error;

use crate::core::market::{
    Balance, Candle, Instrument, OrderAck, OrderDetail, Position, Stamped, Symbol, Ticker,
};
use crate::core::timeframe::Timeframe;

/// Why a success reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("reply is not the expected json: {0}")]
    Json(String),
    #[error("field {field} holds '{value}', which is not a {expected}")]
    Field {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("candle row {row} has {len} fields, expected at least 7")]
    RowLength { row: usize, len: usize },
}

/// A JSON string or number, kept as its text (or absent for `null`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WireText<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for WireText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = WireText<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(WireText(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(WireText(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(WireText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(WireText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(WireText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(WireText(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(WireText(None))
            }
        }
        deserializer.deserialize_any(TextVisitor(std::marker::PhantomData))
    }
}

impl WireText<'_> {
    fn text(&self) -> Option<&str> {
        self.0.as_deref().map(str::trim).filter(|t| !t.is_empty())
    }

    pub(crate) fn decimal(&self, field: &'static str) -> Result<Decimal, ParseError> {
        let text = self
            .text()
            .ok_or_else(|| field_error(field, "", "decimal"))?;
        Decimal::from_str(text)
            .or_else(|_| Decimal::from_scientific(text))
            .map_err(|_| field_error(field, text, "decimal"))
    }

    fn optional_decimal(&self, field: &'static str) -> Result<Option<Decimal>, ParseError> {
        match self.text() {
            None => Ok(None),
            Some(_) => self.decimal(field).map(Some),
        }
    }

    pub(crate) fn millis(&self, field: &'static str) -> Result<u64, ParseError> {
        let text = self
            .text()
            .ok_or_else(|| field_error(field, "", "timestamp"))?;
        text.parse::<u64>()
            .map_err(|_| field_error(field, text, "timestamp in milliseconds"))
    }
}

fn field_error(field: &'static str, value: &str, expected: &'static str) -> ParseError {
    ParseError::Field {
        field,
        value: value.chars().take(64).collect(),
        expected,
    }
}

/// Bitget's envelope around every reply.
#[derive(Debug, Deserialize)]
pub struct WireEnvelope<'a, T> {
    #[serde(borrow)]
    pub code: WireText<'a>,
    #[serde(rename = "requestTime", borrow, default)]
    pub request_time: WireText<'a>,
    pub data: T,
}

/// One futures or spot ticker, as Bitget sends it (only the fields the poller keeps).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireTicker<'a> {
    #[serde(borrow)]
    pub symbol: WireText<'a>,
    #[serde(borrow)]
    pub last_pr: WireText<'a>,
    #[serde(borrow, default)]
    pub bid_pr: WireText<'a>,
    #[serde(borrow, default)]
    pub ask_pr: WireText<'a>,
    #[serde(borrow, default, rename = "high24h")]
    pub high_24h: WireText<'a>,
    #[serde(borrow, default, rename = "low24h")]
    pub low_24h: WireText<'a>,
    #[serde(borrow, default)]
    pub base_volume: WireText<'a>,
    #[serde(borrow, default)]
    pub quote_volume: WireText<'a>,
    #[serde(borrow, default)]
    pub funding_rate: WireText<'a>,
    #[serde(borrow, default)]
    pub holding_amount: WireText<'a>,
    #[serde(borrow, default)]
    pub ts: WireText<'a>,
}

/// One futures contract or spot pair from `/contracts` or `/symbols`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireInstrument<'a> {
    #[serde(borrow)]
    pub symbol: WireText<'a>,
    #[serde(borrow, default)]
    pub base_coin: WireText<'a>,
    #[serde(borrow, default)]
    pub quote_coin: WireText<'a>,
    /// Futures spell it `symbolStatus`, spot `status`.
    #[serde(borrow, default)]
    pub symbol_status: WireText<'a>,
    #[serde(borrow, default)]
    pub status: WireText<'a>,
    #[serde(borrow, default)]
    pub volume_place: WireText<'a>,
    #[serde(borrow, default)]
    pub quantity_precision: WireText<'a>,
    #[serde(borrow, default)]
    pub min_trade_num: WireText<'a>,
    #[serde(borrow, default)]
    pub min_trade_amount: WireText<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBalance<'a> {
    #[serde(borrow)]
    margin_coin: WireText<'a>,
    #[serde(borrow)]
    available: WireText<'a>,
    #[serde(borrow, default)]
    account_equity: WireText<'a>,
    #[serde(borrow, default, rename = "unrealizedPL")]
    unrealized_pl: WireText<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePosition<'a> {
    #[serde(borrow)]
    symbol: WireText<'a>,
    #[serde(borrow)]
    hold_side: WireText<'a>,
    #[serde(borrow)]
    total: WireText<'a>,
    #[serde(borrow)]
    open_price_avg: WireText<'a>,
    #[serde(borrow, default, rename = "unrealizedPL")]
    unrealized_pl: WireText<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrderAck<'a> {
    #[serde(borrow, default)]
    order_id: WireText<'a>,
    #[serde(borrow, default)]
    client_oid: WireText<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrderDetail<'a> {
    #[serde(borrow)]
    symbol: WireText<'a>,
    #[serde(borrow)]
    order_id: WireText<'a>,
    #[serde(borrow, default)]
    client_oid: WireText<'a>,
    #[serde(borrow)]
    side: WireText<'a>,
    #[serde(borrow)]
    size: WireText<'a>,
    #[serde(borrow, default)]
    base_volume: WireText<'a>,
    #[serde(borrow, default)]
    price_avg: WireText<'a>,
    #[serde(borrow, default)]
    fee: WireText<'a>,
    #[serde(borrow)]
    state: WireText<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireServerTime<'a> {
    #[serde(borrow)]
    server_time: WireText<'a>,
}

/// A reply as the parsers read it: the whole body, or only its `data` when the classifier
/// already read the envelope (so the reply is parsed once).
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    bytes: &'a [u8],
    /// `Some` when `bytes` is the data alone: the envelope's `requestTime`, if it had one.
    judged: Option<Option<u64>>,
}

impl<'a> Input<'a> {
    /// A whole reply body, envelope and all.
    pub fn whole(body: &'a [u8]) -> Self {
        Self {
            bytes: body,
            judged: None,
        }
    }

    /// The `data` of a reply whose envelope was read already, with its `requestTime`.
    pub fn data(data: &'a [u8], server_time: Option<u64>) -> Self {
        Self {
            bytes: data,
            judged: Some(server_time),
        }
    }
}

impl<'a> From<&'a [u8]> for Input<'a> {
    fn from(body: &'a [u8]) -> Self {
        Self::whole(body)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Input<'a> {
    fn from(body: &'a [u8; N]) -> Self {
        Self::whole(body)
    }
}

impl<'a> From<&'a Vec<u8>> for Input<'a> {
    fn from(body: &'a Vec<u8>) -> Self {
        Self::whole(body)
    }
}

impl<'a> From<&'a bytes::Bytes> for Input<'a> {
    fn from(body: &'a bytes::Bytes) -> Self {
        Self::whole(body)
    }
}

fn envelope<'a, T: Deserialize<'a>>(input: impl Into<Input<'a>>) -> Result<(u64, T), ParseError> {
    let input = input.into();
    let json = |e: serde_json::Error| ParseError::Json(e.to_string());
    match input.judged {
        Some(server_time) => {
            let server_time =
                server_time.ok_or_else(|| field_error("requestTime", "", "timestamp"))?;
            Ok((
                server_time,
                serde_json::from_slice(input.bytes).map_err(json)?,
            ))
        }
        None => {
            let envelope: WireEnvelope<'a, T> =
                serde_json::from_slice(input.bytes).map_err(json)?;
            let server_time = envelope.request_time.millis("requestTime")?;
            Ok((server_time, envelope.data))
        }
    }
}

/// Reads a `/candles` reply. A candle is `closed` when its period ended at or before the
/// server's `requestTime`; rows come back oldest first, as Bitget sends them.
///
/// # Errors
/// Anything that is not a candle array, a row shorter than 7 fields, or a field that is not
/// a number.
pub fn candles<'a>(
    body: impl Into<Input<'a>>,
    symbol: &Symbol,
    timeframe: Timeframe,
) -> Result<Stamped<Vec<Candle>>, ParseError> {
    let (server_time, rows): (u64, Vec<Vec<WireText<'_>>>) = envelope(body)?;
    let mut candles = Vec::with_capacity(rows.len());
    for (row_index, row) in rows.iter().enumerate() {
        let mut candle = candle_row(row_index, row, symbol, timeframe)?;
        candle.closed = timeframe.next_open(candle.open_time) <= server_time;
        candles.push(candle);
    }
    Ok(Stamped {
        server_time,
        data: candles,
    })
}

/// One candle row, `[open ms, o, h, l, c, base volume, quote volume, …]` as REST and the
/// WebSocket both send it (row number `index` of its reply), not marked closed.
///
/// # Errors
/// The row is short or a field is not a number.
pub(crate) fn candle_row(
    index: usize,
    row: &[WireText<'_>],
    symbol: &Symbol,
    timeframe: Timeframe,
) -> Result<Candle, ParseError> {
    if row.len() < 7 {
        return Err(ParseError::RowLength {
            row: index,
            len: row.len(),
        });
    }
    Ok(Candle {
        symbol: symbol.clone(),
        timeframe,
        open_time: row[0].millis("candle open time")?,
        open: row[1].decimal("candle open")?,
        high: row[2].decimal("candle high")?,
        low: row[3].decimal("candle low")?,
        close: row[4].decimal("candle close")?,
        base_volume: row[5].decimal("candle base volume")?,
        quote_volume: row[6].decimal("candle quote volume")?,
        closed: false,
    })
}

/// Tickers from `/tickers` (or `/ticker`), and how many lines were skipped as malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tickers {
    pub tickers: Vec<Ticker>,
    /// Lines skipped, each with why.
    pub skipped: Vec<ParseError>,
}

/// Reads a `/tickers` reply; a malformed line is skipped and reported in
/// [`Tickers::skipped`].
///
/// # Errors
/// The reply as a whole is not a ticker array.
pub fn tickers<'a>(body: impl Into<Input<'a>>) -> Result<Stamped<Tickers>, ParseError> {
    let (server_time, rows): (u64, Vec<WireTicker<'_>>) = envelope(body)?;
    let mut out = Tickers {
        tickers: Vec::with_capacity(rows.len()),
        skipped: Vec::new(),
    };
    for row in &rows {
        match ticker(row) {
            Ok(t) => out.tickers.push(t),
            Err(e) => out.skipped.push(e),
        }
    }
    Ok(Stamped {
        server_time,
        data: out,
    })
}

fn ticker(row: &WireTicker<'_>) -> Result<Ticker, ParseError> {
    let symbol = row
        .symbol
        .text()
        .ok_or_else(|| field_error("symbol", "", "symbol"))?;
    Ok(Ticker {
        symbol: Symbol::from_exchange(symbol),
        last: row.last_pr.decimal("lastPr")?,
        bid: row.bid_pr.optional_decimal("bidPr")?,
        ask: row.ask_pr.optional_decimal("askPr")?,
        high_24h: row.high_24h.optional_decimal("high24h")?,
        low_24h: row.low_24h.optional_decimal("low24h")?,
        base_volume: row.base_volume.optional_decimal("baseVolume")?,
        quote_volume: row.quote_volume.optional_decimal("quoteVolume")?,
        funding_rate: row.funding_rate.optional_decimal("fundingRate")?,
        open_interest: row.holding_amount.optional_decimal("holdingAmount")?,
        ts: match row.ts.text() {
            Some(_) => row.ts.millis("ts")?,
            None => 0,
        },
    })
}

/// Reads `/api/v2/mix/market/contracts` or `/api/v2/spot/public/symbols`.
///
/// # Errors
/// The reply is not an array of instruments, or one has no symbol.
pub fn instruments<'a>(body: impl Into<Input<'a>>) -> Result<Stamped<Vec<Instrument>>, ParseError> {
    let (server_time, rows): (u64, Vec<WireInstrument<'_>>) = envelope(body)?;
    let data = rows.iter().map(instrument).collect::<Result<Vec<_>, _>>()?;
    Ok(Stamped { server_time, data })
}

/// Converts one contract object (also used on ccxt's envelope-less item lists).
///
/// # Errors
/// The object has no symbol.
pub fn instrument(row: &WireInstrument<'_>) -> Result<Instrument, ParseError> {
    let text = |w: &WireText<'_>| w.text().unwrap_or("").to_owned();
    let symbol = row
        .symbol
        .text()
        .ok_or_else(|| field_error("symbol", "", "symbol"))?;
    let status = row.symbol_status.text().or(row.status.text()).unwrap_or("");
    Ok(Instrument {
        symbol: Symbol::from_exchange(symbol),
        base: text(&row.base_coin),
        quote: text(&row.quote_coin),
        status: status.to_owned(),
        volume_place: row
            .volume_place
            .text()
            .or(row.quantity_precision.text())
            .and_then(|t| t.parse().ok()),
        min_size: row
            .min_trade_num
            .text()
            .or(row.min_trade_amount.text())
            .and_then(|t| Decimal::from_str(t).ok()),
    })
}

fn optional_or_zero(w: &WireText<'_>, field: &'static str) -> Result<Decimal, ParseError> {
    Ok(w.optional_decimal(field)?.unwrap_or(Decimal::ZERO))
}

fn required_text(w: &WireText<'_>, field: &'static str) -> Result<String, ParseError> {
    w.text()
        .map(str::to_owned)
        .ok_or_else(|| field_error(field, "", "text"))
}

/// Reads `/api/v2/mix/account/accounts`: one balance per margin coin.
///
/// # Errors
/// The envelope or a balance field is unreadable.
pub fn balances<'a>(body: impl Into<Input<'a>>) -> Result<Stamped<Vec<Balance>>, ParseError> {
    let (server_time, rows): (u64, Option<Vec<WireBalance<'_>>>) = envelope(body)?;
    let data = rows
        .unwrap_or_default()
        .iter()
        .map(|b| {
            Ok(Balance {
                margin_coin: required_text(&b.margin_coin, "marginCoin")?,
                available: b.available.decimal("available")?,
                equity: optional_or_zero(&b.account_equity, "accountEquity")?,
                unrealized_pnl: optional_or_zero(&b.unrealized_pl, "unrealizedPL")?,
            })
        })
        .collect::<Result<_, ParseError>>()?;
    Ok(Stamped { server_time, data })
}

/// Reads `/api/v2/mix/position/all-position`: the open positions.
///
/// # Errors
/// The envelope or a position field is unreadable.
pub fn positions<'a>(body: impl Into<Input<'a>>) -> Result<Stamped<Vec<Position>>, ParseError> {
    let (server_time, rows): (u64, Option<Vec<WirePosition<'_>>>) = envelope(body)?;
    let data = rows
        .unwrap_or_default()
        .iter()
        .map(|p| {
            Ok(Position {
                symbol: Symbol::from_exchange(&required_text(&p.symbol, "symbol")?),
                side: required_text(&p.hold_side, "holdSide")?,
                size: p.total.decimal("total")?,
                entry_price: p.open_price_avg.decimal("openPriceAvg")?,
                unrealized_pnl: optional_or_zero(&p.unrealized_pl, "unrealizedPL")?,
            })
        })
        .collect::<Result<_, ParseError>>()?;
    Ok(Stamped { server_time, data })
}

/// Reads the reply of `place-order` or `cancel-order`.
///
/// # Errors
/// The envelope is unreadable or names no order id.
pub fn order_ack<'a>(body: impl Into<Input<'a>>) -> Result<OrderAck, ParseError> {
    let (_, ack): (u64, WireOrderAck<'_>) = envelope(body)?;
    Ok(OrderAck {
        order_id: required_text(&ack.order_id, "orderId")?,
        client_oid: ack.client_oid.text().unwrap_or("").to_owned(),
    })
}

/// Reads `/api/v2/mix/order/detail`.
///
/// # Errors
/// The envelope or an order field is unreadable.
pub fn order_detail<'a>(body: impl Into<Input<'a>>) -> Result<OrderDetail, ParseError> {
    let (_, o): (u64, WireOrderDetail<'_>) = envelope(body)?;
    Ok(OrderDetail {
        order_id: required_text(&o.order_id, "orderId")?,
        client_oid: o.client_oid.text().unwrap_or("").to_owned(),
        symbol: Symbol::from_exchange(&required_text(&o.symbol, "symbol")?),
        side: required_text(&o.side, "side")?,
        size: o.size.decimal("size")?,
        filled: optional_or_zero(&o.base_volume, "baseVolume")?,
        price_avg: o.price_avg.optional_decimal("priceAvg")?,
        fee: optional_or_zero(&o.fee, "fee")?,
        state: required_text(&o.state, "state")?,
    })
}

/// Reads `/api/v2/public/time`: the server's clock in Unix milliseconds.
///
/// # Errors
/// The reply has no readable `serverTime`.
pub fn server_time<'a>(body: impl Into<Input<'a>>) -> Result<u64, ParseError> {
    let (_, data): (u64, WireServerTime<'_>) = envelope(body)?;
    data.server_time.millis("serverTime")
}

/// Runs every reply parser, and the error classifier, on `body`, discarding the results.
/// The one list that the fuzz target and the property tests both exercise, so a parser
/// added here is fuzzed at once.
#[doc(hidden)]
pub fn run_every_parser(body: &[u8]) {
    let symbol = Symbol::from_exchange("BTCUSDT");
    for tf in ["1m", "1M", "1Wutc", "3D"] {
        if let Some(tf) = Timeframe::parse(crate::core::timeframe::Market::Futures, tf) {
            let _ = candles(body, &symbol, tf);
        }
    }
    let _ = tickers(body);
    let _ = instruments(body);
    let _ = server_time(body);
    let _ = balances(body);
    let _ = positions(body);
    let _ = order_ack(body);
    let _ = order_detail(body);
    for status in [200, 400, 429, 503] {
        let _ = crate::bitget::error::Classifier::default().check(
            "/e",
            Some("BTCUSDT"),
            status,
            Some("1"),
            body,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::timeframe::Market;

    fn one_minute() -> Timeframe {
        Timeframe::parse(Market::Futures, "1m").unwrap()
    }

    #[test]
    fn request_time_is_accepted_as_number_or_string() {
        let sym = Symbol::from_exchange("BTCUSDT");
        for body in [
            r#"{"code":"00000","msg":"success","requestTime":120000,"data":[["60000","1","2","0.5","1.5","10","15"]]}"#,
            r#"{"code":"00000","msg":"success","requestTime":"120000","data":[["60000","1","2","0.5","1.5","10","15"]]}"#,
        ] {
            let parsed = candles(body.as_bytes(), &sym, one_minute()).unwrap();
            assert_eq!(parsed.server_time, 120_000);
            assert_eq!(parsed.data[0].close, Decimal::new(15, 1));
            assert!(parsed.data[0].closed);
        }
    }

    #[test]
    fn data_the_classifier_delimited_parses_alone_to_the_same_candles() {
        let body = br#"{"code":"00000","msg":"success","requestTime":"120000","data":[["60000","1","2","0.5","1.5","10","15"]]}"#;
        let judged =
            crate::bitget::error::Classifier::default().judge_reply("/c", None, 200, None, body);
        assert_eq!(judged.server_ms, Some(120_000));
        let data = &body[judged.data.unwrap()];
        let sym = Symbol::from_exchange("BTCUSDT");
        let alone = candles(Input::data(data, judged.server_ms), &sym, one_minute()).unwrap();
        assert_eq!(alone, candles(body, &sym, one_minute()).unwrap());
        assert!(matches!(
            candles(Input::data(data, None), &sym, one_minute()),
            Err(ParseError::Field {
                field: "requestTime",
                ..
            })
        ));
    }

    #[test]
    fn the_forming_candle_is_not_closed() {
        let body = br#"{"code":"00000","msg":"success","requestTime":119999,"data":[["0","1","1","1","1","0","0"],["60000","1","2","0.5","1.5","10","15"]]}"#;
        let parsed = candles(body, &Symbol::from_exchange("X"), one_minute()).unwrap();
        assert_eq!(
            parsed.data.iter().map(|c| c.closed).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn bad_fields_name_the_field_and_value() {
        let body = br#"{"code":"00000","requestTime":1,"data":[["60000","1","2","zero","1.5","10","15"]]}"#;
        let error = candles(body, &Symbol::from_exchange("X"), one_minute()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "field candle low holds 'zero', which is not a decimal"
        );
        let short = br#"{"code":"00000","requestTime":1,"data":[["60000","1"]]}"#;
        assert_eq!(
            candles(short, &Symbol::from_exchange("X"), one_minute()).unwrap_err(),
            ParseError::RowLength { row: 0, len: 2 }
        );
        assert!(matches!(
            candles(
                b"{\"code\":\"00000\",\"requestTime\":1,\"data\":[[",
                &Symbol::from_exchange("X"),
                one_minute()
            ),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn one_bad_ticker_line_is_skipped_not_fatal() {
        let body = br#"{"code":"00000","requestTime":5,"data":[{"symbol":"AUSDT","lastPr":"1.5","ts":"4"},{"symbol":"BUSDT","lastPr":"n/a"},{"symbol":"CUSDT","lastPr":2,"fundingRate":"-0.0001","holdingAmount":null}]}"#;
        let parsed = tickers(body).unwrap();
        let symbols: Vec<_> = parsed
            .data
            .tickers
            .iter()
            .map(|t| t.symbol.as_str())
            .collect();
        assert_eq!(symbols, ["AUSDT", "CUSDT"]);
        assert_eq!(parsed.data.skipped.len(), 1);
        assert_eq!(parsed.data.tickers[1].last, Decimal::from(2));
        assert_eq!(
            parsed.data.tickers[1].funding_rate,
            Some(Decimal::new(-1, 4))
        );
        assert_eq!(parsed.data.tickers[1].open_interest, None);
        assert_eq!(parsed.data.tickers[0].ts, 4);
    }
}
