//! One timer queue for every deadline of the node: each socket's (request
//! head, keep-alive idle, slow listener, peer ping, handshake) and the
//! node's own (heartbeat, presence, dials, the wait for the cluster, the
//! drain, accepting again). Entries are never cancelled: whoever owns a
//! deadline keeps it in a `Deadline`, and when an entry fires the reactor
//! checks it against that (so re-arming is one push, and a deadline has at
//! most a couple of entries queued).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use mio::Token;

/// What a timer entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Socket(Token),
    /// An SSE comment on quiet streams.
    Heartbeat,
    /// Presence refreshed for browsers and peers, once a second.
    Presence,
    /// The bus's next dial, or the end of the wait for the cluster.
    Bus,
    /// Accepting resumes after running out of file descriptors.
    Accept,
    /// The drain's time is up.
    Drain,
    /// A failed history-log commit is tried again.
    Store,
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Key)>>,
}

impl Timers {
    pub fn schedule(&mut self, at: Instant, key: Key) {
        self.heap.push(Reverse((at, key)));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the keys whose time has come.
    pub fn expire(&mut self, now: Instant, due: &mut Vec<Key>) {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            due.push(key);
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A deadline and what it has queued in `Timers`. Setting a
/// later deadline queues nothing when an earlier entry is already queued: that
/// entry fires, finds the deadline not yet due, and re-queues it then.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deadline {
    /// The earliest entry queued for it (the deadline itself is its
    /// owner's, asked again when an entry fires).
    queued: Option<Instant>,
}

impl Deadline {
    /// The owner's deadline is now `at`.
    pub fn set(&mut self, at: Option<Instant>, timers: &mut Timers, key: Key) {
        if let Some(at) = at {
            if self.queued.is_none_or(|q| q > at) {
                timers.schedule(at, key);
                self.queued = Some(at);
            }
        }
    }

    /// Called when a queued entry fires, with the owner's deadline now:
    /// true if it has passed. Otherwise re-queues the entry for it.
    pub fn fired(
        &mut self,
        at: Option<Instant>,
        now: Instant,
        timers: &mut Timers,
        key: Key,
    ) -> bool {
        if self.queued.is_some_and(|q| q <= now) {
            self.queued = None;
        }
        match at {
            Some(at) if at <= now => true,
            Some(at) => {
                if self.queued.is_none() {
                    timers.schedule(at, key);
                    self.queued = Some(at);
                }
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: Key = Key::Socket(Token(7));
    const B: Key = Key::Heartbeat;

    #[test]
    fn later_deadline_reuses_the_queued_entry() {
        let mut t = Timers::default();
        let mut d = Deadline::default();
        let t0 = Instant::now();
        let at = Some(t0 + Duration::from_secs(5));
        d.set(Some(t0 + Duration::from_secs(1)), &mut t, A);
        d.set(at, &mut t, A);
        assert_eq!(t.len(), 1);
        let mut due = Vec::new();
        t.expire(t0 + Duration::from_secs(1), &mut due);
        assert_eq!(due, [A]);
        assert!(!d.fired(at, t0 + Duration::from_secs(1), &mut t, A));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(5)));
        due.clear();
        t.expire(t0 + Duration::from_secs(5), &mut due);
        assert!(d.fired(at, t0 + Duration::from_secs(5), &mut t, A));
    }

    #[test]
    fn earlier_deadline_queues_again_and_cleared_never_fires() {
        let mut t = Timers::default();
        let mut d = Deadline::default();
        let t0 = Instant::now();
        d.set(Some(t0 + Duration::from_secs(5)), &mut t, B);
        d.set(Some(t0 + Duration::from_secs(1)), &mut t, B);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        d.set(None, &mut t, B);
        assert!(!d.fired(None, t0 + Duration::from_secs(9), &mut t, B));
    }
}
