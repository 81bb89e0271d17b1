//! A link between two nodes over streams in memory: the handshake and its
//! replay, frames cut at every byte, a wrong cookie, garbage, silence.

use super::*;
use crate::bus::mesh::config::{ClusterConfig, Member};
use crate::conn::mem::MemStream;
use crate::http::response::DateCache;
use crate::room::LOBBY;
use crate::service::presence::Peer;
use crate::service::Config;
use crate::service::Service;
use mio::Token;

/// One side of a link: its node (service and mesh) and the link.
struct Side {
    service: Service,
    mesh: Mesh,
    scratch: Vec<u8>,
    date: DateCache,
    link: PeerLink<MemStream>,
    now: Instant,
}

const A: &str = "a@127.0.0.1";
const B: &str = "b@127.0.0.1";

fn config(cookie: &str) -> ClusterConfig {
    ClusterConfig {
        redis: None,
        nodes: vec![
            Member {
                name: A.into(),
                addr: "127.0.0.1:4001".parse().unwrap(),
            },
            Member {
                name: B.into(),
                addr: "127.0.0.1:4002".parse().unwrap(),
            },
        ],
        sync_nodes_timeout: Duration::from_secs(1),
        cookie: cookie.into(),
        link_tls: false,
    }
}

impl Side {
    fn new(me: &str, cookie: &str, dial: bool) -> Side {
        let now = Instant::now();
        let cfg = Config {
            max_message: 4096,
            ..Config::for_tests()
        };
        let addr = "127.0.0.1:9".parse().unwrap();
        let link = if dial {
            PeerLink::dial(MemStream::default(), Transport::Plain, addr, B, now)
        } else {
            PeerLink::accept(MemStream::default(), Transport::Plain, addr, now)
        };
        Side {
            service: Service::new(me, cfg, now),
            mesh: Mesh::new(config(cookie), me, 1, now),
            scratch: vec![0; 4096],
            date: DateCache::new(),
            link,
            now,
        }
    }

    fn run(
        &mut self,
        f: impl FnOnce(&mut PeerLink<MemStream>, &mut Env, &mut Mesh) -> Step,
    ) -> Step {
        let mut env = Env {
            now: self.now,
            token: Token(1),
            scratch: &mut self.scratch,
            service: &mut self.service,
            date: &mut self.date,
            more: false,
            hold: false,
        };
        f(&mut self.link, &mut env, &mut self.mesh)
    }

    fn feed(&mut self, bytes: &[u8]) -> Step {
        self.link.stream().send(bytes);
        self.run(|l, env, mesh| l.ready(Ready::READ, env, mesh))
    }

    fn out(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.link.stream().written)
    }
}

/// Shuttles bytes both ways until neither side has more to say.
fn converse(a: &mut Side, b: &mut Side) -> (Step, Step) {
    let (mut sa, mut sb) = (Step::Keep, Step::Keep);
    for _ in 0..10 {
        let to_b = a.out();
        let to_a = b.out();
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
        if !to_b.is_empty() && sb == Step::Keep {
            sb = b.feed(&to_b);
        }
        if !to_a.is_empty() && sa == Step::Keep {
            sa = a.feed(&to_a);
        }
    }
    (sa, sb)
}

fn linked() -> (Side, Side) {
    let mut a = Side::new(A, "secret", true);
    let mut b = Side::new(B, "secret", false);
    let lobby = a.service.rooms.find(LOBBY).unwrap();
    a.service.rooms.publish(lobby, "before the link", 5);
    assert_eq!(
        a.run(|l, env, mesh| l.ready(Ready::WRITE, env, mesh)),
        Step::Keep
    );
    assert_eq!(converse(&mut a, &mut b), (Step::Keep, Step::Keep));
    assert!(a.link.takes_live() && b.link.takes_live());
    (a, b)
}

#[test]
fn the_handshake_links_and_replays_history() {
    let (a, b) = linked();
    assert_eq!(b.service.rooms.len(), 1, "b got a's history");
    assert!(a
        .mesh
        .members
        .get(B)
        .is_some_and(|k| k.link.is_some() && k.synced));
    assert!(b.mesh.members.get(A).is_some_and(|k| k.synced));
}

#[test]
fn frames_cut_at_every_byte_arrive_once_in_order() {
    let mut frames = Vec::new();
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let room = if i == 1 { "general" } else { LOBBY };
        wire::encode_message(
            crate::room::tag_of(A),
            10 + i as u64,
            room,
            text,
            &mut frames,
        );
    }
    let rooms = vec![("general".to_string(), 2)];
    wire::encode(
        &Frame::Presence {
            listeners: 7,
            rooms,
        },
        &mut frames,
    );
    for cut in 0..=frames.len() {
        let (_, mut b) = linked();
        assert_eq!(b.feed(&frames[..cut]), Step::Keep, "cut at {cut}");
        assert_eq!(b.feed(&frames[cut..]), Step::Keep, "cut at {cut}");
        let texts: Vec<String> = b
            .service
            .rooms
            .history()
            .map(|e| e.text.to_string())
            .collect();
        assert_eq!(
            texts,
            ["before the link", "one", "two", "three"],
            "cut at {cut}"
        );
        let peer = Peer {
            name: A.to_string(),
            listeners: 7,
            rooms: vec![("general".to_string(), 2)],
        };
        assert_eq!(b.mesh.members.linked(), [peer]);
        let general = b.service.rooms.find("general").unwrap();
        assert_eq!(b.service.rooms.get(general).map(|r| r.len()), Some(1));
    }
}

#[test]
fn a_wrong_cookie_is_refused() {
    let mut a = Side::new(A, "secret", true);
    let mut b = Side::new(B, "other", false);
    a.run(|l, env, mesh| l.ready(Ready::WRITE, env, mesh));
    let (sa, _) = converse(&mut a, &mut b);
    assert_eq!(sa, Step::Close);
    assert!(!a.link.is_up() && !b.link.is_up());
    // The dialer proves first: the acceptor refuses it, and never sent a
    // proof of its own the caller could test cookie guesses against.
    assert_eq!(b.service.stats.peer_refused, 1);
    assert_eq!(a.service.stats.peer_refused, 0);
}

#[test]
fn garbage_and_oversized_frames_close_the_link() {
    let mut b = Side::new(B, "secret", false);
    assert_eq!(b.feed(&[0, 0, 0, 2, 99, 0]), Step::Close);
    assert_eq!(b.service.stats.peer_protocol_errors, 1);
    let mut b = Side::new(B, "secret", false);
    let big = (MAX_HANDSHAKE_FRAME as u32 + 1).to_be_bytes();
    assert_eq!(b.feed(&big), Step::Close);
    // Silence during the handshake ends it.
    let mut b = Side::new(B, "secret", false);
    b.now += HANDSHAKE_TIMEOUT;
    assert_eq!(b.run(|l, env, _| l.expired(env)), Step::Close);
}

#[test]
fn a_quiet_peer_is_pinged_then_declared_dead() {
    let (mut a, _) = linked();
    a.out();
    a.now += PING_EVERY;
    assert_eq!(a.run(|l, env, _| l.expired(env)), Step::Keep);
    let mut ping = Vec::new();
    wire::encode(&Frame::Ping, &mut ping);
    assert_eq!(a.out(), ping);
    a.now += DEAD_AFTER;
    assert_eq!(a.run(|l, env, _| l.expired(env)), Step::Close);
}

/// Regression (review): a node that took an origin's newer messages from a
/// peer's replay, which started after what the peer's history had lost,
/// dropped the older ones when they came later and never said missed.
#[test]
fn a_replay_that_starts_after_the_peers_floor_leaves_a_missed_mark() {
    let mut a = Side::new(A, "secret", true);
    let mut b = Side::new(B, "secret", false);
    let mut cfg = Config::for_tests();
    cfg.rooms.history = 3;
    a.service = Service::new(A, cfg, a.now);
    // a holds origin x's x3..x5 only: x1 and x2 left its history of 3.
    let x = crate::room::tag_of("x@127.0.0.1");
    for seq in 1..=5 {
        a.service
            .rooms
            .accept(x, seq, LOBBY, format!("x{seq}").into(), 1);
    }
    a.run(|l, env, mesh| l.ready(Ready::WRITE, env, mesh));
    assert_eq!(converse(&mut a, &mut b), (Step::Keep, Step::Keep));
    let got: Vec<String> = b
        .service
        .rooms
        .history()
        .map(|e| e.text.to_string())
        .collect();
    assert_eq!(got, ["x3", "x4", "x5"]);
    assert_eq!(
        b.service.rooms.floors().get(x),
        2,
        "x1 and x2 will never come"
    );
}
