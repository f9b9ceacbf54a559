//! Every budget of one client, and what the server's replies do to them: the decisions of
//! the limiter as pure functions of explicit time.
//!
//! [`super::local::LocalLimiter`] wraps this in a mutex and waits on tokio's clock; the
//! discrete-event model in [`super::model`] drives it directly, with simulated networks
//! and servers, so what is tested is exactly what runs.

use std::collections::BTreeMap;
use std::time::Duration;

use super::backoff::Backoff;
use super::offset::{OffsetBounds, STAMP_RESOLUTION_US};
use super::window::{WindowLog, SERVER_WINDOW_US};
use super::{Adjustment, Category, CategoryCounters, EgressLoad, Feedback, Limits, Permit, Route};

/// Rejections in a row held only until the window drained, before the backoff adds to it.
pub const PROBES_BEFORE_BACKOFF: u32 = 6;

/// The random part of the hold after a rejection, in µs.
const PROBE_PHASE_US: u64 = 250_000;

/// The random part of the hold after a rejection, for a uniform draw `jitter` in [0, 1).
pub fn probe_phase_us(jitter: f64) -> u64 {
    (jitter.clamp(0.0, 1.0) * PROBE_PHASE_US as f64) as u64
}

/// Waits shorter than this are scheduling noise, not waiting for the budget.
const WAIT_NOISE: Duration = Duration::from_millis(1);

/// The budgets of one client: per category and per slow endpoint under each scope key, and
/// the overall per-IP one under each egress, with the clock-offset bounds they share (one
/// server clock, whichever address a request leaves from).
///
/// Windows are created on first use, so a second egress or account needs nothing but its
/// key in the route.
#[derive(Debug)]
pub struct Budgets {
    /// Per category, keyed by the scope key of the requests (egress or account).
    categories: [BTreeMap<u16, WindowLog>; 4],
    /// Per (scope key, endpoint), for endpoints documented below their category's rate.
    endpoints: BTreeMap<(u16, u16), WindowLog>,
    /// Per egress.
    overall: BTreeMap<u16, WindowLog>,
    /// Per egress: admitted, rate limited.
    egress_stats: BTreeMap<u16, (u64, u64)>,
    counters: [CategoryCounters; 4],
    /// Per category: its head request has category room and waits for the overall budget.
    overall_waiting: [bool; 4],
    offset: OffsetBounds,
    next_id: u64,
    backoff: Backoff,
    limits: Limits,
    second_us: u64,
    minute_us: u64,
}

impl Budgets {
    /// Full budgets for `limits`; a repeated rate-limit rejection pauses its category for
    /// `backoff`'s delay.
    pub fn new(limits: &Limits, backoff: Backoff) -> Self {
        // An operator's extra margin stretches the windows; by default there is none, since
        // the margin now comes from what the offset bounds measure.
        let stretch = 1.0 + limits.safety_margin.clamp(0.0, 0.5);
        let second_us = (SERVER_WINDOW_US as f64 * stretch).round() as u64;
        let minute_us = (60.0 * SERVER_WINDOW_US as f64 * stretch).round() as u64;
        // The effective limit and the server view are read from the logs in `counters`.
        let counters = Category::ALL.map(|c| CategoryCounters {
            limit: limits.per_second(c),
            ..CategoryCounters::default()
        });
        Self {
            categories: Default::default(),
            endpoints: BTreeMap::new(),
            overall: BTreeMap::new(),
            egress_stats: BTreeMap::new(),
            counters,
            overall_waiting: [false; 4],
            offset: OffsetBounds::default(),
            next_id: 0,
            backoff,
            limits: limits.clone(),
            second_us,
            minute_us,
        }
    }

    fn category_log(&mut self, category: Category, key: u16) -> &mut WindowLog {
        let (limit, window) = (self.limits.per_second(category), self.second_us);
        self.categories[category.index()]
            .entry(key)
            .or_insert_with(|| WindowLog::new(limit, window, true))
    }

    fn overall_log(&mut self, egress: u16) -> &mut WindowLog {
        let (limit, window) = (self.limits.overall_per_minute, self.minute_us);
        self.overall
            .entry(egress)
            .or_insert_with(|| WindowLog::new(limit, window, false))
    }

    /// The endpoint's own window, when its documented limit is below its category's.
    fn endpoint_log(&mut self, route: Route) -> Option<&mut WindowLog> {
        let limit = self.limits.endpoint_window(&route)?;
        let window = self.second_us;
        Some(
            self.endpoints
                .entry((route.scope_key(), route.endpoint))
                .or_insert_with(|| WindowLog::new(limit, window, true)),
        )
    }

    /// The windows `permit` was admitted under, if they exist.
    fn permit_endpoint_log(&mut self, permit: &Permit) -> Option<&mut WindowLog> {
        self.endpoints.get_mut(&(permit.scope_key, permit.endpoint))
    }

    /// When `route`'s own budgets (category and endpoint) have room, as far as known now.
    pub fn own_ready_at(&mut self, route: Route, now: u64) -> u64 {
        let category = self
            .category_log(route.category, route.scope_key())
            .ready_at(now);
        match self.endpoint_log(route) {
            Some(log) => category.max(log.ready_at(now)),
            None => category,
        }
    }

    /// When the overall budget of `route`'s egress has room, as far as known now.
    pub fn overall_ready_at(&mut self, route: Route, now: u64) -> u64 {
        self.overall_log(route.keys.egress).ready_at(now)
    }

    /// The egress among `route`'s candidates that has room first, with that time: on a tie
    /// the one with fewer of `route`'s category in its window, then the lowest.
    pub fn choose(&mut self, route: Route, now: u64) -> (Route, u64) {
        let mut best: Option<(u64, u32, Route)> = None;
        for egress in route.egress_candidates().collect::<Vec<_>>() {
            let candidate = route.on_egress(egress);
            let ready = self
                .own_ready_at(candidate, now)
                .max(self.overall_ready_at(candidate, now));
            let load = self
                .category_log(route.category, candidate.scope_key())
                .in_window(now);
            if best.is_none_or(|(r, l, _)| (ready, load) < (r, l)) {
                best = Some((ready, load, candidate));
            }
        }
        best.map_or((route, now), |(ready, _, chosen)| (chosen, ready))
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
        let key = route.scope_key();
        self.category_log(route.category, key)
            .admit(now, id, route.endpoint);
        if let Some(log) = self.endpoint_log(route) {
            log.admit(now, id, route.endpoint);
        }
        self.overall_log(route.keys.egress)
            .admit(now, id, route.endpoint);
        self.egress_stats.entry(route.keys.egress).or_default().0 += 1;
        let counters = &mut self.counters[route.category.index()];
        counters.admitted += 1;
        if waited >= WAIT_NOISE {
            counters.waited += 1;
            counters.wait_total += waited;
        }
        Permit {
            id,
            category: route.category,
            endpoint: route.endpoint,
            scope_key: key,
            egress: route.keys.egress,
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
        self.category_log(permit.category, permit.scope_key)
            .answered(permit.id, counted_by, server_ms);
        if let Some(log) = self.permit_endpoint_log(permit) {
            log.answered(permit.id, counted_by, server_ms);
        }
        self.overall_log(permit.egress)
            .answered(permit.id, counted_by, server_ms);
        match feedback {
            Feedback::Accepted {
                remaining: Some(remaining),
                ..
            } => {
                self.category_log(permit.category, permit.scope_key)
                    .record_success(permit.id);
                // The header counts the endpoint's own budget: an endpoint with its own
                // window follows it there, not in the category.
                if let Some(log) = self.permit_endpoint_log(permit) {
                    log.observe_remaining(permit.id, remaining, now);
                    return None;
                }
                let changed = self
                    .category_log(permit.category, permit.scope_key)
                    .observe_remaining(permit.id, remaining, now)?;
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
                self.egress_stats.entry(permit.egress).or_default().1 += 1;
                let backoff = self.backoff;
                let log = self.category_log(permit.category, permit.scope_key);
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
                let phase = probe_phase_us(jitter);
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
                self.category_log(permit.category, permit.scope_key)
                    .record_success(permit.id);
                None
            }
            Feedback::Other { .. } => None,
        }
    }

    /// The local time by which a request answered at `now` was certainly counted: its
    /// `requestTime` (plus the stamp's resolution) at the lowest the offset can be, or our
    /// receive time, whichever is earlier. Both hold whether the stamp marks the request's
    /// arrival or its reply; the receive time alone holds without any stamp.
    pub fn counted_by(&self, now: u64, server_ms: Option<u64>) -> u64 {
        let (Some(server_ms), Some(lower)) = (server_ms, self.offset.lower(now)) else {
            return now;
        };
        let server_us = (server_ms as i64).saturating_mul(1_000) + STAMP_RESOLUTION_US;
        let local = server_us.saturating_sub(lower).max(0) as u64;
        local.min(now)
    }

    /// Counters for `category` at `now`, under its first scope key (the only one until
    /// several egresses or accounts are configured).
    pub fn counters(&mut self, category: Category, now: u64) -> CategoryCounters {
        let i = category.index();
        let key = self.categories[i].keys().next().copied().unwrap_or(0);
        let overall = self.overall_log(0).available(now);
        let log = self.category_log(category, key);
        let available = log.available(now).min(overall);
        let effective_limit = log.effective_limit();
        let share = log.share();
        CategoryCounters {
            available,
            effective_limit,
            foreign_milli: (share.foreign() * 1_000.0).round() as u32,
            server_limit: share.server_limit(),
            clock_margin_us: self
                .offset
                .width(now)
                .map(|w| w + STAMP_RESOLUTION_US as u64),
            ..self.counters[i]
        }
    }

    /// What each egress carried, lowest first.
    pub fn egress_loads(&mut self, now: u64) -> Vec<EgressLoad> {
        let stats: Vec<(u16, (u64, u64))> =
            self.egress_stats.iter().map(|(&k, &v)| (k, v)).collect();
        stats
            .into_iter()
            .map(|(egress, (admitted, rate_limited))| EgressLoad {
                egress,
                admitted,
                rate_limited,
                in_window: self.categories[Category::Market.index()]
                    .get_mut(&egress)
                    .map_or(0, |log| log.in_window(now)),
            })
            .collect()
    }

    /// The bounds on the clock offset to the server, for tests and reports.
    pub fn offset(&self) -> &OffsetBounds {
        &self.offset
    }
}
