//! SSE ids (`room::parse_id`) and resuming from them (`Room::resume`).
//!
//! The whole input is used three ways:
//! - as text: `parse_id` and `resume` on a room of five messages (none
//!   evicted) and on one of twelve (four evicted) never panic, and resume
//!   never returns more frames than the history holds;
//! - as 12-byte (tag, seq) pairs: a clock built from them survives
//!   `id_for` then `parse_id` unchanged, with the last pair's origin first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::room::{parse_id, Clock, Room};

/// Rooms are built with small fixed timestamps: `publish` takes the wall
/// clock in microseconds, far from u64::MAX.
fn room(messages: u64) -> Room {
    let mut room = Room::new("n", 8);
    for i in 1..=messages {
        room.publish(&format!("m{i}"), i);
    }
    room
}

thread_local! {
    // A Room holds `Rc`s, so it is kept per thread rather than in a static.
    static ROOMS: [Room; 2] = [room(5), room(12)];
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_id(&text);
    ROOMS.with(|rooms| {
        for room in rooms {
            let resume = room.resume(&text);
            assert!(resume.frames.len() <= room.history().count());
        }
    });

    let mut clock = Clock::default();
    let mut last = None;
    for pair in data.chunks_exact(12) {
        let (tag, seq) = pair.split_at(4);
        let tag = u32::from_be_bytes(tag.try_into().unwrap_or_default());
        let seq = u64::from_be_bytes(seq.try_into().unwrap_or_default());
        if clock.set(tag, seq) {
            last = Some(tag);
        }
    }
    let Some(tag) = last else {
        return;
    };
    let seq = clock.get(tag);
    let id = clock.id_for(tag, seq);
    assert_eq!(parse_id(&id), Some(((tag, seq), clock)), "id {id:?}");
});
