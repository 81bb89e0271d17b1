//! Who listens: every open SSE stream as a (connection, stream) pair, so one
//! HTTP/2 connection can carry many listeners and an HTTP/1.1 connection
//! carries one (stream 0), each following one or more rooms. Listeners live
//! in a slab (a stream keeps its key to leave), in a dense list of all (for
//! heartbeats and presence) and in a dense list per room (for messages), so
//! a message costs its room's listeners and nothing per other room. Leaving
//! is O(rooms followed): swap-remove, and the moved entry learns its place.

use mio::Token;
use slab::Slab;

use crate::room::RoomId;

/// One listener: the connection's token and the stream on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub conn: Token,
    pub stream: u32,
}

/// A listener's key in the registry, kept by its connection to leave.
pub type ListenerKey = usize;

struct Entry {
    listener: Listener,
    /// Its index in `all`.
    at: usize,
    /// Each room it follows and its index in that room's list: the first
    /// inline (most streams follow one room: no allocation), the rest after.
    first: (RoomId, usize),
    more: Vec<(RoomId, usize)>,
}

impl Entry {
    fn places_mut(&mut self) -> impl Iterator<Item = &mut (RoomId, usize)> {
        std::iter::once(&mut self.first).chain(self.more.iter_mut())
    }
}

#[derive(Default)]
pub struct Listeners {
    entries: Slab<Entry>,
    all: Vec<ListenerKey>,
    /// Indexed by room id (the rooms' slab keys, so dense).
    by_room: Vec<Vec<ListenerKey>>,
}

impl Listeners {
    /// Adds a listener of `rooms` (at least one).
    pub fn add(&mut self, listener: Listener, rooms: &[RoomId]) -> ListenerKey {
        let key = self.entries.vacant_key();
        let mut places = Vec::new();
        for &room in rooms {
            if self.by_room.len() <= room {
                self.by_room.resize_with(room + 1, Vec::new);
            }
            let list = &mut self.by_room[room];
            places.push((room, list.len()));
            list.push(key);
        }
        self.all.push(key);
        let first = places.first().copied().unwrap_or((usize::MAX, 0));
        let more = places.get(1..).map(<[_]>::to_vec).unwrap_or_default();
        self.entries.insert(Entry {
            listener,
            at: self.all.len() - 1,
            first,
            more,
        })
    }

    /// Forgets `key`; returns the rooms it followed (none if it was not,
    /// or no longer, a listener).
    pub fn remove(&mut self, key: ListenerKey) -> Vec<RoomId> {
        let Some(entry) = self.entries.try_remove(key) else {
            return Vec::new();
        };
        self.all.swap_remove(entry.at);
        if let Some(&moved) = self.all.get(entry.at) {
            if let Some(e) = self.entries.get_mut(moved) {
                e.at = entry.at;
            }
        }
        let mut left = Vec::with_capacity(1 + entry.more.len());
        let places = std::iter::once(entry.first).chain(entry.more);
        for (room, at) in places.filter(|p| p.0 != usize::MAX) {
            left.push(room);
            let Some(list) = self.by_room.get_mut(room) else {
                continue;
            };
            list.swap_remove(at);
            if let Some(&moved) = list.get(at) {
                if let Some(e) = self.entries.get_mut(moved) {
                    if let Some(place) = e.places_mut().find(|p| p.0 == room) {
                        place.1 = at;
                    }
                }
            }
            if list.is_empty() {
                *list = Vec::new();
            }
        }
        left
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Every listener (heartbeats, presence, shutdown).
    pub fn iter(&self) -> impl Iterator<Item = Listener> + '_ {
        self.all
            .iter()
            .filter_map(|&k| self.entries.get(k).map(|e| e.listener))
    }

    /// The listeners following `room`.
    pub fn in_room(&self, room: RoomId) -> impl Iterator<Item = Listener> + '_ {
        self.by_room
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|&k| self.entries.get(k).map(|e| e.listener))
    }

    /// How many follow `room`.
    pub fn count_in(&self, room: RoomId) -> usize {
        self.by_room.get(room).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(conn: usize, stream: u32) -> Listener {
        Listener {
            conn: Token(conn),
            stream,
        }
    }

    #[test]
    fn leaving_keeps_the_rest_reachable() {
        let mut ls = Listeners::default();
        let a = ls.add(l(1, 0), &[0]);
        let b = ls.add(l(2, 1), &[0, 3]);
        let c = ls.add(l(2, 3), &[3]);
        assert_eq!(ls.remove(a), [0]);
        assert!(ls.remove(a).is_empty());
        assert_eq!(ls.iter().collect::<Vec<_>>(), [l(2, 3), l(2, 1)]);
        assert_eq!(ls.in_room(0).collect::<Vec<_>>(), [l(2, 1)]);
        assert_eq!(ls.in_room(3).collect::<Vec<_>>(), [l(2, 1), l(2, 3)]);
        assert_eq!(ls.remove(c), [3]);
        assert_eq!(ls.in_room(3).collect::<Vec<_>>(), [l(2, 1)]);
        assert_eq!(ls.count_in(7), 0);
        assert_eq!(ls.remove(b), [0, 3]);
        assert!(ls.is_empty());
        assert_eq!(ls.in_room(0).count() + ls.in_room(3).count(), 0);
    }

    #[test]
    fn a_moved_listener_keeps_its_place_in_every_room() {
        let mut ls = Listeners::default();
        let keys: Vec<_> = (0..5).map(|i| ls.add(l(i, 0), &[1, 2])).collect();
        ls.remove(keys[0]);
        ls.remove(keys[2]);
        for room in [1, 2] {
            let mut got: Vec<_> = ls.in_room(room).map(|x| x.conn.0).collect();
            got.sort();
            assert_eq!(got, [1, 3, 4]);
        }
        for k in [keys[4], keys[1], keys[3]] {
            assert_eq!(ls.remove(k), [1, 2]);
        }
        assert!(ls.is_empty());
    }
}
