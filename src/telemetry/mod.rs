//! What the operator sees: rate-usage lines, the rate-limit event log, and the log files.
//!
//! Two files under the log directory, with names that never change so `tail -F` (Linux) and
//! `Get-Content -Wait -Tail 30` (Windows) keep following them:
//! - `trading_unified.log`: every event at the configured level;
//! - `bitget_rate_limits.log`: rate-limit events only (usage lines, 429s, backoffs, tier
//!   changes, limit following), everything emitted with target [`RATE_LOG`].
//!
//! Rotation is by size and copy-then-truncate ([`RotatingFile`]), written by hand because
//! tracing-appender's rolling files put the date in the live file's name, and crates such as
//! `file-rotate` rename the live file, which Windows refuses while PowerShell is tailing it
//! and which changes the file under a Windows reader. Copying keeps the live file's identity;
//! only the numbered copies (`.1` newest) are renamed. Writes go through tracing-appender's
//! non-blocking writer, in blocking mode so no line is dropped, flushed when the guards drop.

pub mod clients;
pub mod config;
pub mod metrics;
pub mod usage;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::core::clock::Clock;
use crate::feed::{code_counts, FeedSnapshot, FeedStats};
use crate::limiter::{
    Backend, Category, CategoryCounters, EgressLoad, EndpointCounters, RateLimiter,
};
use crate::scheduler::tiers::Tier;
use crate::scheduler::PollStats;
use crate::store::Store;

pub use crate::core::RATE_LOG;
/// File name of the unified log.
pub const UNIFIED_FILE: &str = "trading_unified.log";
/// File name of the rate-limit log.
pub const RATE_FILE: &str = "bitget_rate_limits.log";

pub use crate::limiter::recent::RecentRateLimits;

/// Whether a category gets usage lines: market always, the others once they were used,
/// so categories nothing uses stay quiet rather than print zeros forever.
pub fn is_reported(category: Category, counters: &CategoryCounters) -> bool {
    counters.admitted > 0 || category == Category::Market
}

/// The status marker of a usage line.
pub fn status_marker(used_pct: f64, ascii: bool) -> &'static str {
    match (used_pct, ascii) {
        (p, false) if p < 70.0 => "🟢",
        (p, false) if p < 90.0 => "🟠",
        (_, false) => "🔴",
        (p, true) if p < 70.0 => "[ok]",
        (p, true) if p < 90.0 => "[warm]",
        (_, true) => "[hot]",
    }
}

/// One usage line's figures for one category and interval.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageLine {
    pub category: Category,
    pub requests: u64,
    pub per_second: f64,
    pub limit: u32,
    pub used_pct: f64,
    pub waited: u64,
    pub wait_total: Duration,
    pub rate_limited_60s: usize,
    pub symbols_per_iteration: usize,
    /// The interval the figures cover.
    pub interval: Duration,
    /// The adaptive tier at the end of the interval.
    pub tier: Tier,
    /// The limit in force at the end of the interval: lower than `limit` while the server
    /// allows less or other clients take part of the budget.
    pub effective_limit: u32,
    /// Other clients' share of the budget at the end of the interval, in percent.
    pub foreign_pct: f64,
    /// The margin in force (clock-offset width plus the stamp's resolution), in ms.
    pub margin_ms: Option<f64>,
    /// Bounds on Bitget's clock minus ours, in ms.
    pub offset_ms: Option<(f64, f64)>,
    /// Where admissions came from at the end of the interval.
    pub backend: Backend,
    /// Endpoints of the category that carried requests in the interval.
    pub endpoints: usize,
}

impl UsageLine {
    /// The same line judged by its endpoints: Bitget meters each on its own, so the
    /// category is as full as its fullest endpoint (`fullest_pct` of that endpoint's limit),
    /// whatever the category's total rate. `None` leaves the line as it is.
    #[must_use]
    pub fn by_endpoints(mut self, endpoints: usize, fullest_pct: Option<f64>) -> Self {
        self.endpoints = endpoints;
        if let Some(pct) = fullest_pct {
            self.used_pct = pct;
        }
        self
    }

    /// Figures for the interval between two counter snapshots `elapsed` apart.
    pub fn between(
        category: Category,
        before: &CategoryCounters,
        after: &CategoryCounters,
        elapsed: Duration,
        rate_limited_60s: usize,
        symbols_per_iteration: usize,
        tier: Tier,
    ) -> Self {
        let requests = after.admitted - before.admitted;
        let secs = elapsed.as_secs_f64().max(1e-9);
        let per_second = requests as f64 / secs;
        let used_pct = if after.limit == 0 {
            0.0
        } else {
            100.0 * per_second / f64::from(after.limit)
        };
        Self {
            category,
            requests,
            per_second,
            limit: after.limit,
            used_pct,
            waited: after.waited - before.waited,
            wait_total: after.wait_total.saturating_sub(before.wait_total),
            rate_limited_60s,
            symbols_per_iteration,
            interval: elapsed,
            tier,
            effective_limit: after.effective_limit,
            foreign_pct: after.foreign_pct(),
            margin_ms: after.clock_margin_us.map(|us| us as f64 / 1_000.0),
            offset_ms: after
                .clock_offset_us
                .map(|(lo, hi)| (lo as f64 / 1_000.0, hi as f64 / 1_000.0)),
            backend: after.backend,
            endpoints: 0,
        }
    }

    /// Emits the line to the rate log (and the console).
    pub fn emit(&self, ascii: bool) {
        self.emit_as("usage", ascii);
    }

    /// Emits the whole-session figures at shutdown, in the same format.
    pub fn emit_summary(&self, ascii: bool) {
        self.emit_as("session", ascii);
    }

    fn emit_as(&self, event: &'static str, ascii: bool) {
        tracing::info!(
            target: RATE_LOG,
            event = %event,
            category = %self.category,
            requests = self.requests,
            req_per_s = %format_args!("{:.2}", self.per_second),
            limit = self.limit,
            used_pct = %format_args!("{:.1}", self.used_pct),
            status = %status_marker(self.used_pct, ascii),
            waited = self.waited,
            wait_ms = self.wait_total.as_millis() as u64,
            rate_limited_60s = self.rate_limited_60s,
            symbols_per_iteration = self.symbols_per_iteration,
            tier = %self.tier,
            interval_ms = self.interval.as_millis() as u64,
            effective_limit = self.effective_limit,
            foreign_pct = %format_args!("{:.1}", self.foreign_pct),
            margin_ms = %OptMs(self.margin_ms),
            offset_ms = %OptRange(self.offset_ms),
            backend = %self.backend,
            endpoints = self.endpoints,
            "rate usage"
        );
    }
}

/// A millisecond figure with one decimal, or `-` when unknown.
struct OptMs(Option<f64>);

impl std::fmt::Display for OptMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ms) => write!(f, "{ms:.1}"),
            None => f.write_str("-"),
        }
    }
}

/// A millisecond range `lo..hi`, signed, or `-` when unknown.
struct OptRange(Option<(f64, f64)>);

impl std::fmt::Display for OptRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((lo, hi)) => write!(f, "{lo:+.1}..{hi:+.1}"),
            None => f.write_str("-"),
        }
    }
}

/// A final partial interval shorter than this gets no usage line.
const MIN_FINAL_INTERVAL: Duration = Duration::from_millis(500);

/// At most this many stale streams are named in a summary line; the count is always exact.
const STALE_NAMED: usize = 10;

/// Emits the interval's staleness summary: how many streams are stale, the oldest first.
pub fn emit_stale_summary(store: &Store, server_ms: u64) {
    let stale = store.stale(server_ms);
    let mut named: Vec<String> = stale
        .iter()
        .take(STALE_NAMED)
        .map(|a| format!("{}:{}", a.symbol, a.timeframe))
        .collect();
    if stale.len() > STALE_NAMED {
        named.push(format!("+{} more", stale.len() - STALE_NAMED));
    }
    let oldest_s = stale.first().map_or(0, |a| a.age_ms / 1000);
    let streams = store.watched();
    if stale.is_empty() {
        tracing::info!(target: RATE_LOG, event = %"stale_summary", stale = 0, streams, "no stale symbols");
    } else {
        tracing::warn!(target: RATE_LOG, event = %"stale_summary", stale = stale.len(), streams, oldest_s, symbols = %named.join(","), "stale symbols");
    }
}

/// `requests` over `elapsed` as a percentage of `limit` per second; 0 without a limit.
pub fn used_pct(requests: u64, limit: u32, elapsed: Duration) -> f64 {
    if limit == 0 {
        return 0.0;
    }
    100.0 * requests as f64 / (f64::from(limit) * elapsed.as_secs_f64().max(1e-9))
}

/// One endpoint that was used between two snapshots: its counters after, and before.
fn endpoint_intervals<'a>(
    before: &'a [EndpointCounters],
    after: &'a [EndpointCounters],
) -> impl Iterator<Item = (&'a EndpointCounters, CategoryCounters)> + 'a {
    after.iter().filter_map(move |e| {
        let was = before
            .iter()
            .find(|b| b.category == e.category && b.endpoint == e.endpoint)
            .map(|b| b.counters)
            .unwrap_or_default();
        let used = e.counters.admitted > was.admitted || e.counters.rate_limited > was.rate_limited;
        used.then_some((e, was))
    })
}

/// Per category, between two snapshots `elapsed` apart: how many endpoints carried
/// requests, and the fullest one's use of its own limit (percent). Bitget meters each
/// endpoint on its own, so that is how full the category ran.
pub fn endpoint_use(
    before: &[EndpointCounters],
    after: &[EndpointCounters],
    elapsed: Duration,
) -> [(usize, Option<f64>); 4] {
    let mut used = [(0usize, None::<f64>); 4];
    for (e, was) in endpoint_intervals(before, after) {
        let pct = used_pct(
            e.counters.admitted - was.admitted,
            e.counters.limit,
            elapsed,
        );
        let slot = &mut used[e.category.index()];
        slot.0 += 1;
        slot.1 = Some(slot.1.map_or(pct, |p: f64| p.max(pct)));
    }
    used
}

/// Emits one line per endpoint that was used in the interval between the two snapshots:
/// this is where a budget runs out.
fn emit_endpoint_usage(before: &[EndpointCounters], after: &[EndpointCounters], elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    for (e, was) in endpoint_intervals(before, after) {
        let now = &e.counters;
        let requests = now.admitted - was.admitted;
        tracing::info!(
            target: RATE_LOG,
            event = %"endpoint_usage",
            category = %e.category,
            endpoint = %crate::bitget::endpoints::path_of(e.endpoint),
            requests,
            req_per_s = %format_args!("{:.2}", requests as f64 / secs),
            limit = now.limit,
            used_pct = %format_args!("{:.1}", used_pct(requests, now.limit, elapsed)),
            waited = now.waited - was.waited,
            wait_ms = now.wait_total.saturating_sub(was.wait_total).as_millis() as u64,
            rate_limited = now.rate_limited - was.rate_limited,
            effective_limit = now.effective_limit,
            foreign_pct = %format_args!("{:.1}", now.foreign_pct()),
            interval_ms = elapsed.as_millis() as u64,
            "endpoint usage"
        );
    }
}

/// Emits the WebSocket feed's line for the interval between two snapshots, when it runs:
/// sockets up, channels, pushes, reconnects, error events by code, and how closed candles
/// were proven (over the socket, or by REST) and what REST read for it. `event` is
/// `feed_usage` for an interval, `feed_session` for the whole run.
pub fn emit_feed_usage(
    event: &'static str,
    before: &FeedSnapshot,
    after: &FeedSnapshot,
    elapsed: Duration,
) {
    if !after.is_active() {
        return;
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    let pushes = after.pushes - before.pushes;
    let errors: BTreeMap<u32, u64> = after
        .errors
        .iter()
        .map(|(code, n)| (*code, n - before.errors.get(code).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    tracing::info!(
        target: RATE_LOG,
        event = %event,
        sockets = after.sockets,
        sockets_up = after.sockets_up,
        channels = after.channels,
        pushes,
        push_per_s = %format_args!("{:.1}", pushes as f64 / secs),
        reconnects = after.reconnects - before.reconnects,
        ws_errors = %code_counts(&errors).unwrap_or_else(|| "-".to_owned()),
        closed_ws = after.closed_ws - before.closed_ws,
        closed_rest = after.closed_rest - before.closed_rest,
        closed_built = after.closed_built - before.closed_built,
        build_mismatches = after.build_mismatches - before.build_mismatches,
        rest_reads = after.rest_reads - before.rest_reads,
        fallback_reads = after.fallback_reads - before.fallback_reads,
        close_lag_p50_ms = %after.close_lag_p50_ms.map_or("-".to_owned(), |v| v.to_string()),
        close_lag_p99_ms = %after.close_lag_p99_ms.map_or("-".to_owned(), |v| v.to_string()),
        stalest_ms = after.stalest_ms,
        interval_ms = elapsed.as_millis() as u64,
        "websocket feed"
    );
}

/// Emits one line per egress (when there are several) with what it carried in the
/// interval between the two snapshots.
fn emit_egress_usage(
    names: &[String],
    before: &[EgressLoad],
    after: &[EgressLoad],
    elapsed: Duration,
) {
    if names.len() < 2 {
        return;
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    for load in after {
        let old = before
            .iter()
            .find(|b| b.egress == load.egress)
            .copied()
            .unwrap_or_default();
        let requests = load.admitted - old.admitted;
        let name = names
            .get(usize::from(load.egress))
            .map_or("?", String::as_str);
        tracing::info!(
            target: RATE_LOG,
            event = %"egress_usage",
            egress = %name,
            requests,
            req_per_s = %format_args!("{:.2}", requests as f64 / secs),
            rate_limited = load.rate_limited - old.rate_limited,
            in_window = load.in_window,
            interval_ms = elapsed.as_millis() as u64,
            "egress usage"
        );
    }
}

/// Emits a usage line per active category (and per egress when there are several), and a
/// staleness summary, every `interval` until `stop`.
#[allow(clippy::too_many_arguments)]
pub async fn report_usage(
    limiter: Arc<dyn RateLimiter>,
    recent: Arc<RecentRateLimits>,
    stats: Arc<PollStats>,
    store: Arc<Store>,
    feed: Arc<FeedStats>,
    wall: Arc<dyn Clock>,
    interval: Duration,
    ascii: bool,
    egress_names: Vec<String>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut before = Category::ALL.map(|c| limiter.counters(c));
    let mut endpoints_before = limiter.endpoint_counters();
    let mut egress_before = limiter.egress_loads();
    let mut feed_before = feed.snapshot();
    let mut last = Instant::now();
    let mut ticker = tokio::time::interval_at(last + interval, interval);
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let now = Instant::now();
        // The last, partial interval too, so the usage lines cover the whole run; unless it
        // is too short for its rate to mean anything.
        if stopping && now.duration_since(last) < MIN_FINAL_INTERVAL {
            return;
        }
        let endpoints_after = limiter.endpoint_counters();
        let elapsed = now.duration_since(last);
        emit_endpoint_usage(&endpoints_before, &endpoints_after, elapsed);
        let used = endpoint_use(&endpoints_before, &endpoints_after, elapsed);
        endpoints_before = endpoints_after;
        for (i, category) in Category::ALL.into_iter().enumerate() {
            let after = limiter.counters(category);
            if is_reported(category, &after) {
                UsageLine::between(
                    category,
                    &before[i],
                    &after,
                    now.duration_since(last),
                    recent.count(category),
                    stats.symbols_per_iteration.load(Ordering::Relaxed),
                    stats.tier(),
                )
                .by_endpoints(used[i].0, used[i].1)
                .emit(ascii);
            }
            before[i] = after;
        }
        let egress_after = limiter.egress_loads();
        emit_egress_usage(
            &egress_names,
            &egress_before,
            &egress_after,
            now.duration_since(last),
        );
        egress_before = egress_after;
        let feed_after = feed.snapshot();
        emit_feed_usage(
            "feed_usage",
            &feed_before,
            &feed_after,
            now.duration_since(last),
        );
        feed_before = feed_after;
        emit_stale_summary(&store, limiter.server_clock().server_ms(wall.now_ms()));
        if stopping {
            return;
        }
        last = now;
    }
}

/// How writing one log file goes: lines that could not be written (a full disk, a
/// revoked permission) are counted, and the operator is told on stderr when it starts
/// failing and when it writes again, since the log itself cannot say so.
#[derive(Debug, Default)]
pub struct FileHealth {
    dropped: AtomicU64,
    rotations_failed: AtomicU64,
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl FileHealth {
    fn write_failed(&self, path: &Path, error: &io::Error) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
        if !self.failing.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: cannot write log file {}: {error}; its lines are lost until it can be written again (free space or fix permissions)",
                path.display()
            );
        }
    }

    fn written(&self, path: &Path) {
        if self.failing.swap(false, Ordering::Relaxed) {
            eprintln!(
                "note: log file {} is written again; {} lines were lost so far",
                path.display(),
                self.dropped.load(Ordering::Relaxed)
            );
        }
    }

    fn rotation_failed(&self, path: &Path, error: &io::Error) {
        if self.rotations_failed.fetch_add(1, Ordering::Relaxed) == 0 {
            eprintln!(
                "warning: cannot rotate log file {}: {error}; the numbered copies are kept as they were and the file grows past [logging] max_file_mb until a rotation succeeds",
                path.display()
            );
        }
    }

    /// What went wrong over the run, as one line for the exit summary; `None` if nothing.
    pub fn problem(&self, path: &Path) -> Option<String> {
        let dropped = self.dropped.load(Ordering::Relaxed);
        let rotations = self.rotations_failed.load(Ordering::Relaxed);
        if dropped == 0 && rotations == 0 {
            return None;
        }
        let error = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        Some(format!(
            "log file {}: {dropped} lines could not be written{}{}",
            path.display(),
            if error.is_empty() {
                String::new()
            } else {
                format!(" ({error})")
            },
            if rotations > 0 {
                format!(", {rotations} rotations failed")
            } else {
                String::new()
            }
        ))
    }
}

/// A log file that rotates by size and keeps its name: copy to `.1`, then truncate.
///
/// A line is written whole or not at all: a failed write is cut back to the last whole
/// line, so a line written after the disk has room again never lands spliced onto half of
/// one. Rotation copies first and shifts the numbered copies only once the copy exists,
/// so a rotation that fails (no room for the copy) leaves every copy as it was.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
    /// After a failed rotation, the size at which the next is tried.
    retry_rotation_at: u64,
    health: Arc<FileHealth>,
}

impl RotatingFile {
    /// Opens (appending to) `path`; `max_bytes == 0` never rotates; `keep` numbered copies.
    ///
    /// # Errors
    /// The file cannot be created or opened for writing.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        // Not `append`: on Windows an append-only handle cannot truncate.
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        let size = file.seek(SeekFrom::End(0))?;
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            keep,
            retry_rotation_at: 0,
            health: Arc::default(),
        })
    }

    /// How writing has gone.
    pub fn health(&self) -> Arc<FileHealth> {
        Arc::clone(&self.health)
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep > 0 {
            let mut fresh = self.path.clone().into_os_string();
            fresh.push(".rotating");
            let fresh = PathBuf::from(fresh);
            if let Err(error) = fs::copy(&self.path, &fresh) {
                let _ = fs::remove_file(&fresh);
                return Err(error);
            }
            for n in (1..self.keep).rev() {
                match fs::rename(self.numbered(n), self.numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            fs::rename(&fresh, self.numbered(1))?;
        }
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.size = 0;
        self.retry_rotation_at = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    /// Writes `buf` (one log line: the writer hands over whole lines) or drops it, counted.
    /// Never fails: the logging worker would drop the error silently.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.max_bytes > 0
            && self.size > 0
            && self.size + buf.len() as u64 > self.max_bytes
            && self.size >= self.retry_rotation_at
        {
            if let Err(error) = self.rotate() {
                self.health.rotation_failed(&self.path, &error);
                self.retry_rotation_at = self.size + (self.max_bytes / 8).max(1);
            }
        }
        match self.file.write_all(buf) {
            Ok(()) => {
                self.size += buf.len() as u64;
                self.health.written(&self.path);
            }
            Err(error) => {
                // Whatever part of the line went in is taken back out.
                let _ = self.file.set_len(self.size);
                let _ = self.file.seek(SeekFrom::Start(self.size));
                self.health.write_failed(&self.path, &error);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Where and how much to log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// Level of the unified file: error, warn, info, debug or trace.
    pub level: LevelFilter,
    /// Rotate a file when it would grow past this; 0 never rotates.
    pub max_file_bytes: u64,
    /// Rotated copies kept per file.
    pub keep_files: usize,
}

/// Keeps the log writers alive; dropping it flushes both files.
#[derive(Debug)]
pub struct LogGuards {
    unified: WorkerGuard,
    rate: WorkerGuard,
    health: Vec<(PathBuf, Arc<FileHealth>)>,
}

impl LogGuards {
    /// Flushes both files and says what could not be written over the run, a line each.
    pub fn finish(self) -> Vec<String> {
        let Self {
            unified,
            rate,
            health,
        } = self;
        drop(unified);
        drop(rate);
        health
            .iter()
            .filter_map(|(path, h)| h.problem(path))
            .collect()
    }
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "cannot create log directory {path}: {source}; set [logging] dir to a writable folder"
    )]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot open log file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("logging was already set up in this process")]
    AlreadySet,
}

/// Sets up console, unified file and rate file logging for the process.
///
/// # Errors
/// The directory or a file cannot be created, or logging was already initialised.
pub fn init_logging(config: &LogConfig) -> Result<LogGuards, LogError> {
    fs::create_dir_all(&config.dir).map_err(|source| LogError::Dir {
        path: config.dir.clone(),
        source,
    })?;
    let mut health = Vec::new();
    let mut open = |name: &str| {
        let path = config.dir.join(name);
        let file = RotatingFile::open(&path, config.max_file_bytes, config.keep_files).map_err(
            |source| LogError::File {
                path: path.clone(),
                source,
            },
        )?;
        health.push((path, file.health()));
        Ok::<_, LogError>(file)
    };
    let (unified, unified_guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(open(UNIFIED_FILE)?);
    let (rate, rate_guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(open(RATE_FILE)?);
    let console_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(console_colour())
                .with_writer(io::stderr)
                .with_filter(console_filter),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(unified)
                .with_filter(config.level),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_target(false)
                .with_writer(rate)
                .with_filter(Targets::new().with_target(RATE_LOG, LevelFilter::TRACE)),
        )
        .try_init()
        .map_err(|_| LogError::AlreadySet)?;
    Ok(LogGuards {
        unified: unified_guard,
        rate: rate_guard,
        health,
    })
}

/// Colour on the console only for a person at a terminal, and never with `NO_COLOR` set
/// (no-color.org: any non-empty value).
fn console_colour() -> bool {
    use std::io::IsTerminal as _;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_follow_the_thresholds() {
        assert_eq!(status_marker(69.9, false), "🟢");
        assert_eq!(status_marker(70.0, false), "🟠");
        assert_eq!(status_marker(89.9, false), "🟠");
        assert_eq!(status_marker(98.0, false), "🔴");
        assert_eq!(status_marker(50.0, true), "[ok]");
        assert_eq!(status_marker(95.0, true), "[hot]");
    }

    #[test]
    fn usage_line_figures_come_from_counter_deltas() {
        let before = CategoryCounters {
            admitted: 100,
            waited: 10,
            wait_total: Duration::from_millis(500),
            limit: 20,
            ..CategoryCounters::default()
        };
        let after = CategoryCounters {
            admitted: 296,
            waited: 200,
            wait_total: Duration::from_millis(4500),
            ..before
        };
        let line = UsageLine::between(
            Category::Market,
            &before,
            &after,
            Duration::from_secs(10),
            3,
            2,
            Tier::Slow,
        );
        assert_eq!(line.requests, 196);
        assert!((line.per_second - 19.6).abs() < 1e-9);
        assert!((line.used_pct - 98.0).abs() < 1e-9);
        assert_eq!(line.waited, 190);
        assert_eq!(line.wait_total, Duration::from_secs(4));
        assert_eq!(line.interval, Duration::from_secs(10));
        assert_eq!(line.tier, Tier::Slow);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_line_that_cannot_be_written_is_counted_not_lost_silently() {
        // /dev/full answers every write with ENOSPC, like a full disk.
        let mut file = RotatingFile::open(Path::new("/dev/full"), 0, 0).unwrap();
        let health = file.health();
        assert_eq!(health.problem(Path::new("/dev/full")), None);
        file.write_all(b"one line\n").unwrap();
        file.write_all(b"another\n").unwrap();
        let problem = health.problem(Path::new("/dev/full")).unwrap();
        assert!(
            problem.contains("2 lines could not be written"),
            "{problem}"
        );
        assert!(problem.contains("No space left on device"), "{problem}");
    }

    #[test]
    fn a_failed_rotation_keeps_every_copy_as_it_was() {
        let dir = std::env::temp_dir().join(format!("bgp-rotate-fail-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.log");
        let mut file = RotatingFile::open(&path, 10, 2).unwrap();
        for line in ["aaaaaa\n", "bbbbbb\n", "cccccc\n"] {
            file.write_all(line.as_bytes()).unwrap();
        }
        // The copy cannot be made (its name is taken by a folder): nothing shifts.
        fs::create_dir(dir.join("r.log.rotating")).unwrap();
        file.write_all(b"dddddd\n").unwrap();
        assert_eq!(fs::read_to_string(dir.join("r.log.1")).unwrap(), "bbbbbb\n");
        assert_eq!(fs::read_to_string(dir.join("r.log.2")).unwrap(), "aaaaaa\n");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "cccccc\ndddddd\n",
            "the live file keeps every line, past its size"
        );
        let problem = file.health().problem(&path).unwrap();
        assert!(problem.contains("1 rotations failed"), "{problem}");
        // Room again: the next rotation goes through and shifts the copies once.
        fs::remove_dir(dir.join("r.log.rotating")).unwrap();
        for _ in 0..2000 {
            file.write_all(b"e\n").unwrap();
            if fs::read_to_string(dir.join("r.log.1")).unwrap() != "bbbbbb\n" {
                break;
            }
        }
        assert!(fs::read_to_string(dir.join("r.log.1"))
            .unwrap()
            .starts_with("cccccc\ndddddd\n"));
        assert_eq!(fs::read_to_string(dir.join("r.log.2")).unwrap(), "bbbbbb\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_the_live_name_and_numbered_copies() {
        let dir = std::env::temp_dir().join(format!("bgp-rotate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.log");
        let mut file = RotatingFile::open(&path, 10, 2).unwrap();
        for line in ["aaaaaa\n", "bbbbbb\n", "cccccc\n", "dddddd\n"] {
            file.write_all(line.as_bytes()).unwrap();
        }
        file.flush().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "dddddd\n");
        assert_eq!(fs::read_to_string(dir.join("r.log.1")).unwrap(), "cccccc\n");
        assert_eq!(fs::read_to_string(dir.join("r.log.2")).unwrap(), "bbbbbb\n");
        assert!(!dir.join("r.log.3").exists(), "only `keep` copies are kept");
        // Reopening appends rather than truncating.
        drop(file);
        let mut again = RotatingFile::open(&path, 100, 2).unwrap();
        again.write_all(b"eeeeee\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "dddddd\neeeeee\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
