//! The WebSocket's budgets: connection attempts and sockets per address, messages and
//! subscribe requests per socket. Bitget meters these apart from REST and answers an overrun
//! with 30006/30007 or a refused upgrade, so every socket send and every connection attempt
//! draws from one of these windows first, exactly as a REST request draws from its
//! endpoint's window.
//!
//! The caller names each window and its limit ([`SocketWindow`]); the adapter's table holds
//! Bitget's numbers. A sliding window admits at most `limit` takes in any `window_ms`. The
//! server counts arrivals, and on one socket an earlier message can be held back more than a
//! later one, so spacing can shrink in transit: each window keeps a margin (a tenth of a
//! one-second window, a second of a longer one). Sockets are a count, not a rate: a slot is
//! taken by a connection and given back when it closes. Pure: times are arguments.

use std::collections::{HashMap, VecDeque};

/// Which kind of budget a window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SocketBudget {
    /// Connection attempts per address (egress).
    Attempts,
    /// Open sockets per address (egress): a count.
    Sockets,
    /// Messages per socket, pings included.
    Messages,
    /// Subscribe requests per socket.
    Subscribes,
}

impl SocketBudget {
    pub fn name(self) -> &'static str {
        match self {
            Self::Attempts => "attempts",
            Self::Sockets => "sockets",
            Self::Messages => "messages",
            Self::Subscribes => "subscribes",
        }
    }
}

/// One window: what it meters, whose it is (an egress or a socket id) and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketWindow {
    pub budget: SocketBudget,
    pub key: u64,
    pub limit: u32,
    /// The window's length (ignored for [`SocketBudget::Sockets`]).
    pub window_ms: u64,
}

/// The margin kept on a window of `window_ms`, in µs.
fn margin_us(window_ms: u64) -> u64 {
    if window_ms <= 1_000 {
        window_ms * 100
    } else {
        1_000_000
    }
}

#[derive(Debug, Default)]
struct Log {
    /// Take times, µs, oldest first.
    taken: VecDeque<u64>,
    /// Sockets open (for the count).
    open: u32,
}

/// Counters of one kind of budget, for usage lines and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCounters {
    pub taken: u64,
    /// Takes that had to wait for room.
    pub waited: u64,
    pub wait_us: u64,
}

/// Every socket window of a limiter.
#[derive(Debug, Default)]
pub struct SocketBudgets {
    logs: HashMap<(SocketBudget, u64), Log>,
    counters: HashMap<SocketBudget, SocketCounters>,
}

impl SocketBudgets {
    /// When `window` has room for one more, at or after `now_us`.
    pub fn ready_at(&self, window: &SocketWindow, now_us: u64) -> u64 {
        if window.limit == 0 {
            return u64::MAX;
        }
        let Some(log) = self.logs.get(&(window.budget, window.key)) else {
            return now_us;
        };
        if window.budget == SocketBudget::Sockets {
            // A free slot comes only from a release, which wakes the waiters.
            return if log.open < window.limit {
                now_us
            } else {
                u64::MAX
            };
        }
        let limit = window.limit as usize;
        let span = window.window_ms * 1_000 + margin_us(window.window_ms);
        if log.taken.len() < limit {
            return now_us;
        }
        let blocking = log.taken[log.taken.len() - limit];
        (blocking + span).max(now_us)
    }

    /// When every one of `windows` has room at once.
    pub fn all_ready_at(&self, windows: &[SocketWindow], now_us: u64) -> u64 {
        windows
            .iter()
            .map(|w| self.ready_at(w, now_us))
            .max()
            .unwrap_or(now_us)
    }

    /// Takes one of each of `windows` at `now_us`, having waited `waited_us` for them.
    pub fn take(&mut self, windows: &[SocketWindow], now_us: u64, waited_us: u64) {
        for w in windows {
            let log = self.logs.entry((w.budget, w.key)).or_default();
            if w.budget == SocketBudget::Sockets {
                log.open += 1;
            } else {
                log.taken.push_back(now_us);
                let span = w.window_ms * 1_000 + margin_us(w.window_ms);
                // Only the last `limit` takes can block; older ones are forgotten.
                while log.taken.len() > w.limit as usize
                    || log.taken.front().is_some_and(|&t| t + span <= now_us)
                {
                    log.taken.pop_front();
                }
            }
            let c = self.counters.entry(w.budget).or_default();
            c.taken += 1;
            if waited_us > 0 {
                c.waited += 1;
                c.wait_us += waited_us;
            }
        }
    }

    /// A socket slot of `key` is free again.
    pub fn release(&mut self, budget: SocketBudget, key: u64) {
        if let Some(log) = self.logs.get_mut(&(budget, key)) {
            log.open = log.open.saturating_sub(1);
        }
    }

    /// Forgets a closed socket's windows.
    pub fn forget(&mut self, key: u64) {
        self.logs.retain(|(budget, k), _| {
            *k != key || matches!(budget, SocketBudget::Attempts | SocketBudget::Sockets)
        });
    }

    /// Counters of every kind used so far.
    pub fn counters(&self) -> Vec<(SocketBudget, SocketCounters)> {
        let mut all: Vec<_> = self.counters.iter().map(|(b, c)| (*b, *c)).collect();
        all.sort_by_key(|(b, _)| *b);
        all
    }

    /// Sockets open under `key`.
    pub fn open(&self, key: u64) -> u32 {
        self.logs
            .get(&(SocketBudget::Sockets, key))
            .map_or(0, |l| l.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    fn messages(socket: u64) -> SocketWindow {
        SocketWindow {
            budget: SocketBudget::Messages,
            key: socket,
            limit: 10,
            window_ms: 1_000,
        }
    }

    #[test]
    fn no_eleventh_message_in_a_second_with_the_margin() {
        let mut b = SocketBudgets::default();
        let w = [messages(1)];
        for i in 0..10 {
            assert_eq!(b.ready_at(&w[0], i * MS), i * MS);
            b.take(&w, i * MS, 0);
        }
        // The 11th waits for the first to leave the window, plus the 100 ms margin.
        assert_eq!(b.ready_at(&w[0], 10 * MS), 1_100 * MS);
        b.take(&w, 1_100 * MS, 1_090 * MS);
        assert_eq!(b.ready_at(&w[0], 1_100 * MS), 1_101 * MS);
        // Another socket has its own window.
        assert_eq!(b.ready_at(&messages(2), 10 * MS), 10 * MS);
        let c = b.counters();
        assert_eq!(c[0].0, SocketBudget::Messages);
        assert_eq!((c[0].1.taken, c[0].1.waited), (11, 1));
    }

    /// Any sliding window of the server's length holds at most `limit` arrivals, however
    /// the sends bunch up, when arrivals lag sends by 0 to 90 ms.
    #[test]
    fn staggered_reconnects_after_a_mass_cut_stay_within_300_attempts_in_five_minutes() {
        let mut b = SocketBudgets::default();
        let attempts = SocketWindow {
            budget: SocketBudget::Attempts,
            key: 0,
            limit: 300,
            window_ms: 300_000,
        };
        let mut now = 0u64;
        let mut sent = Vec::new();
        // 1000 sockets want to reconnect at once, three times over.
        for _ in 0..1000 {
            now = b.ready_at(&attempts, now);
            b.take(&[attempts], now, 0);
            sent.push(now);
        }
        let arrivals: Vec<u64> = sent
            .iter()
            .enumerate()
            .map(|(i, t)| t + (i as u64 * 37 % 91) * MS)
            .collect();
        let mut sorted = arrivals.clone();
        sorted.sort_unstable();
        for (i, &start) in sorted.iter().enumerate() {
            let within = sorted[i..]
                .iter()
                .take_while(|&&t| t < start + 300_000 * MS)
                .count();
            assert!(
                within <= 300,
                "{within} attempts in five minutes from {start}"
            );
        }
        // The first 300 go at once; the rest follow as the window frees.
        assert_eq!(sent[299], 0);
        assert_eq!(sent[300], 301_000 * MS);
    }

    #[test]
    fn sockets_are_a_count_released_on_close() {
        let mut b = SocketBudgets::default();
        let slot = SocketWindow {
            budget: SocketBudget::Sockets,
            key: 0,
            limit: 2,
            window_ms: 0,
        };
        b.take(&[slot], 0, 0);
        b.take(&[slot], 0, 0);
        assert_eq!(b.ready_at(&slot, 5), u64::MAX);
        assert_eq!(b.open(0), 2);
        b.release(SocketBudget::Sockets, 0);
        assert_eq!(b.ready_at(&slot, 5), 5);
        // A window of limit 0 never opens.
        let closed = SocketWindow {
            limit: 0,
            ..messages(9)
        };
        assert_eq!(b.ready_at(&closed, 0), u64::MAX);
    }

    #[test]
    fn a_closed_sockets_windows_are_forgotten_but_not_its_addresss() {
        let mut b = SocketBudgets::default();
        let attempts = SocketWindow {
            budget: SocketBudget::Attempts,
            key: 7,
            limit: 1,
            window_ms: 300_000,
        };
        b.take(&[messages(7), attempts], 0, 0);
        b.forget(7);
        assert_eq!(b.ready_at(&messages(7), 1), 1);
        assert!(b.ready_at(&attempts, 1) > 300_000 * MS);
    }
}
