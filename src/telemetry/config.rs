//! `[logging]`: the telemetry's own section of the configuration (log files, usage lines,
//! the metrics endpoint), checked here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tracing_subscriber::filter::LevelFilter;

use super::LogConfig;
use crate::core::check::Checker;

/// `[logging]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    dir: PathBuf,
    level: String,
    usage_interval_secs: f64,
    ascii_status: bool,
    max_file_mb: u64,
    keep_files: usize,
    metrics_addr: String,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("logs"),
            level: "info".to_owned(),
            usage_interval_secs: 10.0,
            ascii_status: false,
            max_file_mb: 50,
            keep_files: 5,
            metrics_addr: String::new(),
        }
    }
}

/// What `[logging]` sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Logging {
    pub files: LogConfig,
    /// How often usage lines are written.
    pub usage_interval: Duration,
    /// `[ok] [warm] [hot]` instead of coloured dots.
    pub ascii_status: bool,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
}

impl LoggingSection {
    /// The logging settings; problems go to `c`.
    pub fn check(&self, c: &mut Checker) -> Logging {
        let level = match self.level.to_ascii_lowercase().as_str() {
            "off" => LevelFilter::OFF,
            "error" => LevelFilter::ERROR,
            "warn" => LevelFilter::WARN,
            "info" => LevelFilter::INFO,
            "debug" => LevelFilter::DEBUG,
            "trace" => LevelFilter::TRACE,
            other => {
                c.problem(format!(
                    "logging.level = \"{other}\" is not a level; allowed error, warn, info, debug, trace, off"
                ));
                LevelFilter::INFO
            }
        };
        let usage_interval = c.secs(
            "logging.usage_interval_secs",
            self.usage_interval_secs,
            1.0,
            3600.0,
        );
        if self.dir.as_os_str().is_empty() {
            c.problem(
                "logging.dir = \"\" names no folder; write one such as \"logs\" (relative paths are taken from the working directory)",
            );
        }
        let max_file_mb = c.range("logging.max_file_mb", self.max_file_mb, 0, 100_000);
        let keep_files = c.range("logging.keep_files", self.keep_files, 0, 100);
        let metrics_addr = match self.metrics_addr.trim() {
            "" => None,
            text => match text.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    c.problem(format!(
                        "logging.metrics_addr = \"{text}\" is not an address; write ip:port such as \"127.0.0.1:9184\", or \"\" for none"
                    ));
                    None
                }
            },
        };
        Logging {
            files: LogConfig {
                dir: self.dir.clone(),
                level,
                max_file_bytes: max_file_mb * 1024 * 1024,
                keep_files,
            },
            usage_interval,
            ascii_status: self.ascii_status,
            metrics_addr,
        }
    }
}
