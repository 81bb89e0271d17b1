//! How a message reaches the other nodes, behind one small interface: what
//! to send after a turn (`outgoing`), which sockets carry it (`links`),
//! what to dial (`due`), who is there (`peers`), whether the node may serve
//! yet (`synced`), and when it next needs the loop (`next_deadline`). A lone
//! node has no bus; `mesh` is the full mesh of peer links; `redis` carries
//! messages through a Redis Stream (two connections, no links).

pub mod mesh;
pub mod redis;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::Token;

use crate::service::presence::Peer;
use crate::service::Service;
use mesh::{LinkEnd, Mesh};
use redis::node::{RedisBus, Role};

pub enum Bus {
    /// A node without `--config`: nothing to reach.
    Alone,
    Mesh(Box<Mesh>),
    Redis(Box<RedisBus>),
}

/// `base` spread by ±25 % (xorshift64 on `rng`: jitter needs no more), so
/// nodes that lost a peer or Redis together do not all dial back at once.
pub fn jittered(rng: &mut u64, base: Duration) -> Duration {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    base.mul_f64((*rng % 501) as f64 / 1000.0 + 0.75)
}

/// A connection to open: a peer of the mesh, or one of the Redis bus's.
pub enum Dial {
    Peer { name: String, addr: SocketAddr },
    Redis(Role),
}

/// What `/healthz` and `/metrics` say of the bus.
pub struct BusStatus {
    pub kind: &'static str,
    pub connected: bool,
    /// Our messages not yet handed to the bus (Redis: not acknowledged).
    pub outbox: usize,
    pub reconnects: u64,
    /// Times the bus lost data we may not have read.
    pub data_lost: u64,
    /// How far the reader is behind the newest entry (Redis), in ms.
    pub behind_ms: u64,
    /// How many more of our messages the bus takes before publishes are
    /// refused (Redis: the outbox's free places); `None`: no bound.
    pub outbox_room: Option<usize>,
}

impl Bus {
    /// The node may serve: its cluster has synced (or it runs alone).
    pub fn synced(&self, now: Instant) -> bool {
        match self {
            Bus::Alone => true,
            Bus::Mesh(m) => m.synced(now),
            Bus::Redis(r) => r.synced(now),
        }
    }

    /// When the bus next needs the loop: a dial, or the end of the wait
    /// for the cluster at start.
    pub fn next_deadline(&self, serving: bool) -> Option<Instant> {
        match self {
            Bus::Alone => None,
            Bus::Mesh(m) => {
                let sync = (!serving).then_some(m.sync_until);
                match (m.members.next_dial(), sync) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Bus::Redis(r) => {
                let sync = (!serving).then_some(r.sync_until);
                match (r.next_dial(), sync) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Connections whose time has come.
    pub fn due(&mut self, now: Instant) -> Vec<Dial> {
        match self {
            Bus::Alone => Vec::new(),
            Bus::Mesh(m) => m
                .members
                .due(now)
                .into_iter()
                .map(|(name, addr)| Dial::Peer { name, addr })
                .collect(),
            Bus::Redis(r) => r.due(now).into_iter().map(Dial::Redis).collect(),
        }
    }

    /// A dial is under way on `token` (or failed at once: `None`, and why).
    pub fn dialing(&mut self, dial: &Dial, token: Option<Token>, why: Option<&str>, now: Instant) {
        match (self, dial) {
            (Bus::Mesh(m), Dial::Peer { name, .. }) => {
                let raw = token.map_or(0, |t| t.0 as u64);
                m.members.dialing(name, raw);
                if token.is_none() {
                    m.members.dial_ended(name, 0, now);
                }
                if let Some(t) = token {
                    m.opened(t);
                }
            }
            (Bus::Redis(r), Dial::Redis(role)) => r.dialing(*role, token, why, now),
            _ => {}
        }
    }

    /// An accepted link on the cluster port.
    pub fn accepted(&mut self, token: Token) {
        if let Bus::Mesh(m) = self {
            m.opened(token);
        }
    }

    pub fn closed(&mut self, token: Token, end: LinkEnd, now: Instant) {
        if let Bus::Mesh(m) = self {
            m.closed(token, end, now);
        }
    }

    /// One of the Redis bus's connections closed.
    pub fn redis_closed(&mut self, token: Token, now: Instant) {
        if let Bus::Redis(r) = self {
            r.closed(token, now);
        }
    }

    /// The bus's own sockets with something to write after `outgoing`.
    pub fn to_flush(&self) -> Vec<Token> {
        match self {
            Bus::Redis(r) => r.to_flush(),
            _ => Vec::new(),
        }
    }

    /// The listeners are to be told some messages were missed (the bus
    /// lost data), once.
    pub fn take_missed(&mut self) -> bool {
        match self {
            Bus::Redis(r) => r.take_missed(),
            _ => false,
        }
    }

    pub fn status(&self) -> Option<BusStatus> {
        match self {
            Bus::Alone => None,
            Bus::Mesh(m) => Some(BusStatus {
                kind: "mesh",
                connected: !m.links().is_empty(),
                outbox: 0,
                reconnects: 0,
                data_lost: 0,
                behind_ms: 0,
                outbox_room: None,
            }),
            Bus::Redis(r) => Some(BusStatus {
                kind: "redis",
                connected: r.connected_both(),
                outbox: r.outbox_len(),
                reconnects: r.stats.reconnects,
                data_lost: r.stats.data_lost,
                behind_ms: r.stats.behind_ms,
                outbox_room: Some(r.outbox_room()),
            }),
        }
    }

    /// The sockets that carry messages to the other nodes.
    pub fn links(&self) -> &[Token] {
        match self {
            Bus::Alone | Bus::Redis(_) => &[],
            Bus::Mesh(m) => m.links(),
        }
    }

    /// What goes out after this turn. Taken even when alone: the room's
    /// outbox for the peers must not hold messages forever.
    pub fn outgoing(&mut self, service: &mut Service, presence_tick: bool) -> Vec<Rc<[u8]>> {
        match self {
            Bus::Alone => {
                service.rooms.take_peer_outbox();
                Vec::new()
            }
            Bus::Mesh(m) => m.outgoing(service, presence_tick),
            Bus::Redis(r) => {
                r.outgoing(service, presence_tick);
                Vec::new()
            }
        }
    }

    /// The other nodes this one is linked to, with their listeners.
    pub fn peers(&self) -> Vec<Peer> {
        match self {
            Bus::Alone => Vec::new(),
            Bus::Mesh(m) => m.members.linked(),
            Bus::Redis(r) => r.peers(),
        }
    }

    pub fn log_serving(&self) {
        match self {
            Bus::Alone => {}
            Bus::Mesh(m) => m.log_serving(),
            Bus::Redis(r) => r.log_serving(),
        }
    }
}
