//! `[trading]`: the trading engine's own section of the configuration, checked here.

use std::path::PathBuf;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::TradingConfig;
use crate::core::check::Checker;

/// `[trading]` as written; every key defaults to [`TradingConfig::default`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TradingSection {
    enabled: bool,
    strategies_dir: PathBuf,
    starting_usdt: String,
    fee_rate: String,
    balances_interval_secs: f64,
    positions_interval_secs: f64,
}

impl Default for TradingSection {
    fn default() -> Self {
        let t = TradingConfig::default();
        Self {
            enabled: t.enabled,
            strategies_dir: t.strategies_dir,
            starting_usdt: t.starting_usdt.to_string(),
            fee_rate: t.fee_rate.to_string(),
            balances_interval_secs: t.balances_every.as_secs_f64(),
            positions_interval_secs: t.positions_every.as_secs_f64(),
        }
    }
}

impl TradingSection {
    /// The engine's settings; problems go to `c`.
    pub fn check(&self, c: &mut Checker) -> TradingConfig {
        let mut decimal = |key: &str, text: &str, min: Decimal, max: Decimal| {
            match Decimal::from_str(text.trim()) {
                Ok(v) if v >= min && v <= max => v,
                _ => {
                    c.problem(format!(
                        "{key} = \"{text}\" is not allowed; write a number from {min} to {max} in quotes"
                    ));
                    Decimal::ZERO
                }
            }
        };
        let starting_usdt = decimal(
            "trading.starting_usdt",
            &self.starting_usdt,
            Decimal::ONE,
            Decimal::from(1_000_000_000),
        );
        let fee_rate = decimal(
            "trading.fee_rate",
            &self.fee_rate,
            Decimal::ZERO,
            Decimal::new(1, 2),
        );
        TradingConfig {
            enabled: self.enabled,
            strategies_dir: self.strategies_dir.clone(),
            starting_usdt,
            fee_rate,
            balances_every: c.secs(
                "trading.balances_interval_secs",
                self.balances_interval_secs,
                1.0,
                3600.0,
            ),
            positions_every: c.secs(
                "trading.positions_interval_secs",
                self.positions_interval_secs,
                1.0,
                3600.0,
            ),
        }
    }
}
