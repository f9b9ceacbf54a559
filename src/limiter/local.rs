//! The in-process limiter: [`WindowLog`]s behind a mutex, one FIFO gate per category.
//!
//! Waiting happens on tokio's clock (`sleep_until`), so tests run it on a paused clock. The
//! per-category gate is a fair async mutex: requests of one category are admitted in
//! arrival order and only the head of the queue holds a timer, while categories wait
//! independently of each other and meet only in the overall budget, under one short lock.
//!
//! Where they meet, rank decides ([`Category::priority`]): a category whose own budget has
//! room but which waits for the overall budget marks itself as waiting, and a lower-ranked
//! category does not take an overall slot while a higher one is marked. So an order never
//! waits behind a market-data backlog, however long the backlog.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::window::{WindowLog, SERVER_WINDOW_US};
use super::{
    endpoint_limit, Acquire, Adjustment, Category, CategoryCounters, Feedback, Limits, Permit,
    RateLimiter, Route, ENDPOINT_CATEGORIES,
};
use crate::retry::Backoff;

/// A reply arriving this long after its request carries a remaining count for a window
/// that has since moved on: following it would mistake the server's old count for a limit.
const STALE_REPLY_US: u64 = SERVER_WINDOW_US / 4;

/// Waits shorter than this are scheduling noise, not waiting for the budget.
const WAIT_NOISE: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct State {
    categories: [WindowLog; 4],
    /// Per-endpoint logs for endpoints documented below their category's rate, indexed like
    /// [`ENDPOINT_CATEGORIES`].
    endpoints: Vec<Option<WindowLog>>,
    overall: WindowLog,
    counters: [CategoryCounters; 4],
    /// Per category: its head request has category room and waits for the overall budget.
    overall_waiting: [bool; 4],
}

impl State {
    /// When `route`'s own budgets (category and endpoint) have room.
    fn own_ready_at(&mut self, route: Route, now: u64) -> u64 {
        let category = self.categories[route.category.index()].ready_at(now);
        match self.endpoint_log(route.endpoint) {
            Some(log) => category.max(log.ready_at(now)),
            None => category,
        }
    }

    fn endpoint_log(&mut self, endpoint: u16) -> Option<&mut WindowLog> {
        self.endpoints
            .get_mut(usize::from(endpoint))
            .and_then(Option::as_mut)
    }

    /// Whether a category ranked above `category` is waiting for the overall budget.
    fn outranked(&self, category: Category) -> bool {
        Category::ALL
            .iter()
            .any(|c| c.priority() < category.priority() && self.overall_waiting[c.index()])
    }
}

/// Rate limiter for one process.
#[derive(Debug)]
pub struct LocalLimiter {
    origin: Instant,
    state: Mutex<State>,
    gates: [tokio::sync::Mutex<()>; 4],
    /// Woken whenever a category stops waiting for the overall budget.
    overall_released: Notify,
    backoff: Backoff,
}

/// Clears a category's overall-waiting mark when its request is admitted or abandoned, so
/// a cancelled higher-ranked request cannot block lower ones.
struct WaitingMark<'a> {
    limiter: &'a LocalLimiter,
    index: usize,
    set: bool,
}

impl WaitingMark<'_> {
    fn set(&mut self, state: &mut State) {
        state.overall_waiting[self.index] = true;
        self.set = true;
    }

    fn clear(&mut self, state: &mut State) {
        if std::mem::take(&mut self.set) {
            state.overall_waiting[self.index] = false;
            self.limiter.overall_released.notify_waiters();
        }
    }
}

impl Drop for WaitingMark<'_> {
    fn drop(&mut self) {
        if self.set {
            let mut state = self.limiter.state();
            self.clear(&mut state);
        }
    }
}

impl LocalLimiter {
    /// A limiter enforcing `limits`, starting with full budgets; a rate-limit rejection
    /// pauses its category for `backoff`'s delay.
    pub fn new(limits: &Limits, backoff: Backoff) -> Self {
        let stretch = 1.0 + limits.safety_margin.clamp(0.0, 0.5);
        let second = (SERVER_WINDOW_US as f64 * stretch).round() as u64;
        let minute = (60.0 * SERVER_WINDOW_US as f64 * stretch).round() as u64;
        let categories = Category::ALL.map(|c| WindowLog::new(limits.per_second(c), second, true));
        let counters = Category::ALL.map(|c| CategoryCounters {
            limit: limits.per_second(c),
            effective_limit: limits.per_second(c),
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
            origin: Instant::now(),
            state: Mutex::new(State {
                categories,
                endpoints,
                overall: WindowLog::new(limits.overall_per_minute, minute, false),
                counters,
                overall_waiting: [false; 4],
            }),
            gates: Default::default(),
            overall_released: Notify::new(),
            backoff,
        }
    }

    fn now_us(&self) -> u64 {
        Instant::now().duration_since(self.origin).as_micros() as u64
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the logs half-updated: every update is one push.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn acquire_inner(&self, route: Route) -> Permit {
        let category = route.category;
        let requested = Instant::now();
        let i = category.index();
        let _gate = self.gates[i].lock().await;
        let mut mark = WaitingMark {
            limiter: self,
            index: i,
            set: false,
        };
        loop {
            let now = self.now_us();
            // Created before the check, so a release between the check and the wait wakes it.
            let released = self.overall_released.notified();
            let wake = {
                let mut state = self.state();
                let own = state.own_ready_at(route, now);
                if own > now {
                    // Not competing for the overall budget until its own budget has room.
                    mark.clear(&mut state);
                    Some(own)
                } else {
                    let overall = state.overall.ready_at(now);
                    if overall <= now && !state.outranked(category) {
                        mark.clear(&mut state);
                        state.categories[i].admit_to(now, route.endpoint);
                        if let Some(log) = state.endpoint_log(route.endpoint) {
                            log.admit_to(now, route.endpoint);
                        }
                        state.overall.admit(now);
                        let waited = Instant::now().duration_since(requested);
                        let counters = &mut state.counters[i];
                        counters.admitted += 1;
                        if waited >= WAIT_NOISE {
                            counters.waited += 1;
                            counters.wait_total += waited;
                        }
                        return Permit {
                            category,
                            endpoint: route.endpoint,
                            admitted_at_us: now,
                            waited,
                        };
                    }
                    mark.set(&mut state);
                    // Outranked with room now: wait for the higher request to take its slot.
                    (overall > now).then_some(overall)
                }
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(self.origin + Duration::from_micros(at)) => {}
                        () = released => {}
                    }
                }
                None => released.await,
            }
        }
    }
}

impl RateLimiter for LocalLimiter {
    fn acquire(&self, route: Route) -> Acquire<'_> {
        Box::pin(self.acquire_inner(route))
    }

    fn feedback(&self, permit: &Permit, feedback: Feedback) -> Option<Adjustment> {
        let now = self.now_us();
        let i = permit.category.index();
        let mut state = self.state();
        match feedback {
            Feedback::Accepted {
                remaining: Some(remaining),
            } if now.saturating_sub(permit.admitted_at_us) < STALE_REPLY_US => {
                state.categories[i].record_success(permit.admitted_at_us);
                // The header counts the endpoint's own budget: an endpoint with its own
                // window follows it there, not in the category.
                if let Some(log) = state.endpoint_log(permit.endpoint) {
                    log.observe_remaining(permit.admitted_at_us, remaining);
                    return None;
                }
                let changed =
                    state.categories[i].observe_remaining(permit.admitted_at_us, remaining)?;
                state.counters[i].effective_limit = changed;
                Some(Adjustment::EffectiveLimit {
                    category: permit.category,
                    limit: changed,
                })
            }
            Feedback::RateLimited {
                retry_after,
                jitter,
            } => {
                state.counters[i].rate_limited += 1;
                let log = &mut state.categories[i];
                let Some(strike) = log.record_rejection(permit.admitted_at_us, now) else {
                    return Some(Adjustment::InFlightRejection {
                        category: permit.category,
                    });
                };
                let retry = strike.min(self.backoff.max_retries.saturating_sub(1));
                let computed = self
                    .backoff
                    .delay(retry, jitter)
                    .unwrap_or(self.backoff.cap);
                let pause = retry_after.map_or(computed, |server| server.min(self.backoff.cap));
                // At least until our requests have left the server's window, so the next
                // one is accepted and its remaining count reveals the new limit.
                let until = (now + pause.as_micros() as u64).max(log.drained_at());
                log.pause_until(until);
                let pause = Duration::from_micros(until - now);
                Some(Adjustment::Paused {
                    category: permit.category,
                    pause,
                    strike,
                })
            }
            // No count, or one from a reply so slow that the window it describes has moved
            // on (and our own requests of that window have been forgotten).
            Feedback::Accepted { .. } => {
                state.categories[i].record_success(permit.admitted_at_us);
                None
            }
            Feedback::Other => None,
        }
    }

    fn counters(&self, category: Category) -> CategoryCounters {
        let now = self.now_us();
        let mut state = self.state();
        let i = category.index();
        let available = state.categories[i]
            .available(now)
            .min(state.overall.available(now));
        CategoryCounters {
            available,
            ..state.counters[i]
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn limits(market: u32) -> Limits {
        Limits {
            per_second: [market, 10, 10, 10],
            overall_per_minute: 6000,
            safety_margin: 0.02,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_tasks_are_admitted_in_paced_order() {
        let limiter = Arc::new(LocalLimiter::new(&limits(20), Backoff::default()));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let limiter = Arc::clone(&limiter);
            tasks.spawn(async move {
                limiter
                    .acquire(Category::Market.into())
                    .await
                    .admitted_at_us
            });
        }
        let mut times = tasks.join_all().await;
        times.sort_unstable();
        // 40 requests at 51 ms spacing take 39 × 51 ms of (paused) time.
        assert_eq!(times[39] - times[0], 39 * 51_000);
        let in_first_second = times.iter().filter(|&&t| t < times[0] + 1_000_000).count();
        assert_eq!(in_first_second, 20);
        assert_eq!(
            Instant::now().duration_since(start),
            Duration::from_millis(1989)
        );
        let counters = limiter.counters(Category::Market);
        assert_eq!(counters.admitted, 40);
        assert_eq!(counters.waited, 39);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_pauses_the_whole_category_but_not_others() {
        let limiter = LocalLimiter::new(&limits(20), Backoff::default());
        let permit = limiter.acquire(Category::Market.into()).await;
        let paused = limiter.feedback(
            &permit,
            Feedback::RateLimited {
                retry_after: None,
                jitter: 0.5,
            },
        );
        // The 1 s backoff is stretched to the window drain (1.02 s), so the next request
        // meets an empty server window.
        assert_eq!(
            paused,
            Some(Adjustment::Paused {
                category: Category::Market,
                pause: Duration::from_millis(1020),
                strike: 0
            })
        );
        let account = limiter.acquire(Category::Account.into()).await;
        assert_eq!(account.admitted_at_us, permit.admitted_at_us);
        let next = limiter.acquire(Category::Market.into()).await;
        assert_eq!(next.admitted_at_us - permit.admitted_at_us, 1_020_000);
        assert_eq!(limiter.counters(Category::Market).rate_limited, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn overall_budget_is_shared_by_categories() {
        let limiter = LocalLimiter::new(
            &Limits {
                per_second: [20, 20, 20, 20],
                overall_per_minute: 3,
                safety_margin: 0.0,
            },
            Backoff::default(),
        );
        let a = limiter.acquire(Category::Market.into()).await;
        let _ = limiter.acquire(Category::Account.into()).await;
        let _ = limiter.acquire(Category::Trade.into()).await;
        let d = limiter.acquire(Category::Default.into()).await;
        assert_eq!(d.admitted_at_us - a.admitted_at_us, 60_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_remaining_header_sets_the_pace() {
        let limiter = LocalLimiter::new(&limits(20), Backoff::default());
        let first = limiter.acquire(Category::Market.into()).await;
        let change = limiter.feedback(&first, Feedback::Accepted { remaining: Some(4) });
        assert_eq!(
            change,
            Some(Adjustment::EffectiveLimit {
                category: Category::Market,
                limit: 5
            })
        );
        let second = limiter.acquire(Category::Market.into()).await;
        assert_eq!(second.admitted_at_us - first.admitted_at_us, 1_020_000 / 5);
        assert_eq!(limiter.counters(Category::Market).effective_limit, 5);
    }

    fn tight_overall(per_minute: u32) -> Limits {
        Limits {
            per_second: [20, 10, 10, 10],
            overall_per_minute: per_minute,
            safety_margin: 0.02,
        }
    }

    /// Queues 100 market requests on an overall budget of 10/min, lets the first 10 through,
    /// then issues one request of `category`: the time it is admitted, and the market times.
    async fn issued_behind_market_backlog(category: Category) -> (u64, Vec<u64>) {
        let limiter = Arc::new(LocalLimiter::new(&tight_overall(10), Backoff::default()));
        let mut market = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let limiter = Arc::clone(&limiter);
            market.spawn(async move {
                limiter
                    .acquire(Category::Market.into())
                    .await
                    .admitted_at_us
            });
        }
        // Ten 51 ms steps: the overall budget is spent and 90 market requests wait.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(limiter.counters(Category::Market).admitted, 10);
        // Spawned like the market requests, so neither side is favoured by being polled first.
        let other = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire(category.into()).await.admitted_at_us })
        };
        let other = other.await.expect("acquire task");
        let mut times = market.join_all().await;
        times.sort_unstable();
        (other, times)
    }

    #[tokio::test(start_paused = true)]
    async fn a_trade_request_goes_before_100_queued_market_requests() {
        let (trade, market) = issued_behind_market_backlog(Category::Trade).await;
        // The 11th overall slot opens when the first admission leaves the 61.2 s window.
        assert_eq!(trade, market[0] + 61_200_000);
        assert_eq!(market.iter().filter(|&&t| t < trade).count(), 10);
        assert!(market.iter().all(|&t| t != trade));
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_request_goes_before_queued_market_requests() {
        let (account, market) = issued_behind_market_backlog(Category::Account).await;
        assert_eq!(account, market[0] + 61_200_000);
        assert_eq!(market.iter().filter(|&&t| t < account).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trade_request_does_not_block_market_requests() {
        let limiter = Arc::new(LocalLimiter::new(&tight_overall(2), Backoff::default()));
        let first = limiter
            .acquire(Category::Market.into())
            .await
            .admitted_at_us;
        let _ = limiter.acquire(Category::Market.into()).await;
        let waiting = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire(Category::Trade.into()).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        let market = limiter
            .acquire(Category::Market.into())
            .await
            .admitted_at_us;
        assert_eq!(market, first + 61_200_000);
        assert_eq!(limiter.counters(Category::Trade).admitted, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn all_position_is_held_to_five_per_second_inside_the_account_budget() {
        let limiter = LocalLimiter::new(&limits(20), Backoff::default());
        let positions = super::super::route_of("/api/v2/mix/position/all-position");
        let accounts = super::super::route_of("/api/v2/mix/account/accounts");
        let mut position_times = Vec::new();
        let mut account_times = Vec::new();
        for _ in 0..6 {
            position_times.push(limiter.acquire(positions).await.admitted_at_us);
            account_times.push(limiter.acquire(accounts).await.admitted_at_us);
        }
        let gaps: Vec<u64> = position_times.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, vec![204_000; 5]);
        // Other account endpoints keep their 10/s pace in between (102 ms after each).
        let interleaved: Vec<u64> = position_times
            .iter()
            .zip(&account_times)
            .map(|(p, a)| a - p)
            .collect();
        assert_eq!(interleaved, vec![102_000; 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_replys_remaining_count_is_not_taken_for_a_limit() {
        let limiter = LocalLimiter::new(&limits(20), Backoff::default());
        let mut permits = Vec::new();
        for _ in 0..19 {
            permits.push(limiter.acquire(Category::Market.into()).await);
        }
        // The 19th request's reply comes 2 s later, saying 1 request was left in its window;
        // meanwhile another request went out and the old ones left our log.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let later = limiter.acquire(Category::Market.into()).await;
        let change = limiter.feedback(&permits[18], Feedback::Accepted { remaining: Some(1) });
        assert_eq!(change, None);
        assert_eq!(limiter.counters(Category::Market).effective_limit, 20);
        // A prompt reply is followed: 1 of ours in the window plus 4 left.
        let change = limiter.feedback(&later, Feedback::Accepted { remaining: Some(4) });
        assert_eq!(
            change,
            Some(Adjustment::EffectiveLimit {
                category: Category::Market,
                limit: 5
            })
        );
    }
}
