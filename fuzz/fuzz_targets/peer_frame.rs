//! `cluster::wire::decode` on arbitrary bytes, under both caps: never
//! panics; a decoded frame used no more bytes than it was given, encodes
//! back to exactly those bytes, and decodes from them to itself. A frame
//! accepted under the handshake cap decodes the same under the link cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::bus::mesh::wire::{decode, encode, MAX_FRAME, MAX_HANDSHAKE_FRAME};

fuzz_target!(|data: &[u8]| {
    let small = decode(data, MAX_HANDSHAKE_FRAME);
    let Ok(Some((frame, used))) = decode(data, MAX_FRAME) else {
        assert!(
            !matches!(small, Ok(Some(_))),
            "accepted under the small cap only"
        );
        return;
    };
    if let Ok(Some(small)) = small {
        assert_eq!(small, (frame.clone(), used));
    }
    assert!(used <= data.len(), "used {used} of {}", data.len());

    let mut again = Vec::new();
    encode(&frame, &mut again);
    assert_eq!(
        Some(again.as_slice()),
        data.get(..used),
        "{frame:?} encodes differently"
    );
    assert_eq!(decode(&again, MAX_FRAME), Ok(Some((frame, again.len()))));
});
