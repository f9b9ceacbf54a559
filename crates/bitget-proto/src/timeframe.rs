//! Candle timeframes: Bitget's periods with every spelling it uses for them (REST per
//! market, WebSocket channels), and where each candle opens.
//!
//! Futures and spot spell the same periods differently (`1H` vs `1h`, `1D` vs `1day`), and the
//! plain daily-and-longer periods open at 00:00 UTC+8 while the `…utc` variants open at 00:00
//! UTC. Weeks open on Monday; months are calendar months.

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// Bitget's plain 6H/12H/1D/3D/1W/1M candles follow Beijing time.
const UTC8: u64 = 8 * HOUR;
/// 1970-01-01 was a Thursday; the first Monday is four days later.
const FIRST_MONDAY: u64 = 4 * DAY;

/// Which product family a granularity string belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Market {
    /// `/api/v2/mix/...` spellings: `1m`, `1H`, `1D`, `1W`, `1M`, `6Hutc`...
    Futures,
    /// `/api/v2/spot/...` spellings: `1min`, `1h`, `1day`, `1week`, `1M`, `6Hutc`...
    Spot,
}

/// A parsed granularity: how long a candle lasts and where it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// A fixed length, opening at multiples of `ms` after shifting by `offset_ms`.
    Fixed { ms: u64, offset_ms: u64 },
    /// One week, opening on Monday 00:00 at the given offset from UTC.
    Week { offset_ms: u64 },
    /// One calendar month, opening on the 1st at 00:00 at the given offset from UTC.
    Month { offset_ms: u64 },
}

impl Granularity {
    /// Parses Bitget's REST spelling for `market`; `None` for anything Bitget would refuse.
    pub fn parse(market: Market, text: &str) -> Option<Self> {
        Timeframe::parse(market, text).map(Timeframe::granularity)
    }

    /// Open time of the candle that contains `t` (Unix ms).
    pub fn open_of(self, t: u64) -> u64 {
        match self {
            Self::Fixed { ms, offset_ms } => {
                let shifted = t.saturating_add(offset_ms);
                (shifted - shifted % ms).saturating_sub(offset_ms)
            }
            Self::Week { offset_ms } => {
                let week = 7 * DAY;
                let shifted = t.saturating_add(offset_ms).saturating_sub(FIRST_MONDAY);
                (shifted - shifted % week)
                    .saturating_add(FIRST_MONDAY)
                    .saturating_sub(offset_ms)
            }
            Self::Month { offset_ms } => {
                let (year, month, _) = civil_from_days((t.saturating_add(offset_ms) / DAY) as i64);
                month_start(year, month).saturating_sub(offset_ms)
            }
        }
    }

    /// Open time of the candle after the one that opens at `open`. Saturates at the end of
    /// time rather than overflowing: an exchange may send any number.
    pub fn next_open(self, open: u64) -> u64 {
        match self {
            Self::Fixed { ms, .. } => open.saturating_add(ms),
            Self::Week { .. } => open.saturating_add(7 * DAY),
            Self::Month { offset_ms } => {
                let (year, month, _) =
                    civil_from_days((open.saturating_add(offset_ms) / DAY) as i64);
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                month_start(year, month).saturating_sub(offset_ms)
            }
        }
    }

    /// Open time of the candle before the one that opens at `open`.
    pub fn prev_open(self, open: u64) -> u64 {
        match self {
            Self::Fixed { ms, .. } => open.saturating_sub(ms),
            Self::Week { .. } => open.saturating_sub(7 * DAY),
            Self::Month { .. } => self.open_of(open.saturating_sub(1)),
        }
    }

    /// Whether every candle of `self` is exactly a whole run of consecutive `fine` candles
    /// (each boundary of `self` is one of `fine`'s), with both alignments pinned down.
    ///
    /// Only UTC-anchored periods count. Bitget's plain 6H and longer are taken to follow
    /// UTC+8, but no recorded reply pins that, nor where a 3-day period starts in either
    /// frame: those are neither built from nor used to build others.
    pub fn derives_from(self, fine: Self) -> bool {
        let Self::Fixed {
            ms: fine_ms,
            offset_ms: 0,
        } = fine
        else {
            return false;
        };
        if self == fine || fine_ms == 0 {
            return false;
        }
        match self {
            Self::Fixed { ms, offset_ms: 0 } => ms != 3 * DAY && ms.is_multiple_of(fine_ms),
            Self::Week { offset_ms: 0 } | Self::Month { offset_ms: 0 } => {
                DAY.is_multiple_of(fine_ms)
            }
            _ => false,
        }
    }

    /// How many `fine` candles make the candle of `self` that opens at `open`, when it
    /// [derives from](Self::derives_from) them.
    pub fn parts_of(self, fine: Self, open: u64) -> Option<u64> {
        let Self::Fixed { ms: fine_ms, .. } = fine else {
            return None;
        };
        self.derives_from(fine)
            .then(|| (self.next_open(open) - open) / fine_ms)
    }

    /// Nominal length in minutes, used to scale synthetic volumes and ranges.
    pub fn nominal_minutes(self) -> u64 {
        match self {
            Self::Fixed { ms, .. } => ms / MINUTE,
            Self::Week { .. } => 7 * 24 * 60,
            Self::Month { .. } => 30 * 24 * 60,
        }
    }
}

/// One of Bitget's candle periods, with its spellings: the REST `granularity` of each
/// market (`None` where that market has none) and the WebSocket channel (one spelling for
/// both markets).
struct Period {
    futures: Option<&'static str>,
    spot: Option<&'static str>,
    channel: &'static str,
    granularity: Granularity,
}

const fn period(
    futures: Option<&'static str>,
    spot: Option<&'static str>,
    channel: &'static str,
    granularity: Granularity,
) -> Period {
    Period {
        futures,
        spot,
        channel,
        granularity,
    }
}

const fn fixed(ms: u64, offset_ms: u64) -> Granularity {
    Granularity::Fixed { ms, offset_ms }
}

/// Every period, with Bitget's spellings (`../shared/bitget-api.md`; the WebSocket's from
/// `ws-store-status-anchors.md` §1). The plain 6H and longer follow Beijing time; the `…utc`
/// variants UTC. `2H` is futures-only on REST; `8H` exists only on the WebSocket and is left
/// out, as nothing here can fetch it.
const PERIODS: [Period; 20] = [
    period(Some("1m"), Some("1min"), "candle1m", fixed(MINUTE, 0)),
    period(Some("3m"), Some("3min"), "candle3m", fixed(3 * MINUTE, 0)),
    period(Some("5m"), Some("5min"), "candle5m", fixed(5 * MINUTE, 0)),
    period(
        Some("15m"),
        Some("15min"),
        "candle15m",
        fixed(15 * MINUTE, 0),
    ),
    period(
        Some("30m"),
        Some("30min"),
        "candle30m",
        fixed(30 * MINUTE, 0),
    ),
    period(Some("1H"), Some("1h"), "candle1H", fixed(HOUR, 0)),
    period(Some("2H"), None, "candle2H", fixed(2 * HOUR, 0)),
    period(Some("4H"), Some("4h"), "candle4H", fixed(4 * HOUR, 0)),
    period(Some("6H"), Some("6h"), "candle6H", fixed(6 * HOUR, UTC8)),
    period(
        Some("12H"),
        Some("12h"),
        "candle12H",
        fixed(12 * HOUR, UTC8),
    ),
    period(Some("1D"), Some("1day"), "candle1D", fixed(DAY, UTC8)),
    period(Some("3D"), Some("3day"), "candle3D", fixed(3 * DAY, UTC8)),
    period(
        Some("1W"),
        Some("1week"),
        "candle1W",
        Granularity::Week { offset_ms: UTC8 },
    ),
    period(
        Some("1M"),
        Some("1M"),
        "candle1M",
        Granularity::Month { offset_ms: UTC8 },
    ),
    period(
        Some("6Hutc"),
        Some("6Hutc"),
        "candle6Hutc",
        fixed(6 * HOUR, 0),
    ),
    period(
        Some("12Hutc"),
        Some("12Hutc"),
        "candle12Hutc",
        fixed(12 * HOUR, 0),
    ),
    period(Some("1Dutc"), Some("1Dutc"), "candle1Dutc", fixed(DAY, 0)),
    period(
        Some("3Dutc"),
        Some("3Dutc"),
        "candle3Dutc",
        fixed(3 * DAY, 0),
    ),
    period(
        Some("1Wutc"),
        Some("1Wutc"),
        "candle1Wutc",
        Granularity::Week { offset_ms: 0 },
    ),
    period(
        Some("1Mutc"),
        Some("1Mutc"),
        "candle1Mutc",
        Granularity::Month { offset_ms: 0 },
    ),
];

fn period_at(index: u8) -> &'static Period {
    // Indices come from `period_indices` only.
    &PERIODS[usize::from(index).min(PERIODS.len() - 1)]
}

/// Indices of every period.
fn period_indices() -> impl Iterator<Item = u8> {
    0..PERIODS.len() as u8
}

/// A candle timeframe of one market: parsed once where a spelling enters the program (the
/// config, a gateway client's query, a WebSocket channel) and carried as this `Copy` value
/// everywhere else, so no part of the program re-reads a spelling. It knows its market, its
/// alignment ([`Granularity`]) and every spelling Bitget uses for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timeframe {
    market: Market,
    period: u8,
}

impl Timeframe {
    /// Parses `market`'s REST spelling (`1m`, `1H`, `1Dutc` on futures; `1min`, `1h`,
    /// `1day` on spot); `None` for anything Bitget would refuse.
    pub fn parse(market: Market, text: &str) -> Option<Self> {
        period_indices()
            .find(|&i| {
                let p = period_at(i);
                let spelling = match market {
                    Market::Futures => p.futures,
                    Market::Spot => p.spot,
                };
                spelling == Some(text)
            })
            .map(|period| Self { market, period })
    }

    /// Parses a WebSocket candle channel (`candle1m`, `candle1H`, `candle1Dutc`), one
    /// spelling for both markets; `None` for a channel Bitget refuses (`candle1h`) or one
    /// `market` cannot fetch by REST.
    pub fn from_channel(market: Market, channel: &str) -> Option<Self> {
        period_indices()
            .find(|&i| period_at(i).channel == channel)
            .map(|period| Self { market, period })
            .filter(|t| t.rest_spelling().is_some())
    }

    fn rest_spelling(self) -> Option<&'static str> {
        let p = period_at(self.period);
        match self.market {
            Market::Futures => p.futures,
            Market::Spot => p.spot,
        }
    }

    /// The `granularity` Bitget's REST endpoints of its market take.
    pub fn rest(self) -> &'static str {
        // Parsing only makes timeframes their market spells.
        self.rest_spelling().unwrap_or("?")
    }

    /// The WebSocket candle channel.
    pub fn channel(self) -> &'static str {
        period_at(self.period).channel
    }

    pub fn market(self) -> Market {
        self.market
    }

    /// Where its candles open.
    pub fn granularity(self) -> Granularity {
        period_at(self.period).granularity
    }

    /// Open time of the candle that contains `t` (Unix ms).
    pub fn open_of(self, t: u64) -> u64 {
        self.granularity().open_of(t)
    }

    /// Open time of the candle after the one that opens at `open`.
    pub fn next_open(self, open: u64) -> u64 {
        self.granularity().next_open(open)
    }

    /// Open time of the candle before the one that opens at `open`.
    pub fn prev_open(self, open: u64) -> u64 {
        self.granularity().prev_open(open)
    }

    /// Whether each candle of `self` is exactly a run of `fine` candles of the same market
    /// (see [`Granularity::derives_from`]).
    pub fn derives_from(self, fine: Self) -> bool {
        self.market() == fine.market() && self.granularity().derives_from(fine.granularity())
    }

    /// Every timeframe `market` spells, shortest first.
    pub fn all(market: Market) -> impl Iterator<Item = Self> {
        period_indices()
            .map(move |period| Self { market, period })
            .filter(|t| t.rest_spelling().is_some())
    }
}

impl std::fmt::Display for Timeframe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.rest())
    }
}

impl std::fmt::Debug for Timeframe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}:{}", self.market, self.rest())
    }
}

/// Unix ms of the first day of `month` in `year` (saturating).
fn month_start(year: i64, month: u32) -> u64 {
    u64::try_from(days_from_civil(year, month, 1))
        .unwrap_or(0)
        .saturating_mul(DAY)
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's civil calendar algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01; the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2023-12-28T11:15:00Z, the open time of the recorded 1m candle fixture.
    const T: u64 = 1_703_762_100_000;

    #[test]
    fn only_pinned_alignments_derive() {
        let f = |t: &str| Timeframe::parse(Market::Futures, t).unwrap();
        let s = |t: &str| Timeframe::parse(Market::Spot, t).unwrap();
        for coarse in [
            "3m", "5m", "15m", "30m", "1H", "2H", "4H", "6Hutc", "12Hutc", "1Dutc", "1Wutc",
            "1Mutc",
        ] {
            assert!(f(coarse).derives_from(f("1m")), "{coarse} from 1m");
        }
        assert!(f("15m").derives_from(f("5m")));
        assert!(f("1Dutc").derives_from(f("4H")));
        assert!(s("1h").derives_from(s("1min")));
        // Not a whole number of parts, not coarser, another market.
        assert!(!f("5m").derives_from(f("3m")));
        assert!(!f("1m").derives_from(f("5m")));
        assert!(!f("5m").derives_from(f("5m")));
        assert!(!f("5m").derives_from(s("1min")));
        // Unpinned alignments: the plain 6H and longer, and 3-day periods.
        for coarse in ["6H", "12H", "1D", "3D", "1W", "1M", "3Dutc"] {
            assert!(!f(coarse).derives_from(f("1m")), "{coarse}");
        }
        assert_eq!(
            f("15m").granularity().parts_of(f("1m").granularity(), T),
            Some(15)
        );
        // 2024-02 has 29 days.
        let feb = f("1Mutc").open_of(1_707_000_000_000);
        assert_eq!(
            f("1Mutc")
                .granularity()
                .parts_of(f("1H").granularity(), feb),
            Some(29 * 24)
        );
        assert_eq!(
            f("1D").granularity().parts_of(f("1m").granularity(), T),
            None
        );
    }

    #[test]
    fn futures_and_spot_spellings_differ() {
        assert!(Granularity::parse(Market::Futures, "1H").is_some());
        assert!(Granularity::parse(Market::Futures, "1h").is_none());
        assert!(Granularity::parse(Market::Spot, "1h").is_some());
        assert!(Granularity::parse(Market::Spot, "1m").is_none());
        assert!(Granularity::parse(Market::Spot, "1min").is_some());
        assert!(Granularity::parse(Market::Spot, "2H").is_none());
        assert_eq!(
            Granularity::parse(Market::Futures, "1Dutc"),
            Granularity::parse(Market::Spot, "1Dutc")
        );
    }

    #[test]
    fn minute_candles_align_to_the_minute() {
        let g = Granularity::parse(Market::Futures, "1m").unwrap();
        assert_eq!(g.open_of(T + 59_999), T);
        assert_eq!(g.next_open(T), T + 60_000);
        assert_eq!(g.prev_open(T), T - 60_000);
    }

    #[test]
    fn daily_candles_open_at_midnight_beijing_unless_utc() {
        let beijing = Granularity::parse(Market::Futures, "1D").unwrap();
        let utc = Granularity::parse(Market::Futures, "1Dutc").unwrap();
        // 2023-12-28 00:00 UTC and 2023-12-27 16:00 UTC (= 2023-12-28 00:00 UTC+8).
        assert_eq!(utc.open_of(T), 1_703_721_600_000);
        assert_eq!(beijing.open_of(T), 1_703_692_800_000);
    }

    #[test]
    fn weeks_open_on_monday() {
        let g = Granularity::parse(Market::Futures, "1Wutc").unwrap();
        // Monday 2023-12-25 00:00 UTC.
        assert_eq!(g.open_of(T), 1_703_462_400_000);
        assert_eq!(g.next_open(1_703_462_400_000), 1_703_462_400_000 + 7 * DAY);
    }

    #[test]
    fn months_are_calendar_months() {
        let g = Granularity::parse(Market::Futures, "1Mutc").unwrap();
        let dec = 1_701_388_800_000; // 2023-12-01 00:00 UTC
        let jan = 1_704_067_200_000; // 2024-01-01 00:00 UTC
        assert_eq!(g.open_of(T), dec);
        assert_eq!(g.next_open(dec), jan);
        assert_eq!(g.prev_open(jan), dec);
        assert_eq!(g.prev_open(dec), 1_698_796_800_000); // 2023-11-01
    }

    #[test]
    fn every_spelling_parses_to_its_period_and_back() {
        let cases: [(Market, &str, &str, Granularity); 8] = [
            (Market::Futures, "1m", "candle1m", fixed(MINUTE, 0)),
            (Market::Spot, "1min", "candle1m", fixed(MINUTE, 0)),
            (Market::Futures, "1H", "candle1H", fixed(HOUR, 0)),
            (Market::Spot, "1h", "candle1H", fixed(HOUR, 0)),
            (Market::Futures, "2H", "candle2H", fixed(2 * HOUR, 0)),
            (Market::Spot, "1day", "candle1D", fixed(DAY, UTC8)),
            (Market::Futures, "1Dutc", "candle1Dutc", fixed(DAY, 0)),
            (
                Market::Spot,
                "1Mutc",
                "candle1Mutc",
                Granularity::Month { offset_ms: 0 },
            ),
        ];
        for (market, rest, channel, granularity) in cases {
            let t = Timeframe::parse(market, rest).unwrap();
            assert_eq!(
                (t.rest(), t.channel(), t.granularity()),
                (rest, channel, granularity)
            );
            assert_eq!(t.market(), market);
            assert_eq!(Timeframe::from_channel(market, channel), Some(t));
            assert_eq!(t.to_string(), rest);
        }
        // The WebSocket refuses REST spellings (30016), and spot has no 2H.
        assert_eq!(Timeframe::from_channel(Market::Futures, "candle1h"), None);
        assert_eq!(Timeframe::from_channel(Market::Futures, "candle1min"), None);
        assert_eq!(Timeframe::from_channel(Market::Spot, "candle2H"), None);
        assert_eq!(Timeframe::parse(Market::Spot, "2H"), None);
        assert_eq!(Timeframe::parse(Market::Futures, "1min"), None);
        // Every spelling of each market is one of its timeframes, and they are distinct.
        assert_eq!(Timeframe::all(Market::Futures).count(), 20);
        assert_eq!(Timeframe::all(Market::Spot).count(), 19);
        for market in [Market::Futures, Market::Spot] {
            for t in Timeframe::all(market) {
                assert_eq!(Timeframe::parse(market, t.rest()), Some(t));
            }
        }
        // The same period in two markets is two timeframes with one alignment.
        let (f, s) = (
            Timeframe::parse(Market::Futures, "1W").unwrap(),
            Timeframe::parse(Market::Spot, "1week").unwrap(),
        );
        assert_ne!(f, s);
        assert_eq!(f.granularity(), s.granularity());
        assert_eq!(f.open_of(T), s.open_of(T));
    }

    #[test]
    fn civil_calendar_round_trips() {
        for days in [-1_000, 0, 59, 60, 10_956, 19_723, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
