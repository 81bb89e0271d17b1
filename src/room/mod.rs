//! The rooms of the node, without sockets: one clock for all of them (so
//! one id resumes a stream that follows several rooms), each room's bounded
//! history, and a log of every held message in the order this node accepted
//! it (for replays to peers, and for the memory cap across rooms). The
//! service calls `publish` for a local message and `accept` for one from
//! another node; both encode the SSE frame once (shared by every listener's
//! queue) and queue it for fan-out to that room's listeners only.
//!
//! Bounded: at most `max_rooms` rooms (a room with no listener and no
//! message for `idle` is forgotten to make space), `history` messages per
//! room, and `max_bytes` of messages across rooms (the oldest go first).
//! What leaves is remembered per origin (floors), so a resume that would
//! need it says "missed" instead of leaving a silent gap.

pub mod history;
pub mod id;
pub mod name;

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use slab::Slab;

use crate::sse;
pub use history::{Entry, Room, RoomId};
pub use id::{parse_id, tag_of, Clock, Tag, MAX_ORIGINS};
pub use name::LOBBY;

/// What a held message costs beyond its text and frame (the entry, its
/// place in the room and in the log), for the memory cap.
const ENTRY_COST: usize = 160;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages kept per room (`--history`).
    pub history: usize,
    /// Rooms at once (`--max-rooms`).
    pub max_rooms: usize,
    /// Bytes of messages across all rooms.
    pub max_bytes: usize,
    /// A room without listeners or messages for this long (µs) may be
    /// forgotten.
    pub idle_micros: u64,
}

/// No room can be made: `max_rooms` are in use and none is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// What a resuming stream gets first.
pub struct Resume {
    /// The id was not understood, names a room the stream does not follow,
    /// or messages after it have left the history.
    pub missed: bool,
    pub frames: Vec<Rc<[u8]>>,
}

pub struct Rooms {
    /// This node's origin tag.
    pub tag: Tag,
    clock: Clock,
    rooms: Slab<Room>,
    by_name: HashMap<Rc<str>, RoomId>,
    /// Every held message (and some that left their room, until the front
    /// reaches them), in the order this node accepted them.
    log: VecDeque<Rc<Entry>>,
    log_bytes: usize,
    limits: Limits,
    /// Floors of rooms that were forgotten, and of messages accepted into
    /// no room: a resume behind them has missed something.
    lost: Clock,
    /// Rooms with frames since the last fan-out.
    touched: Vec<RoomId>,
    /// Our own messages not yet sent to the other nodes.
    peer_outbox: Vec<Rc<Entry>>,
    /// Every message accepted (ours and peers') not yet handed to the
    /// durable log; kept only while `storing`.
    unstored: Vec<Rc<Entry>>,
    storing: bool,
    /// Messages from other nodes that found no room (all in use).
    pub dropped: u64,
    /// Messages accepted so far (the last entry's `pos`).
    accepted: u64,
    /// The `pos` of the last message handed to fan-out: later ones are
    /// still in an outbox and reach every listener live, so a resume or a
    /// backlog leaves them out (a stream opened in the same turn as a
    /// publish would get it twice otherwise).
    delivered: u64,
}

impl Rooms {
    /// The rooms of node `node`; the lobby always exists.
    pub fn new(node: &str, limits: Limits) -> Rooms {
        let mut rooms = Rooms {
            tag: tag_of(node),
            clock: Clock::default(),
            rooms: Slab::new(),
            by_name: HashMap::new(),
            log: VecDeque::new(),
            log_bytes: 0,
            limits,
            lost: Clock::default(),
            touched: Vec::new(),
            peer_outbox: Vec::new(),
            unstored: Vec::new(),
            storing: false,
            dropped: 0,
            accepted: 0,
            delivered: 0,
        };
        let lobby: Rc<str> = LOBBY.into();
        let id = rooms
            .rooms
            .insert(Room::new(lobby.clone(), limits.history, 0));
        rooms.by_name.insert(lobby, id);
        rooms
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn find(&self, name: &str) -> Option<RoomId> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, id: RoomId) -> Option<&Room> {
        self.rooms.get(id)
    }

    /// The room called `name`, made if it does not exist (the caller
    /// checked the name). Full when `max_rooms` are in use and none idle.
    pub fn open(&mut self, name: &str, now_micros: u64) -> Result<RoomId, Full> {
        if let Some(id) = self.find(name) {
            // In use now: not idle (a request that opens several rooms must
            // not see the first forgotten to make space for the second).
            if let Some(r) = self.rooms.get_mut(id) {
                r.active_at = r.active_at.max(now_micros);
            }
            return Ok(id);
        }
        if self.rooms.len() >= self.limits.max_rooms {
            self.forget_idle(now_micros);
            if self.rooms.len() >= self.limits.max_rooms {
                return Err(Full);
            }
        }
        let name: Rc<str> = name.into();
        let id = self
            .rooms
            .insert(Room::new(name.clone(), self.limits.history, now_micros));
        self.by_name.insert(name, id);
        Ok(id)
    }

    /// What has left this node's history, per origin (every room's floors
    /// and what was lost): a replay from here starts after it.
    pub fn floors(&self) -> Clock {
        let mut all = self.lost.clone();
        for (_, r) in self.rooms.iter() {
            for &(t, s) in r.floors.entries() {
                all.set(t, s);
            }
        }
        all
    }

    /// Messages of `origin` up to `seq` will never reach this node (a peer's
    /// replay skips them and nothing older from that origin is accepted
    /// after a newer one): a resume behind them says missed.
    pub fn mark_lost(&mut self, origin: Tag, seq: u64) {
        self.lost.set(origin, seq);
    }

    /// A stream joined or left `id`.
    pub fn join(&mut self, id: RoomId) {
        if let Some(r) = self.rooms.get_mut(id) {
            r.listeners += 1;
        }
    }

    pub fn leave(&mut self, id: RoomId, now_micros: u64) {
        if let Some(r) = self.rooms.get_mut(id) {
            r.listeners = r.listeners.saturating_sub(1);
            r.active_at = now_micros;
        }
    }

    /// Forgets rooms (never the lobby) that have had no listener and no
    /// message for `idle`. Their floors are kept in `lost`.
    pub fn forget_idle(&mut self, now_micros: u64) {
        let idle: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.listeners == 0
                    && &*r.name != LOBBY
                    && now_micros.saturating_sub(r.active_at) >= self.limits.idle_micros
            })
            .map(|(id, _)| id)
            .collect();
        for id in idle {
            let mut room = self.rooms.remove(id);
            while room.evict_oldest().is_some() {}
            for &(t, s) in room.floors.entries() {
                self.lost.set(t, s);
            }
            self.by_name.remove(&room.name);
        }
        self.trim_log();
    }

    /// Publishes a message from this node in `room`. `now_micros` is the
    /// wall clock; the sequence is above both it and every earlier one of
    /// ours, in any room.
    pub fn publish(&mut self, room: RoomId, text: &str, now_micros: u64) -> Option<Rc<Entry>> {
        let seq = now_micros.max(self.clock.get(self.tag).saturating_add(1));
        let entry = self.append(room, self.tag, seq, text.into(), now_micros)?;
        self.peer_outbox.push(entry.clone());
        Some(entry)
    }

    /// A message from another node: appended unless it is not newer than
    /// what this node has from that origin (a duplicate, or out of order).
    /// `None` when dropped: not newer, the origin would not fit in the
    /// clock, or no room could be made for it (then it still counts as
    /// seen, and a resume behind it says "missed").
    pub fn accept(
        &mut self,
        origin: Tag,
        seq: u64,
        room: &str,
        text: Rc<str>,
        now_micros: u64,
    ) -> Option<Rc<Entry>> {
        if seq <= self.clock.get(origin) || seq == 0 || !name::valid(room) {
            return None;
        }
        if self.clock.get(origin) == 0 && self.clock.entries().len() >= MAX_ORIGINS {
            return None;
        }
        match self.open(room, now_micros) {
            Ok(id) => self.append(id, origin, seq, text, now_micros),
            Err(Full) => {
                self.clock.set(origin, seq);
                self.lost.set(origin, seq);
                self.dropped += 1;
                None
            }
        }
    }

    fn append(
        &mut self,
        room_id: RoomId,
        origin: Tag,
        seq: u64,
        text: Rc<str>,
        now_micros: u64,
    ) -> Option<Rc<Entry>> {
        let room = self.rooms.get_mut(room_id)?;
        self.clock.set(origin, seq);
        let id = format!("{}/{}", room.name, self.clock.id_for(origin, seq));
        let mut frame = Vec::with_capacity(text.len() + id.len() + 16);
        sse::encode(&mut frame, Some(&id), None, &text);
        self.accepted += 1;
        let entry = Rc::new(Entry {
            pos: self.accepted,
            room: room.name.clone(),
            room_id,
            origin,
            seq,
            text,
            frame: frame.into(),
            gone: Cell::new(false),
        });
        if room.outbox.is_empty() {
            self.touched.push(room_id);
        }
        room.push(entry.clone(), now_micros);
        if self.storing {
            self.unstored.push(entry.clone());
        }
        self.log_bytes += cost(&entry);
        self.log.push_back(entry.clone());
        self.trim_log();
        Some(entry)
    }

    /// Keeps the log within `max_bytes`: the oldest messages leave their
    /// rooms first; entries that already left their room are dropped from
    /// the front as soon as they get there.
    fn trim_log(&mut self) {
        while let Some(front) = self.log.front() {
            if !front.is_gone() && self.log_bytes <= self.limits.max_bytes {
                break;
            }
            let Some(front) = self.log.pop_front() else {
                break;
            };
            self.log_bytes -= cost(&front);
            if front.is_gone() {
                continue;
            }
            // Per-room order is the log's order: it is its room's oldest.
            if let Some(room) = self.rooms.get_mut(front.room_id) {
                if room.oldest().is_some_and(|o| Rc::ptr_eq(o, &front)) {
                    room.evict_oldest();
                }
            }
        }
    }

    /// Frames to deliver since the last call, by room, each room's in order.
    pub fn take_outbox(&mut self) -> Vec<(RoomId, Vec<Rc<[u8]>>)> {
        self.delivered = self.accepted;
        let mut out = Vec::with_capacity(self.touched.len());
        for id in std::mem::take(&mut self.touched) {
            if let Some(room) = self.rooms.get_mut(id) {
                out.push((id, std::mem::take(&mut room.outbox)));
            }
        }
        out
    }

    /// Our messages published since the last `take_peer_outbox`.
    pub fn unsent(&self) -> usize {
        self.peer_outbox.len()
    }

    /// Our messages published since the last call, for the other nodes.
    pub fn take_peer_outbox(&mut self) -> Vec<Rc<Entry>> {
        std::mem::take(&mut self.peer_outbox)
    }

    /// From now on every accepted message is also kept for the durable
    /// log until `take_unstored` (the node has a log, and has loaded it).
    pub fn start_storing(&mut self) {
        self.storing = true;
    }

    /// Messages accepted since the last call, ours and peers', in order.
    pub fn take_unstored(&mut self) -> Vec<Rc<Entry>> {
        std::mem::take(&mut self.unstored)
    }

    /// Loads messages from the durable log at start, in the order they were
    /// accepted, as if they came from peers (each origin's in order; a
    /// duplicate is dropped), then `high_water` (the log's highest seq per
    /// origin, including what it no longer holds): an origin seen only in
    /// dropped segments still counts as seen, and a resume behind it says
    /// missed. Nothing is delivered or re-sent: the node has no listener
    /// yet, and the peers' replays compare clocks. Returns how many were
    /// taken.
    pub fn restore<'a>(
        &mut self,
        messages: impl Iterator<Item = (&'a str, Tag, u64, &'a str)>,
        high_water: &[(Tag, u64)],
        now_micros: u64,
    ) -> usize {
        let mut taken = 0;
        for (room, origin, seq, text) in messages {
            if self
                .accept(origin, seq, room, text.into(), now_micros)
                .is_some()
            {
                taken += 1;
            }
        }
        for &(origin, seq) in high_water {
            if seq > self.clock.get(origin) && self.clock.set(origin, seq) {
                self.lost.set(origin, seq);
            }
        }
        self.take_outbox();
        self.peer_outbox.clear();
        self.unstored.clear();
        taken
    }

    /// Messages held, across rooms.
    pub fn len(&self) -> usize {
        self.rooms.iter().map(|(_, r)| r.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rooms in use.
    pub fn count(&self) -> usize {
        self.rooms.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (RoomId, &Room)> {
        self.rooms.iter()
    }

    /// Every held message in the order this node accepted it (each
    /// origin's in its order), for a replay to another node.
    pub fn history(&self) -> impl Iterator<Item = &Rc<Entry>> {
        self.log.iter().filter(|e| !e.is_gone())
    }

    /// Messages of `rooms` after `last_event_id` (a browser's
    /// `Last-Event-ID`), in the order this node accepted them (those still
    /// in an outbox reach the stream live).
    pub fn resume(&self, rooms: &[RoomId], last_event_id: &str) -> Resume {
        let (room, clock) = name::split_id(last_event_id.trim());
        let of_ours = self.find(room).filter(|id| rooms.contains(id));
        let parsed = of_ours.and_then(|id| Some((id, parse_id(clock)?)));
        let Some((id_room, ((tag, seq), seen))) = parsed else {
            // Not ours, or not one of these rooms: say so, then give what we have.
            return Resume {
                missed: true,
                frames: self.frames_of(rooms, &Clock::default()),
            };
        };
        let known = self.rooms.get(id_room).is_some_and(|r| r.holds(tag, seq));
        let lost = self
            .lost
            .entries()
            .iter()
            .any(|&(t, floor)| seen.get(t) < floor)
            || rooms
                .iter()
                .filter_map(|&id| self.rooms.get(id))
                .any(|r| r.lost_since(&seen));
        Resume {
            missed: !known || lost,
            frames: self.frames_of(rooms, &seen),
        }
    }

    /// The last `n` messages of each of `rooms`, in acceptance order: what
    /// a new stream is shown as the conversation so far (those still in an
    /// outbox reach it live).
    pub fn recent(&self, rooms: &[RoomId], n: usize) -> Vec<Rc<Entry>> {
        let mut out: Vec<Rc<Entry>> = Vec::new();
        let delivered = self.delivered;
        for r in rooms.iter().filter_map(|&id| self.rooms.get(id)) {
            // Undelivered ones are the newest: they stand at the end.
            let sent =
                r.history().len() - r.history().rev().take_while(|e| e.pos > delivered).count();
            let skip = sent.saturating_sub(n);
            out.extend(r.history().take(sent).skip(skip).cloned());
        }
        if rooms.len() > 1 {
            out.sort_by_key(|e| e.pos);
        }
        out
    }

    /// The last `n` messages of one room, including those accepted this
    /// turn and not yet delivered: what a page or `GET …/messages` shows
    /// (no stream follows it, so nothing can come twice), and a publisher
    /// that got its 303 finds its message there at once.
    pub fn latest(&self, room: RoomId, n: usize) -> Vec<Rc<Entry>> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        let skip = r.history().len().saturating_sub(n);
        r.history().skip(skip).cloned().collect()
    }

    /// The frames of `rooms` newer than `seen`, in acceptance order.
    fn frames_of(&self, rooms: &[RoomId], seen: &Clock) -> Vec<Rc<[u8]>> {
        let newer = |e: &&Rc<Entry>| e.seq > seen.get(e.origin) && e.pos <= self.delivered;
        match rooms {
            [one] => self
                .rooms
                .get(*one)
                .map(|r| r.history().filter(newer).map(|e| e.frame.clone()).collect())
                .unwrap_or_default(),
            _ => self
                .history()
                .filter(|e| rooms.contains(&e.room_id))
                .filter(newer)
                .map(|e| e.frame.clone())
                .collect(),
        }
    }
}

fn cost(e: &Entry) -> usize {
    e.text.len() + e.frame.len() + ENTRY_COST
}

#[cfg(test)]
mod tests;
