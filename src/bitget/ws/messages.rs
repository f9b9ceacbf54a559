//! What the client sends: subscribe and unsubscribe requests, batched within Bitget's
//! 4096-byte limit on one request's `args`, and the text `ping`.

use serde::Serialize;

use super::LIMITS;
use crate::core::market::Symbol;
use crate::core::timeframe::{Market, Timeframe};

/// The text keep-alive Bitget answers with `pong`.
pub const PING: &str = "ping";

/// One candle channel: a symbol's bars of one timeframe (which carries its market).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel {
    pub symbol: Symbol,
    pub timeframe: Timeframe,
}

/// `instType` of a market on the socket.
pub fn inst_type(market: Market) -> &'static str {
    match market {
        Market::Futures => "USDT-FUTURES",
        Market::Spot => "SPOT",
    }
}

#[derive(Serialize)]
struct Arg<'a> {
    #[serde(rename = "instType")]
    inst_type: &'static str,
    channel: &'static str,
    #[serde(rename = "instId")]
    inst_id: &'a str,
}

impl Channel {
    fn arg(&self) -> Arg<'_> {
        Arg {
            inst_type: inst_type(self.timeframe.market()),
            channel: self.timeframe.channel(),
            inst_id: self.symbol.as_str(),
        }
    }

    /// The argument's JSON, as it appears in `args`.
    fn arg_json(&self) -> String {
        serde_json::to_string(&self.arg()).unwrap_or_default()
    }
}

/// `op` requests for `channels`, as few as fit: each request's `args` (the JSON array as
/// sent) stays within [`LIMITS`]`.max_args_bytes`. A channel whose argument alone is longer
/// (no real symbol is) gets a request of its own.
pub fn requests(op: &str, channels: &[Channel]) -> Vec<String> {
    let max = LIMITS.max_args_bytes;
    let mut out = Vec::new();
    let mut args = String::from("[");
    for channel in channels {
        let arg = channel.arg_json();
        // `[` + args + `,` + arg + `]`
        if args.len() > 1 && args.len() + 1 + arg.len() + 1 > max {
            args.push(']');
            out.push(format!(r#"{{"op":"{op}","args":{args}}}"#));
            args = String::from("[");
        }
        if args.len() > 1 {
            args.push(',');
        }
        args.push_str(&arg);
    }
    if args.len() > 1 {
        args.push(']');
        out.push(format!(r#"{{"op":"{op}","args":{args}}}"#));
    }
    out
}

/// Subscribe requests for `channels`; see [`requests`].
pub fn subscribe(channels: &[Channel]) -> Vec<String> {
    requests("subscribe", channels)
}

/// Unsubscribe requests for `channels`; see [`requests`].
pub fn unsubscribe(channels: &[Channel]) -> Vec<String> {
    requests("unsubscribe", channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(symbol: &str, tf: &str) -> Channel {
        Channel {
            symbol: Symbol::from_exchange(symbol),
            timeframe: Timeframe::parse(Market::Futures, tf).unwrap(),
        }
    }

    #[test]
    fn one_subscribe_carries_bitgets_shape() {
        let msgs = subscribe(&[channel("BTCUSDT", "1m"), channel("ETHUSDT", "1H")]);
        assert_eq!(
            msgs,
            vec![
                r#"{"op":"subscribe","args":[{"instType":"USDT-FUTURES","channel":"candle1m","instId":"BTCUSDT"},{"instType":"USDT-FUTURES","channel":"candle1H","instId":"ETHUSDT"}]}"#
            ]
        );
        let spot = Channel {
            symbol: Symbol::from_exchange("BTCUSDT"),
            timeframe: Timeframe::parse(Market::Spot, "1day").unwrap(),
        };
        assert!(unsubscribe(&[spot])[0]
            .contains(r#"{"op":"unsubscribe","args":[{"instType":"SPOT","channel":"candle1D""#));
    }

    #[test]
    fn batches_stay_within_4096_bytes_of_args_and_keep_every_channel_once_in_order() {
        let channels: Vec<Channel> = (0..300)
            .map(|i| channel(&format!("COIN{i:04}USDT"), "1m"))
            .collect();
        let msgs = subscribe(&channels);
        assert!(msgs.len() > 1);
        let mut seen = Vec::new();
        for m in &msgs {
            let v: serde_json::Value = serde_json::from_str(m).unwrap();
            let args = v["args"].to_string();
            assert!(args.len() <= 4096, "{} bytes", args.len());
            for a in v["args"].as_array().unwrap() {
                seen.push(a["instId"].as_str().unwrap().to_owned());
            }
        }
        let want: Vec<String> = channels.iter().map(|c| c.symbol.to_string()).collect();
        assert_eq!(seen, want);
        // Full batches: one more argument would not have fitted.
        let first: serde_json::Value = serde_json::from_str(&msgs[0]).unwrap();
        let n = first["args"].as_array().unwrap().len();
        assert!(first["args"].to_string().len() + 1 + channels[n].arg_json().len() > 4096);
        assert!(subscribe(&[]).is_empty());
    }
}
