//! What the poller counts beyond the limiter: replies, deliveries, failures, the adaptive
//! tier. (Every series' age is the store's.) The scheduler writes it; summaries, usage lines and metrics
//! read it.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use super::tiers::Tier;

/// Counters the poller keeps beyond the limiter's, for the summary and tests.
#[derive(Debug, Default)]
pub struct PollStats {
    pub candle_replies: AtomicU64,
    /// New closed candles written into the store.
    pub closed_delivered: AtomicU64,
    /// Ticker snapshots written into the store.
    pub tickers_delivered: AtomicU64,
    pub failures: AtomicU64,
    pub parked: AtomicU64,
    /// Closed-mode rounds completed, and the latest round's delivery time after the close.
    pub close_rounds: AtomicU64,
    pub last_close_latency_ms: AtomicU64,
    /// Current symbols per iteration, shown in the usage lines.
    pub symbols_per_iteration: AtomicUsize,
    /// Current adaptive tier, as its index in [`Tier::ALL`].
    tier: AtomicU8,
}

impl PollStats {
    /// The adaptive tier in force.
    pub fn tier(&self) -> Tier {
        Tier::ALL[usize::from(self.tier.load(Ordering::Relaxed)).min(Tier::ALL.len() - 1)]
    }

    pub(crate) fn set_tier(&self, tier: Tier) {
        let index = Tier::ALL.iter().position(|t| *t == tier).unwrap_or(0);
        self.tier.store(index as u8, Ordering::Relaxed);
    }
}
