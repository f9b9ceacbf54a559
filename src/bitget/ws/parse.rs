//! What the socket sends: `pong`, acknowledgements, error events and candle pushes, each
//! read once into [`Incoming`].
//!
//! A candle push is `{"action":"snapshot"|"update","arg":{instType,channel,instId},"data":[[open
//! ms,o,h,l,c,baseVol,quoteVol,usdtVol]…],"ts":push ms}`: every value a string, rows oldest
//! first. No row says whether its bar is closed; [`Push::ts`], the server's time of the
//! push, is what the feed judges that by. Error events carry `code` as a number or a string.

use serde::Deserialize;
use serde_json::Value;

use super::messages::Channel;
use crate::bitget::parse::{candle_row, ParseError, WireText};
use crate::core::market::{Candle, Symbol};
use crate::core::timeframe::{Market, Timeframe};

/// Whether a push is the subscription's first (history and the forming bar) or a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Snapshot,
    Update,
}

/// One candle push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub action: Action,
    pub channel: Channel,
    /// Server time of the push, Unix ms.
    pub ts: u64,
    /// Its rows, oldest first, every one marked not closed (the feed decides).
    pub rows: Vec<Candle>,
}

/// One message from the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Pong,
    Push(Push),
    /// `{"event":"subscribe"|"unsubscribe","arg":…}`; `None` when the argument is not a
    /// candle channel of ours.
    Ack {
        op: String,
        channel: Option<Channel>,
    },
    /// `{"event":"error","code":…,"msg":…}`.
    Error {
        code: u32,
        msg: String,
    },
    /// Anything else (another channel, an event we do not use); ignored.
    Other,
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsParseError {
    #[error("websocket message is not json: {0}")]
    Json(String),
    #[error("websocket push for {channel} is malformed: {source}")]
    Row {
        channel: String,
        #[source]
        source: ParseError,
    },
}

#[derive(Deserialize)]
struct RawArg<'a> {
    #[serde(rename = "instType", borrow, default)]
    inst_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    channel: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "instId", borrow, default)]
    inst_id: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, default)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    action: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    arg: Option<RawArg<'a>>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(borrow, default)]
    msg: Option<std::borrow::Cow<'a, str>>,
    /// Read once the channel is known to be a candle channel (a ticker's rows are objects).
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    ts: Option<Value>,
}

fn channel_of(arg: &RawArg<'_>) -> Option<Channel> {
    let market = match arg.inst_type.as_deref()? {
        "USDT-FUTURES" => Market::Futures,
        "SPOT" => Market::Spot,
        _ => return None,
    };
    let timeframe = Timeframe::from_channel(market, arg.channel.as_deref()?)?;
    let symbol = Symbol::parse(arg.inst_id.as_deref()?).ok()?;
    Some(Channel { symbol, timeframe })
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads one text message.
///
/// # Errors
/// The message is not JSON, or a candle push has a row that is not a candle.
pub fn incoming(text: &str) -> Result<Incoming, WsParseError> {
    if text == "pong" {
        return Ok(Incoming::Pong);
    }
    let raw: Raw<'_> = serde_json::from_str(text).map_err(|e| WsParseError::Json(e.to_string()))?;
    if let Some(event) = raw.event.as_deref() {
        return Ok(match event {
            "error" => Incoming::Error {
                code: raw.code.as_ref().and_then(number).unwrap_or(0) as u32,
                msg: raw.msg.as_deref().unwrap_or("").to_owned(),
            },
            "subscribe" | "unsubscribe" => Incoming::Ack {
                op: event.to_owned(),
                channel: raw.arg.as_ref().and_then(channel_of),
            },
            _ => Incoming::Other,
        });
    }
    let action = match raw.action.as_deref() {
        Some("snapshot") => Action::Snapshot,
        Some("update") => Action::Update,
        _ => return Ok(Incoming::Other),
    };
    let Some(channel) = raw.arg.as_ref().and_then(channel_of) else {
        return Ok(Incoming::Other);
    };
    let ts = raw.ts.as_ref().and_then(number).unwrap_or(0);
    let malformed = |source| WsParseError::Row {
        channel: format!("{} {}", channel.symbol, channel.timeframe.channel()),
        source,
    };
    let rows: Vec<Vec<WireText<'_>>> = match raw.data {
        Some(data) => serde_json::from_str(data.get())
            .map_err(|e| malformed(ParseError::Json(e.to_string())))?,
        None => Vec::new(),
    };
    let mut candles = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let candle =
            candle_row(index, row, &channel.symbol, channel.timeframe).map_err(malformed)?;
        candles.push(candle);
    }
    Ok(Incoming::Push(Push {
        action,
        channel,
        ts,
        rows: candles,
    }))
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    #[test]
    fn a_documented_candle_push_reads_every_row() {
        // Bitget's documentation example (Candlesticks-Channel), plus a second row.
        let text = r#"{"action":"snapshot","arg":{"instType":"USDT-FUTURES","channel":"candle1m","instId":"BTCUSDT"},"data":[["1695685500000","27000","27000.5","27000","27000.5","0.057","1539.0155","1539.0155"],["1695685560000","27000.5","27001","27000.5","27001","0.1","2700.1","2700.1"]],"ts":1695715462250}"#;
        let Incoming::Push(push) = incoming(text).unwrap() else {
            panic!("a push")
        };
        assert_eq!(push.action, Action::Snapshot);
        assert_eq!(push.ts, 1_695_715_462_250);
        assert_eq!(push.channel.symbol.as_str(), "BTCUSDT");
        assert_eq!(push.channel.timeframe.channel(), "candle1m");
        assert_eq!(push.rows.len(), 2);
        let first = &push.rows[0];
        assert_eq!(first.open_time, 1_695_685_500_000);
        assert_eq!(first.high, Decimal::new(270_005, 1));
        // Index 5 is the base volume, 6 the quote volume.
        assert_eq!(first.base_volume, Decimal::new(57, 3));
        assert_eq!(first.quote_volume, Decimal::new(15_390_155, 4));
        assert!(push.rows.iter().all(|c| !c.closed));
    }

    #[test]
    fn events_pong_and_spot_channels() {
        assert_eq!(incoming("pong").unwrap(), Incoming::Pong);
        assert_eq!(
            incoming(r#"{"event":"error","code":30001,"msg":"instType:sp,channel:candleNone,instId:BTCUSDT doesn't exist"}"#).unwrap(),
            Incoming::Error { code: 30001, msg: "instType:sp,channel:candleNone,instId:BTCUSDT doesn't exist".into() }
        );
        // Bitget's login example has the code as a string.
        assert!(matches!(
            incoming(r#"{"event":"error","code":"30005","msg":"error"}"#).unwrap(),
            Incoming::Error { code: 30005, .. }
        ));
        let Incoming::Ack { op, channel } = incoming(
            r#"{"event":"subscribe","arg":{"instType":"SPOT","channel":"candle1Dutc","instId":"ETHUSDT"}}"#,
        )
        .unwrap() else {
            panic!("an ack")
        };
        assert_eq!(op, "subscribe");
        let channel = channel.unwrap();
        assert_eq!(channel.timeframe.market(), Market::Spot);
        assert_eq!(channel.timeframe.rest(), "1Dutc");
        // Another channel (tickers) is not ours to read.
        assert_eq!(
            incoming(r#"{"action":"snapshot","arg":{"instType":"SPOT","channel":"ticker","instId":"BTCUSDT"},"data":[{"lastPr":"1"}],"ts":1}"#).unwrap(),
            Incoming::Other
        );
    }

    #[test]
    fn broken_messages_are_errors_not_panics() {
        assert!(matches!(incoming("not json"), Err(WsParseError::Json(_))));
        let short = r#"{"action":"update","arg":{"instType":"USDT-FUTURES","channel":"candle1m","instId":"BTCUSDT"},"data":[["1695685500000","1"]],"ts":1}"#;
        let error = incoming(short).unwrap_err();
        assert!(error.to_string().contains("BTCUSDT candle1m"), "{error}");
        let bad = r#"{"action":"update","arg":{"instType":"USDT-FUTURES","channel":"candle1m","instId":"BTCUSDT"},"data":[["x","1","1","1","1","1","1","1"]],"ts":1}"#;
        assert!(matches!(incoming(bad), Err(WsParseError::Row { .. })));
    }
}
