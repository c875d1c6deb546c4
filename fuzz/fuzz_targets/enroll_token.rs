//! Enrollment tokens (untrusted: pasted by volunteers, sent by anyone to
//! Enroll): decode must refuse or round-trip, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_proto::token::EnrollToken;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for candidate in [s.to_string(), format!("vantage1.{s}")] {
        if let Ok(t) = EnrollToken::decode(&candidate) {
            assert_eq!(EnrollToken::decode(&t.encode()), Ok(t.clone()));
            let _ = EnrollToken::secret_hash(&t.secret);
        }
    }
});
