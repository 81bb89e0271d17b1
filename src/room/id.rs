//! Message ids, without sockets. Each node stamps its messages with an
//! origin tag (from its name) and a sequence number that only grows, across
//! every room and across restarts (the larger of the last one plus one and
//! the wall clock in microseconds). Every node keeps a clock: the highest
//! sequence it has accepted from each origin. A message is accepted only if
//! its sequence is above the clock's, which gives exactly-once delivery in
//! origin order however many paths bring it.
//!
//! The SSE id of a message is its room, a `/`, then the node's clock just
//! after accepting it, the message's own origin first. Because the clock
//! counts every room, that one id is enough for any node to resume a stream
//! that follows several rooms, without gaps or repeats: send every message
//! of those rooms whose sequence is above the id's entry for its origin.

use std::fmt::Write as _;

/// An origin tag: the first four bytes of SHA-256 of the node name.
pub type Tag = u32;

pub fn tag_of(name: &str) -> Tag {
    let d = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Highest sequence per origin, sorted by tag. Tiny: one entry per node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clock(Vec<(Tag, u64)>);

/// Most origins a clock or id may name; bounds what a client id can make us
/// allocate and what peers can make us remember.
pub const MAX_ORIGINS: usize = 256;

impl Clock {
    pub fn get(&self, tag: Tag) -> u64 {
        match self.0.binary_search_by_key(&tag, |e| e.0) {
            Ok(i) => self.0[i].1,
            Err(_) => 0,
        }
    }

    /// Raises `tag`'s entry to `seq`. False when the clock is full.
    pub fn set(&mut self, tag: Tag, seq: u64) -> bool {
        match self.0.binary_search_by_key(&tag, |e| e.0) {
            Ok(i) => {
                self.0[i].1 = self.0[i].1.max(seq);
                true
            }
            Err(i) if self.0.len() < MAX_ORIGINS => {
                self.0.insert(i, (tag, seq));
                true
            }
            Err(_) => false,
        }
    }

    /// A clock from a peer's list (unsorted, possibly repeating, bounded).
    pub fn from_entries(entries: &[(Tag, u64)]) -> Clock {
        let mut c = Clock::default();
        for &(t, s) in entries {
            c.set(t, s);
        }
        c
    }

    pub fn entries(&self) -> &[(Tag, u64)] {
        &self.0
    }

    /// The SSE id for the message (`tag`, `seq`) when this is the clock:
    /// `tag.seq` entries (hex tag, base-36 sequence) joined by `-`, the
    /// message's own first.
    pub fn id_for(&self, tag: Tag, seq: u64) -> String {
        let mut id = String::with_capacity(20 * self.0.len());
        push_entry(&mut id, tag, seq);
        for &(t, s) in &self.0 {
            if t != tag {
                id.push('-');
                push_entry(&mut id, t, s);
            }
        }
        id
    }
}

fn push_entry(out: &mut String, tag: Tag, seq: u64) {
    let _ = write!(out, "{tag:08x}.");
    let mut digits = [0u8; 13];
    let mut n = seq;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// Parses an id made by `Clock::id_for`: the message it names and the clock.
/// `None` for anything else (a client sent it; it may be anything).
pub fn parse_id(id: &str) -> Option<((Tag, u64), Clock)> {
    let mut clock = Clock::default();
    let mut first = None;
    for (n, entry) in id.split('-').enumerate() {
        if n >= MAX_ORIGINS {
            return None;
        }
        let (tag, seq) = entry.split_once('.')?;
        if tag.len() != 8 || seq.is_empty() || seq.len() > 13 {
            return None;
        }
        let tag = u32::from_str_radix(tag, 16).ok()?;
        if !seq
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            return None;
        }
        let seq = u64::from_str_radix(seq, 36).ok()?;
        if clock.entries().iter().any(|e| e.0 == tag) {
            return None;
        }
        clock.set(tag, seq);
        first.get_or_insert((tag, seq));
    }
    Some((first?, clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_roundtrip() {
        let mut c = Clock::default();
        c.set(7, 99);
        c.set(0xdead_beef, 1_732_000_000_000_000);
        let id = c.id_for(0xdead_beef, 1_732_000_000_000_000);
        assert!(id.starts_with("deadbeef."));
        let ((t, s), back) = parse_id(&id).unwrap();
        assert_eq!((t, s), (0xdead_beef, 1_732_000_000_000_000));
        assert_eq!(back, c);
        for bad in [
            "",
            "x",
            "deadbeef",
            "deadbeef.",
            "deadbee.1",
            "deadbeef.A",
            "deadbeef.1-deadbeef.2",
            "zzzzzzzz.1",
            "deadbeef.zzzzzzzzzzzzzz",
        ] {
            assert!(parse_id(bad).is_none(), "{bad}");
        }
    }
}
