//! One series' bars as the socket shows them, and when each is closed — exactly.
//!
//! Bitget's candle pushes carry no "closed" flag, and its documentation does not say whether
//! the first push after a close repeats the finished bar's final row. So a bar is delivered
//! as closed only with a state the exchange cannot change any more:
//! - a row pushed at or after its bar's close (the push's `ts`, the server's clock): a
//!   snapshot's older rows, or the finished bar repeated after its close. Nothing can trade
//!   in a closed bar, so that row is final — this is the case the feed relies on;
//! - otherwise the bar's final state is read by REST (`/history-candles`, through the
//!   limiter): a bar closed by a later open on its channel whose last row was pushed before
//!   its close, a bar the socket went quiet on past its close plus a grace, and every bar a
//!   reconnect's snapshot does not re-cover.
//!
//! Bars are delivered strictly in order of open time: a bar waiting for REST holds back the
//! later ones, so the store, which refuses a bar older than what it delivered, never loses
//! one. A row older than the forming bar never reopens it; repeated rows (a resubscribe's
//! snapshot) are dropped here and again by the store.
//!
//! Pure: pushes, REST answers and the server's time come in as arguments.

use std::collections::BTreeMap;

use crate::core::market::Candle;
use crate::core::timeframe::Timeframe;

/// At most this many missing bars of one series are asked for by REST; an older hole is
/// left to the store's gap record (and a backfill).
pub const MAX_HOLE: usize = 5_000;

/// A REST read that would settle the bars waiting for one: the `rows` bars ending with the
/// one that opens at `last_open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestAsk {
    pub first_open: u64,
    pub last_open: u64,
    pub rows: u32,
}

/// A series' bars between the socket and the store.
#[derive(Debug, Clone)]
pub struct Bars {
    timeframe: Timeframe,
    /// The newest bar seen that may still change.
    forming: Option<Candle>,
    /// Closed bars not yet delivered, by open time: the final state, or `None` while it has
    /// to be read by REST.
    pending: BTreeMap<u64, Option<Candle>>,
    /// Open time of the newest bar delivered.
    delivered: Option<u64>,
    /// Bars given up on (the exchange has none), for counting.
    skipped: u64,
}

impl Bars {
    /// The bars of a series of `timeframe` whose newest delivered bar opened at `delivered`.
    pub fn new(timeframe: Timeframe, delivered: Option<u64>) -> Self {
        Self {
            timeframe,
            forming: None,
            pending: BTreeMap::new(),
            delivered,
            skipped: 0,
        }
    }

    pub fn forming(&self) -> Option<&Candle> {
        self.forming.as_ref()
    }

    pub fn delivered(&self) -> Option<u64> {
        self.delivered
    }

    /// Bars waiting for REST.
    pub fn unconfirmed(&self) -> usize {
        self.pending.values().filter(|c| c.is_none()).count()
    }

    /// Bars the exchange's REST answer did not have although it covered them.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn close_of(&self, open: u64) -> u64 {
        self.timeframe.next_open(open)
    }

    fn is_delivered(&self, open: u64) -> bool {
        self.delivered.is_some_and(|d| open <= d)
    }

    /// Takes one push's rows (oldest first) pushed at server time `ts`.
    pub fn push(&mut self, rows: &[Candle], ts: u64) {
        for row in rows {
            self.row(row, ts);
        }
        self.fill_holes();
    }

    fn row(&mut self, row: &Candle, ts: u64) {
        let open = row.open_time;
        if self.is_delivered(open) {
            return;
        }
        if ts >= self.close_of(open) {
            // Pushed after its close: final.
            self.pending.insert(
                open,
                Some(Candle {
                    closed: true,
                    ..row.clone()
                }),
            );
            if self.forming.as_ref().is_some_and(|f| f.open_time <= open) {
                self.forming = None;
            }
            return;
        }
        match self.forming.as_ref().map(|f| f.open_time) {
            Some(f) if open < f => {} // an older row never reopens a bar
            Some(f) if open > f => {
                // The forming bar was closed by a later one; its last row predates its close.
                self.pending.entry(f).or_insert(None);
                self.forming = Some(row.clone());
            }
            _ => {
                if !self.pending.contains_key(&open) {
                    self.forming = Some(row.clone());
                }
            }
        }
    }

    /// The server's clock reads `now_ms`: a forming bar past its close plus `grace_ms` is
    /// closed without the socket having said so (a quiet channel, a stalled socket), and so
    /// is every later bar that closed meanwhile without a row.
    pub fn tick(&mut self, now_ms: u64, grace_ms: u64) {
        if let Some(f) = self.forming.as_ref().map(|f| f.open_time) {
            if self.close_of(f).saturating_add(grace_ms) <= now_ms {
                self.pending.entry(f).or_insert(None);
                self.forming = None;
            }
        }
        let known = [
            self.delivered,
            self.pending.keys().next_back().copied(),
            self.forming.as_ref().map(|f| f.open_time),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(known) = known {
            let mut open = self.close_of(known);
            let mut added = 0;
            while self.close_of(open).saturating_add(grace_ms) <= now_ms && added < MAX_HOLE {
                self.pending.entry(open).or_insert(None);
                open = self.close_of(open);
                added += 1;
            }
        }
        self.fill_holes();
    }

    /// Every bar between the delivered one and the newest pending one is pending too, so
    /// nothing is skipped when the later ones are delivered.
    fn fill_holes(&mut self) {
        let Some(&newest) = self.pending.keys().next_back() else {
            return;
        };
        let Some(delivered) = self.delivered else {
            // Nothing delivered yet: the series starts with its first closed bar.
            return;
        };
        let mut open = self.close_of(delivered);
        let mut missing = Vec::new();
        while open < newest {
            if !self.pending.contains_key(&open) {
                missing.push(open);
            }
            open = self.close_of(open);
        }
        if missing.len() > MAX_HOLE {
            // Only the newest bars are asked for; the older ones stay a gap in the store.
            let keep = missing.split_off(missing.len() - MAX_HOLE);
            let first = keep[0];
            self.pending.retain(|&k, _| k >= first);
            self.delivered = Some(self.timeframe.prev_open(first));
            missing = keep;
        }
        for open in missing {
            self.pending.insert(open, None);
        }
    }

    /// The REST read that settles the oldest bars waiting for one: from the oldest such bar
    /// to the newest, at most `max_rows`; `None` when nothing waits.
    pub fn rest_ask(&self, max_rows: u32) -> Option<RestAsk> {
        let first = *self.pending.iter().find(|(_, c)| c.is_none())?.0;
        let (mut last, mut rows) = (first, 1);
        // Consecutive pending bars from the first, up to `max_rows` of them: the read ends
        // with the newest one still waiting.
        let mut open = first;
        for span in 2..=max_rows {
            open = self.close_of(open);
            match self.pending.get(&open) {
                Some(None) => (last, rows) = (open, span),
                Some(Some(_)) => {}
                None => break,
            }
        }
        Some(RestAsk {
            first_open: first,
            last_open: last,
            rows,
        })
    }

    /// A REST answer for `ask`: closed candles (oldest first) read at server time
    /// `server_ms`. Fills what waited for it; a bar the answer covered but lacks is given up.
    pub fn rest(&mut self, ask: RestAsk, candles: &[Candle], server_ms: u64) {
        let newest = candles.iter().map(|c| c.open_time).max();
        for candle in candles {
            let open = candle.open_time;
            if self.close_of(open) > server_ms {
                continue; // not closed when it was read
            }
            if let Some(slot @ None) = self.pending.get_mut(&open) {
                *slot = Some(Candle {
                    closed: true,
                    ..candle.clone()
                });
            }
        }
        // A bar inside what the answer covered that it does not have: the exchange has no
        // such bar. One newer than the answer's newest is still awaited.
        let gone: Vec<u64> = self
            .pending
            .range(ask.first_open..=ask.last_open)
            .filter(|(open, c)| c.is_none() && newest.is_some_and(|n| **open < n))
            .map(|(open, _)| *open)
            .collect();
        for open in gone {
            self.pending.remove(&open);
            self.skipped += 1;
        }
    }

    /// Open times of the closed bars waiting for their final state, oldest first.
    pub fn waiting(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(open, _)| *open)
    }

    /// Settles a waiting bar with a final state from elsewhere (built exactly from a
    /// shorter timeframe's closes). False, changing nothing, when no bar at its open waits.
    pub fn settle(&mut self, candle: Candle) -> bool {
        match self.pending.get_mut(&candle.open_time) {
            Some(slot @ None) => {
                *slot = Some(Candle {
                    closed: true,
                    ..candle
                });
                true
            }
            _ => false,
        }
    }

    /// The closed bars that can be delivered now, oldest first: those before the first that
    /// still waits for REST.
    pub fn ready(&mut self) -> Vec<Candle> {
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().is_none() {
                break;
            }
            let (open, candle) = entry.remove_entry();
            if let Some(candle) = candle {
                if !self.is_delivered(open) {
                    self.delivered = Some(open);
                    out.push(candle);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::core::market::Symbol;
    use crate::core::timeframe::Market;

    const M: u64 = 60_000;
    /// A minute boundary.
    const T: u64 = 1_795_372_440_000;

    fn tf() -> Timeframe {
        Timeframe::parse(Market::Futures, "1m").unwrap()
    }

    fn bar(open: u64, close: i64) -> Candle {
        Candle {
            symbol: Symbol::from_exchange("BTCUSDT"),
            timeframe: tf(),
            open_time: open,
            open: Decimal::ONE,
            high: Decimal::from(close.max(1)),
            low: Decimal::ONE,
            close: Decimal::from(close),
            base_volume: Decimal::ONE,
            quote_volume: Decimal::ONE,
            closed: false,
        }
    }

    fn opens(candles: &[Candle]) -> Vec<u64> {
        candles.iter().map(|c| c.open_time).collect()
    }

    #[test]
    fn a_snapshot_delivers_its_closed_rows_and_keeps_the_last_forming() {
        let mut b = Bars::new(tf(), None);
        b.push(
            &[bar(T, 1), bar(T + M, 2), bar(T + 2 * M, 3)],
            T + 2 * M + 500,
        );
        let ready = b.ready();
        assert_eq!(opens(&ready), vec![T, T + M]);
        assert!(ready.iter().all(|c| c.closed));
        assert_eq!(b.forming().map(|f| f.open_time), Some(T + 2 * M));
        assert_eq!(b.delivered(), Some(T + M));
    }

    #[test]
    fn the_finished_bar_repeated_after_its_close_is_final_without_rest() {
        let mut b = Bars::new(tf(), Some(T - M));
        b.push(&[bar(T, 1)], T + 30_000);
        b.push(&[bar(T, 2)], T + 59_000);
        assert!(b.ready().is_empty());
        // The first push after the close: the finished bar's final row, then the new one.
        b.push(&[bar(T, 3), bar(T + M, 4)], T + M + 200);
        let ready = b.ready();
        assert_eq!(opens(&ready), vec![T]);
        assert_eq!(
            ready[0].close,
            Decimal::from(3),
            "the row pushed after the close"
        );
        assert!(b.rest_ask(200).is_none());
        assert_eq!(b.forming().unwrap().open_time, T + M);
    }

    #[test]
    fn a_bar_closed_only_by_a_later_open_waits_for_rest_and_holds_later_bars_back() {
        let mut b = Bars::new(tf(), Some(T - M));
        b.push(&[bar(T, 1)], T + 59_000);
        b.push(&[bar(T + M, 2)], T + M + 300);
        assert!(b.ready().is_empty(), "the last row of T predates its close");
        let ask = b.rest_ask(200).unwrap();
        assert_eq!(
            ask,
            RestAsk {
                first_open: T,
                last_open: T,
                rows: 1
            }
        );
        // A later bar turns final meanwhile (a snapshot after a resubscribe): it waits.
        b.push(&[bar(T + M, 5), bar(T + 2 * M, 6)], T + 2 * M + 100);
        assert!(b.ready().is_empty());
        b.rest(ask, &[bar(T, 9)], T + 2 * M + 200);
        let ready = b.ready();
        assert_eq!(opens(&ready), vec![T, T + M]);
        assert_eq!(ready[0].close, Decimal::from(9), "REST's final state");
        assert!(ready[0].closed);
    }

    #[test]
    fn an_older_row_never_reopens_and_repeats_are_dropped() {
        let mut b = Bars::new(tf(), Some(T - M));
        b.push(&[bar(T, 1), bar(T + M, 2)], T + M + 100);
        assert_eq!(opens(&b.ready()), vec![T]);
        // A stale row of T arrives before T + M closes: ignored.
        b.push(&[bar(T, 7)], T + M + 200);
        assert_eq!(b.forming().unwrap().open_time, T + M);
        assert!(b.ready().is_empty());
        // A repeated snapshot: nothing new.
        b.push(&[bar(T - M, 0), bar(T, 1), bar(T + M, 2)], T + M + 300);
        assert!(b.ready().is_empty());
        assert_eq!(b.forming().unwrap().open_time, T + M);
    }

    #[test]
    fn the_clock_closes_a_quiet_bar_and_every_silent_one_after_it() {
        let mut b = Bars::new(tf(), Some(T - M));
        b.push(&[bar(T, 1)], T + 10_000);
        b.tick(T + M + 2_999, 3_000);
        assert!(b.rest_ask(200).is_none(), "within the grace");
        // Nothing came for three minutes: T, T+1m, T+2m are closed by the clock.
        b.tick(T + 3 * M + 3_000, 3_000);
        let ask = b.rest_ask(200).unwrap();
        assert_eq!((ask.first_open, ask.last_open, ask.rows), (T, T + 2 * M, 3));
        b.rest(
            ask,
            &[bar(T, 1), bar(T + M, 2), bar(T + 2 * M, 3)],
            T + 3 * M + 3_100,
        );
        assert_eq!(opens(&b.ready()), vec![T, T + M, T + 2 * M]);
    }

    #[test]
    fn a_reconnect_gap_the_snapshot_covers_needs_no_rest_and_the_rest_is_asked_for() {
        // Delivered through T; the socket was down until T + 10m.
        let mut covered = Bars::new(tf(), Some(T));
        let snapshot: Vec<Candle> = (0..12).map(|i| bar(T - M + i * M, 1)).collect();
        covered.push(&snapshot, T + 10 * M + 500);
        assert!(covered.rest_ask(200).is_none());
        assert_eq!(
            opens(&covered.ready()),
            (1..10).map(|i| T + i * M).collect::<Vec<_>>()
        );
        // A short snapshot (from T + 6m): T + 1m … T + 5m are asked for by REST.
        let mut short = Bars::new(tf(), Some(T));
        let snapshot: Vec<Candle> = (6..11).map(|i| bar(T + i * M, 1)).collect();
        short.push(&snapshot, T + 10 * M + 500);
        assert!(short.ready().is_empty());
        let ask = short.rest_ask(200).unwrap();
        assert_eq!(
            (ask.first_open, ask.last_open, ask.rows),
            (T + M, T + 5 * M, 5)
        );
        let rest: Vec<Candle> = (1..6).map(|i| bar(T + i * M, 1)).collect();
        short.rest(ask, &rest, T + 10 * M + 600);
        assert_eq!(
            opens(&short.ready()),
            (1..10).map(|i| T + i * M).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_bar_the_exchange_does_not_have_is_given_up_and_one_not_yet_there_is_awaited() {
        let mut b = Bars::new(tf(), Some(T - M));
        b.push(&[bar(T, 1)], T + 59_000);
        b.push(&[bar(T + M, 2)], T + M + 100);
        b.push(&[bar(T + 2 * M, 3)], T + 2 * M + 100);
        let ask = b.rest_ask(200).unwrap();
        assert_eq!((ask.first_open, ask.rows), (T, 2));
        // REST does not have T + 1m yet (its newest is T): T delivered, T + 1m awaited.
        b.rest(ask, &[bar(T, 1)], T + 2 * M + 200);
        assert_eq!(opens(&b.ready()), vec![T]);
        assert_eq!(b.unconfirmed(), 1);
        // REST has T + 2m but not T + 1m: the exchange has no such bar.
        let ask = b.rest_ask(200).unwrap();
        b.rest(ask, &[bar(T + 2 * M, 3)], T + 3 * M);
        assert_eq!(b.skipped(), 1);
        assert!(
            b.ready().is_empty(),
            "T + 2m itself is still forming on the socket"
        );
    }

    #[test]
    fn a_rest_ask_covers_its_first_bar_however_many_final_bars_lie_between() {
        let mut b = Bars::new(tf(), Some(T - M));
        b.tick(T + 300 * M, 0);
        // T + 1m … T + 250m turn final over the socket; T and the later ones still wait.
        let rows: Vec<Candle> = (1..=250).map(|i| bar(T + i * M, 1)).collect();
        b.push(&rows, T + 300 * M);
        let ask = b.rest_ask(200).unwrap();
        assert_eq!((ask.first_open, ask.last_open, ask.rows), (T, T, 1));
    }

    #[test]
    fn a_rest_ask_is_at_most_max_rows() {
        let mut b = Bars::new(tf(), Some(T));
        b.tick(T + 500 * M, 0);
        let ask = b.rest_ask(200).unwrap();
        assert_eq!(ask.rows, 200);
        assert_eq!(ask.first_open, T + M);
        assert_eq!(ask.last_open, T + 200 * M);
    }
}
