//! One timer queue for every socket deadline (request head, keep-alive idle,
//! slow listener, peer ping and redial). Entries are never cancelled: a socket
//! keeps its current deadline itself, and when an entry fires the reactor
//! checks it against that (so re-arming is one push, and a socket has at most
//! a couple of entries queued; see `Deadline`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Timers {
    pub fn schedule(&mut self, at: Instant, token: u64) {
        self.heap.push(Reverse((at, token)));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the tokens whose time has come.
    pub fn expire(&mut self, now: Instant, due: &mut Vec<u64>) {
        while let Some(Reverse((at, token))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            due.push(token);
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A socket's own deadline and what it has queued in `Timers`. Setting a
/// later deadline queues nothing when an earlier entry is already queued: that
/// entry fires, finds the deadline not yet due, and re-queues it then.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deadline {
    pub at: Option<Instant>,
    queued: Option<Instant>,
}

impl Deadline {
    pub fn set(&mut self, at: Option<Instant>, timers: &mut Timers, token: u64) {
        self.at = at;
        if let Some(at) = at {
            if self.queued.is_none_or(|q| q > at) {
                timers.schedule(at, token);
                self.queued = Some(at);
            }
        }
    }

    /// Called when a queued entry fires: true if the deadline has passed.
    /// Otherwise re-queues the entry for the current deadline.
    pub fn fired(&mut self, now: Instant, timers: &mut Timers, token: u64) -> bool {
        if self.queued.is_some_and(|q| q <= now) {
            self.queued = None;
        }
        match self.at {
            Some(at) if at <= now => true,
            Some(at) => {
                if self.queued.is_none() {
                    timers.schedule(at, token);
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

    #[test]
    fn later_deadline_reuses_the_queued_entry() {
        let mut t = Timers::default();
        let mut d = Deadline::default();
        let t0 = Instant::now();
        d.set(Some(t0 + Duration::from_secs(1)), &mut t, 7);
        d.set(Some(t0 + Duration::from_secs(5)), &mut t, 7);
        assert_eq!(t.len(), 1);
        let mut due = Vec::new();
        t.expire(t0 + Duration::from_secs(1), &mut due);
        assert_eq!(due, [7]);
        assert!(!d.fired(t0 + Duration::from_secs(1), &mut t, 7));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(5)));
        due.clear();
        t.expire(t0 + Duration::from_secs(5), &mut due);
        assert!(d.fired(t0 + Duration::from_secs(5), &mut t, 7));
    }

    #[test]
    fn earlier_deadline_queues_again_and_cleared_never_fires() {
        let mut t = Timers::default();
        let mut d = Deadline::default();
        let t0 = Instant::now();
        d.set(Some(t0 + Duration::from_secs(5)), &mut t, 1);
        d.set(Some(t0 + Duration::from_secs(1)), &mut t, 1);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        d.set(None, &mut t, 1);
        assert!(!d.fired(t0 + Duration::from_secs(9), &mut t, 1));
    }
}
