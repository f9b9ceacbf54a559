//! What the simulator saw: per-endpoint counters and an optional JSON-lines request log.
//!
//! Tests and benchmarks judge clients by these figures (accepted, rejected, busiest second),
//! so they are counted on the server, where the rate limit is actually enforced.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// Counters for one endpoint (or the total).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EndpointStats {
    /// Every request that reached the endpoint.
    pub requests: u64,
    /// Requests admitted by the rate limiter (including ones that then failed or were faulted).
    pub accepted: u64,
    /// Requests refused for rate limiting (HTTP 429 or the configured code).
    pub rate_limited: u64,
    /// Requests answered with a Bitget error code other than rate limiting.
    pub errors: u64,
    /// Requests turned into an injected fault.
    pub faults: u64,
    /// The most requests accepted for one scope key inside any sliding one-second window.
    pub max_accepted_in_1s: u32,
}

/// A snapshot of everything counted so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatsSnapshot {
    /// Milliseconds since the simulator started (by its clock).
    pub elapsed_ms: u64,
    /// Counters per endpoint path; endpoints never called are left out.
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// Counters over all endpoints (the busiest second is the largest of any endpoint).
    pub total: EndpointStats,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// The WebSocket side's counters.
    pub ws: super::ws::WsStats,
}

/// One line of the request log.
#[derive(Debug, Serialize)]
pub struct RequestRecord<'a> {
    /// Server time of arrival, Unix ms.
    pub ts: u64,
    pub method: &'a str,
    pub path: &'a str,
    pub symbol: Option<&'a str>,
    /// `limit` and `granularity`, when the request names them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<&'a str>,
    pub client: IpAddr,
    pub status: u16,
    pub code: &'a str,
    pub fault: Option<&'static str>,
}

/// How a request ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok { in_window: u32 },
    Error { in_window: Option<u32> },
    RateLimited,
    Fault { name: &'static str, in_window: u32 },
}

/// Counters plus the log file.
#[derive(Debug)]
pub struct Recorder {
    started_ms: u64,
    stats: Mutex<StatsSnapshot>,
    log: Option<Mutex<BufWriter<File>>>,
}

impl Recorder {
    /// Counts from `started_ms`; writes the request log to `log_path` when given.
    ///
    /// # Errors
    /// The log file cannot be created.
    pub fn new(started_ms: u64, log_path: Option<&Path>) -> std::io::Result<Self> {
        let log = match log_path {
            Some(path) => Some(Mutex::new(BufWriter::new(File::create(path)?))),
            None => None,
        };
        Ok(Self {
            started_ms,
            stats: Mutex::new(StatsSnapshot::default()),
            log,
        })
    }

    /// Counts one request and appends it to the log.
    pub fn record(&self, record: &RequestRecord<'_>, outcome: Outcome) {
        {
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            let stats = &mut *stats;
            // The log keeps the path asked for; the counters put every path the simulator
            // does not serve under one name, so a scanner cannot grow them without bound.
            let key = if super::endpoints::find(record.path).is_some() {
                record.path
            } else {
                "<unknown>"
            };
            let endpoint = match stats.endpoints.get_mut(key) {
                Some(e) => e,
                None => stats.endpoints.entry(key.to_owned()).or_default(),
            };
            for counters in [endpoint, &mut stats.total] {
                counters.requests += 1;
                let in_window = match outcome {
                    Outcome::Ok { in_window } => Some(in_window),
                    Outcome::Error { in_window } => {
                        counters.errors += 1;
                        in_window
                    }
                    Outcome::RateLimited => {
                        counters.rate_limited += 1;
                        None
                    }
                    Outcome::Fault { in_window, .. } => {
                        counters.faults += 1;
                        Some(in_window)
                    }
                };
                if let Some(in_window) = in_window {
                    counters.accepted += 1;
                    counters.max_accepted_in_1s = counters.max_accepted_in_1s.max(in_window);
                }
            }
            if let Outcome::Fault { name, .. } = outcome {
                *stats.faults.entry(name.to_owned()).or_default() += 1;
            }
        }
        if let Some(log) = &self.log {
            let mut line = serde_json::to_vec(record).unwrap_or_default();
            line.push(b'\n');
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            // A full disk must not take the simulator down; the counters still hold.
            let _ = log.write_all(&line);
        }
    }

    /// The counters so far, with `elapsed_ms` measured at `now_ms`.
    pub fn snapshot(&self, now_ms: u64) -> StatsSnapshot {
        let mut snapshot = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        snapshot.elapsed_ms = now_ms.saturating_sub(self.started_ms);
        snapshot
    }

    /// Writes buffered log lines to disk.
    pub fn flush(&self) {
        if let Some(log) = &self.log {
            let _ = log.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
    }
}
