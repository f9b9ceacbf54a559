//! `bitget-poller usage`: the rate log read back into a report and a chart.
//!
//! Operators decide from this whether they can add symbols or must cut them, so every figure
//! comes from the log's own usage lines (one per category per interval, written by
//! [`crate::telemetry`]) and rate-limit events, never from estimates:
//! - mean req/s is requests over the time the intervals cover, so a short final interval
//!   weighs what it lasted;
//! - p95 req/s is the nearest-rank 95th percentile of the per-interval rates;
//! - % of limit is requests over the budget those intervals offered (limit × duration);
//! - 429s are the `event=rate_limited` lines, waits the usage lines' `waited` and `wait_ms`;
//! - time in each adaptive tier is the time the busiest category's intervals cover, split
//!   exactly at the `tier_change` events (see [`tier_spans`]).
//!
//! Rotated files are read with the live one, oldest first. A line that cannot be read is
//! counted and the first few are shown with file and line number; it never stops the report.

pub mod logline;
pub mod plot;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::limiter::Category;
use crate::scheduler::tiers::Tier;
use crate::telemetry::clients::ClientCounters;
use crate::telemetry::RATE_FILE;

/// How many unreadable lines the report quotes.
const QUOTED_UNREADABLE: usize = 5;

/// Why a report could not be made at all.
#[derive(Debug, Error)]
pub enum UsageError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no rate log at {0}; run `bitget-poller run` or `demo` first, or name the log files")]
    NoLog(PathBuf),
    #[error("--since {since} is after --until {until}; swap them")]
    EmptyWindow { since: String, until: String },
}

/// One usage line: a category's figures over one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// When the interval ended.
    pub end: SystemTime,
    pub category: Category,
    pub requests: u64,
    pub duration: Duration,
    pub limit: u32,
    /// How full the category ran, in percent: its fullest endpoint's use of its own limit
    /// in lines that say (`used_pct`), the category's requests over its limit otherwise.
    pub used_pct: f64,
    pub waited: u64,
    pub wait: Duration,
    pub tier: Option<Tier>,
    /// The server-side view, in lines that carry it: other clients' share of the budget
    /// (percent), the margin in force (ms) and the clock-offset bounds (ms).
    pub foreign_pct: Option<f64>,
    pub margin_ms: Option<f64>,
    pub offset_ms: Option<(f64, f64)>,
    /// Where admissions came from at its end (local, redis, fallback), in lines that say.
    pub backend: Option<String>,
}

impl Interval {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    /// When the interval began; never before 1970, whatever the line claims.
    pub fn start(&self) -> SystemTime {
        self.end
            .checked_sub(self.duration)
            .filter(|t| *t >= UNIX_EPOCH)
            .unwrap_or(UNIX_EPOCH)
    }
}

/// One staleness summary line.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleSummary {
    pub time: SystemTime,
    pub stale: usize,
    pub streams: usize,
    /// `SYMBOL:timeframe` of the stale streams named in the line.
    pub named: Vec<String>,
}

/// A line the report could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub file: PathBuf,
    pub line: u64,
    pub reason: String,
}

/// Everything the rate log says, in time order, within the requested window.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RateLog {
    pub files: Vec<PathBuf>,
    /// Non-empty lines read (in the window or not).
    pub lines: u64,
    pub intervals: Vec<Interval>,
    /// Rate-limit rejections: when, and which category.
    pub rate_limited: Vec<(SystemTime, Category)>,
    /// Adaptive tier changes: when, from which tier, to which.
    pub tier_changes: Vec<(SystemTime, Tier, Tier)>,
    /// The server's remaining budget followed: when, which category, the limit in force.
    pub limit_follows: Vec<(SystemTime, Category, u32)>,
    pub stale_summaries: Vec<StaleSummary>,
    /// Stale-stream warnings: when, and `SYMBOL timeframe`.
    pub stale_warnings: Vec<(SystemTime, String)>,
    /// Session summary lines per category (each finished run writes one per category used).
    pub session_lines: [u64; 4],
    /// The gateway's per-client counters: the last reading of each client and what it
    /// added within the window (a restart, whose counters start again, is followed).
    pub gateway_clients: BTreeMap<String, GatewayClientUsage>,
    /// What each egress carried, by name.
    pub egresses: BTreeMap<String, EgressUsage>,
    /// What each endpoint carried, by category and path (`endpoint_usage` lines).
    pub endpoints: BTreeMap<(Category, String), EndpointUsage>,
    /// What the WebSocket feed did (`feed_usage` lines).
    pub feed: FeedUsage,
    /// Redis outages and state losses noticed (`redis_down`, `redis_reset`), and recoveries.
    pub redis_down: u64,
    pub redis_up: u64,
    /// Egresses taken out for failing.
    pub egress_out: u64,
    pub unreadable_count: u64,
    /// The first few unreadable lines.
    pub unreadable: Vec<Unreadable>,
}

/// What one egress carried within the window.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct EgressUsage {
    pub requests: u64,
    pub rate_limited: u64,
    pub covered: Duration,
}

/// What the WebSocket feed did within the window, summed over its interval lines.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FeedUsage {
    pub intervals: u64,
    pub covered: Duration,
    pub pushes: u64,
    pub reconnects: u64,
    pub closed_ws: u64,
    pub closed_rest: u64,
    /// Closes built from a shorter timeframe's (lines before they existed say nothing).
    pub closed_built: u64,
    pub build_mismatches: u64,
    pub rest_reads: u64,
    pub fallback_reads: u64,
    /// Error events by code.
    pub errors: BTreeMap<u32, u64>,
    /// The newest line's sockets, sockets up and channels.
    pub sockets: u64,
    pub sockets_up: u64,
    pub channels: u64,
    /// The highest close-lag p99 any line reported (the run's so far), in ms.
    pub worst_close_lag_p99_ms: Option<u64>,
    /// The longest any series had gone without a push when a line was written, in ms.
    pub worst_stalest_ms: Option<u64>,
}

/// What one endpoint carried within the window.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct EndpointUsage {
    pub requests: u64,
    pub rate_limited: u64,
    pub waited: u64,
    pub covered: Duration,
    /// Requests its limit offered over the covered time.
    pub budget: f64,
    /// The newest interval's limit.
    pub limit: u32,
}

impl EndpointUsage {
    pub fn mean_per_s(&self) -> f64 {
        self.requests as f64 / self.covered.as_secs_f64().max(1e-9)
    }

    /// Requests as a percentage of what its limit offered.
    pub fn used_pct(&self) -> f64 {
        if self.budget > 0.0 {
            100.0 * self.requests as f64 / self.budget
        } else {
            0.0
        }
    }
}

/// What one gateway client did within the window, by how it was served.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GatewayClientUsage {
    pub counted: ClientCounters,
    /// The last cumulative reading, to take the next one's increase from.
    last: ClientCounters,
}

impl GatewayClientUsage {
    /// Adds what a cumulative reading says happened since the previous one; the first
    /// reading is only the baseline, a smaller one means its gateway restarted.
    fn add_interval(&mut self, interval: ClientCounters) {
        let mut sum = self.counted.fields();
        for (total, n) in sum.iter_mut().zip(interval.fields()) {
            *total += n;
        }
        self.counted = ClientCounters::from_fields(sum);
    }

    fn add(&mut self, reading: ClientCounters, first: bool) {
        if !first {
            let (now, before) = (reading.fields(), self.last.fields());
            // Counters only grow while one gateway runs: any that fell means a new one.
            let restarted = now.iter().zip(before).any(|(n, b)| *n < b);
            let mut sum = self.counted.fields();
            for ((total, n), b) in sum.iter_mut().zip(now).zip(before) {
                *total += if restarted { n } else { n - b };
            }
            self.counted = ClientCounters::from_fields(sum);
        }
        self.last = reading;
    }
}

/// Which part of the log to read: `since < time <= until`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

impl Window {
    /// # Errors
    /// `since` is not before `until`.
    pub fn new(since: Option<SystemTime>, until: Option<SystemTime>) -> Result<Self, UsageError> {
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(UsageError::EmptyWindow {
                    since: rfc3339(s),
                    until: rfc3339(u),
                });
            }
        }
        Ok(Self { since, until })
    }

    fn contains(&self, time: SystemTime) -> bool {
        self.since.is_none_or(|s| time > s) && self.until.is_none_or(|u| time <= u)
    }
}

/// The files to read for `inputs`: each directory becomes its rate log and rotated copies;
/// no inputs means `default_dir`'s. Rotated copies come first, oldest (highest number)
/// first.
///
/// # Errors
/// No input names an existing file, or the default log does not exist.
pub fn log_files(inputs: &[PathBuf], default_dir: &Path) -> Result<Vec<PathBuf>, UsageError> {
    if inputs.is_empty() {
        let files = rotated_set(default_dir);
        if files.is_empty() {
            return Err(UsageError::NoLog(default_dir.join(RATE_FILE)));
        }
        return Ok(files);
    }
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let set = rotated_set(input);
            if set.is_empty() {
                return Err(UsageError::NoLog(input.join(RATE_FILE)));
            }
            files.extend(set);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// `dir`'s rate log and its numbered copies that exist, oldest first.
fn rotated_set(dir: &Path) -> Vec<PathBuf> {
    let live = dir.join(RATE_FILE);
    let mut numbered: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let n = name
                .strip_prefix(RATE_FILE)?
                .strip_prefix('.')?
                .parse()
                .ok()?;
            Some((n, entry.path()))
        })
        .collect();
    numbered.sort_by_key(|n| std::cmp::Reverse(n.0));
    let mut files: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
    if live.is_file() {
        files.push(live);
    }
    files
}

impl RateLog {
    /// Reads `files` in order, keeping what falls in `window`.
    ///
    /// # Errors
    /// A file cannot be opened or read. Unreadable lines are not errors.
    pub fn read(files: &[PathBuf], window: Window) -> Result<Self, UsageError> {
        let mut log = Self {
            files: files.to_vec(),
            ..Self::default()
        };
        for path in files {
            let read_error = |source| UsageError::Read {
                path: path.clone(),
                source,
            };
            let file = File::open(path).map_err(read_error)?;
            let mut reader = BufReader::new(file);
            let mut bytes = Vec::new();
            let mut number = 0;
            loop {
                bytes.clear();
                if reader.read_until(b'\n', &mut bytes).map_err(read_error)? == 0 {
                    break;
                }
                number += 1;
                match std::str::from_utf8(&bytes) {
                    Ok(text) => log.add_line(path, number, text, window),
                    Err(_) => {
                        log.lines += 1;
                        log.unreadable(path, number, "not UTF-8 text".to_owned());
                    }
                }
            }
        }
        log.sort();
        Ok(log)
    }

    /// Builds a log from text, as if read from a file called `name`.
    pub fn from_text(name: &str, text: &str, window: Window) -> Self {
        let path = PathBuf::from(name);
        let mut log = Self {
            files: vec![path.clone()],
            ..Self::default()
        };
        for (i, line) in text.lines().enumerate() {
            log.add_line(&path, i as u64 + 1, line, window);
        }
        log.sort();
        log
    }

    fn sort(&mut self) {
        // Stable: lines with the same time keep their file order.
        self.intervals.sort_by_key(|i| i.end);
        self.rate_limited.sort_by_key(|r| r.0);
        self.tier_changes.sort_by_key(|r| r.0);
        self.limit_follows.sort_by_key(|r| r.0);
        self.stale_summaries.sort_by_key(|r| r.time);
        self.stale_warnings.sort_by_key(|r| r.0);
    }

    fn unreadable(&mut self, file: &Path, line: u64, reason: String) {
        self.unreadable_count += 1;
        if self.unreadable.len() < QUOTED_UNREADABLE {
            self.unreadable.push(Unreadable {
                file: file.to_owned(),
                line,
                reason,
            });
        }
    }

    fn add_line(&mut self, file: &Path, number: u64, text: &str, window: Window) {
        if text.trim().is_empty() {
            return;
        }
        self.lines += 1;
        let line = match logline::parse(text) {
            Ok(line) => line,
            Err(reason) => return self.unreadable(file, number, reason),
        };
        if !window.contains(line.time) {
            return;
        }
        if let Err(reason) = self.add_event(&line) {
            self.unreadable(file, number, reason);
        }
    }

    fn add_event(&mut self, line: &logline::LogLine) -> Result<(), String> {
        let time = line.time;
        match line.field("event") {
            Some("usage") => {
                let interval = usage_interval(line)?;
                self.intervals.push(interval);
            }
            Some("session") => self.session_lines[category(line)?.index()] += 1,
            Some("rate_limited") => self.rate_limited.push((time, category(line)?)),
            Some("limit_follow") => {
                let limit = number(line, "effective_limit")?;
                self.limit_follows.push((time, category(line)?, limit));
            }
            Some("tier_change") => {
                let tier = |key| {
                    let name = field(line, key)?;
                    Tier::from_name(name).ok_or_else(|| format!("unknown tier '{name}'"))
                };
                self.tier_changes.push((time, tier("from")?, tier("to")?));
            }
            Some("stale_summary") => {
                let named = line
                    .field("symbols")
                    .map(|s| {
                        s.split(',')
                            .filter(|n| !n.is_empty() && !n.starts_with('+'))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                self.stale_summaries.push(StaleSummary {
                    time,
                    stale: number(line, "stale")?,
                    streams: number(line, "streams")?,
                    named,
                });
            }
            Some("stale") => {
                let name = format!("{} {}", field(line, "symbol")?, field(line, "timeframe")?);
                self.stale_warnings.push((time, name));
            }
            Some("gateway_client") => {
                let client = field(line, "client")?.to_owned();
                let mut fields = [0u64; 7];
                for (slot, key) in fields.iter_mut().zip(ClientCounters::NAMES) {
                    *slot = number(line, key)?;
                }
                let reading = ClientCounters::from_fields(fields);
                let usage = self.gateway_clients.entry(client).or_default();
                if line.field("counts") == Some("interval") {
                    // What the client did in that interval: counted as it is.
                    usage.add_interval(reading);
                } else {
                    // Older lines carry the gateway's running totals.
                    let first = usage.last == ClientCounters::default()
                        && usage.counted == ClientCounters::default();
                    usage.add(reading, first);
                }
            }
            Some("egress_usage") => {
                let usage = self
                    .egresses
                    .entry(field(line, "egress")?.to_owned())
                    .or_default();
                usage.requests += number::<u64>(line, "requests")?;
                usage.rate_limited += number::<u64>(line, "rate_limited")?;
                usage.covered += Duration::from_millis(number(line, "interval_ms")?);
            }
            Some("endpoint_usage") => {
                let key = (category(line)?, field(line, "endpoint")?.to_owned());
                let covered = Duration::from_millis(number(line, "interval_ms")?);
                let limit: u32 = number(line, "limit")?;
                let usage = self.endpoints.entry(key).or_default();
                usage.requests = usage.requests.saturating_add(number(line, "requests")?);
                usage.rate_limited = usage
                    .rate_limited
                    .saturating_add(number(line, "rate_limited")?);
                usage.waited = usage.waited.saturating_add(number(line, "waited")?);
                usage.covered = usage.covered.saturating_add(covered);
                usage.budget += f64::from(limit) * covered.as_secs_f64();
                usage.limit = limit;
            }
            Some("feed_usage") => {
                // Every field read before any is added: a bad line adds nothing.
                let text = field(line, "ws_errors")?;
                let mut errors = Vec::new();
                if text != "-" {
                    for pair in text.split(',') {
                        let parsed = pair.split_once(':').and_then(|(c, n)| {
                            Some((c.parse::<u32>().ok()?, n.parse::<u64>().ok()?))
                        });
                        errors.push(parsed.ok_or_else(|| {
                            format!("ws_errors='{text}' is not code:count pairs")
                        })?);
                    }
                }
                let read = FeedUsage {
                    intervals: 1,
                    covered: Duration::from_millis(number(line, "interval_ms")?),
                    pushes: number(line, "pushes")?,
                    reconnects: number(line, "reconnects")?,
                    closed_ws: number(line, "closed_ws")?,
                    closed_rest: number(line, "closed_rest")?,
                    closed_built: line
                        .field("closed_built")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    build_mismatches: line
                        .field("build_mismatches")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    rest_reads: number(line, "rest_reads")?,
                    fallback_reads: number(line, "fallback_reads")?,
                    errors: BTreeMap::new(),
                    sockets: number(line, "sockets")?,
                    sockets_up: number(line, "sockets_up")?,
                    channels: number(line, "channels")?,
                    worst_close_lag_p99_ms: line
                        .field("close_lag_p99_ms")
                        .and_then(|v| v.parse().ok()),
                    worst_stalest_ms: line.field("stalest_ms").and_then(|v| v.parse().ok()),
                };
                let f = &mut self.feed;
                f.intervals += 1;
                f.covered += read.covered;
                f.pushes += read.pushes;
                f.reconnects += read.reconnects;
                f.closed_ws += read.closed_ws;
                f.closed_rest += read.closed_rest;
                f.closed_built += read.closed_built;
                f.build_mismatches += read.build_mismatches;
                f.rest_reads += read.rest_reads;
                f.fallback_reads += read.fallback_reads;
                (f.sockets, f.sockets_up, f.channels) =
                    (read.sockets, read.sockets_up, read.channels);
                for (code, n) in errors {
                    *f.errors.entry(code).or_default() += n;
                }
                f.worst_close_lag_p99_ms =
                    f.worst_close_lag_p99_ms.max(read.worst_close_lag_p99_ms);
                f.worst_stalest_ms = f.worst_stalest_ms.max(read.worst_stalest_ms);
            }
            Some("redis_down" | "redis_reset") => self.redis_down += 1,
            Some("redis_up") => self.redis_up += 1,
            Some("egress_out") => self.egress_out += 1,
            // Other rate events (backoff, fresh) and other targets' lines carry no figures.
            _ => {}
        }
        Ok(())
    }
}

fn field<'a>(line: &'a logline::LogLine, key: &str) -> Result<&'a str, String> {
    line.field(key)
        .ok_or_else(|| format!("{} line without {key}", line.field("event").unwrap_or("?")))
}

fn number<T: std::str::FromStr>(line: &logline::LogLine, key: &str) -> Result<T, String> {
    let text = field(line, key)?;
    text.parse()
        .map_err(|_| format!("{key}='{text}' is not a number"))
}

fn category(line: &logline::LogLine) -> Result<Category, String> {
    let name = field(line, "category")?;
    Category::from_name(name).ok_or_else(|| format!("unknown category '{name}'"))
}

fn usage_interval(line: &logline::LogLine) -> Result<Interval, String> {
    let requests: u64 = number(line, "requests")?;
    let duration = match line.field("interval_ms") {
        Some(_) => Duration::from_millis(number(line, "interval_ms")?),
        // Lines written before interval_ms existed: the rate gives the duration back.
        None => {
            let rate: f64 = number(line, "req_per_s")?;
            if requests == 0 || rate.is_nan() || rate <= 0.0 {
                return Err("usage line without interval_ms and no requests to time".into());
            }
            Duration::try_from_secs_f64(requests as f64 / rate)
                .map_err(|_| format!("req_per_s={rate} gives no usable interval"))?
        }
    };
    if duration.is_zero() {
        return Err("usage line with interval_ms=0".into());
    }
    let tier = match line.field("tier") {
        Some(name) => Some(Tier::from_name(name).ok_or_else(|| format!("unknown tier '{name}'"))?),
        None => None,
    };
    let limit: u32 = number(line, "limit")?;
    // Lines that name their endpoints say how full the fullest one ran; before endpoints
    // were metered apart, the category's requests over its limit is the exact figure.
    let used_pct = match (line.field("endpoints"), optional_number(line, "used_pct")?) {
        (Some(_), Some(pct)) => pct,
        _ if limit == 0 => 0.0,
        _ => 100.0 * requests as f64 / (f64::from(limit) * duration.as_secs_f64()),
    };
    Ok(Interval {
        end: line.time,
        category: category(line)?,
        requests,
        duration,
        limit,
        used_pct,
        waited: number(line, "waited")?,
        wait: Duration::from_millis(number(line, "wait_ms")?),
        tier,
        foreign_pct: optional_number(line, "foreign_pct")?,
        margin_ms: optional_number(line, "margin_ms")?,
        offset_ms: match line.field("offset_ms") {
            None | Some("-") => None,
            Some(text) => {
                Some(parse_range(text).ok_or_else(|| {
                    format!("offset_ms='{text}' is not a range such as -1.5..+2.0")
                })?)
            }
        },
        backend: line.field("backend").map(str::to_owned),
    })
}

/// A field lines written before it existed lack, and `-` means unknown; finite if present.
fn optional_number(line: &logline::LogLine, key: &str) -> Result<Option<f64>, String> {
    match line.field(key) {
        None | Some("-") => Ok(None),
        Some(text) => match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Some(value)),
            _ => Err(format!("{key}='{text}' is not a number")),
        },
    }
}

fn parse_range(text: &str) -> Option<(f64, f64)> {
    let (lo, hi) = text.split_once("..")?;
    let (lo, hi) = (lo.parse::<f64>().ok()?, hi.parse::<f64>().ok()?);
    (lo.is_finite() && hi.is_finite() && lo <= hi).then_some((lo, hi))
}

/// Runs of intervals with no gap longer than their own duration between them: a stopped
/// poller is a break between runs, not a slope.
pub fn runs<'a>(intervals: &[&'a Interval]) -> Vec<Vec<&'a Interval>> {
    let mut runs: Vec<Vec<&Interval>> = Vec::new();
    let mut last_end: Option<SystemTime> = None;
    for interval in intervals {
        let joined = last_end.is_some_and(|end| {
            interval
                .start()
                .duration_since(end)
                .map_or(true, |gap| gap <= interval.duration)
        });
        if !joined {
            runs.push(Vec::new());
        }
        if let Some(run) = runs.last_mut() {
            run.push(interval);
        }
        last_end = Some(interval.end);
    }
    runs
}

/// A stretch of time in one adaptive tier (`None`: the log does not say which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierSpan {
    pub start: SystemTime,
    pub end: SystemTime,
    pub tier: Option<Tier>,
}

/// The category with the most intervals: the tier is global, and this one's lines say when
/// the poller ran.
pub fn busiest(log: &RateLog) -> Option<Category> {
    Category::ALL
        .into_iter()
        .map(|c| (c, log.intervals.iter().filter(|i| i.category == c).count()))
        .filter(|(_, n)| *n > 0)
        .max_by_key(|(c, n)| (*n, std::cmp::Reverse(c.index())))
        .map(|(c, _)| c)
}

/// When the poller was in which tier: over each run of the busiest category's intervals,
/// split exactly at the `tier_change` events inside it. A run starts in the tier its first
/// change left, or else the one its first line names.
pub fn tier_spans(log: &RateLog) -> Vec<TierSpan> {
    let Some(category) = busiest(log) else {
        return Vec::new();
    };
    let intervals: Vec<&Interval> = log
        .intervals
        .iter()
        .filter(|i| i.category == category)
        .collect();
    let mut spans = Vec::new();
    for run in runs(&intervals) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let (start, end) = (first.start(), last.end);
        let changes: Vec<_> = log
            .tier_changes
            .iter()
            .filter(|c| c.0 > start && c.0 <= end)
            .collect();
        let mut tier = changes.first().map_or(first.tier, |c| Some(c.1));
        let mut cursor = start;
        for (time, _, to) in changes {
            spans.push(TierSpan {
                start: cursor,
                end: *time,
                tier,
            });
            cursor = *time;
            tier = Some(*to);
        }
        spans.push(TierSpan {
            start: cursor,
            end,
            tier,
        });
    }
    spans.retain(|s| s.end > s.start);
    spans
}

/// One category's figures over the report's window.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryUsage {
    pub category: Category,
    pub intervals: usize,
    pub covered: Duration,
    pub requests: u64,
    pub mean_per_s: f64,
    pub p95_per_s: f64,
    pub max_per_s: f64,
    /// Requests as a percentage of the budget the intervals offered.
    pub used_pct: f64,
    /// The limit of the newest interval.
    pub limit: u32,
    pub rate_limited: usize,
    pub waited: u64,
    pub wait: Duration,
    pub limit_follows: usize,
    /// Other clients' share of the budget, time-weighted over the intervals that say.
    pub foreign_pct: Option<f64>,
    /// The margin in force: median and largest over the intervals that say, in ms.
    pub margin_ms: Option<(f64, f64)>,
    /// The newest clock-offset bounds, in ms.
    pub offset_ms: Option<(f64, f64)>,
}

/// The report `usage` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub files: usize,
    pub lines: u64,
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
    pub sessions: u64,
    pub categories: Vec<CategoryUsage>,
    /// Covered time per tier, in [`Tier::ALL`] order, plus time in intervals naming none.
    pub tiers: Vec<(Tier, Duration)>,
    pub untiered: Duration,
    pub tier_changes: usize,
    pub stale_intervals: usize,
    pub summaries: usize,
    pub most_stale_at_once: usize,
    /// Streams named stale, with how many summaries named them, most first.
    pub stale_streams: Vec<(String, usize)>,
    pub stale_warnings: usize,
    /// Gateway clients and what each did, by name.
    pub gateway_clients: Vec<(String, GatewayClientUsage)>,
    /// Time market intervals ended on each limiter backend, by name.
    pub backends: Vec<(String, Duration)>,
    pub redis_down: u64,
    pub redis_up: u64,
    pub egresses: Vec<(String, EgressUsage)>,
    /// Each endpoint's figures, by category then path.
    pub endpoints: Vec<(Category, String, EndpointUsage)>,
    /// The WebSocket feed's figures, when it ran.
    pub feed: Option<FeedUsage>,
    pub egress_out: u64,
    pub unreadable_count: u64,
    pub unreadable: Vec<Unreadable>,
}

/// The mean of `(value, weight)` pairs; `None` for none or no weight.
fn weighted_mean(values: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let (sum, weight) = values.fold((0.0, 0.0), |(s, w), (v, x)| (s + v * x, w + x));
    (weight > 0.0).then(|| sum / weight)
}

/// Nearest-rank percentile `p` (0–100] of `values`; 0 for none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    pub fn new(log: &RateLog) -> Self {
        let mut categories = Vec::new();
        for category in Category::ALL {
            let intervals: Vec<&Interval> = log
                .intervals
                .iter()
                .filter(|i| i.category == category)
                .collect();
            let rate_limited = log.rate_limited.iter().filter(|r| r.1 == category).count();
            if intervals.is_empty() && rate_limited == 0 {
                continue;
            }
            // Saturating: a hand-edited line may hold any number, and must not panic.
            let covered = saturating_sum(intervals.iter().map(|i| i.duration));
            let requests = intervals
                .iter()
                .fold(0u64, |sum, i| sum.saturating_add(i.requests));

            let rates: Vec<f64> = intervals.iter().map(|i| i.per_second()).collect();
            categories.push(CategoryUsage {
                category,
                intervals: intervals.len(),
                covered,
                requests,
                mean_per_s: if covered.is_zero() {
                    0.0
                } else {
                    requests as f64 / covered.as_secs_f64()
                },
                p95_per_s: percentile(&rates, 95.0),
                max_per_s: rates.iter().copied().fold(0.0, f64::max),
                // Each line says how full its fullest endpoint ran; over time, weighted.
                used_pct: weighted_mean(
                    intervals
                        .iter()
                        .map(|i| (i.used_pct, i.duration.as_secs_f64())),
                )
                .unwrap_or(0.0),
                limit: intervals.last().map_or(0, |i| i.limit),
                rate_limited,
                waited: intervals
                    .iter()
                    .fold(0u64, |sum, i| sum.saturating_add(i.waited)),
                wait: saturating_sum(intervals.iter().map(|i| i.wait)),
                limit_follows: log.limit_follows.iter().filter(|r| r.1 == category).count(),
                foreign_pct: weighted_mean(
                    intervals
                        .iter()
                        .filter_map(|i| Some((i.foreign_pct?, i.duration.as_secs_f64()))),
                ),
                margin_ms: {
                    let margins: Vec<f64> = intervals.iter().filter_map(|i| i.margin_ms).collect();
                    (!margins.is_empty()).then(|| {
                        (
                            percentile(&margins, 50.0),
                            margins.iter().copied().fold(0.0, f64::max),
                        )
                    })
                },
                offset_ms: intervals.iter().rev().find_map(|i| i.offset_ms),
            });
        }
        let mut tiers: Vec<(Tier, Duration)> = Tier::ALL.map(|t| (t, Duration::ZERO)).to_vec();
        let mut untiered = Duration::ZERO;
        for span in tier_spans(log) {
            let length = span.end.duration_since(span.start).unwrap_or_default();
            match span.tier {
                Some(tier) => {
                    if let Some(slot) = tiers.iter_mut().find(|(t, _)| *t == tier) {
                        slot.1 = slot.1.saturating_add(length);
                    }
                }
                None => untiered = untiered.saturating_add(length),
            }
        }
        let mut named: BTreeMap<&str, usize> = BTreeMap::new();
        for summary in &log.stale_summaries {
            for name in &summary.named {
                *named.entry(name).or_default() += 1;
            }
        }
        let mut stale_streams: Vec<(String, usize)> =
            named.into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
        stale_streams.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let times = log
            .intervals
            .iter()
            .map(Interval::start)
            .chain(log.rate_limited.iter().map(|r| r.0))
            .chain(log.intervals.iter().map(|i| i.end));
        Self {
            files: log.files.len(),
            lines: log.lines,
            first: times.clone().min(),
            last: times.max(),
            // Every run writes a session line for market at least; count one category's.
            sessions: log.session_lines.iter().copied().max().unwrap_or(0),
            categories,
            tiers,
            untiered,
            tier_changes: log.tier_changes.len(),
            stale_intervals: log.stale_summaries.iter().filter(|s| s.stale > 0).count(),
            summaries: log.stale_summaries.len(),
            most_stale_at_once: log
                .stale_summaries
                .iter()
                .map(|s| s.stale)
                .max()
                .unwrap_or(0),
            stale_streams,
            stale_warnings: log.stale_warnings.len(),
            gateway_clients: log
                .gateway_clients
                .iter()
                .map(|(name, usage)| (name.clone(), *usage))
                .collect(),
            backends: {
                let mut by = BTreeMap::<String, Duration>::new();
                for i in log
                    .intervals
                    .iter()
                    .filter(|i| i.category == Category::Market)
                {
                    if let Some(b) = &i.backend {
                        *by.entry(b.clone()).or_default() += i.duration;
                    }
                }
                by.into_iter().collect()
            },
            redis_down: log.redis_down,
            redis_up: log.redis_up,
            egresses: log.egresses.iter().map(|(n, u)| (n.clone(), *u)).collect(),
            endpoints: log
                .endpoints
                .iter()
                .map(|((c, path), u)| (*c, path.clone(), *u))
                .collect(),
            feed: (log.feed.intervals > 0).then(|| log.feed.clone()),
            egress_out: log.egress_out,
            unreadable_count: log.unreadable_count,
            unreadable: log.unreadable.clone(),
        }
    }

    /// The same figures as JSON, for scripts: times in RFC 3339, durations in seconds.
    pub fn to_json(&self) -> serde_json::Value {
        let time = |t: Option<SystemTime>| t.map(rfc3339);
        serde_json::json!({
            "files": self.files,
            "lines": self.lines,
            "from": time(self.first),
            "to": time(self.last),
            "sessions": self.sessions,
            "categories": self.categories.iter().map(|c| serde_json::json!({
                "category": c.category.name(),
                "intervals": c.intervals,
                "covered_s": c.covered.as_secs_f64(),
                "requests": c.requests,
                "mean_per_s": c.mean_per_s,
                "p95_per_s": c.p95_per_s,
                "max_per_s": c.max_per_s,
                "limit": c.limit,
                "used_pct": c.used_pct,
                "rate_limited": c.rate_limited,
                "waited": c.waited,
                "wait_s": c.wait.as_secs_f64(),
                "limit_follows": c.limit_follows,
                "foreign_pct": c.foreign_pct,
                "margin_ms_median": c.margin_ms.map(|m| m.0),
                "margin_ms_max": c.margin_ms.map(|m| m.1),
                "offset_ms": c.offset_ms.map(|(lo, hi)| serde_json::json!({"lower": lo, "upper": hi})),
            })).collect::<Vec<_>>(),
            "tiers_s": self.tiers.iter().map(|(t, d)| (t.name().to_owned(), d.as_secs_f64().into()))
                .chain([("not_recorded".to_owned(), self.untiered.as_secs_f64().into())])
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "tier_changes": self.tier_changes,
            "stale": {
                "summaries": self.summaries,
                "intervals_with_stale": self.stale_intervals,
                "most_at_once": self.most_stale_at_once,
                "warnings": self.stale_warnings,
                "streams": self.stale_streams.iter().map(|(name, n)| serde_json::json!({
                    "stream": name,
                    "intervals": n,
                })).collect::<Vec<_>>(),
            },
            "gateway_clients": self.gateway_clients.iter().map(|(name, usage)| {
                let mut entry = serde_json::Map::new();
                entry.insert("client".into(), name.as_str().into());
                for (key, value) in ClientCounters::NAMES.iter().zip(usage.counted.fields()) {
                    entry.insert((*key).into(), value.into());
                }
                serde_json::Value::Object(entry)
            }).collect::<Vec<_>>(),
            "backends_s": self.backends.iter().map(|(b, d)| (b.clone(), d.as_secs_f64().into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "redis_outages": self.redis_down,
            "redis_recoveries": self.redis_up,
            "egresses": self.egresses.iter().map(|(name, u)| serde_json::json!({
                "egress": name,
                "requests": u.requests,
                "mean_per_s": u.requests as f64 / u.covered.as_secs_f64().max(1e-9),
                "rate_limited": u.rate_limited,
            })).collect::<Vec<_>>(),
            "egresses_taken_out": self.egress_out,
            "feed": self.feed.as_ref().map(|f| serde_json::json!({
                "sockets": f.sockets,
                "sockets_up": f.sockets_up,
                "channels": f.channels,
                "pushes": f.pushes,
                "pushes_per_s": f.pushes as f64 / f.covered.as_secs_f64().max(1e-9),
                "reconnects": f.reconnects,
                "closed_ws": f.closed_ws,
                "closed_rest": f.closed_rest,
                "closed_built": f.closed_built,
                "build_mismatches": f.build_mismatches,
                "rest_reads": f.rest_reads,
                "fallback_reads": f.fallback_reads,
                "errors": f.errors.iter().map(|(c, n)| (c.to_string(), (*n).into()))
                    .collect::<serde_json::Map<String, serde_json::Value>>(),
                "worst_close_lag_p99_ms": f.worst_close_lag_p99_ms,
                "worst_stalest_ms": f.worst_stalest_ms,
                "covered_s": f.covered.as_secs_f64(),
            })),
            "endpoints": self.endpoints.iter().map(|(c, path, u)| serde_json::json!({
                "category": c.name(),
                "endpoint": path,
                "requests": u.requests,
                "mean_per_s": u.mean_per_s(),
                "limit": u.limit,
                "used_pct": u.used_pct(),
                "rate_limited": u.rate_limited,
                "waited": u.waited,
                "covered_s": u.covered.as_secs_f64(),
            })).collect::<Vec<_>>(),
            "unreadable": {
                "count": self.unreadable_count,
                "first": self.unreadable.iter().map(|u| serde_json::json!({
                    "file": u.file.display().to_string(),
                    "line": u.line,
                    "reason": u.reason,
                })).collect::<Vec<_>>(),
            },
        })
    }

    /// The text `usage` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let span = match (self.first, self.last) {
            (Some(first), Some(last)) => format!(
                "{} to {} ({})",
                rfc3339(first),
                rfc3339(last),
                short_duration(last.duration_since(first).unwrap_or_default())
            ),
            _ => "no usage lines in the window".to_owned(),
        };
        let _ = writeln!(
            out,
            "rate log: {} file{}, {} lines, {span}, {} finished session{}",
            self.files,
            plural(self.files),
            self.lines,
            self.sessions,
            plural(self.sessions as usize)
        );
        let _ = writeln!(
            out,
            "{:<9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>6} {:>10} {:>6} {:>9} {:>10}",
            "category",
            "covered",
            "requests",
            "mean/s",
            "p95/s",
            "max/s",
            "limit",
            "% of limit",
            "429s",
            "waited",
            "wait s"
        );
        for c in &self.categories {
            let _ = writeln!(
                out,
                "{:<9} {:>9} {:>10} {:>9.2} {:>9.2} {:>9.2} {:>4}/s {:>9.1}% {:>6} {:>9} {:>10.1}",
                c.category.name(),
                short_duration(c.covered),
                c.requests,
                c.mean_per_s,
                c.p95_per_s,
                c.max_per_s,
                c.limit,
                c.used_pct,
                c.rate_limited,
                c.waited,
                c.wait.as_secs_f64()
            );
            // Each endpoint spends its own budget: where one runs out shows here.
            for (_, path, u) in self.endpoints.iter().filter(|e| e.0 == c.category) {
                let _ = writeln!(
                    out,
                    "  {:<39} {:>9.2} {:>19} {:>4}/s {:>9.1}% {:>6} {:>9}",
                    path,
                    u.mean_per_s(),
                    "",
                    u.limit,
                    u.used_pct(),
                    u.rate_limited,
                    u.waited
                );
            }
        }
        for c in &self.categories {
            let Some(foreign) = c.foreign_pct else {
                continue;
            };
            let _ = write!(
                out,
                "server view, {}: other clients took {foreign:.1}% of the budget",
                c.category.name()
            );
            if let Some((median, max)) = c.margin_ms {
                let _ = write!(out, "; margin {median:.1} ms (median), {max:.1} ms at most");
            }
            if let Some((lo, hi)) = c.offset_ms {
                let _ = write!(out, "; bitget's clock {lo:+.1}..{hi:+.1} ms from ours");
            }
            let _ = writeln!(out);
        }
        let total = saturating_sum(self.tiers.iter().map(|t| t.1).chain([self.untiered]));
        let mut tiers: Vec<String> = self
            .tiers
            .iter()
            .map(|(tier, time)| {
                format!(
                    "{tier} {} ({:.1}%)",
                    short_duration(*time),
                    pct(*time, total)
                )
            })
            .collect();
        if !self.untiered.is_zero() {
            tiers.push(format!(
                "not recorded {} ({:.1}%)",
                short_duration(self.untiered),
                pct(self.untiered, total)
            ));
        }
        let _ = writeln!(
            out,
            "tiers: {}; {} tier change{}",
            tiers.join(", "),
            self.tier_changes,
            plural(self.tier_changes)
        );
        let _ = write!(
            out,
            "stale symbols: {} of {} intervals had some, at most {} at once, {} warning{}",
            self.stale_intervals,
            self.summaries,
            self.most_stale_at_once,
            self.stale_warnings,
            plural(self.stale_warnings)
        );
        if !self.stale_streams.is_empty() {
            let named: Vec<String> = self
                .stale_streams
                .iter()
                .take(5)
                .map(|(name, n)| format!("{name} ×{n}"))
                .collect();
            let _ = write!(out, "; most often: {}", named.join(", "));
        }
        let _ = writeln!(out);
        if !self.gateway_clients.is_empty() {
            let _ = writeln!(
                out,
                "gateway clients: {:<20} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
                "client", "requests", "hits", "misses", "merged", "forwarded", "queued", "refused"
            );
            for (name, usage) in &self.gateway_clients {
                let c = &usage.counted;
                let _ = writeln!(
                    out,
                    "                 {:<20} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
                    name, c.requests, c.hits, c.misses, c.merged, c.forwarded, c.queued, c.refused
                );
            }
        }
        if !self.backends.is_empty() {
            let spans: Vec<String> = self
                .backends
                .iter()
                .map(|(b, d)| format!("{b} {}", short_duration(*d)))
                .collect();
            let _ = write!(out, "limiter: {}", spans.join(", "));
            if self.redis_down > 0 || self.redis_up > 0 {
                let _ = write!(
                    out,
                    "; redis lost {} time{}, back {} time{}",
                    self.redis_down,
                    plural(self.redis_down as usize),
                    self.redis_up,
                    plural(self.redis_up as usize)
                );
            }
            let _ = writeln!(out);
        }
        if !self.egresses.is_empty() {
            let _ = writeln!(
                out,
                "egresses: {:<24} {:>10} {:>9} {:>6}   ({} taken out for failing)",
                "egress", "requests", "mean/s", "429s", self.egress_out
            );
            for (name, u) in &self.egresses {
                let _ = writeln!(
                    out,
                    "          {:<24} {:>10} {:>9.2} {:>6}",
                    name,
                    u.requests,
                    u.requests as f64 / u.covered.as_secs_f64().max(1e-9),
                    u.rate_limited
                );
            }
        }
        if let Some(f) = &self.feed {
            let errors = crate::feed::code_counts(&f.errors).unwrap_or_else(|| "none".to_owned());
            let _ = writeln!(
                out,
                "websocket feed: {} sockets ({} up at the last line), {} channels, {:.1} pushes/s, {} reconnects, error events {}; closed candles over the socket {}, by rest {} ({} reads), built from shorter ones {} ({} differed from rest), fallback reads {}, worst close lag p99 {}, stalest series at a line {}",
                f.sockets,
                f.sockets_up,
                f.channels,
                f.pushes as f64 / f.covered.as_secs_f64().max(1e-9),
                f.reconnects,
                errors,
                f.closed_ws,
                f.closed_rest,
                f.rest_reads,
                f.closed_built,
                f.build_mismatches,
                f.fallback_reads,
                f.worst_close_lag_p99_ms
                    .map_or("-".to_owned(), |v| format!("{v} ms")),
                f.worst_stalest_ms
                    .map_or("-".to_owned(), |v| format!("{v} ms"))
            );
        }
        let _ = write!(out, "unreadable lines: {}", self.unreadable_count);
        for u in &self.unreadable {
            let _ = write!(out, "\n  {}:{}: {}", u.file.display(), u.line, u.reason);
        }
        if self.unreadable_count > self.unreadable.len() as u64 {
            let _ = write!(
                out,
                "\n  … and {} more",
                self.unreadable_count - self.unreadable.len() as u64
            );
        }
        out
    }
}

/// `2026-11-22T18:34:22Z`. humantime panics on times before 1970, which a hand-edited line
/// (an interval longer than the time since 1970) can produce; those read "before 1970".
pub fn rfc3339(time: SystemTime) -> String {
    if time < UNIX_EPOCH {
        return "before 1970".to_owned();
    }
    humantime::format_rfc3339_seconds(time).to_string()
}

fn saturating_sum(durations: impl Iterator<Item = Duration>) -> Duration {
    durations.fold(Duration::ZERO, Duration::saturating_add)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn pct(part: Duration, total: Duration) -> f64 {
    if total.is_zero() {
        0.0
    } else {
        100.0 * part.as_secs_f64() / total.as_secs_f64()
    }
}

/// `1h 02m 05s`, `3m 20s`, `42s`, to the nearest second.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}m {s:02}s"),
    }
}

/// A `--since`/`--until` value: an RFC 3339 time (`2026-11-22T18:00:00Z`; with a space, no
/// zone, no seconds or only a date, read as UTC) or a duration before `now` (`90s`, `30m`,
/// `2h`, `1d`).
///
/// # Errors
/// Neither form, with an example of each.
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    // Complete the short forms operators type: a date, or a time without seconds.
    let completed = match text.len() {
        10 => format!("{text}T00:00:00Z"),
        16 => format!("{text}:00"),
        _ => text.to_owned(),
    };
    if let Ok(time) = humantime::parse_rfc3339_weak(&completed) {
        return Ok(time);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return now
            .checked_sub(ago)
            .filter(|t| *t >= UNIX_EPOCH)
            .ok_or_else(|| format!("'{text}' ago is before 1970"));
    }
    Err(format!(
        "'{text}' is neither a time like 2026-11-22T18:00:00Z nor a duration ago like 30m or 2h"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&values, 95.0), 19.0);
        assert_eq!(percentile(&values, 100.0), 20.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert_eq!(percentile(&[], 95.0), 0.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
    }

    #[test]
    fn times_are_absolute_or_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_372_462);
        assert_eq!(
            parse_time("2026-11-22T18:34:22Z", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_795_372_462)
        );
        assert_eq!(
            parse_time("2026-11-22 18:34:22", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_795_372_462)
        );
        let ten = UNIX_EPOCH + Duration::from_secs(1_795_341_600);
        assert_eq!(parse_time("2026-11-22 10:00", now).unwrap(), ten);
        assert_eq!(
            parse_time("2026-11-22", now).unwrap(),
            ten - Duration::from_secs(36_000)
        );
        assert_eq!(
            parse_time("30m", now).unwrap(),
            now - Duration::from_secs(1800)
        );
        assert_eq!(
            parse_time("1d", now).unwrap(),
            now - Duration::from_secs(86_400)
        );
        let error = parse_time("yesterday", now).unwrap_err();
        assert!(
            error.contains("'yesterday'") && error.contains("30m"),
            "{error}"
        );
    }

    #[test]
    fn gateway_clients_are_counted_within_the_window_across_a_restart() {
        let line = |t: &str, client: &str, requests: u64, hits: u64| {
            format!("2026-11-22T10:00:{t}Z  INFO gateway client event=gateway_client client={client} requests={requests} hits={hits} misses=1 merged=0 forwarded=0 queued=0 refused=0")
        };
        let text = [
            line("10", "bot-a", 100, 90),
            line("20", "bot-a", 150, 130),
            line("20", "127.0.0.1", 7, 0),
            line("30", "bot-a", 20, 15), // the gateway restarted
        ]
        .join("\n");
        let log = RateLog::from_text("gw.log", &text, Window::default());
        assert_eq!(log.unreadable_count, 0, "{:?}", log.unreadable);
        let report = Report::new(&log);
        let a = &report
            .gateway_clients
            .iter()
            .find(|(n, _)| n == "bot-a")
            .unwrap()
            .1;
        assert_eq!(
            (a.counted.requests, a.counted.hits, a.counted.misses),
            (50 + 20, 40 + 15, 1)
        );
        assert_eq!(report.gateway_clients.len(), 2);
        assert!(report.render().contains("gateway clients"));
        assert_eq!(report.to_json()["gateway_clients"][1]["requests"], 70);
    }

    #[test]
    fn gateway_client_intervals_count_from_the_first_line() {
        let line = |t: &str, requests: u64, hits: u64| {
            format!("2026-11-22T10:00:{t}Z  INFO gateway client event=gateway_client client=127.0.0.1 counts=interval requests={requests} hits={hits} misses=1 merged=0 forwarded=0 queued=0 refused=0")
        };
        let text = [line("10", 4, 3), line("20", 2, 1)].join("\n");
        let log = RateLog::from_text("gw.log", &text, Window::default());
        assert_eq!(log.unreadable_count, 0, "{:?}", log.unreadable);
        let report = Report::new(&log);
        let c = &report.gateway_clients[0].1.counted;
        assert_eq!((c.requests, c.hits, c.misses), (6, 4, 2));
    }

    #[test]
    fn an_old_usage_line_without_interval_ms_is_timed_by_its_rate() {
        let log = RateLog::from_text(
            "old.log",
            r#"2026-11-22T18:34:22.744114Z  INFO rate usage event="usage" category=market requests=195 req_per_s=19.50 limit=20 used_pct=97.5 status="🔴" waited=195 wait_ms=78497 rate_limited_60s=0 symbols_per_iteration=200"#,
            Window::default(),
        );
        assert_eq!(log.unreadable_count, 0, "{:?}", log.unreadable);
        assert_eq!(log.intervals[0].duration, Duration::from_secs(10));
        assert_eq!(log.intervals[0].tier, None);
    }

    #[test]
    fn tier_spans_split_at_changes_break_at_gaps_and_admit_what_the_log_does_not_say() {
        let usage = |end: &str, tier: &str| {
            format!("2026-11-22T10:{end}Z  INFO rate usage event=usage category=market requests=10 limit=20 waited=0 wait_ms=0 interval_ms=10000{tier}")
        };
        let text = [
            usage("00:10", " tier=normal"),
            "2026-11-22T10:00:15Z  WARN adaptive tier changed event=tier_change from=normal to=slow".to_owned(),
            usage("00:20", " tier=slow"),
            // Five minutes later, a line without a tier field and no change around it.
            usage("05:00", ""),
        ]
        .join("\n");
        let log = RateLog::from_text("t.log", &text, Window::default());
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(1_795_341_600 + s);
        assert_eq!(
            tier_spans(&log),
            [
                TierSpan {
                    start: at(0),
                    end: at(15),
                    tier: Some(Tier::Normal)
                },
                TierSpan {
                    start: at(15),
                    end: at(20),
                    tier: Some(Tier::Slow)
                },
                TierSpan {
                    start: at(290),
                    end: at(300),
                    tier: None
                },
            ]
        );
        let report = Report::new(&log);
        assert_eq!(report.untiered, Duration::from_secs(10));
        assert!(
            report.render().contains("not recorded 10s (33.3%)"),
            "{}",
            report.render()
        );
    }

    #[test]
    fn the_server_view_is_averaged_over_time_and_reported() {
        let usage = |end: &str, interval_ms: u64, foreign: &str, margin: &str, offset: &str| {
            format!("2026-11-22T10:{end}Z  INFO rate usage event=usage category=market requests=100 limit=20 waited=0 wait_ms=0 interval_ms={interval_ms} effective_limit=10 foreign_pct={foreign} margin_ms={margin} offset_ms={offset}")
        };
        let text = [
            // Before the first reply nothing is known.
            usage("00:10", 10_000, "0.0", "-", "-"),
            usage("00:40", 30_000, "40.0", "3.0", "-1.5..+1.5"),
            usage("00:50", 10_000, "20.0", "1.0", "-0.5..+0.5"),
            // A line from before these fields existed still counts for the rest.
            "2026-11-22T10:01:00Z  INFO rate usage event=usage category=market requests=100 limit=20 waited=0 wait_ms=0 interval_ms=10000".to_owned(),
        ]
        .join("\n");
        let log = RateLog::from_text("v.log", &text, Window::default());
        assert_eq!(log.unreadable_count, 0, "{:?}", log.unreadable);
        let report = Report::new(&log);
        let market = &report.categories[0];
        // (0 × 10 + 40 × 30 + 20 × 10) / 50 s.
        assert_eq!(market.foreign_pct, Some(28.0));
        assert_eq!(market.margin_ms, Some((1.0, 3.0)));
        assert_eq!(market.offset_ms, Some((-0.5, 0.5)));
        let text = report.render();
        assert!(
            text.contains("server view, market: other clients took 28.0% of the budget; margin 1.0 ms (median), 3.0 ms at most; bitget's clock -0.5..+0.5 ms from ours"),
            "{text}"
        );
        let json = report.to_json();
        assert_eq!(json["categories"][0]["foreign_pct"], 28.0);
        assert_eq!(json["categories"][0]["margin_ms_max"], 3.0);
        let bad = RateLog::from_text(
            "b.log",
            &usage("00:10", 10_000, "0.0", "1", "2..1"),
            Window::default(),
        );
        assert_eq!(bad.unreadable_count, 1);
        assert!(
            bad.unreadable[0].reason.contains("offset_ms='2..1'"),
            "{:?}",
            bad.unreadable
        );
    }

    #[test]
    fn short_durations_read_naturally() {
        assert_eq!(short_duration(Duration::from_secs(42)), "42s");
        assert_eq!(short_duration(Duration::from_secs(200)), "3m 20s");
        assert_eq!(short_duration(Duration::from_secs(3725)), "1h 02m 05s");
    }

    #[test]
    fn endpoints_are_reported_within_their_category() {
        let text = "\
2026-12-01T10:00:05.000Z  INFO bitget_poller::rate: endpoint usage event=endpoint_usage category=market endpoint=/api/v2/mix/market/candles requests=95 req_per_s=19.00 limit=20 used_pct=95.0 waited=3 wait_ms=10 rate_limited=0 effective_limit=20 foreign_pct=0.0 interval_ms=5000
2026-12-01T10:00:05.000Z  INFO bitget_poller::rate: endpoint usage event=endpoint_usage category=market endpoint=/api/v2/mix/market/history-candles requests=85 req_per_s=17.00 limit=20 used_pct=85.0 waited=0 wait_ms=0 rate_limited=1 effective_limit=20 foreign_pct=0.0 interval_ms=5000
2026-12-01T10:00:05.000Z  INFO bitget_poller::rate: rate usage event=usage category=market requests=180 req_per_s=36.00 limit=20 used_pct=95.0 status=[hot] waited=3 wait_ms=10 rate_limited_60s=1 symbols_per_iteration=10 tier=normal interval_ms=5000 endpoints=2
2026-12-01T10:00:10.000Z  INFO bitget_poller::rate: endpoint usage event=endpoint_usage category=market endpoint=/api/v2/mix/market/candles requests=100 req_per_s=20.00 limit=20 used_pct=100.0 waited=0 wait_ms=0 rate_limited=0 effective_limit=20 foreign_pct=0.0 interval_ms=5000
";
        let log = RateLog::from_text("t.log", text, Window::default());
        assert_eq!(log.unreadable_count, 0, "{:?}", log.unreadable);
        let report = Report::new(&log);
        assert_eq!(report.endpoints.len(), 2);
        let (category, path, candles) = &report.endpoints[0];
        assert_eq!(
            (*category, path.as_str()),
            (Category::Market, "/api/v2/mix/market/candles")
        );
        assert_eq!(candles.requests, 195);
        assert!((candles.used_pct() - 97.5).abs() < 1e-9);
        assert_eq!(report.endpoints[1].2.rate_limited, 1);
        // The category ran as full as its fullest endpoint.
        assert!((report.categories[0].used_pct - 95.0).abs() < 1e-9);
        let text = report.render();
        assert!(
            text.contains("  /api/v2/mix/market/history-candles          17.00"),
            "{text}"
        );
        let json = report.to_json();
        assert_eq!(json["endpoints"][0]["requests"], 195);
        assert_eq!(
            json["endpoints"][1]["endpoint"],
            "/api/v2/mix/market/history-candles"
        );
    }

    #[test]
    fn the_feeds_lines_are_summed_and_reported() {
        let text = "\
2026-12-03T10:00:10.000Z  INFO bitget_poller::rate: websocket feed event=feed_usage sockets=2 sockets_up=2 channels=60 pushes=600 push_per_s=60.0 reconnects=0 ws_errors=- closed_ws=60 closed_rest=0 rest_reads=0 fallback_reads=0 close_lag_p50_ms=600 close_lag_p99_ms=900 interval_ms=10000
2026-12-03T10:00:20.000Z  INFO bitget_poller::rate: websocket feed event=feed_usage sockets=2 sockets_up=1 channels=60 pushes=400 push_per_s=40.0 reconnects=1 ws_errors=30006:2,30016:1 closed_ws=30 closed_rest=30 rest_reads=12 fallback_reads=3 close_lag_p50_ms=600 close_lag_p99_ms=1400 interval_ms=10000
2026-12-03T10:00:30.000Z  INFO bitget_poller::rate: websocket feed event=feed_usage sockets=2 sockets_up=2 channels=60 pushes=10 push_per_s=1.0 reconnects=0 ws_errors=30006 closed_ws=0 closed_rest=0 rest_reads=0 fallback_reads=0 close_lag_p50_ms=- close_lag_p99_ms=- interval_ms=10000
";
        let log = RateLog::from_text("t.log", text, Window::default());
        assert_eq!(log.unreadable_count, 1, "the malformed error list is named");
        assert!(
            log.unreadable[0].reason.contains("ws_errors='30006'"),
            "{:?}",
            log.unreadable
        );
        let report = Report::new(&log);
        let feed = report.feed.as_ref().unwrap();
        assert_eq!(
            (feed.pushes, feed.reconnects, feed.closed_rest),
            (1000, 1, 30)
        );
        assert_eq!(feed.errors, BTreeMap::from([(30006, 2), (30016, 1)]));
        assert_eq!(feed.worst_close_lag_p99_ms, Some(1400));
        let text = report.render();
        assert!(
            text.contains("websocket feed: 2 sockets (1 up at the last line), 60 channels, 50.0 pushes/s, 1 reconnects, error events 30006:2,30016:1"),
            "{text}"
        );
        let json = report.to_json();
        assert_eq!(json["feed"]["errors"]["30006"], 2);
        assert_eq!(json["feed"]["rest_reads"], 12);
    }

    #[test]
    fn backends_and_egresses_are_reported() {
        let text = "\
2026-12-01T10:00:05.000Z  INFO bitget_poller::rate: rate usage event=usage category=market requests=100 req_per_s=20.00 limit=20 used_pct=100.0 status=[hot] waited=0 wait_ms=0 rate_limited_60s=0 symbols_per_iteration=10 tier=normal interval_ms=5000 backend=redis
2026-12-01T10:00:05.000Z  INFO bitget_poller::rate: egress usage event=egress_usage egress=a requests=60 req_per_s=12.00 rate_limited=0 in_window=3 interval_ms=5000
2026-12-01T10:00:05.000Z  INFO bitget_poller::rate: egress usage event=egress_usage egress=b requests=40 req_per_s=8.00 rate_limited=1 in_window=2 interval_ms=5000
2026-12-01T10:00:06.000Z ERROR bitget_poller::rate: lost redis event=redis_down redis=redis://127.0.0.1:6379/0 cause=refused
2026-12-01T10:00:10.000Z  INFO bitget_poller::rate: rate usage event=usage category=market requests=30 req_per_s=6.00 limit=20 used_pct=30.0 status=[ok] waited=0 wait_ms=0 rate_limited_60s=0 symbols_per_iteration=10 tier=normal interval_ms=5000 backend=fallback
2026-12-01T10:00:11.000Z  WARN bitget_poller::rate: back event=redis_up redis=redis://127.0.0.1:6379/0
";
        let log = RateLog::from_text("t.log", text, Window::default());
        assert_eq!(log.unreadable_count, 0, "{:?}", log.unreadable);
        let report = Report::new(&log);
        assert_eq!(
            report.backends,
            vec![
                ("fallback".to_owned(), Duration::from_secs(5)),
                ("redis".to_owned(), Duration::from_secs(5))
            ]
        );
        assert_eq!((report.redis_down, report.redis_up), (1, 1));
        assert_eq!(report.egresses.len(), 2);
        assert_eq!(report.egresses[1].1.rate_limited, 1);
        let text = report.render();
        assert!(
            text.contains("limiter: fallback 5s, redis 5s; redis lost 1 time, back 1 time"),
            "{text}"
        );
        assert!(
            text.contains("a                                60     12.00      0"),
            "{text}"
        );
        let json = report.to_json();
        assert_eq!(json["backends_s"]["redis"], 5.0);
        assert_eq!(json["egresses"][0]["mean_per_s"], 12.0);
    }
}
