//! `[store]`: the store's own section of the configuration, checked here.

use serde::Deserialize;

use super::StoreConfig;
use crate::core::check::Checker;

/// `[store]` as written; every key defaults to [`StoreConfig::default`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    journal_capacity: usize,
    candles_per_series: usize,
}

impl Default for StoreSection {
    fn default() -> Self {
        let d = StoreConfig::default();
        Self {
            journal_capacity: d.journal_capacity,
            candles_per_series: d.candles_per_series,
        }
    }
}

impl StoreSection {
    /// The store's sizes; problems go to `c`.
    pub fn check(&self, c: &mut Checker) -> StoreConfig {
        StoreConfig {
            journal_capacity: c.range(
                "store.journal_capacity",
                self.journal_capacity,
                1024,
                16_777_216,
            ),
            candles_per_series: c.range(
                "store.candles_per_series",
                self.candles_per_series,
                1,
                100_000,
            ),
        }
    }
}
