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
use super::{
    Adjustment, Category, CategoryCounters, EgressLoad, EndpointCounters, Feedback, Limits, Permit,
    Route, Scope,
};

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

/// The budgets of one client: one window per endpoint under each scope key, a window per
/// category where the operator caps a whole category, and the overall per-IP one under each
/// egress, with the clock-offset bounds they share (one server clock, whichever address a
/// request leaves from).
///
/// Windows are created on first use, so a second egress, account or endpoint needs nothing
/// but its key in the route.
#[derive(Debug)]
pub struct Budgets {
    /// Per (category, scope key, endpoint): the endpoint's own paced window, which follows
    /// the server's remaining counts and holds after a 429.
    endpoints: BTreeMap<(Category, u16, u16), WindowLog>,
    /// Per (category, scope key), for categories with a configured total.
    totals: BTreeMap<(Category, u16), WindowLog>,
    /// Per egress.
    overall: BTreeMap<u16, WindowLog>,
    /// Per egress: admitted, rate limited.
    egress_stats: BTreeMap<u16, (u64, u64)>,
    counters: [CategoryCounters; 4],
    /// Per (category, endpoint), over every scope key.
    endpoint_stats: BTreeMap<(Category, u16), CategoryCounters>,
    /// Per category: how many of its endpoints' head requests have their own room and wait
    /// for the overall budget.
    overall_waiting: [u32; 4],
    offset: OffsetBounds,
    next_id: u64,
    backoff: Backoff,
    limits: Limits,
    second_us: u64,
    minute_us: u64,
}

impl Budgets {
    /// Full budgets for `limits`; a repeated rate-limit rejection pauses its endpoint for
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
            endpoints: BTreeMap::new(),
            totals: BTreeMap::new(),
            overall: BTreeMap::new(),
            egress_stats: BTreeMap::new(),
            counters,
            endpoint_stats: BTreeMap::new(),
            overall_waiting: [0; 4],
            offset: OffsetBounds::default(),
            next_id: 0,
            backoff,
            limits: limits.clone(),
            second_us,
            minute_us,
        }
    }

    /// The endpoint's own window under the route's scope key.
    fn endpoint_log(&mut self, route: Route) -> &mut WindowLog {
        let (limit, window) = (self.limits.endpoint_limit(&route), self.second_us);
        self.endpoints
            .entry((route.category, route.scope_key(), route.endpoint))
            .or_insert_with(|| WindowLog::new(limit, window, true))
    }

    /// The category's total window, when the operator caps the category.
    fn total_log(&mut self, route: Route) -> Option<&mut WindowLog> {
        let limit = self.limits.total(route.category)?;
        let window = self.second_us;
        Some(
            self.totals
                .entry((route.category, route.scope_key()))
                .or_insert_with(|| WindowLog::new(limit, window, true)),
        )
    }

    fn overall_log(&mut self, egress: u16) -> &mut WindowLog {
        let (limit, window) = (self.limits.overall_per_minute, self.minute_us);
        self.overall
            .entry(egress)
            .or_insert_with(|| WindowLog::new(limit, window, false))
    }

    /// The endpoint window `permit` was admitted under (it exists: admission made it).
    fn permit_log(&mut self, permit: &Permit) -> Option<&mut WindowLog> {
        self.endpoints
            .get_mut(&(permit.category, permit.scope_key, permit.endpoint))
    }

    /// When `route`'s own budgets (endpoint, and category total if any) have room, as far
    /// as known now.
    pub fn own_ready_at(&mut self, route: Route, now: u64) -> u64 {
        let endpoint = self.endpoint_log(route).ready_at(now);
        match self.total_log(route) {
            Some(log) => endpoint.max(log.ready_at(now)),
            None => endpoint,
        }
    }

    /// When the overall budget of `route`'s egress has room, as far as known now.
    pub fn overall_ready_at(&mut self, route: Route, now: u64) -> u64 {
        self.overall_log(route.keys.egress).ready_at(now)
    }

    /// The egress among `route`'s candidates that has room first, with that time: on a tie
    /// the one with fewer of `route`'s endpoint in its window, then the lowest.
    pub fn choose(&mut self, route: Route, now: u64) -> (Route, u64) {
        let mut best: Option<(u64, u32, Route)> = None;
        for egress in route.egress_candidates().collect::<Vec<_>>() {
            let candidate = route.on_egress(egress);
            let ready = self
                .own_ready_at(candidate, now)
                .max(self.overall_ready_at(candidate, now));
            let load = self.endpoint_log(candidate).in_window(now);
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
            .any(|c| c.priority() < category.priority() && self.overall_waiting[c.index()] > 0)
    }

    /// Marks (`true`) or clears one of `category`'s heads waiting for the overall budget;
    /// every mark is cleared exactly once.
    pub fn set_overall_waiting(&mut self, category: Category, waiting: bool) {
        let count = &mut self.overall_waiting[category.index()];
        *count = if waiting {
            count.saturating_add(1)
        } else {
            count.saturating_sub(1)
        };
    }

    /// Takes one of each of `route`'s budgets at `now`; the caller checked both ready times.
    pub fn admit(&mut self, route: Route, now: u64, waited: Duration) -> Permit {
        let id = self.next_id;
        self.next_id += 1;
        let key = route.scope_key();
        self.endpoint_log(route).admit(now, id, route.endpoint);
        if let Some(log) = self.total_log(route) {
            log.admit(now, id, route.endpoint);
        }
        self.overall_log(route.keys.egress)
            .admit(now, id, route.endpoint);
        self.egress_stats.entry(route.keys.egress).or_default().0 += 1;
        let limit = self.limits.endpoint_limit(&route);
        let stats = self
            .endpoint_stats
            .entry((route.category, route.endpoint))
            .or_insert_with(|| CategoryCounters {
                limit,
                ..CategoryCounters::default()
            });
        for counters in [&mut self.counters[route.category.index()], stats] {
            counters.admitted += 1;
            if waited >= WAIT_NOISE {
                counters.waited += 1;
                counters.wait_total += waited;
            }
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
        if let Some(log) = self.totals.get_mut(&(permit.category, permit.scope_key)) {
            log.answered(permit.id, counted_by, server_ms);
        }
        self.overall_log(permit.egress)
            .answered(permit.id, counted_by, server_ms);
        let (category, endpoint) = (permit.category, permit.endpoint);
        if matches!(feedback, Feedback::RateLimited { .. }) {
            self.counters[category.index()].rate_limited += 1;
            if let Some(stats) = self.endpoint_stats.get_mut(&(category, endpoint)) {
                stats.rate_limited += 1;
            }
            self.egress_stats.entry(permit.egress).or_default().1 += 1;
        }
        let backoff = self.backoff;
        let log = self.permit_log(permit)?;
        log.answered(permit.id, counted_by, server_ms);
        match feedback {
            Feedback::Accepted { remaining, .. } => {
                log.record_success(permit.id);
                // The header counts this endpoint's budget, which is what its window is.
                let limit = log.observe_remaining(permit.id, remaining?, now)?;
                Some(Adjustment::EffectiveLimit {
                    category,
                    endpoint,
                    limit,
                })
            }
            Feedback::RateLimited {
                retry_after,
                jitter,
                ..
            } => {
                // This request itself is answered and still counted; anything else is ours.
                let crowded = log.in_window(now) <= 1;
                let Some(strike) = log.record_rejection(permit.id, now) else {
                    return Some(Adjustment::InFlightRejection { category, endpoint });
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
                    category,
                    endpoint,
                    pause: Duration::from_micros(until - now),
                    strike,
                    crowded,
                })
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

    /// The window figures of `log` at `now` on top of `base`.
    fn window_figures(
        &mut self,
        base: CategoryCounters,
        log: Option<(Category, u16, u16)>,
        now: u64,
    ) -> CategoryCounters {
        // The scope key is an egress only for IP-metered windows; account windows report
        // beside the first egress's overall budget.
        let egress = match log {
            Some((category, key, _)) if Route::from(category).scope == Scope::Ip => key,
            _ => 0,
        };
        let overall = self.overall_log(egress).available(now);
        let clock_margin_us = self
            .offset
            .width(now)
            .map(|w| w + STAMP_RESOLUTION_US as u64);
        let Some(log) = log.and_then(|k| self.endpoints.get_mut(&k)) else {
            return CategoryCounters {
                available: base.limit.min(overall),
                effective_limit: base.limit,
                server_limit: base.limit,
                clock_margin_us,
                ..base
            };
        };
        let share = log.share();
        let (foreign_milli, server_limit) = (
            (share.foreign() * 1_000.0).round() as u32,
            share.server_limit(),
        );
        CategoryCounters {
            available: log.available(now).min(overall),
            effective_limit: log.effective_limit(),
            foreign_milli,
            server_limit,
            clock_margin_us,
            ..base
        }
    }

    /// The first window (lowest scope key) of `category`'s `endpoint`.
    fn first_window(&self, category: Category, endpoint: u16) -> Option<(Category, u16, u16)> {
        self.endpoints
            .keys()
            .find(|&&(c, _, e)| c == category && e == endpoint)
            .copied()
    }

    /// Counters for `category` at `now`: its totals, with the window figures of its busiest
    /// endpoint under its first scope key (the only one until several egresses or accounts
    /// are configured).
    pub fn counters(&mut self, category: Category, now: u64) -> CategoryCounters {
        let busiest = self
            .endpoint_stats
            .iter()
            .filter(|((c, _), _)| *c == category)
            .max_by_key(|(_, s)| s.admitted)
            .map(|(&(_, e), _)| e);
        let log = busiest.and_then(|e| self.first_window(category, e));
        let base = self.counters[category.index()];
        self.window_figures(base, log, now)
    }

    /// Counters of every endpoint used so far, by category then endpoint.
    pub fn endpoint_counters(&mut self, now: u64) -> Vec<EndpointCounters> {
        let stats: Vec<((Category, u16), CategoryCounters)> =
            self.endpoint_stats.iter().map(|(&k, &v)| (k, v)).collect();
        stats
            .into_iter()
            .map(|((category, endpoint), base)| {
                let log = self.first_window(category, endpoint);
                EndpointCounters {
                    category,
                    endpoint,
                    counters: self.window_figures(base, log, now),
                }
            })
            .collect()
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
                in_window: self
                    .endpoints
                    .iter_mut()
                    .filter(|((c, key, _), _)| *c == Category::Market && *key == egress)
                    .map(|(_, log)| log.in_window(now))
                    .sum(),
            })
            .collect()
    }

    /// The bounds on the clock offset to the server, for tests and reports.
    pub fn offset(&self) -> &OffsetBounds {
        &self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::Keys;

    #[test]
    fn an_account_windows_figures_are_read_beside_the_egress_it_leaves_from() {
        let limits = Limits {
            overall_per_minute: 2,
            ..Limits::default()
        };
        let mut budgets = Budgets::new(&limits, Backoff::default());
        // The second account's requests leave from egress 0 and spend its overall budget.
        let route = Route::new(Category::Account, 21, Some(10)).with_keys(Keys {
            egress: 0,
            account: 1,
        });
        budgets.admit(route, 0, Duration::ZERO);
        budgets.admit(route, 100_000, Duration::ZERO);
        let account = budgets.counters(Category::Account, 200_000);
        assert_eq!(account.admitted, 2);
        // Its own window has room for 8 more, the egress's minute none.
        assert_eq!(account.available, 0);
    }
}
