//! SuperTrend pullback: trade with the SuperTrend's trend, entering on pullbacks to its line.
//!
//! The indicator follows TradingView's `ta.supertrend`, with the ATR seeded and smoothed as
//! TA-Lib's `ATR` (Wilder): the true range starts on the second bar, the first ATR is the
//! mean of the first `period` true ranges, then `atr = (atr × (period − 1) + tr) / period`.
//! Bands are `hl2 ± multiplier × atr`; the lower band only rises and the upper only falls
//! while price stays inside them; the trend turns up when a close crosses above the upper
//! band and down when one crosses below the lower. The line is the lower band in an uptrend
//! and the upper band in a downtrend. The first bar with an ATR starts in a downtrend, as in
//! TradingView.
//!
//! Signals, on closed candles only:
//! - enter long when the trend was up on this bar and the one before, the bar's low came
//!   within `pullback_pct` % above the line (or below it), and the bar closed above the line
//!   and above its open, i.e. back in the trend's direction. Short mirrors it.
//! - exit on a stop `stop_pct` % from the entry close (checked against the bar's low for a
//!   long, its high for a short), else on a trend flip. At most one action per bar.
//!
//! Everything is `Decimal`; `tests/data/supertrend/` holds reference values made
//! independently (TA-Lib's ATR plus a Python transcription of the rules above).

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::{Intent, Strategy, Target};
use crate::core::market::{Candle, Symbol};

/// The `kind` that selects this strategy in a strategy file.
pub const KIND: &str = "supertrend_pullback";

/// Parameters of a SuperTrend pullback instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperTrendParams {
    /// ATR period in bars.
    pub atr_period: u32,
    /// Band width in ATRs.
    pub multiplier: Decimal,
    /// How close (in % of the line) the pullback must come to the line.
    pub pullback_pct: Decimal,
    /// Stop distance from the entry close, in %.
    pub stop_pct: Decimal,
}

impl Default for SuperTrendParams {
    fn default() -> Self {
        Self {
            atr_period: 10,
            multiplier: Decimal::from(3),
            pullback_pct: Decimal::new(3, 1),
            stop_pct: Decimal::ONE,
        }
    }
}

/// The indicator's values on one bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub atr: Decimal,
    pub upper: Decimal,
    pub lower: Decimal,
    /// Whether the trend is up.
    pub up: bool,
    /// The SuperTrend line: the lower band in an uptrend, the upper in a downtrend.
    pub line: Decimal,
}

/// Incremental SuperTrend over one symbol's bars.
#[derive(Debug, Clone)]
pub struct SuperTrend {
    period: u32,
    multiplier: Decimal,
    prev_close: Option<Decimal>,
    seed_sum: Decimal,
    seed_count: u32,
    atr: Option<Decimal>,
    prev: Option<Reading>,
}

impl SuperTrend {
    /// `period` is at least 1.
    pub fn new(period: u32, multiplier: Decimal) -> Self {
        Self {
            period: period.max(1),
            multiplier,
            prev_close: None,
            seed_sum: Decimal::ZERO,
            seed_count: 0,
            atr: None,
            prev: None,
        }
    }

    /// Feeds one bar; the reading once the ATR exists (from bar `period`, 0-based).
    pub fn update(&mut self, high: Decimal, low: Decimal, close: Decimal) -> Option<Reading> {
        let prev_close = self.prev_close.replace(close)?;
        let true_range = (high - low)
            .max((high - prev_close).abs())
            .max((low - prev_close).abs());
        let period = Decimal::from(self.period);
        let atr = match self.atr {
            Some(atr) => (atr * (period - Decimal::ONE) + true_range) / period,
            None => {
                self.seed_sum += true_range;
                self.seed_count += 1;
                if self.seed_count < self.period {
                    return None;
                }
                self.seed_sum / period
            }
        };
        self.atr = Some(atr);
        let hl2 = (high + low) / Decimal::TWO;
        let basic_upper = hl2 + self.multiplier * atr;
        let basic_lower = hl2 - self.multiplier * atr;
        let reading = match self.prev {
            None => Reading {
                atr,
                upper: basic_upper,
                lower: basic_lower,
                up: false,
                line: basic_upper,
            },
            Some(p) => {
                let lower = if basic_lower > p.lower || prev_close < p.lower {
                    basic_lower
                } else {
                    p.lower
                };
                let upper = if basic_upper < p.upper || prev_close > p.upper {
                    basic_upper
                } else {
                    p.upper
                };
                let up = if p.line == p.upper {
                    close > upper
                } else {
                    close >= lower
                };
                Reading {
                    atr,
                    upper,
                    lower,
                    up,
                    line: if up { lower } else { upper },
                }
            }
        };
        self.prev = Some(reading);
        Some(reading)
    }
}

#[derive(Debug, Clone)]
struct SymbolState {
    indicator: SuperTrend,
    last_open_time: Option<u64>,
    prev: Option<Reading>,
    position: Target,
    stop: Decimal,
}

/// The SuperTrend pullback strategy over any number of symbols.
#[derive(Debug, Clone)]
pub struct SuperTrendPullback {
    params: SuperTrendParams,
    symbols: HashMap<Symbol, SymbolState>,
}

impl SuperTrendPullback {
    pub fn new(params: SuperTrendParams) -> Self {
        Self {
            params,
            symbols: HashMap::new(),
        }
    }

    /// The last reading for `symbol`, if its ATR is warmed up.
    pub fn reading(&self, symbol: &Symbol) -> Option<Reading> {
        self.symbols.get(symbol).and_then(|s| s.prev)
    }
}

impl Strategy for SuperTrendPullback {
    fn on_candle(&mut self, candle: &Candle) -> Vec<Intent> {
        let params = &self.params;
        let state = self
            .symbols
            .entry(candle.symbol.clone())
            .or_insert_with(|| SymbolState {
                indicator: SuperTrend::new(params.atr_period, params.multiplier),
                last_open_time: None,
                prev: None,
                position: Target::Flat,
                stop: Decimal::ZERO,
            });
        // A repeated or older candle would count twice in the ATR.
        if state.last_open_time.is_some_and(|t| candle.open_time <= t) {
            return Vec::new();
        }
        state.last_open_time = Some(candle.open_time);
        let reading = state
            .indicator
            .update(candle.high, candle.low, candle.close);
        let previous = std::mem::replace(&mut state.prev, reading);
        let (Some(now), Some(before)) = (reading, previous) else {
            return Vec::new();
        };
        let hundred = Decimal::ONE_HUNDRED;
        let decision = match state.position {
            Target::Long if candle.low <= state.stop => Some((Target::Flat, "stop")),
            Target::Long if !now.up => Some((Target::Flat, "trend flip")),
            Target::Short if candle.high >= state.stop => Some((Target::Flat, "stop")),
            Target::Short if now.up => Some((Target::Flat, "trend flip")),
            Target::Long | Target::Short => None,
            Target::Flat => {
                let zone = now.line * params.pullback_pct / hundred;
                if now.up
                    && before.up
                    && candle.low <= now.line + zone
                    && candle.close > now.line
                    && candle.close > candle.open
                {
                    state.stop = candle.close * (hundred - params.stop_pct) / hundred;
                    Some((Target::Long, "pullback in uptrend"))
                } else if !now.up
                    && !before.up
                    && candle.high >= now.line - zone
                    && candle.close < now.line
                    && candle.close < candle.open
                {
                    state.stop = candle.close * (hundred + params.stop_pct) / hundred;
                    Some((Target::Short, "pullback in downtrend"))
                } else {
                    None
                }
            }
        };
        let Some((target, reason)) = decision else {
            return Vec::new();
        };
        state.position = target;
        vec![Intent {
            symbol: candle.symbol.clone(),
            target,
            reason,
            candle_open_time: candle.open_time,
            decided_at_price: candle.close,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn candle(t: u64, o: &str, h: &str, l: &str, c: &str) -> Candle {
        Candle {
            symbol: Symbol::from_exchange("BTCUSDT"),
            timeframe: crate::core::timeframe::Timeframe::parse(
                crate::core::timeframe::Market::Futures,
                "1m",
            )
            .unwrap(),
            open_time: t * 60_000,
            open: d(o),
            high: d(h),
            low: d(l),
            close: d(c),
            base_volume: Decimal::ZERO,
            quote_volume: Decimal::ZERO,
            closed: true,
        }
    }

    #[test]
    fn atr_is_seeded_with_the_mean_then_wilder_smoothed() {
        let mut st = SuperTrend::new(2, Decimal::ONE);
        assert_eq!(st.update(d("10"), d("8"), d("9")), None);
        // TR 3 (11 - 8), not enough for period 2.
        assert_eq!(st.update(d("11"), d("8"), d("10")), None);
        // TR 2; ATR = (3 + 2) / 2.
        let first = st.update(d("11"), d("9"), d("10")).unwrap();
        assert_eq!(first.atr, d("2.5"));
        assert!(!first.up);
        assert_eq!(first.line, d("12.5"));
        // TR 4 (14 - 10): ATR = (2.5 + 4) / 2; close 13.5 > upper 12.5 turns the trend up.
        let second = st.update(d("14"), d("10"), d("13.5")).unwrap();
        assert_eq!(second.atr, d("3.25"));
        assert!(second.up);
        assert_eq!(second.line, d("8.75"));
    }

    #[test]
    fn a_repeated_candle_is_ignored() {
        let mut s = SuperTrendPullback::new(SuperTrendParams {
            atr_period: 2,
            ..SuperTrendParams::default()
        });
        s.on_candle(&candle(1, "9", "10", "8", "9"));
        s.on_candle(&candle(2, "9", "11", "8", "10"));
        s.on_candle(&candle(3, "10", "11", "9", "10"));
        let before = s.reading(&Symbol::from_exchange("BTCUSDT"));
        assert!(s.on_candle(&candle(3, "10", "11", "9", "10")).is_empty());
        assert_eq!(s.reading(&Symbol::from_exchange("BTCUSDT")), before);
    }
}
