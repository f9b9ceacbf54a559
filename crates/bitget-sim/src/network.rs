//! The network between a client and the exchange, as the simulator models it: a per-request
//! arrival delay and server pauses.
//!
//! Bitget counts a request when it *arrives*, on its own clock. A client that keeps its
//! windows on its send times is right only if every request takes the same time to get
//! there; on a real path it does not, and request k and request k − limit can land in the
//! same server second although they left more than a second apart. Without this module the
//! simulator stamped every request the instant it was sent, so no test could see that.
//!
//! - **Jitter**: each request is held for a delay drawn from a seeded generator before the
//!   server reads its clock, meters it and stamps `requestTime`; uniform in `[0, jitter_ms]`,
//!   optionally with a heavy tail (a fraction of requests delayed up to ten times longer), as
//!   real paths show under cross-traffic.
//! - **Stalls**: every `stall_every_ms` the server stops serving for a drawn pause (Bitget's
//!   gateway under load, a GC pause). Requests that arrive during a pause are all metered at
//!   its end, in one burst of arrivals.
//!
//! Both are pure functions of a draw index and of explicit time, so tests check them without
//! a runtime.

use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

/// How the network between clients and the simulator behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Largest arrival delay of the uniform part, in milliseconds (0 = none).
    pub jitter_ms: u64,
    /// Share of requests, in per mille, whose delay is drawn from `[0, 10 × jitter_ms]`
    /// instead: a heavy tail.
    pub tail_permille: u32,
    /// Server pauses: shortest and longest pause in milliseconds (both 0 = none).
    pub stall_ms: (u64, u64),
    /// Time between the starts of two pauses, in milliseconds.
    pub stall_every_ms: u64,
    /// Seed of the delay and pause draws.
    pub seed: u64,
}

/// A malformed network option.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NetworkConfigError {
    #[error("--stall-ms '{0}' must look like MS or MIN-MAX in milliseconds, e.g. 150 or 100-180")]
    StallSyntax(String),
    #[error("--stall-ms needs --stall-every SECS (the time between pauses), and the pause must be shorter than it")]
    StallEvery,
    #[error("--jitter-ms {0} is too large; at most 10000 ms")]
    Jitter(u64),
}

impl NetworkConfig {
    /// Parses `--stall-ms`: `150` or `100-180`.
    pub fn parse_stall(text: &str) -> Result<(u64, u64), NetworkConfigError> {
        let syntax = || NetworkConfigError::StallSyntax(text.to_owned());
        let (low, high) = match text.split_once('-') {
            Some((low, high)) => (low.trim(), high.trim()),
            None => (text.trim(), text.trim()),
        };
        let low: u64 = low.parse().map_err(|_| syntax())?;
        let high: u64 = high.parse().map_err(|_| syntax())?;
        if low > high || high > 60_000 {
            return Err(syntax());
        }
        Ok((low, high))
    }

    /// Checks the options against each other.
    ///
    /// # Errors
    /// A pause without a period or longer than it, or an absurd jitter.
    pub fn validate(&self) -> Result<(), NetworkConfigError> {
        if self.jitter_ms > 10_000 {
            return Err(NetworkConfigError::Jitter(self.jitter_ms));
        }
        if self.stall_ms.1 > 0 && self.stall_every_ms <= self.stall_ms.1 {
            return Err(NetworkConfigError::StallEvery);
        }
        Ok(())
    }
}

/// Draws arrival delays and knows the pause schedule.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    started_ms: u64,
    rng: Mutex<ChaCha8Rng>,
}

impl Network {
    /// A network whose pause schedule counts from `started_ms` (server time).
    pub fn new(config: NetworkConfig, started_ms: u64) -> Self {
        Self {
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
            config,
            started_ms,
        }
    }

    /// Whether this network changes anything at all.
    pub fn is_ideal(&self) -> bool {
        self.config.jitter_ms == 0 && self.config.stall_ms.1 == 0
    }

    /// The next request's arrival delay.
    pub fn arrival_delay(&self) -> Duration {
        let max_ms = self.config.jitter_ms;
        if max_ms == 0 {
            return Duration::ZERO;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let tail = self.config.tail_permille > 0
            && rng.gen_range(0..1000) < self.config.tail_permille.min(1000);
        let max_us = max_ms * 1_000 * if tail { 10 } else { 1 };
        Duration::from_micros(rng.gen_range(0..=max_us))
    }

    /// When the pause that `now_ms` falls in ends, if it falls in one. Pause k (k ≥ 1) starts
    /// `k × stall_every_ms` after start and lasts a length drawn for k alone, so the schedule
    /// is the same however many requests arrive.
    pub fn stall_end(&self, now_ms: u64) -> Option<u64> {
        let (low, high) = self.config.stall_ms;
        let every = self.config.stall_every_ms;
        if high == 0 || every == 0 {
            return None;
        }
        let elapsed = now_ms.checked_sub(self.started_ms)?;
        let k = elapsed / every;
        if k == 0 {
            return None;
        }
        let start = self.started_ms + k * every;
        let mut draw = ChaCha8Rng::seed_from_u64(self.config.seed ^ k.rotate_left(17));
        let length = draw.gen_range(low..=high);
        let end = start + length;
        (now_ms < end).then_some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_seeded_bounded_and_spread() {
        let config = NetworkConfig {
            jitter_ms: 30,
            seed: 7,
            ..NetworkConfig::default()
        };
        let draws = |config: &NetworkConfig| {
            let net = Network::new(config.clone(), 0);
            (0..2_000)
                .map(|_| net.arrival_delay().as_micros() as u64)
                .collect::<Vec<_>>()
        };
        let a = draws(&config);
        assert_eq!(a, draws(&config), "same seed, same delays");
        assert!(a.iter().all(|&d| d <= 30_000));
        let mean = a.iter().sum::<u64>() as f64 / a.len() as f64;
        assert!((13_500.0..16_500.0).contains(&mean), "mean {mean}");
        assert!(a.iter().any(|&d| d < 1_000) && a.iter().any(|&d| d > 29_000));
        let tail = draws(&NetworkConfig {
            tail_permille: 100,
            ..config
        });
        let long = tail.iter().filter(|&&d| d > 30_000).count();
        // About 10 % are tail draws, 90 % of which land above the uniform part's maximum.
        assert!((120..240).contains(&long), "{long} long delays");
        assert!(tail.iter().all(|&d| d <= 300_000));
    }

    #[test]
    fn no_jitter_means_no_delay() {
        let net = Network::new(NetworkConfig::default(), 0);
        assert!(net.is_ideal());
        assert_eq!(net.arrival_delay(), Duration::ZERO);
        assert_eq!(net.stall_end(123_456), None);
    }

    #[test]
    fn pauses_follow_their_schedule() {
        let config = NetworkConfig {
            stall_ms: (100, 180),
            stall_every_ms: 3_000,
            seed: 3,
            ..NetworkConfig::default()
        };
        let net = Network::new(config, 10_000);
        // No pause before the first period has passed.
        assert_eq!(net.stall_end(10_050), None);
        // The first pause starts at 13 000 and lasts 100 to 180 ms.
        let end = net.stall_end(13_000).expect("in the first pause");
        assert!((13_100..=13_180).contains(&end), "{end}");
        assert_eq!(net.stall_end(end - 1), Some(end));
        assert_eq!(net.stall_end(end), None);
        assert_eq!(net.stall_end(12_999), None);
        // Every pause is drawn for its own index: the same answer however often asked.
        let second = net.stall_end(16_000).expect("in the second pause");
        assert_eq!(net.stall_end(16_050.min(second - 1)), Some(second));
        // Before start there is nothing.
        assert_eq!(net.stall_end(5_000), None);
    }

    #[test]
    fn bad_network_options_are_explained() {
        assert_eq!(NetworkConfig::parse_stall("150"), Ok((150, 150)));
        assert_eq!(NetworkConfig::parse_stall("100-180"), Ok((100, 180)));
        assert!(NetworkConfig::parse_stall("180-100").is_err());
        assert!(NetworkConfig::parse_stall("x").is_err());
        let no_period = NetworkConfig {
            stall_ms: (100, 200),
            stall_every_ms: 0,
            ..NetworkConfig::default()
        };
        assert_eq!(no_period.validate(), Err(NetworkConfigError::StallEvery));
        let too_much = NetworkConfig {
            jitter_ms: 20_000,
            ..NetworkConfig::default()
        };
        assert_eq!(too_much.validate(), Err(NetworkConfigError::Jitter(20_000)));
    }
}
