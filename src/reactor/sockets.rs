//! The slab of sockets and their tokens. A token is a slot's key and its
//! generation, so an event for a socket that has since been closed can never
//! reach the one that reuses its slot. Each slot remembers what the loop
//! registered (interest) and queued (deadline) for its socket, so those are
//! derived from the socket's state after every handler, in one place.
//!
//! `Socket` is the one enum of what a slot holds; its methods give each kind
//! of connection the context it needs (`Cx` narrowed to an `Env`).

use std::rc::Rc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};
use slab::Slab;

use super::timers::Deadline;
use crate::bus::mesh::link::PeerLink;
use crate::bus::mesh::Mesh;
use crate::bus::redis::client::RedisConn;
use crate::bus::redis::node::RedisBus;
use crate::bus::Bus;
use crate::conn::h2::H2Conn;
use crate::conn::http1::Http1;
use crate::conn::{Env, Ready, Step};

pub enum Socket {
    Http(Box<Http1<TcpStream>>),
    H2(Box<H2Conn<TcpStream>>),
    Peer(Box<PeerLink<TcpStream>>),
    /// One of the Redis bus's two connections.
    Redis(Box<RedisConn<TcpStream>>),
}

pub struct Slot {
    generation: u32,
    /// What is registered with the poll for it.
    pub interest: Interest,
    pub deadline: Deadline,
    /// Already on the loop's list of sockets to flush after a fan-out.
    pub touched: bool,
    /// Reported `Close`: it waits for removal after the batch and gets no
    /// more events, frames or flushes (an evicted listener must not be
    /// sent frames that come after the ones it lost).
    pub closing: bool,
    pub socket: Socket,
}

/// Everything a handler may reach besides its own socket: what every
/// connection gets, and the bus (a peer link works on its mesh).
pub struct Cx<'a> {
    pub env: Env<'a>,
    pub bus: &'a mut Bus,
}

impl Cx<'_> {
    /// Runs `f` on the mesh; a link exists only on a mesh.
    fn mesh(&mut self, f: impl FnOnce(&mut Env, &mut Mesh) -> Step) -> Step {
        match self.bus {
            Bus::Mesh(mesh) => f(&mut self.env, mesh),
            _ => Step::Close,
        }
    }

    /// Runs `f` on the Redis bus; its connections exist only on one.
    fn redis(&mut self, f: impl FnOnce(&mut Env, &mut RedisBus) -> Step) -> Step {
        match self.bus {
            Bus::Redis(bus) => f(&mut self.env, bus),
            _ => Step::Close,
        }
    }
}

impl Socket {
    pub fn stream(&mut self) -> &mut TcpStream {
        match self {
            Socket::Http(c) => c.stream(),
            Socket::H2(c) => c.stream(),
            Socket::Peer(p) => p.stream(),
            Socket::Redis(r) => r.stream(),
        }
    }

    /// Interest follows state: WRITABLE only while output waits (asking
    /// for it otherwise makes the loop spin).
    pub fn interest(&self) -> Interest {
        let write = match self {
            Socket::Http(c) => c.wants_write(),
            Socket::H2(c) => c.wants_write(),
            Socket::Peer(p) => p.wants_write(),
            Socket::Redis(r) => r.wants_write(),
        };
        if write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Socket::Http(c) => c.deadline(),
            Socket::H2(c) => c.deadline(),
            Socket::Peer(p) => p.deadline(),
            Socket::Redis(r) => r.deadline(),
        }
    }

    pub fn ready(&mut self, ready: Ready, cx: &mut Cx) -> Step {
        match self {
            Socket::Http(c) => c.ready(ready, &mut cx.env),
            Socket::H2(c) => c.ready(ready, &mut cx.env),
            Socket::Peer(p) => cx.mesh(|env, mesh| p.ready(ready, env, mesh)),
            Socket::Redis(r) => cx.redis(|env, bus| r.ready(ready, env, bus)),
        }
    }

    pub fn expired(&mut self, cx: &mut Cx) -> Step {
        match self {
            Socket::Http(c) => c.expired(&mut cx.env),
            Socket::H2(c) => c.expired(&mut cx.env),
            Socket::Peer(p) => p.expired(&mut cx.env),
            Socket::Redis(r) => cx.redis(|env, bus| r.expired(env, bus)),
        }
    }

    /// Queues frames for a listener's stream (fan-out); writes nothing yet.
    pub fn push(&mut self, stream: u32, frames: &[Rc<[u8]>], now: Instant) -> Step {
        match self {
            Socket::Http(c) => c.push(frames),
            Socket::H2(c) => c.push(stream, frames, now),
            Socket::Peer(_) | Socket::Redis(_) => Step::Keep,
        }
    }

    /// Queues frames for the other nodes, if this is a link that takes them.
    pub fn send_to_peer(&mut self, frames: &[Rc<[u8]>], cx: &mut Cx) -> Step {
        match self {
            Socket::Peer(p) if p.takes_live() => {
                if p.send_shared(frames) == Step::Close {
                    return Step::Close;
                }
                p.flush(&mut cx.env)
            }
            _ => Step::Keep,
        }
    }

    /// Writes what fan-out queued.
    pub fn flush(&mut self, cx: &mut Cx) -> Step {
        match self {
            Socket::Http(c) => c.flush_and_settle(&mut cx.env),
            Socket::H2(c) => c.flush(&mut cx.env),
            Socket::Peer(p) => p.flush(&mut cx.env),
            Socket::Redis(r) => cx.redis(|env, bus| r.flush(env, bus)),
        }
    }

    /// The turn's log commit succeeded: answers held for it may go.
    pub fn release(&mut self, cx: &mut Cx) -> Step {
        match self {
            Socket::Http(c) => c.release(&mut cx.env),
            Socket::H2(c) => c.release(&mut cx.env),
            Socket::Peer(_) | Socket::Redis(_) => Step::Keep,
        }
    }

    /// The node serves now: a held request is answered.
    pub fn resume(&mut self, cx: &mut Cx) -> Step {
        match self {
            Socket::Http(c) if c.is_held() => c.resume(&mut cx.env),
            Socket::H2(c) if c.is_held() => c.resume(&mut cx.env),
            _ => Step::Keep,
        }
    }

    /// Shutdown: streams end after `last`, requests finish, links say `Leave`.
    pub fn drain(&mut self, last: &Rc<[u8]>, cx: &mut Cx) -> Step {
        match self {
            Socket::Http(c) => c.drain(last, &mut cx.env),
            Socket::H2(c) => c.drain(last, &mut cx.env),
            Socket::Peer(p) => p.leave(&mut cx.env),
            Socket::Redis(r) => cx.redis(|env, bus| r.drain(env, bus)),
        }
    }
}

pub struct Sockets {
    slab: Slab<Slot>,
    next_generation: u32,
}

/// Generations stay below this, so no slab token can equal one of the
/// fixed tokens at the top of the range (signals, listening ports).
const MAX_GENERATION: u32 = u32::MAX - 1;

impl Sockets {
    pub fn new() -> Sockets {
        Sockets {
            slab: Slab::with_capacity(1024),
            next_generation: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The token the next `insert` will give.
    pub fn next_token(&self) -> Token {
        token(self.slab.vacant_key(), self.next_generation)
    }

    pub fn insert(&mut self, socket: Socket, interest: Interest) -> Token {
        let generation = self.next_generation;
        self.next_generation = if generation >= MAX_GENERATION {
            1
        } else {
            generation + 1
        };
        let key = self.slab.insert(Slot {
            generation,
            interest,
            deadline: Deadline::default(),
            touched: false,
            closing: false,
            socket,
        });
        token(key, generation)
    }

    /// Replaces the socket at `t` with what `f` makes of it. Returns its
    /// token: the same one (a slab reuses the slot it just freed first), or
    /// a new one the caller must register the socket under.
    pub fn replace(&mut self, t: Token, f: impl FnOnce(Socket) -> Socket) -> Option<Token> {
        let (key, generation) = split(t);
        if self
            .slab
            .get(key)
            .is_none_or(|s| s.generation != generation)
        {
            return None;
        }
        let slot = self.slab.remove(key);
        let entry = self.slab.vacant_entry();
        let new = token(entry.key(), generation);
        entry.insert(Slot {
            socket: f(slot.socket),
            ..slot
        });
        Some(new)
    }

    /// The slot of `t`, if that socket is still there.
    pub fn get_mut(&mut self, t: Token) -> Option<&mut Slot> {
        let (key, generation) = split(t);
        self.slab
            .get_mut(key)
            .filter(|s| s.generation == generation)
    }

    pub fn remove(&mut self, t: Token) -> Option<Slot> {
        let (key, generation) = split(t);
        match self.slab.get(key) {
            Some(s) if s.generation == generation => Some(self.slab.remove(key)),
            _ => None,
        }
    }

    /// Every socket's token (to act on all of them: drain, resume).
    pub fn tokens(&self) -> Vec<Token> {
        self.slab
            .iter()
            .map(|(k, s)| token(k, s.generation))
            .collect()
    }
}

impl Default for Sockets {
    fn default() -> Self {
        Sockets::new()
    }
}

fn token(key: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | key)
}

fn split(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}
