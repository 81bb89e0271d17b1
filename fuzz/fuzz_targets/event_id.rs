//! SSE ids (`room::parse_id`, `name::split_id`) and resuming from them
//! (`Rooms::resume`).
//!
//! The whole input is used three ways:
//! - as text: `parse_id` and `resume` on the lobby, on `general` and on
//!   both, for a node of five messages (none evicted) and one of twelve
//!   (some evicted), never panic, and resume never returns more frames than
//!   the rooms hold;
//! - as 12-byte (tag, seq) pairs: a clock built from them survives
//!   `id_for` then `parse_id` unchanged, with the last pair's origin first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::room::{name, parse_id, Clock, Limits, Rooms, LOBBY};

/// Rooms are built with small fixed timestamps: `publish` takes the wall
/// clock in microseconds, far from u64::MAX.
fn rooms(messages: u64) -> Rooms {
    let limits = Limits {
        history: 4,
        max_rooms: 4,
        max_bytes: 1 << 20,
        idle_micros: 1,
    };
    let mut rooms = Rooms::new("n", limits);
    let lobby = rooms.find(LOBBY).unwrap_or_default();
    let general = rooms.open("general", 0).unwrap_or_default();
    for i in 1..=messages {
        let room = if i % 3 == 0 { general } else { lobby };
        rooms.publish(room, &format!("m{i}"), i);
    }
    rooms
}

thread_local! {
    // Rooms hold `Rc`s, so they are kept per thread rather than in a static.
    static NODES: [Rooms; 2] = [rooms(5), rooms(12)];
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_id(&text);
    let (room, _) = name::split_id(&text);
    let _ = name::valid(room);
    NODES.with(|nodes| {
        for rooms in nodes {
            let lobby = rooms.find(LOBBY).unwrap_or_default();
            let general = rooms.find("general").unwrap_or_default();
            for set in [&[lobby][..], &[general], &[lobby, general]] {
                let resume = rooms.resume(set, &text);
                assert!(resume.frames.len() <= rooms.history().count());
            }
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
