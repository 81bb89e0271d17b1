//! One HTTP/1.1 connection, plain or TLS, from its first byte to its close:
//! reads requests (pipelined ones answered in order), hands each to the
//! service, writes the answer in HTTP/1.1 framing, and may turn into an SSE
//! stream (one listener, stream 0). Handlers report a `Step`; the reactor
//! derives interest from `wants_write` and the timer from `deadline`.
//! Everything the connection holds is bounded: its input by the head and
//! body limits, its output by `OUTPUT_PAUSE` for responses and by the
//! listener caps for a stream. `respond` writes the answers.

mod respond;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::output::{Chunk, Output};
use super::transport::Transport;
use super::{Env, Got, Pipe, Ready, Step, Stream};
use crate::http::body::decode_chunked;
use crate::http::{parse_head, BodyKind, Head, HeadLimits, Method, Response};
use crate::service::listeners::ListenerKey;
use crate::{debug, info};

/// Stop reading requests while this much response output waits: a client
/// that pipelines without reading can't make us buffer without bound.
const OUTPUT_PAUSE: usize = 64 * 1024;
/// Most bytes read per readiness event, so one busy client can't hold the
/// loop; the rest is read on the next turn (the pending list).
const READ_BUDGET: usize = 256 * 1024;

/// A listener whose queue passes `HARD_CAP` bytes, or stays above `SOFT_CAP`
/// for `SOFT_TIME`, is closed; its browser resumes from history. Frames are
/// shared, so a queue costs ~32 bytes per message whatever their size.
pub const HARD_CAP: usize = 1024 * 1024;
pub const SOFT_CAP: usize = 128 * 1024;
pub const SOFT_TIME: Duration = Duration::from_secs(5);
/// Bytes a stream may send before it is cut off (it has nothing to say).
const DISCARD_LIMIT: usize = 64 * 1024;
/// Bytes a connection answered with an error (413, 431, …) may still send
/// while we linger: a client that sends its whole request before it reads
/// must get to read our answer, not a reset (within `LINGER`).
const LINGER_LIMIT: usize = 1024 * 1024;
/// A connection closing after an error gets this long to take its answer.
const LINGER: Duration = Duration::from_secs(5);
/// Input taken (and dropped) per read from a stream or a closing connection.
const DISCARD_BITE: usize = 4096;
/// How an HTTP/2 client with prior knowledge opens (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum State {
    /// Waiting for a request head. `since`: when its first byte came;
    /// `kept`: an earlier request was answered, so silence is keep-alive
    /// idle time rather than a request that is late.
    Head { since: Option<Instant>, kept: bool },
    /// A whole head is in `input` but the node is not serving yet: it is
    /// parsed again once the node serves (`resume`).
    Held { since: Instant },
    /// Head read, waiting for the body.
    Body { head: Box<Head>, since: Instant },
    /// An SSE stream. `over_soft`: above `SOFT_CAP` since then; `ending`:
    /// close once the output is written (shutdown); `discarded`: bytes the
    /// client sent since, read and dropped.
    Stream {
        key: ListenerKey,
        over_soft: Option<Instant>,
        ending: bool,
        discarded: usize,
    },
    /// The last answer is queued: close once written (or after `LINGER`).
    /// `shut`: our side is shut down and we read until the client's end, so
    /// unread request bytes don't turn our answer into a reset.
    Closing { shut: bool, discarded: usize },
}

pub struct Http1<S> {
    pipe: Pipe<S>,
    pub peer: SocketAddr,
    state: State,
    /// When the current state's time runs out.
    deadline: Option<Instant>,
    /// Reading stopped at `OUTPUT_PAUSE`; resumes once the answers left.
    read_stopped: bool,
}

impl<S: Stream> Http1<S> {
    /// A new connection gets the request timeout: one that connects and
    /// says nothing is closed then (a TLS handshake included).
    pub fn new(
        stream: S,
        transport: Transport,
        peer: SocketAddr,
        now: Instant,
        request_timeout: Duration,
    ) -> Http1<S> {
        Http1 {
            pipe: Pipe::new(stream, transport),
            peer,
            state: State::Head {
                since: None,
                kept: false,
            },
            deadline: Some(now + request_timeout),
            read_stopped: false,
        }
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.pipe.stream
    }

    pub fn is_tls(&self) -> bool {
        self.pipe.transport.is_tls()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn wants_write(&self) -> bool {
        self.pipe.wants_write()
    }

    /// The listener this connection is, once it streams.
    pub fn listener(&self) -> Option<ListenerKey> {
        match self.state {
            State::Stream { key, .. } => Some(key),
            _ => None,
        }
    }

    pub fn is_held(&self) -> bool {
        matches!(self.state, State::Held { .. })
    }

    pub fn ready(&mut self, ready: Ready, env: &mut Env) -> Step {
        if ready.writable && self.flush(env) == Step::Close {
            return Step::Close;
        }
        if ready.readable {
            self.read_stopped = false;
            match self.on_readable(env) {
                Step::Keep => {}
                step => return step,
            }
        }
        self.settle(env)
    }

    /// The connection's bytes, for an HTTP/2 connection to take over.
    pub fn into_pipe(self) -> Pipe<S> {
        self.pipe
    }

    /// HTTP/2 instead: TLS chose `h2` by ALPN, or a plain connection
    /// opened with the HTTP/2 preface (prior knowledge). Only before the
    /// first request. `None`: not decided yet (a prefix of the preface).
    fn speaks_h2(&self) -> Option<bool> {
        if !matches!(self.state, State::Head { kept: false, .. }) {
            return Some(false);
        }
        if self.pipe.transport.chose_h2() {
            return Some(true);
        }
        let input = &self.pipe.input;
        let n = input.len().min(H2_PREFACE.len());
        if input.get(..n) != H2_PREFACE.get(..n) || input.is_empty() {
            return Some(false);
        }
        (n == H2_PREFACE.len()).then_some(true)
    }

    /// Writes what is queued. When answers that paused reading have left,
    /// asks the loop to read again (`Env::more`); it never reads itself.
    pub fn flush(&mut self, env: &mut Env) -> Step {
        match self.pipe.flush() {
            Ok((n, _)) => {
                env.service.stats.bytes_out += n as u64;
                if self.read_stopped && self.pipe.output.len() <= OUTPUT_PAUSE {
                    env.more = true;
                }
                Step::Keep
            }
            Err(e) => {
                debug!("{} write failed: {e}", self.peer);
                Step::Close
            }
        }
    }

    /// Adds shared frames to a stream's queue. Close when over the hard cap.
    pub fn push(&mut self, frames: &[Rc<[u8]>]) -> Step {
        for f in frames {
            self.pipe.output.push(Chunk::Shared(f.clone()));
        }
        if self.pipe.output.len() > HARD_CAP {
            info!(
                "{} slow listener closed: {} bytes waiting",
                self.peer,
                self.pipe.output.len()
            );
            // Closing writes no more of it.
            self.pipe.output = Output::default();
            return Step::Close;
        }
        Step::Keep
    }

    /// After a fan-out: write, then settle.
    pub fn flush_and_settle(&mut self, env: &mut Env) -> Step {
        if self.flush(env) == Step::Close {
            return Step::Close;
        }
        self.settle(env)
    }

    /// The log committed what this connection's answers acknowledge.
    pub fn release(&mut self, env: &mut Env) -> Step {
        self.pipe.hold = false;
        self.flush_and_settle(env)
    }

    /// The node started serving: answer the request held until now.
    pub fn resume(&mut self, env: &mut Env) -> Step {
        if let State::Held { since } = self.state {
            self.state = State::Head {
                since: Some(since),
                kept: false,
            };
            self.process(env);
        }
        self.flush_and_settle(env)
    }

    /// Shutdown: end a stream once `last` (a reconnect hint) and what is
    /// queued before it are written; close an idle keep-alive connection
    /// now; let a request in progress finish (without keep-alive).
    pub fn drain(&mut self, last: &Rc<[u8]>, env: &mut Env) -> Step {
        match &mut self.state {
            State::Held { since } => {
                // Held while the node was starting: it will never serve it.
                let since = *since;
                self.fail(503, "the node is shutting down", since, env);
            }
            State::Stream { ending, .. } => {
                *ending = true;
                if self.push(std::slice::from_ref(last)) == Step::Close {
                    return Step::Close;
                }
            }
            State::Head { since: None, .. }
                if self.pipe.input.is_empty() && self.pipe.output.is_empty() =>
            {
                return Step::Close
            }
            _ => {}
        }
        self.flush_and_settle(env)
    }

    /// The deadline came. What it means depends on the state.
    pub fn expired(&mut self, env: &mut Env) -> Step {
        if self.deadline.is_none_or(|at| at > env.now) {
            return Step::Keep;
        }
        match &self.state {
            State::Head {
                since: Some(since), ..
            }
            | State::Body { since, .. } => {
                let since = *since;
                env.service.stats.timeouts += 1;
                self.fail(408, "the request did not arrive in time", since, env);
                self.flush_and_settle(env)
            }
            State::Stream { .. } => {
                info!(
                    "{} slow listener closed: {} bytes waiting for {:?}",
                    self.peer,
                    self.pipe.output.len(),
                    SOFT_TIME
                );
                env.service.stats.evicted += 1;
                Step::Close
            }
            State::Head { since: None, .. } | State::Held { .. } | State::Closing { .. } => {
                Step::Close
            }
        }
    }

    /// Best-effort goodbye before the socket is dropped.
    pub fn close(&mut self) {
        self.pipe.transport.close_notify();
        let _ = self.pipe.flush();
    }

    /// After handling: close if done, watch a stream's backlog, arm the
    /// deadline that fits the state.
    fn settle(&mut self, env: &mut Env) -> Step {
        let pending = self.pipe.wants_write();
        match &mut self.state {
            State::Stream { ending: true, .. } if !pending => {
                self.pipe.transport.close_notify();
                let _ = self.pipe.flush();
                return Step::Close;
            }
            State::Closing { shut, .. } if !*shut && !pending => {
                *shut = true;
                self.pipe.transport.close_notify();
                if self.flush(env) == Step::Close {
                    return Step::Close;
                }
                self.pipe.stream.shut_write();
            }
            State::Stream { over_soft, .. } => {
                if self.pipe.output.len() > SOFT_CAP {
                    over_soft.get_or_insert(env.now);
                } else {
                    *over_soft = None;
                }
            }
            _ => {}
        }
        let limits = &env.service.config;
        self.deadline = match &self.state {
            State::Head { since: Some(t), .. } => Some(*t + limits.request_timeout),
            // A new connection (or TLS handshake) keeps the request timeout
            // it got at accept: saying nothing is not idling.
            State::Head {
                since: None,
                kept: false,
            } => self.deadline,
            State::Head {
                since: None,
                kept: true,
            } => Some(env.now + limits.idle_timeout),
            // Held until the node serves, which `sync_nodes_timeout` bounds.
            State::Held { .. } => None,
            State::Body { since, .. } => Some(*since + limits.request_timeout),
            State::Stream { over_soft, .. } => over_soft.map(|t| t + SOFT_TIME),
            State::Closing { .. } => Some(
                self.deadline
                    .unwrap_or(env.now + LINGER)
                    .min(env.now + LINGER),
            ),
        };
        Step::Keep
    }

    fn on_readable(&mut self, env: &mut Env) -> Step {
        let mut budget = READ_BUDGET;
        loop {
            let discarding = matches!(self.state, State::Stream { .. } | State::Closing { .. });
            if !discarding && self.pipe.output.len() > OUTPUT_PAUSE {
                self.read_stopped = true;
                return Step::Keep;
            }
            let limit = if discarding {
                DISCARD_BITE
            } else {
                HeadLimits::default().max_head_bytes + env.service.max_body()
            };
            let before = self.pipe.input.len();
            let got = match self.pipe.read(env.scratch, limit, &mut budget) {
                Ok(got) => got,
                Err(e) => {
                    // A client that resets its connection is routine.
                    debug!("{} closed: {e}", self.peer);
                    return Step::Close;
                }
            };
            if discarding {
                // Nothing more is expected from a stream or a closing
                // connection: a client that keeps sending is cut off rather
                // than allowed to keep the loop reading.
                let n = self.pipe.input.len();
                self.pipe.input = Vec::new();
                let limit = match self.state {
                    State::Closing { .. } => LINGER_LIMIT,
                    _ => DISCARD_LIMIT,
                };
                if let State::Stream { discarded, .. } | State::Closing { discarded, .. } =
                    &mut self.state
                {
                    *discarded += n;
                    if *discarded > limit {
                        debug!("{} closed: kept sending after its request", self.peer);
                        return Step::Close;
                    }
                }
            } else if self.speaks_h2() == Some(true) {
                return Step::Upgrade;
            } else if self.speaks_h2().is_none() {
                // A prefix of the HTTP/2 preface: wait for the rest.
            } else if !self.pipe.input.is_empty() {
                // New bytes, or requests left unanswered when reading paused.
                if let State::Head {
                    since: since @ None,
                    ..
                } = &mut self.state
                {
                    if self.pipe.input.len() > before {
                        *since = Some(env.now);
                    }
                }
                self.process(env);
            }
            // TLS handshake bytes and answers leave at once (eager writes).
            if self.flush(env) == Step::Close {
                return Step::Close;
            }
            match got {
                Got::Drained => return Step::Keep,
                Got::Eof => return self.on_eof(),
                Got::Spent => {
                    env.more = true;
                    return Step::Keep;
                }
                // No progress is possible (process() answers over-limit
                // input with an error, so this is defensive).
                Got::Full if self.pipe.input.len() >= limit => return Step::Close,
                Got::Full => {}
            }
        }
    }

    fn on_eof(&mut self) -> Step {
        match self.state {
            // Finish writing what was asked for, then close.
            State::Head { .. } if !self.pipe.output.is_empty() => {
                self.state = State::Closing {
                    shut: false,
                    discarded: 0,
                };
                Step::Keep
            }
            State::Closing { .. } if !self.pipe.output.is_empty() => Step::Keep,
            _ => Step::Close,
        }
    }

    /// Answers every complete request in `input`, in order.
    fn process(&mut self, env: &mut Env) {
        loop {
            match std::mem::replace(
                &mut self.state,
                State::Closing {
                    shut: false,
                    discarded: 0,
                },
            ) {
                State::Head { since, kept } => {
                    let since = since.unwrap_or(env.now);
                    let mut head = match parse_head(&self.pipe.input, &HeadLimits::default()) {
                        Ok(Some(head)) => head,
                        Ok(None) => {
                            let since = (!self.pipe.input.is_empty()).then_some(since);
                            self.state = State::Head { since, kept };
                            return;
                        }
                        Err(e) => {
                            self.log_line("-", "-", e.status(), 0, since, env);
                            self.fail(e.status(), e.reason(), since, env);
                            return;
                        }
                    };
                    head.request.secure = self.is_tls();
                    head.request.client = Some(self.peer.ip());
                    if env.service.holds(&head.request) {
                        // The node waits for its cluster first; the reactor
                        // calls `resume` once it serves.
                        self.state = State::Held { since };
                        return;
                    }
                    self.pipe.input.drain(..head.head_len);
                    let refuse = match head.body {
                        BodyKind::None if head.request.method == Method::Post => {
                            Some((411, "a body needs a Content-Length"))
                        }
                        BodyKind::Length(n) if n > env.service.max_body() as u64 => {
                            Some((413, "the request body is too large"))
                        }
                        _ => None,
                    };
                    if let Some((status, why)) = refuse {
                        env.service.stats.count_status(status);
                        self.answer(&head, Response::error(status, why), since, env);
                        self.state = State::Closing {
                            shut: false,
                            discarded: 0,
                        };
                        return;
                    }
                    if head.expect_continue
                        && head.body != BodyKind::None
                        && self.pipe.input.is_empty()
                    {
                        self.pipe
                            .output
                            .push(Chunk::Owned(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()));
                    }
                    self.state = State::Body {
                        head: Box::new(head),
                        since,
                    };
                }
                State::Body { head, since } => {
                    let input = &self.pipe.input;
                    let (body, used) = match head.body {
                        BodyKind::None => (Vec::new(), 0),
                        BodyKind::Length(n) => {
                            let n = n as usize;
                            match input.get(..n) {
                                Some(body) => (body.to_vec(), n),
                                None => {
                                    self.state = State::Body { head, since };
                                    return;
                                }
                            }
                        }
                        BodyKind::Chunked => match decode_chunked(input, env.service.max_body()) {
                            Ok(Some(done)) => done,
                            Ok(None) => {
                                self.state = State::Body { head, since };
                                return;
                            }
                            Err(e) => {
                                env.service.stats.count_status(e.status());
                                let resp = Response::error(e.status(), &e.to_string());
                                self.answer(&head, resp, since, env);
                                self.state = State::Closing {
                                    shut: false,
                                    discarded: 0,
                                };
                                return;
                            }
                        },
                    };
                    self.pipe.input.drain(..used);
                    self.state = self.handle(&head, &body, since, env);
                    if !matches!(self.state, State::Head { .. }) {
                        // A stream or a close: whatever else was sent is not read.
                        self.pipe.input = Vec::new();
                        return;
                    }
                    if self.pipe.input.is_empty() {
                        self.pipe.release_input();
                        return;
                    }
                    if self.pipe.output.len() > OUTPUT_PAUSE {
                        // Resumed once the answers have left (`flush`).
                        self.read_stopped = true;
                        return;
                    }
                }
                other => {
                    self.state = other;
                    return;
                }
            }
        }
    }
}
