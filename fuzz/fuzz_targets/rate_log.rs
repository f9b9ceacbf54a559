//! The `usage` reader and report on arbitrary rate-log text.
#![no_main]

use bitget_poller::telemetry::usage::{RateLog, Report, Window};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let log = RateLog::from_text("fuzz.log", text, Window::default());
        let _ = Report::new(&log).render();
    }
});
