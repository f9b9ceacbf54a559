//! Adaptive symbols per iteration: the operators' safety valve when the exchange pushes back.
//!
//! Rate-limit errors over the last minute pick the tier. The normal tier does not cap
//! anything (the limiter alone paces requests), so against a healthy server the whole budget
//! is used; the slow and crawl tiers fetch a few symbols per iteration with a pause between
//! iterations, exactly as the bot this tool replaces did.

use std::fmt;
use std::time::Duration;

/// The adaptive tiers: rate-limit errors in the last minute choose how many symbols an
/// iteration fetches and how long it pauses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierConfig {
    /// More errors than this: the slow tier.
    pub slow_above: usize,
    pub slow_symbols: usize,
    pub slow_pause: Duration,
    /// More errors than this: the crawl tier.
    pub crawl_above: usize,
    pub crawl_symbols: usize,
    pub crawl_pause: Duration,
}

impl Default for TierConfig {
    /// The operators' values: more than 5 errors → 2 symbols and 0.5 s; more than 10 → 1
    /// symbol and 1 s.
    fn default() -> Self {
        Self {
            slow_above: 5,
            slow_symbols: 2,
            slow_pause: Duration::from_millis(500),
            crawl_above: 10,
            crawl_symbols: 1,
            crawl_pause: Duration::from_secs(1),
        }
    }
}

/// The current tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Normal,
    Slow,
    Crawl,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Self::Normal, Self::Slow, Self::Crawl];

    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Slow => "slow",
            Self::Crawl => "crawl",
        }
    }

    /// The tier named `name` (as [`Tier::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a tier dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Keep `concurrency` requests in flight; the limiter paces them.
    Pipeline,
    /// `symbols` per iteration, then `pause`.
    Iterations { symbols: usize, pause: Duration },
}

/// Tier state with change detection.
#[derive(Debug, Clone)]
pub struct Tiers {
    config: TierConfig,
    current: Tier,
}

impl Tiers {
    pub fn new(config: TierConfig) -> Self {
        Self {
            config,
            current: Tier::Normal,
        }
    }

    /// The tier for `errors` rate-limit errors in the last minute; `Some((from, to))` when
    /// it changed.
    pub fn update(&mut self, errors: usize) -> Option<(Tier, Tier)> {
        let next = if errors > self.config.crawl_above {
            Tier::Crawl
        } else if errors > self.config.slow_above {
            Tier::Slow
        } else {
            Tier::Normal
        };
        let previous = std::mem::replace(&mut self.current, next);
        (previous != next).then_some((previous, next))
    }

    pub fn current(&self) -> Tier {
        self.current
    }

    pub fn pace(&self) -> Pace {
        match self.current {
            Tier::Normal => Pace::Pipeline,
            Tier::Slow => Pace::Iterations {
                symbols: self.config.slow_symbols,
                pause: self.config.slow_pause,
            },
            Tier::Crawl => Pace::Iterations {
                symbols: self.config.crawl_symbols,
                pause: self.config.crawl_pause,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_error_count_both_ways_and_report_each_change_once() {
        let mut tiers = Tiers::new(TierConfig::default());
        let steps: Vec<_> = [0, 5, 6, 6, 10, 11, 12, 7, 3, 0]
            .into_iter()
            .map(|errors| tiers.update(errors))
            .collect();
        use Tier::*;
        assert_eq!(
            steps,
            [
                None,
                None,
                Some((Normal, Slow)),
                None,
                None,
                Some((Slow, Crawl)),
                None,
                Some((Crawl, Slow)),
                Some((Slow, Normal)),
                None
            ]
        );
    }

    #[test]
    fn paces_are_the_operators_defaults() {
        let mut tiers = Tiers::new(TierConfig::default());
        assert_eq!(tiers.pace(), Pace::Pipeline);
        tiers.update(6);
        assert_eq!(
            tiers.pace(),
            Pace::Iterations {
                symbols: 2,
                pause: Duration::from_millis(500)
            }
        );
        tiers.update(11);
        assert_eq!(
            tiers.pace(),
            Pace::Iterations {
                symbols: 1,
                pause: Duration::from_secs(1)
            }
        );
    }
}
