//! `--metrics-addr`: the poller's state as a Prometheus scrape endpoint.
//!
//! Usage lines say what happened per interval; a dashboard wants the same figures as series
//! it can graph and alert on (a 429 rate above zero, a symbol whose candles stopped). The
//! counters are not kept twice: at every scrape a [`Collector`] reads the limiter's counters,
//! the poller's tier and symbols per iteration, and the freshness table, so the endpoint can
//! never disagree with the usage lines. Only request latency is recorded here, by the client,
//! in one histogram per category.
//!
//! The format is OpenMetrics text (what `prometheus-client` writes, and what Prometheus asks
//! for first); every name starts with `bitget_poller_`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bitget::http::{Http, Observer};
use crate::core::clock::Clock;
use crate::core::serve::{raw_reply, serve, ServeLimits};
use crate::feed::FeedStats;
use crate::limiter::{Backend, Category, CategoryCounters, EgressLoad, RateLimiter};
use crate::scheduler::tiers::Tier;
use crate::scheduler::PollStats;
use crate::store::Store;
use crate::telemetry::clients::ClientStats;

/// Content type of the OpenMetrics text format.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Time from sending a request to having its whole reply, per category (limiter waits are
/// not included: those are `wait_seconds`).
#[derive(Debug)]
pub struct RequestLatency {
    histograms: [Histogram; 4],
}

impl Default for RequestLatency {
    fn default() -> Self {
        // 1 ms (loopback) to about 16 s (past the request timeout).
        Self {
            histograms: std::array::from_fn(|_| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
        }
    }
}

impl RequestLatency {
    pub fn observe(&self, category: Category, elapsed: Duration) {
        self.histograms[category.index()].observe(elapsed.as_secs_f64());
    }
}

impl Observer for RequestLatency {
    fn request_done(&self, category: Category, elapsed: Duration) {
        self.observe(category, elapsed);
    }
}

/// What the endpoint reads at every scrape.
#[derive(Debug, Clone)]
pub struct MetricsSources {
    pub limiter: Arc<dyn RateLimiter>,
    pub latency: Arc<RequestLatency>,
    pub stats: Arc<PollStats>,
    /// Every watched series' age.
    pub store: Arc<Store>,
    /// The WebSocket feed's counters.
    pub feed: Arc<FeedStats>,
    pub wall: Arc<dyn Clock>,
    /// The gateway's per-client counters, when it runs.
    pub gateway_clients: Option<Arc<ClientStats>>,
    /// The egresses' names and health.
    pub egresses: Option<Http>,
}

type Encoded = Result<(), std::fmt::Error>;

fn per_category<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: impl Fn(Category) -> M,
) -> Encoded {
    let Some(first) = Category::ALL.first() else {
        return Ok(());
    };
    let mut family = encoder.encode_descriptor(name, help, unit, metric(*first).metric_type())?;
    for category in Category::ALL {
        let labels = [("category", category.name())];
        metric(category).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Encoded {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

impl Collector for MetricsSources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Encoded {
        let counters = Category::ALL.map(|c| self.limiter.counters(c));
        let k = |c: Category| counters[c.index()];
        per_category(
            &mut encoder,
            "requests",
            "Requests admitted by the rate limiter.",
            None,
            |c| ConstCounter::new(k(c).admitted),
        )?;
        per_category(
            &mut encoder,
            "waits",
            "Admitted requests that had to wait for budget.",
            None,
            |c| ConstCounter::new(k(c).waited),
        )?;
        per_category(
            &mut encoder,
            "wait",
            "Time requests waited for budget.",
            Some(&Unit::Seconds),
            |c| ConstCounter::new(k(c).wait_total.as_secs_f64()),
        )?;
        per_category(
            &mut encoder,
            "rate_limited",
            "Replies that were rate-limit rejections (HTTP 429 or a rate-limit code).",
            None,
            |c| ConstCounter::new(k(c).rate_limited),
        )?;
        per_category(
            &mut encoder,
            "tokens_available",
            "Admissions available right now without waiting.",
            None,
            |c| ConstGauge::new(i64::from(k(c).available)),
        )?;
        per_category(
            &mut encoder,
            "limit_per_second",
            "Configured requests per second.",
            None,
            |c| ConstGauge::new(i64::from(k(c).limit)),
        )?;
        per_category(
            &mut encoder,
            "effective_limit_per_second",
            "Requests per second in force after following the server's remaining budget.",
            None,
            |c| ConstGauge::new(i64::from(k(c).effective_limit)),
        )?;
        per_category(
            &mut encoder,
            "foreign_share",
            "Share of the budget other clients on the same IP or account took, as the server's remaining counts show (0 to 1).",
            None,
            |c| ConstGauge::new(k(c).foreign_pct() / 100.0),
        )?;
        per_category(
            &mut encoder,
            "server_limit_per_second",
            "The limit the server enforces, as far as its remaining counts show.",
            None,
            |c| ConstGauge::new(i64::from(k(c).server_limit)),
        )?;
        // Bitget meters each endpoint on its own: the same figures per endpoint.
        let endpoints = self.limiter.endpoint_counters();
        for (name, help, value) in [
            (
                "endpoint_requests",
                "Requests admitted, per endpoint.",
                (|k: &CategoryCounters| k.admitted) as fn(&CategoryCounters) -> u64,
            ),
            (
                "endpoint_rate_limited",
                "Rate-limit rejections, per endpoint.",
                |k: &CategoryCounters| k.rate_limited,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for e in &endpoints {
                let labels = [
                    ("category", e.category.name()),
                    ("endpoint", crate::bitget::endpoints::path_of(e.endpoint)),
                ];
                ConstCounter::new(value(&e.counters)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in [
            (
                "endpoint_limit_per_second",
                "Configured requests per second of the endpoint.",
                (|k: &CategoryCounters| k.limit) as fn(&CategoryCounters) -> u32,
            ),
            (
                "endpoint_effective_limit_per_second",
                "Requests per second in force for the endpoint after following the server.",
                |k: &CategoryCounters| k.effective_limit,
            ),
            (
                "endpoint_tokens_available",
                "Admissions available to the endpoint right now.",
                |k: &CategoryCounters| k.available,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for e in &endpoints {
                let labels = [
                    ("category", e.category.name()),
                    ("endpoint", crate::bitget::endpoints::path_of(e.endpoint)),
                ];
                ConstGauge::new(i64::from(value(&e.counters)))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        // The clock is one for all categories: any category's counters carry it.
        let market = k(Category::Market);
        if let Some(margin) = market.clock_margin_us {
            let gauge = ConstGauge::new(margin as f64 / 1e6);
            gauge.encode(encoder.encode_descriptor(
                "clock_margin",
                "The margin the limiter keeps: the width of the bounds on Bitget's clock offset plus its stamp's resolution.",
                Some(&Unit::Seconds),
                gauge.metric_type(),
            )?)?;
        }
        if let Some((lower, upper)) = market.clock_offset_us {
            let mut family = encoder.encode_descriptor(
                "clock_offset",
                "Bounds on Bitget's clock minus this machine's wall clock.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (bound, value) in [("lower", lower), ("upper", upper)] {
                ConstGauge::new(value as f64 / 1e6)
                    .encode(family.encode_family(&[("bound", bound)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "request_duration",
                "Time from sending a request to its whole reply.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for category in Category::ALL {
                let labels = [("category", category.name())];
                self.latency.histograms[category.index()].encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in [
            (
                "closed_candles",
                "Closed candles delivered to strategies.",
                &self.stats.closed_delivered,
            ),
            (
                "fetch_failures",
                "Poller fetches that failed (each is logged with its symbol and class).",
                &self.stats.failures,
            ),
        ] {
            let counter = ConstCounter::new(value.load(std::sync::atomic::Ordering::Relaxed));
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let symbols = self
            .stats
            .symbols_per_iteration
            .load(std::sync::atomic::Ordering::Relaxed);
        gauge(
            &mut encoder,
            "symbols_per_iteration",
            "Symbols fetched per iteration (all streams in the normal tier).",
            symbols as i64,
        )?;
        {
            let tier = self.stats.tier();
            let mut family = encoder.encode_descriptor(
                "tier",
                "The adaptive tier: 1 for the one in force.",
                None,
                MetricType::Gauge,
            )?;
            for t in Tier::ALL {
                let labels = [("tier", t.name())];
                ConstGauge::new(i64::from(t == tier)).encode(family.encode_family(&labels)?)?;
            }
        }
        let server_ms = self.limiter.server_clock().server_ms(self.wall.now_ms());
        let ages = self.store.ages(server_ms);
        let stale = ages.iter().filter(|a| a.is_stale()).count();
        gauge(
            &mut encoder,
            "stale_streams",
            "Streams whose newest closed candle is older than twice their timeframe.",
            stale as i64,
        )?;
        let mut family = encoder.encode_descriptor(
            "candle_age",
            "Time since the newest closed candle of a symbol and timeframe closed (since polling began, before the first).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for age in &ages {
            let labels = [
                ("symbol", age.symbol.as_str()),
                ("timeframe", age.timeframe.rest()),
            ];
            ConstGauge::new(age.age_ms as f64 / 1000.0).encode(family.encode_family(&labels)?)?;
        }
        let feed = self.feed.snapshot();
        if feed.is_active() {
            for (name, help, value) in [
                (
                    "feed_sockets",
                    "WebSocket sockets the feed keeps.",
                    feed.sockets,
                ),
                (
                    "feed_sockets_up",
                    "WebSocket sockets connected now.",
                    feed.sockets_up,
                ),
                (
                    "feed_channels",
                    "Candle channels the feed carries.",
                    feed.channels,
                ),
            ] {
                gauge(&mut encoder, name, help, value as i64)?;
            }
            {
                let stalest = ConstGauge::new(feed.stalest_ms as f64 / 1000.0);
                stalest.encode(encoder.encode_descriptor(
                    "feed_stalest",
                    "The longest any carried series has gone without a push (or a fallback read), now.",
                    Some(&Unit::Seconds),
                    stalest.metric_type(),
                )?)?;
            }
            for (name, help, value) in [
                (
                    "feed_pushes",
                    "Candle pushes received over the WebSocket.",
                    feed.pushes,
                ),
                (
                    "feed_reconnects",
                    "WebSocket sockets that went down and were reconnected.",
                    feed.reconnects,
                ),
                (
                    "feed_closed_ws",
                    "Closed candles proven by a row pushed after their close.",
                    feed.closed_ws,
                ),
                (
                    "feed_closed_rest",
                    "Closed candles whose final state was read by REST.",
                    feed.closed_rest,
                ),
                (
                    "feed_closed_built",
                    "Closed candles built exactly from a shorter timeframe's closes instead of read by REST.",
                    feed.closed_built,
                ),
                (
                    "feed_build_mismatches",
                    "Built closes that differed from the exchange's when checked by REST.",
                    feed.build_mismatches,
                ),
                (
                    "feed_rest_reads",
                    "REST reads confirming closes or filling gaps for the feed.",
                    feed.rest_reads,
                ),
                (
                    "feed_fallback_reads",
                    "REST reads standing in for a socket that stayed down.",
                    feed.fallback_reads,
                ),
            ] {
                let counter = ConstCounter::new(value);
                counter.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    counter.metric_type(),
                )?)?;
            }
            let mut family = encoder.encode_descriptor(
                "feed_errors",
                "WebSocket error events, by code (30006 and 30007 are Bitget's rate-limit codes).",
                None,
                MetricType::Counter,
            )?;
            for (code, n) in &feed.errors {
                let code = code.to_string();
                ConstCounter::new(*n).encode(family.encode_family(&[("code", code.as_str())])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "socket_budget_taken",
                "WebSocket budget takes by kind (attempts, sockets, messages, subscribes).",
                None,
                MetricType::Counter,
            )?;
            for (budget, c) in self.limiter.socket_counters() {
                ConstCounter::new(c.taken)
                    .encode(family.encode_family(&[("budget", budget.name())])?)?;
            }
        }
        {
            let backend = k(Category::Market).backend;
            let mut family = encoder.encode_descriptor(
                "limiter_backend",
                "Where admissions come from: 1 for the one in force (local, redis, or fallback while redis is unreachable).",
                None,
                MetricType::Gauge,
            )?;
            for b in [Backend::Local, Backend::Redis, Backend::Fallback] {
                ConstGauge::new(i64::from(b == backend))
                    .encode(family.encode_family(&[("backend", b.name())])?)?;
            }
        }
        if let Some(http) = &self.egresses {
            let names: Vec<&str> = http.egresses().iter().map(|e| e.name.as_str()).collect();
            let loads = self.limiter.egress_loads();
            let load = |i: usize| {
                loads
                    .iter()
                    .find(|l| usize::from(l.egress) == i)
                    .copied()
                    .unwrap_or_default()
            };
            for (metric, help, value) in [
                (
                    "egress_requests",
                    "Requests admitted to leave from each egress address or proxy.",
                    (|l: EgressLoad| l.admitted) as fn(EgressLoad) -> u64,
                ),
                (
                    "egress_rate_limited",
                    "Rate-limit rejections of requests that left from each egress.",
                    |l: EgressLoad| l.rate_limited,
                ),
            ] {
                let mut family =
                    encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
                for (i, name) in names.iter().enumerate() {
                    ConstCounter::new(value(load(i)))
                        .encode(family.encode_family(&[("egress", *name)])?)?;
                }
            }
            let health = http.egress_health();
            let mut family = encoder.encode_descriptor(
                "egress_healthy",
                "1 while an egress is in use, 0 while it is taken out for failing (and waits for its probe).",
                None,
                MetricType::Gauge,
            )?;
            for (i, name) in names.iter().enumerate() {
                let healthy = health.get(i).is_none_or(|h| h.exclusions == 0);
                ConstGauge::new(i64::from(healthy))
                    .encode(family.encode_family(&[("egress", *name)])?)?;
            }
        }
        if let Some(clients) = &self.gateway_clients {
            let mut family = encoder.encode_descriptor(
                "gateway_requests",
                "Gateway requests per client (X-Client-Name or address) by how they were served: requests (all), hit (store or memory), miss (fetched), merged (shared an identical request in flight), forwarded, queued (waited for budget), refused (answered by the gateway itself).",
                None,
                MetricType::Counter,
            )?;
            for (name, c) in clients.snapshot() {
                for (served, value) in [
                    ("requests", c.requests),
                    ("hit", c.hits),
                    ("miss", c.misses),
                    ("merged", c.merged),
                    ("forwarded", c.forwarded),
                    ("queued", c.queued),
                    ("refused", c.refused),
                ] {
                    let labels = [("client", name.as_str()), ("served", served)];
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// The whole scrape body for `sources`.
///
/// # Errors
/// Never in practice: writing to a `String` does not fail.
pub fn render(sources: &MetricsSources) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("bitget_poller");
    registry.register_collector(Box::new(sources.clone()));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Why the endpoint could not start.
#[derive(Debug, Error)]
#[error("cannot listen on {addr} for --metrics-addr: {source}; pick a free port, e.g. --metrics-addr 127.0.0.1:9185")]
pub struct MetricsError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A bound endpoint; [`MetricsServer::serve`] answers scrapes until `stop`.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds `addr` now, so a taken port is reported before polling starts.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError { addr, source })?;
        Ok(Self { listener })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `GET /metrics` until `stop`, then gives a scrape in progress the shutdown
    /// grace.
    pub async fn serve(self, sources: MetricsSources, stop: CancellationToken) {
        let scrape = move || {
            let sources = sources.clone();
            async move {
                match render(&sources) {
                    Ok(body) => ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], body).into_response(),
                    Err(_) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "metrics could not be encoded\n",
                    )
                        .into_response(),
                }
            }
        };
        let router = Router::new().route("/metrics", get(scrape)).route(
            "/",
            get(|| async { "bitget-poller: metrics at /metrics\n" }),
        );
        // Few scrapers: a small cap, and the same deadlines as the gateway.
        let limits = ServeLimits {
            max_connections: 32,
            ..ServeLimits::default()
        };
        let refusal = raw_reply(
            503,
            "Service Unavailable",
            r#"{"error":"too many connections to the metrics endpoint"}"#,
        );
        serve(self.listener, router, limits, refusal, Arc::default(), stop).await;
    }
}
