//! The raw HTTP layer to Bitget: one pooled HTTP client per egress (see [`super::egress`];
//! the limiter picks the egress of each public request), every request through the limiter,
//! every failure classified, retries with backoff (and through the limiter again), and
//! [`Http::forward`] for a request someone else built and signed.
//!
//! This layer knows nothing about candles or schedules; it turns `(path, query)` into a
//! checked reply body, or a [`BitgetError`] that says what to do next. The typed methods
//! (`candles()`, `place_order()` …) are in [`super::client`]. It also tells the
//! limiter what the server said (remaining budget, rate-limit rejections), so one 429 pauses
//! every request of that category, not only the one that failed.
//!
//! Signed requests build their query string and body once, sign those exact bytes and send
//! them unchanged. A `40008` (timestamp outside Bitget's 30 s window) resyncs the clock
//! offset and retries once. Orders are never retried here: a POST whose outcome is unknown
//! goes back to the caller, which must reconcile before sending it again.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::credential::Signer;
use super::egress::{self, Change, EgressConfig, Health};
use super::endpoints::{self, route_of, Endpoint, BASE_URL, REMAIN_HEADER, SERVER_TIME};
use super::error::{BitgetError, Classifier, ErrorClass, Judged};
use super::parse::Input;
use crate::core::clock::{Clock, ServerClock, SystemClock};
use crate::core::RATE_LOG;
use crate::limiter::backoff::Backoff;
use crate::limiter::recent::RecentRateLimits;
use crate::limiter::{Adjustment, Category, Feedback, Permit, RateLimiter, Route};

pub use super::endpoints::BASE_URL as BITGET_BASE_URL;
pub use reqwest::Method;
/// How the HTTP side is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub base_url: String,
    /// The public WebSocket, when set apart from `base_url`.
    pub ws_url: Option<String>,
    /// Whole-request timeout, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub pool_max_idle: usize,
    pub backoff: Backoff,
    /// Body codes treated as rate limiting besides HTTP 429.
    pub rate_limit_codes: Vec<String>,
    /// Reply bodies longer than this are refused unread (the all-contracts list, the
    /// largest reply, is about 1 MB).
    pub max_body_bytes: usize,
    /// The ways out, at least one; market requests take the least loaded healthy one.
    pub egresses: Vec<EgressConfig>,
    /// The egress signed requests keep to (an index into `egresses`).
    pub signed_egress: u16,
}

impl ClientConfig {
    /// The public WebSocket's address: `ws_url`, or the one `base_url` implies.
    ///
    /// # Errors
    /// Neither says where the socket is.
    pub fn ws_url(&self) -> Result<String, String> {
        match &self.ws_url {
            Some(url) => Ok(url.clone()),
            None => super::ws::url_for(&self.base_url),
        }
    }

    /// The egresses' names, in order.
    pub fn egress_names(&self) -> Vec<String> {
        self.egresses.iter().map(|e| e.name.clone()).collect()
    }
}

/// The default cap on a reply body.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// Told about every request's round trip, for latency metrics.
pub trait Observer: Send + Sync + std::fmt::Debug {
    fn request_done(&self, category: Category, elapsed: Duration);
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: BASE_URL.to_owned(),
            ws_url: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            pool_max_idle: 32,
            backoff: Backoff::default(),
            rate_limit_codes: super::error::default_rate_limit_codes(),
            max_body_bytes: DEFAULT_MAX_BODY,
            egresses: vec![EgressConfig::default_route()],
            signed_egress: 0,
        }
    }
}

/// Why a call produced no reply.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CallError {
    /// The last attempt's failure (retries, if allowed, are used up).
    #[error(transparent)]
    Bitget(#[from] BitgetError),
    /// Shutdown began before the request could be sent.
    #[error("shutting down; request not sent")]
    ShuttingDown,
    /// A signed endpoint was called on a client built without credentials.
    #[error("{0} needs api credentials; set BITGET_API_KEY, BITGET_API_SECRET and BITGET_API_PASSPHRASE")]
    NoCredentials(String),
}

/// Why a forwarded request got no reply from the exchange.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ForwardError {
    /// The budget had no room within the wait allowed; the request was not sent.
    #[error("the {category} budget had no room within {} ms; the request was not sent", waited.as_millis())]
    NotAdmitted {
        category: Category,
        waited: Duration,
    },
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Whether a failed request may be sent again by the client itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryPolicy {
    /// Retryable failures are retried with backoff.
    Backoff,
    /// Only a clock-skew rejection (certain not to have been executed) is retried, once.
    ClockSkewOnly,
}

/// One request, with its query string and body fixed before signing.
struct Request {
    method: Method,
    endpoint: &'static Endpoint,
    /// Without the `?`; empty when there is none.
    query: String,
    body: Bytes,
    signed: bool,
}

impl Request {
    fn get(endpoint: &'static Endpoint, query: &[(&str, &str)], signed: bool) -> Self {
        Self {
            method: Method::GET,
            endpoint,
            query: query_string(query),
            body: Bytes::new(),
            signed,
        }
    }
}

fn query_string(query: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

/// One attempt's reply as the limiter needs it: the verdict, the remaining count and the
/// server's `requestTime`.
struct Sent {
    result: Result<Checked, BitgetError>,
    remaining: Option<u32>,
    server_ms: Option<u64>,
}

/// A request as another client built it, for [`Http::forward`].
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: Method,
    /// Starting with `/api/`.
    pub path: String,
    /// Without the `?`, exactly as received (the signature covers it byte for byte).
    pub query: String,
    /// Passed on unchanged; sensitive ones (`ACCESS-*`) are redacted in `Debug`.
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A reply exactly as the exchange sent it.
#[derive(Debug, Clone)]
pub struct RawReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How long the request waited for the budget before it was sent.
    pub waited: Duration,
    /// What the reply was judged to be, with the configured rate-limit codes, when it came
    /// from the exchange: readers use its `data` range instead of judging it again.
    pub judged: Option<Judged>,
}

impl RawReply {
    /// The endpoint's remaining requests this second, when the exchange said.
    pub fn remaining(&self) -> Option<u32> {
        self.headers
            .get(REMAIN_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }
}

/// A checked success reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Bytes,
    /// Attempts it took, 1 if the first succeeded.
    pub attempts: u32,
    /// The reply's `requestTime`, and where its `data` lies in `body`, as the classifier
    /// found them.
    pub server_ms: Option<u64>,
    pub data: Option<Range<usize>>,
}

impl Reply {
    /// The reply for a parser in [`super::parse`], which then reads only its `data`.
    pub fn input(&self) -> Input<'_> {
        match &self.data {
            Some(range) => self
                .body
                .get(range.clone())
                .map_or(Input::whole(&self.body), |data| {
                    Input::data(data, self.server_ms)
                }),
            None => Input::whole(&self.body),
        }
    }
}

/// A success reply's body with what the classifier found in it.
#[derive(Debug)]
struct Checked {
    body: Bytes,
    server_ms: Option<u64>,
    data: Option<Range<usize>>,
}

/// Why the client could not be built.
#[derive(Debug, Error)]
#[error("cannot build the http client: {0}")]
pub struct BuildError(#[from] reqwest::Error);

/// The raw Bitget HTTP layer, sharing one limiter and one connection pool across clones.
#[derive(Debug, Clone)]
pub struct Http {
    /// One pooled client per egress.
    clients: Arc<[reqwest::Client]>,
    egresses: Arc<[EgressConfig]>,
    health: Arc<Health>,
    signed_egress: u16,
    /// The origin of the health clock.
    origin: tokio::time::Instant,
    base_url: Arc<str>,
    limiter: Arc<dyn RateLimiter>,
    classifier: Classifier,
    backoff: Backoff,
    recent: Arc<RecentRateLimits>,
    stop: CancellationToken,
    signer: Option<Arc<Signer>>,
    /// The wall clock the limiter publishes the server's offset against.
    wall: Arc<dyn Clock>,
    observer: Option<Arc<dyn Observer>>,
    max_body: usize,
    /// Whether any reply at all came back, and the last transport failure: a session that
    /// never reached the exchange says so, with the cause.
    contact: Arc<Contact>,
}

/// What the layer knows about reaching the exchange.
#[derive(Debug, Default)]
struct Contact {
    replies: std::sync::atomic::AtomicU64,
    last_failure: std::sync::Mutex<Option<String>>,
}

impl Http {
    /// A client for `config`, limited by `limiter`; `stop` cancels waiting requests.
    ///
    /// # Errors
    /// The TLS backend cannot be set up.
    pub fn new(
        config: &ClientConfig,
        limiter: Arc<dyn RateLimiter>,
        recent: Arc<RecentRateLimits>,
        stop: CancellationToken,
    ) -> Result<Self, BuildError> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout)
                .pool_max_idle_per_host(config.pool_max_idle)
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_nodelay(true)
                .user_agent(concat!("bitget-poller/", env!("CARGO_PKG_VERSION")))
        };
        let egresses: Vec<EgressConfig> = if config.egresses.is_empty() {
            vec![EgressConfig::default_route()]
        } else {
            config.egresses.clone()
        };
        let clients = egresses
            .iter()
            .map(|e| egress::client(builder(), e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            clients: clients.into(),
            health: Arc::new(Health::new(egresses.len())),
            signed_egress: config.signed_egress.min(egresses.len() as u16 - 1),
            egresses: egresses.into(),
            origin: tokio::time::Instant::now(),
            base_url: config.base_url.trim_end_matches('/').into(),
            limiter,
            classifier: Classifier::new(config.rate_limit_codes.clone()),
            backoff: config.backoff,
            recent,
            stop,
            signer: None,
            wall: Arc::new(SystemClock::new()),
            observer: None,
            max_body: config.max_body_bytes,
            contact: Arc::default(),
        })
    }

    /// The same layer, reading `wall` for signature stamps and round trips: the wall
    /// clock its limiter publishes the server's offset against.
    #[must_use]
    pub fn with_wall(mut self, wall: Arc<dyn Clock>) -> Self {
        self.wall = wall;
        self
    }

    /// The same layer, telling `observer` about every round trip.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Replies received so far (any status), by every clone.
    pub fn replies(&self) -> u64 {
        self.contact
            .replies
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The most recent failure to get any reply (connection refused, DNS, TLS, timeout).
    pub fn last_transport_failure(&self) -> Option<String> {
        self.contact
            .last_failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
    }

    /// The host requests go to, for messages.
    pub fn host(&self) -> String {
        reqwest::Url::parse(&self.base_url)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| {
                    u.port()
                        .map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))
                })
            })
            .unwrap_or_else(|| self.base_url.to_string())
    }

    /// The same client, signing private requests with `signer`.
    #[must_use]
    pub fn with_signer(mut self, signer: Arc<Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn signer(&self) -> Option<&Arc<Signer>> {
        self.signer.as_ref()
    }

    /// The process's one server clock (the limiter's offset bounds).
    pub fn server_clock(&self) -> Arc<ServerClock> {
        self.limiter.server_clock()
    }

    /// Measures the offset between local time and Bitget's with `/api/v2/public/time`, and
    /// signs from then on with it. Returns the offset in milliseconds.
    ///
    /// # Errors
    /// The time request failed, or its reply has no readable server time.
    pub async fn sync_clock(&self) -> Result<i64, CallError> {
        if self.signer.is_none() {
            return Err(CallError::NoCredentials(SERVER_TIME.path.to_owned()));
        }
        let sent = self.wall.now_ms();
        let reply = self.get(&SERVER_TIME, &[], None).await?;
        let received = self.wall.now_ms();
        let server = super::parse::server_time(reply.input()).map_err(|e| {
            CallError::Bitget(BitgetError::Malformed {
                endpoint: SERVER_TIME.path.to_owned(),
                detail: e.to_string(),
            })
        })?;
        // The reply's `requestTime` went to the limiter's bounds, which are the clock; a
        // reply without one gives the round trip instead.
        let clock = self.server_clock();
        if clock.offset_ms().is_none() {
            clock.observe_round_trip(server, sent, received);
        }
        let offset = clock.offset_ms().unwrap_or(0);
        tracing::info!(
            offset_ms = offset,
            round_trip_ms = received.saturating_sub(sent),
            "clock offset to bitget measured"
        );
        Ok(offset)
    }

    /// A signed GET, retried like [`Self::get`].
    ///
    /// # Errors
    /// As [`Self::get`], plus [`CallError::NoCredentials`].
    pub async fn signed_get(
        &self,
        endpoint: &'static Endpoint,
        query: &[(&str, &str)],
        symbol: Option<&str>,
    ) -> Result<Reply, CallError> {
        let request = Request::get(endpoint, query, true);
        self.call(&request, symbol, RetryPolicy::Backoff).await
    }

    /// A signed POST of `body` (JSON), sent at most once, except that a clock-skew rejection
    /// is resynced and retried once. Any other failure may or may not have been executed by
    /// Bitget; the caller reconciles.
    ///
    /// # Errors
    /// The failure of the (last) attempt, or [`CallError::NoCredentials`].
    pub async fn signed_post(
        &self,
        endpoint: &'static Endpoint,
        body: String,
        symbol: Option<&str>,
    ) -> Result<Reply, CallError> {
        let request = Request {
            method: Method::POST,
            endpoint,
            query: String::new(),
            body: Bytes::from(body),
            signed: true,
        };
        self.call(&request, symbol, RetryPolicy::ClockSkewOnly)
            .await
    }

    /// GETs `path?query`, retrying retryable failures with backoff, each attempt through
    /// the limiter. `symbol` names the symbol in errors and logs.
    ///
    /// # Errors
    /// The failure that ended the call: not retryable, or retries used up; or shutdown.
    pub async fn get(
        &self,
        endpoint: &'static Endpoint,
        query: &[(&str, &str)],
        symbol: Option<&str>,
    ) -> Result<Reply, CallError> {
        let request = Request::get(endpoint, query, false);
        self.call(&request, symbol, RetryPolicy::Backoff).await
    }

    /// GETs `path?query` once: a failure is returned at once, for a caller that will ask
    /// again anyway (the live poller's next pass) and must not hold a task while waiting.
    /// A rate limit still holds the endpoint in the limiter.
    ///
    /// # Errors
    /// The attempt's failure, or shutdown.
    pub async fn get_once(
        &self,
        endpoint: &'static Endpoint,
        query: &[(&str, &str)],
        symbol: Option<&str>,
    ) -> Result<Reply, CallError> {
        let request = Request::get(endpoint, query, false);
        self.call(&request, symbol, RetryPolicy::ClockSkewOnly)
            .await
    }

    /// The egresses, as configured.
    pub fn egresses(&self) -> &[EgressConfig] {
        &self.egresses
    }

    /// Each egress's health now.
    pub fn egress_health(&self) -> Vec<egress::EgressHealth> {
        self.health.snapshot()
    }

    fn health_now(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// `route` on the egresses: signed requests keep to the account's egress, others may
    /// take any healthy one.
    fn spread(&self, route: Route, signed: bool) -> Route {
        if self.egresses.len() <= 1 {
            return route;
        }
        if signed {
            route.on_egress(self.signed_egress)
        } else {
            route.with_candidates(self.health.usable(self.health_now()))
        }
    }

    /// Records what came back through `egress`, and says when that changed its health.
    fn egress_outcome(&self, egress: u16, replied: bool, path: &str) {
        if self.egresses.len() <= 1 {
            return;
        }
        let change = if replied {
            self.health.replied(egress)
        } else {
            self.health.failed(egress, self.health_now())
        };
        let Some(config) = self.egresses.get(usize::from(egress)) else {
            return;
        };
        match change {
            Change::TakenOut { until } => {
                let pause_ms = until.saturating_sub(self.health_now()) / 1_000;
                tracing::warn!(target: RATE_LOG, event = %"egress_out", egress = %config.name, route = %config.describe(), endpoint = %path, pause_ms, "egress {} keeps failing; taken out, probed again in {pause_ms} ms", config.name);
            }
            Change::BackIn => {
                tracing::info!(target: RATE_LOG, event = %"egress_in", egress = %config.name, route = %config.describe(), "egress {} answers again; back in", config.name);
            }
            Change::None => {}
        }
    }

    /// The backoff policy retries follow.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    async fn call(
        &self,
        request: &Request,
        symbol: Option<&str>,
        policy: RetryPolicy,
    ) -> Result<Reply, CallError> {
        if request.signed && self.signer.is_none() {
            return Err(CallError::NoCredentials(request.endpoint.path.to_owned()));
        }
        let path = request.endpoint.path;
        let route = self.spread(endpoints::route(request.endpoint), request.signed);
        let category = route.category;
        let mut retry = 0;
        let mut resynced = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Health may have changed since the last attempt.
            let route = if retry > 0 {
                self.spread(endpoints::route(request.endpoint), request.signed)
            } else {
                route
            };
            let error = match self.attempt(route, request, symbol).await? {
                Ok(checked) => {
                    return Ok(Reply {
                        body: checked.body,
                        attempts,
                        server_ms: checked.server_ms,
                        data: checked.data,
                    })
                }
                Err(error) => error,
            };
            if error.class() == ErrorClass::ClockSkew {
                // Rejected before execution, so resending is safe; a second skew after a
                // fresh measurement means the clock is drifting fast: give up.
                if resynced || !request.signed {
                    return Err(error.into());
                }
                resynced = true;
                tracing::warn!(
                    endpoint = path,
                    "{error}; resyncing with /api/v2/public/time"
                );
                Box::pin(self.sync_clock()).await?;
                continue;
            }
            if policy == RetryPolicy::ClockSkewOnly {
                return Err(error.into());
            }
            let jitter = rand::thread_rng().gen::<f64>();
            let Some(delay) = error.retry_delay(&self.backoff, retry, jitter) else {
                return Err(error.into());
            };
            retry += 1;
            if error.class() == ErrorClass::RateLimited {
                // The limiter already holds the endpoint for `delay`; the retry simply
                // queues behind that hold.
                tracing::info!(target: RATE_LOG, event = %"backoff", category = %category, endpoint = %path, symbol = %symbol.unwrap_or("-"), retry, "retrying once the endpoint's hold ends");
                continue;
            }
            tracing::warn!(endpoint = path, symbol = symbol.unwrap_or("-"), class = ?error.class(), retry, delay_ms = delay.as_millis() as u64, "{error}; retrying with backoff");
            tokio::select! {
                () = self.stop.cancelled() => return Err(CallError::ShuttingDown),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One attempt: acquire, send, classify, report back to the limiter.
    async fn attempt(
        &self,
        route: Route,
        request: &Request,
        symbol: Option<&str>,
    ) -> Result<Result<Checked, BitgetError>, CallError> {
        let permit = tokio::select! {
            biased;
            () = self.stop.cancelled() => return Err(CallError::ShuttingDown),
            permit = self.limiter.acquire(route) => permit,
        };
        let sent = tokio::time::Instant::now();
        let outcome = self.send(request, symbol, permit.egress).await;
        if let Some(observer) = &self.observer {
            observer.request_done(route.category, sent.elapsed());
        }
        self.report(&permit, request.endpoint.path, symbol, &outcome);
        Ok(outcome.result)
    }

    async fn send(&self, request: &Request, symbol: Option<&str>, egress: u16) -> Sent {
        match self.send_inner(request, symbol, egress).await {
            Ok(sent) => sent,
            Err(error) => Sent {
                result: Err(error),
                remaining: None,
                server_ms: None,
            },
        }
    }

    async fn send_inner(
        &self,
        request: &Request,
        symbol: Option<&str>,
        egress: u16,
    ) -> Result<Sent, BitgetError> {
        let path = request.endpoint.path;
        let mut headers = HeaderMap::new();
        if !request.body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(signer) = self.signer.as_ref().filter(|_| request.signed) {
            let stamp = self.server_clock().server_ms(self.wall.now_ms());
            let signed = signer.headers(
                request.method.as_str(),
                path,
                &request.query,
                &request.body,
                stamp,
            );
            let sensitive = |value: &str| {
                HeaderValue::from_str(value).map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
            };
            let (Ok(key), Ok(sign), Ok(passphrase), Ok(timestamp)) = (
                sensitive(signed.key),
                sensitive(&signed.sign),
                sensitive(signed.passphrase),
                HeaderValue::from_str(&signed.timestamp),
            ) else {
                return Err(BitgetError::LocalCredentials {
                    detail: "one contains characters an http header cannot carry".to_owned(),
                });
            };
            headers.insert("ACCESS-KEY", key);
            headers.insert("ACCESS-SIGN", sign);
            headers.insert("ACCESS-TIMESTAMP", timestamp);
            headers.insert("ACCESS-PASSPHRASE", passphrase);
            headers.insert("locale", HeaderValue::from_static("en-US"));
        }
        let reply = self
            .exchange(
                egress,
                request.method.clone(),
                path,
                &request.query,
                headers,
                request.body.clone(),
            )
            .await?;
        let judged = self.classify(&reply, path, symbol);
        let remaining = reply.remaining();
        let server_ms = judged.server_ms;
        Ok(Sent {
            result: judged.verdict.map(|()| Checked {
                body: reply.body,
                server_ms,
                data: judged.data,
            }),
            remaining,
            server_ms,
        })
    }

    fn classify(&self, reply: &RawReply, path: &str, symbol: Option<&str>) -> Judged {
        let retry_after = reply.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
        self.classifier
            .judge_reply(path, symbol, reply.status, retry_after, &reply.body)
    }

    /// One request on the wire, its body read up to the cap. Every reply, whatever its
    /// status, proves the exchange was reached.
    async fn exchange(
        &self,
        egress: u16,
        method: Method,
        path: &str,
        query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<RawReply, BitgetError> {
        let mut url = format!("{}{}", self.base_url, path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let client = &self.clients[usize::from(egress).min(self.clients.len() - 1)];
        let mut builder = client.request(method, &url).headers(headers);
        if !body.is_empty() {
            builder = builder.body(body);
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                self.egress_outcome(egress, false, path);
                return Err(self.transport_failed(path, &e));
            }
        };
        self.egress_outcome(egress, true, path);
        self.contact.replies.fetch_add(1, Ordering::Relaxed);
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let too_long = |bytes: u64| {
            BitgetError::Malformed {
            endpoint: path.to_owned(),
            detail: format!(
                "reply body of {bytes} bytes or more is over the {} byte cap; raise [exchange] max_body_mb if this reply is expected",
                self.max_body
            ),
        }
        };
        if let Some(length) = response.content_length() {
            if length > self.max_body as u64 {
                return Err(too_long(length));
            }
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body {
                        return Err(too_long((body.len() + chunk.len()) as u64));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_failed(path, &e)),
            }
        }
        Ok(RawReply {
            status,
            headers,
            body: Bytes::from(body),
            waited: Duration::ZERO,
            judged: None,
        })
    }

    fn transport_failed(&self, path: &str, error: &reqwest::Error) -> BitgetError {
        let error = transport_error(path, error);
        if let Ok(mut last) = self.contact.last_failure.lock() {
            *last = Some(match &error {
                BitgetError::Connection { detail, .. } => detail.clone(),
                other => other.to_string(),
            });
        }
        error
    }

    /// Sends a request someone else built (and perhaps signed) through the limiter,
    /// unchanged: method, path, query, headers and body as given; the reply comes back as
    /// the exchange sent it. Not retried: whether to send it again is its sender's call.
    /// The reply still tells the limiter what the server said.
    ///
    /// # Errors
    /// Shutdown began before it could be admitted, or no reply came (connection, timeout,
    /// a body over the cap).
    pub async fn forward(&self, request: RawRequest) -> Result<RawReply, CallError> {
        match self.forward_within(request, None).await {
            Ok(reply) => Ok(reply),
            Err(ForwardError::Call(error)) => Err(error),
            Err(ForwardError::NotAdmitted { .. }) => Err(CallError::ShuttingDown),
        }
    }

    /// [`Self::forward`], waiting at most `max_wait` for the budget (no limit with `None`).
    /// A request not admitted in time is not sent at all.
    ///
    /// # Errors
    /// Not admitted within `max_wait`, shutdown began first, or no reply came.
    pub async fn forward_within(
        &self,
        request: RawRequest,
        max_wait: Option<Duration>,
    ) -> Result<RawReply, ForwardError> {
        // A bot's own signed request keeps to the account's egress, like ours.
        let signed = request.headers.contains_key("ACCESS-KEY");
        let route = self.spread(route_of(&request.path), signed);
        let wait = async {
            match max_wait {
                // The acquire future is cancel-safe: dropped at the deadline, it took nothing.
                Some(limit) => tokio::time::timeout(limit, self.limiter.acquire(route))
                    .await
                    .ok(),
                None => Some(self.limiter.acquire(route).await),
            }
        };
        let permit = tokio::select! {
            biased;
            () = self.stop.cancelled() => return Err(ForwardError::Call(CallError::ShuttingDown)),
            permit = wait => match permit {
                Some(permit) => permit,
                None => {
                    return Err(ForwardError::NotAdmitted {
                        category: route.category,
                        waited: max_wait.unwrap_or_default(),
                    })
                }
            },
        };
        let started = tokio::time::Instant::now();
        let result = self
            .exchange(
                permit.egress,
                request.method,
                &request.path,
                &request.query,
                request.headers,
                request.body,
            )
            .await;
        if let Some(observer) = &self.observer {
            observer.request_done(route.category, started.elapsed());
        }
        let result = result.map(|reply| {
            let judged = self.classify(&reply, &request.path, None);
            RawReply {
                waited: permit.waited,
                judged: Some(judged),
                ..reply
            }
        });
        let sent = match &result {
            Ok(reply) => {
                let judged = reply.judged.as_ref();
                Sent {
                    result: judged
                        .map_or(Ok(()), |j| j.verdict.clone())
                        .map(|()| Checked {
                            body: Bytes::new(),
                            server_ms: None,
                            data: None,
                        }),
                    remaining: reply.remaining(),
                    server_ms: judged.and_then(|j| j.server_ms),
                }
            }
            Err(error) => Sent {
                result: Err(error.clone()),
                remaining: None,
                server_ms: None,
            },
        };
        self.report(&permit, &request.path, None, &sent);
        result.map_err(|e| ForwardError::Call(CallError::Bitget(e)))
    }

    fn report(&self, permit: &Permit, path: &str, symbol: Option<&str>, outcome: &Sent) {
        let server_time_ms = outcome.server_ms;
        let feedback = match &outcome.result {
            Ok(_) => Feedback::Accepted {
                remaining: outcome.remaining,
                server_time_ms,
            },
            Err(error) if error.class() == ErrorClass::RateLimited => Feedback::RateLimited {
                retry_after: error.retry_after(),
                jitter: rand::thread_rng().gen::<f64>(),
                server_time_ms,
            },
            Err(_) => Feedback::Other { server_time_ms },
        };
        let symbol = symbol.unwrap_or("-");
        let adjustment = self.limiter.feedback(permit, feedback);
        // The adaptive tiers slow our own pace down; a rejection in a window that others
        // filled without any request of ours is not cured by that, and is not counted.
        let crowded = matches!(adjustment, Some(Adjustment::Paused { crowded: true, .. }));
        if matches!(feedback, Feedback::RateLimited { .. }) && !crowded {
            self.recent.record(permit.category);
        }
        match adjustment {
            Some(Adjustment::EffectiveLimit {
                category, limit, ..
            }) => {
                tracing::info!(target: RATE_LOG, event = %"limit_follow", category = %category, endpoint = %path, effective_limit = limit, "following the server's remaining budget for the endpoint");
            }
            Some(Adjustment::Paused {
                category,
                pause,
                strike,
                crowded,
                ..
            }) => {
                tracing::warn!(target: RATE_LOG, event = %"rate_limited", category = %category, endpoint = %path, symbol = %symbol, pause_ms = pause.as_millis() as u64, strike, crowded, recent_429 = self.recent.count(category), "rate limited; the endpoint is held until its window drains");
            }
            Some(Adjustment::InFlightRejection { category, .. }) => {
                tracing::warn!(target: RATE_LOG, event = %"rate_limited", category = %category, endpoint = %path, symbol = %symbol, in_flight = true, recent_429 = self.recent.count(category), "rate limited (already in flight when the endpoint was held)");
            }
            None => {}
        }
    }
}

fn transport_error(path: &str, error: &reqwest::Error) -> BitgetError {
    let endpoint = path.to_owned();
    if error.is_timeout() {
        return BitgetError::Timeout { endpoint };
    }
    // The chain carries the useful part ("connection reset by peer"), not the top level.
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    BitgetError::Connection { endpoint, detail }
}
