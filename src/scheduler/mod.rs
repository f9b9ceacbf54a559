//! The polling loop: which request goes next, and what its reply means for strategies.
//!
//! One task owns every symbol's state; fetches run in a `JoinSet` it owns, and their results
//! come back to it, so no state is shared and nothing runs detached. Two modes:
//! - `live`: round-robin over every (symbol, timeframe) without pause, keeping
//!   `concurrency` requests in flight, so the limiter — not the loop — sets the pace and the
//!   whole budget is used;
//! - `closed`: after each candle close, every symbol once, as fast as the budget allows; a
//!   symbol whose candle the server has not closed yet goes to the back of the queue.
//!
//! Candles are fetched incrementally: the first request reads `initial_candles` rows, later
//! ones only the rows since the last closed candle seen, plus one row of overlap. "Closed" is
//! judged by the server's `requestTime`, so a forming candle is never reported as closed.
//! Tickers for all symbols come from one `/tickers` request per interval.
//!
//! Consumers get events through a bounded channel. Closed candles are never dropped: when
//! the consumer is slow the loop waits for it (and the wait is counted), so budget goes
//! unused rather than data lost. Forming candles and ticker snapshots are superseded by the
//! next ones anyway, so when the channel is full they are dropped and counted instead.

pub mod freshness;
pub mod tiers;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{CallError, Client};
use crate::clock::Clock;
use crate::config::{Mode, PollConfig};
use crate::discovery;
use crate::error::{BitgetError, ErrorClass};
use crate::granularity::{Granularity, Market};
use crate::models::{Candle, Stamped, Symbol, Ticker};
use crate::parse::{self, ParseError};
use crate::telemetry::{RecentRateLimits, RATE_LOG};
use freshness::Freshness;
use tiers::{Pace, Tier, Tiers};

/// Bitget returns at most this many candle rows per request.
const MAX_ROWS: u32 = 1000;
/// In-flight requests get this long to finish after a stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often parked symbols and timers are looked at when nothing else happens.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// How often streams are checked for staleness.
const FRESHNESS_CHECK: Duration = Duration::from_secs(1);
/// A closed-mode symbol whose candle the server has not closed yet is asked again at most
/// this many times per close.
const MAX_CLOSE_RETRIES: u32 = 20;

/// What strategies receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketEvent {
    /// A candle whose period has ended (by the server's clock). Delivered once, in order
    /// per symbol and timeframe.
    CandleClosed(Candle),
    /// The latest state of a forming candle (live mode); may be dropped under backpressure.
    CandleForming(Candle),
    /// All tickers from one `/tickers` reply; may be dropped under backpressure.
    Tickers {
        server_time: u64,
        tickers: Arc<Vec<Ticker>>,
    },
}

/// Why polling stopped early.
#[derive(Debug, Error)]
pub enum PollError {
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    #[error("{0}; polling stopped")]
    Fatal(BitgetError),
}

/// Counters the poller keeps beyond the limiter's, for the summary and tests.
#[derive(Debug, Default)]
pub struct PollStats {
    pub candle_replies: AtomicU64,
    pub closed_delivered: AtomicU64,
    pub forming_dropped: AtomicU64,
    pub tickers_delivered: AtomicU64,
    pub tickers_dropped: AtomicU64,
    /// Milliseconds the loop waited for a slow consumer.
    pub consumer_wait_ms: AtomicU64,
    pub failures: AtomicU64,
    pub parked: AtomicU64,
    /// Closed-mode rounds completed, and the latest round's delivery time after the close.
    pub close_rounds: AtomicU64,
    pub last_close_latency_ms: AtomicU64,
    /// Current symbols per iteration, shown in the usage lines.
    pub symbols_per_iteration: AtomicUsize,
    /// Current adaptive tier, as its index in [`Tier::ALL`].
    tier: AtomicU8,
    /// Age of every stream's newest closed candle.
    pub freshness: Freshness,
}

impl PollStats {
    /// The adaptive tier in force.
    pub fn tier(&self) -> Tier {
        Tier::ALL[usize::from(self.tier.load(Ordering::Relaxed)).min(Tier::ALL.len() - 1)]
    }

    fn set_tier(&self, tier: Tier) {
        let index = Tier::ALL.iter().position(|t| *t == tier).unwrap_or(0);
        self.tier.store(index as u8, Ordering::Relaxed);
    }
}

/// Symbol errors in a row after which a symbol that was served before is parked.
const PARK_AFTER_STRIKES: u32 = 3;

/// One (symbol, timeframe) the poller keeps fresh.
#[derive(Debug)]
struct Stream {
    symbol: Symbol,
    timeframe: usize,
    last_closed: Option<u64>,
    busy: bool,
    parked_until: Option<Instant>,
    /// Symbol errors in a row on a symbol that has been served before.
    strikes: u32,
    /// Live mode: transient failures in a row, and when the symbol may be asked again.
    failures: u32,
    retry_at: Option<Instant>,
    /// Open time of the candle a closed-mode round waits for, and attempts so far.
    awaiting: Option<(u64, u32)>,
}

impl Stream {
    fn new(symbol: Symbol, timeframe: usize) -> Self {
        Self {
            symbol,
            timeframe,
            last_closed: None,
            busy: false,
            parked_until: None,
            strikes: 0,
            failures: 0,
            retry_at: None,
            awaiting: None,
        }
    }
}

enum Outcome {
    Candles {
        stream: usize,
        result: Result<Stamped<Vec<Candle>>, FetchError>,
    },
    Tickers(Result<Stamped<parse::Tickers>, FetchError>),
}

#[derive(Debug)]
enum FetchError {
    Call(CallError),
    Parse(ParseError),
}

/// A closed-mode round: streams still owed their candle for one close.
#[derive(Debug)]
struct CloseRound {
    close_ms: u64,
    pending: usize,
    total: usize,
    started: Instant,
}

/// The poller: build it, then [`Poller::run`] it until `stop`.
#[derive(Debug)]
pub struct Poller {
    client: Client,
    config: PollConfig,
    wall: Arc<dyn Clock>,
    recent: Arc<RecentRateLimits>,
    events: mpsc::Sender<MarketEvent>,
    stats: Arc<PollStats>,
    stop: CancellationToken,
}

impl Poller {
    pub fn new(
        client: Client,
        config: PollConfig,
        wall: Arc<dyn Clock>,
        recent: Arc<RecentRateLimits>,
        events: mpsc::Sender<MarketEvent>,
        stats: Arc<PollStats>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            client,
            config,
            wall,
            recent,
            events,
            stats,
            stop,
        }
    }

    pub fn stats(&self) -> Arc<PollStats> {
        Arc::clone(&self.stats)
    }

    /// Polls until the stop token fires, then lets in-flight requests finish for up to
    /// [`SHUTDOWN_GRACE`].
    ///
    /// # Errors
    /// Symbols cannot be discovered, or Bitget refuses the credentials (nothing else stops
    /// polling: failures are logged with their symbol and retried later).
    pub async fn run(self, symbols: Vec<Symbol>) -> Result<(), PollError> {
        let mut state = LoopState::new(self, symbols);
        let result = state.run().await;
        state.shutdown().await;
        result
    }
}

/// Resolves the configured symbol selection (discovery for `"all"`).
///
/// # Errors
/// Discovery fails with no usable cache.
pub async fn resolve_symbols(
    client: &Client,
    config: &PollConfig,
    wall: &dyn Clock,
) -> Result<Vec<Symbol>, PollError> {
    match &config.symbols {
        crate::config::SymbolSelection::List(list) => Ok(list.clone()),
        crate::config::SymbolSelection::All => Ok(discovery::discover(
            client,
            config.market,
            &config.discovery_cache,
            wall.now_ms(),
            config.discovery_refresh,
        )
        .await?),
    }
}

struct LoopState {
    p: Poller,
    streams: Vec<Stream>,
    queue: VecDeque<usize>,
    inflight: JoinSet<Outcome>,
    candle_tasks: usize,
    tiers: Tiers,
    /// Degraded tiers: symbols left in this iteration, whether one ran since the last
    /// pause, and when the pause ends.
    batch_left: usize,
    iteration_open: bool,
    resume_at: Option<Instant>,
    /// Server clock minus ours, learned from every reply's `requestTime`.
    offset_ms: i64,
    round: Option<CloseRound>,
    next_close: Option<u64>,
    tickers_due: Option<Instant>,
    tickers_busy: bool,
    discovery_due: Option<Instant>,
    freshness_due: Instant,
}

impl LoopState {
    fn new(p: Poller, symbols: Vec<Symbol>) -> Self {
        let timeframes = p.config.timeframes.len();
        let streams: Vec<Stream> = symbols
            .iter()
            .flat_map(|symbol| (0..timeframes).map(|tf| Stream::new(symbol.clone(), tf)))
            .collect();
        let tiers = Tiers::new(p.config.tiers.clone());
        let now = Instant::now();
        let discovery_due = matches!(p.config.symbols, crate::config::SymbolSelection::All)
            .then(|| now + p.config.discovery_refresh);
        let tickers_due = p.config.tickers_interval.map(|_| now);
        let now_ms = p.wall.now_ms();
        for stream in &streams {
            let (name, granularity) = &p.config.timeframes[stream.timeframe];
            p.stats
                .freshness
                .watch(stream.symbol.clone(), name, *granularity, now_ms);
        }
        Self {
            queue: (0..streams.len()).collect(),
            streams,
            inflight: JoinSet::new(),
            candle_tasks: 0,
            tiers,
            batch_left: 0,
            iteration_open: false,
            resume_at: None,
            offset_ms: 0,
            round: None,
            next_close: None,
            tickers_due,
            tickers_busy: false,
            discovery_due,
            freshness_due: now + FRESHNESS_CHECK,
            p,
        }
    }

    fn server_now_ms(&self) -> u64 {
        (self.p.wall.now_ms() as i64 + self.offset_ms).max(0) as u64
    }

    fn learn_offset(&mut self, server_time: u64) {
        self.offset_ms = server_time as i64 - self.p.wall.now_ms() as i64;
        self.p.stats.freshness.set_offset(self.offset_ms);
    }

    async fn run(&mut self) -> Result<(), PollError> {
        if self.p.config.mode == Mode::Closed {
            self.schedule_next_close();
        }
        loop {
            if self.p.stop.is_cancelled() {
                return Ok(());
            }
            self.dispatch();
            let close_at = self.next_close.map(|close| self.instant_of(close));
            let wake = [
                self.resume_at,
                self.tickers_due.filter(|_| !self.tickers_busy),
                close_at,
                self.discovery_due,
                Some(self.freshness_due),
            ]
            .into_iter()
            .flatten()
            .fold(Instant::now() + HOUSEKEEPING, Instant::min);
            tokio::select! {
                () = self.p.stop.cancelled() => return Ok(()),
                Some(joined) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    match joined {
                        Ok(outcome) => self.handle(outcome).await?,
                        Err(error) => tracing::error!("a fetch task failed: {error}"),
                    }
                }
                () = tokio::time::sleep_until(wake) => self.on_timers().await,
            }
        }
    }

    /// The local instant at which the server's clock reads `server_ms`.
    fn instant_of(&self, server_ms: u64) -> Instant {
        let ahead = server_ms.saturating_sub(self.server_now_ms());
        Instant::now() + Duration::from_millis(ahead)
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if self.resume_at.is_some_and(|t| t <= now) {
            self.resume_at = None;
        }
        if !self.tickers_busy && self.tickers_due.is_some_and(|t| t <= now) {
            self.spawn_tickers();
        }
        if let Some(close) = self.next_close {
            if self.server_now_ms() >= close {
                self.start_close_round(close);
                self.schedule_next_close();
            }
        }
        if self.discovery_due.is_some_and(|t| t <= now) {
            self.discovery_due = Some(now + self.p.config.discovery_refresh);
            self.refresh_symbols().await;
        }
        if self.p.config.mode == Mode::Live && self.queue.is_empty() {
            self.refill_live_queue();
        }
        if self.freshness_due <= now {
            self.freshness_due = now + FRESHNESS_CHECK;
            self.check_freshness();
        }
    }

    /// Warns once when a stream turns stale, and says when it recovers.
    fn check_freshness(&self) {
        let changes = self.p.stats.freshness.check(self.p.wall.now_ms());
        for age in changes.newly_stale {
            let now = Instant::now();
            let why = self.streams.get(age.index).map_or("", |s| {
                if s.parked_until.is_some() {
                    "parked after bitget refused it"
                } else if s.retry_at.is_some_and(|t| t > now) {
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

    fn update_tier(&mut self) {
        let errors = self.p.recent.total();
        if let Some((from, to)) = self.tiers.update(errors) {
            tracing::warn!(target: RATE_LOG, event = %"tier_change", from = %from, to = %to, rate_limited_60s = errors, "adaptive tier changed");
            self.batch_left = 0;
            self.iteration_open = false;
            self.resume_at = None;
            self.p.stats.set_tier(to);
        }
        let per_iteration = match self.tiers.pace() {
            Pace::Pipeline => self.streams.len(),
            Pace::Iterations { symbols, .. } => symbols,
        };
        self.p
            .stats
            .symbols_per_iteration
            .store(per_iteration, Ordering::Relaxed);
    }

    fn refill_live_queue(&mut self) {
        self.queue.extend(0..self.streams.len());
    }

    /// Starts as many fetches as the tier allows.
    fn dispatch(&mut self) {
        self.update_tier();
        let mut refilled = false;
        loop {
            let allowed = match self.tiers.pace() {
                Pace::Pipeline => self.candle_tasks < self.p.config.concurrency,
                Pace::Iterations { symbols, pause } => {
                    if self.resume_at.is_some() {
                        false
                    } else if self.batch_left > 0 {
                        true
                    } else if self.candle_tasks > 0 {
                        false // the iteration is still running
                    } else if self.iteration_open && !pause.is_zero() {
                        self.iteration_open = false;
                        self.resume_at = Some(Instant::now() + pause);
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
            let Some(index) = self.next_stream(&mut refilled) else {
                return;
            };
            if let Pace::Iterations { .. } = self.tiers.pace() {
                self.batch_left = self.batch_left.saturating_sub(1);
            }
            self.spawn_candles(index);
        }
    }

    fn next_stream(&mut self, refilled: &mut bool) -> Option<usize> {
        let now = Instant::now();
        loop {
            let Some(index) = self.queue.pop_front() else {
                if self.p.config.mode == Mode::Live && !*refilled {
                    *refilled = true;
                    self.refill_live_queue();
                    continue;
                }
                return None;
            };
            let stream = &mut self.streams[index];
            if stream.busy {
                if self.p.config.mode == Mode::Closed && stream.awaiting.is_some() {
                    // Still owed this close's candle: keep its place for later.
                    self.queue.push_back(index);
                    if self.queue.iter().all(|&i| self.streams[i].busy) {
                        return None;
                    }
                }
                continue;
            }
            if stream.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            if let Some(until) = stream.parked_until {
                if until > now {
                    continue;
                }
                stream.parked_until = None;
                tracing::info!(symbol = %stream.symbol, "retrying a parked symbol");
            }
            if self.p.config.mode == Mode::Closed
                && stream.awaiting.is_none()
                && stream.last_closed.is_some()
            {
                continue;
            }
            return Some(index);
        }
    }

    fn rows_needed(&self, stream: &Stream) -> u32 {
        let g = self.p.config.timeframes[stream.timeframe].1;
        let Some(last) = stream.last_closed else {
            return self.p.config.initial_candles;
        };
        let now_open = g.open_of(self.server_now_ms());
        let mut rows = 1;
        let mut open = g.next_open(last);
        while open < now_open && rows < MAX_ROWS {
            rows += 1;
            open = g.next_open(open);
        }
        // One row of overlap absorbs a server clock a little behind ours.
        (rows + 1).min(MAX_ROWS)
    }

    fn spawn_candles(&mut self, index: usize) {
        let rows = self.rows_needed(&self.streams[index]);
        let stream = &mut self.streams[index];
        stream.busy = true;
        self.candle_tasks += 1;
        let (timeframe, granularity) = self.p.config.timeframes[stream.timeframe].clone();
        let symbol = stream.symbol.clone();
        let client = self.p.client.clone();
        let market = self.p.config.market;
        self.inflight.spawn(async move {
            let result =
                fetch_candles(&client, market, &symbol, &timeframe, granularity, rows).await;
            Outcome::Candles {
                stream: index,
                result,
            }
        });
    }

    fn spawn_tickers(&mut self) {
        self.tickers_busy = true;
        let client = self.p.client.clone();
        let market = self.p.config.market;
        self.inflight.spawn(async move {
            let (path, query) = tickers_request(market);
            let result = match client.get(path, query, None).await {
                Ok(reply) => parse::tickers(&reply.body).map_err(FetchError::Parse),
                Err(e) => Err(FetchError::Call(e)),
            };
            Outcome::Tickers(result)
        });
    }

    async fn handle(&mut self, outcome: Outcome) -> Result<(), PollError> {
        match outcome {
            Outcome::Tickers(result) => {
                self.tickers_busy = false;
                self.tickers_due = self.p.config.tickers_interval.map(|i| Instant::now() + i);
                match result {
                    Ok(stamped) => {
                        self.learn_offset(stamped.server_time);
                        for skipped in &stamped.data.skipped {
                            tracing::warn!(
                                endpoint = tickers_request(self.p.config.market).0,
                                "skipped a ticker line: {skipped}"
                            );
                        }
                        self.offer(MarketEvent::Tickers {
                            server_time: stamped.server_time,
                            tickers: Arc::new(stamped.data.tickers),
                        });
                    }
                    Err(error) => self.fetch_failed(None, error)?,
                }
            }
            Outcome::Candles { stream, result } => {
                self.candle_tasks -= 1;
                self.streams[stream].busy = false;
                match result {
                    Ok(stamped) => {
                        let s = &mut self.streams[stream];
                        s.strikes = 0;
                        s.failures = 0;
                        self.p.stats.candle_replies.fetch_add(1, Ordering::Relaxed);
                        self.learn_offset(stamped.server_time);
                        self.deliver(stream, stamped.data).await;
                    }
                    Err(error) => {
                        self.fetch_failed(Some(stream), error)?;
                        if self.streams[stream].awaiting.is_some() {
                            self.requeue_for_close(stream);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands new closed candles (in order, waiting for the consumer) and the forming candle
    /// (dropped if the consumer is behind) to strategies.
    async fn deliver(&mut self, index: usize, candles: Vec<Candle>) {
        let mut forming = None;
        let last_before = self.streams[index].last_closed;
        let mut first_new = None;
        for candle in candles {
            let open = candle.open_time;
            if candle.closed {
                if self.streams[index]
                    .last_closed
                    .is_some_and(|last| open <= last)
                {
                    continue;
                }
                first_new.get_or_insert(open);
                self.streams[index].last_closed = Some(open);
                self.send_closed(candle).await;
            } else {
                forming = Some(candle);
            }
        }
        if let (Some(_), Some(newest)) = (first_new, self.streams[index].last_closed) {
            // Once per reply, not per candle: only the newest close sets the age.
            self.p.stats.freshness.closed(index, newest);
        }
        if let (Some(last), Some(first)) = (last_before, first_new) {
            let g = self.p.config.timeframes[self.streams[index].timeframe].1;
            if first > g.next_open(last) {
                tracing::warn!(symbol = %self.streams[index].symbol, after = last, next = first, "gap in closed candles");
            }
        }
        if self.p.config.mode == Mode::Live {
            if let Some(candle) = forming {
                self.offer(MarketEvent::CandleForming(candle));
            }
        }
        if let Some((wanted, _)) = self.streams[index].awaiting {
            if self.streams[index].last_closed.is_some_and(|l| l >= wanted) {
                self.streams[index].awaiting = None;
                self.close_delivered();
            } else {
                self.requeue_for_close(index);
            }
        }
    }

    async fn send_closed(&mut self, candle: Candle) {
        let started = Instant::now();
        let sent = tokio::select! {
            biased;
            sent = self.p.events.send(MarketEvent::CandleClosed(candle)) => sent.is_ok(),
            () = self.p.stop.cancelled() => false,
        };
        let waited = Instant::now().duration_since(started);
        if waited >= Duration::from_millis(1) {
            self.p
                .stats
                .consumer_wait_ms
                .fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
        }
        if sent {
            self.p
                .stats
                .closed_delivered
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn offer(&self, event: MarketEvent) {
        let tickers = matches!(event, MarketEvent::Tickers { .. });
        let counter = match (self.p.events.try_send(event).is_ok(), tickers) {
            (true, true) => &self.p.stats.tickers_delivered,
            (true, false) => return,
            (false, true) => &self.p.stats.tickers_dropped,
            (false, false) => &self.p.stats.forming_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn fetch_failed(&mut self, stream: Option<usize>, error: FetchError) -> Result<(), PollError> {
        if matches!(error, FetchError::Call(CallError::ShuttingDown)) {
            return Ok(());
        }
        self.p.stats.failures.fetch_add(1, Ordering::Relaxed);
        let symbol = stream.map_or_else(|| "-".to_owned(), |i| self.streams[i].symbol.to_string());
        let error = match error {
            FetchError::Call(CallError::ShuttingDown) => return Ok(()),
            FetchError::Call(CallError::Bitget(e)) => e,
            FetchError::Call(e @ CallError::NoCredentials(_)) => {
                tracing::error!("{e}");
                return Ok(());
            }
            FetchError::Parse(e) => {
                tracing::warn!(symbol = %symbol, class = "malformed", "unreadable reply: {e}");
                return Ok(());
            }
        };
        match error.class() {
            ErrorClass::Auth => return Err(PollError::Fatal(error)),
            ErrorClass::BadSymbol | ErrorClass::Rejected => {
                if let Some(i) = stream {
                    let retry = self.p.config.bad_symbol_retry;
                    let s = &mut self.streams[i];
                    s.strikes += 1;
                    // "Does not exist" is more often a glitch than a delisting: the symbol
                    // is tried again on the next pass and parked only after repeated
                    // errors. Removed or offline is definitive at once.
                    let definitive = matches!(error.code(), Some("40309" | "41113"))
                        || s.strikes >= PARK_AFTER_STRIKES;
                    if !definitive {
                        tracing::warn!(symbol = %symbol, class = ?error.class(), code = %error.code().unwrap_or("-"), strikes = s.strikes, "bitget refused symbol {symbol}; trying again on the next pass, parking after {PARK_AFTER_STRIKES} in a row");
                        return Ok(());
                    }
                    let first = s.parked_until.is_none();
                    s.parked_until = Some(Instant::now() + retry);
                    s.awaiting = None;
                    if first {
                        self.p.stats.parked.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(symbol = %symbol, class = ?error.class(), retry_in_s = retry.as_secs(), "{error}; parked");
                } else {
                    tracing::warn!(class = ?error.class(), "{error}");
                }
            }
            class => {
                let mut retry_in_ms = 0;
                if let (Some(i), Mode::Live, false) =
                    (stream, self.p.config.mode, class == ErrorClass::RateLimited)
                {
                    // Backoff per symbol, without holding a task: the others keep going.
                    let backoff = self.p.client.backoff();
                    let s = &mut self.streams[i];
                    s.failures += 1;
                    let delay = backoff.delay(s.failures - 1, 0.5).unwrap_or(backoff.cap);
                    s.retry_at = Some(Instant::now() + delay);
                    retry_in_ms = delay.as_millis() as u64;
                }
                tracing::warn!(symbol = %symbol, class = ?class, retry_in_ms, "fetch failed: {error}");
            }
        }
        Ok(())
    }

    fn schedule_next_close(&mut self) {
        let now = self.server_now_ms();
        self.next_close = self
            .p
            .config
            .timeframes
            .iter()
            .map(|(_, g)| g.next_open(g.open_of(now)))
            .min();
    }

    fn start_close_round(&mut self, close_ms: u64) {
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
            let g = self.p.config.timeframes[self.streams[index].timeframe].1;
            if g.open_of(close_ms) != close_ms {
                continue;
            }
            let wanted = g.prev_open(close_ms);
            let s = &mut self.streams[index];
            if s.parked_until.is_some() || s.last_closed.is_some_and(|l| l >= wanted) {
                continue;
            }
            s.awaiting = Some((wanted, 0));
            total += 1;
            if !s.busy {
                self.queue.push_back(index);
            }
        }
        self.round = Some(CloseRound {
            close_ms,
            pending: total,
            total,
            started: self.instant_of(close_ms).min(Instant::now()),
        });
        if total == 0 {
            self.close_delivered_round();
        }
    }

    fn requeue_for_close(&mut self, index: usize) {
        let Some((wanted, tries)) = self.streams[index].awaiting else {
            return;
        };
        if tries + 1 >= MAX_CLOSE_RETRIES {
            tracing::warn!(symbol = %self.streams[index].symbol, wanted, "closed candle still not available; giving up for this close");
            self.streams[index].awaiting = None;
            self.close_delivered();
            return;
        }
        self.streams[index].awaiting = Some((wanted, tries + 1));
        self.queue.push_back(index);
    }

    fn close_delivered(&mut self) {
        if let Some(round) = &mut self.round {
            round.pending = round.pending.saturating_sub(1);
            if round.pending == 0 {
                self.close_delivered_round();
            }
        }
    }

    fn close_delivered_round(&mut self) {
        if let Some(round) = self.round.take() {
            let latency = Instant::now().duration_since(round.started);
            self.p.stats.close_rounds.fetch_add(1, Ordering::Relaxed);
            self.p
                .stats
                .last_close_latency_ms
                .store(latency.as_millis() as u64, Ordering::Relaxed);
            tracing::info!(
                close_ms = round.close_ms,
                symbols = round.total,
                latency_ms = latency.as_millis() as u64,
                "closed candles delivered"
            );
        }
    }

    async fn refresh_symbols(&mut self) {
        let now_ms = self.p.wall.now_ms();
        let fetched = discovery::fetch(
            &self.p.client,
            self.p.config.market,
            &self.p.config.discovery_cache,
            now_ms,
        )
        .await;
        let symbols = match fetched {
            Ok(symbols) => symbols,
            Err(error) => {
                tracing::warn!("contract list refresh failed, keeping the current list: {error}");
                return;
            }
        };
        let known: HashSet<&Symbol> = self.streams.iter().map(|s| &s.symbol).collect();
        let new: Vec<Symbol> = symbols
            .iter()
            .filter(|s| !known.contains(s))
            .cloned()
            .collect();
        for symbol in &new {
            for (timeframe, (name, granularity)) in self.p.config.timeframes.iter().enumerate() {
                self.streams.push(Stream::new(symbol.clone(), timeframe));
                self.queue.push_back(self.streams.len() - 1);
                self.p
                    .stats
                    .freshness
                    .watch(symbol.clone(), name, *granularity, now_ms);
            }
        }
        let added = new.len();
        // Delisted symbols are parked rather than removed, so stream indices stay valid.
        let listed: HashSet<&Symbol> = symbols.iter().collect();
        let far = Instant::now() + self.p.config.discovery_refresh;
        let mut removed = 0;
        for (index, stream) in self.streams.iter_mut().enumerate() {
            if !listed.contains(&stream.symbol) && stream.parked_until.is_none() {
                stream.parked_until = Some(far);
                self.p.stats.freshness.retire(index);
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

    /// Stops dispatching, gives in-flight fetches [`SHUTDOWN_GRACE`] to finish, then aborts
    /// whatever is left.
    async fn shutdown(&mut self) {
        let in_flight = self.inflight.len();
        if in_flight == 0 {
            return;
        }
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.inflight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.inflight.len(),
                "in-flight requests did not finish within 5 s; aborted"
            );
            self.inflight.shutdown().await;
        }
    }
}

/// The all-tickers endpoint and query for `market`.
pub fn tickers_request(market: Market) -> (&'static str, &'static [(&'static str, &'static str)]) {
    match market {
        Market::Futures => (
            "/api/v2/mix/market/tickers",
            &[("productType", "USDT-FUTURES")],
        ),
        Market::Spot => ("/api/v2/spot/market/tickers", &[]),
    }
}

/// The candles endpoint for `market`.
pub fn candles_path(market: Market) -> &'static str {
    match market {
        Market::Futures => "/api/v2/mix/market/candles",
        Market::Spot => "/api/v2/spot/market/candles",
    }
}

async fn fetch_candles(
    client: &Client,
    market: Market,
    symbol: &Symbol,
    timeframe: &str,
    granularity: Granularity,
    rows: u32,
) -> Result<Stamped<Vec<Candle>>, FetchError> {
    let limit = rows.to_string();
    let mut query = vec![
        ("symbol", symbol.as_str()),
        ("granularity", timeframe),
        ("limit", limit.as_str()),
    ];
    if market == Market::Futures {
        query.push(("productType", "USDT-FUTURES"));
    }
    // One attempt: the stream's own backoff, not a sleeping task, spaces the next one.
    let reply = client
        .get_once(candles_path(market), &query, Some(symbol.as_str()))
        .await
        .map_err(FetchError::Call)?;
    parse::candles(&reply.body, symbol, timeframe, granularity).map_err(|e| {
        tracing::warn!(symbol = %symbol, endpoint = candles_path(market), class = "malformed", "{e}");
        FetchError::Parse(e)
    })
}
