//! Every parser the client runs on a reply body, and the classifier, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    bitget_poller::bitget::parse::run_every_parser(body);
});
