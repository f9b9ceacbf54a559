//! Strategy instances from `strategies/*.toml`, checked completely before anything starts.
//!
//! One file is one instance, named after the file. As with the main config, unknown keys are
//! refused and every problem is reported at once, each line naming the file and the key:
//!
//! ```toml
//! kind = "supertrend_pullback"
//! symbols = ["BTCUSDT", "ETHUSDT"]   # or filter = "*USDT" over the polled symbols
//! timeframe = "1m"
//! position_usdt = "200"              # notional per position
//!
//! [params]
//! atr_period = 10
//! multiplier = "3"
//! pullback_pct = "0.3"
//! stop_pct = "1"
//! ```
//!
//! The symbol filter is a small hand-written glob (`*`, `?`): a glob crate matches paths,
//! with separators and escapes that a symbol never has.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use thiserror::Error;

use super::supertrend::{self, SuperTrendParams, SuperTrendPullback};
use super::Strategy;
use crate::core::market::Symbol;
use crate::core::market::SymbolSelection;
use crate::core::text::{describe_toml_error, one_line};
use crate::core::timeframe::{Market, Timeframe};

/// The strategy kinds `kind = "..."` may name.
pub const KINDS: &[&str] = &[supertrend::KIND];

/// Why the strategy files were refused.
#[derive(Debug, Error)]
pub enum StrategyError {
    #[error("cannot read strategies from {path}: {source}; create the folder or set [trading] strategies_dir")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|p| one_line(p)).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

/// Which symbols an instance trades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymbolFilter {
    List(Vec<Symbol>),
    /// A glob over the polled symbols, `*` and `?`.
    Pattern(String),
}

impl SymbolFilter {
    pub fn matches(&self, symbol: &Symbol) -> bool {
        match self {
            Self::List(list) => list.contains(symbol),
            Self::Pattern(p) => glob(p.as_bytes(), symbol.as_str().as_bytes()),
        }
    }
}

/// Kind-specific parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrategyParams {
    SuperTrendPullback(SuperTrendParams),
}

/// One checked strategy instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategySpec {
    /// The file stem, e.g. `supertrend_majors`.
    pub name: String,
    pub file: PathBuf,
    pub symbols: SymbolFilter,
    /// Parsed from the file's spelling, e.g. `1m`.
    pub timeframe: Timeframe,
    /// Notional of one position in USDT.
    pub position_usdt: Decimal,
    pub params: StrategyParams,
}

impl StrategySpec {
    /// A fresh strategy for this instance.
    pub fn build(&self) -> Box<dyn Strategy> {
        match &self.params {
            StrategyParams::SuperTrendPullback(p) => Box::new(SuperTrendPullback::new(p.clone())),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.params {
            StrategyParams::SuperTrendPullback(_) => supertrend::KIND,
        }
    }
}

/// A decimal written as a string (`"0.3"`, exact) or a TOML number.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RawDecimal(Option<Decimal>);

impl<'de> Deserialize<'de> for RawDecimal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Int(i64),
            Float(f64),
        }
        Ok(Self(match Either::deserialize(deserializer)? {
            Either::Text(t) => Decimal::from_str(t.trim()).ok(),
            Either::Int(i) => Some(Decimal::from(i)),
            Either::Float(f) => Decimal::from_str(&f.to_string()).ok(),
        }))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    kind: String,
    symbols: Option<Vec<String>>,
    filter: Option<String>,
    timeframe: String,
    position_usdt: RawDecimal,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    params: toml::Table,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuperTrend {
    atr_period: Option<i64>,
    multiplier: Option<RawDecimal>,
    pullback_pct: Option<RawDecimal>,
    stop_pct: Option<RawDecimal>,
}

/// What a strategy file must agree with: the market and what the poller polls.
#[derive(Debug, Clone, Copy)]
pub struct Polled<'a> {
    pub market: Market,
    pub timeframes: &'a [Timeframe],
    pub symbols: &'a SymbolSelection,
}

/// Reads every `*.toml` in `dir` (sorted by name); disabled instances are left out.
///
/// # Errors
/// The folder cannot be read, or any file has a problem: all problems, one per line.
pub fn load_dir(dir: &Path, polled: Polled<'_>) -> Result<Vec<StrategySpec>, StrategyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| StrategyError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{}: cannot read: {e}", file.display()));
                continue;
            }
        };
        match parse(&text, &file, polled) {
            Ok(Some(spec)) => specs.push(spec),
            Ok(None) => {}
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(StrategyError::Invalid(problems))
    }
}

/// Checks one strategy file's text; `None` when it is disabled.
///
/// # Errors
/// Every problem, each line starting with the file's path.
pub fn parse(
    text: &str,
    file: &Path,
    polled: Polled<'_>,
) -> Result<Option<StrategySpec>, Vec<String>> {
    let at = |message: String| format!("{}: {message}", file.display());
    let raw: RawSpec = toml::from_str(text).map_err(|e| vec![at(describe_toml_error(text, &e))])?;
    if !raw.enabled {
        return Ok(None);
    }
    let mut problems = Vec::new();
    let name = file.file_stem().map_or_else(
        || "strategy".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let params = if raw.kind == supertrend::KIND {
        supertrend_params(raw.params, &mut problems).map(StrategyParams::SuperTrendPullback)
    } else {
        problems.push(format!(
            "kind = \"{}\" is not a known strategy kind; known kinds: {}",
            raw.kind,
            KINDS.join(", ")
        ));
        None
    };
    let symbols = match (raw.symbols, raw.filter) {
        (Some(_), Some(_)) => {
            problems.push("symbols and filter are both set; use one of them".into());
            None
        }
        (None, None) => {
            problems.push(
                "symbols is missing; list symbols like [\"BTCUSDT\"] or set filter = \"*USDT\""
                    .into(),
            );
            None
        }
        (Some(list), None) => symbol_list(&list, polled.symbols, &mut problems),
        (None, Some(pattern)) => {
            let pattern = pattern.trim().to_ascii_uppercase();
            if pattern.is_empty()
                || !pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
            {
                problems.push(format!(
                    "filter = \"{pattern}\" is not a symbol pattern; use letters, digits, * and ?, e.g. \"*USDT\""
                ));
                None
            } else {
                Some(SymbolFilter::Pattern(pattern))
            }
        }
    };
    let spelled = raw.timeframe.trim();
    let timeframe = Timeframe::parse(polled.market, spelled);
    match timeframe {
        None => problems.push(format!(
            "timeframe = \"{spelled}\" is not a Bitget timeframe for this market; e.g. \"1m\", \"5m\", \"1H\""
        )),
        Some(t) if !polled.timeframes.contains(&t) => problems.push(format!(
            "timeframe = \"{spelled}\" is not polled; add it to [poll] timeframes (polled: {})",
            polled
                .timeframes
                .iter()
                .map(|t| t.rest())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some(_) => {}
    }
    let position_usdt = match raw.position_usdt.0 {
        Some(v) if v > Decimal::ZERO && v <= Decimal::from(10_000_000) => Some(v),
        _ => {
            problems.push("position_usdt must be a positive amount of USDT up to 10000000, written like \"200\"".into());
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems.into_iter().map(at).collect());
    }
    match (params, symbols, position_usdt, timeframe) {
        (Some(params), Some(symbols), Some(position_usdt), Some(timeframe)) => {
            Ok(Some(StrategySpec {
                name,
                file: file.to_owned(),
                symbols,
                timeframe,
                position_usdt,
                params,
            }))
        }
        _ => Err(vec![at("invalid strategy".into())]),
    }
}

fn symbol_list(
    list: &[String],
    polled: &SymbolSelection,
    problems: &mut Vec<String>,
) -> Option<SymbolFilter> {
    if list.is_empty() {
        problems.push("symbols is empty; list at least one symbol".into());
        return None;
    }
    let mut out: Vec<Symbol> = Vec::new();
    for text in list {
        match Symbol::parse(text) {
            Ok(s) if out.contains(&s) => problems.push(format!("symbols lists {s} twice")),
            Ok(s) => {
                if let SymbolSelection::List(polled) = polled {
                    if !polled.contains(&s) {
                        problems.push(format!(
                            "symbols holds {s}, which is not polled; add it to [poll] symbols"
                        ));
                    }
                }
                out.push(s);
            }
            Err(e) => problems.push(format!("symbols: {e}")),
        }
    }
    Some(SymbolFilter::List(out))
}

fn supertrend_params(table: toml::Table, problems: &mut Vec<String>) -> Option<SuperTrendParams> {
    let raw: RawSuperTrend = match toml::Value::Table(table).try_into() {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(format!(
                "params: {}; known: atr_period, multiplier, pullback_pct, stop_pct",
                e.message().trim()
            ));
            return None;
        }
    };
    let defaults = SuperTrendParams::default();
    let mut decimal = |key: &str, value: Option<RawDecimal>, default: Decimal, max: i64| match value
    {
        None => Some(default),
        Some(RawDecimal(Some(v))) if v > Decimal::ZERO && v <= Decimal::from(max) => Some(v),
        Some(_) => {
            problems.push(format!(
                    "params.{key} must be a number above 0 and at most {max}, written like \"{default}\""
                ));
            None
        }
    };
    let multiplier = decimal("multiplier", raw.multiplier, defaults.multiplier, 100);
    let pullback_pct = decimal("pullback_pct", raw.pullback_pct, defaults.pullback_pct, 50);
    let stop_pct = decimal("stop_pct", raw.stop_pct, defaults.stop_pct, 99);
    let atr_period = match raw.atr_period {
        None => Some(defaults.atr_period),
        Some(p @ 1..=1000) => Some(p as u32),
        Some(p) => {
            problems.push(format!(
                "params.atr_period = {p} is out of range; allowed 1 to 1000"
            ));
            None
        }
    };
    Some(SuperTrendParams {
        atr_period: atr_period?,
        multiplier: multiplier?,
        pullback_pct: pullback_pct?,
        stop_pct: stop_pct?,
    })
}

/// `*` matches any run of characters, `?` exactly one.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((&p, rest)) => text
            .split_first()
            .is_some_and(|(&t, tail)| (p == b'?' || p == t) && glob(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled_list(symbols: &[&str]) -> SymbolSelection {
        SymbolSelection::List(symbols.iter().map(|s| Symbol::from_exchange(s)).collect())
    }

    fn check(text: &str, symbols: &SymbolSelection) -> Result<Option<StrategySpec>, Vec<String>> {
        let timeframes = vec![Timeframe::parse(Market::Futures, "1m").unwrap()];
        parse(
            text,
            Path::new("strategies/st.toml"),
            Polled {
                market: Market::Futures,
                timeframes: &timeframes,
                symbols,
            },
        )
    }

    const GOOD: &str = "kind = \"supertrend_pullback\"\nsymbols = [\"BTCUSDT\", \"ETH/USDT:USDT\"]\ntimeframe = \"1m\"\nposition_usdt = \"200\"\n[params]\natr_period = 7\nmultiplier = 2.5\n";

    #[test]
    fn a_good_file_is_read_with_defaults_for_missing_params() {
        let spec = check(GOOD, &polled_list(&["BTCUSDT", "ETHUSDT"]))
            .unwrap()
            .unwrap();
        assert_eq!(spec.name, "st");
        assert_eq!(spec.position_usdt, Decimal::from(200));
        assert_eq!(
            spec.params,
            StrategyParams::SuperTrendPullback(SuperTrendParams {
                atr_period: 7,
                multiplier: Decimal::new(25, 1),
                ..SuperTrendParams::default()
            })
        );
        assert!(spec.symbols.matches(&Symbol::from_exchange("ETHUSDT")));
        assert!(!spec.symbols.matches(&Symbol::from_exchange("SOLUSDT")));
    }

    #[test]
    fn an_unknown_kind_lists_the_known_ones() {
        let text = GOOD.replace("supertrend_pullback", "rsi_dip");
        let problems = check(&text, &SymbolSelection::All).unwrap_err();
        assert_eq!(
            problems,
            vec!["strategies/st.toml: kind = \"rsi_dip\" is not a known strategy kind; known kinds: supertrend_pullback"]
        );
    }

    #[test]
    fn every_bad_key_is_named_with_the_file() {
        let text = "kind = \"supertrend_pullback\"\nsymbols = [\"SOLUSDT\"]\ntimeframe = \"5m\"\nposition_usdt = \"-1\"\n[params]\natr_period = 0\nstop_pct = \"x\"\n";
        let problems = check(text, &polled_list(&["BTCUSDT"])).unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        for (problem, key) in problems.iter().zip([
            "params.stop_pct",
            "params.atr_period = 0",
            "symbols holds SOLUSDT",
            "timeframe = \"5m\" is not polled",
            "position_usdt",
        ]) {
            assert!(problem.starts_with("strategies/st.toml: "), "{problem}");
            assert!(problem.contains(key), "{problem} should name {key}");
        }
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_the_line() {
        let typo = GOOD.replace("timeframe", "timefrme");
        let problems = check(&typo, &SymbolSelection::All).unwrap_err();
        assert!(
            problems[0].starts_with("strategies/st.toml: line 3: timefrme: unknown field"),
            "{problems:?}"
        );
        let param = format!("{GOOD}atr_perod = 3\n");
        let problems = check(&param, &SymbolSelection::All).unwrap_err();
        assert!(
            problems[0].contains("params: unknown field `atr_perod`"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_filter_is_a_glob_over_symbols() {
        let text = GOOD.replace(
            "symbols = [\"BTCUSDT\", \"ETH/USDT:USDT\"]",
            "filter = \"*USDT\"",
        );
        let spec = check(&text, &SymbolSelection::All).unwrap().unwrap();
        assert!(spec.symbols.matches(&Symbol::from_exchange("BTCUSDT")));
        assert!(!spec.symbols.matches(&Symbol::from_exchange("BTCUSDC")));
        assert!(glob(b"B?C*", b"BTCUSDT"));
        assert!(!glob(b"B?C", b"BTCUSDT"));
    }

    #[test]
    fn a_disabled_instance_is_left_out() {
        let text = format!("enabled = false\n{GOOD}");
        assert_eq!(check(&text, &SymbolSelection::All), Ok(None));
    }
}
