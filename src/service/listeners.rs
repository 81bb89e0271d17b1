//! Who listens: every open SSE stream as a (connection, stream) pair, so one
//! HTTP/2 connection can carry many listeners and an HTTP/1.1 connection
//! carries one (stream 0). Listeners live in a slab (a stream keeps its key
//! to leave) and in a dense list for fan-out, which walks every listener once
//! per turn without touching free slots; leaving is O(1) (swap-remove, the
//! moved entry learns its new place).

use mio::Token;
use slab::Slab;

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
    /// Its index in `order`.
    at: usize,
}

#[derive(Default)]
pub struct Listeners {
    entries: Slab<Entry>,
    /// Keys of `entries`, dense, for fan-out.
    order: Vec<ListenerKey>,
}

impl Listeners {
    pub fn add(&mut self, listener: Listener) -> ListenerKey {
        let at = self.order.len();
        let key = self.entries.insert(Entry { listener, at });
        self.order.push(key);
        key
    }

    /// Forgets `key`; false if it was not (or no longer) a listener.
    pub fn remove(&mut self, key: ListenerKey) -> bool {
        let Some(entry) = self.entries.try_remove(key) else {
            return false;
        };
        self.order.swap_remove(entry.at);
        if let Some(&moved) = self.order.get(entry.at) {
            if let Some(e) = self.entries.get_mut(moved) {
                e.at = entry.at;
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The listener at position `i` of the fan-out order.
    pub fn nth(&self, i: usize) -> Option<Listener> {
        let key = *self.order.get(i)?;
        self.entries.get(key).map(|e| e.listener)
    }

    pub fn iter(&self) -> impl Iterator<Item = Listener> + '_ {
        self.order
            .iter()
            .filter_map(|&k| self.entries.get(k).map(|e| e.listener))
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
        let a = ls.add(l(1, 0));
        let b = ls.add(l(2, 1));
        let c = ls.add(l(2, 3));
        assert!(ls.remove(a));
        assert!(!ls.remove(a));
        assert_eq!(ls.iter().collect::<Vec<_>>(), [l(2, 3), l(2, 1)]);
        assert!(ls.remove(c));
        assert_eq!(ls.iter().collect::<Vec<_>>(), [l(2, 1)]);
        assert!(ls.remove(b));
        assert!(ls.is_empty());
        let d = ls.add(l(4, 0));
        assert_eq!(ls.nth(0), Some(l(4, 0)));
        assert!(ls.remove(d));
    }
}
