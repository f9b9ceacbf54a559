//! Which market-data requests the store can answer exactly, and the answers, as pure
//! functions of the request, what the store holds and the server's time.
//!
//! A candle request is answered only when every row Bitget would return is held: the
//! newest `limit` candles opening at or after `startTime` and before `endTime` (Bitget's
//! rule, which the simulator follows), closed candles from the series and the forming one
//! only if it was refreshed within the allowed age. Anything else (a `kLineType` other than
//! `MARKET`, rows older than what is held, a gap) is a miss and goes to Bitget.

use std::fmt::Write as _;

pub use crate::bitget::query::{candle_query, ticker_query, CandleQuery};
pub use crate::bitget::reply::{envelope, error_body, too_many_requests};
use crate::core::market::{Candle, Market};
use crate::store::SeriesKey;
use crate::store::{CandleRow, SeriesRead};

/// The series `q` reads.
pub fn series(q: &CandleQuery) -> SeriesKey {
    SeriesKey::new(q.symbol.clone(), q.timeframe)
}

/// The open times Bitget would return for `q` at server time `now`, oldest first.
pub fn wanted_opens(q: &CandleQuery, now: u64) -> Vec<u64> {
    let g = q.timeframe;
    let mut last = now;
    if let Some(end) = q.end {
        last = last.min(end.saturating_sub(1));
    }
    let mut opens = Vec::with_capacity(q.limit as usize);
    let mut open = g.open_of(last);
    while opens.len() < q.limit as usize && open >= q.start && open > 0 {
        opens.push(open);
        open = g.prev_open(open);
    }
    opens.reverse();
    opens
}

/// The `data` array answering `q` from `series`, or `None` if any row is missing or the
/// forming candle is older than `max_age_ms`. Rows are written as Bitget writes them:
/// strings, spot rows with the USDT volume (equal to the quote volume on USDT pairs).
pub fn candle_data(
    q: &CandleQuery,
    series: SeriesRead<'_>,
    now: u64,
    max_age_ms: u64,
) -> Option<String> {
    let opens = wanted_opens(q, now);
    let current = q.timeframe.open_of(now);
    let fresh = series
        .fetched_at
        .is_some_and(|at| now.saturating_sub(at) <= max_age_ms);
    let mut out = String::with_capacity(opens.len() * 96 + 2);
    out.push('[');
    for (i, &open) in opens.iter().enumerate() {
        let row = if open >= current {
            CandleRow::of(series.forming.filter(|f| f.open_time == open && fresh)?)
        } else {
            let at = series
                .closed
                .binary_search_by_key(&open, |r| r.open_time)
                .ok()?;
            series.closed[at]
        };
        if i > 0 {
            out.push(',');
        }
        push_row(&mut out, &row, q.timeframe.market());
    }
    out.push(']');
    Some(out)
}

/// One row as Bitget writes it: strings, spot rows with the USDT volume (equal to the quote
/// volume on USDT pairs).
fn push_row(out: &mut String, row: &CandleRow, market: Market) {
    let _ = write!(
        out,
        r#"["{}","{}","{}","{}","{}","{}","{}""#,
        row.open_time, row.open, row.high, row.low, row.close, row.base_volume, row.quote_volume
    );
    if market == Market::Spot {
        let _ = write!(out, r#","{}""#, row.quote_volume);
    }
    out.push(']');
}

/// The `data` array answering `q` from stored closed candles (the file), or `None` unless
/// they are exactly the rows Bitget would return: every wanted bar closed and held.
pub fn stored_data(q: &CandleQuery, stored: &[Candle], now: u64) -> Option<String> {
    let opens = wanted_opens(q, now);
    let current = q.timeframe.open_of(now);
    if opens.is_empty()
        || opens.last().is_some_and(|&o| o >= current)
        || stored.len() != opens.len()
        || stored.iter().zip(&opens).any(|(c, &o)| c.open_time != o)
    {
        return None;
    }
    let mut out = String::with_capacity(opens.len() * 96 + 2);
    out.push('[');
    for (i, c) in stored.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_row(&mut out, &CandleRow::of(c), q.timeframe.market());
    }
    out.push(']');
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use rust_decimal::Decimal;

    use super::*;
    use crate::core::market::{Candle, Symbol};
    use crate::core::timeframe::Timeframe;

    const MIN: u64 = 60_000;
    const NOW: u64 = 1_750_000_000_000 + 30_000; // mid-minute

    fn row(open_time: u64) -> CandleRow {
        let d = Decimal::new(10_250, 1);
        CandleRow {
            open_time,
            open: d,
            high: d,
            low: d,
            close: d,
            base_volume: Decimal::new(5, 0),
            quote_volume: Decimal::new(51_250, 1),
        }
    }

    fn forming(open_time: u64) -> Candle {
        Candle {
            symbol: Symbol::from_exchange("BTCUSDT"),
            timeframe: Timeframe::parse(Market::Futures, "1m").unwrap(),
            open_time,
            open: Decimal::ONE,
            high: Decimal::TWO,
            low: Decimal::ONE,
            close: Decimal::TWO,
            base_volume: Decimal::ONE,
            quote_volume: Decimal::TWO,
            closed: false,
        }
    }

    fn q(query: &str) -> CandleQuery {
        candle_query(Market::Futures, query).unwrap()
    }

    #[test]
    fn queries_the_store_cannot_answer_are_not_read() {
        assert!(candle_query(
            Market::Futures,
            "symbol=BTCUSDT&granularity=1m&productType=COIN-FUTURES"
        )
        .is_none());
        assert!(candle_query(
            Market::Futures,
            "symbol=BTCUSDT&granularity=1m&productType=USDT-FUTURES&kLineType=MARK"
        )
        .is_none());
        assert!(candle_query(
            Market::Futures,
            "symbol=BTCUSDT&granularity=1min&productType=USDT-FUTURES"
        )
        .is_none());
        assert!(candle_query(
            Market::Futures,
            "symbol=BTCUSDT&granularity=1m&productType=USDT-FUTURES&limit=1001"
        )
        .is_none());
        assert!(candle_query(
            Market::Futures,
            "symbol=BTCUSDT&granularity=1m&productType=USDT-FUTURES&foo=1"
        )
        .is_none());
        let spot = candle_query(Market::Spot, "symbol=BTCUSDT&granularity=1min&limit=5").unwrap();
        assert_eq!(spot.limit, 5);
        assert_eq!(
            spot.timeframe.granularity(),
            Timeframe::parse(Market::Futures, "1m")
                .unwrap()
                .granularity()
        );
    }

    #[test]
    fn queries_bitget_might_read_otherwise_are_not_answered() {
        let base = "granularity=1m&productType=USDT-FUTURES";
        for query in [
            format!("symbol=BTCUSDT&symbol=ETHUSDT&{base}"),
            format!("symbol=BTCUSDT&{base}&limit=2&limit=3"),
            format!("symbol=BTCUSDT&{base}&granularity=5m"),
            format!("symbol=btcusdt&{base}"),
            format!("symbol=BTC%2FUSDT%3AUSDT&{base}"),
            format!("symbol=BTC/USDT:USDT&{base}"),
            format!("symbol=&{base}"),
            format!("symbol=BTCUSDT&{base}&limit=05"),
            format!("symbol=BTCUSDT&{base}&limit=%2B5"),
            format!("symbol=BTCUSDT&{base}&startTime=-1"),
            format!("symbol=BTCUSDT&{base}&kLineType=market"),
        ] {
            assert_eq!(candle_query(Market::Futures, &query), None, "{query}");
        }
        let plain = q(&format!("symbol=BTCUSDT&{base}&limit=5&kLineType=MARKET"));
        assert_eq!(plain.symbol.as_str(), "BTCUSDT");
        assert_eq!(plain.limit, 5);
        // productType is case-insensitive on Bitget (its docs send it in lower case).
        assert!(candle_query(
            Market::Futures,
            "symbol=BTCUSDT&granularity=1m&productType=usdt-futures"
        )
        .is_some());
        assert_eq!(
            ticker_query(Market::Spot, "symbol=BTCUSDT&symbol=ETHUSDT"),
            None
        );
        assert_eq!(ticker_query(Market::Spot, "symbol=ethusdt"), None);
    }

    #[test]
    fn the_latest_rows_come_from_the_series_and_the_fresh_forming_candle() {
        let open = NOW - NOW % MIN;
        let closed: VecDeque<CandleRow> = (1..=5).map(|i| row(open - i * MIN)).rev().collect();
        let f = forming(open);
        let series = SeriesRead {
            closed: &closed,
            forming: Some(&f),
            fetched_at: Some(NOW - 500),
            streamed: false,
            version: 1,
        };
        let query = q("symbol=BTCUSDT&granularity=1m&productType=USDT-FUTURES&limit=3");
        let data = candle_data(&query, series, NOW, 1000).unwrap();
        let rows: Vec<Vec<String>> = serde_json::from_str(&data).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][0], (open - 2 * MIN).to_string());
        assert_eq!(rows[0][4], "1025.0", "the decimal as Bitget wrote it");
        assert_eq!(rows[2][0], open.to_string());
        assert_eq!(rows[2][4], "2", "the forming candle last");
        // The forming candle too old: a miss, not a stale answer.
        assert!(candle_data(&query, series, NOW, 400).is_none());
        // More rows than held: a miss.
        let more = q("symbol=BTCUSDT&granularity=1m&productType=USDT-FUTURES&limit=7");
        assert!(candle_data(&more, series, NOW, 1000).is_none());
        // A range of closed candles only: no forming candle needed, however old.
        let range = q(&format!(
            "symbol=BTCUSDT&granularity=1m&productType=USDT-FUTURES&startTime={}&endTime={}",
            open - 4 * MIN,
            open - MIN
        ));
        let rows: Vec<Vec<String>> =
            serde_json::from_str(&candle_data(&range, series, NOW, 0).unwrap()).unwrap();
        let opens: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert_eq!(opens, vec![open - 4 * MIN, open - 3 * MIN, open - 2 * MIN]);
    }

    #[test]
    fn a_gap_in_the_series_is_a_miss() {
        let open = NOW - NOW % MIN;
        let closed: VecDeque<CandleRow> =
            [open - 3 * MIN, open - MIN].into_iter().map(row).collect();
        let series = SeriesRead {
            closed: &closed,
            forming: None,
            fetched_at: Some(NOW),
            streamed: false,
            version: 1,
        };
        let query = q(&format!(
            "symbol=BTCUSDT&granularity=1m&productType=USDT-FUTURES&endTime={open}&limit=3"
        ));
        assert!(candle_data(&query, series, NOW, 1000).is_none());
        let two = q(&format!(
            "symbol=BTCUSDT&granularity=1m&productType=USDT-FUTURES&endTime={open}&limit=1"
        ));
        assert!(candle_data(&two, series, NOW, 1000).is_some());
    }

    #[test]
    fn ticker_queries_name_one_symbol_or_all() {
        assert_eq!(
            ticker_query(Market::Futures, "productType=USDT-FUTURES"),
            Some(None)
        );
        assert_eq!(
            ticker_query(Market::Futures, "symbol=BTCUSDT&productType=usdt-futures"),
            Some(Some("BTCUSDT".into()))
        );
        assert_eq!(
            ticker_query(Market::Futures, "productType=COIN-FUTURES"),
            None
        );
        assert_eq!(ticker_query(Market::Spot, ""), Some(None));
        assert_eq!(
            ticker_query(Market::Spot, "symbol=ETHUSDT"),
            Some(Some("ETHUSDT".into()))
        );
    }
}
