//! Bitget-style rate limiting: strict sliding one-second windows per endpoint and scope, plus
//! the 6000-per-minute overall cap per IP, optional penalty and a limit schedule.
//!
//! A window counts *accepted* requests whose timestamp lies in `(now - 1 s, now]`; a request is
//! admitted only if every window it belongs to has room, and then it is recorded in all of
//! them, so a rejected request costs nothing. This is the strictest reading of Bitget's "N
//! times per second" and the one a client has to survive. Hand-written rather than taken from
//! a crate because it is a *meter*, not a throttle: it must report exact window contents (for
//! `x-mbx-used-remain-limit` and the stats) and reject rather than delay, which limiter crates
//! such as governor do not expose.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use thiserror::Error;

use super::endpoints::{Endpoint, Scope, ENDPOINTS};

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60_000;

/// A step of the market-limit schedule: from `from_secs` after start, the limit is `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleStep {
    pub from_secs: u64,
    pub limit: u32,
}

/// How the simulator meters requests.
#[derive(Debug, Clone)]
pub struct LimitConfig {
    /// Per-endpoint limits that replace the documented ones (index into `ENDPOINTS`, limit).
    pub overrides: Vec<(usize, u32)>,
    /// Market limit over time; applies to IP-scoped endpoints documented at 20/s.
    pub schedule: Vec<ScheduleStep>,
    /// Overall cap per IP per minute (Bitget: 6000).
    pub overall_per_min: u32,
    /// After a violation, reject everything from that IP for this long (0 = off).
    pub penalty_ms: u64,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            overrides: Vec::new(),
            schedule: Vec::new(),
            overall_per_min: 6_000,
            penalty_ms: 0,
        }
    }
}

/// A malformed limit option.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitConfigError {
    #[error("limit override '{0}' must look like ENDPOINT=N, e.g. mix/market/candles=50")]
    OverrideSyntax(String),
    #[error("limit override names unknown endpoint '{0}'; use a path such as mix/market/candles")]
    UnknownEndpoint(String),
    #[error(
        "limit schedule step '{0}' must look like SECS:N or N (N at least 1), e.g. 20,30:5,60:20"
    )]
    ScheduleSyntax(String),
    #[error("limit schedule times must increase; '{0}' does not")]
    ScheduleOrder(String),
}

impl LimitConfig {
    /// Parses `ENDPOINT=N` overrides (`mix/market/candles=50`).
    pub fn parse_override(text: &str) -> Result<(usize, u32), LimitConfigError> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| LimitConfigError::OverrideSyntax(text.to_owned()))?;
        let idx = super::endpoints::find_by_name(name)
            .ok_or_else(|| LimitConfigError::UnknownEndpoint(name.trim().to_owned()))?;
        let limit = value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| LimitConfigError::OverrideSyntax(text.to_owned()))?;
        Ok((idx, limit))
    }

    /// Parses a schedule such as `20,30:5,60:20` (20/s from the start, 5/s from 30 s, ...).
    pub fn parse_schedule(text: &str) -> Result<Vec<ScheduleStep>, LimitConfigError> {
        let mut steps: Vec<ScheduleStep> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let syntax = || LimitConfigError::ScheduleSyntax(part.to_owned());
            let (from, limit) = match part.split_once(':') {
                Some((from, limit)) => (from.trim().parse().map_err(|_| syntax())?, limit),
                None => (0, part),
            };
            let limit: u32 = limit.trim().parse().map_err(|_| syntax())?;
            if limit == 0 {
                return Err(syntax());
            }
            if steps.last().is_some_and(|s| s.from_secs >= from) {
                return Err(LimitConfigError::ScheduleOrder(part.to_owned()));
            }
            steps.push(ScheduleStep {
                from_secs: from,
                limit,
            });
        }
        Ok(steps)
    }

    /// The limit of endpoint `idx` at `elapsed_ms` after start.
    pub fn limit_of(&self, idx: usize, elapsed_ms: u64) -> u32 {
        if let Some(&(_, limit)) = self.overrides.iter().find(|(i, _)| *i == idx) {
            return limit;
        }
        let endpoint = &ENDPOINTS[idx];
        if endpoint.scope == Scope::Ip && endpoint.limit_per_sec == 20 {
            if let Some(step) = self
                .schedule
                .iter()
                .rev()
                .find(|s| s.from_secs * SECOND_MS <= elapsed_ms)
            {
                return step.limit;
            }
        }
        endpoint.limit_per_sec
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The endpoint's one-second window is full.
    Endpoint,
    /// The IP's one-minute overall window is full.
    Overall,
    /// The IP is serving a penalty for an earlier violation.
    Penalty,
}

/// The limiter's verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted. `remaining` is what is left in the endpoint's window, `in_window` how many
    /// requests the window now holds (for the stats' busiest-second figure).
    Accepted {
        remaining: u32,
        in_window: u32,
    },
    Rejected(Rejection),
}

/// The key a budget is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScopeKey {
    Ip(IpAddr),
    ApiKey(String),
}

/// Sliding-window meters for every (endpoint, scope key) and every IP.
#[derive(Debug)]
pub struct Limiter {
    config: LimitConfig,
    started_ms: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    endpoint_windows: HashMap<(usize, ScopeKey), VecDeque<u64>>,
    overall_windows: HashMap<IpAddr, VecDeque<u64>>,
    penalized_until: HashMap<IpAddr, u64>,
    /// Checks since the last sweep of idle windows.
    checks_since_sweep: u32,
}

/// How many checks pass between sweeps of idle windows and served penalties, so a long run
/// with many clients or keys does not keep one entry per client forever.
const SWEEP_EVERY: u32 = 4_096;

impl State {
    /// Drops windows with nothing left in them and penalties already served.
    fn sweep(&mut self, now: u64) {
        self.endpoint_windows.retain(|_, window| {
            expire(window, now, SECOND_MS);
            !window.is_empty()
        });
        self.overall_windows.retain(|_, window| {
            expire(window, now, MINUTE_MS);
            !window.is_empty()
        });
        self.penalized_until.retain(|_, until| now < *until);
        self.checks_since_sweep = 0;
    }

    /// Number of (endpoint, key) and per-IP windows held.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.endpoint_windows.len() + self.overall_windows.len() + self.penalized_until.len()
    }
}

impl Limiter {
    /// A limiter whose schedule counts from `started_ms`.
    pub fn new(config: LimitConfig, started_ms: u64) -> Self {
        Self {
            config,
            started_ms,
            state: Mutex::new(State::default()),
        }
    }

    /// The limit of endpoint `idx` at `now`.
    pub fn limit_at(&self, idx: usize, now: u64) -> u32 {
        self.config
            .limit_of(idx, now.saturating_sub(self.started_ms))
    }

    /// Decides on one request to endpoint `idx` from `ip`, counted against `key`, at `now`.
    pub fn check(
        &self,
        idx: usize,
        endpoint: &Endpoint,
        ip: IpAddr,
        key: ScopeKey,
        now: u64,
    ) -> Decision {
        let limit = self.limit_at(idx, now) as usize;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.checks_since_sweep += 1;
        if state.checks_since_sweep >= SWEEP_EVERY {
            state.sweep(now);
        }
        if state
            .penalized_until
            .get(&ip)
            .is_some_and(|&until| now < until)
        {
            return Decision::Rejected(Rejection::Penalty);
        }
        debug_assert_eq!(endpoint.scope == Scope::Ip, matches!(key, ScopeKey::Ip(_)));
        let overall_len = {
            let overall = state.overall_windows.entry(ip).or_default();
            expire(overall, now, MINUTE_MS);
            overall.len()
        };
        let window = state.endpoint_windows.entry((idx, key)).or_default();
        expire(window, now, SECOND_MS);
        let rejection = if window.len() >= limit {
            Some(Rejection::Endpoint)
        } else if overall_len >= self.config.overall_per_min as usize {
            Some(Rejection::Overall)
        } else {
            None
        };
        if let Some(rejection) = rejection {
            if self.config.penalty_ms > 0 {
                state
                    .penalized_until
                    .insert(ip, now + self.config.penalty_ms);
            }
            return Decision::Rejected(rejection);
        }
        window.push_back(now);
        let in_window = window.len() as u32;
        state.overall_windows.entry(ip).or_default().push_back(now);
        Decision::Accepted {
            remaining: (limit as u32).saturating_sub(in_window),
            in_window,
        }
    }
}

#[cfg(test)]
impl Limiter {
    fn tracked(&self) -> usize {
        self.state.lock().unwrap().tracked()
    }
}

/// Drops timestamps that are no longer inside `(now - span, now]`.
fn expire(window: &mut VecDeque<u64>, now: u64, span: u64) {
    while window.front().is_some_and(|&t| t + span <= now) {
        window.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::find_by_name;
    use std::net::Ipv4Addr;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn candles() -> (usize, &'static Endpoint) {
        let idx = find_by_name("mix/market/candles").unwrap();
        (idx, &ENDPOINTS[idx])
    }

    #[test]
    fn window_admits_exactly_the_limit_then_reopens_after_one_second() {
        let limiter = Limiter::new(LimitConfig::default(), 0);
        let (idx, ep) = candles();
        for n in 0..20 {
            let d = limiter.check(idx, ep, IP, ScopeKey::Ip(IP), 5_000 + n);
            assert_eq!(
                d,
                Decision::Accepted {
                    remaining: 19 - n as u32,
                    in_window: n as u32 + 1
                }
            );
        }
        assert_eq!(
            limiter.check(idx, ep, IP, ScopeKey::Ip(IP), 5_999),
            Decision::Rejected(Rejection::Endpoint)
        );
        // The first request (t = 5000) leaves the window at t = 6000; only it.
        assert!(matches!(
            limiter.check(idx, ep, IP, ScopeKey::Ip(IP), 6_000),
            Decision::Accepted { remaining: 0, .. }
        ));
        assert_eq!(
            limiter.check(idx, ep, IP, ScopeKey::Ip(IP), 6_000),
            Decision::Rejected(Rejection::Endpoint)
        );
    }

    #[test]
    fn schedule_and_overrides() {
        let schedule = LimitConfig::parse_schedule("20,30:5,60:20").unwrap();
        let config = LimitConfig {
            schedule,
            ..LimitConfig::default()
        };
        let (idx, _) = candles();
        assert_eq!(config.limit_of(idx, 0), 20);
        assert_eq!(config.limit_of(idx, 30_000), 5);
        assert_eq!(config.limit_of(idx, 59_999), 5);
        assert_eq!(config.limit_of(idx, 60_000), 20);
        // The schedule leaves 10/s and per-key endpoints alone.
        let fills = find_by_name("mix/market/fills-history").unwrap();
        assert_eq!(config.limit_of(fills, 30_000), 10);
        let over = LimitConfig::parse_override("mix/market/candles=7").unwrap();
        let config = LimitConfig {
            overrides: vec![over],
            ..config
        };
        assert_eq!(config.limit_of(idx, 30_000), 7);
    }

    #[test]
    fn bad_limit_options_are_explained() {
        assert!(matches!(
            LimitConfig::parse_override("candles"),
            Err(LimitConfigError::OverrideSyntax(_))
        ));
        assert!(matches!(
            LimitConfig::parse_override("mix/x=3"),
            Err(LimitConfigError::UnknownEndpoint(_))
        ));
        assert!(matches!(
            LimitConfig::parse_override("mix/market/candles=0"),
            Err(LimitConfigError::OverrideSyntax(_))
        ));
        assert!(matches!(
            LimitConfig::parse_schedule("20,x:5"),
            Err(LimitConfigError::ScheduleSyntax(_))
        ));
        assert!(matches!(
            LimitConfig::parse_schedule("30:5,10:20"),
            Err(LimitConfigError::ScheduleOrder(_))
        ));
    }

    #[test]
    fn idle_windows_and_served_penalties_are_swept() {
        let config = LimitConfig {
            penalty_ms: 10_000,
            ..LimitConfig::default()
        };
        let limiter = Limiter::new(config, 0);
        let (idx, ep) = candles();
        // Many distinct clients, each once, plus one violation that earns a penalty.
        for n in 0..1_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + n));
            limiter.check(idx, ep, ip, ScopeKey::Ip(ip), 1_000);
        }
        for _ in 0..21 {
            limiter.check(idx, ep, IP, ScopeKey::Ip(IP), 1_000);
        }
        assert!(limiter.tracked() >= 2_000);
        // Once every window has expired and the penalty is served, the next sweep empties
        // the maps; the checks that trigger it leave only the last client's two windows.
        let later = 1_000 + MINUTE_MS + 10_000;
        for k in 0..u64::from(SWEEP_EVERY) {
            // 16 a second: under every limit, so no new penalty.
            let decision = limiter.check(idx, ep, IP, ScopeKey::Ip(IP), later + k * 60);
            assert!(matches!(decision, Decision::Accepted { .. }));
        }
        assert_eq!(limiter.tracked(), 2);
    }
}
