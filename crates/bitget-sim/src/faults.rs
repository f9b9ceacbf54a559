//! Seeded fault injection: the misbehaviour a real exchange and its CDN show under load.
//!
//! Each accepted request draws one number from a seeded generator and may be turned into a
//! CDN error page, a truncated body, a slow reply, a dropped connection, a symbol error or a
//! "system busy" code. The same seed and request order give the same faults, so a failing run
//! can be replayed.

use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Probabilities (0..=1) of each fault and its parameters.
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// HTML 502/503 page, as a CDN sends when the origin is down.
    pub html: f64,
    /// Status 200 with the JSON cut off halfway.
    pub truncated: f64,
    /// Reply delayed by `slow_ms`.
    pub slow: f64,
    pub slow_ms: u64,
    /// Connection closed with a TCP reset and no reply.
    pub reset: f64,
    /// A symbol-bearing request answered with `40034` as if the symbol did not exist.
    pub symbol: f64,
    /// Bitget's retryable "busy" codes (`40015`, `45001`, `40725`), as during a release window.
    pub busy: f64,
    pub seed: u64,
    /// The first this many accepted orders are executed, then their connection is reset
    /// before the reply: the order exists but the client cannot know.
    pub lost_order_replies: u32,
    /// The first this many orders are refused with a rate-limit reply and not executed, as
    /// when another program spends the same account's budget.
    pub rate_limited_orders: u32,
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Html {
        status: u16,
    },
    Truncated,
    Slow(Duration),
    Reset,
    Symbol,
    Busy {
        code: &'static str,
    },
    /// An executed order whose reply never left.
    LostReply,
}

impl Fault {
    /// Short name used in the request log and stats.
    pub fn name(self) -> &'static str {
        match self {
            Self::Html { .. } => "html",
            Self::Truncated => "truncated",
            Self::Slow(_) => "slow",
            Self::Reset => "reset",
            Self::Symbol => "symbol",
            Self::Busy { .. } => "busy",
            Self::LostReply => "lost_reply",
        }
    }
}

fn take_one(left: &std::sync::atomic::AtomicU32) -> bool {
    use std::sync::atomic::Ordering;
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Draws faults from a seeded generator.
#[derive(Debug)]
pub struct FaultInjector {
    config: FaultConfig,
    enabled: bool,
    rng: Mutex<ChaCha8Rng>,
    lost_replies_left: std::sync::atomic::AtomicU32,
    rate_limited_orders_left: std::sync::atomic::AtomicU32,
}

impl FaultInjector {
    pub fn new(config: FaultConfig) -> Self {
        let enabled = [
            config.html,
            config.truncated,
            config.slow,
            config.reset,
            config.symbol,
            config.busy,
        ]
        .iter()
        .any(|&p| p > 0.0);
        Self {
            lost_replies_left: std::sync::atomic::AtomicU32::new(config.lost_order_replies),
            rate_limited_orders_left: std::sync::atomic::AtomicU32::new(config.rate_limited_orders),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
            config,
            enabled,
        }
    }

    /// Whether the reply to the order just executed is to be lost.
    pub fn lose_order_reply(&self) -> bool {
        take_one(&self.lost_replies_left)
    }

    /// Whether the order just received is to be refused as rate-limited.
    pub fn rate_limit_order(&self) -> bool {
        take_one(&self.rate_limited_orders_left)
    }

    /// The fault for the next request, if any. `has_symbol` gates the symbol fault.
    pub fn draw(&self, has_symbol: bool) -> Option<Fault> {
        if !self.enabled {
            return None;
        }
        let (u, pick): (f64, u32) = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (rng.gen(), rng.gen())
        };
        let c = &self.config;
        let mut edge = 0.0;
        let mut hit = |p: f64| {
            edge += p;
            u < edge
        };
        if hit(c.html) {
            Some(Fault::Html {
                status: if pick % 2 == 0 { 502 } else { 503 },
            })
        } else if hit(c.truncated) {
            Some(Fault::Truncated)
        } else if hit(c.slow) {
            Some(Fault::Slow(Duration::from_millis(c.slow_ms)))
        } else if hit(c.reset) {
            Some(Fault::Reset)
        } else if hit(c.symbol) {
            has_symbol.then_some(Fault::Symbol)
        } else if hit(c.busy) {
            const BUSY: [&str; 3] = ["40015", "45001", "40725"];
            Some(Fault::Busy {
                code: BUSY[pick as usize % BUSY.len()],
            })
        } else {
            None
        }
    }
}

/// The page a CDN shows when the origin fails.
pub fn html_error_page(status: u16) -> String {
    let reason = if status == 502 {
        "Bad Gateway"
    } else {
        "Service Temporarily Unavailable"
    };
    format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_faults_when_all_probabilities_are_zero() {
        let f = FaultInjector::new(FaultConfig::default());
        assert!((0..1_000).all(|_| f.draw(true).is_none()));
    }

    #[test]
    fn same_seed_same_faults_and_rates_near_their_probability() {
        let config = FaultConfig {
            html: 0.1,
            reset: 0.1,
            seed: 42,
            ..FaultConfig::default()
        };
        let a: Vec<_> = (0..2_000)
            .map({
                let f = FaultInjector::new(config.clone());
                move |_| f.draw(true)
            })
            .collect();
        let b: Vec<_> = (0..2_000)
            .map({
                let f = FaultInjector::new(config.clone());
                move |_| f.draw(true)
            })
            .collect();
        assert_eq!(a, b);
        let html = a
            .iter()
            .filter(|f| matches!(f, Some(Fault::Html { .. })))
            .count();
        let reset = a.iter().filter(|f| matches!(f, Some(Fault::Reset))).count();
        assert!((120..=280).contains(&html), "html {html}");
        assert!((120..=280).contains(&reset), "reset {reset}");
        assert!(a
            .iter()
            .flatten()
            .all(|f| matches!(f, Fault::Html { .. } | Fault::Reset)));
    }

    #[test]
    fn symbol_fault_needs_a_symbol() {
        let f = FaultInjector::new(FaultConfig {
            symbol: 1.0,
            ..FaultConfig::default()
        });
        assert_eq!(f.draw(true), Some(Fault::Symbol));
        assert_eq!(f.draw(false), None);
    }
}
