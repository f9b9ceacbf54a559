//! The strategy-file loader on arbitrary text.
#![no_main]

use std::path::Path;

use bitget_poller::config::SymbolSelection;
use bitget_poller::core::timeframe::{Granularity, Market};
use bitget_poller::strategy::spec::{parse, Polled};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(g) = Granularity::parse(Market::Futures, "1m") else {
        return;
    };
    let timeframes = vec![("1m".to_owned(), g)];
    let _ = parse(
        text,
        Path::new("s.toml"),
        Polled {
            market: Market::Futures,
            timeframes: &timeframes,
            symbols: &SymbolSelection::All,
        },
    );
});
