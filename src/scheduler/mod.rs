//! The polling loop: which request goes next, and what its reply means for consumers.
//!
//! [`core::Core`] decides, as pure functions of explicit time and replies; this module is
//! the thin async shell around it. One task owns the core; fetches run in a `JoinSet` it
//! owns and their results come back to it, so no state is shared and nothing runs
//! detached. Between replies the shell sleeps exactly until the core's next deadline. Two
//! modes:
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
//! Everything fetched goes into the [`Store`]; consumers subscribe there. Writing never
//! waits, so a slow consumer never slows polling down: it catches up from the store.

pub mod backfill;
pub mod config;
pub mod core;
pub mod stats;
pub mod tiers;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::core::{Action, Core, Now};
use crate::bitget::client::{Client, RequestError};
use crate::bitget::discovery;
use crate::bitget::error::BitgetError;
use crate::bitget::http::CallError;
use crate::bitget::parse::Tickers;
use crate::core::clock::{Clock, ServerClock};
use crate::core::market::{Candle, Stamped, Symbol, SymbolSelection};
use crate::core::timeframe::Timeframe;
use crate::limiter::recent::RecentRateLimits;
use crate::store::{SeriesKey, Store};
use config::PollConfig;
pub use stats::PollStats;

/// In-flight requests get this long to finish after a stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why polling stopped early.
#[derive(Debug, Error)]
pub enum PollError {
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    #[error("{0}; polling stopped")]
    Fatal(BitgetError),
}

enum Outcome {
    Candles {
        stream: usize,
        symbol: Symbol,
        timeframe: Timeframe,
        result: Result<Stamped<Vec<Candle>>, RequestError>,
    },
    Tickers(Result<(Stamped<Tickers>, Bytes), RequestError>),
    Symbols(Result<Vec<Symbol>, discovery::DiscoveryError>),
}

/// The poller: build it, then [`Poller::run`] it until `stop`.
#[derive(Debug)]
pub struct Poller {
    client: Client,
    config: PollConfig,
    wall: Arc<dyn Clock>,
    recent: Arc<RecentRateLimits>,
    store: Arc<Store>,
    stats: Arc<PollStats>,
    stop: CancellationToken,
    /// Also poll the series clients want (the store's interest).
    follow_interest: bool,
}

impl Poller {
    pub fn new(
        client: Client,
        config: PollConfig,
        wall: Arc<dyn Clock>,
        recent: Arc<RecentRateLimits>,
        store: Arc<Store>,
        stats: Arc<PollStats>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            client,
            config,
            wall,
            recent,
            store,
            stats,
            stop,
            follow_interest: false,
        }
    }

    /// The same poller, also polling the series clients want ([`Store::want`]) while they
    /// want them.
    #[must_use]
    pub fn following_interest(mut self) -> Self {
        self.follow_interest = true;
        self
    }

    pub fn stats(&self) -> Arc<PollStats> {
        Arc::clone(&self.stats)
    }

    /// Polls until the stop token fires, then lets in-flight requests finish for up to
    /// [`SHUTDOWN_GRACE`].
    ///
    /// # Errors
    /// Bitget refuses the credentials (nothing else stops polling: failures are logged with
    /// their symbol and retried later).
    pub async fn run(self, symbols: Vec<Symbol>) -> Result<(), PollError> {
        let started = Instant::now();
        let server = self.client.http().server_clock();
        let now = now(started, self.wall.as_ref(), &server);
        let core = Core::new(
            self.config.clone(),
            self.client.backoff(),
            Arc::clone(&self.stats),
            Arc::clone(&self.store),
            &symbols,
            now,
        );
        let mut shell = Shell {
            p: self,
            core,
            started,
            server,
            inflight: JoinSet::new(),
            interest_seen: 0,
            following: HashSet::new(),
        };
        let result = shell.run().await;
        shell.shutdown().await;
        result
    }
}

fn now(started: Instant, wall: &dyn Clock, server: &ServerClock) -> Now {
    Now {
        local_ms: Instant::now().duration_since(started).as_millis() as u64,
        server_ms: server.server_ms(wall.now_ms()),
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
        SymbolSelection::List(list) => Ok(list.clone()),
        SymbolSelection::All => Ok(discovery::discover(
            client,
            config.market,
            &config.discovery_cache,
            wall.now_ms(),
            config.discovery_refresh,
        )
        .await?),
    }
}

struct Shell {
    p: Poller,
    core: Core,
    started: Instant,
    /// The process's one server clock (the limiter's), read for every decision.
    server: Arc<ServerClock>,
    inflight: JoinSet<Outcome>,
    /// The version of the store's interest last followed, and the series taken from it.
    interest_seen: u64,
    following: HashSet<SeriesKey>,
}

impl Shell {
    fn now(&self) -> Now {
        now(self.started, self.p.wall.as_ref(), &self.server)
    }

    async fn run(&mut self) -> Result<(), PollError> {
        loop {
            if self.p.stop.is_cancelled() {
                return Ok(());
            }
            let now = self.now();
            for action in self.core.poll(now, self.p.recent.total()) {
                self.start(action);
            }
            let deadline =
                self.started + Duration::from_millis(self.core.next_deadline(self.now()));
            tokio::select! {
                () = self.p.stop.cancelled() => return Ok(()),
                Some(joined) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    match joined {
                        Ok(outcome) => self.handle(outcome)?,
                        Err(error) => tracing::error!("a fetch task failed: {error}"),
                    }
                }
                () = self.p.store.interest_changed(self.interest_seen), if self.p.follow_interest => {
                    self.follow_interest();
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Takes up the series clients want now and lets go of those they stopped wanting.
    fn follow_interest(&mut self) {
        let now = self.now();
        let (version, mut wanted) = self.p.store.wanted();
        // A series the store builds from a shorter one is not polled for a client.
        wanted.retain(|(key, _)| !self.p.store.builds(key.timeframe));
        self.interest_seen = version;
        let market = self.p.config.market;
        let mut current = HashSet::new();
        for (key, rows) in wanted {
            if key.market() != market {
                continue;
            }
            if !self.following.contains(&key) {
                self.core
                    .watch(key.symbol.clone(), key.timeframe, rows, now);
            }
            current.insert(key);
        }
        for key in self.following.difference(&current) {
            if self.core.unwatch(&key.symbol, key.timeframe) {
                tracing::info!(symbol = %key.symbol, timeframe = %key.timeframe, "no gateway client asked for a series for a while; not polling it any more");
            }
        }
        self.following = current;
    }

    fn start(&mut self, action: Action) {
        let client = self.p.client.clone();
        let market = self.p.config.market;
        match action {
            Action::Candles {
                stream,
                symbol,
                timeframe,
                rows,
                history,
            } => {
                self.inflight.spawn(async move {
                    let result = if history {
                        client.closed_candles(&symbol, timeframe, rows).await
                    } else {
                        client.candles(&symbol, timeframe, rows).await
                    };
                    Outcome::Candles {
                        stream,
                        symbol,
                        timeframe,
                        result,
                    }
                });
            }
            Action::Tickers => {
                self.inflight
                    .spawn(async move { Outcome::Tickers(client.tickers_raw(market).await) });
            }
            Action::RefreshSymbols => {
                let cache = self.p.config.discovery_cache.clone();
                let now_ms = self.p.wall.now_ms();
                self.inflight.spawn(async move {
                    Outcome::Symbols(discovery::fetch(&client, market, &cache, now_ms).await)
                });
            }
        }
    }

    fn handle(&mut self, outcome: Outcome) -> Result<(), PollError> {
        let now = self.now();
        let market = self.p.config.market;
        match outcome {
            Outcome::Tickers(Ok((stamped, raw))) => {
                self.core.tickers_done(now);
                for skipped in &stamped.data.skipped {
                    tracing::warn!(market = ?market, "skipped a ticker line: {skipped}");
                }
                self.p.store.write_tickers(
                    market,
                    stamped.server_time,
                    Arc::new(stamped.data.tickers),
                    Some(raw),
                );
                self.p
                    .stats
                    .tickers_delivered
                    .fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Tickers(Err(error)) => {
                self.core.tickers_done(now);
                self.failed(None, error, now)?;
            }
            Outcome::Candles {
                stream,
                symbol,
                timeframe,
                result: Ok(stamped),
            } => {
                self.core.candles_done(stream, stamped.data, now);
                self.p
                    .store
                    .mark_fetched(&SeriesKey::new(symbol, timeframe), stamped.server_time);
            }
            Outcome::Candles {
                stream,
                result: Err(error),
                ..
            } => self.failed(Some(stream), error, now)?,
            Outcome::Symbols(result) => {
                let symbols = result
                    .map_err(|error| {
                        tracing::warn!(
                            "contract list refresh failed, keeping the current list: {error}"
                        );
                    })
                    .ok();
                self.core.symbols_refreshed(symbols, now);
            }
        }
        Ok(())
    }

    fn failed(
        &mut self,
        stream: Option<usize>,
        error: RequestError,
        now: Now,
    ) -> Result<(), PollError> {
        let error = match error {
            RequestError::Call(CallError::Bitget(e)) => e,
            RequestError::Call(CallError::ShuttingDown) => {
                self.core.abandoned(stream, false, now);
                return Ok(());
            }
            RequestError::Call(e @ CallError::NoCredentials(_)) => {
                tracing::error!("{e}");
                self.core.abandoned(stream, true, now);
                return Ok(());
            }
            RequestError::Malformed { endpoint, source } => {
                let symbol = stream.map_or("-", |_| "");
                tracing::warn!(
                    endpoint,
                    symbol,
                    class = "malformed",
                    "unreadable reply: {source}"
                );
                self.core.abandoned(stream, true, now);
                return Ok(());
            }
        };
        self.core
            .failed(stream, &error, now)
            .map_err(|fatal| PollError::Fatal(fatal.0))
    }

    /// Stops dispatching, gives in-flight fetches [`SHUTDOWN_GRACE`] to finish, then aborts
    /// whatever is left.
    async fn shutdown(&mut self) {
        if self.inflight.is_empty() {
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
