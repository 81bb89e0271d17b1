//! The publishers' half of the engine: N keep-alive connections that follow
//! a `schedule::Plan`. Message `i` goes on connection `i % N` once it is due
//! and once that connection's previous request is answered: one request in
//! flight per connection, no pipelining, as a browser's form post. Each
//! send and answer is written to the `Log`; the timer wakes the loop at the
//! next due time. A connection that breaks is reopened (with backoff after
//! failed connects; publishing stops after `PUB_GIVE_UP` in a row), and its
//! request in flight is counted as broken, not resent. With rooms, message
//! `i` goes to the publish URL with `{room}` replaced by room `i % rooms`.

use std::time::{Duration, Instant};

use mio::{Interest, Token};

use super::{Engine, Mode, PUB_BASE, TIMER};
use crate::conn::{connect_from, parse_head, room_path, Body, Stamp, Target, Transport};
use crate::schedule::{Log, Plan};
use crate::stats::unix_micros;
use crate::timer::Timer;

/// How long answers to requests already sent are awaited once publishing
/// has stopped: nchan answers after its fan-out, which takes ~0.1 s per
/// message at 10,000 listeners, and at most one request per connection is
/// outstanding.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Failed publisher connects in a row after which publishing stops.
const PUB_GIVE_UP: u32 = 8;

pub(super) struct Publisher {
    t: Option<Transport>,
    /// The sequence number of the request in flight (at most one).
    busy: Option<u32>,
    /// This connection's next message (`>= total` when it has sent all).
    next: u32,
    /// Since when (wall clock, µs) it could send: its connect, or the
    /// answer to its previous request.
    free_us: u64,
    rx: Vec<u8>,
    /// When a failed connection may be tried again.
    retry_at: Option<Instant>,
}

/// Publishing under way: the plan, each message's record, and when it ends.
pub struct Schedule {
    pub log: Log,
    size: usize,
    /// No message leaves after this: the ones not sent by then stay unsent.
    stop_sending: Instant,
    /// Answers still outstanding after this are given up.
    give_up: Instant,
    /// Requests that failed (refused or broken), for the first few reports.
    errors: u64,
}

impl Publisher {
    fn new() -> Publisher {
        Publisher {
            t: None,
            busy: None,
            next: u32::MAX,
            free_us: 0,
            rx: Vec::new(),
            retry_at: None,
        }
    }
}

impl Engine {
    pub fn set_publisher(&mut self, target: Target, connections: usize) {
        self.pub_target = Some(target);
        // Without it due times are met to the millisecond only (see timer.rs).
        self.timer = Timer::new(self.poll.registry(), Token(TIMER))
            .map_err(|e| eprintln!("loadgen: timerfd: {e}; publishes may leave up to 1 ms late"))
            .ok();
        self.pubs = (0..connections.max(1)).map(|_| Publisher::new()).collect();
        for j in 0..self.pubs.len() {
            self.open_publisher(j);
        }
    }

    /// Whether every publisher connection is up (or given up on).
    pub fn publishers_ready(&self) -> bool {
        self.pub_failures >= PUB_GIVE_UP
            || self
                .pubs
                .iter()
                .all(|p| p.t.as_ref().is_some_and(|t| t.established))
    }

    /// Starts the plan now: `total` messages of `size` bytes at `rate`,
    /// round-robin over the publisher connections; none leaves later than
    /// `grace` after the last one was due.
    pub fn start_publishing(&mut self, total: u32, rate: f64, size: usize, grace: Duration) {
        let plan = Plan::new(total, rate, self.pubs.len(), Instant::now(), unix_micros())
            .with_rooms(self.publish_rooms);
        for (j, p) in self.pubs.iter_mut().enumerate() {
            p.next = plan.first_of(j);
        }
        let stop_sending = plan.start + plan.last_due() + grace;
        self.schedule = Some(Schedule {
            log: Log::new(plan),
            size,
            stop_sending,
            give_up: stop_sending + ANSWER_WAIT,
            errors: 0,
        });
    }

    /// Every message sent and answered; or sending has stopped (the grace
    /// is over, or the publishers cannot connect) and no answer is awaited;
    /// or the answers have been awaited long enough.
    pub fn publishing_done(&self) -> bool {
        let Some(s) = &self.schedule else {
            return true;
        };
        let now = Instant::now();
        let idle = self.pubs.iter().all(|p| p.busy.is_none());
        let stopped = now >= s.stop_sending || self.pub_failures >= PUB_GIVE_UP;
        let all_sent = self.pubs.iter().all(|p| p.next >= s.log.plan.total);
        now >= s.give_up || (idle && (stopped || all_sent))
    }

    /// How long the loop may sleep for the publishers' sake: until a retry,
    /// or the give-up time; the next due time is left to the timer when
    /// there is one.
    pub(super) fn publish_wait(&self, now: Instant) -> Duration {
        let mut wait = Duration::MAX;
        if let Some(s) = &self.schedule {
            // A busy connection frees up on an event (its answer); a free
            // one waits for its next message's due time.
            let plan = &s.log.plan;
            let next_due = self
                .pubs
                .iter()
                .filter(|p| p.busy.is_none() && p.next < plan.total)
                .filter(|p| p.t.as_ref().is_some_and(|t| t.established))
                .map(|p| plan.due(p.next))
                .min()
                .filter(|_| now < s.stop_sending);
            if let Some(due) = next_due {
                let left = due.saturating_duration_since(now);
                match &self.timer {
                    Some(t) if t.arm(left).is_ok() => {}
                    _ => wait = wait.min(left),
                }
            }
            wait = wait.min(s.give_up.saturating_duration_since(now));
        }
        for p in &self.pubs {
            if let Some(t) = p.retry_at {
                wait = wait.min(t.saturating_duration_since(now));
            }
        }
        wait
    }

    fn open_publisher(&mut self, j: usize) {
        let Some(target) = &self.pub_target else {
            return;
        };
        let tls = if target.tls { Some(&self.tls) } else { None };
        let p = &mut self.pubs[j];
        if let Some(mut t) = p.t.take() {
            let _ = self.poll.registry().deregister(&mut t.sock);
        }
        p.rx.clear();
        // The publisher connects from 127.0.0.1: the listeners' sources
        // start at .2.
        let opened = connect_from(None, target.addr).and_then(|sock| {
            let mut t = Transport::new(sock, tls, *target.addr.ip())?;
            self.poll.registry().register(
                &mut t.sock,
                Token(PUB_BASE + j),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(t)
        });
        match opened {
            Ok(t) => p.t = Some(t),
            Err(e) => self.publisher_broke(j, &format!("connect: {e}")),
        }
    }

    fn publisher_broke(&mut self, j: usize, why: &str) {
        if why.starts_with("connect") {
            // Back off (0.1 s, doubling, at most 2 s); give up after a few.
            self.pub_failures += 1;
            if self.pub_failures == PUB_GIVE_UP {
                eprintln!("loadgen: publisher cannot connect ({why}): publishing stops");
            }
            let p = &mut self.pubs[j];
            if let Some(mut t) = p.t.take() {
                let _ = self.poll.registry().deregister(&mut t.sock);
            }
            let wait =
                Duration::from_millis(100 << self.pub_failures.min(4)).min(Duration::from_secs(2));
            p.retry_at = Some(Instant::now() + wait);
            return;
        }
        if let (Some(i), Some(s)) = (self.pubs[j].busy.take(), self.schedule.as_mut()) {
            s.log.broken(i);
            s.errors += 1;
            if s.errors <= 3 {
                eprintln!("loadgen: publish failed: {why}");
            }
        }
        self.open_publisher(j);
    }

    pub(super) fn on_publisher(&mut self, j: usize) {
        let Engine { pubs, buf, .. } = self;
        let p = &mut pubs[j];
        let Some(t) = p.t.as_mut() else { return };
        if !t.established {
            match t.check_connected() {
                Ok(true) => {
                    self.pub_failures = 0;
                    p.free_us = unix_micros();
                }
                Ok(false) => return,
                Err(e) => return self.publisher_broke(j, &format!("connect: {e}")),
            }
        }
        if let Err(e) = t.flush() {
            return self.publisher_broke(j, &format!("write: {e}"));
        }
        let rx = &mut p.rx;
        let eof = match t.read(buf, |b| rx.extend_from_slice(b)) {
            Ok(eof) => eof,
            Err(e) => return self.publisher_broke(j, &format!("read: {e}")),
        };
        while !p.rx.is_empty() {
            let head = match parse_head(&p.rx) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return self.publisher_broke(j, &e),
            };
            let body = &p.rx[head.len..];
            let used = if head.chunked {
                match Body::chunked().feed(body, &mut |_| {}) {
                    Some(n) => n,
                    None => break,
                }
            } else {
                let n = head.content_length.unwrap_or(0);
                if body.len() < n {
                    break;
                }
                n
            };
            p.rx.drain(..head.len + used);
            let good = match self.mode {
                Mode::Watercooler => head.status == 303,
                Mode::Nchan => head.status == 201 || head.status == 202,
            };
            if let Some(i) = p.busy.take() {
                let at = unix_micros();
                p.free_us = at;
                if let Some(s) = self.schedule.as_mut() {
                    s.log.answered(i, at, good);
                    if !good {
                        s.errors += 1;
                        if s.errors <= 3 {
                            eprintln!("loadgen: publish answered {}", head.status);
                        }
                    }
                }
            }
            if head.close {
                return self.publisher_broke(j, "connection: close");
            }
        }
        if eof {
            self.publisher_broke(j, "closed");
        }
    }

    /// Sends, on each free connection, its next message once due (one
    /// request in flight per connection), until sending stops.
    pub(super) fn publish_due(&mut self) {
        let now = Instant::now();
        for j in 0..self.pubs.len() {
            if self.pubs[j].retry_at.is_some_and(|t| t <= now) && self.pub_failures < PUB_GIVE_UP {
                self.pubs[j].retry_at = None;
                self.open_publisher(j);
            }
        }
        let (Some(s), Some(target)) = (self.schedule.as_mut(), &self.pub_target) else {
            return;
        };
        if now >= s.stop_sending {
            return;
        }
        let mut broke = None;
        for (j, p) in self.pubs.iter_mut().enumerate() {
            let i = p.next;
            let plan = &s.log.plan;
            let free = p.busy.is_none() && p.t.as_ref().is_some_and(|t| t.established);
            if !free || i >= plan.total || now < plan.due(i) {
                continue;
            }
            debug_assert_eq!(plan.publisher_of(i), j, "round-robin by due time");
            let stamp = Stamp {
                seq: i,
                due_us: plan.due_us(i),
                sent_us: unix_micros(),
            };
            let mut text = stamp.text();
            while text.len() < s.size {
                text.push('x');
            }
            let path = room_path(&target.path, plan.room_of(i));
            let req = match self.mode {
                Mode::Watercooler => {
                    let body = format!("message={}", text.replace(' ', "%20"));
                    format!(
                        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
                        path, target.authority, body.len(), body
                    )
                }
                Mode::Nchan => format!(
                    "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
                    path, target.authority, text.len(), text
                ),
            };
            p.next = plan.after(i);
            p.busy = Some(i);
            s.log.sent(i, p.free_us, stamp.sent_us);
            if let Err(e) = p.t.as_mut().map_or(Ok(()), |t| t.send(req.as_bytes())) {
                broke = Some((j, e));
                break;
            }
        }
        if let Some((j, e)) = broke {
            self.publisher_broke(j, &format!("write: {e}"));
        }
    }
}
