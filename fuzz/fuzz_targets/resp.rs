//! `bus::redis::resp` on arbitrary bytes. The first byte picks the limits
//! (defaults, or small ones so every limit is reachable) and how many of
//! the next bytes are piece sizes; the rest is what the server "sent".
//! Never panics; a `Decoder` fed those pieces, a `Decoder` fed everything
//! at once, and `decode` called reply after reply give the same replies and
//! stop the same way (incomplete, or the same error); after each piece the
//! decoder holds at most one unfinished line or bulk body; every reply
//! re-encodes to bytes that decode back to it; the `stream` views never
//! panic on any reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::bus::redis::resp::{decode, Decoder, Limits, RespError, Value};
use watercooler::bus::redis::stream::{self, StreamId};

const SMALL: Limits = Limits {
    max_bulk: 64,
    max_array: 8,
    max_depth: 3,
    max_line: 32,
    max_total: 1024,
};

/// The replies, then `None` if the input ends inside a reply or the error.
type Outcome = (Vec<Value>, Option<RespError>);

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limits = if control & 1 == 0 {
        Limits::default()
    } else {
        SMALL
    };
    let cuts = usize::from(control >> 1 & 7).min(rest.len());
    let (sizes, input) = rest.split_at(cuts);

    let whole = by_decode(input, &limits);
    assert_eq!(by_decoder(&[input], &limits), whole, "one feed");
    let mut pieces = Vec::new();
    let mut at = 0;
    let sizes: &[u8] = if sizes.is_empty() { &[u8::MAX] } else { sizes };
    for size in sizes.iter().map(|&s| usize::from(s) + 1).cycle() {
        if at >= input.len() {
            break;
        }
        let end = input.len().min(at + size);
        pieces.push(&input[at..end]);
        at = end;
    }
    assert_eq!(by_decoder(&pieces, &limits), whole, "in pieces");

    // Invalid UTF-8 in a simple string or error re-encodes as U+FFFD, 3
    // bytes for 1 (already charged to max_total), so lines may triple.
    let relaxed = Limits {
        max_line: limits.max_line * 3,
        ..limits
    };
    for value in &whole.0 {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        assert_eq!(
            decode(&bytes, &relaxed),
            Ok(Some((value.clone(), bytes.len()))),
            "re-encoded"
        );
        let _ = stream::xadd(value.clone());
        let _ = stream::xrange(value.clone());
        let _ = stream::xread(value.clone());
    }
    if let Ok(id) = StreamId::parse(input) {
        assert_eq!(id.to_string().parse::<StreamId>(), Ok(id));
    }
});

fn by_decode(mut input: &[u8], limits: &Limits) -> Outcome {
    let mut values = Vec::new();
    loop {
        match decode(input, limits) {
            Ok(Some((value, used))) => {
                assert!(used > 0 && used <= input.len());
                values.push(value);
                input = &input[used..];
            }
            Ok(None) => return (values, None),
            Err(e) => return (values, Some(e)),
        }
    }
}

fn by_decoder(pieces: &[&[u8]], limits: &Limits) -> Outcome {
    let mut decoder = Decoder::new(*limits);
    let mut values = Vec::new();
    // An unfinished line (type byte, max_line bytes, CR) or bulk body (and CR).
    let most_held = (limits.max_line + 2).max(limits.max_bulk + 1);
    for piece in pieces {
        decoder.feed(piece);
        loop {
            match decoder.next() {
                Ok(Some(value)) => values.push(value),
                Ok(None) => break,
                Err(e) => return (values, Some(e)),
            }
        }
        assert!(
            decoder.buffered() <= most_held,
            "holds {}",
            decoder.buffered()
        );
    }
    (values, None)
}
