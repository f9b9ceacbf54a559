//! Longer candles built from shorter ones: a 5m candle is exactly its five 1m candles (open
//! of the first, highest high, lowest low, close of the last, volumes summed in `Decimal`).
//!
//! Which timeframe can be built from which, with Bitget's alignment for each spelling, is
//! the timeframe's to say ([`Timeframe::derives_from`]); this module only adds the candles
//! up, and refuses anything that is not exactly one whole run of them.

use crate::core::market::Candle;
use crate::core::timeframe::Timeframe;

/// The candle of `coarse` opening at `open`, built from `parts`: candles of one timeframe
/// `coarse` [derives from](Timeframe::derives_from), consecutive and oldest first, the
/// first opening at `open`.
///
/// Closed when every part is there and closed; otherwise forming (the parts so far, the
/// last of which may be forming). `None` when the parts are not such a run: empty, another
/// timeframe or symbol, a hole, a closed part after a forming one, or more parts than the
/// period holds.
pub fn aggregate(coarse: Timeframe, open: u64, parts: &[Candle]) -> Option<Candle> {
    let first = parts.first()?;
    let fine = first.timeframe;
    let whole = coarse.granularity().parts_of(fine.granularity(), open)?;
    if coarse.open_of(open) != open || parts.len() as u64 > whole {
        return None;
    }
    let mut expected = open;
    let mut out = Candle {
        timeframe: coarse,
        open_time: open,
        closed: true,
        ..first.clone()
    };
    for (i, part) in parts.iter().enumerate() {
        if part.timeframe != fine || part.symbol != first.symbol || part.open_time != expected {
            return None;
        }
        if !part.closed && i + 1 != parts.len() {
            return None;
        }
        if i > 0 {
            out.high = out.high.max(part.high);
            out.low = out.low.min(part.low);
            out.close = part.close;
            out.base_volume += part.base_volume;
            out.quote_volume += part.quote_volume;
        }
        out.closed &= part.closed;
        expected = fine.next_open(expected);
    }
    out.closed &= parts.len() as u64 == whole;
    Some(out)
}

/// Splits configured `timeframes` into those to fetch and those to build: each one made
/// exactly of a shorter configured one is built from the longest such (fewest parts, and a
/// chain: 15m of 5m of 1m); the rest are fetched. Returns (fetched, (built, from) pairs).
pub fn split(timeframes: &[Timeframe]) -> (Vec<Timeframe>, Vec<(Timeframe, Timeframe)>) {
    let mut sorted = timeframes.to_vec();
    sorted.sort_by_key(|t| t.granularity().nominal_minutes());
    let mut fetched = Vec::new();
    let mut built = Vec::new();
    for (i, &tf) in sorted.iter().enumerate() {
        let from = sorted[..i]
            .iter()
            .copied()
            .filter(|fine| tf.derives_from(*fine))
            .max_by_key(|fine| fine.granularity().nominal_minutes());
        match from {
            Some(fine) => built.push((tf, fine)),
            None => fetched.push(tf),
        }
    }
    (fetched, built)
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::core::market::Symbol;
    use crate::core::timeframe::Market;

    const M: u64 = 60_000;
    /// A quarter-hour boundary.
    const T: u64 = 1_795_372_200_000;

    fn tf(t: &str) -> Timeframe {
        Timeframe::parse(Market::Futures, t).unwrap()
    }

    fn minute(open: u64, o: i64, h: i64, l: i64, c: i64, vol: i64, closed: bool) -> Candle {
        Candle {
            symbol: Symbol::from_exchange("BTCUSDT"),
            timeframe: tf("1m"),
            open_time: open,
            open: Decimal::new(o, 1),
            high: Decimal::new(h, 1),
            low: Decimal::new(l, 1),
            close: Decimal::new(c, 1),
            base_volume: Decimal::new(vol, 3),
            quote_volume: Decimal::new(vol * 7, 2),
            closed,
        }
    }

    #[test]
    fn five_minutes_make_a_five_minute_candle() {
        let parts: Vec<Candle> = (0..5)
            .map(|k| {
                minute(
                    T + k * M,
                    100 + k as i64,
                    110 + 3 * k as i64,
                    95 - k as i64,
                    101 + k as i64,
                    1_001,
                    true,
                )
            })
            .collect();
        let c = aggregate(tf("5m"), T, &parts).unwrap();
        assert_eq!(c.timeframe, tf("5m"));
        assert_eq!(c.open_time, T);
        assert_eq!(c.open, Decimal::new(100, 1));
        assert_eq!(c.high, Decimal::new(122, 1));
        assert_eq!(c.low, Decimal::new(91, 1));
        assert_eq!(c.close, Decimal::new(105, 1));
        assert_eq!(c.base_volume, Decimal::new(5_005, 3));
        assert_eq!(c.quote_volume, Decimal::new(35_035, 2));
        assert!(c.closed);
    }

    #[test]
    fn fewer_parts_or_a_forming_last_one_make_a_forming_candle() {
        let mut parts: Vec<Candle> = (0..3)
            .map(|k| minute(T + k * M, 100, 101, 99, 100, 1, true))
            .collect();
        assert!(!aggregate(tf("5m"), T, &parts).unwrap().closed);
        parts.extend((3..5).map(|k| minute(T + k * M, 100, 101, 99, 100, 1, k < 4)));
        let c = aggregate(tf("5m"), T, &parts).unwrap();
        assert!(!c.closed, "the last minute is forming");
    }

    #[test]
    fn configured_timeframes_split_into_fetched_and_built() {
        let (fetched, built) =
            split(&[tf("1H"), tf("5m"), tf("1m"), tf("15m"), tf("1D"), tf("3m")]);
        // 1D (plain, UTC+8) is not pinned: fetched. 3m and 5m from 1m; 15m from 5m; 1H
        // from 15m.
        assert_eq!(fetched, [tf("1m"), tf("1D")]);
        assert_eq!(
            built,
            [
                (tf("3m"), tf("1m")),
                (tf("5m"), tf("1m")),
                (tf("15m"), tf("5m")),
                (tf("1H"), tf("15m"))
            ]
        );
        assert_eq!(split(&[tf("5m")]), (vec![tf("5m")], vec![]));
    }

    #[test]
    fn anything_but_one_whole_run_is_refused() {
        let run = |opens: &[u64]| -> Vec<Candle> {
            opens
                .iter()
                .map(|&o| minute(o, 100, 101, 99, 100, 1, true))
                .collect()
        };
        // A hole, a late start, a misaligned open, too many parts, nothing.
        assert!(aggregate(tf("5m"), T, &run(&[T, T + M, T + 3 * M])).is_none());
        assert!(aggregate(tf("5m"), T, &run(&[T + M, T + 2 * M])).is_none());
        assert!(aggregate(tf("5m"), T + M, &run(&[T + M])).is_none());
        assert!(aggregate(
            tf("5m"),
            T,
            &run(&[T, T + M, T + 2 * M, T + 3 * M, T + 4 * M, T + 5 * M])
        )
        .is_none());
        assert!(aggregate(tf("5m"), T, &[]).is_none());
        // A forming part before a closed one.
        let mut parts = run(&[T, T + M]);
        parts[0].closed = false;
        assert!(aggregate(tf("5m"), T, &parts).is_none());
        // Another symbol among the parts; a timeframe it does not derive from.
        let mut parts = run(&[T, T + M]);
        parts[1].symbol = Symbol::from_exchange("ETHUSDT");
        assert!(aggregate(tf("5m"), T, &parts).is_none());
        assert!(aggregate(tf("1D"), T, &run(&[T])).is_none());
    }
}
