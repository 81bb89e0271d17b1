//! `http::body::decode_chunked`. The first two bytes (big-endian) are
//! `max_body`, the rest is the encoded body. A decoded body never exceeds
//! `max_body`, never claims more bytes than it was given, and decodes the
//! same from exactly the bytes it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::http::body::decode_chunked;

fuzz_target!(|data: &[u8]| {
    let [hi, lo, encoded @ ..] = data else {
        return;
    };
    let max_body = usize::from(u16::from_be_bytes([*hi, *lo]));
    let Ok(Some((body, consumed))) = decode_chunked(encoded, max_body) else {
        return;
    };
    assert!(
        body.len() <= max_body,
        "body {} > max {max_body}",
        body.len()
    );
    assert!(
        consumed <= encoded.len(),
        "consumed {consumed} > {}",
        encoded.len()
    );

    let exact = encoded.get(..consumed).unwrap_or(encoded);
    assert_eq!(decode_chunked(exact, max_body), Ok(Some((body, consumed))));
});
