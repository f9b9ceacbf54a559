//! The Bitget REST client: one pooled HTTP client, every request through the limiter, every
//! failure classified, retries with backoff (and through the limiter again).
//!
//! The client knows nothing about candles or schedules; it turns `(path, query)` into a
//! checked reply body, or a [`BitgetError`] that says what to do next. It also tells the
//! limiter what the server said (remaining budget, rate-limit rejections), so one 429 pauses
//! every request of that category, not only the one that failed.
//!
//! Signed requests build their query string and body once, sign those exact bytes and send
//! them unchanged. A `40008` (timestamp outside Bitget's 30 s window) resyncs the clock
//! offset and retries once. Orders are never retried here: a POST whose outcome is unknown
//! goes back to the caller, which must reconcile before sending it again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::credential::Signer;
use crate::error::{BitgetError, Classifier, ErrorClass};
use crate::limiter::{route_of, Adjustment, Feedback, Permit, RateLimiter, Route};
use crate::metrics::RequestLatency;
use crate::retry::Backoff;
use crate::telemetry::{RecentRateLimits, RATE_LOG};

/// Bitget's server-time endpoint, used to measure the clock offset.
pub const TIME_PATH: &str = "/api/v2/public/time";
/// Bitget's production REST endpoint.
pub const BITGET_BASE_URL: &str = "https://api.bitget.com";
/// Header in which Bitget reports what is left of an endpoint's one-second budget.
pub const REMAIN_HEADER: &str = "x-mbx-used-remain-limit";

/// How the HTTP side is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub base_url: String,
    /// Whole-request timeout, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub pool_max_idle: usize,
    pub backoff: Backoff,
    /// Body codes treated as rate limiting besides HTTP 429.
    pub rate_limit_codes: Vec<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: BITGET_BASE_URL.to_owned(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            pool_max_idle: 32,
            backoff: Backoff::default(),
            rate_limit_codes: crate::error::default_rate_limit_codes(),
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

/// Whether a failed request may be sent again by the client itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryPolicy {
    /// Retryable failures are retried with backoff.
    Backoff,
    /// Only a clock-skew rejection (certain not to have been executed) is retried, once.
    ClockSkewOnly,
}

/// One request, with its query string and body fixed before signing.
struct Request<'a> {
    method: Method,
    path: &'a str,
    /// Without the `?`; empty when there is none.
    query: String,
    body: Bytes,
    signed: bool,
}

impl<'a> Request<'a> {
    fn get(path: &'a str, query: &[(&str, &str)], signed: bool) -> Self {
        Self {
            method: Method::GET,
            path,
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
    result: Result<Bytes, BitgetError>,
    remaining: Option<u32>,
    server_ms: Option<u64>,
}

/// A checked success reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Bytes,
    /// Attempts it took, 1 if the first succeeded.
    pub attempts: u32,
}

/// Why the client could not be built.
#[derive(Debug, Error)]
#[error("cannot build the http client: {0}")]
pub struct BuildError(#[from] reqwest::Error);

/// A Bitget client sharing one limiter and one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: Arc<str>,
    limiter: Arc<dyn RateLimiter>,
    classifier: Classifier,
    backoff: Backoff,
    recent: Arc<RecentRateLimits>,
    stop: CancellationToken,
    signer: Option<Arc<Signer>>,
    latency: Arc<RequestLatency>,
}

impl Client {
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
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("bitget-poller/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base_url: config.base_url.trim_end_matches('/').into(),
            limiter,
            classifier: Classifier::new(config.rate_limit_codes.clone()),
            backoff: config.backoff,
            recent,
            stop,
            signer: None,
            latency: Arc::default(),
        })
    }

    /// Request latency per category, shared by every clone of this client.
    pub fn latency(&self) -> Arc<RequestLatency> {
        Arc::clone(&self.latency)
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

    /// Measures the offset between local time and Bitget's with `/api/v2/public/time`, and
    /// signs from then on with it. Returns the offset in milliseconds.
    ///
    /// # Errors
    /// The time request failed, or its reply has no readable server time.
    pub async fn sync_clock(&self) -> Result<i64, CallError> {
        let Some(signer) = &self.signer else {
            return Err(CallError::NoCredentials(TIME_PATH.to_owned()));
        };
        let sent = signer.local_ms();
        let reply = self.get(TIME_PATH, &[], None).await?;
        let received = signer.local_ms();
        let server = crate::parse::server_time(&reply.body).map_err(|e| {
            CallError::Bitget(BitgetError::Malformed {
                endpoint: TIME_PATH.to_owned(),
                detail: e.to_string(),
            })
        })?;
        let offset = signer.observe_server_time(server, sent, received);
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
        path: &str,
        query: &[(&str, &str)],
        symbol: Option<&str>,
    ) -> Result<Reply, CallError> {
        let request = Request::get(path, query, true);
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
        path: &str,
        body: String,
        symbol: Option<&str>,
    ) -> Result<Reply, CallError> {
        let request = Request {
            method: Method::POST,
            path,
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
        path: &str,
        query: &[(&str, &str)],
        symbol: Option<&str>,
    ) -> Result<Reply, CallError> {
        let request = Request::get(path, query, false);
        self.call(&request, symbol, RetryPolicy::Backoff).await
    }

    /// GETs `path?query` once: a failure is returned at once, for a caller that will ask
    /// again anyway (the live poller's next pass) and must not hold a task while waiting.
    /// A rate limit still pauses the whole category in the limiter.
    ///
    /// # Errors
    /// The attempt's failure, or shutdown.
    pub async fn get_once(
        &self,
        path: &str,
        query: &[(&str, &str)],
        symbol: Option<&str>,
    ) -> Result<Reply, CallError> {
        let request = Request::get(path, query, false);
        self.call(&request, symbol, RetryPolicy::ClockSkewOnly)
            .await
    }

    /// The backoff policy retries follow.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    async fn call(
        &self,
        request: &Request<'_>,
        symbol: Option<&str>,
        policy: RetryPolicy,
    ) -> Result<Reply, CallError> {
        if request.signed && self.signer.is_none() {
            return Err(CallError::NoCredentials(request.path.to_owned()));
        }
        let path = request.path;
        let route = route_of(path);
        let category = route.category;
        let mut retry = 0;
        let mut resynced = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match self.attempt(route, request, symbol).await? {
                Ok(body) => return Ok(Reply { body, attempts }),
                Err(error) => error,
            };
            if error.class() == ErrorClass::ClockSkew {
                // Rejected before execution, so resending is safe; a second skew after a
                // fresh measurement means the clock is drifting fast: give up.
                if resynced || !request.signed {
                    return Err(error.into());
                }
                resynced = true;
                tracing::warn!(endpoint = path, "{error}");
                Box::pin(self.sync_clock()).await?;
                continue;
            }
            if policy == RetryPolicy::ClockSkewOnly {
                return Err(error.into());
            }
            let jitter = rand::thread_rng().gen::<f64>();
            let Some(delay) = self.backoff.delay_after(&error, retry, jitter) else {
                return Err(error.into());
            };
            retry += 1;
            if error.class() == ErrorClass::RateLimited {
                // The limiter already holds the whole category for `delay`; the retry
                // simply queues behind that pause.
                tracing::info!(target: RATE_LOG, event = %"backoff", category = %category, endpoint = %path, symbol = %symbol.unwrap_or("-"), retry, "retrying once the category pause ends");
                continue;
            }
            tracing::warn!(endpoint = path, symbol = symbol.unwrap_or("-"), class = ?error.class(), retry, delay_ms = delay.as_millis() as u64, "{error}");
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
        request: &Request<'_>,
        symbol: Option<&str>,
    ) -> Result<Result<Bytes, BitgetError>, CallError> {
        let permit = tokio::select! {
            biased;
            () = self.stop.cancelled() => return Err(CallError::ShuttingDown),
            permit = self.limiter.acquire(route) => permit,
        };
        let sent = tokio::time::Instant::now();
        let outcome = self.send(request, symbol).await;
        self.latency.observe(route.category, sent.elapsed());
        self.report(&permit, request.path, symbol, &outcome);
        Ok(outcome.result)
    }

    async fn send(&self, request: &Request<'_>, symbol: Option<&str>) -> Sent {
        match self.send_inner(request, symbol).await {
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
        request: &Request<'_>,
        symbol: Option<&str>,
    ) -> Result<Sent, BitgetError> {
        let path = request.path;
        let mut url = format!("{}{}", self.base_url, path);
        if !request.query.is_empty() {
            url.push('?');
            url.push_str(&request.query);
        }
        let mut builder = self.http.request(request.method.clone(), &url);
        if !request.body.is_empty() {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(request.body.clone());
        }
        if let Some(signer) = self.signer.as_ref().filter(|_| request.signed) {
            let signed =
                signer.headers(request.method.as_str(), path, &request.query, &request.body);
            let sensitive = |value: &str| {
                HeaderValue::from_str(value).map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
            };
            let (Ok(key), Ok(sign), Ok(passphrase)) = (
                sensitive(signed.key),
                sensitive(&signed.sign),
                sensitive(signed.passphrase),
            ) else {
                return Err(BitgetError::Auth {
                    code: "local".to_owned(),
                    msg: "a credential contains characters an http header cannot carry".to_owned(),
                });
            };
            builder = builder
                .header("ACCESS-KEY", key)
                .header("ACCESS-SIGN", sign)
                .header("ACCESS-TIMESTAMP", signed.timestamp)
                .header("ACCESS-PASSPHRASE", passphrase)
                .header("locale", "en-US");
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport_error(path, &e))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let remaining = header(REMAIN_HEADER).and_then(|v| v.trim().parse::<u32>().ok());
        let retry_after = header("retry-after");
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(path, &e))?;
        let (server_ms, verdict) =
            self.classifier
                .check_timed(path, symbol, status, retry_after.as_deref(), &body);
        Ok(Sent {
            result: verdict.map(|()| body),
            remaining,
            server_ms,
        })
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
            Some(Adjustment::EffectiveLimit { category, limit }) => {
                tracing::info!(target: RATE_LOG, event = %"limit_follow", category = %category, effective_limit = limit, "following the server's remaining budget");
            }
            Some(Adjustment::Paused {
                category,
                pause,
                strike,
                crowded,
            }) => {
                tracing::warn!(target: RATE_LOG, event = %"rate_limited", category = %category, endpoint = %path, symbol = %symbol, pause_ms = pause.as_millis() as u64, strike, crowded, recent_429 = self.recent.count(category), "rate limited; pausing the whole category");
            }
            Some(Adjustment::InFlightRejection { category }) => {
                tracing::warn!(target: RATE_LOG, event = %"rate_limited", category = %category, endpoint = %path, symbol = %symbol, in_flight = true, recent_429 = self.recent.count(category), "rate limited (already in flight when the category paused)");
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
