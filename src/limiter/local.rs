//! The in-process limiter: [`WindowLog`]s behind a mutex, one FIFO gate per category.
//!
//! Waiting happens on tokio's clock (`sleep_until`), so tests run it on a paused clock. The
//! per-category gate is a fair async mutex: requests of one category are admitted in
//! arrival order and only the head of the queue holds a timer, while categories wait
//! independently of each other and meet only in the overall budget, under one short lock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::window::{WindowLog, SERVER_WINDOW_US};
use super::{
    Acquire, Adjustment, Category, CategoryCounters, Feedback, Limits, Permit, RateLimiter, Route,
};
use crate::retry::Backoff;

/// Waits shorter than this are scheduling noise, not waiting for the budget.
const WAIT_NOISE: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct State {
    categories: [WindowLog; 4],
    overall: WindowLog,
    counters: [CategoryCounters; 4],
}

/// Rate limiter for one process.
#[derive(Debug)]
pub struct LocalLimiter {
    origin: Instant,
    state: Mutex<State>,
    gates: [tokio::sync::Mutex<()>; 4],
    backoff: Backoff,
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
        Self {
            origin: Instant::now(),
            state: Mutex::new(State {
                categories,
                overall: WindowLog::new(limits.overall_per_minute, minute, false),
                counters,
            }),
            gates: Default::default(),
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
        loop {
            let now = self.now_us();
            let ready = {
                let mut state = self.state();
                let ready = state.categories[i]
                    .ready_at(now)
                    .max(state.overall.ready_at(now));
                if ready <= now {
                    state.categories[i].admit_to(now, route.endpoint);
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
                ready
            };
            tokio::time::sleep_until(self.origin + Duration::from_micros(ready)).await;
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
            } => {
                state.categories[i].record_success(permit.admitted_at_us);
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
            Feedback::Accepted { remaining: None } => {
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
}
