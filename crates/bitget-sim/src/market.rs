//! The simulated market: which contracts exist and what their prices are at any instant.
//!
//! Prices are a pure function of (seed, symbol, time), so any candle, ticker or order book can
//! be produced on demand for any moment without keeping history, two simulators with the same
//! seed agree, and a candle's open always equals the previous candle's close. The shape is a
//! sum of slow waves plus interpolated noise: plausible enough for strategies, cheap enough to
//! serve tens of thousands of candle replies per second.
//!
//! The curve is computed in `f64` and rounded once to whole price ticks; everything sent on the
//! wire is an exact decimal built from integers (`rust_decimal`), never a formatted float.

use rust_decimal::Decimal;

use bitget_proto::timeframe::Granularity;

/// Well-known bases used for the first symbols, so demos look familiar.
const KNOWN_BASES: &[(&str, f64)] = &[
    ("BTC", 64_000.0),
    ("ETH", 3_100.0),
    ("SOL", 145.0),
    ("XRP", 0.52),
    ("DOGE", 0.13),
    ("BNB", 580.0),
    ("ADA", 0.45),
    ("LTC", 82.0),
    ("LINK", 14.5),
    ("AVAX", 28.0),
    ("DOT", 6.3),
    ("TRX", 0.12),
    ("TON", 6.8),
    ("SUI", 1.1),
    ("NEAR", 5.2),
    ("APT", 8.4),
    ("ARB", 0.82),
    ("OP", 1.9),
    ("ATOM", 7.1),
    ("FIL", 4.6),
    ("BCH", 390.0),
    ("ETC", 23.0),
    ("UNI", 7.4),
    ("AAVE", 95.0),
    ("INJ", 22.0),
    ("PEPE", 0.0000105),
    ("SHIB", 0.0000178),
    ("WLD", 2.3),
    ("SEI", 0.41),
    ("TIA", 7.9),
];

/// One USDT-margined perpetual (and the spot pair with the same name).
#[derive(Debug, Clone)]
pub struct Contract {
    /// Bare symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Base coin, e.g. `BTC`.
    pub base: String,
    /// Decimal places of the price.
    pub price_place: u32,
    /// Decimal places of sizes.
    pub volume_place: u32,
    /// Reference price in ticks of `10^-price_place`.
    base_ticks: f64,
    /// Per-symbol phases of the price waves, from the seed.
    phases: [f64; 3],
    /// Per-symbol salt for the noise hash.
    salt: u64,
    /// Typical base volume per minute, in units of `10^-volume_place`.
    volume_per_minute: u64,
    /// Listing status as `/contracts` reports it (`normal`, or `off` for removed symbols).
    pub status: &'static str,
    /// Closed hour candles already built, by open time: a day is 24 of them rather than
    /// 1440 minutes. Cleared when it grows past [`HOUR_CACHE`].
    hours: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u64, Candle>>>,
}

/// Closed hour candles kept per contract (about 11 weeks).
const HOUR_CACHE: usize = 2_000;
const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;

/// All contracts of one simulator run.
#[derive(Debug, Clone)]
pub struct Universe {
    contracts: Vec<Contract>,
    by_symbol: std::collections::HashMap<String, usize>,
}

/// One candle with exact decimal values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candle {
    /// Open time, Unix ms.
    pub open_time: u64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    /// Volume in base coin.
    pub base_volume: Decimal,
    /// Volume in quote coin (USDT).
    pub quote_volume: Decimal,
}

impl Universe {
    /// `n` contracts: the known bases first, then generated names, prices from `seed`.
    /// Symbols in `removed` are listed with status `off` (Bitget answers them with `40309`).
    pub fn new(n: usize, seed: u64, removed: &[String]) -> Self {
        let mut contracts = Vec::with_capacity(n);
        for idx in 0..n {
            let salt = splitmix(seed ^ splitmix(idx as u64 + 1));
            let (base, reference) = match KNOWN_BASES.get(idx) {
                Some((name, price)) => ((*name).to_owned(), *price),
                None => {
                    // Spread generated prices over 0.001 .. 1000.
                    let exponent = unit(salt, 1) * 6.0 - 3.0;
                    (generated_base(idx), 10f64.powf(exponent))
                }
            };
            // About six significant digits, as Bitget's pricePlace gives most contracts.
            let price_place = (5 - reference.log10().floor() as i32).clamp(1, 8) as u32;
            let volume_place = (reference.log10().floor() as i32 + 1).clamp(0, 4) as u32;
            let symbol = format!("{base}USDT");
            let status = if removed.iter().any(|r| r.eq_ignore_ascii_case(&symbol)) {
                "off"
            } else {
                "normal"
            };
            // Roughly $50k of volume per minute, in size units.
            let volume_per_minute =
                ((50_000.0 / reference) * 10f64.powi(volume_place as i32)).max(1.0) as u64;
            contracts.push(Contract {
                symbol,
                base,
                price_place,
                volume_place,
                base_ticks: reference * 10f64.powi(price_place as i32),
                phases: [unit(salt, 2), unit(salt, 3), unit(salt, 4)]
                    .map(|u| u * std::f64::consts::TAU),
                salt,
                volume_per_minute,
                status,
                hours: std::sync::Arc::default(),
            });
        }
        let by_symbol = contracts
            .iter()
            .enumerate()
            .map(|(i, c)| (c.symbol.clone(), i))
            .collect();
        Self {
            contracts,
            by_symbol,
        }
    }

    /// Every contract, in listing order.
    pub fn contracts(&self) -> &[Contract] {
        &self.contracts
    }

    /// The contract named `symbol` (exact, upper case as Bitget requires).
    pub fn get(&self, symbol: &str) -> Option<&Contract> {
        self.by_symbol.get(symbol).map(|&i| &self.contracts[i])
    }
}

impl Contract {
    /// Price in ticks at `t` (Unix ms).
    fn ticks_at(&self, t: u64) -> i64 {
        const TAU: f64 = std::f64::consts::TAU;
        let t_f = t as f64;
        let waves = 0.06 * (TAU * t_f / 604_800_000.0 + self.phases[0]).sin()
            + 0.015 * (TAU * t_f / 32_400_000.0 + self.phases[1]).sin()
            + 0.004 * (TAU * t_f / 2_220_000.0 + self.phases[2]).sin();
        // Noise knots every 10 s, linearly interpolated so the path is continuous.
        let knot = t / 10_000;
        let frac = (t % 10_000) as f64 / 10_000.0;
        let noise = 0.0015
            * ((1.0 - frac) * signed_unit(self.salt, knot)
                + frac * signed_unit(self.salt, knot + 1));
        ((self.base_ticks * (waves + noise).exp()).round() as i64).max(1)
    }

    /// Price at `t` as an exact decimal.
    pub fn price_at(&self, t: u64) -> Decimal {
        Decimal::new(self.ticks_at(t), self.price_place)
    }

    /// The traded price at `now`. Prices move once a second (at the start of each second),
    /// so every reply made within one second, cached or fresh, agrees.
    pub fn last_price(&self, now: u64) -> Decimal {
        self.price_at(second_start(now))
    }

    /// One tick of price.
    pub fn tick(&self) -> Decimal {
        Decimal::new(1, self.price_place)
    }

    /// The candle of `granularity` that opens at `open_time`, as seen at `now`.
    ///
    /// A candle that has not closed by `now` is still forming: its close is the price at
    /// `now`, and its range and volume cover only the elapsed part.
    ///
    /// Every timeframe longer than a minute is built from the minute candles it spans (open
    /// first, high max, low min, close last, volumes summed), as an exchange builds them
    /// from the same trades: a 5m candle is exactly its five 1m candles, so a client that
    /// derives timeframes can be checked against the simulator's own answer.
    pub fn candle(&self, granularity: Granularity, open_time: u64, now: u64) -> Candle {
        let close_time = granularity.next_open(open_time);
        if close_time - open_time <= MINUTE_MS {
            return self.minute(open_time, close_time, now);
        }
        let end = close_time.min(now.max(open_time));
        let mut parts = Vec::new();
        let mut t = open_time;
        loop {
            if t.is_multiple_of(HOUR_MS) && t + HOUR_MS <= close_time && t + HOUR_MS <= end {
                parts.push(self.closed_hour(t));
                t += HOUR_MS;
            } else {
                parts.push(self.minute(t, t + MINUTE_MS, now));
                t += MINUTE_MS;
            }
            if t >= end {
                break;
            }
        }
        let mut candle = aggregate(&parts);
        candle.open_time = open_time;
        candle
    }

    /// A closed hour candle, from the cache or its 60 minutes.
    fn closed_hour(&self, open_time: u64) -> Candle {
        let mut hours = self.hours.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = hours.get(&open_time) {
            return c.clone();
        }
        let minutes: Vec<Candle> = (0..60)
            .map(|k| {
                let t = open_time + k * MINUTE_MS;
                self.minute(t, t + MINUTE_MS, u64::MAX)
            })
            .collect();
        let hour = aggregate(&minutes);
        if hours.len() >= HOUR_CACHE {
            hours.clear();
        }
        hours.insert(open_time, hour.clone());
        hour
    }

    /// The minute candle opening at `open_time` (closing at `close_time`), as seen at `now`.
    fn minute(&self, open_time: u64, close_time: u64, now: u64) -> Candle {
        let end = close_time.min(now.max(open_time));
        let open = self.ticks_at(open_time);
        let close = self.ticks_at(end);
        let mut high = open.max(close);
        let mut low = open.min(close);
        // Interior samples give the wick; only the elapsed part counts for a forming candle.
        const SAMPLES: u64 = 6;
        for k in 1..SAMPLES {
            let t = open_time + (close_time - open_time) * k / SAMPLES;
            if t >= end {
                break;
            }
            let p = self.ticks_at(t);
            high = high.max(p);
            low = low.min(p);
        }
        let wick = unit(self.salt ^ open_time, 7) * 0.0008 * high as f64;
        high += wick as i64;
        low = (low - (unit(self.salt ^ open_time, 8) * 0.0008 * low as f64) as i64).max(1);
        let elapsed_minutes = ((end - open_time) as f64 / 60_000.0).max(0.0);
        let activity = 0.5 + unit(self.salt ^ open_time, 9);
        let volume_units = (self.volume_per_minute as f64 * elapsed_minutes * activity) as i64;
        let base_volume = Decimal::new(volume_units, self.volume_place);
        let close_dec = Decimal::new(close, self.price_place);
        let quote_volume = (base_volume * close_dec).round_dp(4).normalize();
        Candle {
            open_time,
            open: Decimal::new(open, self.price_place),
            high: Decimal::new(high, self.price_place),
            low: Decimal::new(low, self.price_place),
            close: close_dec,
            base_volume,
            quote_volume,
        }
    }

    /// Base volume over the 24 hours before `now`, for tickers.
    pub fn volume_24h(&self, now: u64) -> Decimal {
        let activity = 0.8 + 0.4 * unit(self.salt ^ (now / 3_600_000), 10);
        Decimal::new(
            (self.volume_per_minute as f64 * 1_440.0 * activity) as i64,
            self.volume_place,
        )
    }

    /// Open interest in base coin at `now`.
    pub fn open_interest(&self, now: u64) -> Decimal {
        let level = 0.9 + 0.2 * unit(self.salt ^ (now / 60_000), 11);
        Decimal::new(
            (self.volume_per_minute as f64 * 600.0 * level) as i64,
            self.volume_place,
        )
    }

    /// Funding rate for the current 8-hour period, within Bitget's ±0.3 % bounds.
    pub fn funding_rate(&self, now: u64) -> Decimal {
        let period = now / 28_800_000;
        Decimal::new((signed_unit(self.salt ^ period, 12) * 300.0) as i64, 6)
    }
}

/// One candle spanning `parts` (consecutive, oldest first, at least one): open of the
/// first, the highest high, the lowest low, close of the last, volumes summed. Its open
/// time is the first part's.
fn aggregate(parts: &[Candle]) -> Candle {
    let first = &parts[0];
    let mut out = first.clone();
    for c in &parts[1..] {
        out.high = out.high.max(c.high);
        out.low = out.low.min(c.low);
        out.close = c.close;
        out.base_volume += c.base_volume;
        out.quote_volume += c.quote_volume;
    }
    // As a minute's own: base volume at the contract's size scale, quote volume normalized.
    out.quote_volume = out.quote_volume.normalize();
    out
}

/// The start of the second that contains `t` (Unix ms).
pub fn second_start(t: u64) -> u64 {
    t - t % 1_000
}

/// Names after the known list: `A0030USDT`-style, unique and stable per index.
fn generated_base(idx: usize) -> String {
    let letter = (b'A' + (idx % 26) as u8) as char;
    format!("{letter}{idx:04}")
}

/// SplitMix64: a tiny, well-mixed hash for deterministic pseudo-randomness.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A deterministic value in [0, 1) for (salt, k).
fn unit(salt: u64, k: u64) -> f64 {
    (splitmix(salt ^ splitmix(k)) >> 11) as f64 / (1u64 << 53) as f64
}

/// A deterministic value in [-1, 1) for (salt, k).
fn signed_unit(salt: u64, k: u64) -> f64 {
    unit(salt, k) * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitget_proto::timeframe::Market;

    const NOW: u64 = 1_750_000_000_000;

    #[test]
    fn universe_starts_with_btc_and_eth_then_generated_names() {
        let u = Universe::new(40, 7, &[]);
        let names: Vec<_> = u.contracts().iter().map(|c| c.symbol.as_str()).collect();
        assert_eq!(&names[..2], &["BTCUSDT", "ETHUSDT"]);
        assert_eq!(names[30], "E0030USDT");
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), 40);
    }

    #[test]
    fn same_seed_same_prices_other_seed_other_prices() {
        let a = Universe::new(3, 1, &[]);
        let b = Universe::new(3, 1, &[]);
        let c = Universe::new(3, 2, &[]);
        let btc = |u: &Universe| u.get("BTCUSDT").unwrap().price_at(NOW);
        assert_eq!(btc(&a), btc(&b));
        assert_ne!(btc(&a), btc(&c));
        // Within the wave amplitude of the reference price.
        let p = btc(&a);
        assert!(
            p > Decimal::from(50_000) && p < Decimal::from(80_000),
            "{p}"
        );
    }

    #[test]
    fn candles_chain_and_bound_their_prices() {
        let u = Universe::new(5, 3, &[]);
        let g = Granularity::parse(Market::Futures, "5m").unwrap();
        for c in u.contracts() {
            let first = g.open_of(NOW) - 10 * 300_000;
            let mut prev: Option<Candle> = None;
            let mut open = first;
            while open <= NOW {
                let candle = c.candle(g, open, NOW);
                assert!(candle.high >= candle.open.max(candle.close));
                assert!(candle.low <= candle.open.min(candle.close));
                assert!(candle.low > Decimal::ZERO);
                if let Some(p) = prev {
                    assert_eq!(p.close, candle.open, "{} at {open}", c.symbol);
                }
                prev = Some(candle);
                open = g.next_open(open);
            }
        }
    }

    #[test]
    fn forming_candle_closes_at_the_current_price() {
        let u = Universe::new(1, 3, &[]);
        let btc = u.get("BTCUSDT").unwrap();
        let g = Granularity::parse(Market::Futures, "1m").unwrap();
        let open = g.open_of(NOW + 20_000);
        let forming = btc.candle(g, open, open + 20_000);
        assert_eq!(forming.close, btc.price_at(open + 20_000));
        let closed = btc.candle(g, open, open + 120_000);
        assert_eq!(closed.close, btc.price_at(open + 60_000));
        assert!(closed.base_volume >= forming.base_volume);
    }

    /// Every longer candle is exactly the minutes it spans, closed or forming, for every
    /// spelling with a fixed, weekly or monthly period (the plain ones at UTC+8 too).
    #[test]
    fn longer_candles_agree_with_their_minutes() {
        let u = Universe::new(3, 3, &[]);
        let eth = u.get("ETHUSDT").unwrap();
        let one = Granularity::parse(Market::Futures, "1m").unwrap();
        let minutes = |from: u64, until: u64, now: u64| -> Candle {
            let mut parts = Vec::new();
            let mut t = from;
            while t < until && (parts.is_empty() || t < now) {
                parts.push(eth.candle(one, t, now));
                t = one.next_open(t);
            }
            let mut c = aggregate(&parts);
            c.open_time = from;
            c
        };
        for tf in [
            "5m", "15m", "30m", "1H", "4H", "6H", "12H", "1D", "1W", "1M", "6Hutc", "1Dutc",
            "1Wutc", "1Mutc",
        ] {
            let g = Granularity::parse(Market::Futures, tf).unwrap();
            let open = g.prev_open(g.open_of(NOW));
            let close = g.next_open(open);
            assert_eq!(
                eth.candle(g, open, NOW),
                minutes(open, close, u64::MAX),
                "{tf} closed"
            );
            // Forming: 20 s past half way.
            let now = open + (close - open) / 2 + 20_000;
            let forming = eth.candle(g, open, now);
            assert_eq!(forming, minutes(open, close, now), "{tf} forming");
            assert_eq!(forming.close, eth.price_at(now), "{tf}");
        }
        // The base volume keeps the contract's scale, as a minute's does.
        let h = Granularity::parse(Market::Futures, "1H").unwrap();
        let hour = eth.candle(h, h.open_of(NOW), NOW + 3_600_000);
        assert_eq!(hour.base_volume.scale(), eth.volume_place);
    }

    #[test]
    fn removed_symbols_are_marked_off() {
        let u = Universe::new(3, 3, &["ethusdt".to_owned()]);
        assert_eq!(u.get("ETHUSDT").unwrap().status, "off");
        assert_eq!(u.get("BTCUSDT").unwrap().status, "normal");
    }
}
