//! The event loop: one `mio::Poll` holding SSE listeners, publisher
//! connections and, when the work is split over processes, the pipes to the
//! parent or from the children. `turn` waits once and handles what is ready;
//! the phases (connect, idle, publish, drain) are loops around it in
//! `main.rs`, which runs two engines: one holding the listeners (or the
//! pipes) and one, on a thread of its own, holding only the publishers, so
//! that reading a fan-out never delays a publish. Listeners connect in waves
//! of at most `wave` outstanding connects, each bound to a source address
//! 127.0.0.B so that no (source, destination) pair carries more than
//! `PER_SOURCE` sockets; a listener counts as connected once it has a 200
//! `text/event-stream` head. With rooms, listener `j` (counted over every
//! process) is in room `j % rooms`, its URL's `{room}` replaced by the
//! room's name, and it expects exactly the messages of its room (message `i`
//! is in room `i % publish_rooms`); another room's message is counted as
//! leaked. With `--h2` (`set_h2(S)`) an entry of `listeners` is an HTTP/2
//! connection whose S streams are the listeners (each with its own room,
//! SSE parser and order, counted as one listener); the connection leaves
//! the connect wave once every stream has its response (or was refused),
//! and is retried whole only if none had joined. The frames are in
//! `h2.rs`. The publishers live in `engine/publishers.rs`.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::ClientConfig;

use crate::conn::{connect_from, parse_head, room_path, Body, Sse, Stamp, Target, Transport};
use crate::h2;
use crate::stats::{unix_micros, Orders, Tally};
use crate::timer::Timer;

mod publishers;
use publishers::Publisher;
pub use publishers::Schedule;

/// Sockets per (source address, destination) pair, under the ~28k ports.
pub const PER_SOURCE: usize = 25_000;
const PUB_BASE: usize = 1 << 40;
const PIPE_BASE: usize = 1 << 41;
const WAKE: usize = usize::MAX;
const TIMER: usize = usize::MAX - 1;
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
    room: u32,
    src: Ipv4Addr,
    attempts: u8,
    head: Vec<u8>,
    body: Body,
    sse: Sse,
    order: Orders,
    /// An HTTP/2 connection's streams (`--h2`): each is one listener.
    h2: Option<Box<H2>>,
}

/// The listeners of one HTTP/2 connection, stream `k` with id `2k + 1`.
struct H2 {
    conn: h2::Conn,
    streams: Vec<H2Stream>,
    /// Streams whose response has not begun (nor ended) yet.
    unanswered: usize,
    /// Whether any stream reached its SSE body (then a lost connection is
    /// not retried: its listeners left).
    joined_any: bool,
}

struct H2Stream {
    state: LState,
    room: u32,
    sse: Sse,
    order: Orders,
}

impl H2 {
    fn new(rooms: &[u32], publishers: u32) -> H2 {
        H2 {
            conn: h2::Conn::new(rooms.len()),
            streams: rooms
                .iter()
                .map(|&room| H2Stream {
                    state: LState::Opening,
                    room,
                    sse: Sse::default(),
                    order: Orders::new(publishers),
                })
                .collect(),
            unanswered: rooms.len(),
            joined_any: false,
        }
    }

    fn rooms(&self) -> Vec<u32> {
        self.streams.iter().map(|s| s.room).collect()
    }
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
    /// The same, offering `h2` by ALPN (`--h2` listeners).
    tls_h2: Arc<ClientConfig>,
    /// Listeners per HTTP/2 connection; 0: one HTTP/1.1 connection each.
    h2_streams: usize,
    buf: Vec<u8>,
    mode: Mode,
    messages: u32,
    /// Publisher connections, for the listeners' per-publisher order.
    publishers: u32,
    /// Rooms the listeners are spread over, and rooms that get messages
    /// (the first `publish_rooms` of them); both at least 1.
    rooms: u32,
    publish_rooms: u32,
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
    /// Wakes the loop at the next due time (publishers only).
    timer: Option<Timer>,
    pub schedule: Option<Schedule>,
    /// Publisher connects failed in a row; at `PUB_GIVE_UP` publishing stops.
    pub_failures: u32,
    pub pipes: Vec<Pipe>,
}

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
    pub fn new(
        mode: Mode,
        messages: u32,
        publishers: usize,
        wave: usize,
    ) -> Result<Engine, String> {
        Ok(Engine {
            poll: Poll::new().map_err(|e| format!("poll: {e}"))?,
            events: Events::with_capacity(4096),
            tls: crate::conn::tls_config()?,
            tls_h2: crate::conn::tls_config_alpn(&[b"h2"])?,
            h2_streams: 0,
            buf: vec![0; 64 * 1024],
            mode,
            messages,
            publishers: publishers.clamp(1, u32::MAX as usize) as u32,
            rooms: 1,
            publish_rooms: 1,
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
            timer: None,
            schedule: None,
            pub_failures: 0,
            pipes: Vec::new(),
        })
    }

    /// A waker for this engine's poll, for another thread (one per engine).
    pub fn waker(&self) -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker::new(self.poll.registry(), Token(WAKE))?))
    }

    /// Listeners in `rooms` rooms, of which the first `publish_rooms` get
    /// messages (round-robin); call before `add_listeners`.
    pub fn set_rooms(&mut self, rooms: u32, publish_rooms: u32) {
        self.rooms = rooms.max(1);
        self.publish_rooms = publish_rooms.clamp(1, self.rooms);
    }

    /// Listeners as streams of HTTP/2 connections, `streams` on each (0:
    /// HTTP/1.1, one connection each); call before `add_listeners`.
    pub fn set_h2(&mut self, streams: usize) {
        self.h2_streams = streams;
    }

    /// Plans `n` listeners over `targets`, round-robin; the `k`-th listener
    /// of a target uses source 127.0.0.0 + `src_base + k / PER_SOURCE`.
    /// The first is listener `first` of the whole run (its room is
    /// `(first + i) % rooms`).
    pub fn add_listeners(&mut self, targets: &[Target], n: usize, src_base: u32, first: usize) {
        self.targets = targets.to_vec();
        let u = targets.len();
        let rooms = self.rooms as usize;
        let s = self.h2_streams;
        let publishers = self.publishers;
        // With HTTP/2, entry `i` is a connection holding listeners
        // `i * s ..` (its streams); else entry `i` is listener `i`.
        let conns = if s > 0 { n.div_ceil(s) } else { n };
        let h2_rooms = |i: usize| -> Vec<u32> {
            (i * s..n.min((i + 1) * s))
                .map(|j| ((first + j) % rooms) as u32)
                .collect()
        };
        self.listeners = (0..conns)
            .map(|i| Listener {
                t: None,
                state: LState::Waiting,
                target: i % u,
                room: ((first + i) % rooms) as u32,
                src: Ipv4Addr::from(0x7f00_0000 + src_base + ((i / u) / PER_SOURCE) as u32),
                attempts: 0,
                head: Vec::new(),
                body: Body::Identity,
                sse: Sse::default(),
                order: Orders::new(publishers),
                h2: (s > 0).then(|| Box::new(H2::new(&h2_rooms(i), publishers))),
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
                if let Some(h) = l.h2.as_deref_mut().filter(|h| h.joined_any) {
                    // Keep the streams that joined; give up on the others.
                    for st in &mut h.streams {
                        if st.state == LState::Opening {
                            st.state = LState::Gone;
                            self.tally.failed += 1;
                        }
                    }
                    h.unanswered = 0;
                    l.state = LState::Streaming;
                    continue;
                }
                if let Some(mut t) = l.t.take() {
                    let _ = self.poll.registry().deregister(&mut t.sock);
                }
                l.state = LState::Gone;
                self.tally.failed += l.h2.as_ref().map_or(1, |h| h.streams.len() as u64);
            }
        }
        self.opening = 0;
        self.retry.clear();
        self.next_open = self.listeners.len();
    }

    pub fn alive(&self) -> u64 {
        self.tally.connected - self.tally.disconnected
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
        wait = wait.min(self.publish_wait(now));
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
            if tok == WAKE {
                // Another thread asks the caller to look at its flags.
            } else if tok == TIMER {
                if let Some(t) = &self.timer {
                    t.clear();
                }
            } else if tok >= PIPE_BASE {
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
        let tls = match (target.tls, &l.h2) {
            (false, _) => None,
            (true, None) => Some(&self.tls),
            (true, Some(_)) => Some(&self.tls_h2),
        };
        let req = match &mut l.h2 {
            Some(h) => {
                // A fresh connection: every stream starts over.
                **h = H2::new(&h.rooms(), self.publishers);
                let paths: Vec<String> = h
                    .streams
                    .iter()
                    .map(|st| room_path(&target.path, st.room))
                    .collect();
                h2::Conn::opening(target.tls, &target.authority, &paths)
            }
            None => format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: watercooler-loadgen\r\n\r\n",
                room_path(&target.path, l.room), target.authority
            )
            .into_bytes(),
        };
        let opened = connect_from(Some(l.src), target.addr).and_then(|sock| {
            let mut t = Transport::new(sock, tls, *target.addr.ip())?;
            t.send(&req)?;
            self.poll.registry().register(
                &mut t.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
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
            self.tally.failed += l.h2.as_ref().map_or(1, |h| h.streams.len() as u64);
        }
    }

    fn on_listener(&mut self, i: usize, writable: bool) {
        if self.listeners[i].h2.is_some() {
            return self.on_h2(i, writable);
        }
        let messages = self.messages;
        let publish_rooms = self.publish_rooms;
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
                room,
                ..
            } = l;
            let room = *room;
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
                    sse.feed(d, &mut |text| match Stamp::parse(text) {
                        Some(st) if st.seq < messages && st.seq % publish_rooms == room => tally
                            .record(room, order.see(st.seq), st.seq, now, st.due_us, st.sent_us),
                        Some(st) if st.seq < messages => tally.leak(room),
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
            self.tally.joined(self.listeners[i].room);
            self.last_connected = Some(Instant::now());
        }
        let l = &mut self.listeners[i];
        if l.state == LState::Streaming {
            if failure.is_some() || eof {
                if let Some(mut t) = l.t.take() {
                    let _ = self.poll.registry().deregister(&mut t.sock);
                }
                l.state = LState::Gone;
                let room = l.room;
                self.tally.left(room);
            }
        } else if let Some(why) = failure {
            self.listener_failed(i, &why);
        } else if eof {
            self.listener_failed(i, "closed before the response head");
        }
    }

    /// An HTTP/2 connection is ready: read frames, hand each stream's DATA
    /// to its SSE parser, answer SETTINGS and PING, return window credit.
    fn on_h2(&mut self, i: usize, writable: bool) {
        let messages = self.messages;
        let publish_rooms = self.publish_rooms;
        let Engine {
            listeners,
            tally,
            buf,
            last_connected,
            ..
        } = self;
        let l = &mut listeners[i];
        let (Some(t), Some(h)) = (l.t.as_mut(), l.h2.as_deref_mut()) else {
            return;
        };
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
        let mut eof = false;
        let mut refused: Option<String> = None;
        if failure.is_none() {
            let H2 {
                conn,
                streams,
                unanswered,
                joined_any,
            } = h;
            let res = t.read(buf, |bytes| {
                if failure.is_some() {
                    return;
                }
                // One receive time per read, as over HTTP/1.1.
                let now = unix_micros();
                let fed = conn.feed(bytes, &mut |ev| match ev {
                    h2::Event::Response(k, status) => {
                        let st = &mut streams[k];
                        if st.state != LState::Opening {
                            return;
                        }
                        *unanswered -= 1;
                        if status == Some(200) {
                            st.state = LState::Streaming;
                            *joined_any = true;
                            tally.joined(st.room);
                            *last_connected = Some(Instant::now());
                        } else {
                            st.state = LState::Gone;
                            tally.failed += 1;
                            tally.connect_errors += 1;
                            refused.get_or_insert(match status {
                                Some(code) => format!("stream {k}: status {code}"),
                                None => format!("stream {k}: a status other than 200"),
                            });
                        }
                    }
                    h2::Event::Data(k, d) => {
                        let H2Stream {
                            state,
                            room,
                            sse,
                            order,
                        } = &mut streams[k];
                        if *state != LState::Streaming {
                            return;
                        }
                        let room = *room;
                        sse.feed(d, &mut |text| match Stamp::parse(text) {
                            Some(st) if st.seq < messages && st.seq % publish_rooms == room => {
                                tally.record(
                                    room,
                                    order.see(st.seq),
                                    st.seq,
                                    now,
                                    st.due_us,
                                    st.sent_us,
                                )
                            }
                            Some(st) if st.seq < messages => tally.leak(room),
                            _ => tally.foreign += 1,
                        });
                    }
                    h2::Event::Ended(k, why) => {
                        let st = &mut streams[k];
                        match st.state {
                            LState::Streaming => tally.left(st.room),
                            LState::Opening => {
                                *unanswered -= 1;
                                tally.failed += 1;
                                tally.connect_errors += 1;
                                refused
                                    .get_or_insert(format!("stream {k}: {why} before a response"));
                            }
                            _ => {}
                        }
                        st.state = LState::Gone;
                    }
                    h2::Event::GoAway(_) => eof = true,
                });
                if let Err(e) = fed {
                    failure = Some(format!("HTTP/2: {e}"));
                }
            });
            match res {
                Ok(e) => eof |= e,
                Err(e) => {
                    failure.get_or_insert(format!("read: {e}"));
                }
            }
            if failure.is_none() && !conn.out.is_empty() {
                let out = std::mem::take(&mut conn.out);
                if let Err(e) = t.send(&out) {
                    failure = Some(format!("write: {e}"));
                }
            }
            if failure.is_none() && t.alpn_mismatch(b"h2") {
                failure = Some("the server did not choose h2 by ALPN".into());
            }
        }
        if let Some(why) = refused {
            if tally.connect_errors <= 3 {
                eprintln!("loadgen: connection {i}: {why}");
            }
        }
        let (unanswered, joined_any) = (h.unanswered, h.joined_any);
        if l.state == LState::Opening && unanswered == 0 {
            l.state = LState::Streaming;
            self.opening -= 1;
        }
        if failure.is_none() && !eof {
            return;
        }
        let l = &mut self.listeners[i];
        if l.state == LState::Opening && !joined_any {
            let why = failure.unwrap_or_else(|| "closed before any response".into());
            return self.listener_failed(i, &why);
        }
        // Listeners that had their stream left; the others failed.
        if let Some(mut t) = l.t.take() {
            let _ = self.poll.registry().deregister(&mut t.sock);
        }
        if l.state == LState::Opening {
            self.opening -= 1;
        }
        l.state = LState::Gone;
        if let Some(h) = l.h2.as_deref_mut() {
            for st in &mut h.streams {
                match st.state {
                    LState::Streaming => self.tally.left(st.room),
                    LState::Opening => self.tally.failed += 1,
                    _ => {}
                }
                st.state = LState::Gone;
            }
        }
        if let Some(why) = failure {
            eprintln!("loadgen: connection {i}: {why}");
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
