//! Candle granularities, spelled as Bitget spells them, and where each candle opens.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Parses Bitget's spelling for `market`; `None` for anything Bitget would refuse.
    pub fn parse(market: Market, text: &str) -> Option<Self> {
        let fixed = |ms, offset_ms| Some(Self::Fixed { ms, offset_ms });
        // The UTC-aligned variants are spelled the same on both markets.
        match text {
            "6Hutc" => return fixed(6 * HOUR, 0),
            "12Hutc" => return fixed(12 * HOUR, 0),
            "1Dutc" => return fixed(DAY, 0),
            "3Dutc" => return fixed(3 * DAY, 0),
            "1Wutc" => return Some(Self::Week { offset_ms: 0 }),
            "1Mutc" => return Some(Self::Month { offset_ms: 0 }),
            "1M" => return Some(Self::Month { offset_ms: UTC8 }),
            _ => {}
        }
        match (market, text) {
            (Market::Futures, "1m") | (Market::Spot, "1min") => fixed(MINUTE, 0),
            (Market::Futures, "3m") | (Market::Spot, "3min") => fixed(3 * MINUTE, 0),
            (Market::Futures, "5m") | (Market::Spot, "5min") => fixed(5 * MINUTE, 0),
            (Market::Futures, "15m") | (Market::Spot, "15min") => fixed(15 * MINUTE, 0),
            (Market::Futures, "30m") | (Market::Spot, "30min") => fixed(30 * MINUTE, 0),
            (Market::Futures, "1H") | (Market::Spot, "1h") => fixed(HOUR, 0),
            (Market::Futures, "2H") => fixed(2 * HOUR, 0),
            (Market::Futures, "4H") | (Market::Spot, "4h") => fixed(4 * HOUR, 0),
            (Market::Futures, "6H") | (Market::Spot, "6h") => fixed(6 * HOUR, UTC8),
            (Market::Futures, "12H") | (Market::Spot, "12h") => fixed(12 * HOUR, UTC8),
            (Market::Futures, "1D") | (Market::Spot, "1day") => fixed(DAY, UTC8),
            (Market::Futures, "3D") | (Market::Spot, "3day") => fixed(3 * DAY, UTC8),
            (Market::Futures, "1W") | (Market::Spot, "1week") => {
                Some(Self::Week { offset_ms: UTC8 })
            }
            _ => None,
        }
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

    /// Nominal length in minutes, used to scale synthetic volumes and ranges.
    pub fn nominal_minutes(self) -> u64 {
        match self {
            Self::Fixed { ms, .. } => ms / MINUTE,
            Self::Week { .. } => 7 * 24 * 60,
            Self::Month { .. } => 30 * 24 * 60,
        }
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
    fn civil_calendar_round_trips() {
        for days in [-1_000, 0, 59, 60, 10_956, 19_723, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
