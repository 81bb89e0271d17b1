//! One link to another node: a TCP connection we dialled or accepted on the
//! cluster port, its cookie handshake (`handshake`), then frames (`wire`)
//! both ways: state and replay, messages, membership, presence, pings. Like
//! every connection, handlers report a `Step`; the reactor derives interest
//! and the timer from `wants_write` and `deadline`, and removes closed links
//! after the batch. A link that misbehaves — garbage, an oversized frame, a
//! frame out of turn, a wrong cookie, silence — is closed with a log line;
//! the node carries on.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::Token;

use super::handshake::{self, Role, Transcript};
use super::wire::{self, Frame, MAX_FRAME, MAX_HANDSHAKE_FRAME, NONCE_LEN, VERSION};
use super::Mesh;
use crate::conn::output::Chunk;
use crate::conn::transport::Transport;
use crate::conn::{Got, Pipe, Ready, Step, Stream};
use crate::service::Service;
use crate::{debug, info, warn};

/// The handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// A ping goes out this often on a quiet link...
pub const PING_EVERY: Duration = Duration::from_millis(500);
/// ...and a peer not heard from for this long is taken for dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// A peer that has this much waiting is cut off (it replays on reconnect).
const OUTPUT_CAP: usize = 64 << 20;
/// Stop reading a peer while this much output waits for it.
const READ_PAUSE: usize = 1 << 20;
/// Most input handled per readiness event, so a flooding peer can't starve
/// the rest of the loop; the remainder waits for the next turn.
pub const READ_BUDGET: usize = 4 << 20;

/// What a link's handlers may use besides the link.
pub struct LinkEnv<'a> {
    pub now: Instant,
    pub token: Token,
    pub scratch: &'a mut [u8],
    pub service: &'a mut Service,
    pub mesh: &'a mut Mesh,
    /// Set when reading stopped with bytes possibly left: the loop calls
    /// `ready` again before it sleeps.
    pub more: bool,
}

pub enum Phase {
    /// Dialer: waiting for the connect to finish.
    Connecting,
    /// Dialer: `Hello` sent.
    AwaitChallenge { nonce: [u8; NONCE_LEN] },
    /// Acceptor: waiting for `Hello`.
    AwaitHello,
    /// Acceptor: `Challenge` sent.
    AwaitProof {
        addr: String,
        theirs: [u8; NONCE_LEN],
        mine: [u8; NONCE_LEN],
    },
    /// Dialer: `Proof` sent, waiting for the acceptor's `State`.
    AwaitState,
    /// Linked. `replayed`: the peer's `State` has been answered with our
    /// replay, so live messages may follow.
    Up { replayed: bool },
    /// Close once the output is written (after a `Refuse` or a `Leave`).
    Closing,
}

pub struct PeerLink<S> {
    pipe: Pipe<S>,
    pub addr: SocketAddr,
    pub dialed: bool,
    /// The peer's name: whom we dialled, or what its `Hello` said.
    pub name: Option<String>,
    pub phase: Phase,
    /// The link finished its handshake at some point (for the log and the
    /// membership once it closes).
    pub was_up: bool,
    /// The handshake's end, or the next ping.
    deadline: Instant,
    last_heard: Instant,
    /// It said `Leave`: a clean departure, not a failure.
    pub left: bool,
    /// Reading stopped at `READ_PAUSE`; resumes when the output drains.
    read_stopped: bool,
}

impl<S: Stream> PeerLink<S> {
    /// Our dial to `name`: the connect is still under way.
    pub fn dial(stream: S, addr: SocketAddr, name: &str, now: Instant) -> PeerLink<S> {
        let mut link = PeerLink::new(stream, addr, now);
        link.dialed = true;
        link.name = Some(name.to_string());
        link.phase = Phase::Connecting;
        link
    }

    /// A connection on our cluster port: it must say `Hello` first.
    pub fn accept(stream: S, addr: SocketAddr, now: Instant) -> PeerLink<S> {
        PeerLink::new(stream, addr, now)
    }

    fn new(stream: S, addr: SocketAddr, now: Instant) -> PeerLink<S> {
        PeerLink {
            pipe: Pipe::new(stream, Transport::Plain),
            addr,
            dialed: false,
            name: None,
            phase: Phase::AwaitHello,
            was_up: false,
            deadline: now + HANDSHAKE_TIMEOUT,
            last_heard: now,
            left: false,
            read_stopped: false,
        }
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.pipe.stream
    }

    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up { .. })
    }

    /// Live messages go to a linked peer only once its `State` has been
    /// answered with our replay: otherwise a message published meanwhile
    /// would overtake the older ones and make the peer drop them.
    pub fn takes_live(&self) -> bool {
        matches!(self.phase, Phase::Up { replayed: true })
    }

    pub fn deadline(&self) -> Option<Instant> {
        Some(self.deadline)
    }

    /// WRITABLE is wanted while output waits, and while connecting (that
    /// is how a non-blocking connect reports).
    pub fn wants_write(&self) -> bool {
        self.pipe.wants_write() || matches!(self.phase, Phase::Connecting)
    }

    /// Small frames until the other side has proved the cookie (the
    /// acceptor's proof arrives in its `Challenge`, so a dialler awaiting
    /// `State` takes full frames: a large clock must fit).
    fn max_frame(&self) -> usize {
        match self.phase {
            Phase::Up { .. } | Phase::AwaitState => MAX_FRAME,
            _ => MAX_HANDSHAKE_FRAME,
        }
    }

    fn who(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.addr),
            None => self.addr.to_string(),
        }
    }

    pub fn send(&mut self, frame: &Frame) {
        let mut buf = Vec::new();
        wire::encode(frame, &mut buf);
        self.pipe.output.push(Chunk::Owned(buf));
    }

    /// Queues encoded frames shared with other links. Close when over cap.
    pub fn send_shared(&mut self, frames: &[Rc<[u8]>]) -> Step {
        for f in frames {
            self.pipe.output.push(Chunk::Shared(f.clone()));
        }
        if self.pipe.output.len() > OUTPUT_CAP {
            warn!(
                "link to {} closed: {} bytes waiting",
                self.who(),
                self.pipe.output.len()
            );
            return Step::Close;
        }
        Step::Keep
    }

    pub fn ready(&mut self, ready: Ready, env: &mut LinkEnv) -> Step {
        if let Phase::Connecting = self.phase {
            if !ready.writable && !ready.readable {
                return Step::Keep;
            }
            match self.pipe.stream.connected() {
                Ok(true) => {}
                Ok(false) => return Step::Keep, // not yet
                Err(e) => {
                    debug!("dial {} failed: {e}", self.who());
                    return Step::Close;
                }
            }
            let nonce = handshake::nonce();
            self.send(&Frame::Hello {
                version: VERSION,
                name: env.mesh.members.me.clone(),
                addr: env.mesh.my_addr.clone(),
                nonce,
            });
            self.phase = Phase::AwaitChallenge { nonce };
        }
        if ready.readable {
            self.read_stopped = false;
            if let Err(why) = self.read(env) {
                self.log_close(&why);
                return Step::Close;
            }
        }
        self.flush(env)
    }

    /// Shutdown: say `Leave`, then close once it is written.
    pub fn leave(&mut self, env: &mut LinkEnv) -> Step {
        if self.is_up() {
            self.send(&Frame::Leave);
        }
        self.phase = Phase::Closing;
        self.flush(env)
    }

    fn log_close(&self, why: &str) {
        if self.left {
            info!("{} left the cluster", self.who());
        } else if self.is_up() {
            warn!("link to {} down: {why}", self.who());
        } else {
            info!("link with {} closed: {why}", self.who());
        }
    }

    /// Writes what is queued; closes a closing link once it is written.
    /// When answers that paused reading have left, asks the loop to read
    /// again (`LinkEnv::more`); it never reads itself.
    pub fn flush(&mut self, env: &mut LinkEnv) -> Step {
        if let Err(e) = self.pipe.flush() {
            if !matches!(self.phase, Phase::Closing) {
                self.log_close(&format!("write failed: {e}"));
            }
            return Step::Close;
        }
        if matches!(self.phase, Phase::Closing) && self.pipe.output.is_empty() {
            return Step::Close;
        }
        if self.read_stopped && self.pipe.output.len() <= READ_PAUSE / 2 {
            env.more = true;
        }
        Step::Keep
    }

    /// Reads and handles frames until drained or the budget is spent.
    fn read(&mut self, env: &mut LinkEnv) -> Result<(), String> {
        let mut budget = READ_BUDGET;
        loop {
            if self.pipe.output.len() > READ_PAUSE {
                // Our answers (pongs, replays) pile up: read no more until
                // they leave, so a peer that sends without reading is held
                // back by TCP instead of growing our memory.
                self.read_stopped = true;
                return Ok(());
            }
            let limit = self.max_frame() + 4 + 16 * 1024;
            let before = self.pipe.input.len();
            let got = self
                .pipe
                .read(env.scratch, limit, &mut budget)
                .map_err(|e| format!("read failed: {e}"))?;
            if self.pipe.input.len() > before {
                self.last_heard = env.now;
            }
            let mut used = 0;
            loop {
                if matches!(self.phase, Phase::Closing) {
                    self.pipe.input = Vec::new();
                    return Ok(());
                }
                let max = self.max_frame();
                let Some(rest) = self.pipe.input.get(used..) else {
                    break;
                };
                match wire::decode(rest, max) {
                    Ok(Some((frame, n))) => {
                        used += n;
                        self.on_frame(frame, env)?;
                        if self.pipe.output.len() > READ_PAUSE {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        env.service.stats.peer_protocol_errors += 1;
                        return Err(format!("bad frame: {e}"));
                    }
                }
            }
            self.pipe.input.drain(..used);
            self.pipe.release_input();
            match got {
                Got::Eof if self.left => return Err("left the cluster".into()),
                Got::Eof => return Err("closed by the peer".into()),
                Got::Drained => return Ok(()),
                Got::Full if used == 0 => return Err("frame too large".into()),
                Got::Full => {}
                Got::Spent => {
                    env.more = true;
                    return Ok(());
                }
            }
        }
    }

    fn refuse(&mut self, reason: &str) {
        self.send(&Frame::Refuse {
            reason: reason.to_string(),
        });
        self.phase = Phase::Closing;
    }

    fn on_frame(&mut self, frame: Frame, env: &mut LinkEnv) -> Result<(), String> {
        let me = env.mesh.members.me.clone();
        match (&self.phase, frame) {
            (_, Frame::Refuse { reason }) => {
                warn!("{} refused the link: {reason}", self.who());
                Err(format!("refused: {reason}"))
            }
            (
                Phase::AwaitHello,
                Frame::Hello {
                    version,
                    name,
                    addr,
                    nonce,
                },
            ) => {
                self.name = Some(name.clone());
                if version != VERSION {
                    self.refuse("unsupported protocol version");
                    return Err(format!("protocol version {version}"));
                }
                if name == me {
                    self.refuse("that name is mine");
                    return Err("claims this node's name".into());
                }
                if let Some(k) = env.mesh.members.get(&name) {
                    if k.link.is_some() {
                        warn!("{} claims a name already linked: refused", self.who());
                        self.refuse("already linked");
                        return Ok(());
                    }
                    // Both dialled at once: the link dialled by the smaller
                    // name survives, on both sides.
                    if k.dialing.is_some() && me < name {
                        self.refuse("simultaneous dial: the other link wins");
                        return Ok(());
                    }
                }
                env.mesh.members.incoming(&name, env.token.0 as u64);
                let mine = handshake::nonce();
                let t = Transcript {
                    dialer: &name,
                    acceptor: &me,
                    dialer_nonce: &nonce,
                    acceptor_nonce: &mine,
                };
                let mac = handshake::mac(&env.mesh.cookie, Role::Acceptor, &t);
                self.send(&Frame::Challenge {
                    name: me.clone(),
                    nonce: mine,
                    mac,
                });
                self.phase = Phase::AwaitProof {
                    addr,
                    theirs: nonce,
                    mine,
                };
                Ok(())
            }
            (
                Phase::AwaitChallenge { nonce },
                Frame::Challenge {
                    name,
                    nonce: theirs,
                    mac,
                },
            ) => {
                if self.name.as_deref() != Some(name.as_str()) {
                    return Err(format!("answered as {name}"));
                }
                let t = Transcript {
                    dialer: &me,
                    acceptor: &name,
                    dialer_nonce: nonce,
                    acceptor_nonce: &theirs,
                };
                if !handshake::verify(&env.mesh.cookie, Role::Acceptor, &t, &mac) {
                    warn!("{} does not know our cookie: link refused", self.who());
                    env.service.stats.peer_refused += 1;
                    self.refuse("wrong cookie");
                    return Ok(());
                }
                let proof = handshake::mac(&env.mesh.cookie, Role::Dialer, &t);
                self.send(&Frame::Proof { mac: proof });
                self.phase = Phase::AwaitState;
                Ok(())
            }
            (Phase::AwaitProof { addr, theirs, mine }, Frame::Proof { mac }) => {
                let name = self.name.clone().unwrap_or_default();
                let t = Transcript {
                    dialer: &name,
                    acceptor: &me,
                    dialer_nonce: theirs,
                    acceptor_nonce: mine,
                };
                if !handshake::verify(&env.mesh.cookie, Role::Dialer, &t, &mac) {
                    warn!("{} does not know our cookie: link refused", self.who());
                    env.service.stats.peer_refused += 1;
                    self.refuse("wrong cookie");
                    return Ok(());
                }
                if env
                    .mesh
                    .members
                    .get(&name)
                    .is_some_and(|k| k.link.is_some())
                {
                    self.refuse("already linked");
                    return Ok(());
                }
                let Ok(addr) = addr.parse::<SocketAddr>() else {
                    self.refuse("bad cluster address");
                    return Ok(());
                };
                env.mesh.members.learn(&name, addr, false, env.now);
                self.up(env);
                Ok(())
            }
            (Phase::AwaitState, frame @ Frame::State { .. }) => {
                let name = self.name.clone().unwrap_or_default();
                if env
                    .mesh
                    .members
                    .get(&name)
                    .is_some_and(|k| k.link.is_some())
                {
                    // An accepted link from the same node won meanwhile.
                    self.phase = Phase::Closing;
                    return Ok(());
                }
                self.up(env);
                self.on_frame(frame, env)
            }
            (Phase::Up { .. }, frame) => self.on_link_frame(frame, env),
            (_, frame) => Err(format!("unexpected {} during the handshake", kind(&frame))),
        }
    }

    /// The handshake is done: say what we have, whom we know, and start pinging.
    fn up(&mut self, env: &mut LinkEnv) {
        let name = self.name.clone().unwrap_or_default();
        if env.mesh.members.link_up(&name, env.token.0 as u64) {
            env.service.stats.peer_reconnects += 1;
        }
        self.phase = Phase::Up { replayed: false };
        self.was_up = true;
        info!(
            "link up with {} ({})",
            self.who(),
            if self.dialed { "dialled" } else { "accepted" }
        );
        env.service.stats.peer_links_up += 1;
        self.send(&Frame::State {
            clock: env.service.room.clock().entries().to_vec(),
            listeners: env.service.listeners.len() as u32,
        });
        self.send(&env.mesh.nodes_frame());
        self.deadline = env.now + PING_EVERY;
    }

    fn on_link_frame(&mut self, frame: Frame, env: &mut LinkEnv) -> Result<(), String> {
        let name = self.name.clone().unwrap_or_default();
        match frame {
            Frame::State { clock, listeners } => {
                env.mesh.members.set_listeners(&name, listeners as usize);
                // Replay what the peer has not seen, in our history's order.
                let seen = crate::room::Clock::from_entries(&clock);
                let mut sent = 0;
                let mut buf = Vec::new();
                for e in env.service.room.history() {
                    if e.seq > seen.get(e.origin) {
                        wire::encode_message(e.origin, e.seq, &e.text, &mut buf);
                        sent += 1;
                    }
                }
                wire::encode(&Frame::Synced, &mut buf);
                self.pipe.output.push(Chunk::Owned(buf));
                self.phase = Phase::Up { replayed: true };
                if sent > 0 {
                    info!("replayed {sent} messages to {}", self.who());
                }
                Ok(())
            }
            Frame::Synced => {
                env.mesh.members.synced(&name);
                Ok(())
            }
            Frame::Message { origin, seq, text } => {
                if env.service.room.accept(origin, seq, text.into()).is_some() {
                    env.service.stats.published_remote += 1;
                }
                Ok(())
            }
            Frame::Nodes { nodes } => {
                for (name, addr) in nodes {
                    if let Ok(addr) = addr.parse::<SocketAddr>() {
                        if env.mesh.members.learn(&name, addr, false, env.now) {
                            info!("learned of {name} ({addr}) from {}", self.who());
                        }
                    }
                }
                Ok(())
            }
            Frame::Presence { listeners } => {
                env.mesh.members.set_listeners(&name, listeners as usize);
                Ok(())
            }
            Frame::Ping => {
                self.send(&Frame::Pong);
                Ok(())
            }
            Frame::Pong => Ok(()),
            Frame::Leave => {
                info!("{} is leaving the cluster", self.who());
                self.left = true;
                Ok(())
            }
            other => Err(format!("unexpected {} on a linked peer", kind(&other))),
        }
    }

    /// The deadline came: handshake timeout, or time to ping / declare dead.
    pub fn expired(&mut self, env: &mut LinkEnv) -> Step {
        if self.deadline > env.now {
            return Step::Keep;
        }
        if !self.is_up() {
            self.log_close("handshake did not finish in time");
            return Step::Close;
        }
        let silent = env.now.saturating_duration_since(self.last_heard);
        if silent >= DEAD_AFTER {
            self.log_close(&format!("no answer for {:.1}s", silent.as_secs_f64()));
            return Step::Close;
        }
        self.send(&Frame::Ping);
        self.deadline = env.now + PING_EVERY;
        self.flush(env)
    }
}

fn kind(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "Hello",
        Frame::Challenge { .. } => "Challenge",
        Frame::Proof { .. } => "Proof",
        Frame::Refuse { .. } => "Refuse",
        Frame::State { .. } => "State",
        Frame::Synced => "Synced",
        Frame::Message { .. } => "Message",
        Frame::Nodes { .. } => "Nodes",
        Frame::Presence { .. } => "Presence",
        Frame::Ping => "Ping",
        Frame::Pong => "Pong",
        Frame::Leave => "Leave",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::mesh::config::{ClusterConfig, Member};
    use crate::conn::mem::MemStream;
    use crate::service::Config;

    /// One side of a link: its node (service and mesh) and the link.
    struct Side {
        service: Service,
        mesh: Mesh,
        scratch: Vec<u8>,
        link: PeerLink<MemStream>,
        now: Instant,
    }

    const A: &str = "a@127.0.0.1";
    const B: &str = "b@127.0.0.1";

    fn config(cookie: &str) -> ClusterConfig {
        ClusterConfig {
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
        }
    }

    impl Side {
        fn new(me: &str, cookie: &str, dial: bool) -> Side {
            let now = Instant::now();
            let cfg = Config {
                max_message: 4096,
                request_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(10),
            };
            let addr = "127.0.0.1:9".parse().unwrap();
            let link = if dial {
                PeerLink::dial(MemStream::default(), addr, B, now)
            } else {
                PeerLink::accept(MemStream::default(), addr, now)
            };
            Side {
                service: Service::new(me, 100, cfg, now),
                mesh: Mesh::new(config(cookie), me, 1, now),
                scratch: vec![0; 4096],
                link,
                now,
            }
        }

        fn run(&mut self, f: impl FnOnce(&mut PeerLink<MemStream>, &mut LinkEnv) -> Step) -> Step {
            let mut env = LinkEnv {
                now: self.now,
                token: Token(1),
                scratch: &mut self.scratch,
                service: &mut self.service,
                mesh: &mut self.mesh,
                more: false,
            };
            f(&mut self.link, &mut env)
        }

        fn feed(&mut self, bytes: &[u8]) -> Step {
            self.link.stream().send(bytes);
            self.run(|l, env| l.ready(Ready::READ, env))
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
        a.service.room.publish("before the link", 5);
        assert_eq!(a.run(|l, env| l.ready(Ready::WRITE, env)), Step::Keep);
        assert_eq!(converse(&mut a, &mut b), (Step::Keep, Step::Keep));
        assert!(a.link.takes_live() && b.link.takes_live());
        (a, b)
    }

    #[test]
    fn the_handshake_links_and_replays_history() {
        let (a, b) = linked();
        assert_eq!(b.service.room.len(), 1, "b got a's history");
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
            wire::encode_message(crate::room::tag_of(A), 10 + i as u64, text, &mut frames);
        }
        wire::encode(&Frame::Presence { listeners: 7 }, &mut frames);
        for cut in 0..=frames.len() {
            let (_, mut b) = linked();
            assert_eq!(b.feed(&frames[..cut]), Step::Keep, "cut at {cut}");
            assert_eq!(b.feed(&frames[cut..]), Step::Keep, "cut at {cut}");
            let texts: Vec<String> = b
                .service
                .room
                .history()
                .map(|e| e.text.to_string())
                .collect();
            assert_eq!(
                texts,
                ["before the link", "one", "two", "three"],
                "cut at {cut}"
            );
            assert_eq!(b.mesh.members.linked(), [(A.to_string(), 7)]);
        }
    }

    #[test]
    fn a_wrong_cookie_is_refused() {
        let mut a = Side::new(A, "secret", true);
        let mut b = Side::new(B, "other", false);
        a.run(|l, env| l.ready(Ready::WRITE, env));
        let (sa, _) = converse(&mut a, &mut b);
        assert_eq!(sa, Step::Close);
        assert!(!a.link.is_up() && !b.link.is_up());
        assert_eq!(a.service.stats.peer_refused, 1);
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
        assert_eq!(b.run(|l, env| l.expired(env)), Step::Close);
    }

    #[test]
    fn a_quiet_peer_is_pinged_then_declared_dead() {
        let (mut a, _) = linked();
        a.out();
        a.now += PING_EVERY;
        assert_eq!(a.run(|l, env| l.expired(env)), Step::Keep);
        let mut ping = Vec::new();
        wire::encode(&Frame::Ping, &mut ping);
        assert_eq!(a.out(), ping);
        a.now += DEAD_AFTER;
        assert_eq!(a.run(|l, env| l.expired(env)), Step::Close);
    }
}
