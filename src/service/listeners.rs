//! Who listens: every open SSE stream as a (connection, stream) pair, so one
//! HTTP/2 connection can carry many listeners and an HTTP/1.1 connection
//! carries one (stream 0), each following one or more rooms. Listeners live
//! in a slab (a stream keeps its key to leave; heartbeats and presence walk
//! it) and in a dense list per room (for messages), so a message costs its
//! room's listeners and nothing per other room. Leaving is O(rooms
//! followed): swap-remove, and the moved entry learns its place.

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

/// A room a listener follows and its place in that room's list. Indices are
/// u32: an idle listener should cost as little as it can.
type Place = (u32, u32);

struct Entry {
    listener: Listener,
    /// The first room it follows inline (most streams follow one: no
    /// allocation), the rest in a box.
    first: Place,
    // A thin box (8 bytes) rather than a Vec (24) or a boxed slice (16):
    // every listener pays for this field, few use it.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Place>>>,
}

impl Entry {
    fn places_mut(&mut self) -> impl Iterator<Item = &mut Place> {
        std::iter::once(&mut self.first).chain(self.more.iter_mut().flat_map(|m| m.iter_mut()))
    }
}

#[derive(Default)]
pub struct Listeners {
    entries: Slab<Entry>,
    /// Keys of `entries` per room, indexed by room id (the rooms' slab
    /// keys, so dense).
    by_room: Vec<Vec<u32>>,
}

impl Listeners {
    /// Adds a listener of `rooms` (at least one).
    pub fn add(&mut self, listener: Listener, rooms: &[RoomId]) -> ListenerKey {
        let key = self.entries.vacant_key();
        let mut places = Vec::with_capacity(rooms.len());
        for (i, &room) in rooms.iter().enumerate() {
            if rooms[..i].contains(&room) {
                continue; // once per room, whatever the caller passed
            }
            if self.by_room.len() <= room {
                self.by_room.resize_with(room + 1, Vec::new);
            }
            let list = &mut self.by_room[room];
            places.push((room as u32, list.len() as u32));
            list.push(key as u32);
        }
        let first = places.first().copied().unwrap_or((u32::MAX, 0));
        let more = (places.len() > 1).then(|| Box::new(places[1..].to_vec()));
        self.entries.insert(Entry {
            listener,
            first,
            more,
        })
    }

    /// Forgets `key`; returns the rooms it followed (none if it was not,
    /// or no longer, a listener).
    pub fn remove(&mut self, key: ListenerKey) -> Vec<RoomId> {
        let Some(mut entry) = self.entries.try_remove(key) else {
            return Vec::new();
        };
        let places: Vec<Place> = entry.places_mut().map(|p| *p).collect();
        let mut left = Vec::with_capacity(places.len());
        for (room, at) in places.into_iter().filter(|p| p.0 != u32::MAX) {
            left.push(room as RoomId);
            let Some(list) = self.by_room.get_mut(room as usize) else {
                continue;
            };
            let at = at as usize;
            if at >= list.len() {
                continue;
            }
            list.swap_remove(at);
            if let Some(&moved) = list.get(at) {
                if let Some(e) = self.entries.get_mut(moved as usize) {
                    if let Some(place) = e.places_mut().find(|p| p.0 == room) {
                        place.1 = at as u32;
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
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every listener (heartbeats, presence, shutdown).
    pub fn iter(&self) -> impl Iterator<Item = Listener> + '_ {
        self.entries.iter().map(|(_, e)| e.listener)
    }

    /// The listeners following `room`.
    pub fn in_room(&self, room: RoomId) -> impl Iterator<Item = Listener> + '_ {
        self.by_room
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|&k| self.entries.get(k as usize).map(|e| e.listener))
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
        assert_eq!(ls.iter().collect::<Vec<_>>(), [l(2, 1), l(2, 3)]);
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
