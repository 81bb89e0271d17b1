//! `http::form::field` on arbitrary bytes, as a publish body (`message`)
//! and as a `/listen` query string (`lastEventId`). Decoding never makes a
//! value longer than its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::http::form::field;

fuzz_target!(|data: &[u8]| {
    for name in ["message", "lastEventId"] {
        if let Ok(Some(value)) = field(data, name) {
            assert!(value.len() <= data.len());
        }
    }
});
