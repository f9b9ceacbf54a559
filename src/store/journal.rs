//! The journal: every event written, numbered, in a bounded queue that subscribers read
//! through cursors at their own pace. A plain data structure; the store holds it under its
//! lock and does the waking and the counting.
//!
//! Closed candles are never skipped while the journal holds them. A cursor that fell off
//! the front is moved to it and told how many closed candles it missed. Forming candles and
//! ticker snapshots are superseded: a cursor behind is handed only the newest of each.

use std::collections::{HashMap, VecDeque};

use crate::core::events::MarketEvent;
use crate::core::market::Market;

use super::series::SeriesKey;

/// What superseded events are keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Latest {
    Forming(SeriesKey),
    Tickers(Market),
}

impl Latest {
    /// The key `event` of `market` is superseded under, or `None` for a closed candle (never
    /// superseded).
    fn of(market: Market, event: &MarketEvent) -> Option<Self> {
        match event {
            MarketEvent::CandleClosed(_) => None,
            MarketEvent::CandleForming(c) => SeriesKey::of(market, c).map(Latest::Forming),
            MarketEvent::Tickers { .. } => Some(Latest::Tickers(market)),
        }
    }
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    /// Closed candles journalled before this entry, so a cursor that fell off the
    /// journal's start knows how many it missed.
    closed_before: u64,
    market: Market,
    event: MarketEvent,
}

/// A reader's place in the journal.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    /// The next sequence number to read.
    next: u64,
    /// Closed candles read or missed so far (the journal's count at the cursor).
    closed_seen: u64,
}

/// What one read found besides its event.
#[derive(Debug, Default)]
pub(super) struct Step {
    pub(super) event: Option<MarketEvent>,
    /// Closed candles that were gone before the cursor reached them.
    pub(super) missed: u64,
    /// Superseded events passed over.
    pub(super) superseded: u64,
}

#[derive(Debug)]
pub(super) struct Journal {
    entries: VecDeque<Entry>,
    capacity: usize,
    next_seq: u64,
    closed_total: u64,
    /// The newest entry of each superseded kind.
    latest: HashMap<Latest, u64>,
}

impl Journal {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
            closed_total: 0,
            latest: HashMap::new(),
        }
    }

    /// Appends `event` of `market`, dropping the oldest entry past the capacity.
    pub(super) fn push(&mut self, market: Market, event: MarketEvent) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(latest) = Latest::of(market, &event) {
            self.latest.insert(latest, seq);
        }
        let closed = matches!(event, MarketEvent::CandleClosed(_));
        self.entries.push_back(Entry {
            seq,
            closed_before: self.closed_total,
            market,
            event,
        });
        if closed {
            self.closed_total += 1;
        }
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    /// A cursor past everything written so far.
    pub(super) fn end(&self) -> Cursor {
        Cursor {
            next: self.next_seq,
            closed_seen: self.closed_total,
        }
    }

    /// The next event for `cursor`, moving it on; no event when it has read everything.
    pub(super) fn read(&self, cursor: &mut Cursor) -> Step {
        let mut step = Step::default();
        let Some(front) = self.entries.front() else {
            return step;
        };
        if cursor.next < front.seq {
            step.missed = front.closed_before.saturating_sub(cursor.closed_seen);
            cursor.next = front.seq;
            cursor.closed_seen = front.closed_before;
        }
        let start = front.seq;
        while let Some(entry) = usize::try_from(cursor.next - start)
            .ok()
            .and_then(|i| self.entries.get(i))
        {
            cursor.next += 1;
            match Latest::of(entry.market, &entry.event) {
                None => {
                    if matches!(entry.event, MarketEvent::CandleClosed(_)) {
                        cursor.closed_seen += 1;
                    }
                }
                Some(latest) if self.latest.get(&latest).is_some_and(|&n| n > entry.seq) => {
                    step.superseded += 1;
                    continue;
                }
                Some(_) => {}
            }
            step.event = Some(entry.event.clone());
            break;
        }
        step
    }
}
