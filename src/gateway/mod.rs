//! The gateway: a local Bitget REST endpoint every bot on the machine points at, so that
//! every request the machine sends passes one limiter.
//!
//! - Every request is made canonical before anything else looks at it
//!   ([`endpoints::canonical_path`]): the budget, the cache and the relay see the path that
//!   will be sent, and nothing outside Bitget's `/api/v2/` and `/api/v3/` is relayed. A
//!   query Bitget might read otherwise than the cache would (a repeated key, a symbol not in
//!   Bitget's spelling) is forwarded, never answered from the store.
//! - Market data is answered from the store when it can be answered exactly (candles,
//!   tickers), or from memory (instrument lists for `instruments_max_age`, the server
//!   time from the measured clock offset). A candle series of a listed symbol that the
//!   store or Bitget answered for a client is wanted in the store's interest, which the
//!   poller follows (at most `max_watched_series`), until no client asked for it for
//!   `series_idle`.
//! - A miss goes to Bitget through the limiter; identical public requests in flight are
//!   merged into one. Everything else (signed requests, orders, unknown paths) is
//!   forwarded unchanged: method, path, query, body and headers (Bitget signs timestamp,
//!   method, path, query and body, not the host), and the reply comes back unchanged.
//! - A request the budget cannot admit within `queue_max_ms` (less for a signed one, whose
//!   `ACCESS-TIMESTAMP` Bitget refuses after 30 s) is answered by the gateway itself: HTTP
//!   429 with Bitget's body and `Retry-After`. The exchange never sees it.
//! - Every reply says where it came from (`X-Cache: hit|ws|disk|miss|merged|forwarded|refused`;
//!   `ws` is a hit on a series the WebSocket feed keeps fresh),
//!   how old it is (`Age`, `X-Cache-Age-Ms`) and the budget left as the gateway sees it
//!   (`x-mbx-used-remain-limit`).
//! - Bounded per client ([`crate::core::serve`]): a connection cap with the idlest
//!   connection closed to make room, header, body and idle timeouts, a shutdown that ends
//!   within the grace; refusals summarised per client and interval, never a line each.
//! - Safe by default: loopback unless a token is configured; request bodies capped; no
//!   header is ever logged, so `ACCESS-SIGN`, `ACCESS-KEY` and `ACCESS-PASSPHRASE` cannot
//!   reach a log.

pub mod cache;
pub mod config;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use serde_json::value::RawValue;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::{GatewayConfig, CLIENT_HEADER, TOKEN_HEADER};
use crate::bitget::client::Client;
use crate::bitget::endpoints::{self, route_of, REMAIN_HEADER};
use crate::bitget::http::{CallError, ForwardError, RawReply, RawRequest};
use crate::bitget::{parse, reply};
use crate::core::clock::{Clock, ServerClock};
use crate::core::market::{Market, Symbol};
use crate::core::serve::{raw_reply, serve, ServeCounters};
use crate::core::RATE_LOG;
use crate::limiter::{Category, RateLimiter};
use crate::store::{Store, Want};
use crate::telemetry::clients::{ClientCounters, ClientStats, Served};

/// How often the gateway reads the server clock and budget from the limiter.
const VIEW_REFRESH: Duration = Duration::from_millis(10);
/// Candle answers kept written; past this the table starts over.
const MAX_RENDERED: usize = 4096;
/// How often the instrument list is read again.
const LISTED_REFRESH: Duration = Duration::from_secs(600);
/// How soon it is read again when it is missing or lacks a symbol Bitget answered for.
const LISTED_RETRY: Duration = Duration::from_secs(30);
/// Longest request line (path and query) answered; Bitget's are far shorter.
const MAX_URI_BYTES: usize = 8 << 10;

/// A market's listed symbols and when they were read.
type Listed = (Instant, Arc<HashSet<Symbol>>);

/// The server clock and the budget left, as last read.
#[derive(Debug, Clone, Copy)]
struct View {
    read_at: Instant,
    server_ms: u64,
    measured: bool,
    available: [u32; 4],
}

impl View {
    fn stale() -> Self {
        Self {
            read_at: Instant::now() - VIEW_REFRESH * 2,
            server_ms: 0,
            measured: false,
            available: [0; 4],
        }
    }

    fn server_now(&self) -> u64 {
        self.server_ms + self.read_at.elapsed().as_millis() as u64
    }
}

/// Signed requests are held at most this long after their `ACCESS-TIMESTAMP`: Bitget
/// refuses a timestamp 30 s old, and the request still has to travel.
const SIGNED_MAX_AGE: Duration = Duration::from_secs(25);
/// Gateway-only headers, never passed to Bitget.
const OWN_HEADERS: &[&str] = &[TOKEN_HEADER, CLIENT_HEADER];
/// Hop-by-hop and framing headers: each side of the gateway sets its own.
const HOP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "accept-encoding",
    "content-encoding",
];

/// Why the gateway could not start.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr} for the gateway: {source}; pick another [gateway] listen or --listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gateway listens on {0}, which other hosts can reach, and would relay signed requests from anyone who can connect; put a token in the environment variable [gateway] token_env names (BITGET_GATEWAY_TOKEN by default; clients send it in the X-Gateway-Token header), or listen on 127.0.0.1")]
    OpenWithoutToken(SocketAddr),
}

/// Whether `config` may listen where it says: loopback, or anywhere with a token.
///
/// # Errors
/// Another host could connect and no token is set.
pub fn check_exposure(config: &GatewayConfig) -> Result<(), GatewayError> {
    if config.listen.ip().is_loopback() || config.token.is_some() {
        Ok(())
    } else {
        Err(GatewayError::OpenWithoutToken(config.listen))
    }
}

/// One finished upstream request, shared by every client that asked for it.
type Flight = Arc<Result<RawReply, ForwardError>>;

/// A candle answer as written: the series version and period it holds for, and the data.
type Rendered = (u64, u64, Arc<str>);

/// Upstream requests in flight by key; each client waiting on one subscribes to it.
type Flights = HashMap<String, Arc<watch::Sender<Option<Flight>>>>;

/// Where the server's clock is, for `requestTime` of replies the gateway makes itself.
pub trait ServerNow: Send + Sync + std::fmt::Debug {
    /// Bitget's clock now (Unix ms), and whether it was measured rather than assumed.
    fn server_now_ms(&self) -> (u64, bool);
}

/// What the gateway needs from the rest of the application.
#[derive(Debug)]
pub struct Parts {
    pub client: Client,
    pub limiter: Arc<dyn RateLimiter>,
    pub store: Arc<Store>,
    pub clock: Arc<dyn ServerNow>,
    /// Where the per-client counters go (metrics and the rate log read them too).
    pub clients: Arc<ClientStats>,
    /// The market the poller polls, and where to ask it for a series; `None`: the
    /// gateway only serves what is polled anyway.
    pub poll_market: Option<Market>,
    /// The candle file, for closed ranges memory no longer holds.
    pub disk: Option<Arc<crate::store::disk::DiskStore>>,
}

/// The gateway's state, shared by every connection.
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    parts: Parts,
    clients: Arc<ClientStats>,
    /// Upstream requests in flight, by method-less key (public GETs only); clients
    /// subscribe to one to share its reply.
    flights: Arc<Mutex<Flights>>,
    /// Each market's listed symbols, and when read.
    listed: Mutex<HashMap<Market, Listed>>,
    /// Bitget answered candles of a symbol the list lacks: read the list again soon.
    unlisted_answered: AtomicBool,
    /// Series not watched since the last sweep because the cap was reached.
    unwatched: AtomicU64,
    /// What the accept loop did to connections.
    connections: Arc<ServeCounters>,
    /// Instrument lists and their age.
    instruments: Mutex<HashMap<String, (Instant, RawReply)>>,
    /// Candle `data` already written, by query, with the series version and period it
    /// was written for: a series that did not change is not written again.
    rendered: Mutex<HashMap<String, Rendered>>,
    /// The server clock and the budget left, read from the limiter at most every
    /// [`VIEW_REFRESH`]: at thousands of replies a second, once per reply would cost more
    /// than the reply.
    view: Mutex<View>,
    tasks: TaskTracker,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: still usable after a panic elsewhere; poisoning would stop the gateway.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gateway {
    /// # Errors
    /// The listen address is not loopback and no token is set.
    pub fn new(config: GatewayConfig, parts: Parts) -> Result<Arc<Self>, GatewayError> {
        check_exposure(&config)?;
        let clients = Arc::clone(&parts.clients);
        Ok(Arc::new(Self {
            config,
            parts,
            clients,
            flights: Arc::default(),
            listed: Mutex::default(),
            unlisted_answered: AtomicBool::new(false),
            unwatched: AtomicU64::new(0),
            connections: Arc::default(),
            instruments: Mutex::default(),
            rendered: Mutex::default(),
            view: Mutex::new(View::stale()),
            tasks: TaskTracker::new(),
        }))
    }

    /// Per-client counters.
    pub fn clients(&self) -> &ClientStats {
        &self.clients
    }

    /// Binds the configured address now, so a taken port is reported before anything runs.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(&self) -> Result<TcpListener, GatewayError> {
        let addr = self.config.listen;
        TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })
    }

    /// Serves clients on `listener` until `stop`; requests in progress then get the
    /// shutdown grace, and connections without one are closed at once.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        let sweeper = tokio::spawn(Arc::clone(&self).sweep(stop.clone()));
        let lists = tokio::spawn(Arc::clone(&self).refresh_listed(stop.clone()));
        let router = Router::new().fallback(handle).with_state(Arc::clone(&self));
        let refusal = raw_reply(
            503,
            "Service Unavailable",
            &cache::error_body(
                "503",
                "the gateway has [gateway] max_connections connections open, each with a request in progress; retry in a moment, or raise max_connections",
                self.server_now(),
            ),
        );
        serve(
            listener,
            router,
            self.config.serve,
            refusal,
            Arc::clone(&self.connections),
            stop.clone(),
        )
        .await;
        stop.cancel();
        let _ = sweeper.await;
        let _ = lists.await;
        self.tasks.close();
        if tokio::time::timeout(self.config.serve.grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "gateway requests to bitget still running after the shutdown grace; abandoned"
            );
        }
    }

    /// Keeps the instrument list of every market the gateway serves, so that only listed
    /// symbols become watched series: read at start (in the background: nothing on the
    /// start-up path waits for the exchange), then every [`LISTED_REFRESH`], or sooner when
    /// Bitget answered candles for a symbol the list lacks (a new listing).
    async fn refresh_listed(self: Arc<Self>, stop: CancellationToken) {
        let Some(market) = self.parts.poll_market else {
            return;
        };
        let mut tick = tokio::time::interval(LISTED_RETRY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let due = {
                let listed = lock(&self.listed);
                match listed.get(&market) {
                    None => true,
                    Some((at, _)) => {
                        at.elapsed() >= LISTED_REFRESH
                            || (self
                                .unlisted_answered
                                .swap(false, std::sync::atomic::Ordering::Relaxed)
                                && at.elapsed() >= LISTED_RETRY)
                    }
                }
            };
            if !due {
                continue;
            }
            let fetched = tokio::select! {
                () = stop.cancelled() => return,
                fetched = self.parts.client.instruments(market) => fetched,
            };
            match fetched {
                Ok(list) => {
                    let symbols: HashSet<Symbol> = list
                        .into_iter()
                        .filter(|i| i.is_live())
                        .map(|i| i.symbol)
                        .collect();
                    lock(&self.listed).insert(market, (Instant::now(), Arc::new(symbols)));
                }
                Err(error) => {
                    tracing::debug!("the gateway could not read the instrument list: {error}");
                }
            }
        }
    }

    /// Every ten seconds: series nobody asked for within `series_idle` are handed back, and
    /// the per-client counters go to the rate log.
    async fn sweep(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut logged: HashMap<String, ClientCounters> = HashMap::new();
        let mut shed = [0u64; 4];
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            // The store tells the poller, which lets them go.
            self.parts.store.drop_idle(
                self.server_now(),
                self.config.series_idle.as_millis() as u64,
            );
            // One line per client that did something since the last, with what it did in
            // the interval (`counts=interval`): its refusals are counted here, not logged one
            // by one (one client could bury the rate log). The last interval is written at
            // the stop, so a client seen once still counts.
            for (name, c) in self.clients.snapshot() {
                let before = logged.get(&name).copied().unwrap_or_default();
                if before == c {
                    continue;
                }
                let d = c.since(&before);
                if d.refused > 0 {
                    tracing::warn!(target: RATE_LOG, event = %"gateway_client", client = %name, counts = %"interval", requests = d.requests, hits = d.hits, misses = d.misses, merged = d.merged, forwarded = d.forwarded, queued = d.queued, refused = d.refused, "gateway client (refused: answered by the gateway itself, nothing sent to bitget)");
                } else {
                    tracing::info!(target: RATE_LOG, event = %"gateway_client", client = %name, counts = %"interval", requests = d.requests, hits = d.hits, misses = d.misses, merged = d.merged, forwarded = d.forwarded, queued = d.queued, refused = d.refused, "gateway client");
                }
                logged.insert(name, c);
            }
            let now_shed = self.connections.shed();
            if now_shed != shed {
                let d: Vec<u64> = now_shed.iter().zip(shed).map(|(a, b)| a - b).collect();
                tracing::warn!(target: RATE_LOG, event = %"gateway_connections", evicted = d[0], refused = d[1], header_timeouts = d[2], idle_timeouts = d[3], max_connections = self.config.serve.max_connections, "gateway connections closed or refused since the last line");
                shed = now_shed;
            }
            let unwatched = self.unwatched.swap(0, std::sync::atomic::Ordering::Relaxed);
            if unwatched > 0 {
                tracing::warn!(target: RATE_LOG, event = %"gateway_unwatched", series = unwatched, watched = self.parts.store.wanted().1.len(), max_watched_series = self.config.max_watched_series, "series clients asked for that are not polled ahead: the [gateway] max_watched_series cap is reached (they are still served, by forwarding)");
            }
            if stopping {
                break;
            }
        }
    }

    fn view(&self) -> View {
        let mut view = lock(&self.view);
        if view.read_at.elapsed() >= VIEW_REFRESH {
            let (server_ms, measured) = self.parts.clock.server_now_ms();
            *view = View {
                read_at: Instant::now(),
                server_ms,
                measured,
                available: Category::ALL.map(|c| self.parts.limiter.counters(c).available),
            };
        }
        *view
    }

    fn server_now(&self) -> u64 {
        self.view().server_now()
    }

    /// Answers one client request.
    async fn answer(&self, client: &str, request: Incoming) -> Response {
        let path = request.path.as_str();
        let signed = request.headers.contains_key("access-sign");
        if request.method == Method::GET && !signed {
            if let Some(response) = self.answer_held(client, &request) {
                return response;
            }
            return self.merged(client, request).await;
        }
        let max_wait = if signed {
            signed_wait(&request.headers, self.config.queue_max, self.server_now())
        } else {
            self.config.queue_max
        };
        let category = route_of(path).category;
        let result = self
            .parts
            .client
            .http()
            .forward_within(request.into_raw(), Some(max_wait))
            .await;
        self.reply(client, category, result, Served::Forwarded)
    }

    /// A public GET the store or memory can answer, if it is one.
    fn answer_held(&self, client: &str, request: &Incoming) -> Option<Response> {
        let (path, query) = (request.path.as_str(), request.query.as_str());
        let now = self.server_now();
        if let Some(market) = endpoints::market_of(path, endpoints::candles) {
            let q = cache::candle_query(market, query)?;
            let max_age = self.config.candle_max_age.as_millis() as u64;
            let period = q.timeframe.open_of(now);
            let held = self.parts.store.read(&cache::series(&q), |series| {
                let series = series?;
                let streamed = series.streamed;
                let age = series.fetched_at.map(|t| now.saturating_sub(t));
                if age.is_none_or(|a| a > max_age) && series.forming.is_some() {
                    // The forming candle may be part of the answer: judge afresh.
                } else if let Some((version, at, data)) = lock(&self.rendered).get(query) {
                    if *version == series.version && *at == period {
                        return Some((Arc::clone(data), age, streamed));
                    }
                }
                let data: Arc<str> = cache::candle_data(&q, series, now, max_age)?.into();
                let mut rendered = lock(&self.rendered);
                if rendered.len() >= MAX_RENDERED {
                    rendered.clear();
                }
                rendered.insert(
                    query.to_owned(),
                    (series.version, period, Arc::clone(&data)),
                );
                Some((data, age, streamed))
            });
            let Some((data, age, streamed)) = held else {
                return self.answer_stored(client, &q, now);
            };
            // The store held it: the symbol is real, the series worth keeping fresh.
            self.note_interest(&q);
            let body = cache::envelope(now, &data);
            // Kept fresh by the WebSocket rather than by a REST read: said as `ws`.
            let source = if streamed { "ws" } else { "hit" };
            return Some(self.hit_from(client, Category::Market, body, age, source));
        }
        let one_ticker_path = path == endpoints::MIX_TICKER.path;
        let tickers_market = endpoints::market_of(path, endpoints::tickers)
            .or(one_ticker_path.then_some(Market::Futures));
        if let Some(market) = tickers_market {
            let symbol = cache::ticker_query(market, query)?;
            if one_ticker_path && symbol.is_none() {
                return None;
            }
            let snapshot = self.parts.store.tickers(market)?;
            let age = now.saturating_sub(snapshot.server_time);
            if age > self.config.ticker_max_age.as_millis() as u64 {
                return None;
            }
            let raw = snapshot.raw?;
            let data = match symbol {
                None => std::str::from_utf8(&raw).ok()?.to_owned(),
                Some(symbol) => format!("[{}]", one_ticker(&raw, &symbol)?),
            };
            return Some(self.hit(
                client,
                Category::Market,
                cache::envelope(now, &data),
                Some(age),
            ));
        }
        if path == endpoints::SERVER_TIME.path && query.is_empty() {
            let view = self.view();
            if !view.measured {
                return None;
            }
            let now = view.server_now();
            let data = format!(r#"{{"serverTime":"{now}"}}"#);
            return Some(self.hit(
                client,
                Category::Market,
                cache::envelope(now, &data),
                Some(0),
            ));
        }
        if endpoints::market_of(path, endpoints::instruments).is_some() {
            let key = format!("{path}?{query}");
            let held = lock(&self.instruments).get(&key).cloned();
            let (at, reply) = held?;
            if at.elapsed() > self.config.instruments_max_age {
                return None;
            }
            let age = at.elapsed().as_millis() as u64;
            self.clients.count(client, Served::Hit);
            return Some(self.respond(Category::Market, &reply, "hit", Some(age)));
        }
        None
    }

    /// A client's request for `q`'s series was answered by the store or by Bitget: have
    /// the poller keep it fresh, if its symbol is listed and the cap allows.
    fn note_interest(&self, q: &cache::CandleQuery) {
        if self.parts.poll_market != Some(q.timeframe.market()) {
            return;
        }
        let listed = lock(&self.listed)
            .get(&q.timeframe.market())
            .is_some_and(|(_, symbols)| symbols.contains(&q.symbol));
        if !listed {
            // Answered but not listed (yet): a new listing, or a list not read yet.
            self.unlisted_answered
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let now = self.server_now();
        let cap = self.config.max_watched_series;
        if self.parts.store.want(&cache::series(q), q.limit, now, cap) == Want::Full {
            self.unwatched
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A candle request for closed bars only, answered from the candle file when it holds
    /// every one (what memory no longer keeps: a backtest's download, say).
    fn answer_stored(&self, client: &str, q: &cache::CandleQuery, now: u64) -> Option<Response> {
        let disk = self.parts.disk.as_ref()?;
        let opens = cache::wanted_opens(q, now);
        let (first, last) = (*opens.first()?, *opens.last()?);
        // At most a reply's rows (1000): a few milliseconds, read in place.
        let stored = disk
            .range(
                &cache::series(q),
                first,
                last.saturating_add(1),
                opens.len(),
            )
            .ok()?;
        let data = cache::stored_data(q, &stored, now)?;
        Some(self.hit_from(
            client,
            Category::Market,
            cache::envelope(now, &data),
            None,
            "disk",
        ))
    }

    fn hit(&self, client: &str, category: Category, body: String, age: Option<u64>) -> Response {
        self.hit_from(client, category, body, age, "hit")
    }

    /// A reply from what is held, saying where that came from (`hit`, or `ws`).
    fn hit_from(
        &self,
        client: &str,
        category: Category,
        body: String,
        age: Option<u64>,
        source: &str,
    ) -> Response {
        self.clients.count(client, Served::Hit);
        let reply = RawReply {
            status: 200,
            headers: json_headers(),
            body: Bytes::from(body),
            waited: Duration::ZERO,
            judged: None,
        };
        self.respond(category, &reply, source, age)
    }

    /// A public GET from Bitget, merged with any identical one in flight.
    async fn merged(&self, client: &str, request: Incoming) -> Response {
        let key = format!("{}?{}", request.path, request.query);
        let category = route_of(&request.path).category;
        let instruments = endpoints::market_of(&request.path, endpoints::instruments).is_some();
        let (mut receiver, merged) = {
            let mut flights = lock(&self.flights);
            match flights.get(&key) {
                Some(sender) => (sender.subscribe(), true),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    let sender = Arc::new(sender);
                    flights.insert(key.clone(), Arc::clone(&sender));
                    self.fly(key.clone(), request.into_raw(), sender);
                    (receiver, false)
                }
            }
        };
        let flight = loop {
            if let Some(flight) = receiver.borrow_and_update().clone() {
                break flight;
            }
            if receiver.changed().await.is_err() {
                // The flight ended without an answer: it was abandoned at shutdown.
                break Arc::new(Err(ForwardError::Call(CallError::ShuttingDown)));
            }
        };
        if let (Ok(reply), false) = (flight.as_ref(), merged) {
            if reply.status == 200 {
                if instruments {
                    lock(&self.instruments).insert(key.clone(), (Instant::now(), reply.clone()));
                }
                self.store_answer(&key, reply);
            }
        }
        let served = if merged { Served::Merged } else { Served::Miss };
        self.reply(client, category, flight.as_ref().clone(), served)
    }

    /// Keeps the candles (or all tickers) of a successful reply in the store for readers, so the
    /// next request for the series is answered from there (subscribers still see only what
    /// the poller fetched).
    fn store_answer(&self, key: &str, reply: &RawReply) {
        let Some((path, query)) = key.split_once('?') else {
            return;
        };
        // Judged once, by the relay, with the operator's rate-limit codes: only a success
        // is kept, and only its `data` is parsed.
        let Some(judged) = &reply.judged else {
            return;
        };
        let (Ok(()), Some(range)) = (&judged.verdict, judged.data.clone()) else {
            return;
        };
        let data = || parse::Input::data(&reply.body[range.clone()], judged.server_ms);
        let all_tickers = endpoints::market_of(path, endpoints::tickers)
            .filter(|&m| cache::ticker_query(m, query) == Some(None));
        if let Some(market) = all_tickers {
            if let Ok(tickers) = parse::tickers(data()) {
                self.parts.store.absorb_tickers(
                    market,
                    tickers.server_time,
                    Arc::new(tickers.data.tickers),
                    Some(reply.body.slice(range)),
                );
            }
            return;
        }
        let Some(market) = endpoints::market_of(path, endpoints::candles) else {
            return;
        };
        let Some(q) = cache::candle_query(market, query) else {
            return;
        };
        let parsed = parse::candles(data(), &q.symbol, q.timeframe);
        let Ok(stamped) = parsed else {
            return;
        };
        self.parts
            .store
            .absorb(market, stamped.data, stamped.server_time);
        self.note_interest(&q);
    }

    /// Runs one upstream request for every client waiting on `sender`, owned by the
    /// gateway so that the first client hanging up does not cancel it for the others; if
    /// they all hang up before it is admitted, it is never sent.
    fn fly(&self, key: String, raw: RawRequest, sender: Arc<watch::Sender<Option<Flight>>>) {
        let http = self.parts.client.http().clone();
        let max_wait = self.config.queue_max;
        let flights = Arc::clone(&self.flights);
        self.tasks.spawn(async move {
            tokio::select! {
                result = http.forward_within(raw, Some(max_wait)) => {
                    // Out of the table first: a request arriving from now on is a new one.
                    lock(&flights).remove(&key);
                    let _ = sender.send(Some(Arc::new(result)));
                }
                () = sender.closed() => {
                    lock(&flights).remove(&key);
                }
            }
        });
    }

    fn reply(
        &self,
        client: &str,
        category: Category,
        result: Result<RawReply, ForwardError>,
        served: Served,
    ) -> Response {
        let now = self.server_now();
        match result {
            Ok(reply) => {
                self.clients.count(client, served);
                if reply.waited >= Duration::from_millis(1) {
                    self.clients.count(client, Served::Queued);
                }
                let label = match served {
                    Served::Merged => "merged",
                    Served::Miss => "miss",
                    _ => "forwarded",
                };
                self.respond(category, &reply, label, Some(0))
            }
            Err(ForwardError::NotAdmitted { category, waited }) => {
                // Counted per client, logged by the sweep: one line per client and interval.
                self.clients.count(client, Served::Refused);
                let mut headers = json_headers();
                headers.insert("retry-after", HeaderValue::from_static("1"));
                let reply = RawReply {
                    status: 429,
                    headers,
                    body: Bytes::from(cache::too_many_requests(now)),
                    waited,
                    judged: None,
                };
                self.respond(category, &reply, "refused", None)
            }
            Err(ForwardError::Call(error)) => {
                self.clients.count(client, Served::Forwarded);
                let (status, msg) = match &error {
                    CallError::ShuttingDown => (503, "the gateway is shutting down".to_owned()),
                    other => (
                        502,
                        format!("the gateway got no reply from bitget: {other}"),
                    ),
                };
                let reply = RawReply {
                    status,
                    headers: json_headers(),
                    body: Bytes::from(cache::error_body(&status.to_string(), &msg, now)),
                    waited: Duration::ZERO,
                    judged: None,
                };
                self.respond(category, &reply, "forwarded", None)
            }
        }
    }

    fn respond(
        &self,
        category: Category,
        reply: &RawReply,
        source: &str,
        age_ms: Option<u64>,
    ) -> Response {
        let mut headers = HeaderMap::with_capacity(reply.headers.len() + 4);
        for (name, value) in &reply.headers {
            if !HOP_HEADERS.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(
            HeaderName::from_static("x-cache"),
            HeaderValue::from_str(source).unwrap_or(HeaderValue::from_static("miss")),
        );
        if let Some(age) = age_ms {
            headers.insert(
                HeaderName::from_static("x-cache-age-ms"),
                HeaderValue::from(age),
            );
            headers.insert(
                HeaderName::from_static("age"),
                HeaderValue::from(age / 1000),
            );
        }
        if source == "hit" || source == "ws" || source == "disk" {
            // A hit spends nothing: the header would tell a bot that paces by it to slow
            // down for a budget it did not use.
            headers.remove(REMAIN_HEADER);
        } else {
            let available = self.view().available[category.index()];
            headers.insert(
                HeaderName::from_static(REMAIN_HEADER),
                HeaderValue::from(available),
            );
        }
        let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
        (status, headers, reply.body.clone()).into_response()
    }
}

/// How long a signed request may wait for the budget: no longer than `queue_max`, and not
/// so long that its `ACCESS-TIMESTAMP` is near Bitget's 30 s limit when it leaves.
fn signed_wait(headers: &HeaderMap, queue_max: Duration, now_ms: u64) -> Duration {
    let stamp = headers
        .get("access-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(stamp) = stamp else {
        return queue_max;
    };
    let age = Duration::from_millis(now_ms.saturating_sub(stamp));
    queue_max.min(SIGNED_MAX_AGE.saturating_sub(age))
}

/// The raw JSON of `symbol`'s ticker in an all-tickers `data` array.
fn one_ticker<'a>(raw: &'a [u8], symbol: &str) -> Option<&'a str> {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        symbol: std::borrow::Cow<'a, str>,
    }
    let rows: Vec<&RawValue> = serde_json::from_slice(raw).ok()?;
    rows.into_iter()
        .find(|row| serde_json::from_str::<Named<'_>>(row.get()).is_ok_and(|n| n.symbol == symbol))
        .map(RawValue::get)
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// A client's request, read.
#[derive(Debug)]
struct Incoming {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Incoming {
    fn into_raw(self) -> RawRequest {
        let mut headers = self.headers;
        for name in OWN_HEADERS.iter().chain(HOP_HEADERS) {
            headers.remove(*name);
        }
        RawRequest {
            method: self.method,
            path: self.path,
            query: self.query,
            headers,
            body: self.body,
        }
    }
}

/// The client's name for the counters: its `X-Client-Name` (letters, digits, `-_.`, at
/// most 64), else its address.
fn client_name(headers: &HeaderMap, peer: SocketAddr) -> String {
    headers
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|n| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(|| peer.ip().to_string(), str::to_owned)
}

async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let client = client_name(&parts.headers, peer);
    gateway.clients.count(&client, Served::Request);
    let now = gateway.server_now();
    // The gateway answers itself: counted as refused for the client.
    let refuse = |status: StatusCode, code: &str, msg: &str| {
        gateway.clients.count(&client, Served::Refused);
        bitget_error(status, code, msg, now)
    };
    if let Some(token) = &gateway.config.token {
        let offered = parts.headers.get(TOKEN_HEADER).map(HeaderValue::as_bytes);
        if !offered.is_some_and(|t| token.matches(t)) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                reply::CODE_UNAUTHORIZED,
                "the gateway needs its token in the X-Gateway-Token header",
            );
        }
    }
    let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > MAX_URI_BYTES {
        return refuse(
            StatusCode::URI_TOO_LONG,
            "414",
            &format!("request path and query of {target_len} bytes are over the gateway's {MAX_URI_BYTES} byte cap"),
        );
    }
    // What Bitget will receive, judged before anything else: the budget, the cache and
    // the relay all see this path, never the client's spelling of it.
    let path = match endpoints::canonical_path(parts.uri.path()) {
        Ok(path) => path,
        Err(error) => {
            return refuse(
                StatusCode::NOT_FOUND,
                reply::CODE_NOT_FOUND,
                &format!("Request URL NOT FOUND ({error}; the gateway relays bitget's /api/v2/ and /api/v3/ paths only)"),
            );
        }
    };
    let read = to_bytes(Body::new(body), gateway.config.max_request_body);
    let body = match tokio::time::timeout(gateway.config.serve.header_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                reply::CODE_TOO_LARGE,
                &format!(
                    "request body over the gateway's {} byte cap ([gateway] max_request_body_kb)",
                    gateway.config.max_request_body
                ),
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "408",
                &format!(
                    "the request body did not arrive within {} s ([gateway] header_timeout_secs)",
                    gateway.config.serve.header_timeout.as_secs()
                ),
            );
        }
    };
    let incoming = Incoming {
        method: parts.method,
        path,
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body,
    };
    gateway.answer(&client, incoming).await
}

fn bitget_error(status: StatusCode, code: &str, msg: &str, now: u64) -> Response {
    (status, json_headers(), cache::error_body(code, msg, now)).into_response()
}

/// [`ServerNow`] from the process's one [`ServerClock`] (the limiter's offset bounds) and
/// the wall clock.
#[derive(Debug)]
pub struct MeasuredClock {
    pub clock: Arc<ServerClock>,
    pub wall: Arc<dyn Clock>,
}

impl ServerNow for MeasuredClock {
    fn server_now_ms(&self) -> (u64, bool) {
        let wall = self.wall.now_ms();
        (self.clock.server_ms(wall), self.clock.offset_ms().is_some())
    }
}
