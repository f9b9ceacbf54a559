//! `export`: one stored series as CSV, or as freqtrade's `json` data format, so a backtest
//! can use what the poller kept.
//!
//! Reads the candle file without writing to it (a running poller or gateway may hold it);
//! an output file is written to a temporary name beside it and renamed when complete, so a
//! failure leaves nothing half-written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use super::args::{ExportArgs, ExportFormat};
use crate::config::Config;
use crate::core::market::{Candle, Symbol};
use crate::core::timeframe::{Market, Timeframe};
use crate::store::config::DEFAULT_PATH;
use crate::store::disk::DiskStore;
use crate::store::SeriesKey;
use crate::telemetry::usage::parse_time;

pub(super) fn export(args: &ExportArgs) -> ExitCode {
    match run(args) {
        Ok(rows) => {
            if let Some(path) = &args.output {
                eprintln!("exported {rows} candles to {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run(args: &ExportArgs) -> Result<usize, String> {
    let market = match args.market.to_ascii_lowercase().as_str() {
        "futures" | "usdt-futures" | "swap" => Market::Futures,
        "spot" => Market::Spot,
        other => {
            return Err(format!(
                "--market {other} is not known; use futures or spot"
            ))
        }
    };
    let symbol = Symbol::parse(&args.symbol).map_err(|e| format!("--symbol: {e}"))?;
    let timeframe = Timeframe::parse(market, &args.timeframe).ok_or_else(|| {
        let spelled: Vec<&str> = Timeframe::all(market).map(Timeframe::rest).collect();
        format!(
            "--timeframe {} is not one of {market:?}'s: {}",
            args.timeframe,
            spelled.join(", ")
        )
    })?;
    let now = SystemTime::now();
    let since = args
        .since
        .as_deref()
        .map(|t| parse_time(t, now).map_err(|e| format!("--since {e}")))
        .transpose()?
        .map_or(0, ms);
    let until = args
        .until
        .as_deref()
        .map(|t| parse_time(t, now).map_err(|e| format!("--until {e}")))
        .transpose()?
        .map_or(u64::MAX >> 1, ms);
    if since >= until {
        return Err("--since is not before --until; nothing to export".to_owned());
    }
    let path = match (&args.store, &args.config) {
        (Some(path), _) => path.clone(),
        (None, Some(config)) => Config::load(config)
            .map_err(|e| e.to_string())?
            .disk
            .map(|d| d.path)
            .ok_or_else(|| {
                format!(
                    "{} keeps candles in memory only ([store] path = \"\"); name a file with --store",
                    config.display()
                )
            })?,
        (None, None) => PathBuf::from(DEFAULT_PATH),
    };
    let disk = DiskStore::open_read_only(&path).map_err(|e| e.to_string())?;
    let key = SeriesKey::new(symbol, timeframe);
    let candles = disk
        .range(&key, since, until, usize::MAX >> 1)
        .map_err(|e| e.to_string())?;
    let text = render(&candles, args.format);
    match &args.output {
        Some(path) => write_whole(path, text.as_bytes())?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("standard output: {e}"))?;
        }
    }
    Ok(candles.len())
}

/// The candles in `format`, each number exactly as stored.
fn render(candles: &[Candle], format: ExportFormat) -> String {
    let mut out = String::new();
    match format {
        ExportFormat::Csv => {
            out.push_str("open_time,open,high,low,close,base_volume,quote_volume\n");
            for c in candles {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{}\n",
                    c.open_time, c.open, c.high, c.low, c.close, c.base_volume, c.quote_volume
                ));
            }
        }
        ExportFormat::Json => {
            // freqtrade's JsonDataHandler reads a list of [date ms, open, high, low, close,
            // volume] (pandas' orient="values"); the volume is in the base coin. A decimal's
            // text is a JSON number, so nothing is rounded on the way.
            out.push('[');
            for (i, c) in candles.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!(
                    "[{},{},{},{},{},{}]",
                    c.open_time, c.open, c.high, c.low, c.close, c.base_volume
                ));
            }
            out.push_str("]\n");
        }
    }
    out
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed when complete.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".part");
    let temp = PathBuf::from(temp);
    let written = std::fs::File::create(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&temp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("{}: {e}; nothing was written", path.display())
    })
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn candle(open: u64) -> Candle {
        Candle {
            symbol: Symbol::from_exchange("BTCUSDT"),
            timeframe: Timeframe::parse(Market::Futures, "1m").unwrap(),
            open_time: open,
            open: Decimal::new(6_400_010, 2),
            high: Decimal::new(6_400_500, 2),
            low: Decimal::new(6_399_000, 2),
            close: Decimal::new(6_400_200, 2),
            base_volume: Decimal::new(12_340, 3),
            quote_volume: Decimal::new(789_761_234, 3),
            closed: true,
        }
    }

    #[test]
    fn csv_and_freqtrade_json_keep_every_digit() {
        let candles = [candle(1_700_000_000_000), candle(1_700_000_060_000)];
        assert_eq!(
            render(&candles, ExportFormat::Csv),
            "open_time,open,high,low,close,base_volume,quote_volume\n\
             1700000000000,64000.10,64005.00,63990.00,64002.00,12.340,789761.234\n\
             1700000060000,64000.10,64005.00,63990.00,64002.00,12.340,789761.234\n"
        );
        let json = render(&candles, ExportFormat::Json);
        assert_eq!(
            json,
            "[[1700000000000,64000.10,64005.00,63990.00,64002.00,12.340],[1700000060000,64000.10,64005.00,63990.00,64002.00,12.340]]\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[1][0], 1_700_000_060_000_u64);
        assert_eq!(render(&[], ExportFormat::Json), "[]\n");
    }
}
