//! Query strings of the read-only HTTP API, parsed as the handlers do with
//! every accessor: unknown, repeated or bad values are 400s, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = std::str::from_utf8(data) {
        vantage_coordinator::http::params::exercise(q);
    }
});
