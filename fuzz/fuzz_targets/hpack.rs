//! Feeds arbitrary header blocks to one HPACK decoder, then checks that
//! whatever it collected survives an encode/decode round trip.
//!
//! Input: byte 0 picks max_table_size, byte 1 max_list_size; the rest is a
//! series of blocks, each a 2-byte big-endian length and that many bytes
//! (the last one takes whatever remains), decoded in order by one decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::h2::hpack::{encode, Decoder, HpackError, ENTRY_OVERHEAD};

const TABLE_SIZES: [usize; 4] = [0, 256, 4096, 65536];
const LIST_SIZES: [usize; 4] = [0, 100, 16384, usize::MAX];

fuzz_target!(|data: &[u8]| {
    let (table, list, mut rest) = match data {
        [table, list, rest @ ..] => (*table, *list, rest),
        _ => return,
    };
    let mut decoder = Decoder::new(TABLE_SIZES[usize::from(table % 4)]);
    let max_list_size = LIST_SIZES[usize::from(list % 4)];
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (block, next) = tail.split_at(len);
        rest = next;
        let mut fields = Vec::new();
        match decoder.decode(block, max_list_size, &mut fields) {
            Ok(()) | Err(HpackError::ListTooLarge) => {}
            // A connection error: this decoder is finished.
            Err(_) => return,
        }
        let size: usize = fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + ENTRY_OVERHEAD)
            .sum();
        assert!(size <= max_list_size);
        let headers: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        let mut encoded = Vec::new();
        encode(&headers, &mut encoded);
        let mut again = Vec::new();
        assert_eq!(
            Decoder::new(0).decode(&encoded, usize::MAX, &mut again),
            Ok(())
        );
        assert_eq!(again, fields);
    }
});
