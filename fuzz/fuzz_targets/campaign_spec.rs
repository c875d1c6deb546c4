//! Campaign specs (TOML or JSON, the first byte picks): `parse_spec` must
//! refuse with a line and field, never panic; an accepted spec must expand.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_coordinator::scheduler::{parse_spec, SpecFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = if first & 1 == 0 {
        SpecFormat::Toml
    } else {
        SpecFormat::Json
    };
    match parse_spec(text, format) {
        Ok(spec) => {
            let _ = spec.validate();
            let _ = spec.kinds();
            let _ = spec.deadline_us();
        }
        Err(e) => {
            let _ = (e.to_string(), e.line(), e.field());
        }
    }
});
