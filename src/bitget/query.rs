//! Bitget's market-data queries as typed values: built by the client, read by the gateway,
//! one definition of each wire shape. Reading is strict: a query Bitget might read
//! otherwise than we would is not read at all (then Bitget says what it makes of it).

use crate::bitget::endpoints::{MAX_CANDLE_ROWS, USDT_FUTURES};
use crate::core::market::{Market, Symbol};
use crate::core::timeframe::Timeframe;

/// A `/candles` request: the series, how many rows, and the open-time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleQuery {
    pub symbol: Symbol,
    /// The timeframe `granularity` spells (which knows its market).
    pub timeframe: Timeframe,
    pub limit: u32,
    pub start: u64,
    /// Exclusive on a candle's open time, as Bitget's.
    pub end: Option<u64>,
}

/// Reads a `/candles` query; `None` when it is one the store cannot answer, or one that
/// Bitget might read otherwise than we would (then Bitget says what it makes of it): a
/// repeated key (Bitget takes the first value, form parsers the last), a symbol not in
/// Bitget's spelling (`btcusdt`, `BTC/USDT:USDT`: Bitget answers 40034), a number not
/// written plainly.
pub fn candle_query(market: Market, query: &str) -> Option<CandleQuery> {
    let mut symbol = None;
    let mut granularity = None;
    let mut limit = 100u32;
    let mut start = 0u64;
    let mut end = None;
    let mut product_ok = market == Market::Spot;
    for (k, v) in single_valued(query)? {
        match k.as_ref() {
            "symbol" => symbol = Some(canonical_symbol(&v)?),
            "granularity" => granularity = Some(Timeframe::parse(market, &v)?),
            "limit" => limit = plain_number(&v).filter(|l| (1..=MAX_CANDLE_ROWS).contains(l))?,
            "startTime" => start = plain_number(&v)?,
            "endTime" => end = Some(plain_number(&v)?),
            "productType" => product_ok = v.eq_ignore_ascii_case(USDT_FUTURES),
            "kLineType" if v.as_ref() == "MARKET" => {}
            _ => return None,
        }
    }
    if !product_ok || end.is_some_and(|e| e < start) {
        return None;
    }
    Some(CandleQuery {
        symbol: symbol?,
        timeframe: granularity?,
        limit,
        start,
        end,
    })
}

/// The query's pairs, or `None` when a key appears twice.
fn single_valued(
    query: &str,
) -> Option<Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)>> {
    let pairs: Vec<_> = form_urlencoded::parse(query.as_bytes()).collect();
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(seen, _)| seen == k) {
            return None;
        }
    }
    Some(pairs)
}

/// `text` if it is a symbol as Bitget spells it: upper-case letters and digits only.
fn canonical_symbol(text: &str) -> Option<Symbol> {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    plain.then(|| Symbol::from_exchange(text))
}

/// A number written plainly (digits only, no sign, no leading zero).
fn plain_number<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
    let n: T = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

impl CandleQuery {
    /// The newest `limit` candles of `symbol` in `timeframe`.
    pub fn latest(symbol: Symbol, timeframe: Timeframe, limit: u32) -> Self {
        Self {
            symbol,
            timeframe,
            limit,
            start: 0,
            end: None,
        }
    }

    /// The query string's pairs, as Bitget takes them (and [`candle_query`] reads them).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("symbol", self.symbol.as_str().to_owned()),
            ("granularity", self.timeframe.rest().to_owned()),
            ("limit", self.limit.to_string()),
        ];
        if self.start > 0 {
            pairs.push(("startTime", self.start.to_string()));
        }
        if let Some(end) = self.end {
            pairs.push(("endTime", end.to_string()));
        }
        if self.timeframe.market() == Market::Futures {
            pairs.push(("productType", USDT_FUTURES.to_owned()));
        }
        pairs
    }
}

/// Which ticker a request names, if one: `symbol` (spot `/tickers`, futures `/ticker`).
/// `None` when the query is not one the snapshot answers (another product type, other keys).
pub fn ticker_query(market: Market, query: &str) -> Option<Option<String>> {
    let mut symbol = None;
    let mut product_ok = market == Market::Spot;
    for (k, v) in single_valued(query)? {
        match k.as_ref() {
            "symbol" => symbol = Some(canonical_symbol(&v)?.as_str().to_owned()),
            "productType" => product_ok = v.eq_ignore_ascii_case(USDT_FUTURES),
            _ => return None,
        }
    }
    product_ok.then_some(symbol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_client_writes_the_gateway_reads_back() {
        for (market, tf) in [(Market::Futures, "1H"), (Market::Spot, "1min")] {
            let mut q = CandleQuery::latest(
                Symbol::from_exchange("BTCUSDT"),
                Timeframe::parse(market, tf).unwrap(),
                200,
            );
            assert_eq!(q.limit, 200);
            for (start, end) in [(0, None), (1_700_000_000_000, Some(1_700_003_600_000))] {
                q.start = start;
                q.end = end;
                let text: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(q.to_pairs())
                    .finish();
                assert_eq!(candle_query(market, &text), Some(q.clone()), "{text}");
            }
        }
    }
}
