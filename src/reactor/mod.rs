//! The event loop: one `mio::Poll`, one slab of sockets, one timer queue.
//! Each turn polls until the next deadline (or not at all when a socket
//! still has bytes to read), dispatches every event to its socket (which
//! reports `Step::Keep` or `Step::Close`), fires due timers, then, after the
//! batch, delivers what the turn produced — new messages to the other nodes
//! and to every listener, so messages that arrived together leave in one
//! write — removes closed sockets, and dials what the bus asks for.
//!
//! Its parts: `sockets` (the slab and tokens), `listen` (the ports), `open`
//! (accepting, dialling, upgrading to HTTP/2),
//! `timers` (every deadline, the node's own included) and `lifecycle`
//! (start, serve, drain). The connections (`conn`), what requests do
//! (`service`) and how messages reach other nodes (`bus`) live in their own
//! modules.

mod lifecycle;
pub mod listen;
mod open;
pub mod sockets;
pub mod timers;

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rustls::ServerConfig;
use signal_hook_mio::v1_0::Signals;

use crate::bus::mesh::config::ClusterConfig;
use crate::bus::mesh::{LinkEnd, Mesh};
use crate::bus::redis::node::RedisBus;
use crate::bus::Bus;
use crate::cli::Options;
use crate::conn::{Env, Ready, Step};
use crate::http::response::DateCache;
use crate::room;
use crate::service::health::Phase;
use crate::service::listeners::Listener;
use crate::service::stats::Stats;
use crate::service::{Config, Service};
use crate::{debug, warn};
use listen::{Kind, Port};
use sockets::{Cx, Socket, Sockets};
use timers::{Deadline, Key, Timers};

/// The token of the signal source (slab keys never reach it).
const SIGNALS: Token = Token(usize::MAX);
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);
/// Presence is refreshed (and broadcast when it changed) this often.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// A room without listeners or messages for this long may be forgotten
/// when a new one needs its place.
const ROOM_IDLE: Duration = Duration::from_secs(600);

pub struct Server {
    poll: Poll,
    sockets: Sockets,
    ports: Vec<Port>,
    timers: Timers,
    service: Service,
    bus: Bus,
    tls: Arc<ServerConfig>,
    /// The links' TLS, when the mesh runs them over it (`link_tls = on`).
    link_tls: Option<crate::tls::LinkTls>,
    date: DateCache,
    /// The one read buffer every socket reads through.
    scratch: Vec<u8>,
    /// Sockets to remove after the batch.
    closing: Vec<Token>,
    /// Sockets whose reading was cut short: read again before sleeping.
    pending: Vec<Token>,
    /// Sockets holding answers until the turn's log commit.
    held: Vec<Token>,
    store_deadline: Deadline,
    /// Sockets to flush after a fan-out queued frames for them.
    touched: Vec<Token>,
    /// What this turn's ticks made for every listener (heartbeat, presence).
    broadcast: Vec<Rc<[u8]>>,
    /// The presence tick came this turn (the peers hear our count then).
    presence_tick: bool,
    bus_deadline: Deadline,
    accept_paused: bool,
    /// Set by a second signal, or when the drain's time is up.
    exit: bool,
    signals: Signals,
    opts: Options,
    /// Bound HTTP ports and whether each is the secure one.
    pub addrs: Vec<(SocketAddr, bool)>,
    pub cluster_addr: Option<SocketAddr>,
}

impl Server {
    pub fn new(
        opts: Options,
        tls: Arc<ServerConfig>,
        cluster: Option<ClusterConfig>,
    ) -> Result<Server, String> {
        let now = Instant::now();
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let bus = match cluster {
            None => Bus::Alone,
            Some(c) => match c.redis.clone() {
                Some(url) => {
                    let maxlen = (opts.history * 10).max(10_000);
                    let until = now + c.sync_nodes_timeout;
                    let tls = match url.tls {
                        true => Some(crate::conn::tls_buffered::config(url.ca_file.as_deref())?),
                        false => None,
                    };
                    let mut r = RedisBus::new(
                        url,
                        &opts.name,
                        maxlen,
                        opts.max_message,
                        until,
                        seed(),
                        now,
                    );
                    r.tls = tls;
                    Bus::Redis(Box::new(r))
                }
                None => Bus::Mesh(Box::new(Mesh::new(c, &opts.name, seed(), now))),
            },
        };
        let link_tls = match &bus {
            Bus::Mesh(m) if m.link_tls => Some(crate::tls::link_tls()?),
            Bus::Mesh(m) => {
                let everywhere = if m.listen.ip().is_loopback() {
                    ""
                } else {
                    " (and this node is not on loopback!)"
                };
                warn!("link_tls = off: links between nodes are in clear text, readable and alterable on the path{everywhere}");
                None
            }
            _ => None,
        };
        let mut binds = vec![
            (SocketAddr::new(opts.bind, opts.port), Kind::Http),
            (SocketAddr::new(opts.bind, opts.secure_port), Kind::Https),
        ];
        if let Bus::Mesh(m) = &bus {
            // The host of this node's own entry, not every interface.
            let ip = opts.cluster_bind.unwrap_or(m.listen.ip());
            binds.push((SocketAddr::new(ip, m.listen.port()), Kind::Cluster));
        }
        let mut ports = Vec::new();
        for (i, (addr, kind)) in binds.into_iter().enumerate() {
            let shared = opts.worker.is_some() && kind != Kind::Cluster;
            let mut port = Port::bind(addr, kind, shared)?;
            port.register(poll.registry(), i)?;
            ports.push(port);
        }
        let mut signals =
            Signals::new([libc::SIGTERM, libc::SIGINT]).map_err(|e| format!("signals: {e}"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| format!("register signals: {e}"))?;
        let config = Config {
            max_message: opts.max_message,
            request_timeout: opts.request_timeout,
            idle_timeout: opts.idle_timeout,
            rooms: room::Limits {
                history: opts.history,
                max_rooms: opts.max_rooms,
                max_bytes: opts.history_mb << 20,
                idle_micros: ROOM_IDLE.as_micros() as u64,
            },
            backlog: opts.backlog,
            publish_rate: opts.publish_rate,
            publish_burst: opts.publish_burst,
            trust_proxy: opts.trust_proxy,
            hsts: opts.cert.is_some(),
        };
        let mut service = Service::new(&opts.name, config, now);
        if let Some(dir) = &opts.data {
            service.open_log(dir, opts.fsync, now)?;
        }
        let mut timers = Timers::default();
        timers.schedule(now + opts.heartbeat, Key::Heartbeat);
        timers.schedule(now + PRESENCE_EVERY, Key::Presence);
        // The first turn dials what the bus has to.
        timers.schedule(now, Key::Bus);
        Ok(Server {
            poll,
            sockets: Sockets::new(),
            addrs: ports
                .iter()
                .filter(|p| p.kind != Kind::Cluster)
                .map(|p| (p.addr, p.kind == Kind::Https))
                .collect(),
            cluster_addr: ports
                .iter()
                .find(|p| p.kind == Kind::Cluster)
                .map(|p| p.addr),
            ports,
            timers,
            service,
            bus,
            tls,
            link_tls,
            date: DateCache::new(),
            scratch: vec![0; 16 * 1024],
            closing: Vec::new(),
            pending: Vec::new(),
            held: Vec::new(),
            store_deadline: Deadline::default(),
            touched: Vec::new(),
            broadcast: Vec::new(),
            presence_tick: false,
            bus_deadline: Deadline::default(),
            accept_paused: false,
            exit: false,
            signals,
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
            if self.finished() {
                return Ok(());
            }
            // Sockets to read again, or answers held for a commit not yet
            // tried (requests resumed at start): no sleeping first.
            let commit_due = !self.held.is_empty() && self.store_deadline_free();
            let timeout = match self.pending.is_empty() && !commit_due {
                true => self
                    .timers
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(now)),
                false => Some(Duration::ZERO),
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                let t = event.token();
                if t == SIGNALS {
                    self.on_signal(now);
                } else if let Some(i) = Port::index(t, self.ports.len()) {
                    self.accept(i, now);
                } else {
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    let ready = Ready {
                        readable,
                        writable: event.is_writable(),
                    };
                    self.with_socket(t, now, |s, cx| s.ready(ready, cx));
                }
            }
            for t in std::mem::take(&mut self.pending) {
                self.with_socket(t, now, |s, cx| s.ready(Ready::READ, cx));
            }
            self.fire_timers(now);
            self.commit(now);
            self.deliver(now);
            self.remove_closed(now);
            self.dial(now);
        }
    }

    /// Runs `f` on the socket `t` with the rest of the node; then applies
    /// what it reported: close it after the batch, read it again before
    /// sleeping, and the interest and deadline its state now asks for.
    fn with_socket(
        &mut self,
        t: Token,
        now: Instant,
        f: impl FnOnce(&mut Socket, &mut Cx) -> Step,
    ) {
        let Some(slot) = self.sockets.get_mut(t).filter(|s| !s.closing) else {
            return; // closed earlier in this batch, or stale
        };
        let mut cx = Cx {
            env: Env {
                now,
                token: t,
                scratch: &mut self.scratch,
                service: &mut self.service,
                date: &mut self.date,
                more: false,
                hold: false,
            },
            bus: &mut self.bus,
        };
        let step = f(&mut slot.socket, &mut cx);
        if cx.env.more {
            self.pending.push(t);
        }
        if cx.env.hold {
            self.held.push(t);
        }
        match step {
            Step::Keep => {}
            Step::Close => {
                slot.closing = true;
                return self.closing.push(t);
            }
            Step::Upgrade => return self.upgrade(t, now),
        }
        let interest = slot.socket.interest();
        if interest != slot.interest {
            if let Err(e) = self
                .poll
                .registry()
                .reregister(slot.socket.stream(), t, interest)
            {
                debug!("reregister failed: {e}");
                self.closing.push(t);
                return;
            }
            slot.interest = interest;
        }
        slot.deadline
            .set(slot.socket.deadline(), &mut self.timers, Key::Socket(t));
    }

    fn fire_timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.timers.expire(now, &mut due);
        for key in due {
            match key {
                Key::Socket(t) => {
                    let fired = self.sockets.get_mut(t).is_some_and(|slot| {
                        let at = slot.socket.deadline();
                        slot.deadline.fired(at, now, &mut self.timers, key)
                    });
                    if fired {
                        self.with_socket(t, now, |s, cx| s.expired(cx));
                    }
                }
                Key::Heartbeat => {
                    self.broadcast.extend(self.service.heartbeat());
                    self.timers
                        .schedule(now + self.opts.heartbeat, Key::Heartbeat);
                }
                Key::Presence => {
                    self.presence_tick = true;
                    let peers = self.bus.peers();
                    self.broadcast
                        .extend(self.service.refresh_presence(peers, now));
                    self.timers.schedule(now + PRESENCE_EVERY, Key::Presence);
                }
                // Dials and the cluster wait are looked at every turn; the
                // entry only wakes the loop.
                Key::Bus => {
                    let serving = self.service.phase != Phase::Starting;
                    let at = self.bus.next_deadline(serving);
                    self.bus_deadline.fired(at, now, &mut self.timers, key);
                }
                Key::Accept => {
                    self.accept_paused = false;
                    for i in 0..self.ports.len() {
                        self.accept(i, now);
                    }
                }
                // The turn's commit tries again; the entry only wakes the loop.
                Key::Store => {
                    let at = self.service.durable.as_ref().and_then(|d| d.retry_at());
                    self.store_deadline.fired(at, now, &mut self.timers, key);
                }
                Key::Drain => {
                    warn!("drain time over: {} connections cut", self.sockets.len());
                    self.exit = true;
                }
            }
        }
    }

    /// No failed commit is waiting for its retry time.
    fn store_deadline_free(&self) -> bool {
        self.service
            .durable
            .as_ref()
            .is_none_or(|d| d.retry_at().is_none())
    }

    /// Makes what this turn accepted durable (`--data`), once, then lets
    /// the answers that waited for it go; a failed commit is tried again
    /// after `durable::RETRY` (held answers wait, publishes get 503).
    fn commit(&mut self, now: Instant) {
        if self.service.commit(now) {
            for t in std::mem::take(&mut self.held) {
                self.with_socket(t, now, |s, cx| s.release(cx));
            }
        } else {
            let at = self.service.durable.as_ref().and_then(|d| d.retry_at());
            self.store_deadline.set(at, &mut self.timers, Key::Store);
        }
    }

    /// Delivers what this turn produced: our new messages to the other
    /// nodes, then every new frame to every listener. Each frame is shared;
    /// all that a socket has pending leaves in one write.
    fn deliver(&mut self, now: Instant) {
        let tick = std::mem::take(&mut self.presence_tick);
        let frames = self.bus.outgoing(&mut self.service, tick);
        if !frames.is_empty() {
            for t in self.bus.links().to_vec() {
                self.with_socket(t, now, |s, cx| s.send_to_peer(&frames, cx));
            }
        }
        for t in self.bus.to_flush() {
            self.with_socket(t, now, |s, cx| s.flush(cx));
        }
        if self.bus.take_missed() {
            self.broadcast.push(Service::missed_frame());
        }
        self.service.bus = self.bus.status();
        let rooms = self.service.take_outbox();
        let broadcast = std::mem::take(&mut self.broadcast);
        if rooms.is_empty() && broadcast.is_empty() {
            return;
        }
        let Server {
            sockets,
            service,
            closing,
            touched,
            ..
        } = self;
        let mut push = |l: Listener, frames: &[Rc<[u8]>], stats: &mut Stats| {
            let Some(slot) = sockets.get_mut(l.conn).filter(|s| !s.closing) else {
                return;
            };
            stats.deliveries += frames.len() as u64;
            if slot.socket.push(l.stream, frames, now) == Step::Close {
                stats.evicted += 1;
                slot.closing = true;
                closing.push(l.conn);
            } else if !slot.touched {
                slot.touched = true;
                touched.push(l.conn);
            }
        };
        for (room, frames) in &rooms {
            for l in service.listeners.in_room(*room) {
                push(l, frames, &mut service.stats);
            }
        }
        if !broadcast.is_empty() {
            for l in service.listeners.iter() {
                push(l, &broadcast, &mut service.stats);
            }
        }
        for t in std::mem::take(&mut self.touched) {
            if let Some(slot) = self.sockets.get_mut(t) {
                slot.touched = false;
            }
            self.with_socket(t, now, |s, cx| s.flush(cx));
        }
    }

    fn remove_closed(&mut self, now: Instant) {
        while let Some(t) = self.closing.pop() {
            let Some(slot) = self.sockets.remove(t) else {
                continue;
            };
            let stats = &mut self.service.stats;
            match slot.socket {
                Socket::Http(mut c) => {
                    if c.is_tls() {
                        stats.open_tls -= 1;
                    } else {
                        stats.open_plain -= 1;
                    }
                    if let Some(key) = c.listener() {
                        self.service.leave(key);
                    }
                    c.close();
                    let _ = self.poll.registry().deregister(c.stream());
                }
                Socket::H2(mut c) => {
                    if c.is_tls() {
                        stats.open_tls -= 1;
                    } else {
                        stats.open_plain -= 1;
                    }
                    stats.open_h2 -= 1;
                    stats.h2_streams = stats.h2_streams.saturating_sub(c.counted_streams() as u64);
                    let keys: Vec<_> = c.listeners().collect();
                    for key in keys {
                        self.service.leave(key);
                    }
                    c.close();
                    let _ = self.poll.registry().deregister(c.stream());
                }
                Socket::Redis(mut r) => {
                    r.close();
                    self.bus.redis_closed(t, now);
                    let _ = self.poll.registry().deregister(r.stream());
                }
                Socket::Peer(mut link) => {
                    stats.open_peers -= 1;
                    let end = LinkEnd {
                        name: link.name.clone(),
                        dialed: link.dialed,
                        was_up: link.was_up,
                    };
                    self.bus.closed(t, end, now);
                    link.close();
                    let _ = self.poll.registry().deregister(link.stream());
                }
            }
        }
    }
}

/// A seed for dial jitter: differs between nodes and runs.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}
