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
use rustls::ServerConfig;
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::assets::Assets;
use crate::cli::Options;
use crate::client::{Client, Ctx, State, Step};
use crate::cluster::config::ClusterConfig;
use crate::cluster::members::Members;
use crate::cluster::wire::{self, Frame};
use crate::health::Phase;
use crate::http::response::DateCache;
use crate::output::Output;
use crate::peer::{nodes_frame, PeerCtx, PeerLink};
use crate::presence::Presence;
use crate::room::Room;
use crate::routes::Site;
use crate::sse;
use crate::stats::Stats;
use crate::timer::Timers;
use crate::tls_session::TlsSession;
use crate::transport::Transport;
use crate::{debug, info, warn};

/// The token of the signal source (slab keys never reach it).
const SIGNALS: Token = Token(usize::MAX);
/// The reconnect delay hinted to browsers when the node shuts down.
const DRAIN_RETRY_MS: u64 = 1000;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);
/// Presence is broadcast at most this often.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// The kernel's queue of connections not yet accepted (capped by somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    Http,
    Https,
    Cluster,
}

enum Socket {
    Listener { listener: TcpListener, port: Port },
    Client(Box<Client>),
    Peer(Box<PeerLink>),
}

/// The cluster side of the node, when it runs with `--config`.
struct Cluster {
    cookie: String,
    /// Our cluster address as the others dial it (from the cluster file).
    my_addr: String,
    sync_until: Instant,
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
    /// Bound listeners and whether each is the secure port (HTTP ones).
    pub addrs: Vec<(SocketAddr, bool)>,
    pub cluster_addr: Option<SocketAddr>,
    cluster: Option<Cluster>,
    members: Members,
    /// Starting (waiting for the cluster), serving, or draining for shutdown.
    phase: Phase,
    started: Instant,
    drain_until: Option<Instant>,
    signals: Signals,
    /// Peers or counts changed: rebuild presence, tell browsers and peers.
    presence_changed: bool,
    /// Local listener count last told to the peers.
    told_peers: usize,
    /// Peer links whose read budget ran out; read again before sleeping.
    more_to_read: Vec<Token>,
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
    pub fn new(
        opts: Options,
        tls: Arc<ServerConfig>,
        cluster: Option<ClusterConfig>,
    ) -> Result<Server, String> {
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let mut sockets = Slab::with_capacity(1024);
        let mut addrs = Vec::new();
        let now = Instant::now();
        let mut members = Members::new(&opts.name, seed());
        let mut cluster_addr = None;
        let mut ports = vec![(opts.port, Port::Http), (opts.secure_port, Port::Https)];
        let cluster = match cluster {
            None => None,
            Some(c) => {
                let mut my_addr = String::new();
                for m in &c.nodes {
                    if m.name == opts.name {
                        my_addr = m.addr.to_string();
                        ports.push((m.addr.port(), Port::Cluster));
                    } else {
                        members.learn(&m.name, m.addr, true, now);
                    }
                }
                Some(Cluster {
                    cookie: c.cookie,
                    my_addr,
                    sync_until: now + c.sync_nodes_timeout,
                })
            }
        };
        for (port, kind) in ports {
            let addr = SocketAddr::new(opts.bind, port);
            let mut listener = bind(addr).map_err(|e| {
                let what = match kind {
                    Port::Http => "port",
                    Port::Https => "secure port",
                    Port::Cluster => "cluster port",
                };
                format!("cannot listen on {addr} ({what}): {e}")
            })?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let entry = sockets.vacant_entry();
            poll.registry()
                .register(&mut listener, token(entry.key(), 0), Interest::READABLE)
                .map_err(|e| format!("register: {e}"))?;
            if kind == Port::Cluster {
                cluster_addr = Some(local);
            } else {
                addrs.push((local, kind == Port::Https));
            }
            entry.insert(Slot {
                generation: 0,
                socket: Socket::Listener {
                    listener,
                    port: kind,
                },
            });
        }
        let mut signals =
            Signals::new([libc::SIGTERM, libc::SIGINT]).map_err(|e| format!("signals: {e}"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| format!("register signals: {e}"))?;
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
            cluster_addr,
            cluster,
            members,
            phase: Phase::Starting,
            started: now,
            drain_until: None,
            signals,
            presence_changed: false,
            told_peers: 0,
            more_to_read: Vec::new(),
            opts,
        })
    }

    /// Runs until shut down by a signal (after draining), or a fatal poll
    /// error (none is expected).
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.start_serving_when_synced(now);
            if self.drained(now) {
                return Ok(());
            }
            let timeout = if self.more_to_read.is_empty() {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                if event.token() == SIGNALS {
                    if self.on_signal(now) {
                        return Ok(());
                    }
                    continue;
                }
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                self.dispatch(event.token(), readable, event.is_writable(), now);
            }
            for t in std::mem::take(&mut self.more_to_read) {
                self.dispatch(t, true, false, now);
            }
            self.fan_out(now);
            self.fire_timers(now);
            self.fan_out(now);
            self.remove_closed(now);
            self.dial(now);
        }
    }

    /// The node serves once every listed node has linked and sent its replay,
    /// or `sync_nodes_timeout` has passed (the tutorial's sync): a node
    /// restarting fills its history first. Until then requests are held
    /// (only `/healthz` and `/metrics` answer, with "starting").
    fn start_serving_when_synced(&mut self, now: Instant) {
        if self.phase != Phase::Starting {
            return;
        }
        if let Some(c) = &self.cluster {
            if now < c.sync_until && !self.members.all_listed_synced() {
                return;
            }
            let linked = self
                .members
                .known
                .iter()
                .filter(|k| k.link.is_some())
                .count();
            info!(
                "serving HTTP: {linked} of {} known nodes linked",
                self.members.known.len()
            );
        }
        self.phase = Phase::Serving;
        let held: Vec<Token> = self
            .sockets
            .iter()
            .filter_map(|(k, s)| match &s.socket {
                Socket::Client(c) if c.held => Some(token(k, s.generation)),
                _ => None,
            })
            .collect();
        for t in held {
            self.with_client(t, now, |c, cx| c.resume(cx));
        }
    }

    /// SIGTERM or SIGINT. The first starts a drain; a second one exits at
    /// once (true).
    fn on_signal(&mut self, now: Instant) -> bool {
        let mut got = false;
        for sig in self.signals.pending() {
            info!("signal {sig} received");
            got = true;
        }
        if !got {
            return false;
        }
        if self.phase == Phase::Draining {
            warn!("second signal: exiting now");
            return true;
        }
        self.begin_drain(now);
        false
    }

    /// Stop accepting, tell the peers we leave (so they don't count it as a
    /// failure), send every stream a last `retry:` hint and end it once
    /// written, finish requests in flight; `drained` says when all is done.
    fn begin_drain(&mut self, now: Instant) {
        self.phase = Phase::Draining;
        self.drain_until = Some(now + self.opts.drain);
        let keys: Vec<usize> = self
            .sockets
            .iter()
            .filter(|(_, s)| matches!(s.socket, Socket::Listener { .. }))
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            if let Socket::Listener { mut listener, .. } = self.sockets.remove(k).socket {
                let _ = self.poll.registry().deregister(&mut listener);
            }
        }
        info!(
            "draining: {} listeners, {} connections (at most {:?})",
            self.streams.len(),
            self.sockets.len(),
            self.opts.drain
        );
        self.fan_out(now);
        let mut last = Vec::new();
        sse::retry(&mut last, DRAIN_RETRY_MS);
        let last: Rc<[u8]> = last.into();
        let all: Vec<(Token, bool)> = self
            .sockets
            .iter()
            .filter_map(|(k, s)| match &s.socket {
                Socket::Client(c) => Some((token(k, s.generation), c.is_stream())),
                Socket::Peer(_) => Some((token(k, s.generation), false)),
                Socket::Listener { .. } => None,
            })
            .collect();
        for (t, stream) in all {
            if matches!(
                self.sockets.get(split(t).0).map(|s| &s.socket),
                Some(Socket::Peer(_))
            ) {
                self.with_peer(t, now, |p, cx| p.leave(cx));
                continue;
            }
            self.with_client(t, now, |c, cx| {
                if stream && c.push_frame(&last) == Step::Close {
                    return Step::Close;
                }
                c.drain(cx)
            });
        }
    }

    /// Draining is over: every connection closed, or the drain time spent.
    fn drained(&self, now: Instant) -> bool {
        match self.drain_until {
            None => false,
            Some(t) if now >= t => {
                warn!("drain time over: {} connections cut", self.sockets.len());
                true
            }
            Some(_) => self.sockets.is_empty(),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.next_heartbeat.min(self.next_presence);
        if let Some(t) = self.members.next_dial() {
            next = next.min(t);
        }
        if let (Phase::Starting, Some(c)) = (self.phase, &self.cluster) {
            next = next.min(c.sync_until);
        }
        if let Some(t) = self.drain_until {
            next = next.min(t);
        }
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
        match self.sockets.get(key).map(|s| &s.socket) {
            Some(Socket::Listener { port, .. }) => {
                let port = *port;
                if self.accept_paused_until.is_none() {
                    self.accept(key, port, now);
                }
            }
            Some(Socket::Client(_)) => {
                self.with_client(t, now, |c, cx| c.ready(readable, writable, cx))
            }
            Some(Socket::Peer(_)) => {
                self.with_peer(t, now, |p, cx| p.ready(readable, writable, cx))
            }
            None => {}
        }
    }

    /// Like `with_client`, for a peer link.
    fn with_peer(
        &mut self,
        t: Token,
        now: Instant,
        f: impl FnOnce(&mut PeerLink, &mut PeerCtx) -> Step,
    ) {
        let (key, generation) = split(t);
        let Server {
            poll,
            sockets,
            timers,
            room,
            streams,
            stats,
            closing,
            scratch,
            members,
            cluster,
            presence_changed,
            more_to_read,
            ..
        } = self;
        let Some(cluster) = cluster else {
            return;
        };
        let Some(Slot {
            generation: g,
            socket: Socket::Peer(link),
        }) = sockets.get_mut(key)
        else {
            return;
        };
        if *g != generation {
            return;
        }
        let mut more = false;
        let mut cx = PeerCtx {
            now,
            token: t,
            registry: poll.registry(),
            timers,
            scratch,
            room,
            members,
            my_addr: &cluster.my_addr,
            cookie: &cluster.cookie,
            local_listeners: streams.len(),
            stats,
            presence_changed,
            more_to_read: &mut more,
        };
        if f(link, &mut cx) == Step::Close {
            closing.push(t);
        } else if more {
            more_to_read.push(t);
        }
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
            phase,
            started,
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
            phase: *phase,
            started: *started,
        };
        if f(client, &mut cx) == Step::Close {
            closing.push(t);
        }
    }

    fn accept(&mut self, key: usize, port: Port, now: Instant) {
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
            match port {
                Port::Cluster => {
                    self.add_peer(stream, peer, None, now);
                }
                Port::Http | Port::Https => self.add_client(stream, peer, port == Port::Https, now),
            }
        }
    }

    /// Registers a peer link: an accepted one (`dial` None) or our dial.
    fn add_peer(
        &mut self,
        mut stream: TcpStream,
        addr: SocketAddr,
        dial: Option<&str>,
        now: Instant,
    ) -> Option<Token> {
        let _ = stream.set_nodelay(true);
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let entry = self.sockets.vacant_entry();
        let t = token(entry.key(), generation);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut stream, t, interest) {
            warn!("{addr} register failed: {e}");
            return None;
        }
        let link = match dial {
            Some(name) => PeerLink::dial(stream, addr, name, now),
            None => PeerLink::accept(stream, addr, now),
        };
        self.stats.open_peers += 1;
        entry.insert(Slot {
            generation,
            socket: Socket::Peer(Box::new(link)),
        });
        self.with_peer(t, now, |p, cx| {
            p.start(cx);
            Step::Keep
        });
        Some(t)
    }

    /// Dials the nodes whose time has come (non-blocking connect: the link
    /// learns the outcome when the socket turns writable).
    fn dial(&mut self, now: Instant) {
        // A draining node said goodbye: it links to no one again.
        if self.cluster.is_none() || self.phase == Phase::Draining {
            return;
        }
        for (name, addr) in self.members.due(now) {
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    if let Some(t) = self.add_peer(stream, addr, Some(&name), now) {
                        self.members.dialing(&name, t.0 as u64);
                    }
                }
                Err(e) => {
                    debug!("dial {name} ({addr}) failed: {e}");
                    self.members.dialing(&name, 0);
                    self.members.dial_ended(&name, 0, now);
                }
            }
        }
    }

    fn add_client(&mut self, mut stream: TcpStream, peer: SocketAddr, secure: bool, now: Instant) {
        let _ = stream.set_nodelay(true);
        let transport = if secure {
            match TlsSession::new(self.tls.clone()) {
                Ok(session) => Transport::Tls(Box::new(session)),
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
        if secure {
            self.stats.open_tls += 1;
        } else {
            self.stats.open_plain += 1;
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
        self.send_to_peers(now);
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
            if self.presence_changed || self.presence.listeners != self.streams.len() {
                self.presence_changed = false;
                self.presence.listeners = self.streams.len();
                self.presence.peers = self
                    .sockets
                    .iter()
                    .filter_map(|(_, s)| match &s.socket {
                        Socket::Peer(p) if p.is_up() => {
                            Some((p.name.clone().unwrap_or_default(), p.listeners))
                        }
                        _ => None,
                    })
                    .collect();
                self.presence.peers.sort();
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

    /// Sends our new messages to every linked peer (each frame encoded once),
    /// the membership when it grew, and our listener count when it changed.
    fn send_to_peers(&mut self, now: Instant) {
        // Taken even when alone: the outbox must not hold messages forever.
        let outbox = self.room.take_peer_outbox();
        if self.cluster.is_none() {
            return;
        }
        let mut frames: Vec<Rc<[u8]>> = Vec::new();
        for e in outbox {
            let mut buf = Vec::with_capacity(e.text.len() + 24);
            wire::encode_message(e.origin, e.seq, &e.text, &mut buf);
            frames.push(buf.into());
        }
        if self.members.take_changed() {
            if let Some(c) = &self.cluster {
                let mut buf = Vec::new();
                wire::encode(&nodes_frame(&self.members, &c.my_addr), &mut buf);
                frames.push(buf.into());
            }
        }
        if now >= self.next_presence && self.told_peers != self.streams.len() {
            self.told_peers = self.streams.len();
            let mut buf = Vec::new();
            wire::encode(
                &Frame::Presence {
                    listeners: self.told_peers as u32,
                },
                &mut buf,
            );
            frames.push(buf.into());
        }
        if frames.is_empty() {
            return;
        }
        let peers: Vec<Token> = self
            .sockets
            .iter()
            .filter_map(|(k, s)| match &s.socket {
                Socket::Peer(p) if p.takes_live() => Some(token(k, s.generation)),
                _ => None,
            })
            .collect();
        for t in peers {
            self.with_peer(t, now, |p, cx| {
                for f in &frames {
                    if p.send_shared(f) == Step::Close {
                        return Step::Close;
                    }
                }
                p.flush_and_settle(cx)
            });
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            let listeners: Vec<(usize, Port)> = self
                .sockets
                .iter()
                .filter_map(|(k, s)| match &s.socket {
                    Socket::Listener { port, .. } => Some((k, *port)),
                    _ => None,
                })
                .collect();
            for (key, port) in listeners {
                self.accept(key, port, now);
            }
        }
        let mut due = std::mem::take(&mut self.due);
        self.timers.expire(now, &mut due);
        for &raw in &due {
            let t = Token(raw as usize);
            match self.sockets.get(split(t).0).map(|s| &s.socket) {
                Some(Socket::Client(_)) => self.with_client(t, now, |c, cx| c.expired(cx)),
                Some(Socket::Peer(_)) => self.with_peer(t, now, |p, cx| p.expired(cx)),
                _ => {}
            }
        }
        due.clear();
        self.due = due;
    }

    fn remove_closed(&mut self, now: Instant) {
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
            let mut client = match slot.socket {
                Socket::Client(client) => {
                    if client.transport.is_tls() {
                        self.stats.open_tls -= 1;
                    } else {
                        self.stats.open_plain -= 1;
                    }
                    client
                }
                Socket::Peer(mut link) => {
                    self.stats.open_peers -= 1;
                    if let Some(name) = &link.name {
                        if link.is_up() {
                            self.members.link_down(name, t.0 as u64, now);
                            self.presence_changed = true;
                        }
                        if link.dialed {
                            self.members.dial_ended(name, t.0 as u64, now);
                        } else {
                            self.members.incoming_ended(name, t.0 as u64, now);
                        }
                    }
                    let _ = self.poll.registry().deregister(&mut link.stream);
                    continue;
                }
                Socket::Listener { .. } => continue,
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

/// A seed for dial jitter: differs between nodes and runs.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}
