//! The event loop: one `mio::Poll`, one `Slab` of sockets, one timer queue.
//! Each turn polls until the next deadline, dispatches every event to its
//! socket (which reports `Step::Keep` or `Step::Close`), then, after the
//! batch, fans new messages out to every stream (so messages that arrived
//! together leave in one write), removes closed sockets, and fires due
//! timers. A socket's token carries its slot's generation, so an event for a
//! socket that has since been closed can never reach the next one.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::{ServerConfig, ServerConnection};
use slab::Slab;

use crate::assets::Assets;
use crate::cli::Options;
use crate::client::{Client, Ctx, State, Step};
use crate::http::response::DateCache;
use crate::output::Output;
use crate::presence::Presence;
use crate::room::Room;
use crate::routes::Site;
use crate::sse;
use crate::stats::Stats;
use crate::timer::Timers;
use crate::transport::Transport;
use crate::{info, warn};

/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);
/// Presence is broadcast at most this often.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// The kernel's queue of connections not yet accepted (capped by somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

enum Socket {
    Listener { listener: TcpListener, secure: bool },
    Client(Box<Client>),
}

struct Slot {
    generation: u32,
    socket: Socket,
}

pub struct Server {
    poll: Poll,
    sockets: Slab<Slot>,
    next_generation: u32,
    timers: Timers,
    room: Room,
    /// Slab keys of the SSE streams; a stream knows its index (`State::Stream`).
    streams: Vec<usize>,
    assets: Assets,
    opts: Options,
    tls: Arc<ServerConfig>,
    date: DateCache,
    pub stats: Stats,
    presence: Presence,
    closing: Vec<Token>,
    scratch: Vec<u8>,
    due: Vec<u64>,
    heartbeat: Rc<[u8]>,
    next_heartbeat: Instant,
    /// No message went out since the last heartbeat tick.
    quiet: bool,
    next_presence: Instant,
    accept_paused_until: Option<Instant>,
    pub addrs: Vec<(SocketAddr, bool)>,
}

fn token(key: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | key)
}

fn split(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

/// Binds with a listen backlog of `LISTEN_BACKLOG`: a burst of thousands of
/// connects must not overflow it (std and mio use a smaller one).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    use std::os::fd::AsRawFd;
    // SAFETY: `listen` on a socket we own; calling it again on a listening
    // socket only changes the backlog (Linux, BSD).
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

impl Server {
    pub fn new(opts: Options, tls: Arc<ServerConfig>) -> Result<Server, String> {
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let mut sockets = Slab::with_capacity(1024);
        let mut addrs = Vec::new();
        for (port, secure) in [(opts.port, false), (opts.secure_port, true)] {
            let addr = SocketAddr::new(opts.bind, port);
            let mut listener = bind(addr).map_err(|e| {
                format!(
                    "cannot listen on {addr} ({}): {e}",
                    if secure { "secure port" } else { "port" }
                )
            })?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let entry = sockets.vacant_entry();
            poll.registry()
                .register(&mut listener, token(entry.key(), 0), Interest::READABLE)
                .map_err(|e| format!("register: {e}"))?;
            entry.insert(Slot {
                generation: 0,
                socket: Socket::Listener { listener, secure },
            });
            addrs.push((local, secure));
        }
        let now = Instant::now();
        let mut heartbeat = Vec::new();
        sse::comment(&mut heartbeat, "heartbeat");
        let presence = Presence {
            node: opts.name.clone(),
            ..Presence::default()
        };
        Ok(Server {
            poll,
            sockets,
            next_generation: 1,
            timers: Timers::default(),
            room: Room::new(&opts.name, opts.history),
            streams: Vec::new(),
            assets: Assets::new(&opts.name),
            tls,
            date: DateCache::new(),
            stats: Stats::default(),
            presence,
            closing: Vec::new(),
            scratch: vec![0; 16 * 1024],
            due: Vec::new(),
            heartbeat: heartbeat.into(),
            next_heartbeat: now + opts.heartbeat,
            quiet: true,
            next_presence: now + PRESENCE_EVERY,
            accept_paused_until: None,
            addrs,
            opts,
        })
    }

    /// Runs until a fatal poll error (none is expected).
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(now));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                self.dispatch(event.token(), readable, event.is_writable(), now);
            }
            self.fan_out(now);
            self.fire_timers(now);
            self.fan_out(now);
            self.remove_closed();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.next_heartbeat.min(self.next_presence);
        if let Some(t) = self.timers.next_deadline() {
            next = next.min(t);
        }
        if let Some(t) = self.accept_paused_until {
            next = next.min(t);
        }
        Some(next)
    }

    fn dispatch(&mut self, t: Token, readable: bool, writable: bool, now: Instant) {
        let (key, generation) = split(t);
        match self.sockets.get(key) {
            Some(slot) if slot.generation == generation => {}
            _ => return, // a socket closed earlier in this batch, or stale
        }
        if let Some(Slot {
            socket: Socket::Listener { secure, .. },
            ..
        }) = self.sockets.get(key)
        {
            let secure = *secure;
            if self.accept_paused_until.is_none() {
                self.accept(key, secure, now);
            }
            return;
        }
        self.with_client(t, now, |c, cx| c.ready(readable, writable, cx));
    }

    /// Runs `f` on the client at `t` with a context of the rest of the server;
    /// queues the client for removal if `f` says so.
    fn with_client(
        &mut self,
        t: Token,
        now: Instant,
        f: impl FnOnce(&mut Client, &mut Ctx) -> Step,
    ) {
        let (key, generation) = split(t);
        let Server {
            poll,
            sockets,
            timers,
            room,
            streams,
            assets,
            opts,
            date,
            stats,
            presence,
            closing,
            scratch,
            ..
        } = self;
        let Some(Slot {
            generation: g,
            socket: Socket::Client(client),
        }) = sockets.get_mut(key)
        else {
            return;
        };
        if *g != generation {
            return;
        }
        let site = Site {
            assets,
            max_message: opts.max_message,
        };
        let mut cx = Ctx {
            now,
            token: t,
            registry: poll.registry(),
            timers,
            scratch,
            room,
            listeners: streams,
            site: &site,
            presence,
            date,
            stats,
            request_timeout: opts.request_timeout,
            idle_timeout: opts.idle_timeout,
            retry_ms: 2000,
        };
        if f(client, &mut cx) == Step::Close {
            closing.push(t);
        }
    }

    fn accept(&mut self, key: usize, secure: bool, now: Instant) {
        loop {
            let Some(Slot {
                socket: Socket::Listener { listener, .. },
                ..
            }) = self.sockets.get(key)
            else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_resources(&e) => {
                    warn!("accept paused for {ACCEPT_PAUSE:?}: {e}");
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
                Err(e) => {
                    info!("accept failed: {e}");
                    continue;
                }
            };
            self.stats.accepted += 1;
            if self.sockets.len() >= self.opts.max_connections + self.addrs.len() {
                refuse(stream);
                self.stats.refused_full += 1;
                continue;
            }
            self.add_client(stream, peer, secure, now);
        }
    }

    fn add_client(&mut self, mut stream: TcpStream, peer: SocketAddr, secure: bool, now: Instant) {
        let _ = stream.set_nodelay(true);
        let transport = if secure {
            match ServerConnection::new(self.tls.clone()) {
                Ok(conn) => Transport::Tls(Box::new(conn)),
                Err(e) => {
                    warn!("{peer} tls setup failed: {e}");
                    return;
                }
            }
        } else {
            Transport::Plain
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let entry = self.sockets.vacant_entry();
        let t = token(entry.key(), generation);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, t, Interest::READABLE)
        {
            warn!("{peer} register failed: {e}");
            return;
        }
        entry.insert(Slot {
            generation,
            socket: Socket::Client(Box::new(Client::new(stream, transport, peer))),
        });
        // Data may already be waiting (edge-triggered: no event for it yet).
        self.with_client(t, now, |c, cx| {
            c.start(cx);
            c.ready(true, false, cx)
        });
    }

    /// Delivers the room's new frames (and due heartbeats and presence) to
    /// every stream: each frame is shared, and all that a stream has pending
    /// leaves in one vectored write.
    fn fan_out(&mut self, now: Instant) {
        let mut frames = self.room.take_outbox();
        if !frames.is_empty() {
            self.quiet = false;
        }
        if now >= self.next_heartbeat {
            if self.quiet {
                frames.push(self.heartbeat.clone());
            }
            self.quiet = true;
            self.next_heartbeat = now + self.opts.heartbeat;
        }
        if now >= self.next_presence {
            self.next_presence = now + PRESENCE_EVERY;
            if self.presence.listeners != self.streams.len() {
                self.presence.listeners = self.streams.len();
                let mut f = Vec::new();
                sse::encode(&mut f, None, Some("presence"), &self.presence.json());
                frames.push(f.into());
            }
        }
        if frames.is_empty() {
            return;
        }
        self.stats.deliveries += (frames.len() * self.streams.len()) as u64;
        for i in 0..self.streams.len() {
            let Some(&key) = self.streams.get(i) else {
                break;
            };
            let generation = match self.sockets.get(key) {
                Some(slot) => slot.generation,
                None => continue,
            };
            self.with_client(token(key, generation), now, |c, cx| {
                for f in &frames {
                    if c.push_frame(f) == Step::Close {
                        c.output = Output::default();
                        cx.stats.evicted += 1;
                        return Step::Close;
                    }
                }
                c.flush_and_settle(cx)
            });
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            let listeners: Vec<(usize, bool)> = self
                .sockets
                .iter()
                .filter_map(|(k, s)| match &s.socket {
                    Socket::Listener { secure, .. } => Some((k, *secure)),
                    _ => None,
                })
                .collect();
            for (key, secure) in listeners {
                self.accept(key, secure, now);
            }
        }
        let mut due = std::mem::take(&mut self.due);
        self.timers.expire(now, &mut due);
        for &raw in &due {
            self.with_client(Token(raw as usize), now, |c, cx| c.expired(cx));
        }
        due.clear();
        self.due = due;
    }

    fn remove_closed(&mut self) {
        while let Some(t) = self.closing.pop() {
            let (key, generation) = split(t);
            if self
                .sockets
                .get(key)
                .is_none_or(|s| s.generation != generation)
            {
                continue;
            }
            let slot = self.sockets.remove(key);
            let Socket::Client(mut client) = slot.socket else {
                continue;
            };
            if let State::Stream { slot: i } = client.state {
                self.streams.swap_remove(i);
                if let Some(&moved) = self.streams.get(i) {
                    if let Some(Slot {
                        socket: Socket::Client(c),
                        ..
                    }) = self.sockets.get_mut(moved)
                    {
                        c.state = State::Stream { slot: i };
                    }
                }
            }
            client.close();
            let _ = self.poll.registry().deregister(&mut client.stream);
        }
    }
}

/// Answers a connection over the limit with a short 503, without waiting.
fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 20\r\nconnection: close\r\nretry-after: 5\r\n\r\ntoo many connections",
    );
}

fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
