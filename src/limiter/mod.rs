//! Client-side rate limiting: which budget each endpoint spends, and a limiter that never
//! lets a sliding one-second window *on the server's clock* exceed it.
//!
//! Bitget meters each endpoint on its own ("20 times/1s (IP)" on every market page), under
//! the overall 6000/min per IP. So each endpoint has its own paced window, with its share of
//! the server's budget, its holds after a 429 and its probe; the category only names the
//! family (and its priority), and caps the whole family only when the operator asks for it
//! (`market_total_per_sec`).
//!
//! Written by hand rather than with `governor`: governor's GCRA is a token bucket, whose
//! burst plus refill admits more than the limit in some one-second windows unless the burst
//! is 1, it cannot take two buckets (category and overall) all-or-nothing, it cannot pause a
//! category on a 429 or follow the server's `x-mbx-used-remain-limit`, and it counts on our
//! send times while Bitget counts arrivals on its own clock.
//! - [`offset`]: bounds on the clock offset to the server, from send, receive and
//!   `requestTime`;
//! - [`window`]: the exact core, sliding windows in the server's frame;
//! - [`share`]: the share of a budget left to us beside other clients;
//! - [`budgets`]: all budgets of a client and what replies do to them, pure;
//! - [`gates`]: one FIFO queue per endpoint;
//! - [`local`]: the in-process async limiter on top;
//! - [`model`]: a discrete-event model of clients, network and a Bitget-like meter, for
//!   tests and the sharing curve.
//!
//! - [`redis`]: the same windows in Redis, for every instance on any host.
//!
//! Callers see only the [`RateLimiter`] trait, so [`redis::RedisLimiter`] replaces
//! [`local::LocalLimiter`] without touching them.

pub mod backoff;
pub mod budgets;
pub mod config;
pub mod gates;
pub mod local;
pub mod model;
pub mod offset;
pub mod recent;
pub mod redis;
pub mod share;
pub mod sockets;
pub mod window;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use local::LocalLimiter;

/// Bitget's rate-limit families. Every request draws from its category and from the
/// per-IP overall budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Public market data: Bitget meters these at 20 req/s per IP (per endpoint).
    Market,
    /// Private account reads (balances, positions): 10 req/s per account.
    Account,
    /// Orders: 10 req/s per account.
    Trade,
    /// Anything not listed: the conservative 10 req/s.
    Default,
}

impl Category {
    pub const ALL: [Category; 4] = [Self::Market, Self::Account, Self::Trade, Self::Default];

    pub fn name(self) -> &'static str {
        match self {
            Self::Market => "market",
            Self::Account => "account",
            Self::Trade => "trade",
            Self::Default => "default",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The category named `name` (as [`Category::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Rank when categories compete for the overall per-IP budget, 0 first: a pending order
    /// must never wait behind a market-data backlog, and a balance read that an order
    /// decision depends on comes before more candles.
    pub fn priority(self) -> usize {
        match self {
            Self::Trade => 0,
            Self::Account => 1,
            Self::Market => 2,
            Self::Default => 3,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whose budget an endpoint spends: Bitget meters market data per IP, and account reads and
/// orders per account (UID), whatever the IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Ip,
    Account,
}

/// Which egress address (for IP-metered budgets) and which account (for account-metered
/// ones) a request goes out with; an index into the caller's lists, 0 for the only one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Keys {
    pub egress: u16,
    pub account: u16,
}

/// Which budgets a request spends: its endpoint's own window, its category's total when the
/// operator caps one, and the overall per-IP one, each under the scope key the request goes
/// out with. Bitget's remaining-budget header counts one endpoint, which is the window it is
/// followed in.
///
/// The venue adapter builds routes from its endpoint table; the limiter knows no paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub category: Category,
    /// The endpoint's id in the caller's table, or `u16::MAX` for anything else.
    pub endpoint: u16,
    /// The endpoint's own documented limit per second, when it has one; the category's
    /// configured limit applies otherwise (and caps it).
    pub endpoint_limit: Option<u32>,
    /// Whose budget the endpoint and category windows are.
    pub scope: Scope,
    pub keys: Keys,
    /// The egresses the request may leave from, as a bit mask (bit k for egress k); 0
    /// means only `keys.egress`. The limiter takes the least-loaded one that has room.
    pub candidates: u32,
}

/// The most egresses a limiter chooses among.
pub const MAX_EGRESSES: usize = 32;

impl Route {
    /// The key the category and endpoint windows are kept under: the egress for IP-metered
    /// budgets, the account for account-metered ones.
    pub fn scope_key(&self) -> u16 {
        match self.scope {
            Scope::Ip => self.keys.egress,
            Scope::Account => self.keys.account,
        }
    }

    /// Endpoint `endpoint` of `category`, with its own documented limit if any, in the
    /// category's scope under the first keys.
    pub fn new(category: Category, endpoint: u16, endpoint_limit: Option<u32>) -> Self {
        Self {
            endpoint,
            endpoint_limit,
            ..Self::from(category)
        }
    }

    /// The same route, going out with `keys`.
    #[must_use]
    pub fn with_keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }

    /// The same route, leaving from whichever egress of `mask` has room first.
    #[must_use]
    pub fn with_candidates(mut self, mask: u32) -> Self {
        self.candidates = mask;
        self
    }

    /// The egresses it may leave from, lowest first.
    pub fn egress_candidates(&self) -> impl Iterator<Item = u16> + '_ {
        let mask = if self.candidates == 0 {
            1u64 << self.keys.egress.min(63)
        } else {
            u64::from(self.candidates)
        };
        (0..64u16).filter(move |k| mask & (1 << k) != 0)
    }

    /// The same route, going out from `egress`.
    #[must_use]
    pub fn on_egress(mut self, egress: u16) -> Self {
        self.keys.egress = egress;
        self.candidates = 0;
        self
    }
}

impl From<Category> for Route {
    fn from(category: Category) -> Self {
        Self {
            category,
            endpoint: u16::MAX,
            endpoint_limit: None,
            scope: match category {
                Category::Market | Category::Default => Scope::Ip,
                Category::Account | Category::Trade => Scope::Account,
            },
            keys: Keys::default(),
            candidates: 0,
        }
    }
}

/// Where admissions come from, for the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// This process's own windows.
    #[default]
    Local,
    /// Windows in Redis, shared by every instance.
    Redis,
    /// Redis is unreachable: a local share of each budget until it is back.
    Fallback,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Redis => "redis",
            Self::Fallback => "fallback",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one egress carried since start, for the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressLoad {
    pub egress: u16,
    /// Requests admitted to leave from it.
    pub admitted: u64,
    /// Rate-limit rejections of those.
    pub rate_limited: u64,
    /// Market requests of ours that may be in its window now.
    pub in_window: u32,
}

/// Limits the limiter enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Requests per second of *each endpoint* of a category, indexed like [`Category::ALL`]
    /// (an endpoint documented lower keeps its own lower limit).
    pub per_second: [u32; 4],
    /// Requests per second of a whole category, when the operator caps it; `None` lets every
    /// endpoint spend its own budget.
    pub total_per_second: [Option<u32>; 4],
    /// Bitget's per-IP cap over a minute, shared by all categories.
    pub overall_per_minute: u32,
    /// Extra fraction of each window kept free, on top of the margin the limiter measures
    /// (the clock-offset bounds); 0 by default.
    pub safety_margin: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_second: [20, 10, 10, 10],
            total_per_second: [None; 4],
            overall_per_minute: 6000,
            safety_margin: 0.0,
        }
    }
}

impl Limits {
    pub fn per_second(&self, category: Category) -> u32 {
        self.per_second[category.index()]
    }

    /// The limit of `route`'s own endpoint window: the category's configured limit, or the
    /// endpoint's documented one when that is lower.
    pub fn endpoint_limit(&self, route: &Route) -> u32 {
        let configured = self.per_second(route.category);
        route
            .endpoint_limit
            .map_or(configured, |l| l.min(configured))
            .max(1)
    }

    /// The cap on `category` as a whole, when the operator set one.
    pub fn total(&self, category: Category) -> Option<u32> {
        self.total_per_second[category.index()]
    }
}

/// Proof of admission: hand it back with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    /// Unique per limiter, ascending in admission order.
    pub id: u64,
    pub category: Category,
    pub endpoint: u16,
    /// The scope key its category and endpoint windows were taken under, and its egress.
    pub scope_key: u16,
    pub egress: u16,
    /// When it was admitted, in the limiter's own time base.
    pub admitted_at_us: u64,
    /// How long the caller waited for it.
    pub waited: Duration,
}

/// What the server said about an admitted request. `server_time_ms` is the reply's
/// `requestTime`, when it had one: it places the request on the server's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// Accepted; `remaining` is `x-mbx-used-remain-limit` when the server sent it (it counts
    /// the request's endpoint).
    Accepted {
        remaining: Option<u32>,
        server_time_ms: Option<u64>,
    },
    /// Rejected for rate: the limiter holds the request's endpoint until the server's window
    /// has room (or the server's `Retry-After`). `jitter` is a uniform draw in [0, 1) for the
    /// backoff of repeated rejections.
    RateLimited {
        retry_after: Option<Duration>,
        jitter: f64,
        server_time_ms: Option<u64>,
    },
    /// Any other outcome, or no reply at all; the server counted the request (or we cannot
    /// know).
    Other { server_time_ms: Option<u64> },
}

impl Feedback {
    /// The reply's `requestTime`, if any.
    pub fn server_time_ms(&self) -> Option<u64> {
        match *self {
            Self::Accepted { server_time_ms, .. }
            | Self::RateLimited { server_time_ms, .. }
            | Self::Other { server_time_ms } => server_time_ms,
        }
    }
}

/// What feedback changed, for the rate log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// The endpoint's effective limit moved to follow the server.
    EffectiveLimit {
        category: Category,
        endpoint: u16,
        limit: u32,
    },
    /// A new rate-limit event paused the endpoint; `strike` counts events in a row from 0.
    Paused {
        category: Category,
        endpoint: u16,
        pause: Duration,
        strike: u32,
        /// No other request of ours could be in the server's window: others filled it, and
        /// slowing our own pace down cannot help (the adaptive tiers do not count it).
        crowded: bool,
    },
    /// A rejection of a request that was already in flight when the endpoint paused.
    InFlightRejection { category: Category, endpoint: u16 },
}

/// Counters of one category (or one endpoint, in [`EndpointCounters`]) since start. For a
/// category, the window figures (`limit` … `server_limit`) are its busiest endpoint's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CategoryCounters {
    /// Requests admitted.
    pub admitted: u64,
    /// Admitted requests that had to wait for the budget.
    pub waited: u64,
    /// Total time those waited.
    pub wait_total: Duration,
    /// Replies that were rate-limit rejections.
    pub rate_limited: u64,
    /// Configured limit per second (of each endpoint).
    pub limit: u32,
    /// Limit in force after following the server.
    pub effective_limit: u32,
    /// Admissions available right now.
    pub available: u32,
    /// Requests per window other clients took, in thousandths, on the last step.
    pub foreign_milli: u32,
    /// The limit the server enforces as far as its remaining counts show.
    pub server_limit: u32,
    /// The margin in force: the width of the clock-offset bounds plus the stamp's
    /// resolution, in µs; `None` before the first reply.
    pub clock_margin_us: Option<u64>,
    /// Bounds on Bitget's clock minus this machine's wall clock, in µs (lower, upper);
    /// `None` before the first reply.
    pub clock_offset_us: Option<(i64, i64)>,
    /// Where admissions come from now.
    pub backend: Backend,
}

impl CategoryCounters {
    /// Other clients' share of the budget, in percent of the configured limit.
    pub fn foreign_pct(&self) -> f64 {
        if self.limit == 0 {
            0.0
        } else {
            f64::from(self.foreign_milli) / 10.0 / f64::from(self.limit)
        }
    }
}

/// The counters of one endpoint (under its first scope key for the window figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointCounters {
    pub category: Category,
    /// The endpoint's id in the adapter's table, `u16::MAX` for anything else.
    pub endpoint: u16,
    pub counters: CategoryCounters,
}

/// A boxed future, so the trait stays object-safe for `Arc<dyn RateLimiter>`.
pub type Acquire<'a> = Pin<Box<dyn Future<Output = Permit> + Send + 'a>>;
/// The same for a WebSocket budget, which hands out no permit.
pub type SocketAcquire<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Admits requests within the budgets. Cancel-safe: dropping an `acquire` future before it
/// completes admits nothing.
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Waits until the route's endpoint window (and category cap, if any) and the overall
    /// budget all have room, then takes one of each, atomically.
    fn acquire(&self, route: Route) -> Acquire<'_>;

    /// Reports the server's answer to a request admitted with `permit`.
    fn feedback(&self, permit: &Permit, feedback: Feedback) -> Option<Adjustment>;

    /// Counters for `category`.
    fn counters(&self, category: Category) -> CategoryCounters;

    /// Counters of every endpoint used so far, by category then endpoint.
    fn endpoint_counters(&self) -> Vec<EndpointCounters>;

    /// Bitget's clock as this limiter's offset bounds know it: the process's one estimate,
    /// which every reply narrows.
    fn server_clock(&self) -> std::sync::Arc<crate::core::clock::ServerClock>;

    /// What each egress carried, lowest first.
    fn egress_loads(&self) -> Vec<EgressLoad>;

    /// Waits until every one of `windows` (WebSocket budgets, [`sockets`]) has room, then
    /// takes one of each, atomically. Cancel-safe.
    fn socket_acquire<'a>(&'a self, windows: &'a [sockets::SocketWindow]) -> SocketAcquire<'a>;

    /// A socket closed: its slot under `egress` is free, and its own windows are forgotten.
    fn socket_closed(&self, socket: u64, egress: u64);

    /// What the WebSocket budgets admitted, by kind.
    fn socket_counters(&self) -> Vec<(sockets::SocketBudget, sockets::SocketCounters)>;
}
