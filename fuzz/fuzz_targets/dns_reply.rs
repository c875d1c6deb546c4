//! DNS replies as the agent's dns probe reads them off its UDP socket (the
//! first three bytes choose the expected id and query type): a forged or
//! garbage reply is data (`malformed = true`), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let id = u16::from_be_bytes([data[0], data[1]]);
    let aaaa = data[2] & 1 == 1;
    let (reply, failure) = vantage_agent::probes::dns::parse_reply(&data[3..], id, aaaa);
    if reply.malformed {
        assert!(
            failure.is_none(),
            "a malformed reply yields no rcode failure"
        );
    }
});
