//! One link to another node: a TCP connection we dialled or accepted on the
//! cluster port, its cookie handshake (`cluster::handshake`), then frames
//! (`cluster::wire`) both ways: state and replay, messages, membership,
//! presence, pings. Like `client.rs`, handlers report a `Step` and the reactor
//! removes closed links after the batch. A link that misbehaves — garbage,
//! an oversized frame, a frame out of turn, a wrong cookie, silence — is
//! closed with a log line; the node carries on.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::client::Step;
use crate::cluster::handshake::{self, Role, Transcript};
use crate::cluster::members::Members;
use crate::cluster::wire::{self, Frame, MAX_FRAME, MAX_HANDSHAKE_FRAME, NONCE_LEN, VERSION};
use crate::output::{Chunk, Output};
use crate::room::Room;
use crate::stats::Stats;
use crate::timer::{Deadline, Timers};
use crate::transport::{ReadEnd, Transport};
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

pub enum Phase {
    /// Dialer: waiting for the connect to finish.
    Connecting,
    /// Dialer: `Hello` sent.
    AwaitChallenge {
        nonce: [u8; NONCE_LEN],
    },
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
    Up,
}

pub struct PeerLink {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    pub dialed: bool,
    /// The peer's name: whom we dialled, or what its `Hello` said.
    pub name: Option<String>,
    pub phase: Phase,
    input: Vec<u8>,
    pub output: Output,
    pub deadline: Deadline,
    last_heard: Instant,
    writable: bool,
    /// The peer's listeners, from its `State` and `Presence`.
    pub listeners: usize,
    /// It said `Leave`: a clean departure, not a failure.
    pub left: bool,
    /// Close once the output is written (after a `Refuse`).
    closing: bool,
    /// Reading stopped at `READ_PAUSE`; resumes when the output drains.
    read_paused: bool,
    /// The peer's `State` has been answered with our replay.
    replayed: bool,
}

pub struct PeerCtx<'a> {
    pub now: Instant,
    pub token: Token,
    pub registry: &'a Registry,
    pub timers: &'a mut Timers,
    pub scratch: &'a mut [u8],
    pub room: &'a mut Room,
    pub members: &'a mut Members,
    pub my_addr: &'a str,
    pub cookie: &'a str,
    pub local_listeners: usize,
    pub stats: &'a mut Stats,
    /// Set when something the page shows (peers, counts) changed.
    pub presence_changed: &'a mut bool,
    /// Set when the read budget ran out with input left.
    pub more_to_read: &'a mut bool,
}

impl PeerLink {
    pub fn dial(stream: TcpStream, addr: SocketAddr, name: &str, now: Instant) -> PeerLink {
        let mut link = PeerLink::new(stream, addr, now);
        link.dialed = true;
        link.name = Some(name.to_string());
        link.phase = Phase::Connecting;
        link
    }

    pub fn accept(stream: TcpStream, addr: SocketAddr, now: Instant) -> PeerLink {
        PeerLink::new(stream, addr, now)
    }

    fn new(stream: TcpStream, addr: SocketAddr, now: Instant) -> PeerLink {
        PeerLink {
            stream,
            addr,
            dialed: false,
            name: None,
            phase: Phase::AwaitHello,
            input: Vec::new(),
            output: Output::default(),
            deadline: Deadline::default(),
            last_heard: now,
            writable: true,
            listeners: 0,
            left: false,
            closing: false,
            read_paused: false,
            replayed: false,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up)
    }

    /// Live messages go to a linked peer only once its `State` has been
    /// answered with our replay: otherwise a message published meanwhile
    /// would overtake the older ones and make the peer drop them.
    pub fn takes_live(&self) -> bool {
        self.is_up() && self.replayed
    }

    /// Small frames until the other side has proved the cookie (the
    /// acceptor's proof arrives in its `Challenge`, so a dialler awaiting
    /// `State` takes full frames: a large clock must fit).
    fn max_frame(&self) -> usize {
        match self.phase {
            Phase::Up | Phase::AwaitState => MAX_FRAME,
            _ => MAX_HANDSHAKE_FRAME,
        }
    }

    fn who(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.addr),
            None => self.addr.to_string(),
        }
    }

    pub fn start(&mut self, cx: &mut PeerCtx) {
        self.deadline.set(
            Some(cx.now + HANDSHAKE_TIMEOUT),
            cx.timers,
            cx.token.0 as u64,
        );
    }

    pub fn send(&mut self, frame: &Frame) {
        let mut buf = Vec::new();
        wire::encode(frame, &mut buf);
        self.output.push(Chunk::Owned(buf));
    }

    /// Queues an encoded frame shared with other links. Close when over cap.
    pub fn send_shared(&mut self, frame: &Rc<[u8]>) -> Step {
        self.output.push(Chunk::Shared(frame.clone()));
        if self.output.len() > OUTPUT_CAP {
            warn!(
                "link to {} closed: {} bytes waiting",
                self.who(),
                self.output.len()
            );
            return Step::Close;
        }
        Step::Keep
    }

    pub fn ready(&mut self, readable: bool, writable: bool, cx: &mut PeerCtx) -> Step {
        if let Phase::Connecting = self.phase {
            if !writable && !readable {
                return Step::Keep;
            }
            match self.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    debug!("dial {} failed: {e}", self.who());
                    return Step::Close;
                }
            }
            if let Err(e) = self.stream.peer_addr() {
                if e.kind() == std::io::ErrorKind::NotConnected {
                    return Step::Keep; // not yet
                }
                debug!("dial {} failed: {e}", self.who());
                return Step::Close;
            }
            let nonce = handshake::nonce();
            self.send(&Frame::Hello {
                version: VERSION,
                name: cx.members.me.clone(),
                addr: cx.my_addr.to_string(),
                nonce,
            });
            self.phase = Phase::AwaitChallenge { nonce };
        }
        if readable {
            if let Err(why) = self.read(cx) {
                self.log_close(&why);
                return Step::Close;
            }
        }
        self.flush_and_settle(cx)
    }

    /// Shutdown: say `Leave`, then close once it is written.
    pub fn leave(&mut self, cx: &mut PeerCtx) -> Step {
        if self.is_up() {
            self.send(&Frame::Leave);
        }
        self.closing = true;
        self.flush_and_settle(cx)
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

    pub fn flush_and_settle(&mut self, cx: &mut PeerCtx) -> Step {
        let mut plain = Transport::Plain;
        let mut rounds = 0;
        loop {
            if let Err(e) = plain.write(&mut self.stream, &mut self.output) {
                if !self.closing {
                    self.log_close(&format!("write failed: {e}"));
                }
                return Step::Close;
            }
            if self.closing && self.output.is_empty() {
                return Step::Close;
            }
            if !(self.read_paused && self.output.len() <= READ_PAUSE / 2) {
                break;
            }
            rounds += 1;
            if rounds > 4 {
                // Fairness: the rest of the loop gets a turn first.
                self.read_paused = false;
                *cx.more_to_read = true;
                break;
            }
            // The answers left: read again (the read budget bounds a turn).
            self.read_paused = false;
            if let Err(why) = self.read(cx) {
                self.log_close(&why);
                return Step::Close;
            }
        }
        let pending = !self.output.is_empty() || matches!(self.phase, Phase::Connecting);
        if pending != self.writable {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if cx
                .registry
                .reregister(&mut self.stream, cx.token, interest)
                .is_err()
            {
                return Step::Close;
            }
            self.writable = pending;
        }
        Step::Keep
    }

    /// Reads and handles frames until drained or the budget is spent.
    fn read(&mut self, cx: &mut PeerCtx) -> Result<(), String> {
        let mut budget = READ_BUDGET;
        loop {
            if self.output.len() > READ_PAUSE {
                // Our answers (pongs, replays) pile up: read no more until
                // they leave, so a peer that sends without reading is held
                // back by TCP instead of growing our memory.
                self.read_paused = true;
                return Ok(());
            }
            let max = self.max_frame();
            let limit = max + 4 + 16 * 1024;
            let before = self.input.len();
            let end = Transport::Plain
                .read(&mut self.stream, cx.scratch, &mut self.input, limit)
                .map_err(|e| format!("read failed: {e}"))?;
            budget = budget.saturating_sub(self.input.len() - before);
            if self.input.len() > before {
                self.last_heard = cx.now;
            }
            let mut used = 0;
            loop {
                if self.closing {
                    self.input = Vec::new();
                    return Ok(());
                }
                let max = self.max_frame();
                let Some(rest) = self.input.get(used..) else {
                    break;
                };
                match wire::decode(rest, max) {
                    Ok(Some((frame, n))) => {
                        used += n;
                        self.on_frame(frame, cx)?;
                        if self.output.len() > READ_PAUSE {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        cx.stats.peer_protocol_errors += 1;
                        return Err(format!("bad frame: {e}"));
                    }
                }
            }
            self.input.drain(..used);
            if self.input.is_empty() {
                self.input = Vec::new();
            }
            match end {
                ReadEnd::Eof if self.left => return Err("left the cluster".into()),
                ReadEnd::Eof => return Err("closed by the peer".into()),
                ReadEnd::Drained => return Ok(()),
                ReadEnd::Full if used == 0 => return Err("frame too large".into()),
                ReadEnd::Full => {}
            }
            if budget == 0 {
                *cx.more_to_read = true;
                return Ok(());
            }
        }
    }

    fn refuse(&mut self, reason: &str) {
        self.send(&Frame::Refuse {
            reason: reason.to_string(),
        });
        self.closing = true;
    }

    fn on_frame(&mut self, frame: Frame, cx: &mut PeerCtx) -> Result<(), String> {
        let me = cx.members.me.clone();
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
                if let Some(k) = cx.members.get(&name) {
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
                cx.members.incoming(&name, cx.token.0 as u64);
                let mine = handshake::nonce();
                let t = Transcript {
                    dialer: &name,
                    acceptor: &me,
                    dialer_nonce: &nonce,
                    acceptor_nonce: &mine,
                };
                let mac = handshake::mac(cx.cookie, Role::Acceptor, &t);
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
                if !handshake::verify(cx.cookie, Role::Acceptor, &t, &mac) {
                    warn!("{} does not know our cookie: link refused", self.who());
                    cx.stats.peer_refused += 1;
                    self.refuse("wrong cookie");
                    return Ok(());
                }
                let proof = handshake::mac(cx.cookie, Role::Dialer, &t);
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
                if !handshake::verify(cx.cookie, Role::Dialer, &t, &mac) {
                    warn!("{} does not know our cookie: link refused", self.who());
                    cx.stats.peer_refused += 1;
                    self.refuse("wrong cookie");
                    return Ok(());
                }
                if cx.members.get(&name).is_some_and(|k| k.link.is_some()) {
                    self.refuse("already linked");
                    return Ok(());
                }
                let Ok(addr) = addr.parse::<SocketAddr>() else {
                    self.refuse("bad cluster address");
                    return Ok(());
                };
                cx.members.learn(&name, addr, false, cx.now);
                self.up(cx);
                Ok(())
            }
            (Phase::AwaitState, frame @ Frame::State { .. }) => {
                let name = self.name.clone().unwrap_or_default();
                if cx.members.get(&name).is_some_and(|k| k.link.is_some()) {
                    // An accepted link from the same node won meanwhile.
                    self.closing = true;
                    return Ok(());
                }
                self.up(cx);
                self.on_frame(frame, cx)
            }
            (Phase::Up, frame) => self.on_link_frame(frame, cx),
            (_, frame) => Err(format!("unexpected {} during the handshake", kind(&frame))),
        }
    }

    /// The handshake is done: say what we have, whom we know, and start pinging.
    fn up(&mut self, cx: &mut PeerCtx) {
        let name = self.name.clone().unwrap_or_default();
        if cx.members.link_up(&name, cx.token.0 as u64) {
            cx.stats.peer_reconnects += 1;
        }
        self.phase = Phase::Up;
        info!(
            "link up with {} ({})",
            self.who(),
            if self.dialed { "dialled" } else { "accepted" }
        );
        cx.stats.peer_links_up += 1;
        self.send(&Frame::State {
            clock: cx.room.clock().entries().to_vec(),
            listeners: cx.local_listeners as u32,
        });
        self.send(&nodes_frame(cx.members, cx.my_addr));
        *cx.presence_changed = true;
        self.deadline
            .set(Some(cx.now + PING_EVERY), cx.timers, cx.token.0 as u64);
    }

    fn on_link_frame(&mut self, frame: Frame, cx: &mut PeerCtx) -> Result<(), String> {
        match frame {
            Frame::State { clock, listeners } => {
                self.listeners = listeners as usize;
                *cx.presence_changed = true;
                // Replay what the peer has not seen, in our history's order.
                let seen = crate::room::Clock::from_entries(&clock);
                let mut sent = 0;
                let mut buf = Vec::new();
                for e in cx.room.history() {
                    if e.seq > seen.get(e.origin) {
                        wire::encode_message(e.origin, e.seq, &e.text, &mut buf);
                        sent += 1;
                    }
                }
                wire::encode(&Frame::Synced, &mut buf);
                self.output.push(Chunk::Owned(buf));
                self.replayed = true;
                if sent > 0 {
                    info!("replayed {sent} messages to {}", self.who());
                }
                Ok(())
            }
            Frame::Synced => {
                if let Some(name) = &self.name {
                    cx.members.synced(name);
                }
                Ok(())
            }
            Frame::Message { origin, seq, text } => {
                if cx.room.accept(origin, seq, text.into()).is_some() {
                    cx.stats.published_remote += 1;
                }
                Ok(())
            }
            Frame::Nodes { nodes } => {
                for (name, addr) in nodes {
                    if let Ok(addr) = addr.parse::<SocketAddr>() {
                        if cx.members.learn(&name, addr, false, cx.now) {
                            info!("learned of {name} ({addr}) from {}", self.who());
                        }
                    }
                }
                Ok(())
            }
            Frame::Presence { listeners } => {
                self.listeners = listeners as usize;
                *cx.presence_changed = true;
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

    /// The deadline fired: handshake timeout, or time to ping / declare dead.
    pub fn expired(&mut self, cx: &mut PeerCtx) -> Step {
        if !self.deadline.fired(cx.now, cx.timers, cx.token.0 as u64) {
            return Step::Keep;
        }
        if !self.is_up() {
            self.log_close("handshake did not finish in time");
            return Step::Close;
        }
        let silent = cx.now.saturating_duration_since(self.last_heard);
        if silent >= DEAD_AFTER {
            self.log_close(&format!("no answer for {:.1}s", silent.as_secs_f64()));
            return Step::Close;
        }
        self.send(&Frame::Ping);
        self.deadline
            .set(Some(cx.now + PING_EVERY), cx.timers, cx.token.0 as u64);
        self.flush_and_settle(cx)
    }
}

/// Everyone we know, ourselves included, for the peer to link to.
pub fn nodes_frame(members: &Members, my_addr: &str) -> Frame {
    let mut nodes = vec![(members.me.clone(), my_addr.to_string())];
    nodes.extend(
        members
            .known
            .iter()
            .map(|k| (k.name.clone(), k.addr.to_string())),
    );
    Frame::Nodes { nodes }
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
