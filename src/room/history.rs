//! One room: its bounded history, what left it (the floors, so a resume
//! that needs an evicted message says "missed" instead of leaving a silent
//! gap), its listener count and its new frames since the last fan-out. The
//! collection of rooms, the node's clock and the memory cap across rooms are
//! in `mod.rs`.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::id::{Clock, Tag};

/// A room's key in the node's collection.
pub type RoomId = usize;

/// One message as the node holds it.
#[derive(Debug)]
pub struct Entry {
    /// Its place in this node's order of acceptance (across rooms).
    pub pos: u64,
    pub room: Rc<str>,
    pub room_id: RoomId,
    pub origin: Tag,
    pub seq: u64,
    pub text: Rc<str>,
    /// The SSE bytes for it, shared by every listener queue.
    pub frame: Rc<[u8]>,
    /// It has left its room's history (it may still wait in the node's log).
    pub(super) gone: Cell<bool>,
}

impl Entry {
    pub fn is_gone(&self) -> bool {
        self.gone.get()
    }

    /// Its SSE id, read back from its frame (which starts with it).
    pub fn id(&self) -> &str {
        let line = self.frame.strip_prefix(b"id: ").unwrap_or(&[]);
        let end = line.iter().position(|&b| b == b'\n').unwrap_or(0);
        std::str::from_utf8(line.get(..end).unwrap_or(&[])).unwrap_or("")
    }
}

pub struct Room {
    pub name: Rc<str>,
    pub(super) history: VecDeque<Rc<Entry>>,
    /// Highest sequence per origin that has left the history.
    pub(super) floors: Clock,
    capacity: usize,
    /// Streams following it on this node.
    pub listeners: usize,
    /// Messages accepted into it since the node started.
    pub messages: u64,
    /// When a message last came or a listener last left (µs since the epoch).
    pub(super) active_at: u64,
    /// Frames accepted since the last fan-out.
    pub(super) outbox: Vec<Rc<[u8]>>,
}

impl Room {
    pub fn new(name: Rc<str>, capacity: usize, now_micros: u64) -> Room {
        Room {
            name,
            history: VecDeque::new(),
            floors: Clock::default(),
            capacity: capacity.max(1),
            listeners: 0,
            messages: 0,
            active_at: now_micros,
            outbox: Vec::new(),
        }
    }

    /// Appends; evicts the oldest past the capacity.
    pub(super) fn push(&mut self, entry: Rc<Entry>, now_micros: u64) {
        if self.history.len() >= self.capacity {
            self.evict_oldest();
        }
        self.outbox.push(entry.frame.clone());
        self.history.push_back(entry);
        self.messages += 1;
        self.active_at = now_micros;
    }

    /// Drops the oldest message, remembering what left.
    pub(super) fn evict_oldest(&mut self) -> Option<Rc<Entry>> {
        let old = self.history.pop_front()?;
        self.floors.set(old.origin, old.seq);
        old.gone.set(true);
        if self.history.is_empty() {
            // Release the ring's storage: an idle room holds none.
            self.history = VecDeque::new();
        }
        Some(old)
    }

    /// The oldest message still held.
    pub(super) fn oldest(&self) -> Option<&Rc<Entry>> {
        self.history.front()
    }

    pub fn len(&self) -> usize {
        self.history.len()
    }

    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }

    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Rc<Entry>> + ExactSizeIterator {
        self.history.iter()
    }

    /// Whether the message (tag, seq) is still held.
    pub(super) fn holds(&self, tag: Tag, seq: u64) -> bool {
        self.history.iter().any(|e| e.origin == tag && e.seq == seq)
    }

    /// True when a stream that has seen `seen` lacks a message that left.
    pub(super) fn lost_since(&self, seen: &Clock) -> bool {
        self.floors
            .entries()
            .iter()
            .any(|&(t, floor)| seen.get(t) < floor)
    }
}
