//! One connection to Redis as a socket of the reactor: a non-blocking
//! connect, the commands the bus queued for it written in order (pipelined),
//! and each reply decoded (bounded, `resp::Decoder`) and handed back to the
//! bus with what it answers (`Expect`). A malformed reply, a reply nobody
//! asked for, an error the bus cannot take, or silence past the deadline
//! closes the connection with one log line; the bus dials again after a
//! backoff. The node never waits on Redis: it goes on serving.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::node::{Expect, RedisBus, Role};
use super::resp::{Decoder, Limits};
use crate::conn::output::Chunk;
use crate::conn::transport::Transport;
use crate::conn::{Env, Got, Pipe, Ready, Step, Stream};
use crate::debug;

/// The connect (and AUTH, SELECT) must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A reply that takes longer than this (beyond an XREAD's own BLOCK time)
/// means the server or the path is gone.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes read per readiness event; the rest waits for the next turn.
const READ_BUDGET: usize = 4 << 20;

pub struct RedisConn<S> {
    pipe: Pipe<S>,
    pub role: Role,
    pub addr: SocketAddr,
    decoder: Decoder,
    /// What each reply still to come answers, oldest first.
    waiting: VecDeque<Expect>,
    connected: bool,
    /// Connect timeout; then, while a reply is due, when it is overdue.
    deadline: Option<Instant>,
    /// Longest a reply may take now (an XREAD's BLOCK on top).
    reply_time: Duration,
    /// The node drains: close once our messages are all acknowledged.
    draining: bool,
}

impl<S: Stream> RedisConn<S> {
    pub fn dial(
        stream: S,
        transport: Transport,
        role: Role,
        addr: SocketAddr,
        now: Instant,
    ) -> Self {
        RedisConn {
            pipe: Pipe::new(stream, transport),
            role,
            addr,
            decoder: Decoder::new(Limits::default()),
            waiting: VecDeque::new(),
            connected: false,
            deadline: Some(now + CONNECT_TIMEOUT),
            reply_time: REPLY_TIMEOUT,
            draining: false,
        }
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.pipe.stream
    }

    pub fn wants_write(&self) -> bool {
        !self.connected || self.pipe.wants_write()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn ready(&mut self, ready: Ready, env: &mut Env, bus: &mut RedisBus) -> Step {
        if !self.connected {
            if !ready.writable && !ready.readable {
                return Step::Keep;
            }
            match self.pipe.stream.connected() {
                Ok(true) => {}
                Ok(false) => return Step::Keep,
                Err(e) => {
                    bus.failed(self.role, &format!("cannot connect to {}: {e}", self.addr));
                    return Step::Close;
                }
            }
            self.connected = true;
            bus.connected(self.role);
        }
        if ready.readable {
            if let Err(why) = self.read(env, bus) {
                bus.failed(self.role, &why);
                return Step::Close;
            }
        }
        self.flush(env, bus)
    }

    /// Takes what the bus queued for this connection and writes it.
    pub fn flush(&mut self, env: &mut Env, bus: &mut RedisBus) -> Step {
        if !self.connected {
            return if self.draining {
                Step::Close
            } else {
                Step::Keep
            };
        }
        let mut out = Vec::new();
        for (expect, bytes) in bus.take_commands(self.role) {
            if self.waiting.is_empty() {
                self.deadline = Some(env.now + self.reply_time_for(expect));
            }
            self.waiting.push_back(expect);
            out.extend_from_slice(&bytes);
        }
        if !out.is_empty() {
            self.pipe.output.push(Chunk::Owned(out));
        }
        if let Err(e) = self.pipe.flush() {
            bus.failed(self.role, &format!("write failed: {e}"));
            return Step::Close;
        }
        if self.draining && (self.role == Role::Reader || bus.outbox_len() == 0) {
            return Step::Close;
        }
        Step::Keep
    }

    /// Shutdown: the reader closes now; the writer once every message of
    /// ours is acknowledged (or the drain's time is up).
    pub fn drain(&mut self, env: &mut Env, bus: &mut RedisBus) -> Step {
        self.draining = true;
        if self.role == Role::Writer && !self.connected && bus.outbox_len() > 0 {
            crate::warn!(
                "redis: shutting down with {} messages that never reached Redis (kept in this node's log with --data; they go out at its next start)",
                bus.outbox_len()
            );
        }
        self.flush(env, bus)
    }

    fn reply_time_for(&self, expect: Expect) -> Duration {
        match expect {
            Expect::Xread => REPLY_TIMEOUT + super::node::BLOCK,
            _ => self.reply_time,
        }
    }

    fn read(&mut self, env: &mut Env, bus: &mut RedisBus) -> Result<(), String> {
        let mut budget = READ_BUDGET;
        loop {
            let got = self
                .pipe
                .read(env.scratch, 64 * 1024, &mut budget)
                .map_err(|e| format!("read failed: {e}"))?;
            self.decoder.feed(&self.pipe.input);
            self.pipe.input.clear();
            self.pipe.release_input();
            while let Some(value) = self.decoder.next().map_err(|e| {
                if e == super::resp::RespError::TooLarge {
                    bus.reply_too_large(self.role);
                }
                format!("malformed reply: {e}")
            })? {
                let Some(expect) = self.waiting.pop_front() else {
                    return Err("a reply nobody asked for".into());
                };
                bus.reply(self.role, expect, value, env)?;
                self.deadline = self
                    .waiting
                    .front()
                    .map(|&next| env.now + self.reply_time_for(next));
            }
            match got {
                Got::Eof => return Err("closed by the server".into()),
                Got::Drained => return Ok(()),
                Got::Full => {}
                Got::Spent => {
                    env.more = true;
                    return Ok(());
                }
            }
        }
    }

    /// The deadline came: the connect or a reply is overdue.
    pub fn expired(&mut self, env: &mut Env, bus: &mut RedisBus) -> Step {
        if self.deadline.is_none_or(|at| at > env.now) {
            return Step::Keep;
        }
        let why = if self.connected {
            "no reply in time"
        } else {
            "connect timed out"
        };
        bus.failed(self.role, &format!("{why} ({})", self.addr));
        Step::Close
    }

    /// Best effort on the way out.
    pub fn close(&mut self) {
        self.pipe.transport.close_notify();
        if let Err(e) = self.pipe.flush() {
            debug!("redis close: {e}");
        }
    }
}
