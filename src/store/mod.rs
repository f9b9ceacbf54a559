//! The in-memory source of truth for market data: the poller writes closed and forming
//! candles and ticker snapshots here, and every consumer (strategies, the event log, later
//! the gateway and SQLite) reads or subscribes.
//!
//! Writing never waits. Each write goes into a bounded journal (`journal.rs`) with a sequence number, and
//! a [`Subscription`] is a cursor into it, so any number of consumers read at their own
//! pace, each catching up from the journal when it falls behind. Closed candles are
//! lossless as long as a consumer is less than the journal's capacity behind; past that the
//! oldest entries are gone, and the consumer is told how many closed candles it missed
//! (logged and counted: a visible loss, never a silent one, and never a stalled poller).
//! Forming candles and ticker snapshots are superseded by newer ones: a consumer behind is
//! handed only the latest of each and the skipped ones are counted.
//!
//! Besides the journal, the store keeps each series' most recent closed candles (up to
//! `candles_per_series`, as compact rows) and its forming candle, and the latest tickers,
//! for readers that ask instead of subscribing: the newest N, or a range by open time
//! ([`Store::range`]), the newest closed open time ([`Store::last_closed`]) and the holes
//! the exchange's replies left ([`Store::gaps`]).
//!
//! **Interest** lives here too: which series a client (a gateway's bot) wants kept fresh, and
//! when it last asked ([`Store::want`]). The poller follows it ([`Store::wanted`],
//! [`Store::interest_changed`]); whoever serves the clients drops what went idle.
//!
//! A persistent backend attaches a [`WriteThrough`] hook: unlike a subscriber, which may
//! fall off the journal, it is handed every new closed candle as it is kept, in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

pub mod config;
pub mod disk;
pub mod freshness;
mod interest;
mod journal;
mod series;

use freshness::{age_of, Changes, StreamAge, Watch};
pub use interest::Want;
use interest::Wanted;
use journal::{Cursor, Journal};
use series::Series;
pub use series::{CandleRow, SeriesKey, SeriesRead, SeriesView, WriteThrough};

use crate::core::events::MarketEvent;
use crate::core::market::{Candle, Market, Ticker};
use crate::core::timeframe::Timeframe;

/// The store's sizes; `config` reads them from `[store]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Journal entries kept for subscribers that fall behind.
    pub journal_capacity: usize,
    /// Closed candles kept per series for readers.
    pub candles_per_series: usize,
}

impl Default for StoreConfig {
    /// 65 536 journal entries (about an hour of a full 20/s budget's candles), and Bitget's
    /// own maximum of 1000 rows per series.
    fn default() -> Self {
        Self {
            journal_capacity: 65_536,
            candles_per_series: 1000,
        }
    }
}

/// The latest ticker snapshot of a market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickerSnapshot {
    /// The server's `requestTime` of the reply it came from.
    pub server_time: u64,
    pub tickers: Arc<Vec<Ticker>>,
    /// The reply's `data` exactly as Bitget sent it, for readers that pass it on.
    pub raw: Option<Bytes>,
}

#[derive(Debug)]
struct Inner {
    series: HashMap<SeriesKey, Series>,
    interest: HashMap<SeriesKey, Wanted>,
    /// Series whose freshness is watched (see [`freshness`]).
    watches: HashMap<SeriesKey, Watch>,
    /// Bumped whenever the set of wanted series changes.
    interest_version: u64,
    tickers: HashMap<Market, TickerSnapshot>,
    journal: Journal,
    closed: bool,
    /// Timeframes built here from a shorter one (`[poll] derive`): coarse → fine.
    derived: Vec<(Timeframe, Timeframe)>,
}

/// Totals since start, for summaries and metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub closed_written: AtomicU64,
    pub forming_written: AtomicU64,
    pub tickers_written: AtomicU64,
    /// Superseded events consumers skipped because a newer one was already there.
    pub superseded_skipped: AtomicU64,
    /// Closed candles consumers missed because they fell more than the journal behind.
    pub closed_missed: AtomicU64,
    /// Closed candles built here from shorter ones (`set_derived`).
    pub closed_built: AtomicU64,
}

/// The closed candles of the series built from `key` that `candle` (just held) completes.
fn derived_closes(inner: &Inner, key: &SeriesKey, candle: &Candle) -> Vec<Candle> {
    let fine = key.timeframe;
    let mut out = Vec::new();
    for &(coarse, _) in inner.derived.iter().filter(|(_, f)| *f == fine) {
        let open = coarse.open_of(candle.open_time);
        let close = coarse.next_open(open);
        if fine.next_open(candle.open_time) != close {
            continue; // not the last part of its coarse candle
        }
        let Some(series) = inner.series.get(key) else {
            continue;
        };
        let parts = held_parts(series, key, open, close);
        match crate::core::derive::aggregate(coarse, open, &parts) {
            Some(built) if built.closed => out.push(built),
            // A part missing (a hole, or older than what is held): not built; the series
            // shows the gap.
            _ => {
                tracing::debug!(symbol = %key.symbol, %coarse, open, "a longer candle lacks parts; not built")
            }
        }
    }
    out
}

/// The forming candles of the series built from `key` as `candle` (forming) updates them.
fn derived_forming(inner: &Inner, key: &SeriesKey, candle: &Candle) -> Vec<Candle> {
    let fine = key.timeframe;
    let mut out = Vec::new();
    for &(coarse, _) in inner.derived.iter().filter(|(_, f)| *f == fine) {
        let open = coarse.open_of(candle.open_time);
        let Some(series) = inner.series.get(key) else {
            continue;
        };
        let mut parts = held_parts(series, key, open, candle.open_time);
        parts.push(candle.clone());
        if let Some(built) = crate::core::derive::aggregate(coarse, open, &parts) {
            out.push(Candle {
                closed: false,
                ..built
            });
        }
    }
    out
}

/// `series`' held closed candles opening in `[from, until)`, oldest first.
fn held_parts(series: &Series, key: &SeriesKey, from: u64, until: u64) -> Vec<Candle> {
    let start = series.closed.partition_point(|r| r.open_time < from);
    let end = series.closed.partition_point(|r| r.open_time < until);
    series
        .closed
        .range(start..end.max(start))
        .map(|r| r.candle(key))
        .collect()
}

/// The store; share it with [`Arc`].
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    write_through: std::sync::OnceLock<Arc<dyn WriteThrough>>,
    interest_changed: Notify,
    written: Notify,
    config: StoreConfig,
    stats: StoreStats,
}

impl Store {
    pub fn new(config: StoreConfig) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                series: HashMap::new(),
                interest: HashMap::new(),
                watches: HashMap::new(),
                interest_version: 0,
                tickers: HashMap::new(),
                journal: Journal::new(config.journal_capacity),
                closed: false,
                derived: Vec::new(),
            }),
            write_through: std::sync::OnceLock::new(),
            interest_changed: Notify::new(),
            written: Notify::new(),
            config: StoreConfig {
                journal_capacity: config.journal_capacity.max(1),
                candles_per_series: config.candles_per_series.max(1),
            },
            stats: StoreStats::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, still consistent
        // enough to read; poisoning would turn one bug into a stopped poller.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Attaches the persistent backend's hook; one per store. Returns false (attaching
    /// nothing) when one is attached already.
    pub fn set_write_through(&self, hook: Arc<dyn WriteThrough>) -> bool {
        self.write_through.set(hook).is_ok()
    }

    fn persist(&self, candle: &Candle) {
        if let Some(hook) = self.write_through.get() {
            hook.closed(candle);
        }
    }

    /// Records a closed candle of `market`. Returns false, storing nothing, when the series
    /// already holds a candle at or after its open time (a repeat).
    pub fn write_closed(&self, market: Market, candle: Candle) -> bool {
        self.keep_closed(market, candle, true)
    }

    /// Takes back closed candles kept on disk at start, oldest first per series: held and
    /// journalled like new ones (strategies warm up from them, and each series continues
    /// after its newest), but not handed to the write-through hook, which has them.
    /// Returns how many were taken.
    pub fn restore(&self, market: Market, candles: impl IntoIterator<Item = Candle>) -> usize {
        candles
            .into_iter()
            .map(|c| self.keep_closed(market, c, false))
            .filter(|kept| *kept)
            .count()
    }

    fn keep_closed(&self, market: Market, candle: Candle, persist: bool) -> bool {
        let Some(key) = SeriesKey::of(market, &candle) else {
            tracing::warn!(timeframe = ?candle.timeframe, ?market, "a candle of another market's timeframe; not stored");
            return false;
        };
        let built;
        {
            let mut inner = self.lock();
            let series = inner.series.entry(key.clone()).or_default();
            series.version += 1;
            if series
                .journaled_through
                .is_some_and(|last| last >= candle.open_time)
            {
                return false;
            }
            series.note_gap(candle.timeframe, candle.open_time);
            series.journaled_through = Some(candle.open_time);
            if let Some(watch) = inner.watches.get_mut(&key) {
                // A candle delivered for a retired series: its symbol is listed again.
                watch.retired = false;
            }
            let series = inner.series.entry(key.clone()).or_default();
            series.hold(CandleRow::of(&candle), self.config.candles_per_series);
            if persist {
                self.persist(&candle);
            }
            if series
                .forming
                .as_ref()
                .is_some_and(|f| f.open_time <= candle.open_time)
            {
                series.forming = None;
            }
            built = derived_closes(&inner, &key, &candle);
            self.journal(&mut inner, market, MarketEvent::CandleClosed(candle));
        }
        self.stats.closed_written.fetch_add(1, Ordering::Relaxed);
        self.written.notify_waiters();
        // Longer candles this one completed, kept like any other (and so on up).
        for coarse in built {
            if self.keep_closed(market, coarse, persist) {
                self.stats.closed_built.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    /// Whether the store builds `timeframe` from a shorter one (nobody needs to fetch it).
    pub fn builds(&self, timeframe: Timeframe) -> bool {
        self.lock()
            .derived
            .iter()
            .any(|(coarse, _)| *coarse == timeframe)
    }

    /// Builds `coarse` series here from `fine` ones (`(coarse, fine)` pairs, each coarse
    /// [deriving from](Timeframe::derives_from) its fine): every closed or forming fine
    /// candle updates the coarse candle it belongs to. Replaces what was set before.
    pub fn set_derived(&self, pairs: Vec<(Timeframe, Timeframe)>) {
        let pairs = pairs
            .into_iter()
            .filter(|(coarse, fine)| coarse.derives_from(*fine))
            .collect();
        self.lock().derived = pairs;
    }

    /// Keeps candles someone other than the poller fetched (the gateway, for its clients)
    /// for readers, without journalling them: subscribers see what the poller saw, in
    /// order, while readers get every row either fetched. `server_time` is the reply's
    /// `requestTime`.
    pub fn absorb(&self, market: Market, candles: Vec<Candle>, server_time: u64) {
        let mut inner = self.lock();
        for candle in candles {
            let Some(key) = SeriesKey::of(market, &candle) else {
                continue;
            };
            let series = inner.series.entry(key).or_default();
            series.version += 1;
            series.fetched_at = series.fetched_at.max(Some(server_time));
            if candle.closed {
                if series.hold(CandleRow::of(&candle), self.config.candles_per_series) {
                    self.persist(&candle);
                }
            } else if series
                .forming
                .as_ref()
                .is_none_or(|f| f.open_time <= candle.open_time)
                && series
                    .closed
                    .back()
                    .is_none_or(|last| last.open_time < candle.open_time)
            {
                series.forming = Some(candle);
            }
        }
    }

    /// Keeps a ticker snapshot someone other than the poller fetched, for readers, if it is
    /// newer than the one held; not journalled.
    pub fn absorb_tickers(
        &self,
        market: Market,
        server_time: u64,
        tickers: Arc<Vec<Ticker>>,
        raw: Option<Bytes>,
    ) {
        let mut inner = self.lock();
        if inner
            .tickers
            .get(&market)
            .is_some_and(|held| held.server_time >= server_time)
        {
            return;
        }
        inner.tickers.insert(
            market,
            TickerSnapshot {
                server_time,
                tickers,
                raw,
            },
        );
    }

    /// Records the latest state of a forming candle of `market`.
    pub fn write_forming(&self, market: Market, candle: Candle) {
        let Some(key) = SeriesKey::of(market, &candle) else {
            return;
        };
        let built;
        {
            let mut inner = self.lock();
            let series = inner.series.entry(key.clone()).or_default();
            series.version += 1;
            if series
                .closed
                .back()
                .is_some_and(|last| last.open_time >= candle.open_time)
            {
                return;
            }
            series.forming = Some(candle.clone());
            built = derived_forming(&inner, &key, &candle);
            self.journal(&mut inner, market, MarketEvent::CandleForming(candle));
        }
        self.stats.forming_written.fetch_add(1, Ordering::Relaxed);
        self.written.notify_waiters();
        for coarse in built {
            self.write_forming(market, coarse);
        }
    }

    /// Notes that a reply with `requestTime` `server_time` refreshed `key` (whether or not
    /// it brought anything new), so readers know how current the series is.
    pub fn mark_fetched(&self, key: &SeriesKey, server_time: u64) {
        self.mark(key, server_time, false);
    }

    /// Notes that a WebSocket push at server time `push_ts` refreshed `key`.
    pub fn mark_streamed(&self, key: &SeriesKey, push_ts: u64) {
        self.mark(key, push_ts, true);
    }

    fn mark(&self, key: &SeriesKey, server_time: u64, streamed: bool) {
        // A built series is as current as the one it is built from.
        let coarse: Vec<Timeframe> = self
            .lock()
            .derived
            .iter()
            .filter(|(_, fine)| *fine == key.timeframe)
            .map(|(coarse, _)| *coarse)
            .collect();
        for timeframe in coarse {
            self.mark(
                &SeriesKey::new(key.symbol.clone(), timeframe),
                server_time,
                streamed,
            );
        }
        let mut inner = self.lock();
        let series = inner.series.entry(key.clone()).or_default();
        series.version += 1;
        if series.fetched_at.is_none_or(|t| t < server_time) {
            series.fetched_at = Some(server_time);
            series.streamed = streamed;
        }
    }

    /// Records a ticker snapshot of `market`; `raw` is the reply's `data` as sent.
    pub fn write_tickers(
        &self,
        market: Market,
        server_time: u64,
        tickers: Arc<Vec<Ticker>>,
        raw: Option<Bytes>,
    ) {
        {
            let mut inner = self.lock();
            inner.tickers.insert(
                market,
                TickerSnapshot {
                    server_time,
                    tickers: Arc::clone(&tickers),
                    raw,
                },
            );
            self.journal(
                &mut inner,
                market,
                MarketEvent::Tickers {
                    server_time,
                    tickers,
                },
            );
        }
        self.stats.tickers_written.fetch_add(1, Ordering::Relaxed);
        self.written.notify_waiters();
    }

    /// Journals `event` for subscribers, unless the store was closed.
    fn journal(&self, inner: &mut Inner, market: Market, event: MarketEvent) {
        if !inner.closed {
            inner.journal.push(market, event);
        }
    }

    /// Ends every subscription once it has read what was written; later writes are kept
    /// for readers but not journalled to subscribers any more.
    pub fn close(&self) {
        self.lock().closed = true;
        self.written.notify_waiters();
    }

    /// A subscription to everything written from now on.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let inner = self.lock();
        Subscription {
            store: Arc::clone(self),
            cursor: inner.journal.end(),
        }
    }

    /// The newest `limit` closed candles of `key`, oldest first.
    pub fn closed_candles(&self, key: &SeriesKey, limit: usize) -> Vec<Candle> {
        self.view(key, limit).map_or_else(Vec::new, |v| v.closed)
    }

    /// Runs `f` on `key`'s series as held (`None` if it is not), under the store's lock:
    /// no copy, so `f` must be quick.
    pub fn read<R>(&self, key: &SeriesKey, f: impl FnOnce(Option<SeriesRead<'_>>) -> R) -> R {
        let inner = self.lock();
        f(inner.series.get(key).map(|s| SeriesRead {
            closed: &s.closed,
            forming: s.forming.as_ref(),
            fetched_at: s.fetched_at,
            streamed: s.streamed,
            version: s.version,
        }))
    }

    /// The newest `limit` closed candles of `key`, its forming candle and how current it is.
    pub fn view(&self, key: &SeriesKey, limit: usize) -> Option<SeriesView> {
        let inner = self.lock();
        let s = inner.series.get(key)?;
        let skip = s.closed.len().saturating_sub(limit);
        Some(SeriesView {
            closed: s.closed.iter().skip(skip).map(|r| r.candle(key)).collect(),
            forming: s.forming.clone(),
            fetched_at: s.fetched_at,
            held: s.closed.len(),
        })
    }

    /// Closed candles of `key` opening in `[from, until)`, oldest first, the newest `limit`
    /// of them: what a `startTime`/`endTime` query asks. Answered from what is held; a
    /// persistent backend will answer the rest.
    pub fn range(&self, key: &SeriesKey, from: u64, until: u64, limit: usize) -> Vec<Candle> {
        let inner = self.lock();
        let Some(s) = inner.series.get(key) else {
            return Vec::new();
        };
        let start = s.closed.partition_point(|r| r.open_time < from);
        let end = s.closed.partition_point(|r| r.open_time < until);
        let start = start.max(end.saturating_sub(limit));
        s.closed
            .range(start..end.max(start))
            .map(|r| r.candle(key))
            .collect()
    }

    /// The open time of `key`'s newest closed candle held, if any.
    pub fn last_closed(&self, key: &SeriesKey) -> Option<u64> {
        let inner = self.lock();
        let s = inner.series.get(key)?;
        s.closed
            .back()
            .map(|r| r.open_time)
            .max(s.journaled_through)
    }

    /// The holes between the closed candles the poller wrote for `key`, `[from, to)` by
    /// open time, oldest first (at most the newest 64): what a backfill has to fetch.
    pub fn gaps(&self, key: &SeriesKey) -> Vec<(u64, u64)> {
        self.lock()
            .series
            .get(key)
            .map_or_else(Vec::new, |s| s.gaps.iter().copied().collect())
    }

    /// Holes between delivered closed candles, over every series (each series keeps its
    /// newest 64): how many closed candles consumers never got in order.
    pub fn gap_count(&self) -> usize {
        self.lock().series.values().map(|s| s.gaps.len()).sum()
    }

    /// A client asked for `key` (reading `rows` rows) at `now_ms`: want it kept fresh, unless
    /// `cap` series are wanted already.
    pub fn want(&self, key: &SeriesKey, rows: u32, now_ms: u64, cap: usize) -> Want {
        let mut inner = self.lock();
        if let Some(wanted) = inner.interest.get_mut(key) {
            wanted.asked_ms = wanted.asked_ms.max(now_ms);
            return Want::Again;
        }
        if inner.interest.len() >= cap {
            return Want::Full;
        }
        inner.interest.insert(
            key.clone(),
            Wanted {
                rows,
                asked_ms: now_ms,
            },
        );
        inner.interest_version += 1;
        drop(inner);
        self.interest_changed.notify_waiters();
        Want::New
    }

    /// Stops wanting what nobody asked for in the `idle_ms` before `now_ms`; returns those.
    pub fn drop_idle(&self, now_ms: u64, idle_ms: u64) -> Vec<SeriesKey> {
        let mut inner = self.lock();
        let idle: Vec<SeriesKey> = inner
            .interest
            .iter()
            .filter(|(_, w)| now_ms.saturating_sub(w.asked_ms) >= idle_ms)
            .map(|(k, _)| k.clone())
            .collect();
        if idle.is_empty() {
            return idle;
        }
        for key in &idle {
            inner.interest.remove(key);
        }
        inner.interest_version += 1;
        drop(inner);
        self.interest_changed.notify_waiters();
        idle
    }

    /// The wanted series with the rows their clients read, and the version of that set.
    pub fn wanted(&self) -> (u64, Vec<(SeriesKey, u32)>) {
        let inner = self.lock();
        let list = inner
            .interest
            .iter()
            .map(|(k, w)| (k.clone(), w.rows))
            .collect();
        (inner.interest_version, list)
    }

    /// Returns once the set of wanted series is not the one of version `seen`.
    pub async fn interest_changed(&self, seen: u64) {
        loop {
            let notified = self.interest_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().interest_version != seen {
                return;
            }
            notified.await;
        }
    }

    /// The open time of the newest closed candle of `key` delivered to subscribers (the
    /// journal's cursor, which candles kept for readers only do not move): where a
    /// fetcher's next read starts.
    pub fn delivered_through(&self, key: &SeriesKey) -> Option<u64> {
        self.lock().series.get(key)?.journaled_through
    }

    /// Watches `key`'s freshness from server time `now_ms` on; a retired series is watched
    /// again, keeping its first time.
    pub fn watch(&self, key: &SeriesKey, now_ms: u64) {
        self.lock()
            .watches
            .entry(key.clone())
            .and_modify(|w| w.retired = false)
            .or_insert_with(|| Watch::new(now_ms));
    }

    /// `key` is no longer fetched (delisted, or its clients went idle): no age, never stale,
    /// until it is watched again or a candle of it is delivered.
    pub fn retire(&self, key: &SeriesKey) {
        if let Some(w) = self.lock().watches.get_mut(key) {
            w.retired = true;
            w.stale = false;
        }
    }

    fn watched_ages<'a>(
        inner: &'a Inner,
        now_ms: u64,
    ) -> impl Iterator<Item = (&'a SeriesKey, StreamAge)> + 'a {
        inner
            .watches
            .iter()
            .filter(|(_, w)| !w.retired)
            .map(move |(key, w)| {
                let delivered = inner.series.get(key).and_then(|s| s.journaled_through);
                (key, age_of(key, w, delivered, now_ms))
            })
    }

    /// Every watched series' age at server time `now_ms`, by symbol and timeframe.
    pub fn ages(&self, now_ms: u64) -> Vec<StreamAge> {
        let inner = self.lock();
        let mut ages: Vec<StreamAge> = Self::watched_ages(&inner, now_ms).map(|(_, a)| a).collect();
        ages.sort_by(|a, b| (&a.symbol, a.timeframe).cmp(&(&b.symbol, b.timeframe)));
        ages
    }

    /// Re-evaluates every watched series at server time `now_ms`; returns the ones that
    /// turned stale or fresh since the last check.
    pub fn check_freshness(&self, now_ms: u64) -> Changes {
        let mut inner = self.lock();
        let turned: Vec<(SeriesKey, StreamAge)> = Self::watched_ages(&inner, now_ms)
            .filter(|(key, age)| inner.watches[*key].stale != age.is_stale())
            .map(|(key, age)| (key.clone(), age))
            .collect();
        let mut changes = Changes::default();
        for (key, age) in turned {
            if let Some(w) = inner.watches.get_mut(&key) {
                w.stale = age.is_stale();
            }
            if age.is_stale() {
                changes.newly_stale.push(age);
            } else {
                changes.fresh_again.push(age);
            }
        }
        for list in [&mut changes.newly_stale, &mut changes.fresh_again] {
            list.sort_by(|a, b| (&a.symbol, a.timeframe).cmp(&(&b.symbol, b.timeframe)));
        }
        changes
    }

    /// The series found stale at the last check, oldest first, with their ages at server
    /// time `now_ms`.
    pub fn stale(&self, now_ms: u64) -> Vec<StreamAge> {
        let inner = self.lock();
        let mut stale: Vec<StreamAge> = Self::watched_ages(&inner, now_ms)
            .filter(|(key, _)| inner.watches[*key].stale)
            .map(|(_, a)| a)
            .collect();
        stale.sort_by(|a, b| {
            (std::cmp::Reverse(a.age_ms), &a.symbol, a.timeframe).cmp(&(
                std::cmp::Reverse(b.age_ms),
                &b.symbol,
                b.timeframe,
            ))
        });
        stale
    }

    /// Series watched and not retired.
    pub fn watched(&self) -> usize {
        self.lock().watches.values().filter(|w| !w.retired).count()
    }

    /// The forming candle of `key`, if one is held.
    pub fn forming(&self, key: &SeriesKey) -> Option<Candle> {
        self.lock().series.get(key).and_then(|s| s.forming.clone())
    }

    /// The latest ticker snapshot of `market`.
    pub fn tickers(&self, market: Market) -> Option<TickerSnapshot> {
        self.lock().tickers.get(&market).cloned()
    }

    /// Series held.
    pub fn series(&self) -> usize {
        self.lock().series.len()
    }
}

/// One consumer's cursor into the store's journal.
#[derive(Debug)]
pub struct Subscription {
    store: Arc<Store>,
    cursor: Cursor,
}

/// What [`Subscription::next_ready`] found.
enum Next {
    Event(MarketEvent),
    Empty,
    Closed,
}

impl Subscription {
    /// The next event, in write order; closed candles are never skipped while the journal
    /// still holds them. `None` once the store is closed and everything written was read.
    pub async fn recv(&mut self) -> Option<MarketEvent> {
        loop {
            // Register for the wake-up before looking, so a write in between is not missed.
            let store = Arc::clone(&self.store);
            let written = store.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            match self.next_ready() {
                Next::Event(event) => return Some(event),
                Next::Closed => return None,
                Next::Empty => written.await,
            }
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<MarketEvent> {
        match self.next_ready() {
            Next::Event(event) => Some(event),
            Next::Empty | Next::Closed => None,
        }
    }

    fn next_ready(&mut self) -> Next {
        let inner = self.store.lock();
        let step = inner.journal.read(&mut self.cursor);
        let stats = &self.store.stats;
        if step.missed > 0 {
            let missed = step.missed;
            stats.closed_missed.fetch_add(missed, Ordering::Relaxed);
            tracing::warn!(
                missed,
                journal = self.store.config.journal_capacity,
                "a consumer fell more than the store's journal behind and missed {missed} closed candles; raise [store] journal_capacity or speed the consumer up"
            );
        }
        stats
            .superseded_skipped
            .fetch_add(step.superseded, Ordering::Relaxed);
        match step.event {
            Some(event) => Next::Event(event),
            None if inner.closed => Next::Closed,
            None => Next::Empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::core::market::Symbol;
    use crate::core::timeframe::Timeframe;
    use freshness::Changes;

    fn candle(symbol: &str, open_time: u64, close: i64, closed: bool) -> Candle {
        Candle {
            symbol: Symbol::from_exchange(symbol),
            timeframe: Timeframe::parse(Market::Futures, "1m").unwrap(),
            open_time,
            open: Decimal::from(close),
            high: Decimal::from(close),
            low: Decimal::from(close),
            close: Decimal::from(close),
            base_volume: Decimal::ONE,
            quote_volume: Decimal::from(close),
            closed,
        }
    }

    const MIN: u64 = 60_000;
    /// A minute boundary.
    const T0: u64 = 1_795_372_440_000;

    fn key(symbol: &str) -> SeriesKey {
        SeriesKey::new(
            Symbol::from_exchange(symbol),
            Timeframe::parse(Market::Futures, "1m").unwrap(),
        )
    }

    #[test]
    fn age_counts_from_the_delivered_close_and_turns_stale_after_two_timeframes() {
        let store = Store::new(StoreConfig::default());
        store.watch(&key("BTCUSDT"), T0);
        // The candle that opened at T0 closes at T0 + 1 min.
        store.write_closed(Market::Futures, candle("BTCUSDT", T0, 1, true));
        let ages = store.ages(T0 + MIN + 30_000);
        assert_eq!(ages[0].age_ms, 30_000);
        assert!(ages[0].has_candle);
        assert_eq!(ages[0].limit_ms, 2 * MIN);
        // Exactly two timeframes is not yet stale; a millisecond more is.
        assert_eq!(store.check_freshness(T0 + 3 * MIN), Changes::default());
        let changes = store.check_freshness(T0 + 3 * MIN + 1);
        assert_eq!(changes.newly_stale.len(), 1);
        assert_eq!(changes.newly_stale[0].describe(), "BTCUSDT 1m 120s");
        // Reported once, not at every check.
        assert_eq!(store.check_freshness(T0 + 4 * MIN), Changes::default());
        assert_eq!(store.stale(T0 + 4 * MIN)[0].age_ms, 3 * MIN);
        // A newer candle makes it fresh again.
        store.write_closed(Market::Futures, candle("BTCUSDT", T0 + 3 * MIN, 1, true));
        let changes = store.check_freshness(T0 + 4 * MIN);
        assert_eq!(changes.fresh_again.len(), 1);
        assert!(store.stale(T0 + 4 * MIN).is_empty());
    }

    #[test]
    fn only_delivered_candles_set_the_age_and_an_older_one_never_moves_it_back() {
        let store = Store::new(StoreConfig::default());
        store.watch(&key("ETHUSDT"), T0);
        store.write_closed(Market::Futures, candle("ETHUSDT", T0 + MIN, 1, true));
        assert!(!store.write_closed(Market::Futures, candle("ETHUSDT", T0, 1, true)));
        assert_eq!(store.ages(T0 + 2 * MIN)[0].age_ms, 0);
        // Candles kept for readers only (absorbed) are not deliveries: the age stays.
        store.absorb(
            Market::Futures,
            vec![candle("ETHUSDT", T0 + 2 * MIN, 1, true)],
            T0 + 3 * MIN,
        );
        assert_eq!(store.ages(T0 + 3 * MIN)[0].age_ms, MIN);
        assert_eq!(store.delivered_through(&key("ETHUSDT")), Some(T0 + MIN));
        assert_eq!(store.last_closed(&key("ETHUSDT")), Some(T0 + 2 * MIN));
    }

    #[test]
    fn a_series_without_candles_counts_from_its_watch_and_retired_ones_vanish_until_delivered() {
        let store = Store::new(StoreConfig::default());
        store.watch(&key("AUSDT"), T0);
        store.watch(&key("BUSDT"), T0);
        let changes = store.check_freshness(T0 + 2 * MIN + 1);
        assert_eq!(changes.newly_stale.len(), 2);
        assert!(!changes.newly_stale[0].has_candle);
        assert_eq!(changes.newly_stale[0].symbol.to_string(), "AUSDT");
        store.retire(&key("AUSDT"));
        assert_eq!(store.watched(), 1);
        assert_eq!(store.stale(T0 + 3 * MIN).len(), 1);
        assert_eq!(store.ages(T0).len(), 1);
        // Watching again keeps the first watch time; a delivered candle also revives it.
        store.watch(&key("AUSDT"), T0 + 10 * MIN);
        assert_eq!(store.ages(T0 + 11 * MIN)[0].age_ms, 11 * MIN);
        store.retire(&key("AUSDT"));
        store.write_closed(Market::Futures, candle("AUSDT", T0 + 10 * MIN, 1, true));
        assert_eq!(store.watched(), 2);
    }

    fn opens(events: &[MarketEvent]) -> Vec<(bool, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                MarketEvent::CandleClosed(c) => Some((true, c.open_time)),
                MarketEvent::CandleForming(c) => Some((false, c.open_time)),
                MarketEvent::Tickers { .. } => None,
            })
            .collect()
    }

    fn drain(sub: &mut Subscription) -> Vec<MarketEvent> {
        std::iter::from_fn(|| sub.try_recv()).collect()
    }

    #[test]
    fn two_consumers_each_get_every_closed_candle_and_only_the_latest_forming_one() {
        let store = Store::new(StoreConfig::default());
        let mut fast = store.subscribe();
        let mut slow = store.subscribe();
        store.write_forming(Market::Futures, candle("BTCUSDT", 0, 1, false));
        assert_eq!(opens(&drain(&mut fast)), vec![(false, 0)]);
        store.write_forming(Market::Futures, candle("BTCUSDT", 0, 2, false));
        assert!(store.write_closed(Market::Futures, candle("BTCUSDT", 0, 3, true)));
        store.write_forming(Market::Futures, candle("BTCUSDT", 60_000, 4, false));
        store.write_forming(Market::Futures, candle("BTCUSDT", 60_000, 5, false));
        assert!(
            !store.write_closed(Market::Futures, candle("BTCUSDT", 0, 3, true)),
            "a repeat"
        );
        // The fast one saw the first forming update; the slow one reads everything at once
        // and gets the closed candle plus only the newest forming state.
        assert_eq!(opens(&drain(&mut fast)), vec![(true, 0), (false, 60_000)]);
        let slow_events = drain(&mut slow);
        assert_eq!(opens(&slow_events), vec![(true, 0), (false, 60_000)]);
        let MarketEvent::CandleForming(latest) = &slow_events[1] else {
            panic!("{slow_events:?}")
        };
        assert_eq!(latest.close, Decimal::from(5));
        // 2 skipped by the fast one (forming 2 and 4), 3 by the slow one (1, 2 and 4).
        assert_eq!(store.stats().superseded_skipped.load(Ordering::Relaxed), 5);
        assert_eq!(store.stats().closed_written.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_consumer_past_the_journal_is_told_how_many_closed_candles_it_missed() {
        let store = Store::new(StoreConfig {
            journal_capacity: 4,
            candles_per_series: 3,
        });
        let mut sub = store.subscribe();
        for i in 0..10 {
            let mut c = candle("ETHUSDT", i * 60_000, i as i64, true);
            c.timeframe = Timeframe::parse(Market::Spot, "1min").unwrap();
            store.write_closed(Market::Spot, c);
        }
        let got = opens(&drain(&mut sub));
        assert_eq!(got, (6..10).map(|i| (true, i * 60_000)).collect::<Vec<_>>());
        assert_eq!(store.stats().closed_missed.load(Ordering::Relaxed), 6);
        let key = SeriesKey::new(
            Symbol::from_exchange("ETHUSDT"),
            Timeframe::parse(Market::Spot, "1min").unwrap(),
        );
        let held: Vec<u64> = store
            .closed_candles(&key, 10)
            .iter()
            .map(|c| c.open_time)
            .collect();
        assert_eq!(held, vec![420_000, 480_000, 540_000]);
        assert_eq!(store.closed_candles(&key, 1)[0].close, Decimal::from(9));
        assert!(store.closed_candles(&key, 1)[0].closed);
    }

    /// Keeps what it is handed, as a disk writer would.
    #[derive(Debug, Default)]
    struct Kept(Mutex<Vec<u64>>);

    impl WriteThrough for Kept {
        fn closed(&self, candle: &Candle) {
            self.0.lock().unwrap().push(candle.open_time);
        }
    }

    fn btc_1m() -> SeriesKey {
        SeriesKey::new(
            Symbol::from_exchange("BTCUSDT"),
            Timeframe::parse(Market::Futures, "1m").unwrap(),
        )
    }

    #[test]
    fn the_write_through_hook_gets_every_new_closed_candle_where_a_slow_subscriber_misses_some() {
        let store = Store::new(StoreConfig {
            journal_capacity: 4,
            candles_per_series: 1000,
        });
        let kept = Arc::new(Kept::default());
        assert!(store.set_write_through(kept.clone()));
        assert!(
            !store.set_write_through(Arc::new(Kept::default())),
            "one hook"
        );
        let mut sub = store.subscribe();
        for i in 0..10 {
            store.write_closed(Market::Futures, candle("BTCUSDT", i * 60_000, 1, true));
        }
        // A repeat is not handed on again; a candle the gateway absorbed is, once.
        store.write_closed(Market::Futures, candle("BTCUSDT", 9 * 60_000, 1, true));
        store.absorb(
            Market::Futures,
            vec![
                candle("BTCUSDT", 9 * 60_000, 1, true),
                candle("BTCUSDT", 10 * 60_000, 1, true),
            ],
            1,
        );
        assert_eq!(
            drain(&mut sub).len(),
            4,
            "the subscriber fell off the journal"
        );
        let all: Vec<u64> = (0..=10).map(|i| i * 60_000).collect();
        assert_eq!(*kept.0.lock().unwrap(), all);
    }

    #[test]
    fn ranges_by_open_time_the_newest_closed_and_the_gaps_are_read_from_the_store() {
        let store = Store::new(StoreConfig::default());
        let key = btc_1m();
        // Minutes 0-4, then 8-9: minutes 5-7 never came.
        for i in (0..5).chain(8..10) {
            store.write_closed(
                Market::Futures,
                candle("BTCUSDT", i * 60_000, i as i64, true),
            );
        }
        let opens = |v: Vec<Candle>| v.iter().map(|c| c.open_time / 60_000).collect::<Vec<_>>();
        assert_eq!(
            opens(store.range(&key, 2 * 60_000, 9 * 60_000, 100)),
            [2, 3, 4, 8]
        );
        // `until` is exclusive, as Bitget's endTime; `limit` keeps the newest.
        assert_eq!(opens(store.range(&key, 0, 4 * 60_000, 2)), [2, 3]);
        assert!(store.range(&key, 20 * 60_000, 30 * 60_000, 5).is_empty());
        assert!(store.range(&key, 5 * 60_000, 2 * 60_000, 5).is_empty());
        assert_eq!(store.last_closed(&key), Some(9 * 60_000));
        assert_eq!(store.gaps(&key), vec![(5 * 60_000, 8 * 60_000)]);
        let other = SeriesKey::new(Symbol::from_exchange("ETHUSDT"), key.timeframe);
        assert_eq!(store.last_closed(&other), None);
        assert!(store.gaps(&other).is_empty());
    }

    #[tokio::test]
    async fn interest_is_held_until_idle_capped_and_announced() {
        let store = Store::new(StoreConfig::default());
        let btc = btc_1m();
        let eth = SeriesKey::new(Symbol::from_exchange("ETHUSDT"), btc.timeframe);
        let (v0, none) = store.wanted();
        assert!(none.is_empty());
        assert_eq!(store.want(&btc, 300, 1_000, 1), Want::New);
        // Asked again: renewed, the set (and its version) unchanged; a second one is over the cap.
        assert_eq!(store.want(&btc, 50, 5_000, 1), Want::Again);
        assert_eq!(store.want(&eth, 50, 5_000, 1), Want::Full);
        let (v1, wanted) = store.wanted();
        assert_ne!(v1, v0);
        assert_eq!(wanted, vec![(btc.clone(), 300)]);
        // A change wakes a follower that saw the old set; the current one is not a change.
        store.interest_changed(v0).await;
        let follower = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.interest_changed(v1).await })
        };
        tokio::task::yield_now().await;
        assert!(!follower.is_finished());
        // Idle for 60 s counted from the renewal at 5 s, not the first ask.
        assert!(store.drop_idle(64_999, 60_000).is_empty());
        assert_eq!(store.drop_idle(65_000, 60_000), vec![btc]);
        follower.await.unwrap();
        assert!(store.wanted().1.is_empty());
    }

    #[test]
    fn tickers_are_kept_per_market_and_superseded_for_a_consumer_behind() {
        let store = Store::new(StoreConfig::default());
        let mut sub = store.subscribe();
        store.write_tickers(Market::Futures, 1, Arc::new(Vec::new()), None);
        store.write_tickers(Market::Spot, 2, Arc::new(Vec::new()), None);
        store.write_tickers(Market::Futures, 3, Arc::new(Vec::new()), None);
        let times: Vec<u64> = drain(&mut sub)
            .iter()
            .filter_map(|e| match e {
                MarketEvent::Tickers { server_time, .. } => Some(*server_time),
                _ => None,
            })
            .collect();
        assert_eq!(times, vec![2, 3]);
        assert_eq!(store.tickers(Market::Futures).unwrap().server_time, 3);
        assert_eq!(store.tickers(Market::Spot).unwrap().server_time, 2);
    }

    #[test]
    fn absorbed_candles_are_held_for_readers_but_never_journalled() {
        let store = Store::new(StoreConfig::default());
        let mut sub = store.subscribe();
        // The gateway fetched the three newest first; the poller then writes its history.
        store.absorb(
            Market::Futures,
            vec![
                candle("BTCUSDT", 7 * 60_000, 7, true),
                candle("BTCUSDT", 8 * 60_000, 8, true),
                candle("BTCUSDT", 9 * 60_000, 9, false),
            ],
            555,
        );
        for i in 0..9 {
            store.write_closed(
                Market::Futures,
                candle("BTCUSDT", i * 60_000, i as i64, true),
            );
        }
        let got = opens(&drain(&mut sub));
        assert_eq!(got, (0..9).map(|i| (true, i * 60_000)).collect::<Vec<_>>());
        let key = SeriesKey::new(
            Symbol::from_exchange("BTCUSDT"),
            Timeframe::parse(Market::Futures, "1m").unwrap(),
        );
        let view = store.view(&key, 100).unwrap();
        assert_eq!(view.held, 9, "each open once");
        assert_eq!(view.fetched_at, Some(555));
        assert_eq!(view.forming.map(|f| f.open_time), Some(9 * 60_000));
    }

    #[tokio::test]
    async fn recv_waits_for_a_write_and_ends_after_close_once_drained() {
        let store = Store::new(StoreConfig::default());
        let mut sub = store.subscribe();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(event) = sub.recv().await {
                got.push(event);
            }
            got
        });
        tokio::task::yield_now().await;
        store.write_closed(Market::Futures, candle("BTCUSDT", 0, 1, true));
        store.write_closed(Market::Futures, candle("BTCUSDT", 60_000, 2, true));
        store.close();
        let got = reader.await.unwrap();
        assert_eq!(opens(&got), vec![(true, 0), (true, 60_000)]);
    }
}
