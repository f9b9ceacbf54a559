//! The in-process limiter: [`Budgets`] behind a mutex, one FIFO gate per endpoint.
//!
//! Waiting happens on tokio's clock (`sleep_until`), so tests run it on a paused clock. The
//! per-endpoint gate ([`Gates`]) is a fair async mutex: requests to one endpoint are
//! admitted in arrival order and only the head of the queue holds a timer, while endpoints
//! wait independently of each other and meet only in the overall budget (and a category's
//! total, if configured), under one short lock.
//! A reply can bring a ready time forward (a request in flight is held until answered), so
//! every piece of feedback wakes the waiting heads to look again.
//!
//! Where categories meet, rank decides ([`Category::priority`]): a category whose own budget
//! has room but which waits for the overall budget marks itself as waiting, and a
//! lower-ranked category does not take an overall slot while a higher one is marked. So an
//! order never waits behind a market-data backlog, however long the backlog.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::budgets::Budgets;
use super::gates::Gates;
use super::sockets::{SocketBudget, SocketBudgets, SocketCounters, SocketWindow};
use super::{
    Acquire, Adjustment, Category, CategoryCounters, EndpointCounters, Feedback, Limits, Permit,
    RateLimiter, Route,
};
use crate::core::clock::{Clock, ServerClock, SystemClock};
use crate::limiter::backoff::Backoff;

/// Rate limiter for one process.
#[derive(Debug)]
pub struct LocalLimiter {
    origin: Instant,
    /// The wall clock the server's offset is published against: the one the scheduler,
    /// the signer and the gateway read.
    wall: Arc<dyn Clock>,
    state: Mutex<Budgets>,
    /// The WebSocket's budgets.
    sockets: Mutex<SocketBudgets>,
    gates: Gates,
    /// The offset bounds, published for every reader of the server's time.
    clock: Arc<ServerClock>,
    /// Woken whenever a category stops waiting for the overall budget, or a reply arrives.
    changed: Notify,
}

/// Clears a category's overall-waiting mark when its request is admitted or abandoned, so
/// a cancelled higher-ranked request cannot block lower ones.
struct WaitingMark<'a> {
    limiter: &'a LocalLimiter,
    category: Category,
    set: bool,
}

impl WaitingMark<'_> {
    fn set(&mut self, state: &mut Budgets) {
        state.set_overall_waiting(self.category, true);
        self.set = true;
    }

    fn clear(&mut self, state: &mut Budgets) {
        if std::mem::take(&mut self.set) {
            state.set_overall_waiting(self.category, false);
            self.limiter.changed.notify_waiters();
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
    /// A limiter enforcing `limits`, starting with full budgets; a repeated rate-limit
    /// rejection pauses its category for `backoff`'s delay.
    pub fn new(limits: &Limits, backoff: Backoff) -> Self {
        Self {
            origin: Instant::now(),
            wall: Arc::new(SystemClock::new()),
            state: Mutex::new(Budgets::new(limits, backoff)),
            sockets: Mutex::default(),
            gates: Default::default(),
            clock: Arc::default(),
            changed: Notify::new(),
        }
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

    /// What the wall clock read at this limiter's origin, worked out from its reading now,
    /// so an offset is always published against the wall clock as it reads (a simulated
    /// one may jump).
    fn wall_at_origin(&self, now_us: u64) -> i64 {
        self.wall.now_us() as i64 - now_us as i64
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Budgets> {
        // A panic elsewhere cannot leave the logs half-updated: every update is one push.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bounds on the clock offset to the server (server − local, µs, in this limiter's
    /// time base) and their width now; `None` before the first reply.
    pub fn clock_offset(&self) -> Option<(i64, i64)> {
        let now = self.now_us();
        let state = self.state();
        Some((state.offset().lower(now)?, state.offset().upper(now)?))
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, SocketBudgets> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn socket_acquire_inner(&self, windows: &[SocketWindow]) {
        let requested = self.now_us();
        loop {
            let now = self.now_us();
            let changed = self.changed.notified();
            let ready = {
                let mut sockets = self.sockets();
                let ready = sockets.all_ready_at(windows, now);
                if ready <= now {
                    sockets.take(windows, now, now - requested);
                    return;
                }
                ready
            };
            if ready == u64::MAX {
                changed.await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep_until(self.origin + Duration::from_micros(ready)) => {}
                    () = changed => {}
                }
            }
        }
    }

    async fn acquire_inner(&self, route: Route) -> Permit {
        let category = route.category;
        let requested = Instant::now();
        let _gate = self.gates.enter(&route).await;
        let mut mark = WaitingMark {
            limiter: self,
            category,
            set: false,
        };
        loop {
            let now = self.now_us();
            // Created before the check, so a change between the check and the wait wakes it.
            let changed = self.changed.notified();
            let wake = {
                let mut state = self.state();
                let (route, _) = state.choose(route, now);
                let own = state.own_ready_at(route, now);
                if own > now {
                    // Not competing for the overall budget until its own budget has room.
                    mark.clear(&mut state);
                    Some(own)
                } else {
                    let overall = state.overall_ready_at(route, now);
                    if overall <= now && !state.outranked(category) {
                        mark.clear(&mut state);
                        let waited = Instant::now().duration_since(requested);
                        return state.admit(route, now, waited);
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
                        () = changed => {}
                    }
                }
                None => changed.await,
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
        let adjustment = {
            let mut state = self.state();
            let adjustment = state.feedback(permit, feedback, now);
            if let Some((lower, upper)) = state.offset().from_wall(now, self.wall_at_origin(now)) {
                self.clock.set_bounds_us(lower, upper);
            }
            adjustment
        };
        self.changed.notify_waiters();
        adjustment
    }

    fn server_clock(&self) -> Arc<ServerClock> {
        Arc::clone(&self.clock)
    }

    fn socket_acquire<'a>(&'a self, windows: &'a [SocketWindow]) -> super::SocketAcquire<'a> {
        Box::pin(self.socket_acquire_inner(windows))
    }

    fn socket_closed(&self, socket: u64, egress: u64) {
        {
            let mut sockets = self.sockets();
            sockets.release(SocketBudget::Sockets, egress);
            sockets.forget(socket);
        }
        self.changed.notify_waiters();
    }

    fn socket_counters(&self) -> Vec<(SocketBudget, SocketCounters)> {
        self.sockets().counters()
    }

    fn counters(&self, category: Category) -> CategoryCounters {
        let now = self.now_us();
        let state = &mut self.state();
        let clock_offset_us = state.offset().from_wall(now, self.wall_at_origin(now));
        CategoryCounters {
            clock_offset_us,
            ..state.counters(category, now)
        }
    }

    fn endpoint_counters(&self) -> Vec<EndpointCounters> {
        let now = self.now_us();
        let state = &mut self.state();
        let clock_offset_us = state.offset().from_wall(now, self.wall_at_origin(now));
        let mut all = state.endpoint_counters(now);
        for e in &mut all {
            e.counters.clock_offset_us = clock_offset_us;
        }
        all
    }

    fn egress_loads(&self) -> Vec<super::EgressLoad> {
        let now = self.now_us();
        self.state().egress_loads(now)
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn limits(market: u32) -> Limits {
        Limits {
            per_second: [market, 10, 10, 10],
            total_per_second: [None; 4],
            overall_per_minute: 6000,
            safety_margin: 0.0,
        }
    }

    /// Acquires for `route` and reports an answer at once, with no server time: the request
    /// counts until a window after now.
    async fn take(limiter: &LocalLimiter, route: Route) -> u64 {
        let permit = limiter.acquire(route).await;
        limiter.feedback(
            &permit,
            Feedback::Other {
                server_time_ms: None,
            },
        );
        permit.admitted_at_us
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_tasks_are_admitted_in_paced_order() {
        let limiter = Arc::new(LocalLimiter::new(&limits(20), Backoff::default()));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let limiter = Arc::clone(&limiter);
            tasks.spawn(async move { take(&limiter, Category::Market.into()).await });
        }
        let mut times = tasks.join_all().await;
        times.sort_unstable();
        // 40 requests at 50 ms spacing take 39 × 50 ms of (paused) time.
        assert_eq!(times[39] - times[0], 39 * 50_000);
        let in_first_second = times.iter().filter(|&&t| t < times[0] + 1_000_000).count();
        assert_eq!(in_first_second, 20);
        assert_eq!(
            Instant::now().duration_since(start),
            Duration::from_millis(1950)
        );
        let counters = limiter.counters(Category::Market);
        assert_eq!(counters.admitted, 40);
        assert_eq!(counters.waited, 39);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_request_holds_its_slot_until_its_reply() {
        let limiter = LocalLimiter::new(&limits(1), Backoff::default());
        let first = limiter.acquire(Category::Market.into()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waiting = limiter.acquire(Category::Market.into());
        tokio::pin!(waiting);
        // Still in flight at 2 s: the slot is held.
        assert!(
            tokio::time::timeout(Duration::from_millis(1_700), &mut waiting)
                .await
                .is_err()
        );
        limiter.feedback(
            &first,
            Feedback::Other {
                server_time_ms: None,
            },
        );
        // Answered at 2 s: counted by then, so out of the window a second later.
        let second = waiting.await;
        assert_eq!(second.admitted_at_us - first.admitted_at_us, 3_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_holds_the_whole_category_until_its_window_drained() {
        let limiter = LocalLimiter::new(&limits(20), Backoff::default());
        let permit = limiter.acquire(Category::Market.into()).await;
        let paused = limiter.feedback(
            &permit,
            Feedback::RateLimited {
                retry_after: None,
                jitter: 0.5,
                server_time_ms: None,
            },
        );
        // Counted by now at the latest, so the server's window has room a second later;
        // plus a random phase (a quarter second × the 0.5 drawn).
        assert_eq!(
            paused,
            Some(Adjustment::Paused {
                category: Category::Market,
                endpoint: u16::MAX,
                pause: Duration::from_millis(1125),
                strike: 0,
                crowded: true
            })
        );
        let account = limiter.acquire(Category::Account.into()).await;
        assert_eq!(account.admitted_at_us, permit.admitted_at_us);
        let next = limiter.acquire(Category::Market.into()).await;
        assert_eq!(next.admitted_at_us - permit.admitted_at_us, 1_125_000);
        assert_eq!(limiter.counters(Category::Market).rate_limited, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn overall_budget_is_shared_by_categories() {
        let limiter = LocalLimiter::new(
            &Limits {
                per_second: [20, 20, 20, 20],
                total_per_second: [None; 4],
                overall_per_minute: 3,
                safety_margin: 0.0,
            },
            Backoff::default(),
        );
        let a = take(&limiter, Category::Market.into()).await;
        take(&limiter, Category::Account.into()).await;
        take(&limiter, Category::Trade.into()).await;
        let d = take(&limiter, Category::Default.into()).await;
        assert_eq!(d - a, 60_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_remaining_header_sets_the_pace() {
        let limiter = LocalLimiter::new(&limits(20), Backoff::default());
        let first = limiter.acquire(Category::Market.into()).await;
        let change = limiter.feedback(
            &first,
            Feedback::Accepted {
                remaining: Some(4),
                server_time_ms: Some(1_700_000_000_000),
            },
        );
        assert_eq!(
            change,
            Some(Adjustment::EffectiveLimit {
                category: Category::Market,
                endpoint: u16::MAX,
                limit: 5
            })
        );
        let second = limiter.acquire(Category::Market.into()).await;
        assert_eq!(second.admitted_at_us - first.admitted_at_us, 1_000_000 / 5);
        assert_eq!(limiter.counters(Category::Market).effective_limit, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn replies_bound_the_clock_offset_and_set_the_margin() {
        let limiter = LocalLimiter::new(&limits(20), Backoff::default());
        assert_eq!(limiter.counters(Category::Market).clock_margin_us, None);
        let permit = limiter.acquire(Category::Market.into()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let server_ms = 1_700_000_000_000;
        limiter.feedback(
            &permit,
            Feedback::Accepted {
                remaining: Some(19),
                server_time_ms: Some(server_ms),
            },
        );
        let (lower, upper) = limiter.clock_offset().expect("bounded after a reply");
        let sent = permit.admitted_at_us as i64;
        assert_eq!(lower, server_ms as i64 * 1_000 - (sent + 20_000));
        assert_eq!(upper, server_ms as i64 * 1_000 + 1_000 - sent);
        // The margin in force is the round trip plus the stamp's millisecond.
        assert_eq!(
            limiter.counters(Category::Market).clock_margin_us,
            Some(21_000 + 1_000)
        );
    }

    fn tight_overall(per_minute: u32) -> Limits {
        Limits {
            per_second: [20, 10, 10, 10],
            total_per_second: [None; 4],
            overall_per_minute: per_minute,
            safety_margin: 0.0,
        }
    }

    /// Queues 100 market requests on an overall budget of 10/min, lets the first 10 through,
    /// then issues one request of `category`: the time it is admitted, and the market times.
    async fn issued_behind_market_backlog(category: Category) -> (u64, Vec<u64>) {
        let limiter = Arc::new(LocalLimiter::new(&tight_overall(10), Backoff::default()));
        let mut market = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let limiter = Arc::clone(&limiter);
            market.spawn(async move { take(&limiter, Category::Market.into()).await });
        }
        // Ten 50 ms steps: the overall budget is spent and 90 market requests wait.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(limiter.counters(Category::Market).admitted, 10);
        // Spawned like the market requests, so neither side is favoured by being polled first.
        let other = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { take(&limiter, category.into()).await })
        };
        let other = other.await.expect("acquire task");
        let mut times = market.join_all().await;
        times.sort_unstable();
        (other, times)
    }

    #[tokio::test(start_paused = true)]
    async fn a_trade_request_goes_before_100_queued_market_requests() {
        let (trade, market) = issued_behind_market_backlog(Category::Trade).await;
        // The 11th overall slot opens when the first admission leaves the 60 s window.
        assert_eq!(trade, market[0] + 60_000_000);
        assert_eq!(market.iter().filter(|&&t| t < trade).count(), 10);
        assert!(market.iter().all(|&t| t != trade));
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_request_goes_before_queued_market_requests() {
        let (account, market) = issued_behind_market_backlog(Category::Account).await;
        assert_eq!(account, market[0] + 60_000_000);
        assert_eq!(market.iter().filter(|&&t| t < account).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trade_request_does_not_block_market_requests() {
        let limiter = Arc::new(LocalLimiter::new(&tight_overall(2), Backoff::default()));
        let first = take(&limiter, Category::Market.into()).await;
        take(&limiter, Category::Market.into()).await;
        let waiting = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire(Category::Trade.into()).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        let market = take(&limiter, Category::Market.into()).await;
        assert_eq!(market, first + 60_000_000);
        assert_eq!(limiter.counters(Category::Trade).admitted, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn all_position_is_held_to_five_per_second_beside_other_account_endpoints() {
        let limiter = LocalLimiter::new(&limits(20), Backoff::default());
        let positions = Route::new(Category::Account, 14, Some(5));
        let accounts = Route::new(Category::Account, 12, Some(10));
        let mut position_times = Vec::new();
        let mut account_times = Vec::new();
        for _ in 0..6 {
            position_times.push(take(&limiter, positions).await);
            account_times.push(take(&limiter, accounts).await);
        }
        let gaps: Vec<u64> = position_times.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, vec![200_000; 5]);
        // Bitget meters each account endpoint on its own (per UID): another one goes at once
        // after each position read, within its own 10/s.
        let interleaved: Vec<u64> = position_times
            .iter()
            .zip(&account_times)
            .map(|(p, a)| a - p)
            .collect();
        assert_eq!(interleaved, vec![0; 6]);
    }

    /// Admission times of `n` requests to each of two market endpoints, issued together.
    async fn two_endpoints(limits: &Limits, n: usize) -> (Vec<u64>, Vec<u64>) {
        let limiter = Arc::new(LocalLimiter::new(limits, Backoff::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..2 * n {
            let limiter = Arc::clone(&limiter);
            let endpoint = (i % 2) as u16;
            tasks.spawn(async move {
                let route = Route::new(Category::Market, endpoint, Some(20));
                (endpoint, take(&limiter, route).await)
            });
        }
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (endpoint, at) in tasks.join_all().await {
            if endpoint == 0 {
                a.push(at)
            } else {
                b.push(at)
            }
        }
        a.sort_unstable();
        b.sort_unstable();
        (a, b)
    }

    #[tokio::test(start_paused = true)]
    async fn two_endpoints_each_spend_their_own_budget_at_once() {
        let (a, b) = two_endpoints(&limits(20), 40).await;
        // Each endpoint paced 50 ms apart on its own: 40 of each in 39 steps, side by side.
        assert_eq!(a[39] - a[0], 39 * 50_000);
        assert_eq!(b[39] - b[0], 39 * 50_000);
        assert!(b[39].abs_diff(a[39]) <= 50_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_category_total_caps_its_endpoints_together() {
        let limits = Limits {
            total_per_second: [Some(20), None, None, None],
            ..limits(20)
        };
        let (a, b) = two_endpoints(&limits, 20).await;
        let mut all: Vec<u64> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        // 40 requests through one 20/s total: 50 ms apart, 39 steps.
        assert_eq!(all[39] - all[0], 39 * 50_000);
        assert!(all.windows(2).all(|w| w[1] - w[0] >= 25_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_on_one_endpoint_leaves_the_other_running() {
        let limiter = LocalLimiter::new(&limits(20), Backoff::default());
        let candles = Route::new(Category::Market, 4, Some(20));
        let books = Route::new(Category::Market, 6, Some(20));
        let permit = limiter.acquire(candles).await;
        let held = limiter.feedback(
            &permit,
            Feedback::RateLimited {
                retry_after: None,
                jitter: 0.0,
                server_time_ms: None,
            },
        );
        assert!(matches!(held, Some(Adjustment::Paused { endpoint: 4, .. })));
        // The other endpoint goes at once and keeps its pace; the held one waits a second.
        let start = permit.admitted_at_us;
        let mut book_times = Vec::new();
        for _ in 0..10 {
            book_times.push(take(&limiter, books).await - start);
        }
        assert_eq!(book_times[0], 0);
        assert_eq!(book_times[9], 9 * 50_000);
        let next = limiter.acquire(candles).await;
        assert_eq!(next.admitted_at_us - start, 1_000_000);
        let per_endpoint = limiter.endpoint_counters();
        let candles_counters = per_endpoint.iter().find(|e| e.endpoint == 4).unwrap();
        let books_counters = per_endpoint.iter().find(|e| e.endpoint == 6).unwrap();
        assert_eq!(candles_counters.counters.rate_limited, 1);
        assert_eq!(candles_counters.counters.admitted, 2);
        assert_eq!(books_counters.counters.rate_limited, 0);
        assert_eq!(books_counters.counters.admitted, 10);
        assert_eq!(limiter.counters(Category::Market).admitted, 12);
    }
}
