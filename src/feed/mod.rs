//! Live candles over Bitget's WebSocket, with REST confirming what the socket cannot prove
//! and filling what it missed.
//!
//! REST polling caps freshness by the budget (one IP reads 20 candle replies a second, so
//! 1000 series are each seen every 50 s); the socket pushes every subscribed series about
//! once a second at no REST cost. The feed keeps every wanted series subscribed — the
//! configured symbols × timeframes and, when asked, what gateway clients want (the store's
//! interest) — on sockets of at most `[feed] channels_per_socket` channels, and writes what
//! it learns into the [`Store`] as the poller does.
//!
//! - [`bars`] decides, per series and as a pure function of pushes, REST answers and the
//!   server's clock, which bars are closed and final, and which must be read by REST;
//! - [`socket`] runs one socket: budgets, keep-alive, death, staggered reconnects;
//! - this module owns the sockets and the series, and reads by REST (through the limiter,
//!   `/history-candles` and `/candles` in turn) what [`bars`] asks for: closes the socket
//!   could not prove, holes after a reconnect, and — for a series whose socket has been
//!   down longer than `rest_fallback_after` — the latest rows, as a REST poller would.
//!   A close to confirm whose timeframe is exactly made of a shorter one carried for the
//!   same symbol is built from that one's delivered closes instead
//!   ([`crate::core::derive`]; `derive_closes`), so a quarter-hour boundary costs one read
//!   per symbol, not three; one in `derive_check_every` is read as well and compared.
//!
//! One task owns all of it; sockets and REST reads are tasks it owns, whose results come
//! back to it over bounded channels. Nothing here sleeps to pace: the limiter does.

pub mod bars;
pub mod config;
pub mod socket;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::bars::{Bars, RestAsk};
use self::config::FeedConfig;
use self::socket::{Command, Event, SocketParts};
use crate::bitget::client::{Client, RequestError};
use crate::bitget::error::ErrorClass;
use crate::bitget::http::CallError;
use crate::bitget::ws::messages::Channel;
use crate::bitget::ws::{codes, parse::Push};
use crate::core::clock::{Clock, ServerClock};
use crate::core::market::{Candle, Stamped, Symbol};
use crate::core::timeframe::Timeframe;
use crate::core::RATE_LOG;
use crate::limiter::recent::RecentRateLimits;
use crate::limiter::{Category, RateLimiter};
use crate::store::{SeriesKey, Store};

/// How often bars are checked against the clock and REST reads are started.
const TICK: Duration = Duration::from_millis(250);
/// Events from sockets waiting for the feed.
const EVENT_QUEUE: usize = 8_192;
/// A channel refused this many times in a row is parked.
const PARK_AFTER: u32 = 3;
/// How long a parked channel rests before it is tried again.
const PARK_FOR: Duration = Duration::from_secs(600);
/// A failed REST read of a series is tried again after this long.
const REST_RETRY: Duration = Duration::from_secs(1);

/// What the feed did, for usage lines, metrics and the exit summary.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Sockets planned, and up now.
    pub sockets: AtomicU64,
    pub sockets_up: AtomicU64,
    /// Channels carried.
    pub channels: AtomicU64,
    pub pushes: AtomicU64,
    pub rows: AtomicU64,
    /// Sockets that went down (each is reconnected).
    pub reconnects: AtomicU64,
    /// Closed bars delivered whose final row came over the socket, and those read by REST.
    pub closed_ws: AtomicU64,
    pub closed_rest: AtomicU64,
    /// Closed bars built from a shorter timeframe's closes instead of read by REST; of
    /// those built, how many were read by REST as well to compare, and how many differed.
    pub closed_built: AtomicU64,
    pub built: AtomicU64,
    pub build_checks: AtomicU64,
    pub build_mismatches: AtomicU64,
    /// REST reads confirming or filling bars, and those that failed.
    pub rest_reads: AtomicU64,
    pub rest_failures: AtomicU64,
    /// REST reads standing in for a socket that is down (fallback).
    pub fallback_reads: AtomicU64,
    /// Bars the exchange's REST answer did not have.
    pub skipped: AtomicU64,
    /// Channels parked after being refused again and again.
    pub parked: AtomicU64,
    /// Error events by code.
    pub errors: Mutex<BTreeMap<u32, u64>>,
    /// How long after its close each closed candle was delivered (server clock), in
    /// 100 ms buckets up to a minute (the last bucket holds everything later).
    pub close_lag: Mutex<Vec<u64>>,
    /// The longest any carried (not parked) series has gone without a refresh, as of the
    /// last check (4 a second), in ms.
    pub stalest_ms: AtomicU64,
}

/// Buckets of [`FeedStats::close_lag`].
const LAG_BUCKET_MS: u64 = 100;
const LAG_BUCKETS: usize = 601;

impl FeedStats {
    /// Error events by code so far.
    pub fn errors(&self) -> BTreeMap<u32, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn note_lag(&self, lag_ms: u64) {
        let mut lag = self.close_lag.lock().unwrap_or_else(|e| e.into_inner());
        if lag.is_empty() {
            lag.resize(LAG_BUCKETS, 0);
        }
        let bucket = ((lag_ms / LAG_BUCKET_MS) as usize).min(LAG_BUCKETS - 1);
        lag[bucket] += 1;
    }

    /// The delivery lag under which a `q` fraction of closed candles arrived, in ms (the
    /// top of its 100 ms bucket); `None` before any.
    fn lag_quantile(&self, q: f64) -> Option<u64> {
        let lag = self.close_lag.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = lag.iter().sum();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in lag.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some((i as u64 + 1) * LAG_BUCKET_MS);
            }
        }
        None
    }

    /// Every counter now.
    pub fn snapshot(&self) -> FeedSnapshot {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FeedSnapshot {
            sockets: n(&self.sockets),
            sockets_up: n(&self.sockets_up),
            channels: n(&self.channels),
            pushes: n(&self.pushes),
            rows: n(&self.rows),
            reconnects: n(&self.reconnects),
            closed_ws: n(&self.closed_ws),
            closed_rest: n(&self.closed_rest),
            closed_built: n(&self.closed_built),
            build_checks: n(&self.build_checks),
            build_mismatches: n(&self.build_mismatches),
            rest_reads: n(&self.rest_reads),
            rest_failures: n(&self.rest_failures),
            fallback_reads: n(&self.fallback_reads),
            skipped: n(&self.skipped),
            parked: n(&self.parked),
            errors: self.errors(),
            close_lag_p50_ms: self.lag_quantile(0.5),
            close_lag_p99_ms: self.lag_quantile(0.99),
            stalest_ms: n(&self.stalest_ms),
        }
    }
}

/// The feed's counters at one moment (see [`FeedStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedSnapshot {
    pub sockets: u64,
    pub sockets_up: u64,
    pub channels: u64,
    pub pushes: u64,
    pub rows: u64,
    pub reconnects: u64,
    pub closed_ws: u64,
    pub closed_rest: u64,
    pub closed_built: u64,
    pub build_checks: u64,
    pub build_mismatches: u64,
    pub rest_reads: u64,
    pub rest_failures: u64,
    pub fallback_reads: u64,
    pub skipped: u64,
    pub parked: u64,
    pub errors: BTreeMap<u32, u64>,
    /// Closed candles delivered after their close (server clock), median and 99th
    /// percentile, in ms (to 100 ms), over the run.
    pub close_lag_p50_ms: Option<u64>,
    pub close_lag_p99_ms: Option<u64>,
    /// The longest any carried series has gone without a refresh, now (ms).
    pub stalest_ms: u64,
}

impl FeedSnapshot {
    /// Whether the feed ran at all.
    pub fn is_active(&self) -> bool {
        self.channels > 0 || self.sockets > 0
    }

    /// Error events as `30006:2,30016:1`, or `-`.
    pub fn errors_text(&self) -> String {
        code_counts(&self.errors).unwrap_or_else(|| "-".to_owned())
    }
}

/// Counts by error code as `30006:2,30016:1` (the form the feed's log lines carry); `None`
/// when there are none.
pub fn code_counts(counts: &BTreeMap<u32, u64>) -> Option<String> {
    (!counts.is_empty()).then(|| {
        counts
            .iter()
            .map(|(code, n)| format!("{code}:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Everything the feed needs.
#[derive(Debug, Clone)]
pub struct FeedParts {
    pub client: Client,
    pub limiter: Arc<dyn RateLimiter>,
    pub recent: Arc<RecentRateLimits>,
    pub store: Arc<Store>,
    /// The wall clock the limiter's server clock is kept against.
    pub wall: Arc<dyn Clock>,
    pub config: FeedConfig,
    /// `ws://` or `wss://` address of the public socket.
    pub ws_url: String,
    pub stats: Arc<FeedStats>,
}

/// The feed: build it, then [`Feed::run`] it until `stop`.
#[derive(Debug)]
pub struct Feed {
    parts: FeedParts,
    channels: Vec<Channel>,
    follow_interest: bool,
}

#[derive(Debug)]
struct Series {
    bars: Bars,
    slot: usize,
    /// A REST read of it is in flight.
    reading: bool,
    /// No REST read before this (after a failure).
    rest_after: Option<Instant>,
    strikes: u32,
    parked_until: Option<Instant>,
    /// Configured, rather than asked for by a client.
    configured: bool,
    /// Server time it was first carried at.
    added_ms: u64,
    /// When its forming bar was last refreshed (a push, or a fallback read), or it was
    /// first carried.
    refreshed: Instant,
    /// The shorter timeframe of the same symbol its closes are built from, if any.
    fine: Option<Timeframe>,
    /// Bars at or before this open are read by REST even so (building them failed, or a
    /// check reads one).
    rest_through: Option<u64>,
    /// Built bars waiting to be delivered, counted apart.
    built: BTreeSet<u64>,
    /// Built bars also read by REST, to compare when REST's is delivered.
    checks: BTreeMap<u64, Candle>,
    /// A built bar differed from the exchange's: nothing more is built for it.
    build_off: bool,
}

#[derive(Debug)]
struct Slot {
    commands: mpsc::Sender<Command>,
    channels: usize,
    up: bool,
    down_since: Option<Instant>,
}

/// What a REST read was for.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// Bars [`Bars::rest_ask`] asked for.
    Confirm(RestAsk),
    /// The latest rows, for a series whose socket is down.
    Fallback,
}

type ReadDone = (Channel, Read, Result<Stamped<Vec<Candle>>, RequestError>);

impl Feed {
    /// A feed keeping `channels` (and nothing else) fresh.
    pub fn new(parts: FeedParts, channels: Vec<Channel>) -> Self {
        Self {
            parts,
            channels,
            follow_interest: false,
        }
    }

    /// The same feed, also keeping the series clients want ([`Store::want`]) while they
    /// want them.
    #[must_use]
    pub fn following_interest(mut self) -> Self {
        self.follow_interest = true;
        self
    }

    /// Runs until `stop`; every socket and read it started is ended before it returns.
    pub async fn run(self, stop: CancellationToken) {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let mut shell = Shell {
            socket_parts: SocketParts {
                url: self.parts.ws_url.clone(),
                egress: 0,
                config: self.parts.config.clone(),
                limiter: Arc::clone(&self.parts.limiter),
                events: events_tx,
                ids: Arc::new(AtomicU64::new(1)),
                stop: stop.child_token(),
            },
            server: self.parts.limiter.server_clock(),
            p: self.parts,
            series: HashMap::new(),
            by_symbol: HashMap::new(),
            slots: Vec::new(),
            sockets: JoinSet::new(),
            reads: JoinSet::new(),
            interest_seen: 0,
            throttles: 0,
            follow_interest: self.follow_interest,
            history_turn: false,
        };
        shell.add(self.channels, true);
        shell.run(events, &stop).await;
        shell.socket_parts.stop.cancel();
        shell.reads.shutdown().await;
        while shell.sockets.join_next().await.is_some() {}
    }
}

struct Shell {
    p: FeedParts,
    socket_parts: SocketParts,
    server: Arc<ServerClock>,
    series: HashMap<Channel, Series>,
    /// The timeframes carried for each symbol.
    by_symbol: HashMap<Symbol, Vec<Timeframe>>,
    slots: Vec<Slot>,
    sockets: JoinSet<()>,
    reads: JoinSet<ReadDone>,
    interest_seen: u64,
    /// Subscribe requests Bitget throttled (30006) so far: the backoff grows with them.
    throttles: u32,
    follow_interest: bool,
    /// The next confirmation goes to `/history-candles`.
    history_turn: bool,
}

fn key_of(channel: &Channel) -> SeriesKey {
    SeriesKey::new(channel.symbol.clone(), channel.timeframe)
}

impl Shell {
    fn server_ms(&self) -> u64 {
        self.server.server_ms(self.p.wall.now_ms())
    }

    async fn run(&mut self, mut events: mpsc::Receiver<Event>, stop: &CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some(event) = events.recv() => self.on_event(event),
                Some(done) = self.reads.join_next(), if !self.reads.is_empty() => {
                    if let Ok(done) = done {
                        self.on_read(done);
                    }
                }
                () = self.p.store.interest_changed(self.interest_seen), if self.follow_interest => {
                    self.follow();
                }
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    /// Starts carrying `channels` (those not carried yet).
    fn add(&mut self, channels: Vec<Channel>, configured: bool) {
        let now = self.server_ms();
        let mut by_slot: BTreeMap<usize, Vec<Channel>> = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut touched = HashSet::new();
        for channel in channels {
            if self.series.contains_key(&channel) || !seen.insert(channel.clone()) {
                continue;
            }
            touched.insert(channel.symbol.clone());
            let key = key_of(&channel);
            self.p.store.watch(&key, now);
            let slot = self.place();
            by_slot.entry(slot).or_default().push(channel.clone());
            self.series.insert(
                channel.clone(),
                Series {
                    bars: Bars::new(channel.timeframe, self.p.store.delivered_through(&key)),
                    slot,
                    reading: false,
                    rest_after: None,
                    strikes: 0,
                    parked_until: None,
                    configured,
                    added_ms: now,
                    refreshed: Instant::now(),
                    fine: None,
                    rest_through: None,
                    built: BTreeSet::new(),
                    checks: BTreeMap::new(),
                    build_off: false,
                },
            );
            self.by_symbol
                .entry(channel.symbol.clone())
                .or_default()
                .push(channel.timeframe);
        }
        self.relink(touched);
        self.subscribe(by_slot);
        self.p
            .stats
            .channels
            .store(self.series.len() as u64, Ordering::Relaxed);
    }

    /// Picks again, for every series of `symbols`, the shorter timeframe its closes are
    /// built from: the longest one carried that it is exactly made of (fewest parts).
    fn relink(&mut self, symbols: HashSet<Symbol>) {
        if !self.p.config.derive_closes {
            return;
        }
        for symbol in symbols {
            let timeframes = self.by_symbol.get(&symbol).cloned().unwrap_or_default();
            for &timeframe in &timeframes {
                let fine = timeframes
                    .iter()
                    .copied()
                    .filter(|fine| timeframe.derives_from(*fine))
                    .max_by_key(|fine| fine.granularity().nominal_minutes());
                let channel = Channel {
                    symbol: symbol.clone(),
                    timeframe,
                };
                if let Some(s) = self.series.get_mut(&channel) {
                    s.fine = fine;
                }
            }
        }
    }

    /// A slot with room for one more channel (a new socket when none has), counted taken.
    fn place(&mut self) -> usize {
        let per_socket = self.p.config.channels_per_socket;
        let slot = match self.slots.iter().position(|s| s.channels < per_socket) {
            Some(slot) => slot,
            None => self.new_slot(),
        };
        self.slots[slot].channels += 1;
        slot
    }

    /// Tells each socket to subscribe its new channels.
    fn subscribe(&mut self, by_slot: BTreeMap<usize, Vec<Channel>>) {
        for (slot, channels) in by_slot {
            let count = channels.len();
            if self.slots[slot]
                .commands
                .try_send(Command::Subscribe(channels))
                .is_err()
            {
                tracing::warn!(
                    slot,
                    count,
                    "a socket's command queue is full; channels not added"
                );
            }
        }
    }

    fn new_slot(&mut self) -> usize {
        let slot = self.slots.len();
        let (tx, rx) = mpsc::channel(64);
        self.slots.push(Slot {
            commands: tx,
            channels: 0,
            up: false,
            down_since: Some(Instant::now()),
        });
        let parts = self.socket_parts.clone();
        self.sockets.spawn(socket::run(slot, Vec::new(), rx, parts));
        self.p
            .stats
            .sockets
            .store(self.slots.len() as u64, Ordering::Relaxed);
        slot
    }

    /// Follows the store's interest: carries what clients want, drops what they stopped
    /// wanting (unless configured).
    fn follow(&mut self) {
        let (version, mut wanted) = self.p.store.wanted();
        // A series the store builds from a shorter one is not subscribed for a client.
        wanted.retain(|(key, _)| !self.p.store.builds(key.timeframe));
        self.interest_seen = version;
        let wanted: Vec<Channel> = wanted
            .into_iter()
            .map(|(key, _)| Channel {
                symbol: key.symbol,
                timeframe: key.timeframe,
            })
            .collect();
        let keep: HashSet<&Channel> = wanted.iter().collect();
        let gone: Vec<Channel> = self
            .series
            .iter()
            .filter(|(c, s)| !s.configured && !keep.contains(c))
            .map(|(c, _)| c.clone())
            .collect();
        let mut by_slot: BTreeMap<usize, Vec<Channel>> = BTreeMap::new();
        let mut touched = HashSet::new();
        for channel in gone {
            if let Some(s) = self.series.remove(&channel) {
                if let Some(list) = self.by_symbol.get_mut(&channel.symbol) {
                    list.retain(|t| *t != channel.timeframe);
                }
                touched.insert(channel.symbol.clone());
                self.p.store.retire(&key_of(&channel));
                self.slots[s.slot].channels = self.slots[s.slot].channels.saturating_sub(1);
                by_slot.entry(s.slot).or_default().push(channel);
            }
        }
        for (slot, channels) in by_slot {
            let _ = self.slots[slot].commands.try_send(Command::Drop(channels));
        }
        self.relink(touched);
        self.add(wanted, false);
    }

    fn on_event(&mut self, event: Event) {
        let stats = &self.p.stats;
        match event {
            Event::Up { slot } => {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.up = true;
                    s.down_since = None;
                }
                stats.sockets_up.fetch_add(1, Ordering::Relaxed);
            }
            Event::Down {
                slot,
                reason,
                rate_limited,
            } => {
                if let Some(s) = self.slots.get_mut(slot) {
                    if s.up {
                        stats.sockets_up.fetch_sub(1, Ordering::Relaxed);
                    }
                    s.up = false;
                    s.down_since.get_or_insert_with(Instant::now);
                }
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                if rate_limited {
                    self.p.recent.record(Category::Market);
                }
                tracing::warn!(target: RATE_LOG, event = %"ws_down", slot, rate_limited, "websocket down, reconnecting: {reason}");
            }
            Event::Push { push, .. } => self.on_push(push),
            Event::Error { slot, code, msg } => {
                *stats
                    .errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(code)
                    .or_default() += 1;
                if codes::is_rate_limit(code) {
                    let recent = self.p.recent.record(Category::Market);
                    tracing::warn!(target: RATE_LOG, event = %"ws_rate_limited", slot, code, rate_limited_60s = recent, "bitget's websocket says too many: {msg}");
                } else {
                    tracing::warn!(slot, code, "bitget's websocket refused a request: {msg}");
                }
            }
            Event::Refused {
                channels,
                throttled,
                ..
            } => {
                if throttled {
                    self.throttles = self.throttles.saturating_add(1);
                }
                for channel in channels {
                    self.refused(&channel, throttled);
                }
            }
        }
    }

    fn refused(&mut self, channel: &Channel, throttled: bool) {
        let Some(s) = self.series.get_mut(channel) else {
            return;
        };
        self.slots[s.slot].channels = self.slots[s.slot].channels.saturating_sub(1);
        if throttled {
            // Not the channel's fault: no strike, and the reconnect backoff, doubling with
            // the throttles seen so far up to its maximum, with jitter so the channels of
            // many sockets do not come back together.
            let config = &self.p.config;
            let base = config
                .reconnect_min
                .saturating_mul(1 << self.throttles.clamp(1, 16).saturating_sub(1))
                .min(config.reconnect_max);
            s.parked_until =
                Some(Instant::now() + base / 2 + base.mul_f64(rand::random::<f64>() / 2.0));
            return;
        }
        s.strikes += 1;
        if s.strikes >= PARK_AFTER {
            if s.parked_until.is_none() {
                self.p.stats.parked.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(symbol = %channel.symbol, channel = channel.timeframe.channel(), "bitget refused this channel {PARK_AFTER} times; parked, tried again in {} s", PARK_FOR.as_secs());
            }
            s.parked_until = Some(Instant::now() + PARK_FOR);
        } else {
            // Tried again after a backoff with jitter (1-2 s, then 2-4 s), on whichever
            // socket has room then.
            let base = Duration::from_secs(1 << s.strikes.min(6).saturating_sub(1));
            let jitter = rand::random::<f64>() * base.as_secs_f64();
            s.parked_until = Some(Instant::now() + base + Duration::from_secs_f64(jitter));
        }
    }

    fn on_push(&mut self, push: Push) {
        let stats = &self.p.stats;
        stats.pushes.fetch_add(1, Ordering::Relaxed);
        stats
            .rows
            .fetch_add(push.rows.len() as u64, Ordering::Relaxed);
        let Some(s) = self.series.get_mut(&push.channel) else {
            return; // dropped meanwhile
        };
        s.strikes = 0;
        s.refreshed = Instant::now();
        let confirm = self.take_rows(&push.channel, &push.rows, push.ts, false);
        // A close the socket could not prove is read at once when a worker is free.
        if confirm && self.reads.len() < self.p.config.rest_workers {
            if let Some(read) = self.read_wanted(&push.channel, Instant::now(), self.server_ms()) {
                self.start_read(push.channel, read);
            }
        }
    }

    /// Rows of `channel` as the exchange had them at server time `ts`: over the socket, or in
    /// a REST reply (`by_rest`, which is a push stamped with its `requestTime`). Returns
    /// whether bars now wait for a REST read and none is in flight.
    fn take_rows(&mut self, channel: &Channel, rows: &[Candle], ts: u64, by_rest: bool) -> bool {
        let Some(s) = self.series.get_mut(channel) else {
            return false;
        };
        s.bars.push(rows, ts);
        let confirm = s.bars.unconfirmed() > 0 && !s.reading;
        let key = key_of(channel);
        if by_rest {
            self.p.store.mark_fetched(&key, ts);
        } else {
            self.p.store.mark_streamed(&key, ts);
        }
        if let Some(forming) = s.bars.forming() {
            self.p
                .store
                .write_forming(channel.timeframe.market(), forming.clone());
        }
        self.deliver(channel, by_rest);
        confirm
    }

    fn deliver(&mut self, channel: &Channel, by_rest: bool) {
        let now = self.server_ms();
        let Some(s) = self.series.get_mut(channel) else {
            return;
        };
        let market = channel.timeframe.market();
        let stats = &self.p.stats;
        let mut delivered = false;
        for candle in s.bars.ready() {
            // Bars that closed before the series was carried (its first snapshot's
            // history) were never late; every later one, hole fills included, counts.
            let close = candle.timeframe.next_open(candle.open_time);
            let counts = close >= s.added_ms;
            let built = s.built.remove(&candle.open_time);
            if let Some(mine) = s.checks.remove(&candle.open_time) {
                stats.build_checks.fetch_add(1, Ordering::Relaxed);
                if !mine.same_values(&candle) {
                    stats.build_mismatches.fetch_add(1, Ordering::Relaxed);
                    s.build_off = true;
                    tracing::warn!(symbol = %channel.symbol, timeframe = %channel.timeframe, open = candle.open_time, built = %mine.values_text(), exchange = %candle.values_text(), "a close built from shorter candles differs from the exchange's; this series' closes are read by REST from now on");
                }
            }
            if self.p.store.write_closed(market, candle) {
                delivered = true;
                if counts {
                    stats.note_lag(now.saturating_sub(close));
                }
                let counter = if built {
                    &stats.closed_built
                } else if by_rest {
                    &stats.closed_rest
                } else {
                    &stats.closed_ws
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        if delivered {
            self.build_from(channel);
        }
    }

    /// Builds the waiting closes of the series made of `fine` from its delivered closes,
    /// as far as they reach, and delivers them.
    fn build_from(&mut self, fine: &Channel) {
        let Some(through) = self.series.get(fine).and_then(|s| s.bars.delivered()) else {
            return;
        };
        let key = key_of(fine);
        let coarse: Vec<Channel> = self
            .by_symbol
            .get(&fine.symbol)
            .into_iter()
            .flatten()
            .map(|&timeframe| Channel {
                symbol: fine.symbol.clone(),
                timeframe,
            })
            .filter(|c| {
                self.series
                    .get(c)
                    .is_some_and(|s| s.fine == Some(fine.timeframe) && !s.build_off)
            })
            .collect();
        let check_every = self.p.config.derive_check_every;
        for channel in coarse {
            let Some(s) = self.series.get_mut(&channel) else {
                continue;
            };
            let mut settled = false;
            let waiting: Vec<u64> = s.bars.waiting().collect();
            for open in waiting {
                let close = channel.timeframe.next_open(open);
                if fine.timeframe.prev_open(close) > through {
                    break; // its last part is not delivered yet
                }
                if s.rest_through.is_some_and(|t| t >= open) {
                    continue;
                }
                let whole = channel
                    .timeframe
                    .granularity()
                    .parts_of(fine.timeframe.granularity(), open)
                    .unwrap_or(0) as usize;
                let parts = self.p.store.range(&key, open, close, whole);
                match crate::core::derive::aggregate(channel.timeframe, open, &parts) {
                    Some(candle) if candle.closed => {
                        let n = self.p.stats.built.fetch_add(1, Ordering::Relaxed) + 1;
                        if check_every > 0 && n.is_multiple_of(check_every) {
                            // This one is read by REST too, and compared when delivered.
                            s.checks.insert(open, candle);
                            s.rest_through = s.rest_through.max(Some(open));
                        } else if s.bars.settle(candle) {
                            s.built.insert(open);
                            settled = true;
                        }
                    }
                    // A part missing from what is held (a hole, or longer than the store
                    // keeps): REST reads it.
                    _ => s.rest_through = s.rest_through.max(Some(open)),
                }
            }
            if settled {
                self.deliver(&channel, false);
            }
        }
    }

    fn on_tick(&mut self) {
        let now_ms = self.server_ms();
        let grace = self.p.config.close_grace.as_millis() as u64;
        let now = Instant::now();
        let channels: Vec<Channel> = self.series.keys().cloned().collect();
        let mut retry = Vec::new();
        let mut stalest = Duration::ZERO;
        for channel in channels {
            let Some(s) = self.series.get_mut(&channel) else {
                continue;
            };
            if let Some(until) = s.parked_until {
                if until <= now {
                    s.parked_until = None;
                    retry.push(channel.clone());
                }
                continue;
            }
            stalest = stalest.max(now.duration_since(s.refreshed));
            s.bars.tick(now_ms, grace);
            self.deliver(&channel, false);
        }
        self.p
            .stats
            .stalest_ms
            .store(stalest.as_millis() as u64, Ordering::Relaxed);
        self.start_reads(now);
        // Refused channels whose rest is over: subscribed again on a socket with room.
        let mut by_slot: BTreeMap<usize, Vec<Channel>> = BTreeMap::new();
        for channel in retry {
            let slot = self.place();
            if let Some(s) = self.series.get_mut(&channel) {
                s.slot = slot;
            }
            by_slot.entry(slot).or_default().push(channel);
        }
        self.subscribe(by_slot);
    }

    /// What REST read `channel` needs now, if any: bars to confirm or fill, else the latest
    /// rows while its socket has been down too long.
    fn read_wanted(&self, channel: &Channel, now: Instant, now_ms: u64) -> Option<Read> {
        let s = self.series.get(channel)?;
        if s.reading || s.parked_until.is_some() || s.rest_after.is_some_and(|t| t > now) {
            return None;
        }
        if let Some(ask) = s
            .bars
            .rest_ask(crate::bitget::endpoints::MAX_HISTORY_CANDLE_ROWS)
        {
            // A close built from a shorter timeframe is left to it while that one may
            // still deliver its parts: until the fallback time past the close.
            let building = s.fine.is_some()
                && !s.build_off
                && s.rest_through.is_none_or(|t| t < ask.first_open)
                && now_ms
                    < channel.timeframe.next_open(ask.first_open)
                        + self.p.config.rest_fallback_after.as_millis() as u64;
            return (!building).then_some(Read::Confirm(ask));
        }
        let down_long = self.slots[s.slot]
            .down_since
            .is_some_and(|since| now.duration_since(since) >= self.p.config.rest_fallback_after)
            && self.p.config.source == config::Source::Auto;
        down_long.then_some(Read::Fallback)
    }

    /// Starts REST reads while workers are free: the oldest bars first, so a close waits
    /// no longer than the ones before it.
    fn start_reads(&mut self, now: Instant) {
        let free = self.p.config.rest_workers.saturating_sub(self.reads.len());
        if free == 0 {
            return;
        }
        let now_ms = self.server_ms();
        let mut wanted: Vec<(u64, Channel, Read)> = self
            .series
            .keys()
            .filter_map(|c| {
                let read = self.read_wanted(c, now, now_ms)?;
                let oldest = match read {
                    Read::Confirm(ask) => ask.first_open,
                    Read::Fallback => u64::MAX,
                };
                Some((oldest, c.clone(), read))
            })
            .collect();
        wanted.sort_by_key(|(oldest, _, _)| *oldest);
        for (_, channel, read) in wanted.into_iter().take(free) {
            self.start_read(channel, read);
        }
    }

    fn start_read(&mut self, channel: Channel, read: Read) {
        let Some(s) = self.series.get_mut(&channel) else {
            return;
        };
        s.reading = true;
        // Confirmations take turns between the two candle endpoints, metered apart.
        self.history_turn = !self.history_turn;
        let history = self.history_turn;
        let client = self.p.client.clone();
        let stats = Arc::clone(&self.p.stats);
        self.reads.spawn(async move {
            let result = match read {
                Read::Confirm(ask) => {
                    stats.rest_reads.fetch_add(1, Ordering::Relaxed);
                    client
                        .closed_candles_before(
                            &channel.symbol,
                            channel.timeframe,
                            channel.timeframe.next_open(ask.last_open),
                            ask.rows,
                            history,
                        )
                        .await
                }
                Read::Fallback => {
                    stats.fallback_reads.fetch_add(1, Ordering::Relaxed);
                    client.candles(&channel.symbol, channel.timeframe, 3).await
                }
            };
            (channel, read, result)
        });
    }

    fn on_read(&mut self, done: ReadDone) {
        self.read_done(done);
        self.start_reads(Instant::now());
    }

    fn read_done(&mut self, (channel, read, result): ReadDone) {
        let Some(s) = self.series.get_mut(&channel) else {
            return;
        };
        s.reading = false;
        match result {
            Ok(stamped) => {
                s.rest_after = None;
                match read {
                    Read::Confirm(ask) => {
                        let before = s.bars.skipped();
                        s.bars.rest(ask, &stamped.data, stamped.server_time);
                        let skipped = s.bars.skipped() - before;
                        if skipped > 0 {
                            self.p.stats.skipped.fetch_add(skipped, Ordering::Relaxed);
                            tracing::warn!(symbol = %channel.symbol, timeframe = %channel.timeframe, skipped, "bitget has no candle for bars its later ones surround; left as a gap");
                        }
                        self.deliver(&channel, true);
                    }
                    Read::Fallback => {
                        s.refreshed = Instant::now();
                        self.take_rows(&channel, &stamped.data, stamped.server_time, true);
                    }
                }
            }
            Err(error) => {
                self.p.stats.rest_failures.fetch_add(1, Ordering::Relaxed);
                s.rest_after = Some(Instant::now() + REST_RETRY);
                let class = match &error {
                    RequestError::Call(CallError::Bitget(e)) => Some(e.class()),
                    _ => None,
                };
                if class == Some(ErrorClass::BadSymbol) {
                    s.parked_until = Some(Instant::now() + PARK_FOR);
                    self.p.stats.parked.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(symbol = %channel.symbol, "bitget refused the symbol's candles; parked: {error}");
                } else {
                    tracing::warn!(symbol = %channel.symbol, timeframe = %channel.timeframe, "a candle read for the feed failed: {error}");
                }
            }
        }
    }
}
