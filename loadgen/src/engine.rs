//! The event loop: one `mio::Poll` holding the SSE listeners, the publisher
//! connections and, when the work is split over processes, the pipes to the
//! parent or from the children. `turn` waits once and handles what is ready;
//! the phases (connect, idle, publish, drain) are loops around it in
//! `main.rs`. Listeners connect in waves of at most `wave` outstanding
//! connects, each bound to a source address 127.0.0.B so that no (source,
//! destination) pair carries more than `PER_SOURCE` sockets; a listener
//! counts as connected once it has a 200 `text/event-stream` head.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConfig;

use crate::conn::{connect_from, parse_head, parse_text, Body, Sse, Target, Transport};
use crate::stats::{unix_micros, Order, Tally};

/// Sockets per (source address, destination) pair, under the ~28k ports.
pub const PER_SOURCE: usize = 25_000;
const PUB_BASE: usize = 1 << 40;
const PIPE_BASE: usize = 1 << 41;
const CONNECT_ATTEMPTS: u8 = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Watercooler,
    Nchan,
}

#[derive(PartialEq, Eq)]
enum LState {
    Waiting,
    Opening,
    Streaming,
    Gone,
}

struct Listener {
    t: Option<Transport>,
    state: LState,
    target: usize,
    src: Ipv4Addr,
    attempts: u8,
    head: Vec<u8>,
    body: Body,
    sse: Sse,
    order: Order,
}

struct Publisher {
    t: Option<Transport>,
    /// The sequence number of the request in flight.
    busy: Option<u32>,
    rx: Vec<u8>,
    /// When a failed connection may be tried again.
    retry_at: Option<Instant>,
}

/// The publish plan: `total` messages, message `i` due at `start + i/rate`.
pub struct Schedule {
    pub total: u32,
    rate: f64,
    size: usize,
    pub start: Instant,
    pub next: u32,
    pub ok: u64,
    pub errors: u64,
    pub first_send_us: u64,
    pub last_send_us: u64,
}

/// Lines arriving on a pipe (a child's stdout, or our stdin).
pub struct Pipe {
    fd: RawFd,
    buf: Vec<u8>,
    pub lines: VecDeque<String>,
    pub eof: bool,
}

pub struct Engine {
    poll: Poll,
    events: Events,
    tls: Arc<ClientConfig>,
    buf: Vec<u8>,
    mode: Mode,
    messages: u32,
    targets: Vec<Target>,
    listeners: Vec<Listener>,
    next_open: usize,
    retry: VecDeque<usize>,
    opening: usize,
    wave: usize,
    pub tally: Tally,
    pub connect_start: Instant,
    pub last_connected: Option<Instant>,
    pub_target: Option<Target>,
    pubs: Vec<Publisher>,
    pub schedule: Option<Schedule>,
    /// Publisher connects failed in a row; at `PUB_GIVE_UP` publishing stops.
    pub_failures: u32,
    pub pipes: Vec<Pipe>,
}

const PUB_GIVE_UP: u32 = 8;

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Engine {
    pub fn new(mode: Mode, messages: u32, wave: usize) -> Result<Engine, String> {
        Ok(Engine {
            poll: Poll::new().map_err(|e| format!("poll: {e}"))?,
            events: Events::with_capacity(4096),
            tls: crate::conn::tls_config()?,
            buf: vec![0; 64 * 1024],
            mode,
            messages,
            targets: Vec::new(),
            listeners: Vec::new(),
            next_open: 0,
            retry: VecDeque::new(),
            opening: 0,
            wave: wave.max(1),
            tally: Tally::default(),
            connect_start: Instant::now(),
            last_connected: None,
            pub_target: None,
            pubs: Vec::new(),
            schedule: None,
            pub_failures: 0,
            pipes: Vec::new(),
        })
    }

    /// Plans `n` listeners over `targets`, round-robin; the `k`-th listener
    /// of a target uses source 127.0.0.0 + `src_base + k / PER_SOURCE`.
    pub fn add_listeners(&mut self, targets: &[Target], n: usize, src_base: u32) {
        self.targets = targets.to_vec();
        let u = targets.len();
        self.listeners = (0..n)
            .map(|i| Listener {
                t: None,
                state: LState::Waiting,
                target: i % u,
                src: Ipv4Addr::from(0x7f00_0000 + src_base + ((i / u) / PER_SOURCE) as u32),
                attempts: 0,
                head: Vec::new(),
                body: Body::Identity,
                sse: Sse::default(),
                order: Order::default(),
            })
            .collect();
        self.connect_start = Instant::now();
    }

    /// Source addresses a process with `n` listeners over `u` targets needs.
    pub fn sources_needed(n: usize, u: usize) -> u32 {
        n.div_ceil(u.max(1)).div_ceil(PER_SOURCE).max(1) as u32
    }

    pub fn connecting(&self) -> bool {
        self.opening > 0 || self.next_open < self.listeners.len() || !self.retry.is_empty()
    }

    /// Gives up on listeners not connected yet (the connect timeout).
    pub fn abandon_connecting(&mut self) {
        for l in self.listeners.iter_mut() {
            if l.state == LState::Opening || l.state == LState::Waiting {
                if let Some(mut t) = l.t.take() {
                    let _ = self.poll.registry().deregister(&mut t.sock);
                }
                l.state = LState::Gone;
                self.tally.failed += 1;
            }
        }
        self.opening = 0;
        self.retry.clear();
        self.next_open = self.listeners.len();
    }

    pub fn alive(&self) -> u64 {
        self.tally.connected - self.tally.disconnected
    }

    pub fn set_publisher(&mut self, target: Target, connections: usize) {
        self.pub_target = Some(target);
        self.pubs = (0..connections.max(1))
            .map(|_| Publisher {
                t: None,
                busy: None,
                rx: Vec::new(),
                retry_at: None,
            })
            .collect();
        for j in 0..self.pubs.len() {
            self.open_publisher(j);
        }
    }

    pub fn start_publishing(&mut self, total: u32, rate: f64, size: usize) {
        self.schedule = Some(Schedule {
            total,
            rate: rate.max(0.001),
            size,
            start: Instant::now(),
            next: 0,
            ok: 0,
            errors: 0,
            first_send_us: 0,
            last_send_us: 0,
        });
    }

    pub fn publishing_done(&self) -> bool {
        match &self.schedule {
            None => true,
            Some(_) if self.pub_failures >= PUB_GIVE_UP => true,
            Some(s) => s.next >= s.total && self.pubs.iter().all(|p| p.busy.is_none()),
        }
    }

    pub fn add_pipe(&mut self, fd: RawFd) -> io::Result<usize> {
        set_nonblocking(fd)?;
        let k = self.pipes.len();
        self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(PIPE_BASE + k),
            Interest::READABLE,
        )?;
        self.pipes.push(Pipe {
            fd,
            buf: Vec::new(),
            lines: VecDeque::new(),
            eof: false,
        });
        Ok(k)
    }

    /// Waits for events (at most until `until`, or the next publish) and
    /// handles them; starts connects and due publishes.
    pub fn turn(&mut self, until: Instant) -> io::Result<()> {
        self.start_connects();
        self.publish_due();
        let now = Instant::now();
        let mut wait = until
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        if let Some(s) = &self.schedule {
            if s.next < s.total {
                // Overdue messages wait for a publisher to free up: an event.
                let due = s.start + Duration::from_secs_f64(f64::from(s.next) / s.rate);
                if due > now {
                    wait = wait.min(due - now);
                }
            }
        }
        for p in &self.pubs {
            if let Some(t) = p.retry_at {
                wait = wait.min(t.saturating_duration_since(now));
            }
        }
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let tokens: Vec<(usize, bool)> = self
            .events
            .iter()
            .map(|e| (e.token().0, e.is_writable()))
            .collect();
        for (tok, writable) in tokens {
            if tok >= PIPE_BASE {
                self.on_pipe(tok - PIPE_BASE);
            } else if tok >= PUB_BASE {
                self.on_publisher(tok - PUB_BASE);
            } else if tok < self.listeners.len() {
                self.on_listener(tok, writable);
            }
        }
        self.start_connects();
        self.publish_due();
        Ok(())
    }

    fn start_connects(&mut self) {
        while self.opening < self.wave {
            let i = if let Some(i) = self.retry.pop_front() {
                i
            } else if self.next_open < self.listeners.len() {
                self.next_open += 1;
                self.next_open - 1
            } else {
                return;
            };
            self.open_listener(i);
        }
    }

    fn open_listener(&mut self, i: usize) {
        let l = &mut self.listeners[i];
        let target = &self.targets[l.target];
        l.attempts += 1;
        l.head.clear();
        l.sse = Sse::default();
        let tls = if target.tls { Some(&self.tls) } else { None };
        let opened = connect_from(Some(l.src), target.addr).and_then(|sock| {
            let mut t = Transport::new(sock, tls, *target.addr.ip())?;
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: watercooler-loadgen\r\n\r\n",
                target.path, target.authority
            );
            t.send(req.as_bytes())?;
            self.poll.registry().register(&mut t.sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            Ok(t)
        });
        self.opening += 1;
        l.state = LState::Opening;
        match opened {
            Ok(t) => l.t = Some(t),
            Err(e) => self.listener_failed(i, &e.to_string()),
        }
    }

    /// A listener that has not reached the stream failed: retry or give up.
    fn listener_failed(&mut self, i: usize, why: &str) {
        let l = &mut self.listeners[i];
        if let Some(mut t) = l.t.take() {
            let _ = self.poll.registry().deregister(&mut t.sock);
        }
        self.opening -= 1;
        self.tally.connect_errors += 1;
        if self.tally.connect_errors <= 3 {
            eprintln!("loadgen: listener {i}: {why}");
        }
        if l.attempts < CONNECT_ATTEMPTS {
            l.state = LState::Waiting;
            self.retry.push_back(i);
        } else {
            l.state = LState::Gone;
            self.tally.failed += 1;
        }
    }

    fn on_listener(&mut self, i: usize, writable: bool) {
        let messages = self.messages;
        let Engine {
            listeners,
            tally,
            buf,
            ..
        } = self;
        let l = &mut listeners[i];
        let Some(t) = l.t.as_mut() else { return };
        let mut failure: Option<String> = None;
        if !t.established {
            match t.check_connected() {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => failure = Some(format!("connect: {e}")),
            }
        } else if writable {
            if let Err(e) = t.flush() {
                failure = Some(format!("write: {e}"));
            }
        }
        let mut became_stream = false;
        let mut eof = false;
        if failure.is_none() {
            let Listener {
                state,
                head,
                body,
                sse,
                order,
                ..
            } = l;
            let res = t.read(buf, |bytes| {
                let mut rest = bytes;
                let owned;
                if *state == LState::Opening {
                    head.extend_from_slice(bytes);
                    match parse_head(head) {
                        Ok(None) => return,
                        Ok(Some(h)) if h.status == 200 && h.event_stream => {
                            *state = LState::Streaming;
                            became_stream = true;
                            *body = if h.chunked {
                                Body::chunked()
                            } else {
                                Body::Identity
                            };
                            owned = head.split_off(h.len);
                            *head = Vec::new();
                            rest = &owned;
                        }
                        Ok(Some(h)) => {
                            failure.get_or_insert(format!("status {}", h.status));
                            return;
                        }
                        Err(e) => {
                            failure.get_or_insert(e);
                            return;
                        }
                    }
                }
                if *state != LState::Streaming {
                    return;
                }
                // One receive time per read: every event in these bytes
                // arrived together.
                let now = unix_micros();
                let ended = body.feed(rest, &mut |d| {
                    sse.feed(d, &mut |text| match parse_text(text) {
                        Some((seq, sent)) if seq < messages => {
                            tally.record(order.see(seq), seq, now, sent)
                        }
                        _ => tally.foreign += 1,
                    })
                });
                if ended.is_some() {
                    eof = true;
                }
            });
            match res {
                Ok(e) => eof |= e,
                Err(e) => {
                    failure.get_or_insert(format!("read: {e}"));
                }
            }
        }
        if became_stream {
            self.opening -= 1;
            self.tally.connected += 1;
            self.last_connected = Some(Instant::now());
        }
        let l = &mut self.listeners[i];
        if l.state == LState::Streaming {
            if failure.is_some() || eof {
                if let Some(mut t) = l.t.take() {
                    let _ = self.poll.registry().deregister(&mut t.sock);
                }
                l.state = LState::Gone;
                self.tally.disconnected += 1;
            }
        } else if let Some(why) = failure {
            self.listener_failed(i, &why);
        } else if eof {
            self.listener_failed(i, "closed before the response head");
        }
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
        if let (Some(_), Some(s)) = (self.pubs[j].busy.take(), self.schedule.as_mut()) {
            s.errors += 1;
            if s.errors <= 3 {
                eprintln!("loadgen: publish failed: {why}");
            }
        }
        self.open_publisher(j);
    }

    fn on_publisher(&mut self, j: usize) {
        let Engine { pubs, buf, .. } = self;
        let p = &mut pubs[j];
        let Some(t) = p.t.as_mut() else { return };
        if !t.established {
            match t.check_connected() {
                Ok(true) => self.pub_failures = 0,
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
            if p.busy.take().is_some() {
                if let Some(s) = self.schedule.as_mut() {
                    if good {
                        s.ok += 1;
                    } else {
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

    fn publish_due(&mut self) {
        let now = Instant::now();
        for j in 0..self.pubs.len() {
            if self.pubs[j].retry_at.is_some_and(|t| t <= now) && self.pub_failures < PUB_GIVE_UP {
                self.pubs[j].retry_at = None;
                self.open_publisher(j);
            }
        }
        let Some(s) = self.schedule.as_mut() else {
            return;
        };
        let Some(target) = &self.pub_target else {
            return;
        };
        while s.next < s.total
            && now >= s.start + Duration::from_secs_f64(f64::from(s.next) / s.rate)
        {
            let Some(j) = self
                .pubs
                .iter()
                .position(|p| p.busy.is_none() && p.t.as_ref().is_some_and(|t| t.established))
            else {
                break;
            };
            let sent = unix_micros();
            let mut text = format!("{} {} ", s.next, sent);
            while text.len() < s.size {
                text.push('x');
            }
            let req = match self.mode {
                Mode::Watercooler => {
                    let body = format!("message={}", text.replace(' ', "%20"));
                    format!(
                        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
                        target.path, target.authority, body.len(), body
                    )
                }
                Mode::Nchan => format!(
                    "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
                    target.path, target.authority, text.len(), text
                ),
            };
            let p = &mut self.pubs[j];
            p.busy = Some(s.next);
            if s.first_send_us == 0 {
                s.first_send_us = sent;
            }
            s.last_send_us = sent;
            s.next += 1;
            if let Err(e) = p.t.as_mut().map_or(Ok(()), |t| t.send(req.as_bytes())) {
                self.publisher_broke(j, &format!("write: {e}"));
                return;
            }
        }
    }

    fn on_pipe(&mut self, k: usize) {
        let p = &mut self.pipes[k];
        loop {
            // SAFETY: read into our own buffer from a descriptor we own.
            let n = unsafe { libc::read(p.fd, self.buf.as_mut_ptr().cast(), self.buf.len()) };
            if n > 0 {
                p.buf.extend_from_slice(&self.buf[..n as usize]);
            } else if n == 0 {
                p.eof = true;
                break;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != io::ErrorKind::WouldBlock {
                    p.eof = true;
                }
                break;
            }
        }
        while let Some(i) = p.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = p.buf.drain(..=i).collect();
            p.lines
                .push_back(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        if p.eof {
            let _ = self.poll.registry().deregister(&mut SourceFd(&p.fd));
        }
    }
}
