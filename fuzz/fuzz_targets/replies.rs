//! Every parser the client runs on a reply body, and the classifier, on arbitrary bytes.
#![no_main]

use bitget_poller::error::Classifier;
use bitget_poller::granularity::{Granularity, Market};
use bitget_poller::models::Symbol;
use bitget_poller::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let symbol = Symbol::from_exchange("BTCUSDT");
    for tf in ["1m", "1M", "1Wutc", "3D"] {
        if let Some(g) = Granularity::parse(Market::Futures, tf) {
            let _ = parse::candles(body, &symbol, tf, g);
        }
    }
    let _ = parse::tickers(body);
    let _ = parse::instruments(body);
    let _ = parse::server_time(body);
    let _ = parse::balances(body);
    let _ = parse::positions(body);
    let _ = parse::order_ack(body);
    let _ = parse::order_detail(body);
    for status in [200, 429, 503] {
        let _ = Classifier::default().check("/e", Some("BTCUSDT"), status, Some("1"), body);
    }
});
