//! The publish plan and what became of each message. Message `i` is due at
//! `start + i / rate` and belongs to publisher `i % publishers`: round-robin
//! by due time, so each of N connections offers rate / N and a connection
//! that is held back holds back only its own messages. A connection carries
//! at most one request at a time (no pipelining), as a browser's form post
//! does; a message that is due while its connection still waits for the
//! previous answer leaves late, and the `Log` says how late (send − due),
//! how much of that was loadgen's own delay (send − when the message could
//! first have left), how long answers took, and the publish rate the server
//! acknowledged. Latency everywhere counts from the due time, so a server
//! that answers publishes only after its fan-out cannot hide its queue by
//! holding the publishers back (coordinated omission). With rooms, message
//! `i` is published in room `i % rooms` (round-robin over the rooms that get
//! messages). Pure: no sockets and no clock reads; `engine.rs` passes the
//! times in.

use std::time::{Duration, Instant};

use crate::stats::Histogram;

/// `total` messages at `rate` per second over `publishers` connections,
/// starting at `start` (`start_us` on the wall clock the listeners read).
#[derive(Clone, Debug)]
pub struct Plan {
    pub total: u32,
    rate: f64,
    pub publishers: u32,
    /// Rooms that get messages (at least 1): message `i` goes to `i % rooms`.
    pub rooms: u32,
    pub start: Instant,
    pub start_us: u64,
}

impl Plan {
    pub fn new(total: u32, rate: f64, publishers: usize, start: Instant, start_us: u64) -> Plan {
        Plan {
            total,
            rate: if rate > 0.0 { rate } else { 0.001 },
            publishers: publishers.clamp(1, u32::MAX as usize) as u32,
            rooms: 1,
            start,
            start_us,
        }
    }

    /// The same plan with message `i` in room `i % rooms`.
    pub fn with_rooms(mut self, rooms: u32) -> Plan {
        self.rooms = rooms.max(1);
        self
    }

    /// The room message `i` is published in.
    pub fn room_of(&self, i: u32) -> u32 {
        i % self.rooms
    }

    /// How many of the messages for which `pick` holds went to each room.
    pub fn per_room(&self, pick: impl Fn(u32) -> bool) -> Vec<u64> {
        let mut n = vec![0; self.rooms as usize];
        for i in (0..self.total).filter(|&i| pick(i)) {
            n[self.room_of(i) as usize] += 1;
        }
        n
    }

    /// Microseconds from the start to message `i`'s due time. Both clocks
    /// use this one rounding, so `due` and `due_us` name the same moment.
    pub fn offset_us(&self, i: u32) -> u64 {
        (f64::from(i) * 1e6 / self.rate).round() as u64
    }

    pub fn due(&self, i: u32) -> Instant {
        self.start + Duration::from_micros(self.offset_us(i))
    }

    pub fn due_us(&self, i: u32) -> u64 {
        self.start_us + self.offset_us(i)
    }

    /// The connection that sends message `i`.
    pub fn publisher_of(&self, i: u32) -> usize {
        (i % self.publishers) as usize
    }

    /// Publisher `j`'s first message; `>= total` when it has none.
    pub fn first_of(&self, j: usize) -> u32 {
        j as u32
    }

    /// The message publisher `publisher_of(i)` sends after `i`.
    pub fn after(&self, i: u32) -> u32 {
        i.saturating_add(self.publishers)
    }

    /// From the start to the last message's due time.
    pub fn last_due(&self) -> Duration {
        Duration::from_micros(self.offset_us(self.total.saturating_sub(1)))
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub enum Outcome {
    #[default]
    Unsent,
    /// Sent; no answer yet (or none by the time publishing ended).
    InFlight,
    /// The server took it: 303 (watercooler) or 201/202 (nchan).
    Acked,
    /// Answered with another status.
    Refused,
    /// The connection failed before the answer.
    Broken,
}

/// One message's record. Times are wall-clock microseconds; 0 = not yet.
#[derive(Clone, Copy, Default, Debug)]
pub struct Sent {
    /// When it could first have left: its due time, or later if its
    /// connection was still busy with the previous message (or connecting).
    pub ready_us: u64,
    pub sent_us: u64,
    pub answered_us: u64,
    pub outcome: Outcome,
}

/// The plan and every message's record, indexed by sequence number.
pub struct Log {
    pub plan: Plan,
    msgs: Vec<Sent>,
}

impl Log {
    pub fn new(plan: Plan) -> Log {
        let msgs = vec![Sent::default(); plan.total as usize];
        Log { plan, msgs }
    }

    /// Message `i` left at `sent_us`; its connection had been free since
    /// `free_us` (the previous answer, or the connect).
    pub fn sent(&mut self, i: u32, free_us: u64, sent_us: u64) {
        let due = self.plan.due_us(i);
        if let Some(m) = self.msgs.get_mut(i as usize) {
            m.ready_us = due.max(free_us);
            m.sent_us = sent_us;
            m.outcome = Outcome::InFlight;
        }
    }

    /// The answer to message `i` arrived at `at_us`.
    pub fn answered(&mut self, i: u32, at_us: u64, ok: bool) {
        if let Some(m) = self.msgs.get_mut(i as usize) {
            m.answered_us = at_us;
            m.outcome = if ok { Outcome::Acked } else { Outcome::Refused };
        }
    }

    pub fn broken(&mut self, i: u32) {
        if let Some(m) = self.msgs.get_mut(i as usize) {
            m.outcome = Outcome::Broken;
        }
    }

    pub fn get(&self, i: u32) -> Option<&Sent> {
        self.msgs.get(i as usize)
    }

    /// Per room, the messages the server took or may have taken (acked or
    /// still in flight): what that room's listeners wait for.
    pub fn owed_per_room(&self) -> Vec<u64> {
        self.plan.per_room(|i| {
            self.get(i)
                .is_some_and(|m| matches!(m.outcome, Outcome::Acked | Outcome::InFlight))
        })
    }

    pub fn count(&self, o: Outcome) -> u64 {
        self.msgs.iter().filter(|m| m.outcome == o).count() as u64
    }

    fn over_sent(&self, f: impl Fn(u32, &Sent) -> u64) -> Histogram {
        let mut h = Histogram::default();
        for (i, m) in self.msgs.iter().enumerate() {
            if m.outcome != Outcome::Unsent {
                h.record(f(i as u32, m));
            }
        }
        h
    }

    /// Send time − due time of every message sent: how late publishes left.
    /// Messages never sent are not in it (`count(Outcome::Unsent)` says how
    /// many): they were later than the run allowed.
    pub fn late(&self) -> Histogram {
        self.over_sent(|i, m| m.sent_us.saturating_sub(self.plan.due_us(i)))
    }

    /// The part of the lateness that was loadgen's own: send time − when the
    /// message could have left. Near zero unless loadgen itself lagged.
    pub fn own_delay(&self) -> Histogram {
        self.over_sent(|_, m| m.sent_us.saturating_sub(m.ready_us))
    }

    /// Send to answer, for the messages the server took.
    pub fn ack(&self) -> Histogram {
        let mut h = Histogram::default();
        for m in self.msgs.iter().filter(|m| m.outcome == Outcome::Acked) {
            h.record(m.answered_us.saturating_sub(m.sent_us));
        }
        h
    }

    /// Messages acknowledged per second, first answer to last: the rate the
    /// server sustained, whatever was offered. `None` below two answers.
    pub fn achieved_rate(&self) -> Option<f64> {
        let acked = self.msgs.iter().filter(|m| m.outcome == Outcome::Acked);
        let (n, first, last) = acked.fold((0u64, u64::MAX, 0u64), |(n, f, l), m| {
            (n + 1, f.min(m.answered_us), l.max(m.answered_us))
        });
        (n >= 2 && last > first).then(|| (n - 1) as f64 * 1e6 / (last - first) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(total: u32, rate: f64, publishers: usize) -> Plan {
        Plan::new(total, rate, publishers, Instant::now(), 1_000_000)
    }

    #[test]
    fn messages_are_due_at_start_plus_i_over_rate() {
        // (rate, message, µs after the start)
        let cases: &[(f64, u32, u64)] = &[
            (100.0, 0, 0),
            (100.0, 1, 10_000),
            (100.0, 999, 9_990_000),
            (3.0, 1, 333_333),
            (3.0, 2, 666_667),
            (3.0, 3, 1_000_000),
            (0.5, 2, 4_000_000),
            (1e6, 7, 7),
        ];
        for &(rate, i, want) in cases {
            let p = plan(1000, rate, 1);
            assert_eq!(p.offset_us(i), want, "rate {rate}, message {i}");
            assert_eq!(p.due_us(i), 1_000_000 + want);
            assert_eq!(p.due(i) - p.start, Duration::from_micros(want));
        }
        assert_eq!(
            plan(1000, 100.0, 1).last_due(),
            Duration::from_micros(9_990_000)
        );
        assert_eq!(plan(0, 100.0, 1).last_due(), Duration::ZERO);
        // A rate of zero or less cannot divide by zero.
        assert!(plan(2, 0.0, 1).offset_us(1) > 0);
    }

    #[test]
    fn messages_go_round_robin_by_due_time() {
        let p = plan(25, 100.0, 10);
        for j in 0..10 {
            let mut mine = Vec::new();
            let mut i = p.first_of(j);
            while i < p.total {
                assert_eq!(p.publisher_of(i), j);
                mine.push(i);
                i = p.after(i);
            }
            let want: Vec<u32> = (0..25).filter(|i| *i as usize % 10 == j).collect();
            assert_eq!(mine, want, "publisher {j}");
        }
        // More publishers than messages: the extra ones have none.
        assert!(plan(3, 1.0, 8).first_of(5) >= 3);
        // Zero publishers means one.
        assert_eq!(plan(3, 1.0, 0).publisher_of(2), 0);
    }

    #[test]
    fn lateness_counts_from_the_due_time() {
        // 100/s: message i due at start + 10 ms × i (start_us = 1 s).
        let mut log = Log::new(plan(6, 100.0, 2));
        let due = |i: u32| 1_000_000 + 10_000 * u64::from(i);
        // (message, connection free since, sent, answered after, ok)
        let runs: &[(u32, u64, u64, u64, bool)] = &[
            (0, 900_000, due(0) + 100, 1_000, true),        // on time
            (1, 900_000, due(1) + 200, 30_000, true),       // on time, slow answer
            (2, due(0) + 1_100, due(2) + 300, 1_000, true), // free before due
            (3, due(1) + 30_200, due(3) + 10_300, 1_000, false), // held back 10.2 ms
            (4, due(2) + 1_300, due(4) + 5_000, 1_000, true), // loadgen's own 5 ms
        ];
        for &(i, free, sent, after, ok) in runs {
            log.sent(i, free, sent);
            log.answered(i, sent + after, ok);
        }
        let late = log.late();
        assert_eq!(late.total, 5, "the unsent message 5 is not in it");
        assert_eq!(late.max, 10_300);
        assert_eq!(late.quantile(0.5), 300);
        let own = log.own_delay();
        assert_eq!((own.max, own.quantile(0.5)), (5_000, 200));
        let ack = log.ack();
        assert_eq!(
            (ack.total, ack.max),
            (4, 30_000),
            "the refused one has no ack"
        );
        assert_eq!(log.count(Outcome::Acked), 4);
        assert_eq!(log.count(Outcome::Refused), 1);
        assert_eq!(log.count(Outcome::Unsent), 1);
        log.sent(5, 0, due(5));
        log.broken(5);
        assert_eq!(log.count(Outcome::Broken), 1);
        assert_eq!(log.get(5).map(|m| m.ready_us), Some(due(5)));
    }

    #[test]
    fn messages_go_round_robin_over_the_rooms() {
        let p = plan(10, 100.0, 4).with_rooms(3);
        let rooms: Vec<u32> = (0..10).map(|i| p.room_of(i)).collect();
        assert_eq!(rooms, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(p.per_room(|_| true), [4, 3, 3]);
        assert_eq!(p.per_room(|i| i % 2 == 0), [2, 1, 2]);
        // No rooms asked: one room, every message in it.
        assert_eq!(plan(5, 1.0, 1).per_room(|_| true), [5]);
        assert_eq!(plan(5, 1.0, 1).with_rooms(0).room_of(4), 0);
        // Owed: acknowledged or in flight; refused, broken and unsent not.
        let mut log = Log::new(p);
        for i in 0..6 {
            log.sent(i, 0, 1_000_000);
        }
        log.answered(0, 1_000_100, true);
        log.answered(1, 1_000_100, true);
        log.answered(2, 1_000_100, false);
        log.broken(3);
        // 4 and 5 in flight, 6..9 never sent.
        assert_eq!(log.owed_per_room(), [1, 2, 1]);
    }

    #[test]
    fn achieved_rate_is_acks_per_second() {
        let mut log = Log::new(plan(11, 100.0, 1));
        assert_eq!(log.achieved_rate(), None);
        // Answers every 20 ms although 10 ms was offered: 50/s achieved.
        for i in 0..11 {
            let t = 1_000_000 + 20_000 * u64::from(i);
            log.sent(i, 0, t);
            log.answered(i, t + 500, true);
        }
        let r = log.achieved_rate().unwrap();
        assert!((r - 50.0).abs() < 1e-9, "{r}");
        // A refused message is not counted as published.
        log.answered(10, 1_000_000 + 200_500, false);
        let r = log.achieved_rate().unwrap();
        assert!((r - 50.0).abs() < 1e-9, "{r}");
    }
}
