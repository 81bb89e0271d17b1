//! The rooms with bytes in memory: ids and sequences, exactly-once accept,
//! resume within a room, across rooms and on another node, and every bound
//! (rooms, history per room, bytes across rooms, idle rooms).

use super::*;

const SEC: u64 = 1_000_000;

fn limits() -> Limits {
    Limits {
        history: 10,
        max_rooms: 4,
        max_bytes: 1 << 20,
        idle_micros: 60 * SEC,
    }
}

fn texts(frames: &[Rc<[u8]>]) -> Vec<String> {
    let mut p = sse::Parser::default();
    frames
        .iter()
        .flat_map(|f| p.feed(f))
        .map(|e| e.data)
        .collect()
}

fn id_of(e: &Entry) -> String {
    let mut p = sse::Parser::default();
    p.feed(&e.frame);
    p.last_id
}

fn lobby(r: &Rooms) -> RoomId {
    r.find(LOBBY).unwrap()
}

/// Regression: a peer could send our own tag with u64::MAX and make the
/// next local publish overflow (found by reading, confirmed by a fuzz helper).
#[test]
fn sequence_at_u64_max_does_not_overflow() {
    let mut r = Rooms::new("n", limits());
    r.accept(r.tag, u64::MAX, LOBBY, "x".into(), 1);
    let l = lobby(&r);
    r.publish(l, "y", 1);
    assert!(parse_id("1b16b1df.0-1b16b1df.5").is_none());
}

#[test]
fn sequences_grow_across_rooms_even_if_the_clock_does_not() {
    let mut r = Rooms::new("a", limits());
    let l = lobby(&r);
    let g = r.open("general", 0).unwrap();
    let a = r.publish(l, "1", 500).unwrap();
    let b = r.publish(g, "2", 400).unwrap();
    assert!(b.seq > a.seq);
    assert_eq!(a.seq, 500);
    assert!(id_of(&b).starts_with("general/"), "{}", id_of(&b));
}

#[test]
fn resume_sends_what_follows_in_that_room_only() {
    let mut r = Rooms::new("a", limits());
    let l = lobby(&r);
    let g = r.open("general", 0).unwrap();
    let first = r.publish(l, "one", 1).unwrap();
    r.publish(g, "elsewhere", 2);
    r.publish(l, "two", 3);
    r.take_outbox();
    let res = r.resume(&[l], &id_of(&first));
    assert!(!res.missed);
    assert_eq!(texts(&res.frames), ["two"]);
    // The same id resumes a stream that follows both rooms.
    let res = r.resume(&[l, g], &id_of(&first));
    assert!(!res.missed);
    assert_eq!(texts(&res.frames), ["elsewhere", "two"]);
    // An id from one room is not valid in another.
    let res = r.resume(&[g], &id_of(&first));
    assert!(res.missed);
    assert_eq!(texts(&res.frames), ["elsewhere"]);
}

#[test]
fn outbox_is_by_room() {
    let mut r = Rooms::new("a", limits());
    let l = lobby(&r);
    let g = r.open("general", 0).unwrap();
    r.publish(g, "g1", 1);
    r.publish(l, "l1", 2);
    r.publish(g, "g2", 3);
    let out = r.take_outbox();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].0, g);
    assert_eq!(texts(&out[0].1), ["g1", "g2"]);
    assert_eq!(texts(&out[1].1), ["l1"]);
    assert!(r.take_outbox().is_empty());
}

#[test]
fn resume_after_eviction_or_garbage_says_missed() {
    let mut r = Rooms::new(
        "a",
        Limits {
            history: 3,
            ..limits()
        },
    );
    let l = lobby(&r);
    let first = r.publish(l, "m1", 1).unwrap();
    for i in 2..=10 {
        r.publish(l, &format!("m{i}"), i);
    }
    r.take_outbox();
    let res = r.resume(&[l], &id_of(&first));
    assert!(res.missed);
    assert_eq!(texts(&res.frames), ["m8", "m9", "m10"]);
    assert!(r.resume(&[l], "nonsense").missed);
    assert!(r.resume(&[l], "nosuchroom/1b16b1df.1").missed);
}

#[test]
fn accept_is_exactly_once_in_order() {
    let mut r = Rooms::new("a", limits());
    let other = tag_of("b");
    assert!(r.accept(other, 5, "general", "x".into(), 1).is_some());
    assert!(r.accept(other, 5, "general", "x".into(), 1).is_none());
    assert!(r.accept(other, 4, LOBBY, "old".into(), 1).is_none());
    assert!(r.accept(other, 6, LOBBY, "y".into(), 1).is_some());
    assert!(r.accept(other, 7, "Bad Name", "z".into(), 1).is_none());
    assert_eq!(r.take_outbox().len(), 2);
    assert_eq!(r.history().count(), 2);
}

#[test]
fn resume_on_another_node_continues() {
    // Two nodes that saw the same messages in different orders.
    let (mut a, mut b) = (Rooms::new("a", limits()), Rooms::new("b", limits()));
    let (la, lb) = (lobby(&a), lobby(&b));
    let ea = a.publish(la, "from a", 10).unwrap();
    b.publish(lb, "from b", 11);
    b.accept(ea.origin, ea.seq, LOBBY, ea.text.clone(), 12);
    b.take_outbox();
    // a's browser saw only "from a"; it resumes on b, which has both.
    let res = b.resume(&[lb], &id_of(&ea));
    assert!(!res.missed);
    assert_eq!(texts(&res.frames), ["from b"]);
}

#[test]
fn rooms_are_bounded_and_idle_ones_make_space() {
    let mut r = Rooms::new("a", limits());
    for n in ["r1", "r2", "r3"] {
        r.open(n, 0).unwrap();
    }
    assert_eq!(r.count(), 4);
    let r1 = r.find("r1").unwrap();
    r.join(r1);
    assert_eq!(r.open("r4", SEC), Err(Full), "none idle yet");
    assert_eq!(
        r.open("r4", 61 * SEC),
        Ok(r.find("r4").unwrap_or(usize::MAX))
    );
    assert!(r.find("r1").is_some(), "a room with a listener stays");
    assert!(r.find(LOBBY).is_some(), "the lobby stays");
    assert_eq!(r.count(), 3, "r2 and r3 were idle");
}

#[test]
fn a_forgotten_room_leaves_no_silent_gap() {
    let mut r = Rooms::new("a", limits());
    let g = r.open("general", 0).unwrap();
    let first = r.publish(g, "one", 1).unwrap();
    r.publish(g, "two", 2);
    r.forget_idle(100 * SEC);
    assert!(r.find("general").is_none());
    let g = r.open("general", 101 * SEC).unwrap();
    let res = r.resume(&[g], &id_of(&first));
    assert!(res.missed);
    assert!(res.frames.is_empty());
}

#[test]
fn bytes_across_rooms_are_capped_oldest_first() {
    let mut r = Rooms::new(
        "a",
        Limits {
            max_bytes: 3000,
            ..limits()
        },
    );
    let l = lobby(&r);
    let g = r.open("general", 0).unwrap();
    let text = "x".repeat(200);
    let first = r.publish(l, &text, 1).unwrap();
    for i in 0..20 {
        r.publish(if i % 2 == 0 { g } else { l }, &text, 2 + i);
    }
    assert!(r.log_bytes <= 3000, "{}", r.log_bytes);
    assert!(r.len() < 21 && !r.is_empty());
    assert!(r.resume(&[l], &id_of(&first)).missed);
}

#[test]
fn a_remote_message_without_a_room_still_counts_as_seen() {
    let mut r = Rooms::new("a", limits());
    for n in ["r1", "r2", "r3"] {
        let id = r.open(n, 0).unwrap();
        r.join(id);
    }
    let l = lobby(&r);
    let before = r.publish(l, "mine", 1).unwrap();
    let other = tag_of("b");
    assert!(r.accept(other, 5, "r9", "x".into(), 2).is_none());
    assert_eq!(r.dropped, 1);
    assert!(r.accept(other, 5, "r9", "x".into(), 2).is_none());
    assert_eq!(r.dropped, 1, "a duplicate is not dropped twice");
    assert!(r.resume(&[l], &id_of(&before)).missed);
}

#[test]
fn recent_is_the_last_few_of_each_room_in_order() {
    let mut r = Rooms::new("a", limits());
    let l = lobby(&r);
    let g = r.open("general", 0).unwrap();
    for i in 0..6 {
        let room = if i % 2 == 0 { l } else { g };
        r.publish(room, &format!("m{i}"), i + 1);
    }
    r.take_outbox();
    let texts = |v: Vec<Rc<Entry>>| v.iter().map(|e| e.text.to_string()).collect::<Vec<_>>();
    assert_eq!(texts(r.recent(&[l], 2)), ["m2", "m4"]);
    assert_eq!(texts(r.recent(&[l, g], 2)), ["m2", "m3", "m4", "m5"]);
    assert_eq!(texts(r.recent(&[g], 0)), Vec::<String>::new());
    assert_eq!(r.recent(&[l], 100).len(), 3);
}

/// Regression: a stream opened in the same loop turn as a publish got the
/// message twice, in its resume (or backlog) and live from the outbox.
#[test]
fn what_waits_in_an_outbox_is_not_replayed_too() {
    let mut r = Rooms::new("a", limits());
    let l = lobby(&r);
    let first = r.publish(l, "one", 1).unwrap();
    r.take_outbox();
    r.publish(l, "two", 2);
    // "two" is still in the outbox: it goes out live, not in the replay.
    assert!(r.resume(&[l], &id_of(&first)).frames.is_empty());
    assert_eq!(r.recent(&[l], 5).len(), 1);
    // A page or `…/messages` (no stream) shows it already: read your write.
    let latest: Vec<String> = r.latest(l, 5).iter().map(|e| e.text.to_string()).collect();
    assert_eq!(latest, ["one", "two"]);
    assert_eq!(r.latest(l, 1).len(), 1);
    assert_eq!(texts(&r.take_outbox()[0].1), ["two"]);
    assert_eq!(texts(&r.resume(&[l], &id_of(&first)).frames), ["two"]);
}

/// Regression (review): opening room b could forget room a, opened a moment
/// before by the same request, and give b a's slot: the stream then followed
/// one room twice and heard every message twice.
#[test]
fn a_room_just_opened_is_not_forgotten_for_the_next() {
    let mut r = Rooms::new(
        "a",
        Limits {
            max_rooms: 2,
            idle_micros: 10,
            ..limits()
        },
    );
    let a = r.open("a", 0).unwrap();
    let later = 100;
    assert_eq!(r.open("a", later), Ok(a));
    assert_eq!(r.open("b", later), Err(Full), "a is in use, not idle");
    assert_eq!(r.find("a"), Some(a));
}

/// A restart: what one node accepted (its own and a peer's, in two rooms)
/// loaded into a fresh one gives the same ids, resumes and next sequence,
/// delivers nothing, re-sends nothing; a duplicate in the log is dropped;
/// an origin known only from the log's high-water mark counts as seen.
#[test]
fn restored_rooms_resume_and_continue_where_they_were() {
    let mut a = Rooms::new("a", limits());
    a.start_storing();
    let general = a.open("general", SEC).unwrap();
    let first = a.publish(lobby(&a), "one", SEC).unwrap();
    a.accept(tag_of("b"), 2 * SEC, "general", "from b".into(), SEC);
    a.publish(general, "two", 3 * SEC);
    let stored = a.take_unstored();
    assert_eq!(stored.len(), 3, "own and peer messages are stored");
    let first_id = id_of(&first);

    let mut back = Rooms::new("a", limits());
    let mut log: Vec<(&str, Tag, u64, &str)> = stored
        .iter()
        .map(|e| (&*e.room, e.origin, e.seq, &*e.text))
        .collect();
    log.push(log[0]); // a duplicate
                      // The high-water mark of an origin whose records are all loaded adds nothing.
    let taken = back.restore(log.into_iter(), &[(tag_of("b"), 2 * SEC)], 4 * SEC);
    assert_eq!(taken, 3);
    assert!(back.take_outbox().is_empty(), "nothing to deliver at start");
    assert!(back.take_peer_outbox().is_empty(), "nothing re-sent");
    assert!(back.take_unstored().is_empty(), "not stored twice");
    let ids: Vec<RoomId> = vec![lobby(&back), back.find("general").unwrap()];
    let r = back.resume(&ids, &first_id);
    assert!(!r.missed);
    assert_eq!(texts(&r.frames), ["from b", "two"]);
    // An origin seen only in segments since dropped: seen, and a resume
    // from before it says missed.
    let mut other = Rooms::new("a", limits());
    let gone = tag_of("c");
    other.restore(std::iter::empty(), &[(gone, 7)], 4 * SEC);
    assert_eq!(other.clock().get(gone), 7);
    assert!(other.resume(&[lobby(&other)], &first_id).missed);
    assert!(other
        .accept(gone, 7, LOBBY, "old".into(), 4 * SEC)
        .is_none());
    // Our next sequence follows the restored one, even with an old clock.
    let next = back.publish(lobby(&back), "three", SEC).unwrap();
    assert!(next.seq > 3 * SEC);
}
