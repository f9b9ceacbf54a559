//! A discrete-event model of clients, the network and a Bitget-like meter, driving the real
//! [`Budgets`] on explicit time.
//!
//! The limiter's promise is about the *server's* windows, which no unit test of the limiter
//! alone can see. Here each client is a [`Budgets`] with saturating demand on one or more
//! endpoints (metered each on its own, as Bitget does),
//! its clock offset from the server's, and a network that delays each request's arrival and
//! each reply by seeded draws; the server meters arrivals in strict sliding one-second
//! windows per IP (as the simulator does), stamps `requestTime` in whole milliseconds, sends
//! `x-mbx-used-remain-limit`, may pause, and may change its limit on a schedule. Everything
//! happens in simulated microseconds, so a minute of two clients runs in milliseconds and the
//! same seed gives the same run. Tests and the sharing curve (`cargo bench --bench
//! share_curve`) use it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::budgets::Budgets;
use super::{Category, Feedback, Limits, Permit, Route};
use crate::limiter::backoff::Backoff;

const S: u64 = 1_000_000;

/// Server pauses: every `every_us`, a pause drawn from `min_us..=max_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalls {
    pub every_us: u64,
    pub min_us: u64,
    pub max_us: u64,
}

/// One modelled run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Clients on one IP; each starts at its entry's time (µs of server time).
    pub starts_us: Vec<u64>,
    /// Each client's clock offset (server − local, µs); missing entries are 0.
    pub offsets_us: Vec<i64>,
    /// The server's limit per second from a time on: `(from_us, limit)`, sorted; the first
    /// entry should start at 0.
    pub schedule: Vec<(u64, u32)>,
    /// The limit the clients are configured with.
    pub configured: u32,
    /// Fixed one-way delay, each way, in µs.
    pub base_delay_us: u64,
    /// Largest extra arrival delay (uniform), in µs.
    pub jitter_up_us: u64,
    /// Largest extra reply delay (uniform), in µs.
    pub jitter_down_us: u64,
    pub stalls: Option<Stalls>,
    pub duration_us: u64,
    pub seed: u64,
    /// Endpoints each client saturates at once. The schedule is the first one's limit; the
    /// others stay at `configured`.
    pub endpoints: usize,
}

impl Scenario {
    /// One client alone at `limit`/s for `secs`, with `jitter_ms` of arrival jitter.
    pub fn alone(limit: u32, secs: u64, jitter_ms: u64, seed: u64) -> Self {
        Self {
            starts_us: vec![0],
            offsets_us: vec![0],
            schedule: vec![(0, limit)],
            configured: limit,
            base_delay_us: 200,
            jitter_up_us: jitter_ms * 1_000,
            jitter_down_us: 0,
            stalls: None,
            duration_us: secs * S,
            seed,
            endpoints: 1,
        }
    }

    fn limit_at(&self, at: u64) -> u32 {
        self.schedule
            .iter()
            .rev()
            .find(|(from, _)| *from <= at)
            .map_or(self.configured, |(_, l)| *l)
    }

    /// Runs the scenario to its end.
    pub fn run(&self) -> Outcome {
        Run::new(self).run()
    }
}

/// What one client got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientOutcome {
    pub accepted: u64,
    pub rejected: u64,
    /// Accepted requests per second of server time, from 0.
    pub accepted_per_second: Vec<u32>,
    /// Rejections per second of server time, from 0.
    pub rejected_per_second: Vec<u32>,
    /// The client's effective limit at the end of each second.
    pub limit_per_second: Vec<u32>,
    /// Accepted requests per endpoint, and per endpoint and second.
    pub accepted_by_endpoint: Vec<Vec<u32>>,
    /// Rejections per endpoint.
    pub rejected_by_endpoint: Vec<u64>,
}

impl ClientOutcome {
    /// Accepted requests in seconds `from..to`.
    pub fn accepted_between(&self, from: usize, to: usize) -> u64 {
        sum(&self.accepted_per_second, from, to)
    }

    /// Rejections in seconds `from..to`.
    pub fn rejected_between(&self, from: usize, to: usize) -> u64 {
        sum(&self.rejected_per_second, from, to)
    }
}

fn sum(series: &[u32], from: usize, to: usize) -> u64 {
    series
        .iter()
        .take(to)
        .skip(from)
        .map(|&n| u64::from(n))
        .sum()
}

/// What the whole run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub clients: Vec<ClientOutcome>,
    /// The server's limit in each second.
    pub limit_per_second: Vec<u32>,
}

impl Outcome {
    /// All clients' accepted requests in seconds `from..to`, over the limit in that time.
    pub fn utilization(&self, from: usize, to: usize) -> f64 {
        let accepted: u64 = self
            .clients
            .iter()
            .map(|c| c.accepted_between(from, to))
            .sum();
        accepted as f64 / sum(&self.limit_per_second, from, to).max(1) as f64
    }

    /// One client's share of the limit in seconds `from..to`.
    pub fn client_utilization(&self, client: usize, from: usize, to: usize) -> f64 {
        self.clients[client].accepted_between(from, to) as f64
            / sum(&self.limit_per_second, from, to).max(1) as f64
    }

    /// All rejections in seconds `from..to`.
    pub fn rejected_between(&self, from: usize, to: usize) -> u64 {
        self.clients
            .iter()
            .map(|c| c.rejected_between(from, to))
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The client looks whether it may send; stale when its generation moved on.
    Wake {
        client: usize,
        generation: u64,
    },
    Arrive {
        client: usize,
        request: usize,
    },
    Reply {
        client: usize,
        request: usize,
    },
}

#[derive(Debug)]
struct Client {
    budgets: Budgets,
    offset_us: i64,
    generation: u64,
    outcome: ClientOutcome,
}

#[derive(Debug, Clone, Copy)]
struct Request {
    permit: Permit,
    endpoint: usize,
    feedback: Option<Feedback>,
}

struct Run<'a> {
    scenario: &'a Scenario,
    routes: Vec<Route>,
    clients: Vec<Client>,
    requests: Vec<Request>,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    sequence: u64,
    /// Per endpoint: accepted arrivals' millisecond stamps, for the strict window.
    windows: Vec<VecDeque<u64>>,
    rng: ChaCha8Rng,
}

impl<'a> Run<'a> {
    fn new(scenario: &'a Scenario) -> Self {
        let limits = Limits {
            per_second: [scenario.configured, 10, 10, 10],
            ..Limits::default()
        };
        let clients = scenario
            .starts_us
            .iter()
            .enumerate()
            .map(|(i, _)| Client {
                budgets: Budgets::new(&limits, Backoff::default()),
                offset_us: scenario.offsets_us.get(i).copied().unwrap_or(0),
                generation: 0,
                outcome: ClientOutcome {
                    accepted_by_endpoint: vec![Vec::new(); scenario.endpoints.max(1)],
                    rejected_by_endpoint: vec![0; scenario.endpoints.max(1)],
                    ..ClientOutcome::default()
                },
            })
            .collect();
        Self {
            scenario,
            routes: (0..scenario.endpoints.max(1))
                .map(|k| Route::new(Category::Market, 4 + k as u16, None))
                .collect(),
            clients,
            requests: Vec::new(),
            events: BinaryHeap::new(),
            sequence: 0,
            windows: vec![VecDeque::new(); scenario.endpoints.max(1)],
            rng: ChaCha8Rng::seed_from_u64(scenario.seed),
        }
    }

    fn push(&mut self, at: u64, event: Event) {
        self.sequence += 1;
        self.events.push(Reverse((at, self.sequence, event)));
    }

    /// The client's local clock at server time `at`: local = server − offset. Local time
    /// starts at a large base, so an offset of either sign keeps it positive.
    fn local(&self, client: usize, at: u64) -> u64 {
        (at as i64 + 100 * S as i64 - self.clients[client].offset_us).max(0) as u64
    }

    fn server(&self, client: usize, local: u64) -> u64 {
        (local as i64 - 100 * S as i64 + self.clients[client].offset_us).max(0) as u64
    }

    fn wake_at(&mut self, client: usize, at: u64) {
        self.clients[client].generation += 1;
        let generation = self.clients[client].generation;
        self.push(at, Event::Wake { client, generation });
    }

    fn run(mut self) -> Outcome {
        for (client, &start) in self.scenario.starts_us.iter().enumerate() {
            self.wake_at(client, start);
        }
        let end = self.scenario.duration_us;
        while let Some(Reverse((at, _, event))) = self.events.pop() {
            if at >= end {
                break;
            }
            match event {
                Event::Wake { client, generation } => {
                    if generation == self.clients[client].generation {
                        self.wake(client, at);
                    }
                }
                Event::Arrive { client, request } => self.arrive(client, request, at),
                Event::Reply { client, request } => self.reply(client, request, at),
            }
        }
        let seconds = (end / S) as usize;
        let limit_per_second = (0..seconds)
            .map(|s| self.scenario.limit_at(s as u64 * S))
            .collect();
        let clients = self
            .clients
            .into_iter()
            .map(|mut c| {
                for series in [
                    &mut c.outcome.accepted_per_second,
                    &mut c.outcome.rejected_per_second,
                    &mut c.outcome.limit_per_second,
                ] {
                    series.resize(seconds, 0);
                }
                c.outcome
            })
            .collect();
        Outcome {
            clients,
            limit_per_second,
        }
    }

    fn wake(&mut self, client: usize, at: u64) {
        let now = self.local(client, at);
        let budgets = &mut self.clients[client].budgets;
        // The first endpoint with room goes; otherwise wait for the earliest.
        let mut earliest = u64::MAX;
        let mut go = None;
        for (k, &route) in self.routes.iter().enumerate() {
            let ready = budgets
                .own_ready_at(route, now)
                .max(budgets.overall_ready_at(route, now));
            if ready <= now {
                go = Some((k, route));
                break;
            }
            earliest = earliest.min(ready);
        }
        let Some((endpoint, route)) = go else {
            let at = self.server(client, earliest).max(at + 1);
            self.wake_at(client, at);
            return;
        };
        let permit = budgets.admit(route, now, Duration::ZERO);
        let delay = self.scenario.base_delay_us + self.draw(self.scenario.jitter_up_us);
        self.requests.push(Request {
            permit,
            endpoint,
            feedback: None,
        });
        let request = self.requests.len() - 1;
        self.push(at + delay, Event::Arrive { client, request });
        // Pacing decides the next send; look again right away.
        self.wake_at(client, at);
    }

    fn draw(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            self.rng.gen_range(0..=max)
        }
    }

    fn stall_end(&mut self, at: u64) -> Option<u64> {
        let stalls = self.scenario.stalls?;
        let k = at / stalls.every_us;
        if k == 0 {
            return None;
        }
        let start = k * stalls.every_us;
        let mut draw = ChaCha8Rng::seed_from_u64(self.scenario.seed ^ k);
        let end = start + draw.gen_range(stalls.min_us..=stalls.max_us);
        (at < end).then_some(end)
    }

    fn arrive(&mut self, client: usize, request: usize, at: u64) {
        if let Some(end) = self.stall_end(at) {
            self.push(end, Event::Arrive { client, request });
            return;
        }
        let now_ms = at / 1_000;
        let endpoint = self.requests[request].endpoint;
        let window = &mut self.windows[endpoint];
        while window.front().is_some_and(|&t| t + 1_000 <= now_ms) {
            window.pop_front();
        }
        let limit = if endpoint == 0 {
            self.scenario.limit_at(at)
        } else {
            self.scenario.configured
        };
        let second = (at / S) as usize;
        let outcome = &mut self.clients[client].outcome;
        let feedback = if (window.len() as u32) < limit {
            window.push_back(now_ms);
            outcome.accepted += 1;
            bump(&mut outcome.accepted_per_second, second);
            bump(&mut outcome.accepted_by_endpoint[endpoint], second);
            Feedback::Accepted {
                remaining: Some(limit - window.len() as u32),
                server_time_ms: Some(now_ms),
            }
        } else {
            outcome.rejected += 1;
            outcome.rejected_by_endpoint[endpoint] += 1;
            bump(&mut outcome.rejected_per_second, second);
            Feedback::RateLimited {
                retry_after: None,
                jitter: self.rng.gen(),
                server_time_ms: Some(now_ms),
            }
        };
        self.requests[request].feedback = Some(feedback);
        let delay = self.scenario.base_delay_us + self.draw(self.scenario.jitter_down_us);
        self.push(at + delay, Event::Reply { client, request });
    }

    fn reply(&mut self, client: usize, request: usize, at: u64) {
        let now = self.local(client, at);
        let Request {
            permit, feedback, ..
        } = self.requests[request];
        let Some(feedback) = feedback else { return };
        let c = &mut self.clients[client];
        c.budgets.feedback(&permit, feedback, now);
        let second = (at / S) as usize;
        let limit = c.budgets.counters(Category::Market, now).effective_limit;
        let series = &mut c.outcome.limit_per_second;
        if series.len() <= second {
            let last = series.last().copied().unwrap_or(limit);
            series.resize(second + 1, last);
        }
        series[second] = limit;
        // A reply can bring the next send forward.
        self.wake_at(client, at);
    }
}

fn bump(series: &mut Vec<u32>, second: usize) {
    if series.len() <= second {
        series.resize(second + 1, 0);
    }
    series[second] += 1;
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn alone_without_jitter_the_whole_budget_is_used() {
        let outcome = Scenario::alone(20, 40, 0, 1).run();
        assert_eq!(outcome.rejected_between(0, 40), 0);
        let u = outcome.utilization(2, 40);
        assert!(u >= 0.99, "utilization {u}");
    }

    #[test]
    fn jitter_costs_its_mean_delay_and_never_a_rejection() {
        for (jitter, floor) in [(30, 0.975), (80, 0.95)] {
            let outcome = Scenario::alone(20, 60, jitter, 7).run();
            assert_eq!(outcome.rejected_between(0, 60), 0, "jitter {jitter} ms");
            let u = outcome.utilization(2, 60);
            // The theory: 1 / (1 + mean delay) = 0.985 at 30 ms and 0.961 at 80 ms.
            assert!(u >= floor, "jitter {jitter} ms: utilization {u}");
        }
    }

    #[test]
    fn server_pauses_draw_no_rejection() {
        let scenario = Scenario {
            stalls: Some(Stalls {
                every_us: 3 * S,
                min_us: 100_000,
                max_us: 200_000,
            }),
            ..Scenario::alone(20, 60, 30, 3)
        };
        let outcome = scenario.run();
        assert_eq!(outcome.rejected_between(0, 60), 0);
        assert!(outcome.utilization(2, 60) >= 0.85);
    }

    #[test]
    fn a_limit_drop_costs_a_rejection_and_the_new_limit_is_used() {
        let scenario = Scenario {
            schedule: vec![(0, 20), (20 * S, 5), (40 * S, 20)],
            ..Scenario::alone(20, 60, 30, 11)
        };
        let outcome = scenario.run();
        let c = &outcome.clients[0];
        assert!(
            c.rejected_between(19, 24) <= 3,
            "{:?}",
            c.rejected_per_second
        );
        assert!(
            c.rejected_between(39, 44) <= 3,
            "{:?}",
            c.rejected_per_second
        );
        assert_eq!(
            outcome.rejected_between(0, 19) + outcome.rejected_between(24, 39),
            0
        );
        let low = outcome.utilization(23, 40);
        let high = outcome.utilization(43, 60);
        assert!(low >= 0.9, "of 5/s: {low}");
        assert!(high >= 0.95, "of 20/s again: {high}");
    }

    #[test]
    fn two_clients_on_one_ip_settle_to_a_fair_split_without_rejections() {
        let scenario = Scenario {
            starts_us: vec![0, 5 * S],
            offsets_us: vec![3_000_000, -250_000],
            jitter_down_us: 5_000,
            ..Scenario::alone(20, 125, 30, 5)
        };
        let outcome = scenario.run();
        // From 10 s after both started.
        let (from, to) = (15, 125);
        let minutes = (to - from) as f64 / 60.0;
        let rejected = outcome.rejected_between(from, to) as f64;
        assert!(rejected <= 2.0 * minutes, "{rejected} rejections");
        let together = outcome.utilization(from, to);
        assert!(together >= 0.85, "together {together}");
        for client in 0..2 {
            let share = outcome.client_utilization(client, from, to);
            assert!(share >= 0.35, "client {client}: {share}");
        }
    }

    #[test]
    fn a_newcomer_beside_a_saturating_client_gets_its_half_whatever_its_timing() {
        // The first client fills every window alone; the second can only get in through the
        // gaps that arrival jitter leaves. Eight timings and seeds.
        for run in 0..8u64 {
            let scenario = Scenario {
                starts_us: vec![0, 5 * S + run * 137_000],
                offsets_us: vec![0, 40_000 * run as i64],
                jitter_down_us: 3_000,
                ..Scenario::alone(20, 80, 30, 100 + run)
            };
            let outcome = scenario.run();
            let (from, to) = (16, 80);
            let shares = [0, 1].map(|c| outcome.client_utilization(c, from, to));
            assert!(shares.iter().all(|&s| s >= 0.35), "run {run}: {shares:?}");
            assert!(outcome.utilization(from, to) >= 0.85, "run {run}");
            assert!(outcome.rejected_between(from, to) <= 2, "run {run}");
        }
    }

    #[test]
    fn the_hold_after_a_rejection_ends_when_the_server_window_has_room() {
        // The limit halves at 10 s: the first request after the drop is refused.
        let scenario = Scenario {
            schedule: vec![(0, 20), (10 * S, 10)],
            ..Scenario::alone(20, 14, 0, 2)
        };
        let outcome = scenario.run();
        let c = &outcome.clients[0];
        assert_eq!(c.rejected, 1, "{:?}", c.rejected_per_second);
        // The hold ends when the window drained: about a second without acceptances, then
        // the new limit in full.
        assert!(
            c.accepted_per_second[10] <= 2,
            "{:?}",
            c.accepted_per_second
        );
        assert!(
            c.accepted_per_second[12] >= 9,
            "{:?}",
            c.accepted_per_second
        );
        assert_eq!(c.limit_per_second[13], 10);
    }

    #[test]
    fn two_endpoints_run_at_their_limits_at_once_and_a_429_on_one_leaves_the_other_running() {
        // Endpoint 0's limit halves at 10 s; endpoint 1 stays at 20/s throughout.
        let scenario = Scenario {
            schedule: vec![(0, 20), (10 * S, 10)],
            endpoints: 2,
            ..Scenario::alone(20, 20, 30, 9)
        };
        let outcome = scenario.run();
        let c = &outcome.clients[0];
        let per = |k: usize, from: usize, to: usize| sum(&c.accepted_by_endpoint[k], from, to);
        // Before the drop both endpoints carry their whole budget side by side.
        assert!(per(0, 2, 10) >= 8 * 19, "{:?}", c.accepted_by_endpoint[0]);
        assert!(per(1, 2, 10) >= 8 * 19, "{:?}", c.accepted_by_endpoint[1]);
        // The drop costs endpoint 0 its one rejection and a held second; endpoint 1 never
        // notices: no rejection, and every second from the drop on at its full rate.
        assert!(
            c.rejected_by_endpoint[0] <= 2,
            "{:?}",
            c.rejected_by_endpoint
        );
        assert_eq!(c.rejected_by_endpoint[1], 0);
        for second in 10..20 {
            assert!(
                c.accepted_by_endpoint[1][second] >= 19,
                "second {second}: {:?}",
                c.accepted_by_endpoint[1]
            );
        }
        assert!(per(0, 13, 20) >= 7 * 9, "{:?}", c.accepted_by_endpoint[0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn no_server_window_ever_rejects_one_client_and_the_load_gets_its_share(
            limit in 2u32..40,
            jitter_up_ms in 0u64..100,
            jitter_down_ms in 0u64..60,
            base_us in 0u64..40_000,
            offset_ms in -20_000i64..20_000,
            stall in proptest::option::of((1u64..5, 0u64..250)),
            seed in any::<u64>(),
        ) {
            let scenario = Scenario {
                offsets_us: vec![offset_ms * 1_000],
                base_delay_us: base_us,
                jitter_down_us: jitter_down_ms * 1_000,
                stalls: stall.map(|(every, len)| Stalls {
                    every_us: every * S,
                    min_us: len * 1_000 / 2,
                    max_us: len * 1_000,
                }),
                ..Scenario::alone(limit, 30, jitter_up_ms, seed)
            };
            let outcome = scenario.run();
            prop_assert_eq!(outcome.rejected_between(0, 30), 0);
            if stall.is_none() {
                // Each window of `limit` costs one second plus, at worst, the largest
                // arrival delay and the stamp's resolution; pacing adds one spacing.
                let worst = 1.0 + (base_us + jitter_up_ms * 1_000 + 2_000) as f64 / 1e6
                    + 1.0 / f64::from(limit);
                let u = outcome.utilization(3, 30);
                prop_assert!(u >= 0.97 / worst, "utilization {} below {}", u, 0.97 / worst);
            }
        }
    }
}
