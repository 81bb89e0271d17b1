//! Room names, room paths, and a node's rooms driven by arbitrary
//! operations: never a panic, and every bound holds after each step
//! (rooms, messages per room, bytes across rooms), whatever a client
//! (names, paths) or a peer (remote messages in any room) sends.
//!
//! Input: the first bytes as a path for `name::parse_path`; then 4-byte
//! operations: [kind, room byte, origin byte, text length].
#![no_main]

use libfuzzer_sys::fuzz_target;
use watercooler::room::{name, tag_of, Limits, Rooms, LOBBY};

const LIMITS: Limits = Limits {
    history: 3,
    max_rooms: 4,
    max_bytes: 4096,
    idle_micros: 50,
};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let path = String::from_utf8_lossy(&data[..split]);
    if let Some(Ok((room, _))) = name::parse_path(&path) {
        assert!(name::valid(room), "{room:?} from {path:?}");
    }
    let mut rooms = Rooms::new("n", LIMITS);
    let names = [LOBBY, "a", "b", "c", "d", "e", "Bad", ""];
    let mut now = 1u64;
    let mut seqs = [0u64; 4];
    for op in data.get(split..).unwrap_or(&[]).chunks_exact(4) {
        now += 7;
        let room = names[usize::from(op[1]) % names.len()];
        let text = "x".repeat(usize::from(op[3]) * 8);
        match op[0] % 4 {
            0 => {
                if name::valid(room) {
                    if let Ok(id) = rooms.open(room, now) {
                        rooms.publish(id, &text, now);
                    }
                }
            }
            1 => {
                let origin = usize::from(op[2]) % seqs.len();
                seqs[origin] += u64::from(op[2] >> 2) + 1;
                let tag = tag_of(&format!("peer{origin}"));
                rooms.accept(tag, seqs[origin], room, text.into(), now);
            }
            2 => {
                if let Some(id) = rooms.find(room) {
                    if op[2] % 2 == 0 {
                        rooms.join(id);
                    } else {
                        rooms.leave(id, now);
                    }
                }
            }
            _ => rooms.forget_idle(now),
        }
        assert!(rooms.count() <= LIMITS.max_rooms);
        for (_, r) in rooms.iter() {
            assert!(r.len() <= LIMITS.history);
        }
        let held: usize = rooms.history().map(|e| e.text.len()).sum();
        assert!(held <= LIMITS.max_bytes, "{held} bytes held");
        let _ = rooms.take_outbox();
        let _ = rooms.take_peer_outbox();
    }
});
