//! Which old segments the log may delete. Pure: a per-segment summary in,
//! segment indexes out; `Log::drop_segments` does the deleting.
//!
//! The rule. The node keeps the last `history` messages of each room in
//! memory, and it appends every message it accepts to the log in the order
//! it accepts them, so the log's order is the history's order. A record is
//! still in the history exactly when fewer than `history` records of its
//! room come after it. A segment is dropped when that is false for all of
//! its records, i.e. when, for each room it holds, at least `history`
//! records of that room are in later segments. Counting whole segments
//! per room keeps the summary small (one counter per room) and the check
//! cheap; the price is that a segment stays until its newest record of
//! every room has left the history. Dropped segments need not be a prefix
//! (a quiet room can pin an old segment while newer ones go).
//!
//! Never dropped: the current segment (the last), and a segment whose header
//! could not be read (its contents are unknown; an operator should look).
//! Records that were skipped as corrupt are counted nowhere, which only
//! keeps segments longer.

use std::collections::HashMap;

/// What retention knows of one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Good records per room.
    pub rooms: HashMap<String, u64>,
    /// False when the segment's contents are unknown (unreadable header).
    pub known: bool,
}

impl Summary {
    /// An empty summary of a readable segment.
    pub fn known() -> Summary {
        Summary {
            rooms: HashMap::new(),
            known: true,
        }
    }

    /// Counts `n` more records of `room`; allocates only for a new room.
    pub fn add(&mut self, room: &str, n: u64) {
        match self.rooms.get_mut(room) {
            Some(c) => *c += n,
            None => {
                self.rooms.insert(room.to_owned(), n);
            }
        }
    }
}

/// Indexes (ascending) of the segments that may be dropped when the node
/// keeps `history` messages per room. `segments` is oldest first; the last
/// one is the current segment.
pub fn droppable(segments: &[Summary], history: usize) -> Vec<usize> {
    let history = history as u64;
    let mut later: HashMap<&str, u64> = HashMap::new();
    let mut out = Vec::new();
    for (i, seg) in segments.iter().enumerate().rev() {
        let current = i + 1 == segments.len();
        let all_gone = seg
            .rooms
            .keys()
            .all(|room| later.get(room.as_str()).copied().unwrap_or(0) >= history);
        if !current && seg.known && all_gone {
            out.push(i);
        }
        for (room, n) in &seg.rooms {
            *later.entry(room.as_str()).or_insert(0) += n;
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(rooms: &[(&str, u64)]) -> Summary {
        let mut s = Summary::known();
        for &(r, n) in rooms {
            s.add(r, n);
        }
        s
    }

    #[test]
    fn rule() {
        let unknown = Summary::default();
        let cases: Vec<(&str, Vec<Summary>, usize, Vec<usize>)> = vec![
            ("nothing", vec![], 10, vec![]),
            ("current only", vec![seg(&[("lobby", 100)])], 0, vec![]),
            (
                "newer segments hold enough",
                vec![
                    seg(&[("lobby", 5)]),
                    seg(&[("lobby", 6)]),
                    seg(&[("lobby", 4)]),
                ],
                10,
                vec![0],
            ),
            (
                "limit: exactly history later is enough",
                vec![seg(&[("lobby", 5)]), seg(&[("lobby", 10)])],
                10,
                vec![0],
            ),
            (
                "limit + 1: one short keeps it",
                vec![seg(&[("lobby", 5)]), seg(&[("lobby", 10)])],
                11,
                vec![],
            ),
            (
                "a quiet room pins an old segment, newer ones go",
                vec![
                    seg(&[("quiet", 1), ("lobby", 5)]),
                    seg(&[("lobby", 50)]),
                    seg(&[("lobby", 50)]),
                    seg(&[("lobby", 1)]),
                ],
                10,
                vec![1],
            ),
            (
                "history 0 keeps only the current segment",
                vec![seg(&[("a", 1)]), seg(&[("b", 1)]), seg(&[])],
                0,
                vec![0, 1],
            ),
            (
                "empty segments go",
                vec![seg(&[]), seg(&[("a", 1)])],
                5,
                vec![0],
            ),
            (
                "an unreadable segment stays",
                vec![unknown, seg(&[("a", 100)])],
                1,
                vec![],
            ),
        ];
        for (name, segments, history, want) in cases {
            assert_eq!(droppable(&segments, history), want, "{name}");
        }
    }
}
