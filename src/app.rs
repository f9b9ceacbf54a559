//! The application: every long-lived task of a run (the poller and its usage reporter, the
//! trading engine, the account poller, the event log, the metrics endpoint) started, owned
//! and stopped here, under one cancellation path.
//!
//! [`run`] is what the CLI calls after parsing and checking; tests call [`run_session`]
//! for the poller alone. Stopping is ordered: the shutdown token stops the poller, which
//! finishes its requests in flight; then the store is closed, so consumers read what is
//! left and end; the metrics endpoint goes last, so its final scrape sees final counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bitget::client::Client;
use crate::bitget::error::BitgetError;
use crate::bitget::http::BuildError;
use crate::bitget::ws::messages::Channel;
use crate::config::Config;
use crate::core::clock::Clock;
use crate::core::events::MarketEvent;
use crate::core::timeframe::Timeframe;
use crate::core::RATE_LOG;
use crate::core::TRADING_LOG;
use crate::feed::config::Source;
use crate::feed::{Feed, FeedParts, FeedSnapshot, FeedStats};
use crate::gateway::{Gateway, GatewayError, MeasuredClock, Parts};
use crate::limiter::recent::RecentRateLimits;
use crate::limiter::redis::{BackendConfig, RedisLimiter, ScopeNames};
use crate::limiter::{Category, CategoryCounters, EndpointCounters, LocalLimiter, RateLimiter};
use crate::scheduler::{resolve_symbols, PollError, PollStats, Poller};
use crate::store::disk::DiskStore;
use crate::store::{Store, Subscription};
use crate::strategy::StrategySpec;
use crate::telemetry::clients::ClientStats;
use crate::telemetry::metrics::{MetricsServer, MetricsSources, RequestLatency};
use crate::telemetry::{
    emit_feed_usage, endpoint_use, is_reported, report_usage, used_pct, UsageLine,
};
use crate::trading::live::poll_account;
use crate::trading::setup::{prepare, SetupError, Venue};
use crate::trading::TradingSummary;

/// Why a session ended in failure.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Client(#[from] BuildError),
    #[error(transparent)]
    Poll(#[from] PollError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The shared limiter cannot be set up.
    #[error("{0}")]
    Redis(String),
    /// The feed has no socket address to connect to.
    #[error("{0}")]
    Feed(String),
    /// The candle store's file cannot be used.
    #[error(transparent)]
    Disk(#[from] crate::store::disk::DiskError),
    /// Not one reply came back in the whole run.
    #[error("never reached the exchange at {host} in {:.1} s: {cause}; check [exchange] base_url (or --base-url), the network and any proxy", elapsed.as_secs_f64())]
    Unreachable {
        host: String,
        cause: String,
        elapsed: Duration,
    },
}

impl RunError {
    /// Exit code: 2 for what the operator must fix before starting, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Setup(e) => e.exit_code(),
            Self::Gateway(_) | Self::Redis(_) | Self::Feed(_) | Self::Disk(_) => 2,
            _ => 1,
        }
    }
}

/// What a session did, per category and overall.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub elapsed: Duration,
    pub categories: Vec<(Category, CategoryCounters)>,
    /// Every endpoint used, each with its own budget.
    pub endpoints: Vec<EndpointCounters>,
    pub symbols: usize,
    pub candle_replies: u64,
    /// New closed candles written into the store.
    pub closed_delivered: u64,
    pub tickers_delivered: u64,
    /// Forming candles and ticker snapshots consumers skipped, a newer one being there.
    pub superseded: u64,
    /// Closed candles a consumer missed by falling more than the store's journal behind.
    pub closed_missed: u64,
    pub failures: u64,
    pub parked: u64,
    pub close_rounds: u64,
    pub last_close_latency_ms: u64,
    /// Streams whose newest closed candle was over twice their timeframe old at the end.
    pub stale_at_exit: usize,
    /// The WebSocket feed's counters (all zero when it did not run).
    pub feed: FeedSnapshot,
    /// Holes between delivered closed candles, over every series.
    pub gaps: usize,
    /// Closed candles the store built from shorter ones (`derive`), how many of those
    /// were checked against the exchange's by the end (the checks read one at a time, so
    /// they may trail a boundary's burst), and how many differed.
    pub built: (u64, u64, u64),
}

impl RunSummary {
    /// The counters of `category` at the end of the session.
    pub fn counters(&self, category: Category) -> CategoryCounters {
        self.categories
            .iter()
            .find(|(c, _)| *c == category)
            .map_or_else(CategoryCounters::default, |(_, k)| *k)
    }

    /// The busiest endpoint of `category`, if it used any.
    fn busiest(&self, category: Category) -> Option<&EndpointCounters> {
        self.endpoints
            .iter()
            .filter(|e| e.category == category)
            .max_by_key(|e| e.counters.admitted)
    }

    /// How full `category` ran over the session: its busiest endpoint's requests per second
    /// as a fraction of that endpoint's limit (Bitget meters each endpoint on its own).
    pub fn utilization(&self, category: Category) -> f64 {
        self.busiest(category).map_or(0.0, |e| {
            used_pct(e.counters.admitted, e.counters.limit, self.elapsed) / 100.0
        })
    }

    /// The per-category table printed at exit.
    pub fn render(&self) -> String {
        let mut out = format!(
            "poller summary after {:.1} s, {} symbols:\n  {:<9} {:>9} {:>6} {:>7} {:>12}\n",
            self.elapsed.as_secs_f64(),
            self.symbols,
            "category",
            "requests",
            "429s",
            "limit",
            "utilization"
        );
        for (category, k) in &self.categories {
            if !is_reported(*category, k) {
                continue;
            }
            out.push_str(&format!(
                "  {:<9} {:>9} {:>6} {:>5}/s {:>11.1}%\n",
                category.name(),
                k.admitted,
                k.rate_limited,
                k.limit,
                100.0 * self.utilization(*category)
            ));
            for e in self.endpoints.iter().filter(|e| e.category == *category) {
                out.push_str(&format!(
                    "    {:<41} {:>9} {:>6} {:>5}/s {:>11.1}%\n",
                    crate::bitget::endpoints::path_of(e.endpoint),
                    e.counters.admitted,
                    e.counters.rate_limited,
                    e.counters.limit,
                    used_pct(e.counters.admitted, e.counters.limit, self.elapsed)
                ));
            }
        }
        out.push_str(&format!(
            "  closed candles stored {}, candle replies {}, tickers snapshots {}, superseded updates skipped by consumers {}, closed candles consumers missed {}, failed fetches {}, parked symbols {}, stale streams {}",
            self.closed_delivered,
            self.candle_replies,
            self.tickers_delivered,
            self.superseded,
            self.closed_missed,
            self.failures,
            self.parked,
            self.stale_at_exit
        ));
        let f = &self.feed;
        if f.is_active() {
            out.push_str(&format!(
                "\n  websocket feed: {} sockets ({} up at the end), {} channels, {} pushes, {} reconnects, error events {}; closed candles proven over the socket {}, confirmed by rest {} ({} reads, {} failed), built from shorter ones {} ({} checked against rest, {} differed), delivered after their close p50 {} ms p99 {} ms, rest fallback reads {}, bars the exchange lacked {}, parked channels {}, holes in delivered series {}",
                f.sockets,
                f.sockets_up,
                f.channels,
                f.pushes,
                f.reconnects,
                f.errors_text(),
                f.closed_ws,
                f.closed_rest,
                f.rest_reads,
                f.rest_failures,
                f.closed_built,
                f.build_checks,
                f.build_mismatches,
                f.close_lag_p50_ms.map_or("-".to_owned(), |v| v.to_string()),
                f.close_lag_p99_ms.map_or("-".to_owned(), |v| v.to_string()),
                f.fallback_reads,
                f.skipped,
                f.parked,
                self.gaps
            ));
        }
        if self.built.0 > 0 {
            out.push_str(&format!(
                "\n  candles built from shorter ones {}, checked against the exchange's {}, differed {}",
                self.built.0, self.built.1, self.built.2
            ));
        }
        if self.close_rounds > 0 {
            out.push_str(&format!(
                "\n  closed-mode rounds {}, last delivered {} ms after its close",
                self.close_rounds, self.last_close_latency_ms
            ));
        }
        out
    }
}

/// The shared pieces of a run: one limiter, one client and one store, so market data,
/// account reads and orders all draw from the same budgets and every consumer reads the
/// same data.
#[derive(Debug)]
pub struct Wiring {
    pub limiter: Arc<dyn RateLimiter>,
    /// Writes answers to Redis when the limiter is shared; stopped by [`Wiring::close`].
    writer: Option<(CancellationToken, std::sync::Mutex<Option<JoinHandle<()>>>)>,
    pub recent: Arc<RecentRateLimits>,
    pub client: Client,
    pub latency: Arc<RequestLatency>,
    pub store: Arc<Store>,
    /// The gateway's per-client counters (empty unless it runs).
    pub clients: Arc<ClientStats>,
    /// The poller's counters, tier and candle ages, for usage lines and metrics.
    pub stats: Arc<PollStats>,
    /// The WebSocket feed's counters (zero unless it runs).
    pub feed: Arc<FeedStats>,
    /// Built candles checked against the exchange's, and those that differed.
    pub built: Arc<BuiltChecks>,
}

/// Candles the store built from shorter ones, checked against the exchange's own.
#[derive(Debug, Default)]
pub struct BuiltChecks {
    pub seen: AtomicU64,
    pub checked: AtomicU64,
    pub differed: AtomicU64,
}

/// Reads one built closed candle in `every` from the exchange and compares it, until
/// `stop`. A difference is logged with both rows and counted.
async fn check_built(
    mut events: Subscription,
    client: Client,
    built: Vec<Timeframe>,
    every: u64,
    counts: Arc<BuiltChecks>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => event,
        };
        let Some(event) = event else { return };
        let MarketEvent::CandleClosed(mine) = event else {
            continue;
        };
        if !built.contains(&mine.timeframe) {
            continue;
        }
        let n = counts.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(every) {
            continue;
        }
        let close = mine.timeframe.next_open(mine.open_time);
        let theirs = tokio::select! {
            () = stop.cancelled() => return,
            read = client.closed_candles_before(&mine.symbol, mine.timeframe, close, 1, true) => read,
        };
        let theirs = match theirs {
            Ok(stamped) => stamped
                .data
                .into_iter()
                .find(|c| c.open_time == mine.open_time),
            Err(error) => {
                tracing::warn!(symbol = %mine.symbol, timeframe = %mine.timeframe, "a built candle could not be checked: {error}");
                continue;
            }
        };
        let Some(theirs) = theirs else {
            tracing::warn!(symbol = %mine.symbol, timeframe = %mine.timeframe, open = mine.open_time, "the exchange has no candle to check a built one against");
            continue;
        };
        counts.checked.fetch_add(1, Ordering::Relaxed);
        if !mine.same_values(&theirs) {
            counts.differed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: RATE_LOG, event = %"built_differs", symbol = %mine.symbol, timeframe = %mine.timeframe, open = mine.open_time, built = %mine.values_text(), exchange = %theirs.values_text(), "a candle built from shorter ones differs from the exchange's");
        }
    }
}

impl Wiring {
    /// Builds the limiter and the (unsigned) client for `config`, writing into `store`.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        config: &Config,
        wall: Arc<dyn Clock>,
        store: Arc<Store>,
        stop: CancellationToken,
    ) -> Result<Self, RunError> {
        let (limiter, writer): (Arc<dyn RateLimiter>, _) = match &config.limiter {
            BackendConfig::Local => (
                Arc::new(
                    LocalLimiter::new(&config.limits, config.client.backoff)
                        .with_wall(Arc::clone(&wall)),
                ),
                None,
            ),
            BackendConfig::Redis(redis) => {
                let names = ScopeNames {
                    egresses: config.client.egress_names(),
                    accounts: vec![account_name()],
                };
                let (limiter, writer) =
                    RedisLimiter::new(redis, &config.limits, config.client.backoff, names)
                        .map_err(|e| RunError::Redis(e.to_string()))?;
                tracing::info!(
                    redis = %crate::core::text::redact_url(&redis.url),
                    prefix = %redis.key_prefix,
                    fallback_share = redis.fallback_share,
                    "budgets shared through redis"
                );
                let writer_stop = CancellationToken::new();
                let task = tokio::spawn(writer.run(writer_stop.clone()));
                (
                    Arc::new(limiter.with_wall(Arc::clone(&wall))),
                    Some((writer_stop, std::sync::Mutex::new(Some(task)))),
                )
            }
        };
        let limiter_dyn = Arc::clone(&limiter);
        let recent = Arc::new(RecentRateLimits::default());
        let latency = Arc::new(RequestLatency::default());
        let client = Client::new(&config.client, limiter_dyn, Arc::clone(&recent), stop)?
            .with_wall(wall)
            .with_observer(latency.clone());
        Ok(Self {
            limiter,
            writer,
            recent,
            client,
            latency,
            store,
            clients: Arc::default(),
            stats: Arc::default(),
            feed: Arc::default(),
            built: Arc::default(),
        })
    }

    /// Stops the Redis answer writer once what is queued is written.
    pub async fn close(&self) {
        let Some((stop, task)) = &self.writer else {
            return;
        };
        stop.cancel();
        let task = task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// What the metrics endpoint reads at each scrape.
    pub fn metrics_sources(&self, wall: Arc<dyn Clock>) -> MetricsSources {
        MetricsSources {
            limiter: self.limiter.clone(),
            latency: Arc::clone(&self.latency),
            stats: Arc::clone(&self.stats),
            store: Arc::clone(&self.store),
            feed: Arc::clone(&self.feed),
            wall,
            gateway_clients: Some(Arc::clone(&self.clients)),
            egresses: Some(self.client.http().clone()),
        }
    }
}

/// Runs the poller alone against `config.client.base_url` until `stop` fires, writing into
/// `store` (closed at the end, so subscribers finish).
///
/// # Errors
/// The HTTP client cannot be built, symbols cannot be discovered, Bitget refuses the
/// credentials, or the exchange never answered.
pub async fn run_session(
    config: &Config,
    wall: Arc<dyn Clock>,
    store: Arc<Store>,
    stop: CancellationToken,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let wiring = Wiring::new(config, Arc::clone(&wall), Arc::clone(&store), stop.clone())?;
    let result = poll_session(config, &wiring, wall, started, stop, false).await;
    store.close();
    wiring.close().await;
    result
}

/// Polls with `wiring`'s limiter, client and store until `stop` fires; `started` is when
/// the run began, so the summary counts the whole run.
///
/// # Errors
/// Symbols cannot be discovered, Bitget refuses the credentials, or the exchange never
/// answered.
pub async fn poll_session(
    config: &Config,
    wiring: &Wiring,
    wall: Arc<dyn Clock>,
    started: Instant,
    stop: CancellationToken,
    follow_interest: bool,
) -> Result<RunSummary, RunError> {
    let limiter = &wiring.limiter;
    let limiter_dyn: Arc<dyn RateLimiter> = Arc::clone(limiter);
    let recent = Arc::clone(&wiring.recent);
    let client = wiring.client.clone();
    let stats = Arc::clone(&wiring.stats);
    let reporter_stop = CancellationToken::new();
    let reporter = tokio::spawn(report_usage(
        Arc::clone(&limiter_dyn),
        Arc::clone(&recent),
        Arc::clone(&stats),
        Arc::clone(&wiring.store),
        Arc::clone(&wiring.feed),
        Arc::clone(&wall),
        config.usage_interval,
        config.ascii_status,
        config.client.egress_names(),
        reporter_stop.clone(),
    ));
    let polled = async {
        let symbols = resolve_symbols(&client, &config.poll, wall.as_ref()).await?;
        let symbol_count = symbols.len();
        tracing::info!(
            symbols = symbol_count,
            mode = ?config.poll.mode,
            timeframes = ?config.poll.timeframes.iter().map(|t| t.rest()).collect::<Vec<_>>(),
            base_url = client.base_url(),
            "polling started"
        );
        // With `derive`, only the timeframes not made of a shorter configured one are
        // fetched; the store builds the others from them.
        let mut timeframes = config.poll.timeframes.clone();
        let mut checker = None;
        if config.poll.derive {
            let (fetched, built) = crate::core::derive::split(&timeframes);
            tracing::info!(
                fetched = ?fetched.iter().map(|t| t.rest()).collect::<Vec<_>>(),
                built = ?built.iter().map(|(c, f)| format!("{c} of {f}")).collect::<Vec<_>>(),
                "timeframes built from shorter ones"
            );
            if config.poll.derive_check_every > 0 && !built.is_empty() {
                let built: Vec<Timeframe> = built.iter().map(|(c, _)| *c).collect();
                checker = Some(tokio::spawn(check_built(
                    wiring.store.subscribe(),
                    client.clone(),
                    built.clone(),
                    config.poll.derive_check_every,
                    Arc::clone(&wiring.built),
                    stop.child_token(),
                )));
            }
            wiring.store.set_derived(built);
            timeframes = fetched;
        }
        // With the feed, live candles come over the socket and the poller reads only
        // tickers (and the instrument list); without it, the poller reads candles too.
        let feed = match config.feed.source {
            Source::Rest => None,
            Source::Ws | Source::Auto => {
                let ws_url = config.client.ws_url().map_err(RunError::Feed)?;
                let channels: Vec<Channel> = symbols
                    .iter()
                    .flat_map(|symbol| {
                        timeframes.iter().map(|timeframe| Channel {
                            symbol: symbol.clone(),
                            timeframe: *timeframe,
                        })
                    })
                    .collect();
                tracing::info!(
                    channels = channels.len(),
                    ws_url = %ws_url,
                    per_socket = config.feed.channels_per_socket,
                    "websocket feed started"
                );
                let feed = Feed::new(
                    FeedParts {
                        client: client.clone(),
                        limiter: Arc::clone(&limiter_dyn),
                        recent: Arc::clone(&recent),
                        store: Arc::clone(&wiring.store),
                        wall: Arc::clone(&wall),
                        config: config.feed.clone(),
                        ws_url,
                        stats: Arc::clone(&wiring.feed),
                    },
                    channels,
                );
                let feed = if follow_interest {
                    feed.following_interest()
                } else {
                    feed
                };
                let feed_stop = stop.child_token();
                Some((feed_stop.clone(), tokio::spawn(feed.run(feed_stop))))
            }
        };
        let mut poll = config.poll.clone();
        poll.timeframes = timeframes;
        if feed.is_some() {
            poll.timeframes.clear();
        }
        let poller = Poller::new(
            client.clone(),
            poll,
            Arc::clone(&wall),
            Arc::clone(&recent),
            Arc::clone(&wiring.store),
            Arc::clone(&stats),
            stop.clone(),
        );
        let poller = if follow_interest && feed.is_none() {
            poller.following_interest()
        } else {
            poller
        };
        let polled = poller.run(symbols).await;
        if let Some((feed_stop, feed)) = feed {
            feed_stop.cancel();
            let _ = feed.await;
        }
        if let Some(checker) = checker {
            checker.abort();
            let _ = checker.await;
        }
        polled?;
        Ok::<_, RunError>(symbol_count)
    }
    .await;
    reporter_stop.cancel();
    let _ = reporter.await;
    let elapsed = Instant::now().duration_since(started);
    let categories: Vec<_> = Category::ALL
        .into_iter()
        .map(|c| (c, limiter.counters(c)))
        .collect();
    let endpoints = limiter.endpoint_counters();
    let used = endpoint_use(&[], &endpoints, elapsed);
    // The final partial interval, so the log's totals add up to the summary.
    for (category, counters) in &categories {
        if is_reported(*category, counters) {
            UsageLine::between(
                *category,
                &CategoryCounters {
                    limit: counters.limit,
                    ..CategoryCounters::default()
                },
                counters,
                elapsed,
                recent.count(*category),
                stats.symbols_per_iteration.load(Ordering::Relaxed),
                stats.tier(),
            )
            .by_endpoints(used[category.index()].0, used[category.index()].1)
            .emit_summary(config.ascii_status);
        }
    }
    emit_feed_usage(
        "feed_session",
        &FeedSnapshot::default(),
        &wiring.feed.snapshot(),
        elapsed,
    );
    let http = client.http();
    // A push over the socket is a reply from the exchange too.
    if http.replies() == 0 && wiring.feed.pushes.load(Ordering::Relaxed) == 0 {
        return Err(RunError::Unreachable {
            host: http.host(),
            cause: http
                .last_transport_failure()
                .unwrap_or_else(|| "no request was sent".to_owned()),
            elapsed,
        });
    }
    let symbol_count = polled?;
    let store = wiring.store.stats();
    let feed = wiring.feed.snapshot();
    Ok(RunSummary {
        elapsed,
        categories,
        endpoints,
        symbols: symbol_count,
        candle_replies: stats.candle_replies.load(Ordering::Relaxed),
        closed_delivered: stats.closed_delivered.load(Ordering::Relaxed)
            + feed.closed_ws
            + feed.closed_rest,
        tickers_delivered: stats.tickers_delivered.load(Ordering::Relaxed),
        superseded: store.superseded_skipped.load(Ordering::Relaxed),
        closed_missed: store.closed_missed.load(Ordering::Relaxed),
        failures: stats.failures.load(Ordering::Relaxed),
        parked: stats.parked.load(Ordering::Relaxed),
        close_rounds: stats.close_rounds.load(Ordering::Relaxed),
        last_close_latency_ms: stats.last_close_latency_ms.load(Ordering::Relaxed),
        stale_at_exit: wiring
            .store
            .stale(limiter.server_clock().server_ms(wall.now_ms()))
            .len(),
        feed,
        gaps: wiring.store.gap_count(),
        built: (
            store.closed_built.load(Ordering::Relaxed),
            wiring.built.checked.load(Ordering::Relaxed),
            wiring.built.differed.load(Ordering::Relaxed),
        ),
    })
}

/// What a run needs besides its configuration; the CLI prepares these so that usage
/// errors (a bad strategy file, a taken metrics port) stop it before anything starts.
#[derive(Debug)]
pub struct RunOptions {
    pub venue: Venue,
    pub specs: Vec<StrategySpec>,
    pub metrics: Option<MetricsServer>,
    pub wall: Arc<dyn Clock>,
    /// Serve the gateway on this (already bound) listener.
    pub gateway: Option<TcpListener>,
}

/// How each part of a run ended.
#[derive(Debug)]
pub struct Report {
    pub poll: Result<RunSummary, RunError>,
    /// `None` when trading is off.
    pub trading: Option<Result<TradingSummary, BitgetError>>,
    /// `None` unless trading live.
    pub account: Option<Result<(), BitgetError>>,
    /// Trading could not start (the rest of the run was stopped).
    pub setup: Option<SetupError>,
}

/// How the trading side of a run ended.
#[derive(Debug)]
enum Trading {
    Ran {
        engine: Result<TradingSummary, BitgetError>,
        account: Option<Result<(), BitgetError>>,
    },
    SetupFailed(SetupError),
}

/// How long the exit waits for the candle store to write what is queued.
const DISK_CLOSE: Duration = Duration::from_secs(15);

/// Takes back the newest `per_series` closed candles of every series the file holds.
fn restore(store: &Store, disk: &DiskStore, per_series: usize) {
    let started = std::time::Instant::now();
    let series = match disk.series() {
        Ok(series) => series,
        Err(error) => {
            tracing::error!(%error, "the candle store's series could not be read; starting from the exchange");
            return;
        }
    };
    let mut rows = 0;
    for (key, _, _, _) in &series {
        match disk.latest(key, per_series) {
            Ok(candles) => rows += store.restore(key.market(), candles),
            Err(error) => {
                tracing::error!(%error, symbol = %key.symbol, timeframe = %key.timeframe, "a stored series could not be read; it is fetched again");
            }
        }
    }
    tracing::info!(
        path = %disk.path().display(),
        series = series.len(),
        rows,
        ms = started.elapsed().as_millis() as u64,
        "candles taken back from the store"
    );
}

/// Runs everything `config` asks for until `shutdown` fires (or a part fails for good:
/// refused credentials stop the whole run).
///
/// # Errors
/// The HTTP client cannot be built, or trading cannot start.
pub async fn run(
    config: &Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<Report, RunError> {
    let started = Instant::now();
    let RunOptions {
        venue,
        specs,
        metrics,
        wall,
        gateway,
    } = options;
    let store = Store::new(config.store);
    // Opened first: a file that is not ours stops the run before anything starts.
    let disk = match &config.disk {
        Some(disk) => Some(DiskStore::open(disk, Arc::clone(&wall))?),
        None => None,
    };
    let wiring = Wiring::new(
        config,
        Arc::clone(&wall),
        Arc::clone(&store),
        shutdown.clone(),
    )?;

    // Built before any task starts, so a refusal leaves nothing running; served below.
    let gateway = match gateway {
        Some(listener) => {
            let limiter: Arc<dyn RateLimiter> = Arc::clone(&wiring.limiter);
            let parts = Parts {
                client: wiring.client.clone(),
                limiter: Arc::clone(&limiter),
                store: Arc::clone(&store),
                clients: Arc::clone(&wiring.clients),
                clock: Arc::new(MeasuredClock {
                    clock: limiter.server_clock(),
                    wall: Arc::clone(&wall),
                }),
                poll_market: Some(config.poll.market),
                disk: disk.clone(),
            };
            Some((Gateway::new(config.gateway.clone(), parts)?, listener))
        }
        None => None,
    };

    // Served first: nothing on the start-up path waits for the exchange, so clients are
    // answered (or refused) from the moment the port is bound.
    let gateway_stop = CancellationToken::new();
    let gateway = gateway.map(|(gateway, listener)| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "gateway listening on http://{addr}");
        }
        tokio::spawn(gateway.serve(listener, gateway_stop.clone()))
    });
    // Stopped after everything else, so the last scrape sees the final counters.
    let metrics_stop = CancellationToken::new();
    let metrics = metrics.map(|server| {
        if let Some(addr) = server.local_addr() {
            tracing::info!(%addr, "prometheus metrics at http://{addr}/metrics");
        }
        let sources = wiring.metrics_sources(Arc::clone(&wall));
        tokio::spawn(server.serve(sources, metrics_stop.clone()))
    });

    // Consumers subscribe before the first candle is written.
    let log_task = tokio::spawn(log_events(store.subscribe()));
    // Trading gets ready beside the poller (its contract lookup and, live, the clock and
    // positions need the exchange); its subscription catches up from the store.
    let engine: Option<JoinHandle<Trading>> = config.trading.enabled.then(|| {
        let subscription = store.subscribe();
        let stop = shutdown.clone();
        let (trading, poll) = (config.trading.clone(), config.poll.clone());
        let client = wiring.client.clone();
        let wall = Arc::clone(&wall);
        tokio::spawn(async move {
            let prepared = tokio::select! {
                prepared = prepare(&trading, &poll, specs, &client, venue, wall) => prepared,
                () = stop.cancelled() => {
                    return Trading::Ran { engine: Ok(TradingSummary::default()), account: None };
                }
            };
            let (engine, signed) = match prepared {
                Ok(prepared) => prepared,
                Err(error) => {
                    stop.cancel();
                    return Trading::SetupFailed(error);
                }
            };
            let account = signed.map(|signed| {
                let stop = stop.clone();
                let (balances, positions) = (trading.balances_every, trading.positions_every);
                tokio::spawn(async move {
                    let result = poll_account(signed, balances, positions, stop.clone()).await;
                    if result.is_err() {
                        stop.cancel();
                    }
                    result
                })
            });
            let result = engine.run(subscription).await;
            if result.is_err() {
                stop.cancel();
            }
            let account = match account {
                Some(task) => task.await.ok(),
                None => None,
            };
            Trading::Ran {
                engine: result,
                account,
            }
        })
    });

    // What the file holds comes back before the first request: consumers (already
    // subscribed) warm up from it, and every series continues after its newest close.
    if let Some(disk) = &disk {
        // As many as a first read would fetch: what a strategy warms up on. Older ones
        // are read from the file when asked for.
        restore(&store, disk, config.poll.initial_candles as usize);
        store.set_write_through(Arc::clone(disk) as Arc<dyn crate::store::WriteThrough>);
    }
    let follow_interest = gateway.is_some();
    let poll = poll_session(
        config,
        &wiring,
        wall,
        started,
        shutdown.clone(),
        follow_interest,
    )
    .await;
    shutdown.cancel();
    gateway_stop.cancel();
    if let Some(task) = gateway {
        let _ = task.await;
    }
    store.close();
    if let Some(disk) = &disk {
        let pending = disk
            .stats()
            .pending
            .load(std::sync::atomic::Ordering::Relaxed);
        if !disk.close(DISK_CLOSE) {
            tracing::error!(path = %disk.path().display(), pending, "the candle store could not write everything before the exit");
        }
    }
    let (trading, account, setup) = match engine {
        Some(task) => match task.await {
            Ok(Trading::Ran { engine, account }) => (Some(engine), account, None),
            Ok(Trading::SetupFailed(error)) => (None, None, Some(error)),
            Err(_) => (None, None, None),
        },
        None => (None, None, None),
    };
    let _ = log_task.await;
    metrics_stop.cancel();
    if let Some(task) = metrics {
        let _ = task.await;
    }
    wiring.close().await;
    if let Some(Ok(summary)) = &trading {
        tracing::info!(target: TRADING_LOG, event = %"summary", "{}", summary.render().replace('\n', ";"));
    }
    Ok(Report {
        poll,
        trading,
        account,
        setup,
    })
}

/// The name account budgets are shared under in Redis: derived from the API key (never
/// the key itself), so every instance trading one account finds the same windows.
fn account_name() -> String {
    use sha2::Digest;
    match std::env::var(crate::bitget::credential::API_KEY_VAR) {
        Ok(key) if !key.is_empty() => {
            let digest = sha2::Sha256::digest(key.as_bytes());
            let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            format!("acct-{hex}")
        }
        _ => "public".to_owned(),
    }
}

/// A consumer that logs what arrives (at debug and trace level), beside any strategies.
async fn log_events(mut subscription: Subscription) {
    while let Some(event) = subscription.recv().await {
        match event {
            MarketEvent::CandleClosed(c) => {
                tracing::debug!(symbol = %c.symbol, timeframe = %c.timeframe, open_time = c.open_time, close = %c.close, "closed candle")
            }
            MarketEvent::CandleForming(c) => {
                tracing::trace!(symbol = %c.symbol, close = %c.close, "forming candle")
            }
            MarketEvent::Tickers { tickers, .. } => {
                tracing::debug!(count = tickers.len(), "tickers")
            }
        }
    }
}

/// What `backfill` is asked for.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub series: Vec<crate::store::SeriesKey>,
    /// Open times in `[since, until)`; `until` is capped at the current bar's open.
    pub since: u64,
    pub until: u64,
}

/// What a backfill did, per series: rows fetched, and the oldest open time held after it.
#[derive(Debug, Clone, Default)]
pub struct BackfillReport {
    pub done: crate::scheduler::backfill::Done,
    pub total_pages: u64,
    pub series: Vec<(crate::store::SeriesKey, u64, Option<u64>)>,
}

/// Why a backfill could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum BackfillFailure {
    #[error("{0} keeps candles in memory only ([store] path = \"\"); set a path to backfill into")]
    NoFile(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Disk(#[from] crate::store::disk::DiskError),
    #[error(transparent)]
    Backfill(#[from] crate::scheduler::backfill::BackfillError),
    #[error("bitget does not list {0}; check --symbols")]
    Unlisted(String),
    #[error("the exchange's list of symbols could not be read: {0}")]
    Listing(String),
}

/// Fetches what the candle file lacks of `request` through this config's limiter and
/// client, calling `progress(done, total_pages)` after each page; Ctrl-C (`stop`) ends it
/// with what was fetched written.
///
/// # Errors
/// No file is configured or it cannot be used, the client cannot be built, Bitget does not
/// know a symbol, or a page keeps failing.
pub async fn backfill(
    config: &Config,
    config_name: &str,
    request: &BackfillRequest,
    wall: Arc<dyn Clock>,
    stop: CancellationToken,
    mut progress: impl FnMut(&crate::scheduler::backfill::Done, u64),
) -> Result<BackfillReport, BackfillFailure> {
    use crate::scheduler::backfill;
    let disk_config = config
        .disk
        .as_ref()
        .ok_or_else(|| BackfillFailure::NoFile(config_name.to_owned()))?;
    let wiring = Wiring::new(
        config,
        Arc::clone(&wall),
        Store::new(config.store),
        stop.clone(),
    )?;
    // Every symbol checked against the exchange's list before the file is touched.
    let mut markets: Vec<crate::core::market::Market> =
        request.series.iter().map(|k| k.market()).collect();
    markets.dedup();
    for market in markets {
        let listed = wiring
            .client
            .instruments(market)
            .await
            .map_err(|e| BackfillFailure::Listing(e.to_string()))?;
        let unknown: Vec<String> = request
            .series
            .iter()
            .filter(|k| k.market() == market && !listed.iter().any(|i| i.symbol == k.symbol))
            .map(|k| k.symbol.to_string())
            .collect();
        if !unknown.is_empty() {
            wiring.close().await;
            return Err(BackfillFailure::Unlisted(unknown.join(", ")));
        }
    }
    let disk = DiskStore::open(disk_config, Arc::clone(&wall))?;
    let now = wall.now_ms();
    let mut pages = Vec::new();
    for key in &request.series {
        let until = request.until.min(key.timeframe.open_of(now));
        let missing = disk.missing(key, request.since, until)?;
        pages.extend(backfill::plan(
            key,
            &missing,
            crate::bitget::endpoints::MAX_HISTORY_CANDLE_ROWS,
        ));
    }
    let total = pages.len() as u64;
    progress(&backfill::Done::default(), total);
    let result = backfill::run(&wiring.client, &disk, &pages, &stop, |d| {
        progress(d, total);
    })
    .await;
    // Whatever was fetched is written before the exit, so the next run continues after it.
    let written = disk.close(DISK_CLOSE);
    wiring.close().await;
    let done = result?;
    if !written {
        tracing::error!(path = %disk.path().display(), "the candle store could not write everything fetched");
    }
    let mut series = Vec::new();
    for key in &request.series {
        let rows = disk.range(key, request.since, request.until, usize::MAX >> 1)?;
        series.push((
            key.clone(),
            rows.len() as u64,
            rows.first().map(|c| c.open_time),
        ));
    }
    Ok(BackfillReport {
        done,
        total_pages: total,
        series,
    })
}
