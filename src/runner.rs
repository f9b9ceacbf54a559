//! One polling session: limiter, client, usage reporter and poller wired together, run until
//! a stop, then summarised.
//!
//! The CLI owns signals, logging and the consumer; tests call [`run_session`] directly with
//! their own channel and stop token.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{BuildError, Client};
use crate::clock::Clock;
use crate::config::Config;
use crate::limiter::{Category, CategoryCounters, LocalLimiter, RateLimiter};
use crate::metrics::MetricsSources;
use crate::scheduler::{resolve_symbols, MarketEvent, PollError, PollStats, Poller};
use crate::telemetry::{is_reported, report_usage, RecentRateLimits, UsageLine};

/// Why a session ended in failure.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Client(#[from] BuildError),
    #[error(transparent)]
    Poll(#[from] PollError),
}

/// What a session did, per category and overall.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub elapsed: Duration,
    pub categories: Vec<(Category, CategoryCounters)>,
    pub symbols: usize,
    pub candle_replies: u64,
    pub closed_delivered: u64,
    pub forming_dropped: u64,
    pub tickers_delivered: u64,
    pub tickers_dropped: u64,
    pub consumer_wait_ms: u64,
    pub failures: u64,
    pub parked: u64,
    pub close_rounds: u64,
    pub last_close_latency_ms: u64,
    /// Streams whose newest closed candle was over twice their timeframe old at the end.
    pub stale_at_exit: usize,
}

impl RunSummary {
    /// The counters of `category` at the end of the session.
    pub fn counters(&self, category: Category) -> CategoryCounters {
        self.categories
            .iter()
            .find(|(c, _)| *c == category)
            .map_or_else(CategoryCounters::default, |(_, k)| *k)
    }

    /// Admitted requests of `category` per second over the session, as a fraction of its
    /// limit.
    pub fn utilization(&self, category: Category) -> f64 {
        let k = self.counters(category);
        if k.limit == 0 {
            return 0.0;
        }
        k.admitted as f64 / (f64::from(k.limit) * self.elapsed.as_secs_f64().max(1e-9))
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
        }
        out.push_str(&format!(
            "  closed candles delivered {}, candle replies {}, tickers snapshots {} (dropped {}), forming dropped {}, consumer wait {} ms, failed fetches {}, parked symbols {}, stale streams {}",
            self.closed_delivered,
            self.candle_replies,
            self.tickers_delivered,
            self.tickers_dropped,
            self.forming_dropped,
            self.consumer_wait_ms,
            self.failures,
            self.parked,
            self.stale_at_exit
        ));
        if self.close_rounds > 0 {
            out.push_str(&format!(
                "\n  closed-mode rounds {}, last delivered {} ms after its close",
                self.close_rounds, self.last_close_latency_ms
            ));
        }
        out
    }
}

/// The shared pieces of a session: one limiter and one client, so market data, account reads
/// and orders all draw from the same budgets.
#[derive(Debug)]
pub struct Wiring {
    pub limiter: Arc<LocalLimiter>,
    pub recent: Arc<RecentRateLimits>,
    pub client: Client,
    /// The poller's counters, tier and candle ages, for usage lines and metrics.
    pub stats: Arc<PollStats>,
}

impl Wiring {
    /// Builds the limiter and the (unsigned) client for `config`.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(config: &Config, stop: CancellationToken) -> Result<Self, RunError> {
        let limiter = Arc::new(LocalLimiter::new(&config.limits, config.client.backoff));
        let limiter_dyn: Arc<dyn RateLimiter> = limiter.clone();
        let recent = Arc::new(RecentRateLimits::default());
        let client = Client::new(&config.client, limiter_dyn, Arc::clone(&recent), stop)?;
        Ok(Self {
            limiter,
            recent,
            client,
            stats: Arc::default(),
        })
    }

    /// What the metrics endpoint reads at each scrape.
    pub fn metrics_sources(&self, wall: Arc<dyn Clock>) -> MetricsSources {
        MetricsSources {
            limiter: self.limiter.clone(),
            latency: self.client.latency(),
            stats: Arc::clone(&self.stats),
            wall,
        }
    }
}

/// Runs one session against `config.client.base_url` until `stop` fires, delivering events
/// to `events`.
///
/// # Errors
/// The HTTP client cannot be built, symbols cannot be discovered, or Bitget refuses the
/// credentials.
pub async fn run_session(
    config: &Config,
    wall: Arc<dyn Clock>,
    events: mpsc::Sender<MarketEvent>,
    stop: CancellationToken,
) -> Result<RunSummary, RunError> {
    let wiring = Wiring::new(config, stop.clone())?;
    poll_session(config, &wiring, wall, events, stop).await
}

/// Polls with `wiring`'s limiter and client until `stop` fires.
///
/// # Errors
/// Symbols cannot be discovered, or Bitget refuses the credentials.
pub async fn poll_session(
    config: &Config,
    wiring: &Wiring,
    wall: Arc<dyn Clock>,
    events: mpsc::Sender<MarketEvent>,
    stop: CancellationToken,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let limiter = &wiring.limiter;
    let limiter_dyn: Arc<dyn RateLimiter> = limiter.clone();
    let recent = Arc::clone(&wiring.recent);
    let client = wiring.client.clone();
    let symbols = resolve_symbols(&client, &config.poll, wall.as_ref()).await?;
    let symbol_count = symbols.len();
    tracing::info!(
        symbols = symbol_count,
        mode = ?config.poll.mode,
        timeframes = ?config.poll.timeframes.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        base_url = client.base_url(),
        "polling started"
    );
    let poller = Poller::new(
        client,
        config.poll.clone(),
        Arc::clone(&wall),
        Arc::clone(&recent),
        events,
        Arc::clone(&wiring.stats),
        stop.clone(),
    );
    let stats = poller.stats();
    let reporter_stop = CancellationToken::new();
    let reporter = tokio::spawn(report_usage(
        Arc::clone(&limiter_dyn),
        Arc::clone(&recent),
        Arc::clone(&stats),
        Arc::clone(&wall),
        config.usage_interval,
        config.ascii_status,
        reporter_stop.clone(),
    ));
    let result = poller.run(symbols).await;
    reporter_stop.cancel();
    let _ = reporter.await;
    let elapsed = Instant::now().duration_since(started);
    let categories: Vec<_> = Category::ALL
        .into_iter()
        .map(|c| (c, limiter.counters(c)))
        .collect();
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
            .emit_summary(config.ascii_status);
        }
    }
    result?;
    Ok(RunSummary {
        elapsed,
        categories,
        symbols: symbol_count,
        candle_replies: stats.candle_replies.load(Ordering::Relaxed),
        closed_delivered: stats.closed_delivered.load(Ordering::Relaxed),
        forming_dropped: stats.forming_dropped.load(Ordering::Relaxed),
        tickers_delivered: stats.tickers_delivered.load(Ordering::Relaxed),
        tickers_dropped: stats.tickers_dropped.load(Ordering::Relaxed),
        consumer_wait_ms: stats.consumer_wait_ms.load(Ordering::Relaxed),
        failures: stats.failures.load(Ordering::Relaxed),
        parked: stats.parked.load(Ordering::Relaxed),
        close_rounds: stats.close_rounds.load(Ordering::Relaxed),
        last_close_latency_ms: stats.last_close_latency_ms.load(Ordering::Relaxed),
        stale_at_exit: stats.freshness.stale(wall.now_ms()).len(),
    })
}
