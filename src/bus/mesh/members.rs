//! Who this node knows, whether it is linked to them, and when to dial them
//! next. Nodes come from the cluster file (`listed`: dialled forever) or are
//! learned from peers (forgotten after `FORGET_AFTER` of failed dials). A
//! link going down schedules a redial with capped exponential backoff and
//! jitter, so a cluster restarting together does not dial in lock-step.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::service::presence::Peer;

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(3);
/// A node that holds another cookie is redialled at most this often: it
/// will not change its cookie by itself.
const REFUSED_BACKOFF_CAP: Duration = Duration::from_secs(60);
const FORGET_AFTER: Duration = Duration::from_secs(120);
/// Most nodes a node will remember (peers can tell it of others).
pub const MAX_MEMBERS: usize = 128;

#[derive(Debug, Clone)]
pub struct Known {
    pub name: String,
    pub addr: SocketAddr,
    pub listed: bool,
    /// The token of the link that finished its handshake, if any.
    pub link: Option<u64>,
    /// The token of our dial in progress, if any.
    pub dialing: Option<u64>,
    /// The token of a handshake it started with us, if any: no dial then,
    /// or both links could come up and each side drop the other's.
    pub incoming: Option<u64>,
    /// The link's replay has arrived (it sent `Synced`).
    pub synced: bool,
    /// A link with it was up before (the next one is a reconnect).
    pub ever_up: bool,
    /// The last handshake with it failed over the cookie (cleared when a
    /// link comes up): redial slowly, and log it once.
    pub cookie_refused: bool,
    /// Its listeners and busiest rooms, as its link last said (none while
    /// unlinked).
    pub listeners: usize,
    pub rooms: Vec<(String, usize)>,
    attempts: u32,
    next_dial: Option<Instant>,
    failing_since: Option<Instant>,
}

pub struct Members {
    pub me: String,
    pub known: Vec<Known>,
    /// A node was learned since the last `take_changed`.
    changed: bool,
    rng: u64,
}

impl Members {
    pub fn new(me: &str, seed: u64) -> Members {
        Members {
            me: me.to_string(),
            known: Vec::new(),
            changed: false,
            rng: seed | 1,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Known> {
        self.known.iter().find(|k| k.name == name)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Known> {
        self.known.iter_mut().find(|k| k.name == name)
    }

    /// Adds a node (not ourselves); true if it was new. Its first dial is due now.
    pub fn learn(&mut self, name: &str, addr: SocketAddr, listed: bool, now: Instant) -> bool {
        if name == self.me || self.known.len() >= MAX_MEMBERS {
            return false;
        }
        if let Some(k) = self.get_mut(name) {
            // The cluster file's address wins over what a node says of
            // itself: behind a proxy, a port forward or NAT, only the
            // listed one may reach it.
            if listed || !k.listed {
                k.addr = addr;
            }
            k.listed |= listed;
            return false;
        }
        self.known.push(Known {
            name: name.to_string(),
            addr,
            listed,
            link: None,
            dialing: None,
            incoming: None,
            synced: false,
            ever_up: false,
            cookie_refused: false,
            listeners: 0,
            rooms: Vec::new(),
            attempts: 0,
            next_dial: Some(now),
            failing_since: None,
        });
        self.changed = true;
        true
    }

    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Nodes to dial now: not linked, not being dialled, their time come.
    pub fn due(&self, now: Instant) -> Vec<(String, SocketAddr)> {
        self.known
            .iter()
            .filter(|k| k.link.is_none() && k.dialing.is_none() && k.incoming.is_none())
            .filter(|k| k.next_dial.is_some_and(|t| t <= now))
            .map(|k| (k.name.clone(), k.addr))
            .collect()
    }

    /// When `due` will next have a node. The same filter as `due`: a time
    /// `due` would not act on made the loop wake at once, over and over
    /// (found by review: a stranger's `Hello` naming a listed node did it).
    pub fn next_dial(&self) -> Option<Instant> {
        self.known
            .iter()
            .filter(|k| k.link.is_none() && k.dialing.is_none() && k.incoming.is_none())
            .filter_map(|k| k.next_dial)
            .min()
    }

    pub fn dialing(&mut self, name: &str, token: u64) {
        if let Some(k) = self.get_mut(name) {
            k.dialing = Some(token);
            k.next_dial = None;
        }
    }

    /// A node began a handshake with us (its `Hello`).
    pub fn incoming(&mut self, name: &str, token: u64) {
        if let Some(k) = self.get_mut(name) {
            k.incoming = Some(token);
        }
    }

    /// That handshake ended without a link; our own dials may resume.
    pub fn incoming_ended(&mut self, name: &str, token: u64, now: Instant) {
        if let Some(k) = self.get_mut(name) {
            if k.incoming == Some(token) {
                k.incoming = None;
                if k.link.is_none() && k.dialing.is_none() {
                    k.next_dial.get_or_insert(now);
                }
            }
        }
    }

    /// Our dial ended without a link (refused, unreachable, lost a tie-break).
    pub fn dial_ended(&mut self, name: &str, token: u64, now: Instant) {
        let delay = self.backoff(name);
        if let Some(k) = self.get_mut(name) {
            if k.dialing == Some(token) {
                k.dialing = None;
                if k.link.is_none() {
                    k.next_dial = Some(now + delay);
                    k.failing_since.get_or_insert(now);
                }
            }
        }
        self.forget_stale(now);
    }

    /// Records the link; true when it is a reconnect.
    pub fn link_up(&mut self, name: &str, token: u64) -> bool {
        let Some(k) = self.get_mut(name) else {
            return false;
        };
        let again = k.ever_up;
        k.ever_up = true;
        k.link = Some(token);
        k.dialing = None;
        k.incoming = None;
        k.cookie_refused = false;
        k.attempts = 0;
        k.failing_since = None;
        k.next_dial = None;
        k.synced = false;
        again
    }

    /// The link `token` went down: redial soon (with jitter).
    pub fn link_down(&mut self, name: &str, token: u64, now: Instant) {
        let delay = self.backoff(name);
        if let Some(k) = self.get_mut(name) {
            if k.link == Some(token) {
                k.link = None;
                k.synced = false;
                k.listeners = 0;
                k.rooms = Vec::new();
                k.next_dial = Some(now + delay);
                k.failing_since = Some(now);
            }
        }
    }

    /// A handshake with `name` failed over the cookie. True the first time
    /// (since it last linked): the caller logs that one at WARN.
    pub fn cookie_refused(&mut self, name: &str) -> bool {
        match self.get_mut(name) {
            Some(k) => !std::mem::replace(&mut k.cookie_refused, true),
            None => true,
        }
    }

    pub fn set_listeners(
        &mut self,
        name: &str,
        listeners: usize,
        rooms: Option<Vec<(String, usize)>>,
    ) {
        if let Some(k) = self.get_mut(name) {
            k.listeners = listeners;
            if let Some(rooms) = rooms {
                k.rooms = rooms;
            }
        }
    }

    /// The linked nodes and their listeners, for presence.
    pub fn linked(&self) -> Vec<Peer> {
        self.known
            .iter()
            .filter(|k| k.link.is_some())
            .map(|k| Peer {
                name: k.name.clone(),
                listeners: k.listeners,
                rooms: k.rooms.clone(),
            })
            .collect()
    }

    pub fn synced(&mut self, name: &str) {
        if let Some(k) = self.get_mut(name) {
            k.synced = true;
        }
    }

    /// Every node of the cluster file has linked and sent its replay.
    pub fn all_listed_synced(&self) -> bool {
        self.known.iter().filter(|k| k.listed).all(|k| k.synced)
    }

    /// Capped exponential backoff with ±25% jitter; counts the attempt.
    fn backoff(&mut self, name: &str) -> Duration {
        let (attempts, cap) = match self.get_mut(name) {
            Some(k) => {
                k.attempts = k.attempts.saturating_add(1);
                let cap = if k.cookie_refused {
                    REFUSED_BACKOFF_CAP
                } else {
                    BACKOFF_CAP
                };
                (k.attempts, cap)
            }
            None => (1, BACKOFF_CAP),
        };
        let base = BACKOFF_FIRST.saturating_mul(1 << attempts.min(10)).min(cap);
        crate::bus::jittered(&mut self.rng, base)
    }

    fn forget_stale(&mut self, now: Instant) {
        self.known.retain(|k| {
            k.listed
                || k.link.is_some()
                || k.dialing.is_some()
                || k.failing_since
                    .is_none_or(|t| now.duration_since(t) < FORGET_AFTER)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_backoff_grows_and_resets() {
        let t0 = Instant::now();
        let mut m = Members::new("a", 42);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(m.learn("b", addr, true, t0));
        assert!(!m.learn("b", addr, true, t0));
        assert!(!m.learn("a", addr, true, t0), "never ourselves");
        assert_eq!(m.due(t0).len(), 1);
        let mut last = Duration::ZERO;
        for token in 1..6 {
            m.dialing("b", token);
            assert!(m.due(t0).is_empty());
            m.dial_ended("b", token, t0);
            let wait = m.next_dial().unwrap() - t0;
            assert!(wait <= BACKOFF_CAP.mul_f64(1.25));
            if token < 4 {
                assert!(wait > last, "{wait:?} after {last:?}");
            }
            last = wait;
        }
        m.dialing("b", 9);
        m.link_up("b", 9);
        assert!(!m.all_listed_synced());
        m.synced("b");
        assert!(m.all_listed_synced());
        m.link_down("b", 9, t0);
        assert!(m.next_dial().unwrap() - t0 <= Duration::from_millis(250));
    }

    /// Regression (review): a handshake under way with a listed node whose
    /// dial was due made `next_dial` say "now" while `due` gave nothing:
    /// the loop spun at full CPU until the handshake ended.
    #[test]
    fn next_dial_never_names_a_time_due_skips() {
        let t0 = Instant::now();
        let mut m = Members::new("a", 3);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        m.learn("b", addr, true, t0);
        m.incoming("b", 5);
        assert!(m.due(t0).is_empty());
        assert_eq!(m.next_dial(), None);
    }

    #[test]
    fn a_node_with_another_cookie_is_redialled_slowly_and_logged_once() {
        let t0 = Instant::now();
        let mut m = Members::new("a", 7);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        m.learn("b", addr, true, t0);
        assert!(m.cookie_refused("b"), "the first refusal is news");
        assert!(!m.cookie_refused("b"), "the next ones are not");
        for token in 1..12 {
            m.dialing("b", token);
            m.dial_ended("b", token, t0);
        }
        let wait = m.next_dial().unwrap() - t0;
        assert!(
            wait > BACKOFF_CAP * 5 && wait <= REFUSED_BACKOFF_CAP.mul_f64(1.25),
            "{wait:?}"
        );
        m.dialing("b", 20);
        m.link_up("b", 20);
        assert!(m.cookie_refused("b"), "news again after a link came up");
    }

    /// Regression (review): a node that accepted a peer's `Hello` and then
    /// dialled it too could end with both links up and each side dropping
    /// one; no dial while the peer's own handshake is under way.
    #[test]
    fn no_dial_while_the_peer_is_handshaking_with_us() {
        let t0 = Instant::now();
        let mut m = Members::new("a", 7);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        m.learn("b", addr, true, t0);
        m.incoming("b", 5);
        assert!(m.due(t0).is_empty());
        m.incoming_ended("b", 5, t0);
        assert_eq!(m.due(t0).len(), 1);
        m.incoming("b", 6);
        m.link_up("b", 6);
        assert!(m.get("b").unwrap().incoming.is_none());
    }

    /// Regression (tests/links.rs): a node's own word on its address
    /// replaced the cluster file's, so redials skipped the proxy it named.
    #[test]
    fn a_listed_address_is_kept_over_what_the_node_says() {
        let t0 = Instant::now();
        let mut m = Members::new("a", 1);
        let listed: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let own: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        m.learn("b", listed, true, t0);
        m.learn("b", own, false, t0);
        assert_eq!(m.get("b").map(|k| k.addr), Some(listed));
        m.learn("c", own, false, t0);
        m.learn("c", listed, false, t0);
        assert_eq!(
            m.get("c").map(|k| k.addr),
            Some(listed),
            "learnt ones follow"
        );
    }

    #[test]
    fn learned_nodes_are_forgotten_listed_ones_are_not() {
        let t0 = Instant::now();
        let mut m = Members::new("a", 1);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        m.learn("listed", addr, true, t0);
        m.learn("learned", addr, false, t0);
        m.dialing("learned", 1);
        m.dial_ended("learned", 1, t0);
        m.dialing("learned", 2);
        m.dial_ended("learned", 2, t0 + FORGET_AFTER);
        m.dialing("listed", 3);
        m.dial_ended("listed", 3, t0 + FORGET_AFTER * 2);
        assert!(m.get("learned").is_none());
        assert!(m.get("listed").is_some());
    }
}
