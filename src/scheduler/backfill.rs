//! History into the candle file: every range the file lacks between two times, fetched
//! through the limiter from `/history-candles` (a budget of its own, so live polling on
//! `/candles` is not slowed), newest page first, and nothing it already holds.
//!
//! The plan is a pure function of the missing ranges ([`plan`]); the run fetches its pages
//! in order and queues each page's rows to the file as it comes. Stopped half way (Ctrl-C),
//! what was fetched is written before the exit, so the next run's plan starts where this
//! one ended: no page is fetched twice.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bitget::client::{Client, RequestError};
use crate::bitget::endpoints;
use crate::bitget::error::ErrorClass;
use crate::bitget::http::CallError;
use crate::core::market::Candle;
use crate::store::disk::{DiskError, DiskStore};
use crate::store::SeriesKey;

/// One request: the `rows` closed candles of `key` opening before `end`, of which those at
/// or after `from` are wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub key: SeriesKey,
    pub from: u64,
    pub end: u64,
    pub rows: u32,
}

/// The pages that fill `missing` (ranges `[from, to)` of open times of `key`, oldest first),
/// each at most `page_rows` candles, newest first within a range: a range interrupted half
/// way is left as one shorter range for the next plan.
pub fn plan(key: &SeriesKey, missing: &[(u64, u64)], page_rows: u32) -> Vec<Page> {
    let tf = key.timeframe;
    let mut pages = Vec::new();
    for &(from, to) in missing.iter().rev() {
        let mut end = to;
        while end > from {
            // Walk back `page_rows` bars, not past the range's start.
            let mut start = end;
            let mut rows = 0;
            while rows < page_rows && start > from {
                start = tf.prev_open(start);
                rows += 1;
            }
            pages.push(Page {
                key: key.clone(),
                from: start.max(from),
                end,
                rows,
            });
            end = start;
        }
    }
    pages
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Done {
    pub pages: u64,
    pub rows: u64,
    /// Pages the exchange answered with nothing (before the symbol existed).
    pub empty_pages: u64,
    pub stopped: bool,
}

/// Why a run ended early.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("bitget does not know {symbol}: {source}; check --symbols")]
    UnknownSymbol {
        symbol: String,
        source: RequestError,
    },
    #[error("{symbol} {timeframe}: a page failed {attempts} times: {source}")]
    Failed {
        symbol: String,
        timeframe: String,
        attempts: u32,
        source: RequestError,
    },
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// Attempts per page before the run gives up (each through the limiter).
const ATTEMPTS: u32 = 5;

/// Fetches `pages` in order into `disk`, calling `progress` after each; stops (keeping what
/// it fetched) when `stop` fires.
///
/// # Errors
/// Bitget does not know a symbol, or a page keeps failing.
pub async fn run(
    client: &Client,
    disk: &Arc<DiskStore>,
    pages: &[Page],
    stop: &CancellationToken,
    mut progress: impl FnMut(&Done),
) -> Result<Done, BackfillError> {
    let mut done = Done::default();
    let history = endpoints::MAX_HISTORY_CANDLE_ROWS;
    for page in pages {
        let mut attempt = 0;
        let candles = loop {
            attempt += 1;
            let fetched = tokio::select! {
                () = stop.cancelled() => {
                    done.stopped = true;
                    return Ok(done);
                }
                fetched = client.closed_candles_before(
                    &page.key.symbol,
                    page.key.timeframe,
                    page.end,
                    page.rows.min(history),
                    true,
                ) => fetched,
            };
            match fetched {
                Ok(stamped) => break stamped.data,
                Err(error) => {
                    let bad_symbol = matches!(
                        &error,
                        RequestError::Call(CallError::Bitget(e)) if e.class() == ErrorClass::BadSymbol
                    );
                    if bad_symbol {
                        return Err(BackfillError::UnknownSymbol {
                            symbol: page.key.symbol.to_string(),
                            source: error,
                        });
                    }
                    if attempt >= ATTEMPTS {
                        return Err(BackfillError::Failed {
                            symbol: page.key.symbol.to_string(),
                            timeframe: page.key.timeframe.to_string(),
                            attempts: attempt,
                            source: error,
                        });
                    }
                    tracing::warn!(symbol = %page.key.symbol, timeframe = %page.key.timeframe, attempt, "a backfill page failed, trying again: {error}");
                    // The limiter paces the next attempt; this only spaces attempts
                    // against an exchange that answers errors at once.
                    tokio::select! {
                        () = stop.cancelled() => {
                            done.stopped = true;
                            return Ok(done);
                        }
                        () = tokio::time::sleep(Duration::from_millis(500 << attempt.min(4))) => {}
                    }
                }
            }
        };
        let wanted: Vec<Candle> = candles
            .into_iter()
            .filter(|c| c.closed && c.open_time >= page.from && c.open_time < page.end)
            .collect();
        done.pages += 1;
        if wanted.is_empty() {
            done.empty_pages += 1;
        }
        done.rows += wanted.len() as u64;
        disk.write(wanted);
        progress(&done);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::market::Symbol;
    use crate::core::timeframe::{Market, Timeframe};

    const M: u64 = 60_000;
    const T: u64 = 1_795_305_600_000;

    fn key() -> SeriesKey {
        SeriesKey::new(
            Symbol::from_exchange("BTCUSDT"),
            Timeframe::parse(Market::Futures, "1m").unwrap(),
        )
    }

    #[test]
    fn pages_cover_each_missing_range_exactly_newest_first() {
        // 450 minutes, then a hole of 3 later on.
        let missing = [(T, T + 450 * M), (T + 1000 * M, T + 1003 * M)];
        let pages = plan(&key(), &missing, 200);
        let spans: Vec<(u64, u64, u32)> = pages
            .iter()
            .map(|p| ((p.from - T) / M, (p.end - T) / M, p.rows))
            .collect();
        assert_eq!(
            spans,
            [
                (1000, 1003, 3),
                (250, 450, 200),
                (50, 250, 200),
                (0, 50, 50)
            ]
        );
        assert!(plan(&key(), &[], 200).is_empty());
    }

    #[test]
    fn an_interrupted_plan_resumes_where_it_stopped_without_repeating_a_page() {
        let whole = plan(&key(), &[(T, T + 1000 * M)], 200);
        // The first two pages were written; the file now lacks [T, T + 600 M).
        let rest = plan(&key(), &[(T, T + 600 * M)], 200);
        assert_eq!(rest, whole[2..]);
    }
}
