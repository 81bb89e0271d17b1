//! How a message reaches the other nodes, behind one small interface: what
//! to send after a turn (`outgoing`), which sockets carry it (`links`),
//! what to dial (`due`), who is there (`peers`), whether the node may serve
//! yet (`synced`), and when it next needs the loop (`next_deadline`). A lone
//! node has no bus; `mesh` is the full mesh of peer links.

pub mod mesh;
pub mod redis;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use mio::Token;

use crate::service::presence::Peer;
use crate::service::Service;
use mesh::{LinkEnd, Mesh};

pub enum Bus {
    /// A node without `--config`: nothing to reach.
    Alone,
    Mesh(Box<Mesh>),
}

/// A connection to open.
pub struct Dial {
    pub name: String,
    pub addr: SocketAddr,
}

impl Bus {
    /// The node may serve: its cluster has synced (or it runs alone).
    pub fn synced(&self, now: Instant) -> bool {
        match self {
            Bus::Alone => true,
            Bus::Mesh(m) => m.synced(now),
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
                .map(|(name, addr)| Dial { name, addr })
                .collect(),
        }
    }

    /// A dial is under way on `token` (or failed at once: `None`).
    pub fn dialing(&mut self, dial: &Dial, token: Option<Token>, now: Instant) {
        if let Bus::Mesh(m) = self {
            let raw = token.map_or(0, |t| t.0 as u64);
            m.members.dialing(&dial.name, raw);
            if token.is_none() {
                m.members.dial_ended(&dial.name, 0, now);
            }
            if let Some(t) = token {
                m.opened(t);
            }
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

    /// The sockets that carry messages to the other nodes.
    pub fn links(&self) -> &[Token] {
        match self {
            Bus::Alone => &[],
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
        }
    }

    /// The other nodes this one is linked to, with their listeners.
    pub fn peers(&self) -> Vec<Peer> {
        match self {
            Bus::Alone => Vec::new(),
            Bus::Mesh(m) => m.members.linked(),
        }
    }

    pub fn log_serving(&self) {
        if let Bus::Mesh(m) = self {
            m.log_serving();
        }
    }
}
