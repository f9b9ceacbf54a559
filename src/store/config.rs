//! `[store]`: the store's own section of the configuration, checked here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::disk::DiskConfig;
use super::StoreConfig;
use crate::core::check::Checker;
use crate::core::timeframe::{Market, Timeframe};

/// Where closed candles are kept on disk unless `[store] path` says otherwise.
pub const DEFAULT_PATH: &str = "data/candles.sqlite";

/// `[store]` as written; every key defaults to [`StoreConfig::default`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    journal_capacity: usize,
    candles_per_series: usize,
    /// The SQLite file; "" keeps candles in memory only.
    path: String,
    /// How long each timeframe is kept on disk, e.g. `"1m" = "30d"`.
    retention: BTreeMap<String, String>,
}

impl Default for StoreSection {
    fn default() -> Self {
        let d = StoreConfig::default();
        Self {
            journal_capacity: d.journal_capacity,
            candles_per_series: d.candles_per_series,
            path: DEFAULT_PATH.to_owned(),
            retention: BTreeMap::new(),
        }
    }
}

impl StoreSection {
    /// Where candles are kept on disk (`None`: memory only); problems go to `c`.
    pub fn disk(&self, c: &mut Checker) -> Option<DiskConfig> {
        let mut retention = BTreeMap::new();
        for (spelling, keep) in &self.retention {
            let timeframe = Timeframe::parse(Market::Futures, spelling)
                .or_else(|| Timeframe::parse(Market::Spot, spelling));
            let Some(timeframe) = timeframe else {
                c.problem(format!(
                    "store.retention.\"{spelling}\" is not a timeframe Bitget spells; use \"1m\", \"1H\", \"1min\", \"1day\"..."
                ));
                continue;
            };
            match humantime::parse_duration(keep) {
                Ok(d) if d.as_secs() >= 60 => {
                    retention.insert(timeframe, d);
                }
                _ => c.problem(format!(
                    "store.retention.\"{spelling}\" = \"{keep}\" is not a length of at least a minute; write it like \"30d\" or \"12h\""
                )),
            }
        }
        let path = self.path.trim();
        (!path.is_empty()).then(|| DiskConfig {
            path: PathBuf::from(path),
            retention,
        })
    }

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
