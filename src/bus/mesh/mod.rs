//! The full mesh: every node links to every other node it knows (from the
//! cluster file, and transitively from its peers), like Erlang distribution.
//! `Mesh` is the node-level side — who is known and linked, when to dial,
//! what to tell the peers after each turn — and each link is a `PeerLink`
//! socket in the reactor's slab. The files: `config` (sys.conf), `members`
//! (who, and when to dial), `link` (one link's state machine), `handshake`
//! (the cookie proofs), `wire` (the frames).

pub mod config;
pub mod guesses;
pub mod handshake;
pub mod link;
pub mod members;
pub mod wire;
pub mod x25519;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use mio::Token;

use crate::info;
use crate::service::Service;
use config::ClusterConfig;
use members::Members;
use wire::Frame;

pub struct Mesh {
    pub members: Members,
    pub cookie: String,
    /// Links run over TLS (`link_tls`).
    pub link_tls: bool,
    /// Wrong cookie proofs per source address (online guesses).
    pub guesses: guesses::Guesses,
    /// Our cluster address as the others dial it (from the cluster file).
    pub my_addr: String,
    /// Where our cluster port listens.
    pub listen: SocketAddr,
    /// Until then the node waits for the listed nodes before serving.
    pub sync_until: Instant,
    /// Every link, in handshake or up.
    links: Vec<Token>,
    /// Local listener counts last told to the peers.
    told: (usize, Vec<(String, usize)>),
}

/// How a link ended, for the membership.
pub struct LinkEnd {
    pub name: Option<String>,
    pub dialed: bool,
    pub was_up: bool,
}

impl Mesh {
    /// The mesh of `config` as node `me`.
    pub fn new(config: ClusterConfig, me: &str, seed: u64, now: Instant) -> Mesh {
        let mut members = Members::new(me, seed);
        let mut listen = None;
        for m in &config.nodes {
            if m.name == me {
                listen = Some(m.addr);
            } else {
                members.learn(&m.name, m.addr, true, now);
            }
        }
        // `config::parse` checked that `me` is listed.
        let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        Mesh {
            members,
            cookie: config.cookie,
            link_tls: config.link_tls,
            guesses: guesses::Guesses::default(),
            my_addr: listen.to_string(),
            listen,
            sync_until: now + config.sync_nodes_timeout,
            links: Vec::new(),
            told: (0, Vec::new()),
        }
    }

    /// A caller at `ip` sent a wrong proof.
    pub fn guess_failed(&mut self, ip: std::net::IpAddr, now: Instant) {
        if let Some(wait) = self.guesses.failed(ip, now) {
            crate::warn!(
                "{ip}: more than {} wrong cookie proofs: its link attempts are refused for {}s",
                guesses::FREE,
                wait.as_secs()
            );
        }
    }

    /// A caller at `ip` proved the cookie.
    pub fn guess_passed(&mut self, ip: std::net::IpAddr) {
        self.guesses.passed(ip);
    }

    /// Every listed node has linked and sent its replay, or the wait is over.
    pub fn synced(&self, now: Instant) -> bool {
        now >= self.sync_until || self.members.all_listed_synced()
    }

    pub fn links(&self) -> &[Token] {
        &self.links
    }

    pub fn opened(&mut self, token: Token) {
        self.links.push(token);
    }

    pub fn closed(&mut self, token: Token, end: LinkEnd, now: Instant) {
        self.links.retain(|&t| t != token);
        let Some(name) = &end.name else {
            return;
        };
        let raw = token.0 as u64;
        if end.was_up {
            self.members.link_down(name, raw, now);
        }
        if end.dialed {
            self.members.dial_ended(name, raw, now);
        } else {
            self.members.incoming_ended(name, raw, now);
        }
    }

    /// What goes to every linked peer after this turn: our new messages
    /// (each frame encoded once), the membership when it grew, and our
    /// listener count when it changed (on the presence tick).
    pub fn outgoing(&mut self, service: &mut Service, presence_tick: bool) -> Vec<Rc<[u8]>> {
        let mut frames: Vec<Rc<[u8]>> = Vec::new();
        for e in service.rooms.take_peer_outbox() {
            let mut buf = Vec::with_capacity(e.text.len() + e.room.len() + 24);
            wire::encode_message(e.origin, e.seq, &e.room, &e.text, &mut buf);
            frames.push(buf.into());
        }
        if self.members.take_changed() {
            let mut buf = Vec::new();
            wire::encode(&self.nodes_frame(), &mut buf);
            frames.push(buf.into());
        }
        if presence_tick {
            // The reactor refreshed `presence` on this tick, before us.
            let mine = &service.presence;
            let now = (mine.listeners, mine.rooms.clone());
            if now != self.told {
                let count = |n: usize| n.min(u32::MAX as usize) as u32;
                let frame = Frame::Presence {
                    listeners: count(now.0),
                    rooms: now.1.iter().map(|(r, n)| (r.clone(), count(*n))).collect(),
                };
                let mut buf = Vec::new();
                wire::encode(&frame, &mut buf);
                frames.push(buf.into());
                self.told = now;
            }
        }
        frames
    }

    /// Everyone we know, ourselves included, for a peer to link to.
    pub fn nodes_frame(&self) -> Frame {
        let mut nodes = vec![(self.members.me.clone(), self.my_addr.clone())];
        nodes.extend(
            self.members
                .known
                .iter()
                .map(|k| (k.name.clone(), k.addr.to_string())),
        );
        Frame::Nodes { nodes }
    }

    pub fn log_serving(&self) {
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
}
