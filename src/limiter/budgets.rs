//! Every budget of one client, and what the server's replies do to them: the decisions of
//! the limiter as pure functions of explicit time.
//!
//! [`super::local::LocalLimiter`] wraps this in a mutex and waits on tokio's clock; the
//! discrete-event model in [`super::model`] drives it directly, with simulated networks
//! and servers, so what is tested is exactly what runs.

use std::time::Duration;

use super::offset::{OffsetBounds, STAMP_RESOLUTION_US};
use super::window::{WindowLog, SERVER_WINDOW_US};
use super::{
    endpoint_limit, Adjustment, Category, CategoryCounters, Feedback, Limits, Permit, Route,
    ENDPOINT_CATEGORIES,
};
use crate::retry::Backoff;

/// Rejections in a row held only until the window drained, before the backoff adds to it.
pub const PROBES_BEFORE_BACKOFF: u32 = 6;

/// The random part of the hold after a rejection, in µs.
const PROBE_PHASE_US: u64 = 250_000;

/// Waits shorter than this are scheduling noise, not waiting for the budget.
const WAIT_NOISE: Duration = Duration::from_millis(1);

/// The budgets of one client: per category, per slow endpoint, and the overall per-IP one,
/// with the clock-offset bounds they share.
#[derive(Debug)]
pub struct Budgets {
    categories: [WindowLog; 4],
    /// Per-endpoint logs for endpoints documented below their category's rate, indexed like
    /// [`ENDPOINT_CATEGORIES`].
    endpoints: Vec<Option<WindowLog>>,
    overall: WindowLog,
    counters: [CategoryCounters; 4],
    /// Per category: its head request has category room and waits for the overall budget.
    overall_waiting: [bool; 4],
    offset: OffsetBounds,
    next_id: u64,
    backoff: Backoff,
}

impl Budgets {
    /// Full budgets for `limits`; a repeated rate-limit rejection pauses its category for
    /// `backoff`'s delay.
    pub fn new(limits: &Limits, backoff: Backoff) -> Self {
        // An operator's extra margin stretches the windows; by default there is none, since
        // the margin now comes from what the offset bounds measure.
        let stretch = 1.0 + limits.safety_margin.clamp(0.0, 0.5);
        let second = (SERVER_WINDOW_US as f64 * stretch).round() as u64;
        let minute = (60.0 * SERVER_WINDOW_US as f64 * stretch).round() as u64;
        let categories = Category::ALL.map(|c| WindowLog::new(limits.per_second(c), second, true));
        // The effective limit and the server view are read from the logs in `counters`.
        let counters = Category::ALL.map(|c| CategoryCounters {
            limit: limits.per_second(c),
            ..CategoryCounters::default()
        });
        let endpoints = (0..ENDPOINT_CATEGORIES.len())
            .map(|i| {
                let (_, category) = ENDPOINT_CATEGORIES[i];
                endpoint_limit(i as u16)
                    .filter(|&limit| limit < limits.per_second(category))
                    .map(|limit| WindowLog::new(limit, second, true))
            })
            .collect();
        Self {
            categories,
            endpoints,
            overall: WindowLog::new(limits.overall_per_minute, minute, false),
            counters,
            overall_waiting: [false; 4],
            offset: OffsetBounds::default(),
            next_id: 0,
            backoff,
        }
    }

    fn endpoint_log(&mut self, endpoint: u16) -> Option<&mut WindowLog> {
        self.endpoints
            .get_mut(usize::from(endpoint))
            .and_then(Option::as_mut)
    }

    /// When `route`'s own budgets (category and endpoint) have room, as far as known now.
    pub fn own_ready_at(&mut self, route: Route, now: u64) -> u64 {
        let category = self.categories[route.category.index()].ready_at(now);
        match self.endpoint_log(route.endpoint) {
            Some(log) => category.max(log.ready_at(now)),
            None => category,
        }
    }

    /// When the overall budget has room, as far as known now.
    pub fn overall_ready_at(&mut self, now: u64) -> u64 {
        self.overall.ready_at(now)
    }

    /// Whether a category ranked above `category` is waiting for the overall budget.
    pub fn outranked(&self, category: Category) -> bool {
        Category::ALL
            .iter()
            .any(|c| c.priority() < category.priority() && self.overall_waiting[c.index()])
    }

    /// Marks or clears `category` as waiting for the overall budget.
    pub fn set_overall_waiting(&mut self, category: Category, waiting: bool) {
        self.overall_waiting[category.index()] = waiting;
    }

    /// Takes one of each of `route`'s budgets at `now`; the caller checked both ready times.
    pub fn admit(&mut self, route: Route, now: u64, waited: Duration) -> Permit {
        let id = self.next_id;
        self.next_id += 1;
        let i = route.category.index();
        self.categories[i].admit(now, id, route.endpoint);
        if let Some(log) = self.endpoint_log(route.endpoint) {
            log.admit(now, id, route.endpoint);
        }
        self.overall.admit(now, id, route.endpoint);
        let counters = &mut self.counters[i];
        counters.admitted += 1;
        if waited >= WAIT_NOISE {
            counters.waited += 1;
            counters.wait_total += waited;
        }
        Permit {
            id,
            category: route.category,
            endpoint: route.endpoint,
            admitted_at_us: now,
            waited,
        }
    }

    /// The server's answer to `permit`'s request, known at `now`.
    pub fn feedback(
        &mut self,
        permit: &Permit,
        feedback: Feedback,
        now: u64,
    ) -> Option<Adjustment> {
        let server_ms = feedback.server_time_ms();
        if let Some(server_ms) = server_ms {
            if !self.offset.observe(permit.admitted_at_us, now, server_ms) {
                tracing::warn!(
                    server_ms,
                    "bitget's clock jumped against ours; clock-offset bounds restarted"
                );
            }
        }
        let counted_by = self.counted_by(now, server_ms);
        let i = permit.category.index();
        self.categories[i].answered(permit.id, counted_by, server_ms);
        if let Some(log) = self.endpoint_log(permit.endpoint) {
            log.answered(permit.id, counted_by, server_ms);
        }
        self.overall.answered(permit.id, counted_by, server_ms);
        match feedback {
            Feedback::Accepted {
                remaining: Some(remaining),
                ..
            } => {
                self.categories[i].record_success(permit.id);
                // The header counts the endpoint's own budget: an endpoint with its own
                // window follows it there, not in the category.
                if let Some(log) = self.endpoint_log(permit.endpoint) {
                    log.observe_remaining(permit.id, remaining, now);
                    return None;
                }
                let changed = self.categories[i].observe_remaining(permit.id, remaining, now)?;
                Some(Adjustment::EffectiveLimit {
                    category: permit.category,
                    limit: changed,
                })
            }
            Feedback::RateLimited {
                retry_after,
                jitter,
                ..
            } => {
                self.counters[i].rate_limited += 1;
                let backoff = self.backoff;
                let log = &mut self.categories[i];
                // This request itself is answered and still counted; anything else is ours.
                let crowded = log.in_window(now) <= 1;
                let Some(strike) = log.record_rejection(permit.id, now) else {
                    return Some(Adjustment::InFlightRejection {
                        category: permit.category,
                    });
                };
                // A rejection is a window question: hold until every request of ours the
                // server may still count has left its window, which is then sure to have
                // room for us alone whatever its limit became. The next request is a single
                // probe whose remaining count tells what the server allows now.
                // Plus a random part of a quarter second: a window that others fill has its
                // free moments at the same phase every second, and probes a second apart
                // would keep missing them.
                let phase = (jitter.clamp(0.0, 1.0) * PROBE_PHASE_US as f64) as u64;
                let mut until = log.drained_at().max(now) + phase;
                if strike >= PROBES_BEFORE_BACKOFF {
                    // A newcomer beside a client that fills every window gets in only
                    // through the gaps arrival jitter leaves (a third of the time at 30 ms),
                    // and the other client cannot see its rejected probes: so the first few
                    // probes come a drained window (a second) apart; after them it is not a
                    // window question any more (a penalty, say) and the backoff grows.
                    let retry =
                        (strike - PROBES_BEFORE_BACKOFF).min(backoff.max_retries.saturating_sub(1));
                    let delay = backoff.delay(retry, jitter).unwrap_or(backoff.cap);
                    until = until.max(now + delay.as_micros() as u64);
                }
                if let Some(server) = retry_after {
                    until = until.max(now + server.min(backoff.cap).as_micros() as u64);
                }
                log.pause_until(until);
                Some(Adjustment::Paused {
                    category: permit.category,
                    pause: Duration::from_micros(until - now),
                    strike,
                    crowded,
                })
            }
            Feedback::Accepted { .. } => {
                self.categories[i].record_success(permit.id);
                None
            }
            Feedback::Other { .. } => None,
        }
    }

    /// The local time by which a request answered at `now` was certainly counted: its
    /// `requestTime` (plus the stamp's resolution) at the lowest the offset can be, or our
    /// receive time, whichever is earlier. Both hold whether the stamp marks the request's
    /// arrival or its reply; the receive time alone holds without any stamp.
    fn counted_by(&self, now: u64, server_ms: Option<u64>) -> u64 {
        let (Some(server_ms), Some(lower)) = (server_ms, self.offset.lower(now)) else {
            return now;
        };
        let server_us = (server_ms as i64).saturating_mul(1_000) + STAMP_RESOLUTION_US;
        let local = server_us.saturating_sub(lower).max(0) as u64;
        local.min(now)
    }

    /// Counters for `category` at `now`.
    pub fn counters(&mut self, category: Category, now: u64) -> CategoryCounters {
        let i = category.index();
        let available = self.categories[i]
            .available(now)
            .min(self.overall.available(now));
        let share = self.categories[i].share();
        CategoryCounters {
            available,
            effective_limit: self.categories[i].effective_limit(),
            foreign_milli: (share.foreign() * 1_000.0).round() as u32,
            server_limit: share.server_limit(),
            clock_margin_us: self
                .offset
                .width(now)
                .map(|w| w + STAMP_RESOLUTION_US as u64),
            ..self.counters[i]
        }
    }

    /// The bounds on the clock offset to the server, for tests and reports.
    pub fn offset(&self) -> &OffsetBounds {
        &self.offset
    }
}
