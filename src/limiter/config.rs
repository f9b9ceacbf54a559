//! `[limits]`: the limiter's own section of the configuration (the limits and which
//! backend admits), checked here.

use serde::Deserialize;

use super::redis::{check_url, BackendConfig, RedisConfig, DEFAULT_KEY_PREFIX, DEFAULT_REDIS_URL};
use super::Limits;
use crate::core::check::Checker;

/// `[limits]` as written; the limits default to [`Limits::default`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    market_per_sec: u32,
    account_per_sec: u32,
    trade_per_sec: u32,
    default_per_sec: u32,
    overall_per_min: u32,
    market_total_per_sec: Option<u32>,
    safety_margin: f64,
    backend: String,
    redis_url: String,
    redis_key_prefix: String,
    redis_expected_instances: u32,
    redis_fallback_share: Option<f64>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            market_per_sec: l.per_second[0],
            account_per_sec: l.per_second[1],
            trade_per_sec: l.per_second[2],
            default_per_sec: l.per_second[3],
            overall_per_min: l.overall_per_minute,
            market_total_per_sec: l.total_per_second[0],
            safety_margin: l.safety_margin,
            backend: "local".to_owned(),
            redis_url: DEFAULT_REDIS_URL.to_owned(),
            redis_key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            redis_expected_instances: 2,
            redis_fallback_share: None,
        }
    }
}

impl LimitsSection {
    /// The limits; problems go to `c`.
    pub fn limits(&self, c: &mut Checker) -> Limits {
        let per_second = [
            c.range("limits.market_per_sec", self.market_per_sec, 1, 1000),
            c.range("limits.account_per_sec", self.account_per_sec, 1, 1000),
            c.range("limits.trade_per_sec", self.trade_per_sec, 1, 1000),
            c.range("limits.default_per_sec", self.default_per_sec, 1, 1000),
        ];
        let overall_per_minute =
            c.range("limits.overall_per_min", self.overall_per_min, 1, 100_000);
        let market_total = self
            .market_total_per_sec
            .map(|t| c.range("limits.market_total_per_sec", t, 1, 1000));
        if !(0.0..0.5).contains(&self.safety_margin) {
            c.problem(format!(
                "limits.safety_margin = {} is out of range; allowed 0 to 0.5 (0.02 keeps 2 % spare on top of the measured margin)",
                self.safety_margin
            ));
        }
        Limits {
            per_second,
            total_per_second: [market_total, None, None, None],
            overall_per_minute,
            safety_margin: self.safety_margin,
        }
    }

    /// Which backend admits; problems go to `c`.
    pub fn backend(&self, c: &mut Checker) -> BackendConfig {
        match self.backend.as_str() {
            "local" => BackendConfig::Local,
            "redis" => {
                if let Err(e) = check_url(&self.redis_url) {
                    c.problem(e.to_string());
                }
                let prefix = self.redis_key_prefix.trim();
                if prefix.is_empty() || prefix.contains(['{', '}', ' ']) {
                    c.problem(format!(
                        "limits.redis_key_prefix = {:?} must be a non-empty name without spaces or braces",
                        self.redis_key_prefix
                    ));
                }
                let n = c.range(
                    "limits.redis_expected_instances",
                    self.redis_expected_instances,
                    1,
                    1000,
                );
                let share = self
                    .redis_fallback_share
                    .unwrap_or(1.0 / f64::from(n.max(1)));
                if !(share > 0.0 && share <= 1.0) {
                    c.problem(format!(
                        "limits.redis_fallback_share = {share} is out of range; allowed above 0 up to 1 (each instance's part of every limit while redis is unreachable; 1/N for N instances)"
                    ));
                }
                BackendConfig::Redis(RedisConfig {
                    url: self.redis_url.clone(),
                    key_prefix: prefix.to_owned(),
                    fallback_share: share,
                })
            }
            other => {
                c.problem(format!(
                    "limits.backend = \"{other}\" is not known; allowed \"local\" or \"redis\""
                ));
                BackendConfig::Local
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The section alone, as a settings change would bring it.
    fn checked(text: &str) -> (Limits, Vec<String>) {
        let section: LimitsSection = toml::from_str(text).unwrap();
        let mut c = Checker::new();
        let limits = section.limits(&mut c);
        (limits, c.into_problems())
    }

    #[test]
    fn the_limits_are_checked_by_their_owner_alone() {
        let (limits, problems) = checked("market_per_sec = 12\nmarket_total_per_sec = 30\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(limits.per_second, [12, 10, 10, 10]);
        assert_eq!(limits.total(crate::limiter::Category::Market), Some(30));
        let (_, problems) = checked("market_total_per_sec = 0\noverall_per_min = 0\n");
        assert_eq!(
            problems,
            [
                "limits.overall_per_min = 0 is out of range; allowed 1 to 100000",
                "limits.market_total_per_sec = 0 is out of range; allowed 1 to 1000",
            ]
        );
        // An unset key keeps the default, written once in `Limits::default`.
        assert_eq!(checked("").0, Limits::default());
    }
}
