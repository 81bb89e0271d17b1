//! `sse::encode` then `sse::Parser`, the way a browser reads the stream:
//! any UTF-8 text comes back as exactly one event whose data is
//! `sse::normalize(text)`, however the bytes are cut on the way.
//!
//! Input: byte 0 = how many cut lengths follow (mod 8), then the cut lengths
//! (each one byte, piece length = byte + 1, used in turn), then the text
//! (invalid UTF-8 becomes U+FFFD, so every UTF-8 text is reachable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::sse::{encode, normalize, Parser};

const ID: &str = "1b16b1df.3w5e11264sgsf-deadbeef.0";

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (cuts, text) = rest.split_at(usize::from(n % 8).min(rest.len()));
    let text = String::from_utf8_lossy(text);

    let mut out = Vec::new();
    encode(&mut out, Some(ID), None, &text);

    let mut parser = Parser::default();
    let mut events = Vec::new();
    let mut stream = out.as_slice();
    let mut lengths = cuts.iter().map(|&c| usize::from(c) + 1).cycle();
    while !stream.is_empty() {
        let len = lengths.next().unwrap_or(stream.len()).min(stream.len());
        let (piece, after) = stream.split_at(len);
        events.extend(parser.feed(piece));
        stream = after;
    }

    assert_eq!(
        events.len(),
        1,
        "stream {:?}",
        String::from_utf8_lossy(&out)
    );
    let event = &events[0];
    assert_eq!(event.data, normalize(&text));
    assert_eq!(event.id, ID);
    assert_eq!(event.event, "message");
});
