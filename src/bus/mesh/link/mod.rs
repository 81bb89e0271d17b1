//! One link to another node: a TCP connection we dialled or accepted on the
//! cluster port, its cookie handshake (`handshake`), then frames (`wire`)
//! both ways: state and replay, messages, membership, presence, pings. Like
//! every connection, handlers report a `Step`; the reactor derives interest
//! and the timer from `wants_write` and `deadline`, and removes closed links
//! after the batch. A link that misbehaves — garbage, an oversized frame, a
//! frame out of turn, a wrong cookie, silence — is closed with a log line;
//! the node carries on. `frames` says what each frame does.

mod frames;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::handshake;
use super::wire::{self, Frame, MAX_FRAME, MAX_HANDSHAKE_FRAME, NONCE_LEN, SHARE_LEN, VERSION};
use super::Mesh;
use crate::conn::output::Chunk;
use crate::conn::transport::Transport;
use crate::conn::{Env, Got, Pipe, Ready, Step, Stream};
use crate::{debug, info, warn};

/// Said when a link fails in its TLS handshake: the likely cause.
const MISMATCH: &str =
    " (if the other node has link_tls = off, set the same link_tls on every node)";

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
    AwaitChallenge { nonce: [u8; NONCE_LEN] },
    /// Acceptor: waiting for `Hello`.
    AwaitHello,
    /// Acceptor: `Challenge` sent with our share of the key exchange.
    AwaitProof {
        addr: String,
        theirs: [u8; NONCE_LEN],
        mine: [u8; NONCE_LEN],
        secret: [u8; 32],
        share: [u8; SHARE_LEN],
    },
    /// Dialer: our `Proof` sent, waiting for the acceptor's confirmation
    /// of the same key.
    AwaitTheirProof {
        mine: [u8; NONCE_LEN],
        theirs: [u8; NONCE_LEN],
        key: [u8; 32],
        their_share: [u8; SHARE_LEN],
    },
    /// Dialer: the acceptor proved the cookie; its `State` comes next.
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
    /// What has left the peer's history, from its `State`: its replay
    /// starts after it.
    peer_floors: crate::room::Clock,
}

impl<S: Stream> PeerLink<S> {
    /// Our dial to `name`: the connect is still under way.
    pub fn dial(
        stream: S,
        transport: Transport,
        addr: SocketAddr,
        name: &str,
        now: Instant,
    ) -> PeerLink<S> {
        let mut link = PeerLink::new(stream, transport, addr, now);
        link.dialed = true;
        link.name = Some(name.to_string());
        link.phase = Phase::Connecting;
        link
    }

    /// A connection on our cluster port: it must say `Hello` first.
    pub fn accept(stream: S, transport: Transport, addr: SocketAddr, now: Instant) -> PeerLink<S> {
        PeerLink::new(stream, transport, addr, now)
    }

    fn new(stream: S, transport: Transport, addr: SocketAddr, now: Instant) -> PeerLink<S> {
        PeerLink {
            pipe: Pipe::new(stream, transport),
            addr,
            dialed: false,
            name: None,
            phase: Phase::AwaitHello,
            was_up: false,
            deadline: now + HANDSHAKE_TIMEOUT,
            last_heard: now,
            left: false,
            read_stopped: false,
            peer_floors: crate::room::Clock::default(),
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

    /// Small frames until the other side has proved the cookie (a dialler
    /// awaiting `State` has the acceptor's proof: a large clock must fit).
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

    pub fn ready(&mut self, ready: Ready, env: &mut Env, mesh: &mut Mesh) -> Step {
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
                name: mesh.members.me.clone(),
                addr: mesh.my_addr.clone(),
                nonce,
            });
            self.phase = Phase::AwaitChallenge { nonce };
        }
        if ready.readable {
            self.read_stopped = false;
            if let Err(why) = self.read(env, mesh) {
                self.log_close(&why);
                // What TLS queued on the way out (an alert saying why) and
                // any Refuse: best effort, the link closes either way.
                let _ = self.pipe.flush();
                return Step::Close;
            }
        }
        self.flush(env)
    }

    /// Best-effort goodbye before the socket is dropped (TLS close_notify).
    pub fn close(&mut self) {
        self.pipe.transport.close_notify();
        let _ = self.pipe.flush();
    }

    /// Shutdown: say `Leave`, then close once it is written.
    pub fn leave(&mut self, env: &mut Env) -> Step {
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
    /// again (`Env::more`); it never reads itself.
    pub fn flush(&mut self, env: &mut Env) -> Step {
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
    fn read(&mut self, env: &mut Env, mesh: &mut Mesh) -> Result<(), String> {
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
            let handshaking = self.pipe.transport.handshaking();
            let got = self
                .pipe
                .read(env.scratch, limit, &mut budget)
                .map_err(|e| {
                    if handshaking {
                        format!("TLS handshake failed: {e}{MISMATCH}")
                    } else {
                        format!("read failed: {e}")
                    }
                })?;
            if handshaking && got == Got::Eof {
                return Err(format!("closed during the TLS handshake{MISMATCH}"));
            }
            self.clear_meets_tls()?;
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
                        self.on_frame(frame, env, mesh)?;
                        if self.pipe.output.len() > READ_PAUSE {
                            // Frames left in `input` wait for the answers
                            // to leave; `flush` asks the loop to go on.
                            self.read_stopped = true;
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

    /// A clear link (`link_tls = off`) whose peer speaks TLS: say so
    /// rather than fail on a frame that makes no sense.
    fn clear_meets_tls(&self) -> Result<(), String> {
        let early = matches!(
            self.phase,
            Phase::AwaitHello | Phase::AwaitChallenge { .. } | Phase::AwaitTheirProof { .. }
        );
        let tls_record = matches!(self.pipe.input.get(..2), Some([0x15 | 0x16, 0x03]));
        if early && tls_record && !self.pipe.transport.is_tls() {
            return Err(
                "it speaks TLS (link_tls = on there) and this node has link_tls = off: set the same link_tls on every node"
                    .into(),
            );
        }
        Ok(())
    }

    /// The deadline came: handshake timeout, or time to ping / declare dead.
    pub fn expired(&mut self, env: &mut Env) -> Step {
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
