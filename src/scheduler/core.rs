//! The scheduler's decisions as pure functions of explicit time and replies: which request
//! goes next, when the next timer is due, and what a reply means. No runtime, no sockets:
//! [`super::Poller`] runs it, and the unit tests below drive it by hand.
//!
//! Time comes in as [`Now`]: a monotonic local millisecond count for timers (so a wall-clock
//! step never fires one early) and the server's clock, which decides what "closed" means.
//! The shell reads the latter from the process's one [`ServerClock`](crate::core::clock::ServerClock)
//! (the limiter's offset bounds); the core keeps no estimate of its own.
//!
//! What has been delivered is the [`Store`]'s: the core writes closed candles there, the
//! store drops repeats, and the next read of a series starts after the newest closed candle
//! the store delivered. Freshness is read from the store too.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::config::{Mode, PollConfig};
use super::stats::PollStats;
use super::tiers::{Pace, Tier, Tiers};
use crate::bitget::endpoints;
use crate::bitget::error::{BitgetError, ErrorClass};
use crate::core::market::{Candle, Symbol, SymbolSelection};
use crate::core::timeframe::Timeframe;
use crate::core::RATE_LOG;
use crate::limiter::backoff::Backoff;
use crate::store::{SeriesKey, Store};

/// Bitget returns at most this many candle rows per request.
const MAX_ROWS: u32 = crate::bitget::endpoints::MAX_CANDLE_ROWS;
/// How often streams are checked for staleness, in ms.
const FRESHNESS_CHECK_MS: u64 = 1000;
/// A closed-mode symbol whose candle the server has not closed yet is asked again at most
/// this many times per close.
const MAX_CLOSE_RETRIES: u32 = 20;
/// Symbol errors in a row after which a symbol that was served before is parked.
const PARK_AFTER_STRIKES: u32 = 3;

/// The time a decision is made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds since the scheduler started; timers are in this base.
    pub local_ms: u64,
    /// Unix milliseconds on the server's clock, as the process knows it.
    pub server_ms: u64,
}

/// A request the shell should start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Candles {
        stream: usize,
        symbol: Symbol,
        timeframe: Timeframe,
        rows: u32,
        /// From `/history-candles` (closed candles only, its own budget) instead of
        /// `/candles`.
        history: bool,
    },
    Tickers,
    /// Re-read the instrument list (`symbols = "all"`).
    RefreshSymbols,
}

/// What a candle reply delivers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// New closed candles, oldest first, never seen before.
    pub closed: Vec<Candle>,
    /// The forming candle (live mode only).
    pub forming: Option<Candle>,
}

/// Polling must stop: Bitget refused the credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Fatal(pub BitgetError);

/// One series the poller keeps fresh.
#[derive(Debug)]
struct Stream {
    key: SeriesKey,
    busy: bool,
    parked_until: Option<u64>,
    /// Symbol errors in a row on a symbol that has been served before.
    strikes: u32,
    /// Live mode: transient failures in a row, and when the symbol may be asked again.
    failures: u32,
    retry_at: Option<u64>,
    /// Open time of the candle a closed-mode round waits for, and attempts so far.
    awaiting: Option<(u64, u32)>,
    /// Asked for by a gateway client rather than configured: such a stream goes when its
    /// clients stop asking.
    watched: bool,
    /// Rows of its first request, when more than `initial_candles` were asked for.
    first_rows: Option<u32>,
}

impl Stream {
    fn new(symbol: Symbol, timeframe: Timeframe) -> Self {
        Self {
            watched: false,
            first_rows: None,
            key: SeriesKey::new(symbol, timeframe),
            busy: false,
            parked_until: None,
            strikes: 0,
            failures: 0,
            retry_at: None,
            awaiting: None,
        }
    }
}

/// A closed-mode round: streams still owed their candle for one close.
#[derive(Debug)]
struct CloseRound {
    close_ms: u64,
    pending: usize,
    total: usize,
    /// Local time of the close.
    started: u64,
}

/// The scheduler's whole state.
#[derive(Debug)]
pub struct Core {
    config: PollConfig,
    backoff: Backoff,
    stats: Arc<PollStats>,
    /// Where candles go, and what has been delivered.
    store: Arc<Store>,
    streams: Vec<Stream>,
    queue: VecDeque<usize>,
    candle_tasks: usize,
    tiers: Tiers,
    /// Degraded tiers: symbols left in this iteration, whether one ran since the last
    /// pause, and when the pause ends.
    batch_left: usize,
    iteration_open: bool,
    resume_at: Option<u64>,
    round: Option<CloseRound>,
    /// Closed mode: the next follow-up fetch goes to `/history-candles`, so the two
    /// candle endpoints, metered apart, take turns.
    history_turn: bool,
    next_close: Option<u64>,
    tickers_due: Option<u64>,
    tickers_busy: bool,
    discovery_due: Option<u64>,
    discovery_busy: bool,
    freshness_due: u64,
}

impl Core {
    /// A scheduler for `symbols` under `config`, writing into `store`, starting at `now`;
    /// `backoff` spaces a live symbol's retries after transient failures.
    pub fn new(
        config: PollConfig,
        backoff: Backoff,
        stats: Arc<PollStats>,
        store: Arc<Store>,
        symbols: &[Symbol],
        now: Now,
    ) -> Self {
        let streams: Vec<Stream> = symbols
            .iter()
            .flat_map(|symbol| {
                config
                    .timeframes
                    .iter()
                    .map(|tf| Stream::new(symbol.clone(), *tf))
            })
            .collect();
        for stream in &streams {
            store.watch(&stream.key, now.server_ms);
        }
        let discovery_due = matches!(config.symbols, SymbolSelection::All)
            .then(|| now.local_ms + config.discovery_refresh.as_millis() as u64);
        let tickers_due = config.tickers_interval.map(|_| now.local_ms);
        let mut core = Self {
            tiers: Tiers::new(config.tiers.clone()),
            queue: (0..streams.len()).collect(),
            streams,
            candle_tasks: 0,
            batch_left: 0,
            iteration_open: false,
            resume_at: None,
            round: None,
            history_turn: false,
            next_close: None,
            tickers_due,
            tickers_busy: false,
            discovery_due,
            discovery_busy: false,
            freshness_due: now.local_ms + FRESHNESS_CHECK_MS,
            backoff,
            stats,
            store,
            config,
        };
        if core.config.mode == Mode::Closed {
            core.schedule_next_close(now);
        }
        core
    }

    fn server_ms(&self, now: Now) -> u64 {
        now.server_ms
    }

    /// The local time at which the server's clock reads `server_ms`.
    fn local_of(&self, server_ms: u64, now: Now) -> u64 {
        now.local_ms + server_ms.saturating_sub(self.server_ms(now))
    }

    /// The open time of the newest closed candle the store delivered for stream `index`.
    fn delivered(&self, index: usize) -> Option<u64> {
        self.store.delivered_through(&self.streams[index].key)
    }

    /// Streams polled (delisted ones included, parked).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The tier in force.
    pub fn tier(&self) -> Tier {
        self.tiers.current()
    }

    /// Fires due timers and returns the requests to start now. `rate_limited_60s` is the
    /// count of our own rate-limit rejections over the last minute, for the tiers.
    pub fn poll(&mut self, now: Now, rate_limited_60s: usize) -> Vec<Action> {
        let mut actions = Vec::new();
        self.on_timers(now, &mut actions);
        self.dispatch(now, rate_limited_60s, &mut actions);
        actions
    }

    /// When the next timer is due (local ms), if any: the shell sleeps exactly until then
    /// or until a reply comes back, whichever is first.
    pub fn next_deadline(&self, now: Now) -> u64 {
        let close = self.next_close.map(|c| self.local_of(c, now));
        let streams = self
            .streams
            .iter()
            .filter(|s| !s.busy)
            .filter_map(|s| s.retry_at.max(s.parked_until));
        [
            self.resume_at,
            self.tickers_due.filter(|_| !self.tickers_busy),
            close,
            self.discovery_due.filter(|_| !self.discovery_busy),
            Some(self.freshness_due),
        ]
        .into_iter()
        .flatten()
        .chain(streams)
        .min()
        .unwrap_or(now.local_ms + FRESHNESS_CHECK_MS)
        .max(now.local_ms)
    }

    fn on_timers(&mut self, now: Now, actions: &mut Vec<Action>) {
        if self.resume_at.is_some_and(|t| t <= now.local_ms) {
            self.resume_at = None;
        }
        if !self.tickers_busy && self.tickers_due.is_some_and(|t| t <= now.local_ms) {
            self.tickers_busy = true;
            actions.push(Action::Tickers);
        }
        if let Some(close) = self.next_close {
            if self.server_ms(now) >= close {
                self.start_close_round(close, now);
                self.schedule_next_close(now);
            }
        }
        if !self.discovery_busy && self.discovery_due.is_some_and(|t| t <= now.local_ms) {
            self.discovery_busy = true;
            actions.push(Action::RefreshSymbols);
        }
        if self.freshness_due <= now.local_ms {
            self.freshness_due = now.local_ms + FRESHNESS_CHECK_MS;
            self.check_freshness(now);
        }
    }

    /// Warns once when a stream turns stale, and says when it recovers.
    fn check_freshness(&self, now: Now) {
        let changes = self.store.check_freshness(now.server_ms);
        for age in changes.newly_stale {
            let stream = self
                .streams
                .iter()
                .find(|s| s.key.symbol == age.symbol && s.key.timeframe == age.timeframe);
            let why = stream.map_or("", |s| {
                if s.parked_until.is_some() {
                    "parked after bitget refused it"
                } else if s.retry_at.is_some_and(|t| t > now.local_ms) {
                    "backing off after failed fetches"
                } else if self.tiers.current() != Tier::Normal {
                    "the adaptive tier is slowing polling down"
                } else {
                    "not fetched in time"
                }
            });
            tracing::warn!(target: RATE_LOG, event = %"stale", symbol = %age.symbol, timeframe = %age.timeframe, age_s = age.age_ms / 1000, limit_s = age.limit_ms / 1000, has_candle = age.has_candle, reason = why, "stale candles: {} {} has had no new closed candle for {} s (over twice its timeframe)", age.symbol, age.timeframe, age.age_ms / 1000);
        }
        for age in changes.fresh_again {
            tracing::info!(target: RATE_LOG, event = %"fresh", symbol = %age.symbol, timeframe = %age.timeframe, age_s = age.age_ms / 1000, "candles fresh again");
        }
    }

    fn update_tier(&mut self, errors: usize) {
        if let Some((from, to)) = self.tiers.update(errors) {
            tracing::warn!(target: RATE_LOG, event = %"tier_change", from = %from, to = %to, rate_limited_60s = errors, "adaptive tier changed");
            self.batch_left = 0;
            self.iteration_open = false;
            self.resume_at = None;
            self.stats.set_tier(to);
        }
        let per_iteration = match self.tiers.pace() {
            Pace::Pipeline => self.streams.len(),
            Pace::Iterations { symbols, .. } => symbols,
        };
        self.stats
            .symbols_per_iteration
            .store(per_iteration, Ordering::Relaxed);
    }

    fn refill_live_queue(&mut self) {
        self.queue.extend(0..self.streams.len());
    }

    /// Starts as many fetches as the tier allows.
    fn dispatch(&mut self, now: Now, errors: usize, actions: &mut Vec<Action>) {
        self.update_tier(errors);
        let mut refilled = false;
        loop {
            let allowed = match self.tiers.pace() {
                Pace::Pipeline => self.candle_tasks < self.config.concurrency,
                Pace::Iterations { symbols, pause } => {
                    if self.resume_at.is_some() {
                        false
                    } else if self.batch_left > 0 {
                        true
                    } else if self.candle_tasks > 0 {
                        false // the iteration is still running
                    } else if self.iteration_open && !pause.is_zero() {
                        self.iteration_open = false;
                        self.resume_at = Some(now.local_ms + pause.as_millis() as u64);
                        false
                    } else {
                        self.iteration_open = true;
                        self.batch_left = symbols;
                        true
                    }
                }
            };
            if !allowed {
                return;
            }
            let Some(index) = self.next_stream(now, &mut refilled) else {
                return;
            };
            if let Pace::Iterations { .. } = self.tiers.pace() {
                self.batch_left = self.batch_left.saturating_sub(1);
            }
            actions.push(self.start_candles(index, now));
        }
    }

    fn next_stream(&mut self, now: Now, refilled: &mut bool) -> Option<usize> {
        loop {
            let Some(index) = self.queue.pop_front() else {
                if self.config.mode == Mode::Live && !*refilled {
                    *refilled = true;
                    self.refill_live_queue();
                    continue;
                }
                return None;
            };
            let delivered = self.delivered(index).is_some();
            let stream = &mut self.streams[index];
            if stream.busy {
                if self.config.mode == Mode::Closed && stream.awaiting.is_some() {
                    // Still owed this close's candle: keep its place for later.
                    self.queue.push_back(index);
                    if self.queue.iter().all(|&i| self.streams[i].busy) {
                        return None;
                    }
                }
                continue;
            }
            if stream.retry_at.is_some_and(|at| at > now.local_ms) {
                continue;
            }
            if let Some(until) = stream.parked_until {
                if until > now.local_ms {
                    continue;
                }
                stream.parked_until = None;
                tracing::info!(symbol = %stream.key.symbol, "retrying a parked symbol");
            }
            if self.config.mode == Mode::Closed && stream.awaiting.is_none() && delivered {
                continue;
            }
            return Some(index);
        }
    }

    fn rows_needed(&self, index: usize, now: Now) -> u32 {
        let stream = &self.streams[index];
        let g = stream.key.timeframe;
        let Some(last) = self.delivered(index) else {
            return stream
                .first_rows
                .map_or(self.config.initial_candles, |rows| {
                    rows.max(self.config.initial_candles)
                })
                .min(MAX_ROWS);
        };
        let now_open = g.open_of(self.server_ms(now));
        let mut rows = 1;
        let mut open = g.next_open(last);
        while open < now_open && rows < MAX_ROWS {
            rows += 1;
            open = g.next_open(open);
        }
        // One row of overlap absorbs a server clock a little behind ours.
        (rows + 1).min(MAX_ROWS)
    }

    fn start_candles(&mut self, index: usize, now: Now) -> Action {
        let rows = self.rows_needed(index, now);
        // Closed mode needs closed candles only, which Bitget also serves from
        // `/history-candles` on a budget of its own: the two take turns. A read of more rows
        // than it gives (a long first read, a long gap) goes to `/candles`.
        let history = self.config.mode == Mode::Closed
            && endpoints::history_candles(self.config.market).is_some()
            && rows <= endpoints::MAX_HISTORY_CANDLE_ROWS
            && {
                self.history_turn = !self.history_turn;
                !self.history_turn
            };
        let stream = &mut self.streams[index];
        stream.busy = true;
        self.candle_tasks += 1;
        Action::Candles {
            stream: index,
            symbol: stream.key.symbol.clone(),
            timeframe: stream.key.timeframe,
            rows,
            history,
        }
    }

    /// A ticker request ended.
    pub fn tickers_done(&mut self, now: Now) {
        self.tickers_busy = false;
        self.tickers_due = self
            .config
            .tickers_interval
            .map(|i| now.local_ms + i.as_millis() as u64);
    }

    /// A candle request of `stream` succeeded: its closed candles go into the store, which
    /// keeps what is new (and, in live mode, the forming one); returns what was new.
    pub fn candles_done(&mut self, index: usize, candles: Vec<Candle>, now: Now) -> Delivery {
        self.candle_tasks = self.candle_tasks.saturating_sub(1);
        let s = &mut self.streams[index];
        s.busy = false;
        s.strikes = 0;
        s.failures = 0;
        self.stats.candle_replies.fetch_add(1, Ordering::Relaxed);
        let market = self.config.market;
        let last_before = self.delivered(index);
        let mut delivery = Delivery::default();
        for candle in candles {
            if !candle.closed {
                delivery.forming = Some(candle);
            } else if self.store.write_closed(market, candle.clone()) {
                delivery.closed.push(candle);
            }
        }
        self.stats
            .closed_delivered
            .fetch_add(delivery.closed.len() as u64, Ordering::Relaxed);
        if let (Some(last), Some(first)) = (last_before, delivery.closed.first()) {
            if first.open_time > self.streams[index].key.timeframe.next_open(last) {
                tracing::warn!(symbol = %self.streams[index].key.symbol, after = last, next = first.open_time, "gap in closed candles");
            }
        }
        if self.config.mode != Mode::Live {
            delivery.forming = None;
        }
        if let Some(forming) = &delivery.forming {
            self.store.write_forming(market, forming.clone());
        }
        if let Some((wanted, _)) = self.streams[index].awaiting {
            if self.delivered(index).is_some_and(|l| l >= wanted) {
                self.streams[index].awaiting = None;
                self.close_delivered(now);
            } else {
                self.requeue_for_close(index, now);
            }
        }
        delivery
    }

    /// A candle request of `stream` (or, with `None`, the ticker request) failed with
    /// `error`: park, back off or carry on.
    ///
    /// # Errors
    /// Bitget refused the credentials; polling must stop.
    pub fn failed(
        &mut self,
        stream: Option<usize>,
        error: &BitgetError,
        now: Now,
    ) -> Result<(), Fatal> {
        if let Some(i) = stream {
            self.candle_tasks = self.candle_tasks.saturating_sub(1);
            self.streams[i].busy = false;
        }
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let result = self.classify_failure(stream, error, now);
        if let Some(i) = stream {
            if self.streams[i].awaiting.is_some() {
                self.requeue_for_close(i, now);
            }
        }
        result
    }

    /// A request that produced no verdict on the symbol (unreadable reply, missing
    /// credentials, shutdown): counted, and the stream freed for its next turn.
    pub fn abandoned(&mut self, stream: Option<usize>, counted: bool, now: Now) {
        if counted {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(i) = stream {
            self.candle_tasks = self.candle_tasks.saturating_sub(1);
            self.streams[i].busy = false;
            if counted && self.streams[i].awaiting.is_some() {
                self.requeue_for_close(i, now);
            }
        }
    }

    fn classify_failure(
        &mut self,
        stream: Option<usize>,
        error: &BitgetError,
        now: Now,
    ) -> Result<(), Fatal> {
        let symbol = stream.map_or_else(
            || "-".to_owned(),
            |i| self.streams[i].key.symbol.to_string(),
        );
        match error.class() {
            ErrorClass::Auth => return Err(Fatal(error.clone())),
            ErrorClass::BadSymbol | ErrorClass::Rejected => {
                let Some(i) = stream else {
                    tracing::warn!(class = ?error.class(), "{error}");
                    return Ok(());
                };
                let retry = self.config.bad_symbol_retry;
                let s = &mut self.streams[i];
                s.strikes += 1;
                // "Does not exist" is more often a glitch than a delisting: the symbol is
                // tried again on the next pass and parked only after repeated errors.
                // Removed or offline is definitive at once.
                let definitive = error.symbol_gone() || s.strikes >= PARK_AFTER_STRIKES;
                if !definitive {
                    tracing::warn!(symbol = %symbol, class = ?error.class(), code = %error.code().unwrap_or("-"), strikes = s.strikes, "bitget refused symbol {symbol}; trying again on the next pass, parking after {PARK_AFTER_STRIKES} in a row");
                    return Ok(());
                }
                let first = s.parked_until.is_none();
                s.parked_until = Some(now.local_ms + retry.as_millis() as u64);
                s.awaiting = None;
                if first {
                    self.stats.parked.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(symbol = %symbol, class = ?error.class(), retry_in_s = retry.as_secs(), "{error}; parked");
            }
            class => {
                let mut retry_in_ms = 0;
                if let (Some(i), Mode::Live, false) =
                    (stream, self.config.mode, class == ErrorClass::RateLimited)
                {
                    // Backoff per symbol, without holding a task: the others keep going.
                    let s = &mut self.streams[i];
                    s.failures += 1;
                    let delay = self
                        .backoff
                        .delay(s.failures - 1, 0.5)
                        .unwrap_or(self.backoff.cap);
                    retry_in_ms = delay.as_millis() as u64;
                    s.retry_at = Some(now.local_ms + retry_in_ms);
                }
                tracing::warn!(symbol = %symbol, class = ?class, retry_in_ms, "fetch failed: {error}; retrying with backoff");
            }
        }
        Ok(())
    }

    fn schedule_next_close(&mut self, now: Now) {
        let server = self.server_ms(now);
        self.next_close = self
            .config
            .timeframes
            .iter()
            .map(|g| g.next_open(g.open_of(server)))
            .min();
    }

    fn start_close_round(&mut self, close_ms: u64, now: Now) {
        if let Some(round) = self.round.take() {
            if round.pending > 0 {
                tracing::warn!(
                    close_ms = round.close_ms,
                    missing = round.pending,
                    of = round.total,
                    "closed-mode round ended with symbols undelivered"
                );
            }
        }
        let mut total = 0;
        for index in 0..self.streams.len() {
            let g = self.streams[index].key.timeframe;
            if g.open_of(close_ms) != close_ms {
                continue;
            }
            let wanted = g.prev_open(close_ms);
            let delivered = self.delivered(index);
            let s = &mut self.streams[index];
            if s.parked_until.is_some() || delivered.is_some_and(|l| l >= wanted) {
                continue;
            }
            s.awaiting = Some((wanted, 0));
            total += 1;
            if !s.busy {
                self.queue.push_back(index);
            }
        }
        let started = self.local_of(close_ms, now).min(now.local_ms);
        self.round = Some(CloseRound {
            close_ms,
            pending: total,
            total,
            started,
        });
        if total == 0 {
            self.close_delivered_round(now);
        }
    }

    fn requeue_for_close(&mut self, index: usize, now: Now) {
        let Some((wanted, tries)) = self.streams[index].awaiting else {
            return;
        };
        if tries + 1 >= MAX_CLOSE_RETRIES {
            tracing::warn!(symbol = %self.streams[index].key.symbol, wanted, "closed candle still not available; giving up for this close");
            self.streams[index].awaiting = None;
            self.close_delivered(now);
            return;
        }
        self.streams[index].awaiting = Some((wanted, tries + 1));
        self.queue.push_back(index);
    }

    fn close_delivered(&mut self, now: Now) {
        if let Some(round) = &mut self.round {
            round.pending = round.pending.saturating_sub(1);
            if round.pending == 0 {
                self.close_delivered_round(now);
            }
        }
    }

    fn close_delivered_round(&mut self, now: Now) {
        if let Some(round) = self.round.take() {
            let latency = now.local_ms.saturating_sub(round.started);
            self.stats.close_rounds.fetch_add(1, Ordering::Relaxed);
            self.stats
                .last_close_latency_ms
                .store(latency, Ordering::Relaxed);
            tracing::info!(
                close_ms = round.close_ms,
                symbols = round.total,
                latency_ms = latency,
                "closed candles delivered"
            );
        }
    }

    /// A gateway client asked for `symbol`'s `timeframe` candles, `rows` of them: poll the
    /// series from now on, unless it is polled already. Returns whether it was new. It
    /// joins the back of the queue: the client's request was already answered (the
    /// gateway watches only what Bitget or the store answered), and the configured series
    /// keep their place however many clients ask for.
    pub fn watch(&mut self, symbol: Symbol, timeframe: Timeframe, rows: u32, now: Now) -> bool {
        if !self.config.timeframes.contains(&timeframe) {
            // Closed-mode rounds follow every timeframe polled.
            self.config.timeframes.push(timeframe);
        }
        let key = SeriesKey::new(symbol, timeframe);
        if let Some(index) = self.streams.iter().position(|s| s.key == key) {
            let s = &mut self.streams[index];
            if s.watched && s.parked_until == Some(u64::MAX) {
                // Asked for again after it went idle.
                s.parked_until = None;
                self.store.watch(&key, now.server_ms);
                self.queue.push_back(index);
                return true;
            }
            return false;
        }
        self.store.watch(&key, now.server_ms);
        let mut stream = Stream::new(key.symbol, timeframe);
        stream.watched = true;
        stream.first_rows = Some(rows);
        self.streams.push(stream);
        let index = self.streams.len() - 1;
        self.queue.push_back(index);
        tracing::info!(
            stream = index,
            %timeframe,
            rows,
            "polling a series a gateway client asked for"
        );
        true
    }

    /// No gateway client asked for this series for a while: stop polling it, unless it is
    /// configured. Returns whether it was stopped.
    pub fn unwatch(&mut self, symbol: &Symbol, timeframe: Timeframe) -> bool {
        let Some(index) = self
            .streams
            .iter()
            .position(|s| s.watched && &s.key.symbol == symbol && s.key.timeframe == timeframe)
        else {
            return false;
        };
        let s = &mut self.streams[index];
        if s.parked_until == Some(u64::MAX) {
            return false;
        }
        s.parked_until = Some(u64::MAX);
        s.awaiting = None;
        self.store.retire(&s.key);
        true
    }

    /// The instrument list was re-read: `symbols` is what is listed now, or `None` if the
    /// refresh failed. New symbols are polled from now on; delisted ones are parked
    /// rather than removed, so stream indices stay valid.
    pub fn symbols_refreshed(&mut self, symbols: Option<Vec<Symbol>>, now: Now) {
        self.discovery_busy = false;
        self.discovery_due = Some(now.local_ms + self.config.discovery_refresh.as_millis() as u64);
        let Some(symbols) = symbols else {
            return;
        };
        let known: HashSet<&Symbol> = self.streams.iter().map(|s| &s.key.symbol).collect();
        let new: Vec<Symbol> = symbols
            .iter()
            .filter(|s| !known.contains(s))
            .cloned()
            .collect();
        for symbol in &new {
            for timeframe in &self.config.timeframes {
                let stream = Stream::new(symbol.clone(), *timeframe);
                self.store.watch(&stream.key, now.server_ms);
                self.streams.push(stream);
                self.queue.push_back(self.streams.len() - 1);
            }
        }
        let added = new.len();
        let listed: HashSet<&Symbol> = symbols.iter().collect();
        let far = now.local_ms + self.config.discovery_refresh.as_millis() as u64;
        let mut removed = 0;
        for stream in &mut self.streams {
            if !listed.contains(&stream.key.symbol) && stream.parked_until.is_none() {
                stream.parked_until = Some(far);
                self.store.retire(&stream.key);
                removed += 1;
            }
        }
        tracing::info!(
            added,
            removed,
            total = symbols.len(),
            "contract list refreshed"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rust_decimal::Decimal;

    use super::*;
    use crate::core::market::Market;
    use crate::scheduler::tiers::TierConfig;
    use crate::store::StoreConfig;

    const MINUTE: u64 = 60_000;
    /// 2025-06-15T12:00:00Z plus 30 s: mid-minute.
    const T0: u64 = 1_749_988_800_000 + 30_000;

    fn g1m() -> Timeframe {
        Timeframe::parse(Market::Futures, "1m").unwrap()
    }

    fn config(mode: Mode, concurrency: usize) -> PollConfig {
        PollConfig {
            market: Market::Futures,
            symbols: SymbolSelection::List(Vec::new()),
            timeframes: vec![g1m()],
            mode,
            initial_candles: 100,
            tickers_interval: Some(Duration::from_secs(10)),
            concurrency,
            discovery_refresh: Duration::from_secs(3600),
            discovery_cache: "unused.json".into(),
            bad_symbol_retry: Duration::from_secs(600),
            tiers: TierConfig::default(),
            derive: false,
            derive_check_every: 0,
        }
    }

    fn symbols(names: &[&str]) -> Vec<Symbol> {
        names.iter().map(|n| Symbol::from_exchange(n)).collect()
    }

    fn at(local_ms: u64) -> Now {
        Now {
            local_ms,
            server_ms: T0 + local_ms,
        }
    }

    fn candle(symbol: &str, open_time: u64, closed: bool) -> Candle {
        Candle {
            symbol: Symbol::from_exchange(symbol),
            timeframe: g1m(),
            open_time,
            open: Decimal::ONE,
            high: Decimal::ONE,
            low: Decimal::ONE,
            close: Decimal::ONE,
            base_volume: Decimal::ONE,
            quote_volume: Decimal::ONE,
            closed,
        }
    }

    fn candle_streams(actions: &[Action]) -> Vec<(usize, u32)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Candles { stream, rows, .. } => Some((*stream, *rows)),
                _ => None,
            })
            .collect()
    }

    fn core(mode: Mode, concurrency: usize, names: &[&str]) -> Core {
        Core::new(
            config(mode, concurrency),
            Backoff::default(),
            Arc::default(),
            Store::new(StoreConfig::default()),
            &symbols(names),
            at(0),
        )
    }

    #[test]
    fn live_mode_keeps_concurrency_requests_in_flight_round_robin_then_asks_only_for_new_rows() {
        let mut c = core(Mode::Live, 2, &["A", "B", "C"]);
        let first = c.poll(at(0), 0);
        assert!(first.contains(&Action::Tickers));
        assert_eq!(candle_streams(&first), vec![(0, 100), (1, 100)]);
        assert!(c.poll(at(1), 0).is_empty(), "two in flight already");
        // A's reply: 2 closed candles and the forming one.
        let open = (T0 / MINUTE) * MINUTE;
        let delivery = c.candles_done(
            0,
            vec![
                candle("A", open - 2 * MINUTE, true),
                candle("A", open - MINUTE, true),
                candle("A", open, false),
            ],
            at(5),
        );
        assert_eq!(delivery.closed.len(), 2);
        assert_eq!(delivery.forming.map(|c| c.open_time), Some(open));
        // C is next, then A again, now asking for 1 row plus 1 of overlap.
        assert_eq!(candle_streams(&c.poll(at(6), 0)), vec![(2, 100)]);
        c.candles_done(1, vec![], at(7));
        assert_eq!(candle_streams(&c.poll(at(8), 0)), vec![(0, 2)]);
        // A repeat of the same closed candles delivers nothing new.
        let again = c.candles_done(0, vec![candle("A", open - MINUTE, true)], at(9));
        assert!(again.closed.is_empty());
    }

    #[test]
    fn closes_and_repeats_are_judged_by_the_server_clock_it_is_given_and_the_store() {
        // The server's clock runs 5 s ahead of local time: its minute closes 5 s earlier
        // on our timers, and the round starts then.
        let ahead = |local_ms: u64| Now {
            local_ms,
            server_ms: T0 + local_ms + 5_000,
        };
        let store = Store::new(StoreConfig::default());
        let mut c = Core::new(
            config(Mode::Closed, 4),
            Backoff::default(),
            Arc::default(),
            Arc::clone(&store),
            &symbols(&["A"]),
            ahead(0),
        );
        c.poll(ahead(0), 0);
        let open = (T0 / MINUTE) * MINUTE;
        c.candles_done(0, vec![candle("A", open - MINUTE, true)], ahead(1));
        c.freshness_due = u64::MAX;
        c.tickers_due = None;
        assert_eq!(
            c.next_deadline(ahead(1)),
            25_000,
            "30 s by our clock, 25 s by the server's"
        );
        assert!(candle_streams(&c.poll(ahead(24_999), 0)).is_empty());
        assert_eq!(candle_streams(&c.poll(ahead(25_000), 0)), vec![(0, 3)]);
        // The store decides what is new: a candle someone else delivered is not delivered
        // again, and the next read starts after it.
        assert!(store.write_closed(Market::Futures, candle("A", open, true)));
        let delivery = c.candles_done(0, vec![candle("A", open, true)], ahead(25_010));
        assert!(delivery.closed.is_empty());
        assert_eq!(
            store.delivered_through(&SeriesKey::new(Symbol::from_exchange("A"), g1m())),
            Some(open)
        );
        assert_eq!(c.stats.closed_delivered.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_shell_sleeps_to_the_next_timer_not_on_a_fixed_tick() {
        let mut c = core(Mode::Closed, 4, &["A"]);
        c.poll(at(0), 0);
        c.tickers_done(at(0));
        assert_eq!(
            c.next_deadline(at(0)),
            1000,
            "the freshness check, every second"
        );
        c.poll(at(1000), 0);
        assert_eq!(c.next_deadline(at(1000)), 2000);
        let mut c = core(Mode::Closed, 4, &["A"]);
        c.poll(at(0), 0);
        c.tickers_done(at(0));
        c.freshness_due = u64::MAX;
        assert_eq!(c.next_deadline(at(0)), 10_000, "tickers every 10 s");
        c.tickers_due = None;
        assert_eq!(
            c.next_deadline(at(0)),
            30_000,
            "the candle close, 30 s away"
        );
    }

    fn history_flags(actions: &[Action]) -> Vec<(usize, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Candles {
                    stream, history, ..
                } => Some((*stream, *history)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn closed_mode_reads_take_turns_between_the_two_candle_endpoints() {
        let mut c = core(Mode::Closed, 8, &["A", "B", "C", "D"]);
        let open = (T0 / MINUTE) * MINUTE;
        // First reads of 100 rows fit /history-candles' 200: they take turns too.
        let first = history_flags(&c.poll(at(0), 0));
        assert_eq!(first, vec![(0, false), (1, true), (2, false), (3, true)]);
        for (i, name) in ["A", "B", "C", "D"].iter().enumerate() {
            c.candles_done(i, vec![candle(name, open - MINUTE, true)], at(1));
        }
        // After the close, the follow-ups alternate, so each endpoint carries half.
        let close = history_flags(&c.poll(at(30_002), 0));
        assert_eq!(close, vec![(0, false), (1, true), (2, false), (3, true)]);
        // More rows than /history-candles gives go to /candles, whatever the turn.
        let mut long = Core::new(
            PollConfig {
                initial_candles: 500,
                ..config(Mode::Closed, 4)
            },
            Backoff::default(),
            Arc::default(),
            Store::new(StoreConfig::default()),
            &symbols(&["A", "B"]),
            at(0),
        );
        assert_eq!(
            history_flags(&long.poll(at(0), 0)),
            vec![(0, false), (1, false)]
        );
        // Live mode wants the forming candle: /candles only.
        let mut live = core(Mode::Live, 4, &["A", "B"]);
        assert!(history_flags(&live.poll(at(0), 0)).iter().all(|(_, h)| !h));
    }

    #[test]
    fn closed_mode_asks_every_symbol_once_after_the_close_and_again_until_the_server_closed_it() {
        let mut c = core(Mode::Closed, 4, &["A", "B"]);
        let open = (T0 / MINUTE) * MINUTE;
        // Start: both fetched once to learn their history.
        let first = candle_streams(&c.poll(at(0), 0));
        assert_eq!(first, vec![(0, 100), (1, 100)]);
        c.candles_done(0, vec![candle("A", open - MINUTE, true)], at(1));
        c.candles_done(1, vec![candle("B", open - MINUTE, true)], at(1));
        assert!(
            candle_streams(&c.poll(at(2), 0)).is_empty(),
            "nothing until the close"
        );
        // The close, 30 s on by the server clock (1 ms behind ours): both asked again.
        let close = candle_streams(&c.poll(at(30_002), 0));
        assert_eq!(
            close.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![0, 1]
        );
        // A's server had not closed it yet: A goes to the back and is asked again.
        c.candles_done(0, vec![candle("A", open, false)], at(30_010));
        assert_eq!(candle_streams(&c.poll(at(30_011), 0)).len(), 1);
        c.candles_done(1, vec![candle("B", open, true)], at(30_020));
        c.candles_done(0, vec![candle("A", open, true)], at(30_030));
        assert_eq!(c.stats.close_rounds.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats.last_close_latency_ms.load(Ordering::Relaxed), 28);
    }

    #[test]
    fn a_refused_symbol_is_parked_after_three_strikes_and_auth_stops_polling() {
        let mut c = core(Mode::Live, 1, &["A", "B"]);
        let missing = BitgetError::BadSymbol {
            symbol: "A".into(),
            code: "40034".into(),
            msg: "does not exist".into(),
        };
        for strike in 0..3 {
            let actions = candle_streams(&c.poll(at(strike * 10), 0));
            assert_eq!(actions[0].0, 0, "A asked again on strike {strike}");
            c.failed(Some(0), &missing, at(strike * 10 + 1)).unwrap();
            // B in between.
            let b = candle_streams(&c.poll(at(strike * 10 + 2), 0));
            assert_eq!(b[0].0, 1);
            c.candles_done(1, vec![], at(strike * 10 + 3));
        }
        assert_eq!(c.stats.parked.load(Ordering::Relaxed), 1);
        assert_eq!(candle_streams(&c.poll(at(100), 0))[0].0, 1, "A is parked");
        assert_eq!(
            c.next_deadline(at(100)),
            1000,
            "the freshness check; A's parking is 600 s"
        );
        let auth = BitgetError::Auth {
            code: "40009".into(),
            msg: "sign error".into(),
        };
        assert_eq!(c.failed(Some(1), &auth, at(101)), Err(Fatal(auth)));
    }

    #[test]
    fn a_transient_failure_backs_the_symbol_off_and_its_retry_is_a_deadline() {
        let mut c = core(Mode::Live, 1, &["A"]);
        c.tickers_due = None;
        c.poll(at(0), 0);
        let reset = BitgetError::Connection {
            endpoint: "/c".into(),
            detail: "reset".into(),
        };
        c.failed(Some(0), &reset, at(10)).unwrap();
        assert!(candle_streams(&c.poll(at(11), 0)).is_empty(), "backing off");
        // Backoff base 1 s × jitter 1.0.
        c.freshness_due = u64::MAX;
        assert_eq!(c.next_deadline(at(11)), 1010);
        assert_eq!(candle_streams(&c.poll(at(1010), 0)), vec![(0, 100)]);
    }

    #[test]
    fn a_series_a_gateway_client_asks_for_is_polled_after_the_configured_ones_and_stops_when_unasked(
    ) {
        let mut c = core(Mode::Live, 1, &["A"]);
        c.tickers_due = None;
        let g5 = Timeframe::parse(Market::Futures, "5m").unwrap();
        assert!(c.watch(Symbol::from_exchange("B"), g5, 300, at(0)));
        assert!(!c.watch(Symbol::from_exchange("B"), g5, 300, at(0)), "once");
        assert!(
            !c.watch(Symbol::from_exchange("A"), g1m(), 50, at(0)),
            "configured"
        );
        // The configured series keeps its place at the front.
        let configured = candle_streams(&c.poll(at(0), 0));
        assert_eq!(configured[0].0, 0, "A first");
        c.candles_done(0, vec![], at(0));
        let first = c.poll(at(0), 0);
        let Action::Candles {
            symbol,
            timeframe,
            rows,
            ..
        } = &first[0]
        else {
            panic!("{first:?}")
        };
        assert_eq!((symbol.as_str(), timeframe.rest(), *rows), ("B", "5m", 300));
        c.candles_done(1, vec![], at(1));
        assert!(c.unwatch(&Symbol::from_exchange("B"), g5));
        assert!(
            !c.unwatch(&Symbol::from_exchange("A"), g1m()),
            "configured streams stay"
        );
        for t in 2..6 {
            let asked = candle_streams(&c.poll(at(t), 0));
            c.candles_done(asked[0].0, vec![], at(t));
            assert_eq!(asked[0].0, 0, "only A once B went idle");
        }
        assert!(
            c.watch(Symbol::from_exchange("B"), g5, 300, at(7)),
            "asked again"
        );
        assert_eq!(candle_streams(&c.poll(at(7), 0))[0].0, 1);
    }

    #[test]
    fn rate_limit_errors_slow_the_tier_to_iterations_with_pauses() {
        let mut c = core(Mode::Live, 8, &["A", "B", "C", "D"]);
        c.tickers_due = None;
        // Six 429s in the last minute: the slow tier, 2 symbols then 0.5 s of pause.
        let batch = candle_streams(&c.poll(at(0), 6));
        assert_eq!(batch.len(), 2);
        assert_eq!(c.tier(), Tier::Slow);
        c.candles_done(batch[0].0, vec![], at(10));
        c.candles_done(batch[1].0, vec![], at(20));
        assert!(candle_streams(&c.poll(at(21), 6)).is_empty(), "pausing");
        assert_eq!(c.resume_at, Some(521));
        assert_eq!(candle_streams(&c.poll(at(521), 6)).len(), 2);
    }
}
