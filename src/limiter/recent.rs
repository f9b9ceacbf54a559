//! Rate-limit rejections over the last minute, per category: what the adaptive tiers and
//! the usage lines count. Written by the HTTP layer on every 429 it was not crowded into.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Category;

/// Rate-limit rejections per category over the last minute, for tiers and usage lines.
#[derive(Debug, Default)]
pub struct RecentRateLimits {
    events: Mutex<[VecDeque<Instant>; 4]>,
}

impl RecentRateLimits {
    const HORIZON: Duration = Duration::from_secs(60);

    /// Records one rejection now; returns the category's count over the last minute.
    pub fn record(&self, category: Category) -> usize {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let queue = &mut events[category.index()];
        queue.push_back(now);
        Self::expire(queue, now);
        queue.len()
    }

    /// Rejections of `category` in the last minute.
    pub fn count(&self, category: Category) -> usize {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let queue = &mut events[category.index()];
        Self::expire(queue, now);
        queue.len()
    }

    /// Rejections of every category in the last minute.
    pub fn total(&self) -> usize {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events
            .iter_mut()
            .map(|queue| {
                Self::expire(queue, now);
                queue.len()
            })
            .sum()
    }

    fn expire(queue: &mut VecDeque<Instant>, now: Instant) {
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Self::HORIZON)
        {
            queue.pop_front();
        }
    }
}
