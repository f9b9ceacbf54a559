//! One budget for every instance, on any host: the sliding-window logs kept in Redis and
//! taken by one atomic script per admission, on Redis's own clock.
//!
//! Each window is a sorted set of requests scored by the time they certainly leave the
//! window, on Redis's clock: while a request is in flight, [`IN_FLIGHT_MAX_US`] plus a
//! window after it was admitted; once answered, the instance that sent it lowers the score
//! to when the server counted it (mapped from Bitget's `requestTime` with the clock-offset
//! bounds, as in [`super::window`]) plus a window. So the server-frame correction one
//! instance learns is what every other instance reads. All windows of a request (its
//! endpoint's, its category's total when one is configured, overall per egress) are checked
//! and taken in the same script, or none of them; a rate-limit rejection writes a hold on its endpoint (until the fleet's answered requests have
//! left the window) and a probe flag that every instance obeys. Among several candidate
//! egresses the script takes the least-loaded one that has room.
//!
//! This is a log per window, not a GCRA: a GCRA's burst admits more than the limit in some
//! windows, which Bitget's strict sliding window rejects.
//!
//! **Never fail open.** When Redis cannot be reached (or lost its state, as after a
//! restart without persistence), the instance says so once, loudly, with the cause, holds
//! every admission for a window (what other instances admitted through Redis may still be
//! in the server's window), then admits from a local share of every budget
//! (`redis_fallback_share`). It retries Redis with a growing backoff; once back, it keeps
//! to the share for [`GRACE_US`] (longer than any other instance's next retry, plus a
//! window), so instances that have not noticed yet and it never overlap above the limit.
//!
//! What this instance admitted is also mirrored in its own [`Budgets`], which keeps its
//! clock-offset bounds, strikes and counters; the mirror never decides admissions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use thiserror::Error;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::budgets::{probe_phase_us, Budgets};
use super::gates::Gates;
use super::local::LocalLimiter;
use super::window::{IN_FLIGHT_MAX_US, SERVER_WINDOW_US};
use super::{
    Acquire, Adjustment, Backend, Category, CategoryCounters, EgressLoad, EndpointCounters,
    Feedback, Limits, Permit, RateLimiter, Route, Scope,
};
use crate::core::clock::{Clock, ServerClock, SystemClock};
use crate::core::text::redact_url;

/// The default Redis server.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";
/// The default key prefix; keys are `{prefix}:…`, one hash slot.
pub const DEFAULT_KEY_PREFIX: &str = "bitget-poller";

/// How long one Redis call may take before Redis counts as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Retries of an unavailable Redis start this far apart and double up to [`RETRY_MAX_US`].
const RETRY_MIN_US: u64 = 100_000;
const RETRY_MAX_US: u64 = 2_000_000;
/// After an outage is noticed, nothing is admitted for this long: what others admitted
/// through Redis may still be in flight or in the server's window.
const OUTAGE_HOLD_US: u64 = SERVER_WINDOW_US + 2 * CALL_TIMEOUT.as_micros() as u64;
/// After Redis is back, admissions keep to the fallback share this long as well.
pub const GRACE_US: u64 = RETRY_MAX_US + OUTAGE_HOLD_US + CALL_TIMEOUT.as_micros() as u64;
/// Longest sleep between two looks at a full window: other instances' replies can free it
/// earlier than the scores say.
const POLL_MAX: Duration = Duration::from_millis(50);
/// Answers waiting to be written; beyond this they are dropped, which leaves the request
/// counted as in flight (safe, and only costs budget).
const ANSWER_QUEUE: usize = 4096;
/// Admissions whose answer is still due are remembered up to this many.
const PENDING_MAX: usize = 65_536;

/// Where the shared budget lives.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
    /// The fraction of every limit an instance uses while Redis is unavailable.
    pub fallback_share: f64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_REDIS_URL.to_owned(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            fallback_share: 0.5,
        }
    }
}

/// Which limiter admits requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum BackendConfig {
    /// This process's windows only.
    #[default]
    Local,
    /// Shared windows in Redis.
    Redis(RedisConfig),
}

/// The names budgets are kept under in Redis, so that instances on other hosts find the
/// same windows: an egress's name for IP-metered budgets (hosts behind one NAT address
/// share it), an account's for account-metered ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeNames {
    pub egresses: Vec<String>,
    pub accounts: Vec<String>,
}

impl Default for ScopeNames {
    fn default() -> Self {
        Self {
            egresses: vec!["default".to_owned()],
            accounts: vec!["public".to_owned()],
        }
    }
}

/// A Redis URL that cannot be used.
#[derive(Debug, Error)]
#[error("limits.redis_url = {url:?} is not a redis url ({cause}); write redis://host:port/db or rediss://…")]
pub struct BadUrl {
    pub url: String,
    pub cause: String,
}

/// Checks `url` without connecting.
///
/// # Errors
/// It is not a Redis URL.
pub fn check_url(url: &str) -> Result<(), BadUrl> {
    open(url).map(drop)
}

/// The client for `url`, not yet connected.
fn open(url: &str) -> Result<redis::Client, BadUrl> {
    redis::Client::open(url).map_err(|e| BadUrl {
        url: url.to_owned(),
        cause: e.to_string(),
    })
}

/// `call`, or a timeout error after [`CALL_TIMEOUT`]: Redis not answering in time counts
/// as Redis unavailable.
/// One WebSocket window shared by every instance: a sorted set of take times (Redis's own
/// clock, µs) per key. Takes one when fewer than the limit fall within the window and
/// returns 0; otherwise returns how many µs until the oldest leaves it.
const SOCKET_TAKE: &str = r#"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"#;

/// Opens a socket slot of an address. KEYS[1] is the address's set of open sockets, each
/// scored by the end of its lease on Redis's clock (µs). ARGV: the limit, the lease (µs),
/// the member. Returns 0 when taken, else how long to wait (µs, at most a second: a slot
/// is freed by a close, which no score foretells).
const SOCKET_OPEN: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.min(1000000, math.max(1, tonumber(oldest[2]) - now))
"#;

/// Renews leases of open sockets. KEYS[1] is the address's set; ARGV: the lease (µs), then
/// the members (only those still in the set are renewed: one that expired was counted
/// free by others and must be opened again, not revived).
const SOCKET_RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + lease), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) + 1000)
return 0
"#;

/// How long an open socket holds its slot in Redis without renewal: an instance that dies
/// without closing gives its slots back after this.
const SOCKET_LEASE: Duration = Duration::from_secs(120);

/// How often leases are renewed: every socket pings every 30 s, and every ping passes the
/// limiter, so some call comes at least this often while any socket is open.
const SOCKET_RENEW_EVERY: Duration = Duration::from_secs(30);

async fn bounded<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no reply within 250 ms",
            )))
        })
}

/// The admission script. KEYS[1] is the epoch key, then five per candidate egress:
/// endpoint window, category total window, overall window, the endpoint's hold and pace.
/// ARGV: the epoch this instance knows, the member, the in-flight span, the candidate count,
/// then eight per candidate: endpoint limit and window, category total (0 for none) and
/// window, overall limit and window, pacing spacing (0: not paced), the endpoint's id.
/// Admitted and wait replies end with the first candidate's endpoint limit in force (after
/// the remaining counts, before a probe). A fresh effective limit in the hold hash (from the
/// server's remaining counts) lowers the endpoint's limit and spaces the pace to it. Returns
/// {1, candidate, now, requests in the chosen endpoint window}, {0, wait, now} or
/// {2, 0, now, epoch} when the epoch is not the one known. Numbers go to Redis through `num` (`%.0f`): Lua's own conversion keeps only 14
/// digits, and Redis's clock in µs has 16.
const ADMIT: &str = r"
local function num(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return {2, 0, now, epoch or ''} end
local member = ARGV[2]
local inflight = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local function room(key, limit, at)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now))
  local count = redis.call('ZCOUNT', key, '(' .. num(at), '+inf')
  if count < limit then return count, at end
  local r = redis.call('ZRANGEBYSCORE', key, '(' .. num(at), '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
  return count, tonumber(r[2])
end
local best, best_load, best_spacing, wait, seen = -1, 0, 0, nil, nil
for c = 0, n - 1 do
  local k = 1 + c * 5
  local a = 4 + c * 8
  local cat_limit = tonumber(ARGV[a + 1])
  local ep_limit = tonumber(ARGV[a + 3])
  local spacing = tonumber(ARGV[a + 7])
  local ep = ARGV[a + 8]
  local at = now
  local hold = redis.call('HMGET', KEYS[k + 4], 'until', 'probe', 'eff:' .. ep, 'eff_at:' .. ep)
  if hold[1] and tonumber(hold[1]) > at then at = tonumber(hold[1]) end
  -- What the server's remaining counts leave the fleet, while fresh.
  if hold[3] and now - tonumber(hold[4]) < 2000000 then
    local e = tonumber(hold[3])
    if e < cat_limit then
      cat_limit = e
      if spacing > 0 then spacing = math.floor(tonumber(ARGV[a + 2]) / e) end
    end
  end
  if seen == nil then seen = cat_limit end
  if hold[2] then cat_limit = 1 end
  if spacing > 0 then
    local pace = redis.call('HMGET', KEYS[k + 5], 'grid', 'last')
    if pace[1] then
      local g = tonumber(pace[1]) + spacing
      local l = tonumber(pace[2]) + math.floor(spacing / 2)
      if l > g then g = l end
      if g > at then at = g end
    end
  end
  local load, r = room(KEYS[k + 1], cat_limit, at)
  if r > at then at = r end
  if ep_limit > 0 then
    local _, r2 = room(KEYS[k + 2], ep_limit, at)
    if r2 > at then at = r2 end
  end
  local _, r3 = room(KEYS[k + 3], tonumber(ARGV[a + 5]), at)
  if r3 > at then at = r3 end
  if at <= now then
    local l = load / cat_limit
    if best < 0 or l < best_load then best, best_load, best_spacing = c, l, spacing end
  elseif wait == nil or at - now < wait then
    wait = at - now
  end
end
if best < 0 then return {0, wait, now, seen} end
local taken = 0
local k = 1 + best * 5
local a = 4 + best * 8
local function take(key, window)
  redis.call('ZADD', key, num(now + inflight + window), member)
  redis.call('PEXPIRE', key, math.floor((inflight + window) / 1000) + 1000)
end
local cat_window = tonumber(ARGV[a + 2])
take(KEYS[k + 1], cat_window)
taken = redis.call('ZCOUNT', KEYS[k + 1], '(' .. num(now), '+inf')
if tonumber(ARGV[a + 3]) > 0 then take(KEYS[k + 2], tonumber(ARGV[a + 4])) end
take(KEYS[k + 3], tonumber(ARGV[a + 6]))
local spacing = best_spacing
if spacing > 0 then
  local grid = tonumber(redis.call('HGET', KEYS[k + 5], 'grid') or '-1')
  if grid >= 0 and now < grid + spacing + cat_window then grid = grid + spacing else grid = now end
  redis.call('HSET', KEYS[k + 5], 'grid', num(grid), 'last', num(now))
  redis.call('PEXPIRE', KEYS[k + 5], math.floor((spacing + cat_window) / 1000) + 1000)
end
return {1, best, now, taken, seen}
";

/// The answer script. KEYS: endpoint window, category total, overall window, the
/// endpoint's hold. ARGV: member, kind (0 accepted, 1 rejected for rate, 2 other), the three
/// new scores (0: no total window), when it was admitted on Redis's clock, the random phase
/// and the least pause after a rejection, the endpoint window, the remaining count (-1 for
/// none), the endpoint's id. Returns the pause in µs after a new rejection, -1 for a rejection of a
/// request sent before the last one was known, the fleet's effective limit after an
/// accepted reply with a remaining count, 0 otherwise.
const ANSWER: &str = r"
local function num(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local m = ARGV[1]
redis.call('ZADD', KEYS[1], 'XX', 'LT', ARGV[3], m)
if tonumber(ARGV[4]) > 0 then redis.call('ZADD', KEYS[2], 'XX', 'LT', ARGV[4], m) end
redis.call('ZADD', KEYS[3], 'XX', 'LT', ARGV[5], m)
local admitted = tonumber(ARGV[6])
local probe = redis.call('HGET', KEYS[4], 'probe')
if ARGV[2] == '0' then
  if probe and admitted >= tonumber(probe) then redis.call('HDEL', KEYS[4], 'probe') end
  local rem = tonumber(ARGV[10])
  if rem < 0 then return 0 end
  -- The server leaves `rem` beside what it counted; the fleet's requests still in the
  -- window (counted or about to be) plus that is what it allows the fleet now.
  local eff = redis.call('ZCOUNT', KEYS[1], '(' .. num(now), '+inf') + rem
  if eff < 1 then eff = 1 end
  redis.call('HSET', KEYS[4], 'eff:' .. ARGV[11], num(eff), 'eff_at:' .. ARGV[11], num(now))
  if redis.call('PTTL', KEYS[4]) < 60000 then redis.call('PEXPIRE', KEYS[4], 60000) end
  return eff
end
if ARGV[2] ~= '1' then return 0 end
if probe and admitted < tonumber(probe) then return -1 end
local window = tonumber(ARGV[9])
local r = redis.call('ZREVRANGEBYSCORE', KEYS[1], num(now + window), '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
local u = now
if r[2] and tonumber(r[2]) > u then u = tonumber(r[2]) end
u = u + tonumber(ARGV[7])
if now + tonumber(ARGV[8]) > u then u = now + tonumber(ARGV[8]) end
local old = tonumber(redis.call('HGET', KEYS[4], 'until') or '0')
if old > u then u = old end
redis.call('HSET', KEYS[4], 'until', num(u), 'probe', num(now))
redis.call('PEXPIRE', KEYS[4], math.floor((u - now) / 1000) + 60000)
return u - now
";

/// The state of the link to Redis.
#[derive(Debug, Clone)]
enum Link {
    /// Not used yet: the epoch must be learned first.
    Unknown,
    /// Admissions come from Redis; during the grace after an outage also from the share,
    /// and after Redis lost its state none before `hold_until`.
    Up {
        epoch: String,
        grace_until: u64,
        hold_until: u64,
    },
    /// Admissions come from the share; Redis is tried again at `retry_at`.
    Down {
        hold_until: u64,
        retry_at: u64,
        attempt: u32,
    },
}

/// An admission Redis made.
#[derive(Debug, Clone)]
struct Shared {
    /// When Redis admitted it, on Redis's clock.
    redis_at: u64,
    /// Our clock just before we asked.
    asked: u64,
    route: Route,
    member: String,
}

/// An admission whose answer is still due.
#[derive(Debug, Clone)]
struct Pending {
    shared: Option<Shared>,
    /// The share's permit, while the share applies.
    share: Option<Permit>,
}

/// An answer on its way to Redis.
#[derive(Debug)]
struct Answer {
    keys: [String; 4],
    member: String,
    kind: u8,
    scores: [u64; 3],
    admitted: u64,
    phase_us: u64,
    least_pause_us: u64,
    remaining: i64,
    endpoint: u16,
    category: Category,
}

/// What one admission script said.
enum Verdict {
    Admitted {
        candidate: usize,
        redis_now: u64,
        in_window: u32,
        limit: u32,
    },
    Wait(Duration, u32),
    Epoch(String),
}

/// This instance's open sockets in Redis: each address's members, and when their leases
/// were last renewed.
#[derive(Debug, Default)]
struct SocketLeases {
    members: BTreeMap<u64, Vec<String>>,
    renewed: Option<Instant>,
}

/// What a socket acquisition dropped half way had taken: the local socket count of an
/// address, and a slot in Redis (possibly taken by a script whose answer never came).
struct SocketTaking<'a> {
    limiter: &'a RedisLimiter,
    local: Option<u64>,
    slot: Option<(u64, String)>,
}

impl Drop for SocketTaking<'_> {
    fn drop(&mut self) {
        if let Some(egress) = self.local {
            self.limiter.share.socket_closed(u64::MAX, egress);
        }
        if let Some((egress, member)) = self.slot.take() {
            self.limiter.release_socket_slot(egress, member);
        }
    }
}

/// The Redis-backed limiter; see the module doc.
#[derive(Debug)]
pub struct RedisLimiter {
    origin: Instant,
    /// The wall clock the server's offset is published against.
    wall: Arc<dyn Clock>,
    conn: ConnectionManager,
    admit: Script,
    socket_take: Script,
    socket_open: Script,
    socket_renew: Script,
    /// This instance's open sockets in Redis, per address (their members), and when
    /// their leases were last renewed.
    socket_leases: Mutex<SocketLeases>,
    prefix: String,
    names: ScopeNames,
    limits: Limits,
    instance: String,
    url: String,
    mirror: Mutex<Budgets>,
    /// The mirror's offset bounds, published for every reader of the server's time.
    clock: Arc<ServerClock>,
    share: LocalLimiter,
    link: Mutex<Link>,
    pending: Mutex<BTreeMap<u64, Pending>>,
    gates: Gates,
    changed: Notify,
    answers: mpsc::Sender<Answer>,
    /// Members are named by this counter, not the mirror's ids: categories admit
    /// concurrently, and the name must be fixed before Redis is asked.
    members: AtomicU64,
    /// Per category: the whole fleet's requests in the window at the last admission.
    fleet_in_window: [AtomicU64; 4],
    /// Per category: what the server's remaining counts leave the fleet (0: unknown).
    fleet_limit: Arc<[AtomicU64; 4]>,
}

/// The writer of answers; run it until `stop`, then it drains what is queued.
pub struct AnswerWriter {
    /// Per category: the fleet's effective limit from the last remaining count.
    fleet_limit: Arc<[AtomicU64; 4]>,
    conn: ConnectionManager,
    script: Script,
    rx: mpsc::Receiver<Answer>,
}

impl std::fmt::Debug for AnswerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerWriter").finish_non_exhaustive()
    }
}

/// The limits of the local share: each per-second and per-minute limit times `share`,
/// at least 1.
pub fn share_limits(limits: &Limits, share: f64) -> Limits {
    let scale = |limit: u32| ((f64::from(limit) * share).floor() as u32).max(1);
    Limits {
        per_second: limits.per_second.map(scale),
        total_per_second: limits.total_per_second.map(|t| t.map(scale)),
        overall_per_minute: scale(limits.overall_per_minute),
        safety_margin: limits.safety_margin,
    }
}

impl RedisLimiter {
    /// A limiter taking admissions from the Redis at `config.url`; it connects on first
    /// use, and runs on the share until Redis answers. The writer must be run for answers
    /// to reach Redis.
    ///
    /// # Errors
    /// The URL is not a Redis URL.
    pub fn new(
        config: &RedisConfig,
        limits: &Limits,
        backoff: Backoff,
        names: ScopeNames,
    ) -> Result<(Self, AnswerWriter), BadUrl> {
        let client = open(&config.url)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let conn =
            ConnectionManager::new_lazy_with_config(client, manager).map_err(|e| BadUrl {
                url: config.url.clone(),
                cause: e.to_string(),
            })?;
        let (tx, rx) = mpsc::channel(ANSWER_QUEUE);
        let fleet_limit: Arc<[AtomicU64; 4]> = Arc::default();
        let instance = format!("{:08x}-{}", rand::random::<u32>(), std::process::id());
        let limiter = Self {
            origin: Instant::now(),
            wall: Arc::new(SystemClock::new()),
            conn: conn.clone(),
            admit: Script::new(ADMIT),
            socket_take: Script::new(SOCKET_TAKE),
            socket_open: Script::new(SOCKET_OPEN),
            socket_renew: Script::new(SOCKET_RENEW),
            socket_leases: Mutex::default(),
            prefix: format!("{{{}}}", config.key_prefix),
            names,
            limits: limits.clone(),
            instance,
            url: config.url.clone(),
            mirror: Mutex::new(Budgets::new(limits, backoff)),
            clock: Arc::default(),
            share: LocalLimiter::new(&share_limits(limits, config.fallback_share), backoff),
            link: Mutex::new(Link::Unknown),
            pending: Mutex::new(BTreeMap::new()),
            gates: Default::default(),
            changed: Notify::new(),
            answers: tx,
            members: AtomicU64::new(0),
            fleet_in_window: Default::default(),
            fleet_limit: Arc::clone(&fleet_limit),
        };
        let writer = AnswerWriter {
            fleet_limit,
            conn,
            script: Script::new(ANSWER),
            rx,
        };
        Ok((limiter, writer))
    }

    /// Publishes the server's clock against `wall` instead of the system clock: the clock
    /// the rest of the process reads (a simulated one in tests).
    #[must_use]
    pub fn with_wall(mut self, wall: Arc<dyn Clock>) -> Self {
        self.wall = wall;
        self
    }

    fn now_us(&self) -> u64 {
        Instant::now().duration_since(self.origin).as_micros() as u64
    }

    /// Takes one of `window` in Redis, waiting as long as it says; gives up on Redis (the
    /// local window still applies) when it does not answer.
    async fn shared_socket_take(&self, window: &super::sockets::SocketWindow) {
        let key = self.socket_key(window.budget, window.key);
        loop {
            let member = format!("{}:{}", self.instance, rand::random::<u64>());
            let mut invocation = self.socket_take.key(&key);
            invocation
                .arg(window.limit)
                .arg(window.window_ms.saturating_mul(1_000) + 1_000_000)
                .arg(member);
            let mut conn = self.conn.clone();
            match bounded(invocation.invoke_async::<i64>(&mut conn)).await {
                Ok(0) => return,
                Ok(wait_us) => {
                    tokio::time::sleep(Duration::from_micros(wait_us.max(1) as u64)).await;
                }
                Err(error) => {
                    tracing::debug!(%error, "socket window in redis unreachable; the local one applies");
                    return;
                }
            }
        }
    }

    fn socket_key(&self, budget: super::sockets::SocketBudget, key: u64) -> String {
        format!("{}:ws:{}:{}", self.prefix, budget.name(), key)
    }

    /// Opens one of the address's socket slots in Redis as `member`, waiting while every
    /// slot is held (by any instance). False when Redis does not answer (the local count
    /// still applies).
    async fn shared_socket_open(
        &self,
        window: &super::sockets::SocketWindow,
        member: &str,
    ) -> bool {
        let key = self.socket_key(window.budget, window.key);
        loop {
            let mut invocation = self.socket_open.key(&key);
            invocation
                .arg(window.limit)
                .arg(SOCKET_LEASE.as_micros() as u64)
                .arg(member);
            let mut conn = self.conn.clone();
            match bounded(invocation.invoke_async::<i64>(&mut conn)).await {
                Ok(0) => return true,
                Ok(wait_us) => {
                    tokio::time::sleep(Duration::from_micros(wait_us.max(1) as u64)).await;
                }
                Err(error) => {
                    tracing::debug!(%error, "socket count in redis unreachable; the local one applies");
                    return false;
                }
            }
        }
    }

    /// Gives a socket slot in Redis back, in the background: the caller may be a drop.
    /// Were the release lost, the lease would end the slot.
    fn release_socket_slot(&self, egress: u64, member: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let key = self.socket_key(super::sockets::SocketBudget::Sockets, egress);
        let mut conn = self.conn.clone();
        runtime.spawn(async move {
            let released: redis::RedisResult<i64> = bounded(
                redis::cmd("ZREM")
                    .arg(key)
                    .arg(member)
                    .query_async(&mut conn),
            )
            .await;
            if let Err(error) = released {
                tracing::debug!(%error, "socket slot in redis not released; its lease ends it");
            }
        });
    }

    /// Renews this instance's socket leases when they are due.
    async fn renew_socket_leases(&self) {
        let due: Vec<(u64, Vec<String>)> = {
            let mut leases = Self::lock(&self.socket_leases);
            let now = Instant::now();
            if leases
                .renewed
                .is_some_and(|at| now.duration_since(at) < SOCKET_RENEW_EVERY)
            {
                return;
            }
            leases.renewed = Some(now);
            leases
                .members
                .iter()
                .filter(|(_, members)| !members.is_empty())
                .map(|(key, members)| (*key, members.clone()))
                .collect()
        };
        for (key, members) in due {
            let mut invocation = self
                .socket_renew
                .key(self.socket_key(super::sockets::SocketBudget::Sockets, key));
            invocation.arg(SOCKET_LEASE.as_micros() as u64);
            for member in &members {
                invocation.arg(member);
            }
            let mut conn = self.conn.clone();
            if let Err(error) = bounded(invocation.invoke_async::<i64>(&mut conn)).await {
                tracing::debug!(%error, "socket leases in redis not renewed");
            }
        }
    }

    /// What the wall clock read at this limiter's origin, worked out from its reading now.
    fn wall_at_origin(&self, now_us: u64) -> i64 {
        self.wall.now_us() as i64 - now_us as i64
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where admissions come from now.
    pub fn backend(&self) -> Backend {
        match &*Self::lock(&self.link) {
            Link::Up { .. } => Backend::Redis,
            Link::Unknown | Link::Down { .. } => Backend::Fallback,
        }
    }

    fn scope_name(&self, route: &Route) -> &str {
        let (list, key) = match route.scope {
            Scope::Ip => (&self.names.egresses, route.keys.egress),
            Scope::Account => (&self.names.accounts, route.keys.account),
        };
        list.get(usize::from(key))
            .or_else(|| list.first())
            .map_or("default", String::as_str)
    }

    fn egress_name(&self, egress: u16) -> &str {
        self.names
            .egresses
            .get(usize::from(egress))
            .map_or("default", String::as_str)
    }

    /// The keys of `route` on its egress: endpoint, category total, overall, the endpoint's
    /// hold and pace.
    fn keys(&self, route: &Route) -> [String; 5] {
        let p = &self.prefix;
        let cat = route.category.name();
        let scope = self.scope_name(route);
        let ep = route.endpoint;
        [
            format!("{p}:{cat}:{scope}:{ep}"),
            format!("{p}:{cat}:{scope}"),
            format!("{p}:overall:{}", self.egress_name(route.keys.egress)),
            format!("{p}:hold:{cat}:{scope}:{ep}"),
            format!("{p}:pace:{cat}:{scope}:{ep}"),
        ]
    }

    /// The category's total, 0 for none.
    fn total_limit(&self, route: &Route) -> u32 {
        self.limits.total(route.category).unwrap_or(0)
    }

    async fn call_admit(
        &self,
        epoch: &str,
        member: &str,
        candidates: &[Route],
    ) -> redis::RedisResult<Verdict> {
        let mut invocation = self.admit.prepare_invoke();
        invocation.key(format!("{}:epoch", self.prefix));
        invocation
            .arg(epoch)
            .arg(member)
            .arg(IN_FLIGHT_MAX_US)
            .arg(candidates.len());
        for route in candidates {
            let [ep, total, overall, hold, pace] = self.keys(route);
            invocation
                .key(ep)
                .key(total)
                .key(overall)
                .key(hold)
                .key(pace);
            let limit = self.limits.endpoint_limit(route);
            invocation
                .arg(limit)
                .arg(SERVER_WINDOW_US)
                .arg(self.total_limit(route))
                .arg(SERVER_WINDOW_US)
                .arg(self.limits.overall_per_minute)
                .arg(60 * SERVER_WINDOW_US)
                .arg(SERVER_WINDOW_US / u64::from(limit.max(1)))
                .arg(route.endpoint);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<redis::Value> = bounded(invocation.invoke_async(&mut conn)).await?;
        let int = |i: usize| match reply.get(i) {
            Some(redis::Value::Int(v)) => Ok(*v),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected reply from the admission script",
            ))),
        };
        Ok(match int(0)? {
            1 => Verdict::Admitted {
                candidate: int(1)?.max(0) as usize,
                redis_now: int(2)?.max(0) as u64,
                in_window: int(3)?.clamp(0, i64::from(u32::MAX)) as u32,
                limit: int(4)?.clamp(0, i64::from(u32::MAX)) as u32,
            },
            2 => Verdict::Epoch(match reply.get(3) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            }),
            _ => Verdict::Wait(
                Duration::from_micros(int(1)?.max(0) as u64),
                int(3)?.clamp(0, i64::from(u32::MAX)) as u32,
            ),
        })
    }

    /// Learns the epoch, starting one when Redis has none (first use, or state lost).
    async fn learn_epoch(&self) -> redis::RedisResult<String> {
        let key = format!("{}:epoch", self.prefix);
        let fresh = format!("{}-{}", self.instance, rand::random::<u32>());
        let mut conn = self.conn.clone();
        let set = redis::cmd("SET")
            .arg(&key)
            .arg(&fresh)
            .arg("NX")
            .arg("GET")
            .to_owned();
        let previous: Option<String> = bounded(set.query_async(&mut conn)).await?;
        Ok(previous.unwrap_or(fresh))
    }

    /// Marks Redis unavailable (or its state lost) at `now`, saying so once per outage.
    fn went_down(&self, now: u64, cause: &str) {
        let mut link = Self::lock(&self.link);
        match &mut *link {
            Link::Down {
                retry_at, attempt, ..
            } => {
                *attempt += 1;
                let delay = (RETRY_MIN_US << (*attempt).min(8)).min(RETRY_MAX_US);
                *retry_at = now + delay;
            }
            Link::Up { .. } | Link::Unknown => {
                let first = matches!(*link, Link::Unknown);
                tracing::error!(
                    target: crate::core::RATE_LOG,
                    event = %"redis_down",
                    redis = %redact_url(&self.url),
                    cause = %cause,
                    fallback_per_sec = self.share.counters(Category::Market).limit,
                    "{} redis at {}: {cause}; admitting from this instance's fallback share of each budget (limits.redis_fallback_share) until it is back",
                    if first { "cannot reach" } else { "lost" },
                    redact_url(&self.url),
                );
                *link = Link::Down {
                    hold_until: now + OUTAGE_HOLD_US,
                    retry_at: now + RETRY_MIN_US,
                    attempt: 0,
                };
            }
        }
        drop(link);
        self.changed.notify_waiters();
    }

    /// Resets after Redis lost the windows it held (a restart): like an outage that
    /// ended at once.
    fn state_lost(&self, now: u64, epoch: String) {
        tracing::error!(
            target: crate::core::RATE_LOG,
            event = %"redis_reset",
            redis = %redact_url(&self.url),
            "redis at {} lost the shared windows (restarted?); holding a window, then keeping to the fallback share for {} ms",
            redact_url(&self.url),
            (OUTAGE_HOLD_US + GRACE_US) / 1_000,
        );
        // The hold: no admission until what was admitted before has left the window.
        *Self::lock(&self.link) = Link::Up {
            epoch,
            grace_until: now + OUTAGE_HOLD_US + GRACE_US,
            hold_until: now + OUTAGE_HOLD_US,
        };
    }

    fn remember(&self, id: u64, pending: Pending) {
        let mut map = Self::lock(&self.pending);
        map.insert(id, pending);
        while map.len() > PENDING_MAX {
            map.pop_first();
        }
    }

    async fn wait(&self, at: u64, changed: tokio::sync::futures::Notified<'_>) {
        let now = self.now_us();
        let sleep = Duration::from_micros(at.saturating_sub(now)).min(POLL_MAX);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = changed => {}
        }
    }

    async fn acquire_inner(&self, route: Route) -> Permit {
        let requested = Instant::now();
        let _gate = self.gates.enter(&route).await;
        let candidates: Vec<Route> = route
            .egress_candidates()
            .map(|e| route.on_egress(e))
            .collect();
        let mut share_permit: Option<Permit> = None;
        loop {
            let now = self.now_us();
            let changed = self.changed.notified();
            let link = Self::lock(&self.link).clone();
            let (use_redis, use_share) = match &link {
                Link::Unknown => (true, false),
                Link::Up { grace_until, .. } => (true, now < *grace_until),
                Link::Down { retry_at, .. } => (now >= *retry_at, true),
            };
            let hold = match &link {
                Link::Down { hold_until, .. } | Link::Up { hold_until, .. } => *hold_until,
                Link::Unknown => 0,
            };
            if use_share && share_permit.is_none() {
                if now < hold {
                    self.wait(hold, changed).await;
                    continue;
                }
                share_permit = Some(self.share.acquire(route).await);
                continue;
            }
            if !use_redis {
                if let Some(permit) = share_permit.take() {
                    return self.admitted(
                        &route.on_egress(permit.egress),
                        requested,
                        Pending {
                            shared: None,
                            share: Some(permit),
                        },
                    );
                }
                let retry_at = match link {
                    Link::Down { retry_at, .. } => retry_at,
                    _ => now,
                };
                self.wait(retry_at, changed).await;
                continue;
            }
            let epoch = match &link {
                Link::Up { epoch, .. } => epoch.clone(),
                _ => match self.learn_epoch().await {
                    Ok(epoch) => {
                        self.came_up(now, epoch.clone(), &link);
                        continue;
                    }
                    Err(e) => {
                        self.went_down(now, &e.to_string());
                        continue;
                    }
                },
            };
            let member = format!(
                "{}:{}",
                self.instance,
                self.members.fetch_add(1, Ordering::Relaxed)
            );
            let asked = self.now_us();
            match self.call_admit(&epoch, &member, &candidates).await {
                Ok(Verdict::Admitted {
                    candidate,
                    redis_now,
                    in_window,
                    limit,
                }) => {
                    self.saw_limit(route.category, limit);
                    let chosen = candidates.get(candidate).copied().unwrap_or(route);
                    self.fleet_in_window[route.category.index()]
                        .store(u64::from(in_window), Ordering::Relaxed);
                    // The share's permit was taken for whichever egress it chose; the
                    // shared windows decide where the request goes.
                    return self.admitted(
                        &chosen,
                        requested,
                        Pending {
                            shared: Some(Shared {
                                redis_at: redis_now,
                                asked,
                                route: chosen,
                                member,
                            }),
                            share: share_permit.take(),
                        },
                    );
                }
                Ok(Verdict::Wait(wait, limit)) => {
                    self.saw_limit(route.category, limit);
                    self.wait(asked + wait.as_micros() as u64, changed).await;
                }
                Ok(Verdict::Epoch(seen)) => {
                    if seen.is_empty() {
                        match self.learn_epoch().await {
                            Ok(epoch) => self.state_lost(self.now_us(), epoch),
                            Err(e) => self.went_down(self.now_us(), &e.to_string()),
                        }
                    } else {
                        self.state_lost(self.now_us(), seen);
                    }
                }
                Err(e) => self.went_down(self.now_us(), &e.to_string()),
            }
        }
    }

    /// Redis answered again (or for the first time) at `now`.
    fn came_up(&self, now: u64, epoch: String, before: &Link) {
        let grace_until = match before {
            Link::Down { .. } => {
                tracing::warn!(
                    target: crate::core::RATE_LOG,
                    event = %"redis_up",
                    redis = %redact_url(&self.url),
                    grace_ms = GRACE_US / 1_000,
                    "redis at {} is back; sharing through it again, within the fallback share for {} ms more",
                    redact_url(&self.url),
                    GRACE_US / 1_000,
                );
                now + GRACE_US
            }
            _ => 0,
        };
        let mut link = Self::lock(&self.link);
        if !matches!(*link, Link::Up { .. }) {
            *link = Link::Up {
                epoch,
                grace_until,
                hold_until: 0,
            };
        }
    }

    /// The fleet's limit for `category` as the last script saw it.
    fn saw_limit(&self, category: Category, limit: u32) {
        if limit > 0 {
            self.fleet_limit[category.index()].store(u64::from(limit), Ordering::Relaxed);
        }
    }

    fn admitted(&self, route: &Route, requested: Instant, pending: Pending) -> Permit {
        let now = self.now_us();
        let waited = Instant::now().duration_since(requested);
        let permit = Self::lock(&self.mirror).admit(*route, now, waited);
        self.remember(permit.id, pending);
        permit
    }

    fn queue_answer(
        &self,
        pending: &Pending,
        feedback: Feedback,
        adjustment: Option<Adjustment>,
        now: u64,
    ) {
        let Some(Shared {
            redis_at,
            asked,
            route,
            member,
        }) = &pending.shared
        else {
            return;
        };
        let (redis_at, asked) = (*redis_at, *asked);
        let counted_local = Self::lock(&self.mirror)
            .counted_by(now, feedback.server_time_ms())
            .max(asked);
        // Measured from just before we asked Redis, so the mapping can only err late.
        let counted = redis_at + (counted_local - asked);
        let [ep, total, overall, hold, _] = self.keys(route);
        let has_total = self.total_limit(route) > 0;
        let (kind, phase_us, least_pause_us) = match feedback {
            Feedback::Accepted { .. } => (0, 0, 0),
            Feedback::RateLimited { jitter, .. } => {
                let least = match adjustment {
                    Some(Adjustment::Paused { pause, .. }) => pause.as_micros() as u64,
                    _ => 0,
                };
                (1, probe_phase_us(jitter), least)
            }
            Feedback::Other { .. } => (2, 0, 0),
        };
        let answer = Answer {
            keys: [ep, total, overall, hold],
            member: member.clone(),
            kind,
            scores: [
                counted + SERVER_WINDOW_US,
                if has_total {
                    counted + SERVER_WINDOW_US
                } else {
                    0
                },
                counted + 60 * SERVER_WINDOW_US,
            ],
            admitted: redis_at,
            phase_us,
            least_pause_us,
            remaining: match feedback {
                Feedback::Accepted {
                    remaining: Some(r), ..
                } => i64::from(r),
                _ => -1,
            },
            endpoint: route.endpoint,
            category: route.category,
        };
        if self.answers.try_send(answer).is_err() {
            tracing::warn!(
                target: crate::core::RATE_LOG,
                event = %"redis_answer_dropped",
                "the queue of answers to redis is full; the request stays counted as in flight"
            );
        }
    }
}

impl RateLimiter for RedisLimiter {
    fn acquire(&self, route: Route) -> Acquire<'_> {
        Box::pin(self.acquire_inner(route))
    }

    fn feedback(&self, permit: &Permit, feedback: Feedback) -> Option<Adjustment> {
        let now = self.now_us();
        let adjustment = {
            let mut mirror = Self::lock(&self.mirror);
            let adjustment = mirror.feedback(permit, feedback, now);
            if let Some((lower, upper)) = mirror.offset().from_wall(now, self.wall_at_origin(now)) {
                self.clock.set_bounds_us(lower, upper);
            }
            adjustment
        };
        let pending = Self::lock(&self.pending).remove(&permit.id);
        // The mirror takes the other instances for strangers; the fleet's limit is
        // followed in Redis instead.
        let shared = pending.as_ref().is_some_and(|p| p.shared.is_some());
        let adjustment = match adjustment {
            Some(Adjustment::EffectiveLimit { .. }) if shared => None,
            other => other,
        };
        if let Some(pending) = pending {
            if let Some(share) = &pending.share {
                self.share.feedback(share, feedback);
            }
            self.queue_answer(&pending, feedback, adjustment, now);
        }
        self.changed.notify_waiters();
        adjustment
    }

    fn counters(&self, category: Category) -> CategoryCounters {
        let now = self.now_us();
        let backend = self.backend();
        let mirror = &mut Self::lock(&self.mirror);
        let clock_offset_us = mirror.offset().from_wall(now, self.wall_at_origin(now));
        let mut counters = CategoryCounters {
            clock_offset_us,
            backend,
            ..mirror.counters(category, now)
        };
        if backend == Backend::Fallback {
            let share = self.share.counters(category);
            counters.effective_limit = share.limit;
            counters.available = share.available;
        } else {
            // What the fleet leaves, as of the last admission (the mirror sees only ours).
            let fleet = self.fleet_in_window[category.index()].load(Ordering::Relaxed);
            let fleet = u32::try_from(fleet).unwrap_or(u32::MAX);
            let limit = match self.fleet_limit[category.index()].load(Ordering::Relaxed) {
                0 => counters.limit,
                l => counters.limit.min(u32::try_from(l).unwrap_or(u32::MAX)),
            };
            // The mirror's share controller counts the other instances as strangers; what
            // the fleet is left is the figure that means something here.
            counters.effective_limit = limit;
            counters.foreign_milli = (counters.limit - limit) * 1_000;
            counters.available = limit.saturating_sub(fleet);
        }
        counters
    }

    fn endpoint_counters(&self) -> Vec<EndpointCounters> {
        let now = self.now_us();
        let backend = self.backend();
        let mirror = &mut Self::lock(&self.mirror);
        let clock_offset_us = mirror.offset().from_wall(now, self.wall_at_origin(now));
        let mut all = mirror.endpoint_counters(now);
        for e in &mut all {
            e.counters.clock_offset_us = clock_offset_us;
            e.counters.backend = backend;
        }
        all
    }

    fn egress_loads(&self) -> Vec<EgressLoad> {
        let now = self.now_us();
        Self::lock(&self.mirror).egress_loads(now)
    }

    // Connection attempts and open sockets are metered per address by Bitget, so every
    // instance leaving from it takes them from one window and one count in Redis (messages
    // and subscribes are per socket: this process's). While Redis is unreachable, the local
    // ones alone.
    fn socket_acquire<'a>(
        &'a self,
        windows: &'a [super::sockets::SocketWindow],
    ) -> super::SocketAcquire<'a> {
        use super::sockets::SocketBudget;
        Box::pin(async move {
            self.renew_socket_leases().await;
            // The local count first: a socket this process cannot open anyway holds no
            // slot in Redis while it waits. Dropped half way (a shutdown, a timeout), the
            // guard gives back what was taken.
            self.share.socket_acquire(windows).await;
            let mut taking = SocketTaking {
                limiter: self,
                local: windows
                    .iter()
                    .find(|w| w.budget == SocketBudget::Sockets)
                    .map(|w| w.key),
                slot: None,
            };
            for w in windows {
                match w.budget {
                    SocketBudget::Attempts => self.shared_socket_take(w).await,
                    SocketBudget::Sockets => {
                        let member = format!("{}:{}", self.instance, rand::random::<u64>());
                        taking.slot = Some((w.key, member.clone()));
                        if !self.shared_socket_open(w, &member).await {
                            taking.slot = None;
                        }
                    }
                    SocketBudget::Messages | SocketBudget::Subscribes => {}
                }
            }
            if let Some((egress, member)) = taking.slot.take() {
                Self::lock(&self.socket_leases)
                    .members
                    .entry(egress)
                    .or_default()
                    .push(member);
            }
            taking.local = None;
        })
    }

    fn socket_closed(&self, socket: u64, egress: u64) {
        self.share.socket_closed(socket, egress);
        // Any of this instance's slots of the address will do: they are alike.
        let member = Self::lock(&self.socket_leases)
            .members
            .get_mut(&egress)
            .and_then(Vec::pop);
        if let Some(member) = member {
            self.release_socket_slot(egress, member);
        }
    }

    fn socket_counters(
        &self,
    ) -> Vec<(super::sockets::SocketBudget, super::sockets::SocketCounters)> {
        self.share.socket_counters()
    }

    fn server_clock(&self) -> Arc<ServerClock> {
        Arc::clone(&self.clock)
    }
}

impl AnswerWriter {
    /// Writes answers until `stop`, then what is still queued (each at most one call
    /// timeout).
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let answer = tokio::select! {
                answer = self.rx.recv() => answer,
                () = stop.cancelled() => break,
            };
            let Some(answer) = answer else { return };
            self.write(answer).await;
        }
        while let Ok(answer) = self.rx.try_recv() {
            self.write(answer).await;
        }
    }

    async fn write(&mut self, answer: Answer) {
        let mut invocation = self.script.prepare_invoke();
        for key in &answer.keys {
            invocation.key(key);
        }
        invocation
            .arg(&answer.member)
            .arg(answer.kind)
            .arg(answer.scores[0])
            .arg(answer.scores[1])
            .arg(answer.scores[2])
            .arg(answer.admitted)
            .arg(answer.phase_us)
            .arg(answer.least_pause_us)
            .arg(SERVER_WINDOW_US)
            .arg(answer.remaining)
            .arg(answer.endpoint);
        // A lost answer leaves the request counted as in flight: safe. The admission
        // path notices the outage itself.
        let result: redis::RedisResult<i64> =
            bounded(invocation.invoke_async(&mut self.conn)).await;
        if let Ok(value) = result {
            if answer.kind == 1 && value > 0 {
                tracing::debug!(pause_ms = value / 1_000, "shared hold set in redis");
            }
            if answer.kind == 0 && value > 0 {
                self.fleet_limit[answer.category.index()]
                    .store(value.min(i64::from(u32::MAX)) as u64, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_scales_every_limit_and_keeps_one() {
        let limits = Limits::default();
        let share = share_limits(&limits, 1.0 / 3.0);
        assert_eq!(share.per_second, [6, 3, 3, 3]);
        assert_eq!(share.overall_per_minute, 2000);
        assert_eq!(share_limits(&limits, 0.01).per_second, [1, 1, 1, 1]);
    }

    #[test]
    fn a_bad_url_is_named() {
        let e = check_url("http://127.0.0.1:6379").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("limits.redis_url = \"http://127.0.0.1:6379\" is not a redis url"),
            "{e}"
        );
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://user:pw@redis.example:6380/1").is_ok());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://user:secret@10.0.0.1:6379/0"),
            "redis://user:***@10.0.0.1:6379/0"
        );
        assert_eq!(redact_url("redis://10.0.0.1/0"), "redis://10.0.0.1/0");
    }
}
