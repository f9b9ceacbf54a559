//! `usage`: the rate-usage report and chart from the rate log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use super::args::UsageArgs;
use crate::config::Config;
use crate::telemetry::usage::plot::{check_target, plot, PlotError};
use crate::telemetry::usage::{log_files, parse_time, RateLog, Report, UsageError, Window};

pub(super) fn usage(args: &UsageArgs) -> ExitCode {
    match report(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn report(args: &UsageArgs) -> Result<ExitCode, String> {
    let now = SystemTime::now();
    let since = args
        .since
        .as_deref()
        .map(|t| parse_time(t, now).map_err(|e| format!("--since {e}")))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| parse_time(t, now).map_err(|e| format!("--until {e}")))
        .transpose()?;
    let window = Window::new(since, until).map_err(|e| e.to_string())?;
    if let Some(path) = &args.plot {
        check_target(path).map_err(|e| e.to_string())?;
    }
    let default_dir = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?.logging.dir,
        None => PathBuf::from("logs"),
    };
    let files = log_files(&args.files, &default_dir).map_err(|e| e.to_string())?;
    let log = RateLog::read(&files, window).map_err(|e: UsageError| e.to_string())?;
    let report = Report::new(&log);
    if args.json {
        outln!("{:#}", report.to_json());
    } else {
        outln!("{}", report.render());
    }
    let Some(path) = &args.plot else {
        return Ok(ExitCode::SUCCESS);
    };
    match plot(&log, &report, path) {
        Ok(()) => {
            // Standard output stays pure JSON with --json.
            if args.json {
                eprintln!("chart written to {}", path.display());
            } else {
                outln!("chart written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ PlotError::Format(_)) => Err(error.to_string()),
        Err(error) => {
            // The file the target check created, left empty: not a chart.
            if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(path);
            }
            eprintln!("error: {error}");
            Ok(ExitCode::from(1))
        }
    }
}
